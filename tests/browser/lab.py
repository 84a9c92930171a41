"""Driving a notebook in JupyterLab from Playwright, as a learner would: open it, Run All, save, reopen.

Shared by the browser tests; the fixtures that start JupyterLab and Chromium are in conftest.py.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"  # screenshots
KERNEL_READY_S = 90
ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDGET_ERROR = "Error displaying widget"

PROMPTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')]
    .map(cell => cell.querySelector('.jp-InputPrompt')?.textContent.trim() ?? '')"""


def copy_notebook(source: Path | dict, folder: Path, name: str | None = None) -> Path:
    """Copy a notebook (a file, or its JSON as a dict) into the server's folder, outputs cleared."""
    notebook = json.loads(source.read_text()) if isinstance(source, Path) else source
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    target = folder / (name or source.name)
    target.write_text(json.dumps(notebook, indent=1))
    return target


def copy_checkpoints(source: Path, target: Path) -> Path:
    """The ``*_best.pt`` checkpoints, copied so the notebook's saves land in ``target`` only."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*_best.pt")):
        shutil.copy2(path, target / path.name)
    return target


def wait(condition, timeout: float, what: str, interval: float = 0.5, details=lambda: ""):
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}. {details()}")
        time.sleep(interval)


def kernel_status(page) -> str:
    indicator = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
    return (indicator.get_attribute("data-status") or "") if indicator.count() else ""


def no_dialog(page) -> bool:
    """True when no modal dialog is open; fails at once with its text if one is (it would block the test)."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and dialog.first.is_visible():
        pytest.fail(f"unexpected JupyterLab dialog: {dialog.first.inner_text()!r}")
    return True


def kernel_connected(lab, notebook: str) -> bool:
    """The server's view: the notebook's session has a kernel, idle, with the browser connected to it."""
    sessions = [s for s in lab.api("sessions") if s["path"] == notebook]
    assert len(sessions) <= 1, f"more than one session for {notebook}: {sessions}"
    kernel = sessions[0]["kernel"] if sessions else {}
    assert kernel.get("name", "python3") == "python3", f"unexpected kernel {kernel}"
    return kernel.get("connections", 0) > 0 and kernel.get("execution_state") == "idle"


def open_notebook(page, lab, notebook: Path) -> None:
    """Open ``notebook`` in JupyterLab and wait until its kernel is idle and connected."""
    page.goto(lab.url(f"lab/tree/{notebook.name}"))
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=KERNEL_READY_S * 1000)
    wait(lambda: no_dialog(page) and kernel_status(page) == "idle" and kernel_connected(lab, notebook.name),
         KERNEL_READY_S, "the notebook's kernel to start and connect",
         details=lambda: f"status {kernel_status(page)!r}; sessions {lab.api('sessions')}")


def run_all_cells(page, timeout: float) -> list[str]:
    """Run > Run All Cells from the menu bar; waits until no cell is queued or running. Returns the prompts.

    Right after the page loads, JupyterLab can show the kernel as idle and connected while its session
    is not quite ready yet; Run All then does nothing at all (no cell is queued). Asking again is
    harmless, so it tries up to three times before failing.
    """
    for attempt in range(3):
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.click()  # focus the notebook
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                     has_text=re.compile(r"^Run All Cells$")).click()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("*" in p for p in page.evaluate(PROMPTS_JS)):
            time.sleep(0.25)
        if any("*" in p for p in page.evaluate(PROMPTS_JS)):
            break
        print(f"Run All Cells, attempt {attempt + 1}: no cell was queued; trying again")
    else:
        pytest.fail(f"Run All Cells queued no cell in 3 attempts; prompts: {page.evaluate(PROMPTS_JS)}")

    def finished():  # no cell queued or running; after an error JupyterLab drops the rest of the queue
        prompts = page.evaluate(PROMPTS_JS)
        return None if any("*" in p for p in prompts) else prompts

    return wait(finished, timeout, "Run All Cells to finish", interval=1,
                details=lambda: f"prompts: {page.evaluate(PROMPTS_JS)}")


def save(page, notebook: Path) -> list[dict]:
    """Save the notebook (Ctrl+S, on the temporary copy); returns its code cells as saved."""
    before = notebook.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.click()
    page.keyboard.press("Control+s")
    wait(lambda: notebook.stat().st_mtime_ns != before, 30, "the notebook to be saved")
    return [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]


def errors(cells: list[dict]) -> list[tuple[int, list[str]]]:
    """``(cell index, traceback lines without colours)`` of every error output of saved code cells."""
    return [(i, [ANSI.sub("", line) for line in output["traceback"]])
            for i, cell in enumerate(cells) for output in cell["outputs"] if output["output_type"] == "error"]


def save_and_check(page, notebook: Path, prompts: list[str]) -> None:
    """Save the notebook and fail with the traceback of any cell that raised, or when a cell did not run."""
    for i, traceback in errors(save(page, notebook)):
        pytest.fail(f"notebook code cell {i} raised:\n" + "\n".join(traceback)[-3000:])
    not_run = [i for i, p in enumerate(prompts) if not re.fullmatch(r"\[\d+\]:", p)]
    assert not not_run, f"code cells {not_run} did not run; prompts: {prompts}"


def restart_kernel_and_reopen(page, lab, notebook: Path) -> None:
    """Restart the notebook's kernel (its widget models go), then reload the page: what a learner sees next time."""
    session = next(s for s in lab.api("sessions") if s["path"] == notebook.name)
    lab.api(f"kernels/{session['kernel']['id']}/restart", method="POST", timeout=60)
    page.reload()
    open_notebook(page, lab, notebook)


def screenshot(locator, name: str) -> Path:
    """A screenshot of ``locator`` in artifacts/browser/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    locator.scroll_into_view_if_needed()
    path = ARTIFACTS / f"{name}.png"
    locator.screenshot(path=path)
    return path
