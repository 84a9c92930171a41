"""Notebooks 09-10 say how to install the going-further stack when it is missing, without a traceback."""

import importlib.util

import pytest

from helper_utils.going_further import EXTRAS, MissingExtrasError, require_extras


def test_nothing_to_say_when_everything_is_installed():
    require_extras()  # the dev install has the extra


def test_missing_packages_are_named_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name in ("faiss", "fastapi") else real(name))
    with pytest.raises(MissingExtrasError) as caught:
        require_extras()
    message = str(caught.value)
    assert "faiss-cpu, fastapi" in message and "pip install -e '.[going-further]'" in message
    assert caught.value._render_traceback_() == [message]  # IPython shows the message alone
    assert isinstance(caught.value, ImportError)


def test_every_extra_is_declared_in_pyproject():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    declared = " ".join(pyproject["project"]["optional-dependencies"]["going-further"]
                        + pyproject["project"]["optional-dependencies"]["dev"])
    for package in EXTRAS.values():
        assert package in declared, package
