"""The gradebook's points table: which grader checks which exercise, and what the exercise is worth.

``python -m unittests.grade`` awards an exercise's points when every case of its grader passes
(with ``--partial``, in proportion to the cases passed). To change a weight, edit ``points`` here; to add an exercise, add a row
with the grader's name (``unittests.test_*``) and the names its exercise cell defines (the
grader tells a missing or renamed exercise by them).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Exercise", "EXERCISES", "notebook_exercises"]


@dataclass(frozen=True)
class Exercise:
    """One graded exercise of one learner notebook."""

    notebook: str  # the learner notebook's file name without .ipynb, e.g. "02_inverted_residual_block"
    name: str  # as the gradebook shows it
    grader: str  # the unittests function that checks it
    defines: tuple[str, ...]  # the names its exercise cell defines
    points: int = 1

    @property
    def call(self) -> str:
        """The grader cell's code, e.g. ``unittests.test_block(InvertedResidualBlock)``."""
        return f"unittests.{self.grader}({', '.join(self.defines)})"


EXERCISES: tuple[Exercise, ...] = (
    Exercise("01_data_pipeline", "transforms", "test_transforms", ("train_transform", "val_transform")),
    Exercise("01_data_pipeline", "compute_class_weights", "test_class_weights", ("compute_class_weights",)),
    Exercise("02_inverted_residual_block", "InvertedResidualBlock", "test_block", ("InvertedResidualBlock",)),
    Exercise("03_backbone_and_classifier", "MobileNetBackbone", "test_backbone", ("MobileNetBackbone",)),
    Exercise("03_backbone_and_classifier", "MobileNetLikeClassifier", "test_classifier",
             ("MobileNetLikeClassifier",)),
    Exercise("04_triplet_dataset", "TripletDataset", "test_triplet_dataset", ("TripletDataset",)),
    Exercise("05_siamese_training", "SiameseEncoder", "test_siamese_encoder", ("SiameseEncoder",)),
    Exercise("05_siamese_training", "SiameseNetwork", "test_siamese_network", ("SiameseNetwork",)),
    Exercise("05_siamese_training", "pairwise_distances", "test_pairwise_distances", ("pairwise_distances",)),
    Exercise("05_siamese_training", "batch_hard_triplet_loss", "test_batch_hard_triplet_loss",
             ("batch_hard_triplet_loss",)),
    Exercise("05_siamese_training", "recall_at_k", "test_recall_at_k", ("recall_at_k",)),
    Exercise("05_siamese_training", "ProjectionHead", "test_projection_head", ("ProjectionHead",)),
    Exercise("06_visual_search", "get_query_img_embedding", "test_query_embedding", ("get_query_img_embedding",)),
    Exercise("06_visual_search", "get_embeddings", "test_get_embeddings", ("get_embeddings",)),
    Exercise("06_visual_search", "find_closest", "test_find_closest", ("find_closest",)),
    Exercise("07_evaluation_and_explainability", "grad_cam", "test_grad_cam", ("grad_cam",)),
)

def notebook_exercises(notebook: str) -> tuple[Exercise, ...]:
    """The exercises of ``notebook`` (its file name without .ipynb), in the notebook's order."""
    return tuple(e for e in EXERCISES if e.notebook == notebook)

