"""Notebook 06's search UI in a real browser: run the solution notebook in JupyterLab, use the widget.

Opt-in (see conftest.py): ``make test-browser``. Runs a temporary copy of
``notebooks/solutions/06_visual_search.ipynb`` with the committed checkpoints copied to a temporary
``FASHION_KIT_CHECKPOINTS`` (the notebook saves one there), and the real data under ``data_root()``.
The screenshot of the widget showing results goes to ``artifacts/browser/notebook06_widget.png``.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from helper_utils.data import dataset_dir
from helper_utils.training import checkpoint_dir

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"
NOTEBOOK = REPO / "notebooks" / "solutions" / "06_visual_search.ipynb"
HAVE_ENCODER = (checkpoint_dir() / "encoder_best.pt").is_file()
# With notebook 05's encoder the notebook runs in seconds; without it, it fine-tunes one (minutes).
RUN_ALL_S = 240 if HAVE_ENCODER else 1500
KERNEL_READY_S = 90
SEARCH_S = 60
SCREENSHOT = ARTIFACTS / "notebook06_widget.png"
STATUS_OK = re.compile(r"top 5 in [0-9.]+ ms")  # the status line under the controls: "<query>: top k in t ms"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(RUN_ALL_S + 300)]


@pytest.fixture
def lab_env(tmp_path) -> dict[str, str]:
    return {"FASHION_KIT_CHECKPOINTS": str(copy_checkpoints(checkpoint_dir(), tmp_path / "checkpoints"))}


def copy_notebook(source: Path, folder: Path) -> Path:
    """Copy a committed notebook into the server's folder, outputs cleared, so the original is never touched."""
    notebook = json.loads(source.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    target = folder / source.name
    target.write_text(json.dumps(notebook, indent=1))
    return target


def copy_checkpoints(source: Path, target: Path) -> Path:
    """The ``*_best.pt`` checkpoints, copied so the notebook's saves land in ``target`` only."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*_best.pt")):
        shutil.copy2(path, target / path.name)
    return target


def _wait(condition, timeout: float, what: str, interval: float = 0.5, details=lambda: ""):
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}. {details()}")
        time.sleep(interval)


PROMPTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')]
    .map(cell => cell.querySelector('.jp-InputPrompt')?.textContent.trim() ?? '')"""


def _kernel_status(page) -> str:
    indicator = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
    return (indicator.get_attribute("data-status") or "") if indicator.count() else ""


def _no_dialog(page) -> bool:
    """True when no modal dialog is open; fails at once with its text if one is (it would block the test)."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and dialog.first.is_visible():
        pytest.fail(f"unexpected JupyterLab dialog: {dialog.first.inner_text()!r}")
    return True


def _kernel_connected(lab, notebook: str) -> bool:
    """The server's view: the notebook's session has a kernel, idle, with the browser connected to it."""
    sessions = [s for s in lab.api("sessions") if s["path"] == notebook]
    assert len(sessions) <= 1, f"more than one session for {notebook}: {sessions}"
    kernel = sessions[0]["kernel"] if sessions else {}
    assert kernel.get("name", "python3") == "python3", f"unexpected kernel {kernel}"
    return kernel.get("connections", 0) > 0 and kernel.get("execution_state") == "idle"


def _run_all_cells(page) -> list[str]:
    """Run > Run All Cells from the menu bar; waits until every code cell has run. Returns the prompts.

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

    return _wait(finished, RUN_ALL_S, "Run All Cells to finish", interval=1,
                 details=lambda: f"prompts: {page.evaluate(PROMPTS_JS)}")


def _save_and_check(page, notebook: Path, prompts: list[str]) -> None:
    """Save the notebook (Ctrl+S, on the temporary copy) and fail with the traceback of any cell that raised."""
    before = notebook.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.click()
    page.keyboard.press("Control+s")
    _wait(lambda: notebook.stat().st_mtime_ns != before, 30, "the notebook to be saved")
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    for cell in cells:
        for output in cell["outputs"]:
            if output["output_type"] == "error":
                traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(output["traceback"]))
                pytest.fail(f"notebook cell [{cell['execution_count']}] raised:\n{traceback[-3000:]}")
    not_run = [i for i, p in enumerate(prompts) if not re.fullmatch(r"\[\d+\]:", p)]
    assert not not_run, f"code cells {not_run} did not run; prompts: {prompts}"


def _upload(page, button, path: Path) -> None:
    """Click the FileUpload button and answer its file dialog (its <input type=file> is not in the DOM)."""
    with page.expect_file_chooser(timeout=SEARCH_S * 1000) as chooser:
        button.click()
    chooser.value.set_files(str(path))


