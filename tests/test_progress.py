"""Progress bars in a notebook: live widgets while training, one line of text (no widget) once it ends.

A saved notebook keeps only what the outputs hold; a widget there needs its kernel, and after a restart
JupyterLab shows "Error displaying widget: model not found" instead. So, run in a real kernel, a
finished training cell must hold no widget output, only the epoch bar's last line as text.
"""

import json

import nbformat
import pytest

from helper_utils.training import _duration, _estimate

WIDGET = "application/vnd.jupyter.widget-view+json"

TRAIN = '''
import torch
from torch import nn
import helper_utils.training as training

training.ESTIMATE_FROM_S = {estimate_from}
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
data = [(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 0, 1]))] * 3


def loss_fn(logits, targets):
    if training_should_fail and model[1].weight.grad is not None:
        raise RuntimeError("boom")
    return nn.functional.cross_entropy(logits, targets)


training_should_fail = {fail}
training.train_classifier(model, data, data, epochs=3, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                          loss_fn=loss_fn)
'''


def _run_in_kernel(source: str) -> list[dict]:
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True).execute()
    return [dict(output) for output in nb.cells[0].outputs]


@pytest.fixture(scope="module")
def finished_run():
    return _run_in_kernel(TRAIN.format(estimate_from=0.0, fail=False))


def test_a_finished_run_leaves_one_line_of_text_and_no_widget(finished_run):
    displays = [o for o in finished_run if o["output_type"] == "display_data"]
    assert not any(WIDGET in json.dumps(o) for o in finished_run), finished_run
    assert len(displays) == 1 and set(displays[0]["data"]) == {"text/plain"}, displays  # one output for both bars
    line = displays[0]["data"]["text/plain"]
    assert line.startswith("epochs: 100%") and "3/3" in line and "val_acc=" in line and "\n" not in line, line


def test_the_first_epoch_says_how_long_the_run_will_take(finished_run):
    printed = "".join(o.get("text", "") for o in finished_run if o["output_type"] == "stream")
    assert "The first epoch took " in printed and "all 3 epochs should take about " in printed, printed


def test_a_failed_run_leaves_the_line_where_it_stopped_then_the_error():
    outputs = _run_in_kernel(TRAIN.format(estimate_from=1e9, fail=True))
    assert not any(WIDGET in json.dumps(o) for o in outputs), outputs
    kinds = [o["output_type"] for o in outputs]
    assert kinds == ["display_data", "error"], kinds  # no estimate for a short run
    assert outputs[0]["data"]["text/plain"].startswith("epochs:   0%") and "0/3" in outputs[0]["data"]["text/plain"]


def test_a_transient_bar_leaves_nothing_visible():
    outputs = _run_in_kernel("from helper_utils.progress import tqdm\n"
                             "for _ in tqdm(range(3), desc='extract', leave=False):\n    pass\n")
    assert [o["data"] for o in outputs if o["output_type"] == "display_data"] == [{"text/plain": ""}], outputs


@pytest.mark.parametrize("first_epoch_s,epochs,expected", [
    (2.07, 120, "about 4 minutes"),
    (2.75, 120, "about 5.5 minutes"),
    (1.0, 90, "about 1.5 minutes"),
    (20.0, 150, "about 50 minutes"),
    (60.0, 200, "about 3.3 hours"),
])
def test_the_estimate_is_rounded_as_an_estimate(first_epoch_s, epochs, expected):
    line = _estimate(first_epoch_s, epochs)
    assert line.endswith(f"{expected} on this machine.") and f"took {first_epoch_s:.1f} s" in line, line


def test_short_runs_get_no_estimate():
    assert _estimate(2.2, 10) == "" and _estimate(100.0, 1) == "" and _estimate(1.0, None) == ""
    assert _duration(75) == "1.5 minutes" and _duration(60) == "1 minute"
