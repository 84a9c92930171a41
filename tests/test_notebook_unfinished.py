"""Learner notebooks run top to bottom with every exercise untouched: one line naming the exercise, no traceback.

Each learner notebook (as ``make release`` generates it) runs in a real kernel until its first error, as
JupyterLab's Run All does. That error must be the one line of ``unittests.require`` naming the first
exercise a cell needs and its section, with no raw traceback anywhere before it, and no training: a
first cell patches the kit's training loops to refuse, so training before the check fails this test
instead of taking minutes. A notebook that loads a trained model before its first exercise (06 loads the
encoder, 07 the classifier) gets quick ones (one epoch of each recipe) in a temporary checkpoint folder,
as notebooks 03 and 05 would have left them; the others get an empty one.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from helper_utils.paths import CHECKPOINT_ENV, NOTEBOOKS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# notebook -> (the exercise its first demo cell needs, the number of that exercise's section)
FIRST_NEEDED = {
    "01_data_pipeline": ("compute_class_weights", 6),
    "02_inverted_residual_block": ("InvertedResidualBlock", 2),
    "03_backbone_and_classifier": ("MobileNetBackbone", 2),
    "04_triplet_dataset": ("TripletDataset", 3),
    "05_siamese_training": ("SiameseEncoder", 2),
    "06_visual_search": ("get_embeddings", 4),
    "07_evaluation_and_explainability": ("grad_cam", 5),
}
# notebooks that load a classifier or an encoder before their first exercise (05 checks its answers before it
# loads the backbone: it runs with an empty folder, so loading first would train, which this test refuses)
LOADS_MODELS = {"06_visual_search", "07_evaluation_and_explainability"}
CELL_TIMEOUT_S = 120

NO_TRAINING = '''\
import helper_utils.recipes
import helper_utils.training


def _refuse_training(*args, **kwargs):
    raise RuntimeError("TRAINING STARTED before the notebook checked its exercises")


for _module in (helper_utils.training, helper_utils.recipes):
    _module.train_classifier = _module.train_siamese = _refuse_training
'''
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def quick_checkpoints(tmp_path_factory):
    """A checkpoint folder with a classifier, its backbone and an encoder from one epoch of each recipe (seconds)."""
    from helper_utils.recipes import ClassifierRecipe, SiameseRecipe, load_or_train_encoder

    folder = tmp_path_factory.mktemp("checkpoints")
    load_or_train_encoder("cpu", save_dir=folder, progress=False, classifier_recipe=ClassifierRecipe(epochs=1),
                          siamese_recipe=SiameseRecipe(epochs=1))
    return folder


def _run_until_first_error(nb: nbformat.NotebookNode, cwd) -> int | None:
    """Execute ``nb`` in place, stopping at the first cell that raises (as Run All does); its index, or None."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    except CellExecutionError:
        return next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
                    and any(o.output_type == "error" for o in cell.outputs))
    return None


@pytest.mark.parametrize("stem", sorted(FIRST_NEEDED))
def test_untouched_exercise_stops_with_one_line(stem, tmp_path, monkeypatch, request):
    monkeypatch.delenv("UNITTESTS_STRICT", raising=False)  # a learner's kernel: graders report, never raise
    if stem in LOADS_MODELS:
        monkeypatch.setenv(CHECKPOINT_ENV, str(request.getfixturevalue("quick_checkpoints")))
    else:
        monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "checkpoints"))  # empty: loading one would train
    nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(NO_TRAINING))

    stopped = _run_until_first_error(nb, tmp_path)

    exercise, section = FIRST_NEEDED[stem]
    assert stopped is not None, f"{stem} ran to the end with its exercises untouched"
    errors = [(i, o) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
              for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1, f"{stem}: {len(errors)} errors"
    index, error = errors[0]
    lines = [ANSI.sub("", line) for line in error.traceback]
    assert error.ename == "UnfinishedExercise", f"{stem} cell {index} raised {error.ename}:\n" + "\n".join(lines)
    assert len(lines) == 1 and "\n" not in lines[0], f"{stem}: not one line:\n" + "\n".join(lines)
    assert f"`{exercise}` (section {section})" in lines[0], lines[0]
    assert nb.cells[index].source.startswith("unittests.require("), "it stops at the check, before the demo runs"
    before = [o for cell in nb.cells[:index] if cell.cell_type == "code" for o in cell.outputs]
    assert not any("Traceback" in str(o.get("text", "")) for o in before), f"{stem}: a traceback before the stop"
    graded = [cell for cell in nb.cells[:index] if "grader" in cell.metadata.get("tags", [])]
    assert graded and all("Nothing to grade yet" in "".join(o.get("text", "") for o in cell.outputs)
                          for cell in graded), f"{stem}: a grader before the stop did not report the stub"
