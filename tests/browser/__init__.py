"""Browser tests (opt-in, see conftest.py); a package so its conftest is imported as browser.conftest, not as
the top-level ``conftest`` module that tests import helpers from (``from conftest import ...``)."""