def _catalog_photo() -> Path:
    """A real catalog (validation split) JPEG, the same one every run."""
    return sorted((dataset_dir() / "validation" / "shoes").glob("*.jpg"))[0]


def expect_one(locator, what: str) -> None:
    count = locator.count()
    assert count == 1, f"expected one {what}, found {count}"


def test_search_widget_in_jupyterlab(page, jupyter_lab, tmp_path):
    assert NOTEBOOK.is_file(), NOTEBOOK
    photo = _catalog_photo()
    notebook = copy_notebook(NOTEBOOK, jupyter_lab.root)

    page.goto(jupyter_lab.url(f"lab/tree/{notebook.name}"))
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=KERNEL_READY_S * 1000)
    _wait(lambda: _no_dialog(page) and _kernel_status(page) == "idle"
          and _kernel_connected(jupyter_lab, notebook.name), KERNEL_READY_S, "the notebook's kernel to start and connect",
          details=lambda: f"status {_kernel_status(page)!r}; sessions {jupyter_lab.api('sessions')}")

    started = time.monotonic()
    prompts = _run_all_cells(page)
    print(f"Run All Cells: {len(prompts)} code cells in {time.monotonic() - started:.1f} s")
    _save_and_check(page, notebook, prompts)

    # The widget cell: a dropdown of catalog photos, an upload button, a k slider, a status line, results.
    cell = page.locator(".jp-CodeCell", has_text="app.widget(")
    expect_one(cell, "the code cell creating the widget")
    ui = cell.locator(".jp-OutputArea .widget-vbox").first
    ui.wait_for(state="visible", timeout=SEARCH_S * 1000)
    picker = ui.locator(".widget-dropdown select")
    upload = ui.locator(".widget-upload")
    status = ui.locator(".widget-html")
    results = ui.locator(".widget-output img")
    assert picker.is_visible() and upload.is_visible() and ui.locator(".widget-hslider").is_visible()
    assert picker.locator("option").count() == 276, "the catalog picker should list the 276 validation photos"
    _wait(lambda: STATUS_OK.search(status.inner_text()), SEARCH_S, "the first search's status line")
    _wait(lambda: results.count() == 1, SEARCH_S, "the first search's results figure")
    first_src = results.get_attribute("src")

    # Pick another catalog photo: a new search, new results.
    picker.select_option(index=10)
    _wait(lambda: results.count() == 1 and results.get_attribute("src") != first_src, SEARCH_S,
          "results for the picked catalog photo", details=lambda: f"status: {status.inner_text()!r}")
    assert status.inner_text().startswith("catalog #10: ") and STATUS_OK.search(status.inner_text()), \
        status.inner_text()
    picked_src = results.get_attribute("src")

    # Upload a real catalog JPEG through the FileUpload button and its file dialog.
    _upload(page, upload, photo)
    _wait(lambda: status.inner_text().startswith(f"upload {photo.name}: "), SEARCH_S,
          f"results for the uploaded {photo.name}", details=lambda: f"status: {status.inner_text()!r}")
    assert STATUS_OK.search(status.inner_text()), status.inner_text()
    _wait(lambda: results.count() == 1 and results.get_attribute("src") != picked_src, SEARCH_S,
          "the uploaded photo's results figure")
    assert "(1)" in upload.inner_text(), f"the upload button should count the file: {upload.inner_text()!r}"
    image_box = results.bounding_box()
    assert image_box and image_box["width"] > 400 and image_box["height"] > 100, image_box
    assert page.evaluate("img => img.complete && img.naturalWidth > 400", results.element_handle())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=SCREENSHOT)

    # Two steps down the k slider (keyboard on its handle): the same uploaded query, 3 results.
    uploaded_src = results.get_attribute("src")
    handle = ui.locator(".widget-hslider .noUi-handle")
    handle.focus()
    handle.press("ArrowLeft")
    handle.press("ArrowLeft")
    _wait(lambda: re.match(rf"upload {re.escape(photo.name)}: top 3 in ", status.inner_text()), SEARCH_S,
          "3 results for the same upload", details=lambda: f"status: {status.inner_text()!r}")
    _wait(lambda: results.get_attribute("src") != uploaded_src, SEARCH_S, "the 3-result figure")
    three_src = results.get_attribute("src")

    # A file that is not an image: refused in red under the controls, the last results stay.
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not an image")
    _upload(page, upload, bad)
    _wait(lambda: "not a readable image" in status.inner_text(), SEARCH_S, "the refusal of a non-image upload",
          details=lambda: f"status: {status.inner_text()!r}")
    assert "notes.jpg" in status.inner_text()
    assert status.locator("span").evaluate("e => getComputedStyle(e).color") == "rgb(187, 0, 0)"
    assert results.get_attribute("src") == three_src

