"""The benchmark plumbing on tiny inputs (the real runs are `make bench` and `make bench-course`)."""

import nbformat
import torch

from helper_utils.device import machine_description
from tools.bench import RESULT_LINE, _printed_text, time_epoch


def test_time_epoch_counts_every_image():
    batches = [(torch.randn(4, 3, 64, 64), torch.randint(0, 7, (4,))) for _ in range(3)]
    seconds, seen = time_epoch(batches, batch_size=4, warmup_batches=1)
    assert seconds > 0 and seen == 12


def test_result_lines_are_picked_from_printed_output():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "Validation accuracy (best epoch 7): 85.0%\nsome chatter\nP@1: 0.779  Recall@5: 0.935\n"
        "With flip test-time augmentation: validation 86.2%\nembed + search: mean 1.27 ms\n"))]
    nb.cells = [cell]
    picked = [line for line in _printed_text(nb) if RESULT_LINE.search(line)]
    assert picked == ["Validation accuracy (best epoch 7): 85.0%", "P@1: 0.779  Recall@5: 0.935",
                      "With flip test-time augmentation: validation 86.2%", "embed + search: mean 1.27 ms"]


def test_machine_description_names_torch():
    assert f"torch {torch.__version__}" in machine_description()
