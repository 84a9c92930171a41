"""What a learner sees in JupyterLab: an untouched exercise, and training bars after the notebook is reopened.

Opt-in (see conftest.py): ``make test-browser``. Screenshots go to ``artifacts/browser/``:
``learner_<notebook>_unfinished.png`` (a learner notebook run top to bottom with its exercises
untouched) and ``reopened_training_bars.png`` (a finished training cell after a kernel restart and a
reload of the page).
"""

from __future__ import annotations

import re
import time

import nbformat
import pytest

from helper_utils.paths import NOTEBOOKS

from .lab import (WIDGET_ERROR, copy_notebook, errors, open_notebook, restart_kernel_and_reopen, run_all_cells,
                  save, screenshot, wait)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
RUN_ALL_S = 180

# learner notebook -> the exercise and section its first demo cell needs
UNFINISHED = {
    "01_data_pipeline": ("compute_class_weights", 6),
    "03_backbone_and_classifier": ("MobileNetBackbone", 2),
}

TRAINING = '''\
import time

import torch
from torch import nn

from helper_utils import train_classifier


class SlowBatches(list):
    """A few tiny batches, slowed down so that the live progress bars can be seen."""

    def __iter__(self):
        for batch in super().__iter__():
            time.sleep(0.25)
            yield batch


torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
batches = SlowBatches([(torch.randn(8, 3, 2, 2), torch.randint(0, 2, (8,)))] * 4)
history = train_classifier(model, batches, list(batches)[:1], epochs=6, loss_fn=nn.CrossEntropyLoss(),
                           optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
'''


@pytest.fixture
def lab_env(tmp_path) -> dict[str, str]:
    return {"FASHION_KIT_CHECKPOINTS": str(tmp_path / "checkpoints")}  # empty: nothing is loaded or saved


def _outputs_text(page) -> str:
    return "\n".join(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").all_inner_texts())


@pytest.mark.parametrize("stem", sorted(UNFINISHED))
def test_an_untouched_exercise_stops_run_all_with_one_line(stem, page, jupyter_lab):
    exercise, section = UNFINISHED[stem]
    notebook = copy_notebook(NOTEBOOKS / f"{stem}.ipynb", jupyter_lab.root)
    open_notebook(page, jupyter_lab, notebook)

    prompts = run_all_cells(page, RUN_ALL_S)

    cells = save(page, notebook)
    found = errors(cells)
    assert len(found) == 1, f"expected one error, found {found}"
    index, lines = found[0]
    assert len(lines) == 1 and lines[0] == (f"UnfinishedExercise: write `{exercise}` (section {section}) and run "
                                            f"its cell first, then this one again"), lines
    assert "".join(cells[index]["source"]).startswith("unittests.require(")
    assert all(not re.fullmatch(r"\[\d+\]:", p) for p in prompts[index + 1:]), "cells after the stop ran"
    shown = _outputs_text(page)
    assert "Traceback" not in shown and "---->" not in shown, "a raw traceback is on screen"
    stopped = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").nth(index)
    assert f"UnfinishedExercise: write `{exercise}`" in stopped.locator(".jp-OutputArea").inner_text()
    grader = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").nth(index - 1)
    grader.scroll_into_view_if_needed()
    screenshot(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)"), f"learner_{stem}_unfinished")


def test_finished_training_bars_are_a_line_of_text_after_a_restart_and_reopen(page, jupyter_lab):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Training bars"), nbformat.v4.new_code_cell(TRAINING)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook = copy_notebook(nbformat.from_dict(nb), jupyter_lab.root, "training_bars.ipynb")
    open_notebook(page, jupyter_lab, notebook)
    output = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-OutputArea")

    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.click()
    page.keyboard.press("Control+Enter")  # nothing to run: markdown
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").first.click()
    page.keyboard.press("Control+Enter")
    # While it trains: the live widget bars, epochs above the current epoch's batches.
    wait(lambda: output.locator(".widget-hprogress").count() == 2, 60, "the live epoch and batch bars",
         interval=0.1, details=lambda: output.inner_text())
    prompt = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt")
    wait(lambda: re.fullmatch(r"\[\d+\]:", prompt.inner_text().strip()), 120, "the run to end")
    assert output.locator(".jupyter-widgets").count() == 0, "a widget is still shown after the run"
    text = output.inner_text()
    assert "6/6" in text and "val_acc=" in text and "batches" not in text, text

    saved = save(page, notebook)
    assert "widget-view" not in str(saved[0]["outputs"]), saved[0]["outputs"]
    restart_kernel_and_reopen(page, jupyter_lab, notebook)
    output = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-OutputArea")
    wait(lambda: "epochs: 100%" in output.inner_text(), 30, "the saved line of text after the reopen")
    time.sleep(2)  # give a widget renderer, were there one, time to fail
    assert WIDGET_ERROR not in page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").inner_text()
    screenshot(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell"), "reopened_training_bars")
