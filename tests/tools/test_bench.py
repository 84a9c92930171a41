"""The benchmark plumbing on tiny inputs (the real runs are `make bench` and `make bench-course`)."""

import json
import os
import subprocess
import sys

import nbformat
import torch

from helper_utils.device import machine_description
from tools.bench import time_epoch
from helper_utils.paths import REPO
from tools.course_report import result_lines


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
    picked = result_lines(cell.outputs)
    assert picked == ["Validation accuracy (best epoch 7): 85.0%", "P@1: 0.779  Recall@5: 0.935",
                      "With flip test-time augmentation: validation 86.2%", "embed + search: mean 1.27 ms"]


def test_machine_description_names_torch():
    assert f"torch {torch.__version__}" in machine_description()


NOTEBOOK_PRINTING_A_RESULT = """
import nbformat
nb = nbformat.v4.new_notebook()
nb.cells = [nbformat.v4.new_code_cell('print("Validation accuracy (best epoch 3): 81.5%")\\nprint("chatter")')]
nbformat.write(nb, "demo.ipynb")
"""


def test_course_report_reads_the_cells_nbval_executed(tmp_path):
    subprocess.run([sys.executable, "-c", NOTEBOOK_PRINTING_A_RESULT], cwd=tmp_path, check=True)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "tools.course_report", "--nbval-lax", "demo.ipynb",
                          "--course-report", "report.json", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "course results" in out.stdout and "Validation accuracy (best epoch 3): 81.5%" in out.stdout, out.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["notebooks"]["demo"]["results"] == ["Validation accuracy (best epoch 3): 81.5%"]
