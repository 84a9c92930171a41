"""Browser tests: JupyterLab driven by headless Chromium (Debian's, through Playwright).

They are opt-in, so the default ``pytest tests`` run stays fast and needs no browser. They run when
``FASHION_KIT_BROWSER=1`` is set (``make test-browser`` sets it) or when ``-m browser`` selects them;
otherwise every ``browser``-marked test is skipped with the reason. Chromium missing is a skip, except
under ``FASHION_KIT_BROWSER=1`` or ``CI=true``, where it is a failure (the test was asked for).

The fixtures start JupyterLab on a free loopback port with a random token, in temporary Jupyter
config/data/runtime/settings folders and with a kernelspec pointing at this interpreter, so nothing
of the user's Jupyter setup (or of the other people sharing the checkout) leaks in or is changed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("FASHION_KIT_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps dialing Google services, which this
# closed network refuses; --disable-dev-shm-usage avoids crashes where /dev/shm is small.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"  # failure screenshots
SERVER_START_S = 90  # JupyterLab answering /api/status
SERVER_STOP_S = 20


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def browser_requested(config) -> bool:
    """FASHION_KIT_BROWSER=1, or ``-m`` names ``browser`` (and not as ``not browser``)."""
    markexpr = config.getoption("markexpr", "") or ""
    return _truthy("FASHION_KIT_BROWSER") or ("browser" in markexpr and "not browser" not in markexpr)


def browser_required() -> bool:
    """Whether a missing Chromium must fail the test rather than skip it."""
    return _truthy("FASHION_KIT_BROWSER") or _truthy("CI")


def pytest_collection_modifyitems(config, items):
    if browser_requested(config):
        return
    skip = pytest.mark.skip(reason="browser test: opt-in, run `make test-browser` "
                                   "(or FASHION_KIT_BROWSER=1 / -m browser)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: ``url(path)`` adds the token; ``root`` is its notebook folder."""

    base: str
    token: str
    root: Path
    log: Path

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def api(self, path: str, method: str = "GET", body: dict | None = None, timeout: float = 5.0):
        """Call the REST API; returns the decoded JSON answer (None when empty)."""
        request = urllib.request.Request(f"{self.base}/api/{path.lstrip('/')}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no JupyterLab log)"


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _jupyter_env(home: Path) -> dict[str, str]:
    """Environment for JupyterLab and its kernels: private Jupyter folders, our kernelspec first."""
    jupyter_path = home / "share"
    # A kernelspec named like the notebook's ("python3") that runs this very interpreter.
    _write_json(jupyter_path / "kernels" / "python3" / "kernel.json", {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python", "metadata": {"debugger": False},
    })
    env = dict(os.environ)
    env.update({
        "JUPYTER_PATH": str(jupyter_path),  # searched before the venv's own share/jupyter
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "MPLCONFIGDIR": str(home / "matplotlib"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("JUPYTER_CONFIG_PATH", None)
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    return env


def _lab_settings(settings: Path) -> None:
    """User settings: render every cell (no windowing), start the notebook's kernel without asking,
    no news/update checks (closed network)."""
    _write_json(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
                {"windowingMode": "none", "autoStartDefaultKernel": True})
    _write_json(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})


def _stop(process: subprocess.Popen, lab: Lab | None) -> None:
    """Ask the server to shut down (it stops its kernels), then terminate, then kill: all bounded."""
    if process.poll() is not None:
        return
    if lab is not None:
        try:
            lab.api("shutdown", method="POST")
        except (OSError, urllib.error.URLError):
            pass
        try:
            process.wait(timeout=SERVER_STOP_S)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(process.pid, signal.SIGTERM)  # its own session: the server and nothing of ours
    try:
        process.wait(timeout=SERVER_STOP_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=SERVER_STOP_S)


@pytest.fixture
def chromium_path() -> Path:
    """Debian's Chromium; skips (or fails, when the test was required) if it is not installed."""
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} not found: install it with `.ci/install-chromium` (apt-get install chromium)"
        if browser_required():
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def lab_home(tmp_path) -> Path:
    home = tmp_path / "jupyter-home"
    home.mkdir()
    return home


@pytest.fixture
def lab_env() -> dict[str, str]:
    """Extra environment for JupyterLab and its kernels; test modules override this fixture."""
    return {}


@pytest.fixture
def jupyter_lab(tmp_path, lab_home, lab_env):
    """A JupyterLab serving ``tmp_path / "notebooks"`` (put the notebooks there), stopped afterwards."""
    root = tmp_path / "notebooks"
    root.mkdir(exist_ok=True)
    settings = lab_home / "lab-settings"
    _lab_settings(settings)
    env = _jupyter_env(lab_home)
    env.update(lab_env)
    token = secrets.token_hex(24)
    log = tmp_path / "jupyterlab.log"
    process = lab = None
    for _attempt in range(3):  # the free port can be taken between choosing and binding it
        port = _free_port()
        command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.open_browser=False",
                   "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                   f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={lab_home / 'workspaces'}",
                   "--LabApp.news_url=", "--ServerApp.shutdown_no_activity_timeout=900",
                   "--MappingKernelManager.cull_idle_timeout=900"]
        if hasattr(os, "getuid") and os.getuid() == 0:
            command.append("--allow-root")
        with open(log, "ab") as log_file:
            process = subprocess.Popen(command, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        lab = Lab(f"http://127.0.0.1:{port}", token, root, log)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                lab.api("status", timeout=2)
                break
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.5)
        if process.poll() is None and time.monotonic() < deadline:
            break
        _stop(process, None)
        if "already in use" not in lab.log_tail():
            pytest.fail(f"JupyterLab did not answer /api/status within {SERVER_START_S} s:\n{lab.log_tail()}")
    else:
        pytest.fail(f"JupyterLab could not bind a free port:\n{lab.log_tail()}")
    try:
        yield lab
    finally:
        _stop(process, lab)


@pytest.fixture
def page(chromium_path, jupyter_lab, request):
    """A Chromium page (1400x1000); on failure a screenshot goes to artifacts/browser/<test>-failure.png."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path), headless=True,
                                             args=CHROMIUM_ARGS, timeout=60_000)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(30_000)
            console: list[str] = []
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}")
                    if message.type in ("error", "warning") else None)
            page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
            yield page
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=ARTIFACTS / f"{request.node.name}-failure.png", full_page=False)
                print("browser console (errors/warnings):\n" + "\n".join(console[-40:]))
                print("JupyterLab log tail:\n" + jupyter_lab.log_tail())
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)  # lets the page fixture see whether the test failed
    return report

