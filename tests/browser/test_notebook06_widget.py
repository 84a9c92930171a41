"""Notebook 06's search UI in a real browser: run the solution notebook in JupyterLab, use the widget.

Opt-in (see conftest.py): ``make test-browser``. Runs a temporary copy of
``notebooks/solutions/06_visual_search.ipynb`` with the committed checkpoints copied to a temporary
``FASHION_KIT_CHECKPOINTS`` (the notebook saves one there), and the real data under ``data_root()``.
The copy ends with one more cell: a second search UI whose ``find_closest`` returns indices outside the
catalog, as a learner's wrong answer might. Screenshots of the widget showing results, after a refused
upload, and of that UI's one-line message go to ``artifacts/browser/notebook06_widget.png``,
``notebook06_refused_upload.png`` and ``notebook06_broken_find_closest.png``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from helper_utils.data import dataset_dir
from helper_utils.training import checkpoint_dir

from .lab import REPO, copy_checkpoints, copy_notebook, open_notebook, run_all_cells, save_and_check, screenshot, wait

NOTEBOOK = REPO / "notebooks" / "solutions" / "06_visual_search.ipynb"
HAVE_ENCODER = (checkpoint_dir() / "encoder_best.pt").is_file()
# With notebook 05's encoder the notebook runs in seconds; without it, it fine-tunes one (minutes).
RUN_ALL_S = 240 if HAVE_ENCODER else 1500
SEARCH_S = 60
STATUS_OK = re.compile(r"top 5 in [0-9.]+ ms")  # the status line under the controls: "<query>: top k in t ms"
# A wrong find_closest, as a learner might write one: every index it returns is off the end of the catalog.
BROKEN_UI_CELL = """\
off_the_end = lambda embeddings, query, k=5: find_closest(embeddings, query, k) + len(embeddings)
broken = VisualSearch(search_encoder, catalog_images, catalog_embeddings, val_transform, device,
                      get_query_img_embedding=get_query_img_embedding, find_closest=off_the_end)
broken_ui = broken.widget(k=5)"""

pytestmark = [pytest.mark.browser, pytest.mark.timeout(RUN_ALL_S + 300)]


@pytest.fixture
def lab_env(tmp_path) -> dict[str, str]:
    return {"FASHION_KIT_CHECKPOINTS": str(copy_checkpoints(checkpoint_dir(), tmp_path / "checkpoints"))}


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
    source = json.loads(NOTEBOOK.read_text())
    source["cells"].append({"cell_type": "code", "metadata": {}, "source": BROKEN_UI_CELL, "outputs": [],
                            "execution_count": None})
    notebook = copy_notebook(source, jupyter_lab.root, NOTEBOOK.name)

    open_notebook(page, jupyter_lab, notebook)

    started = time.monotonic()
    prompts = run_all_cells(page, RUN_ALL_S)
    print(f"Run All Cells: {len(prompts)} code cells in {time.monotonic() - started:.1f} s")
    save_and_check(page, notebook, prompts)

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
    wait(lambda: STATUS_OK.search(status.inner_text()), SEARCH_S, "the first search's status line")
    wait(lambda: results.count() == 1, SEARCH_S, "the first search's results figure")
    first_src = results.get_attribute("src")

    # Pick another catalog photo: a new search, new results.
    picker.select_option(index=10)
    wait(lambda: results.count() == 1 and results.get_attribute("src") != first_src, SEARCH_S,
         "results for the picked catalog photo", details=lambda: f"status: {status.inner_text()!r}")
    assert status.inner_text().startswith("catalog #10: ") and STATUS_OK.search(status.inner_text()), \
        status.inner_text()
    picked_src = results.get_attribute("src")

    # Upload a real catalog JPEG through the FileUpload button and its file dialog.
    _upload(page, upload, photo)
    wait(lambda: status.inner_text().startswith(f"upload {photo.name}: "), SEARCH_S,
         f"results for the uploaded {photo.name}", details=lambda: f"status: {status.inner_text()!r}")
    assert STATUS_OK.search(status.inner_text()), status.inner_text()
    wait(lambda: results.count() == 1 and results.get_attribute("src") != picked_src, SEARCH_S,
         "the uploaded photo's results figure")
    assert "(1)" in upload.inner_text(), f"the upload button should count the file: {upload.inner_text()!r}"
    assert picker.evaluate("select => select.selectedIndex") == -1, "the picker still shows a catalog photo"
    image_box = results.bounding_box()
    assert image_box and image_box["width"] > 400 and image_box["height"] > 100, image_box
    assert page.evaluate("img => img.complete && img.naturalWidth > 400", results.element_handle())
    screenshot(cell, "notebook06_widget")

    # Two steps down the k slider (keyboard on its handle): the same uploaded query, 3 results.
    uploaded_src = results.get_attribute("src")
    handle = ui.locator(".widget-hslider .noUi-handle")
    handle.focus()
    handle.press("ArrowLeft")
    handle.press("ArrowLeft")
    wait(lambda: re.match(rf"upload {re.escape(photo.name)}: top 3 in ", status.inner_text()), SEARCH_S,
         "3 results for the same upload", details=lambda: f"status: {status.inner_text()!r}")
    wait(lambda: results.get_attribute("src") != uploaded_src, SEARCH_S, "the 3-result figure")

    # A file that is not an image: refused in red under the controls, and the earlier query's results go.
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not an image")
    _upload(page, upload, bad)
    wait(lambda: "not a readable image" in status.inner_text(), SEARCH_S, "the refusal of a non-image upload",
         details=lambda: f"status: {status.inner_text()!r}")
    assert "notes.jpg" in status.inner_text()
    assert status.locator("span").evaluate("e => getComputedStyle(e).color") == "rgb(187, 0, 0)"
    wait(lambda: results.count() == 0, SEARCH_S, "the earlier results to be cleared",
         details=lambda: f"{results.count()} result figures still shown")
    screenshot(cell, "notebook06_refused_upload")

    assert picker.evaluate("select => select.selectedIndex") == -1, "the picker still shows the earlier photo"

    # Moving k now has nothing to search; picking a catalog photo (the earlier one too) searches again.
    handle.press("ArrowRight")
    time.sleep(1)
    assert results.count() == 0 and "not a readable image" in status.inner_text(), status.inner_text()
    picker.select_option(index=10)
    wait(lambda: results.count() == 1 and status.inner_text().startswith("catalog #10: "), SEARCH_S,
         "results for a catalog photo after the refusal", details=lambda: f"status: {status.inner_text()!r}")

    # The UI with the wrong find_closest: one red line naming the function, no results, no traceback
    # (save_and_check above found no error output in any cell).
    broken_cell = page.locator(".jp-CodeCell", has_text="broken.widget(")
    expect_one(broken_cell, "the code cell creating the UI with the wrong find_closest")
    broken_status = broken_cell.locator(".jp-OutputArea .widget-vbox .widget-html").first
    broken_status.wait_for(state="visible", timeout=SEARCH_S * 1000)
    wait(lambda: "Search failed: `find_closest` returned index" in broken_status.inner_text(), SEARCH_S,
         "the one-line message about find_closest", details=lambda: f"status: {broken_status.inner_text()!r}")
    assert "\n" not in broken_status.inner_text().strip(), broken_status.inner_text()
    assert broken_status.locator("span").evaluate("e => getComputedStyle(e).color") == "rgb(187, 0, 0)"
    assert broken_cell.locator(".widget-output img").count() == 0, "results shown under the message"
    assert broken_cell.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    screenshot(broken_cell, "notebook06_broken_find_closest")
