"""Graders for the course's exercises: one function per exercise.

Call one after the exercise cell, e.g. ``unittests.test_block(InvertedResidualBlock)``.
Each prints what it checked and returns a report that is truthy when every case passed.
Set ``UNITTESTS_STRICT=1`` to make a failing grader raise (CI does).

A cell that runs an exercise's answer starts with ``unittests.require("name")``: while the exercise
is unfinished, the cell stops there with one line naming it and its section.

Names are imported on first use (PEP 562), as in ``helper_utils``: ``import unittests`` stays
fast, and the tools that only read notebooks (``unittests.grading.cells``) do not import torch.
"""

from importlib import import_module

_EXPORTS = {
    "unittests.framework": ["GraderFailed", "Report", "STRICT_ENV"],
    "unittests.data_pipeline": ["test_transforms", "test_class_weights"],
    "unittests.inverted_residual_block": ["test_block"],
    "unittests.backbone_and_classifier": ["test_backbone", "test_classifier"],
    "unittests.triplet_dataset": ["test_triplet_dataset"],
    "unittests.siamese_training": ["test_siamese_encoder", "test_siamese_network", "test_pairwise_distances",
                                   "test_batch_hard_triplet_loss", "test_recall_at_k", "test_projection_head"],
    "unittests.visual_search": ["test_query_embedding", "test_get_embeddings", "test_find_closest"],
    "unittests.evaluation_and_explainability": ["test_grad_cam"],
    "unittests.unfinished": ["UnfinishedExercise", "require"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'unittests' has no attribute {name!r}")
    value = getattr(import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
