"""Graders for the course's exercises: one function per exercise.

Call one after the exercise cell, e.g. ``unittests.test_block(InvertedResidualBlock)``.
Each prints what it checked and returns a report that is truthy when every case passed.
Set ``UNITTESTS_STRICT=1`` to make a failing grader raise (CI does).
"""

from unittests.framework import GraderFailed, Report, STRICT_ENV
from unittests.data_pipeline import test_class_weights, test_transforms
from unittests.inverted_residual_block import test_block
from unittests.backbone_and_classifier import test_backbone, test_classifier
from unittests.triplet_dataset import test_triplet_dataset
from unittests.siamese_training import (test_batch_hard_triplet_loss, test_pairwise_distances, test_projection_head,
                                        test_recall_at_k, test_siamese_encoder, test_siamese_network)
from unittests.visual_search import test_find_closest, test_get_embeddings, test_query_embedding
from unittests.evaluation_and_explainability import test_grad_cam

__all__ = [
    "GraderFailed",
    "Report",
    "STRICT_ENV",
    "test_transforms",
    "test_class_weights",
    "test_block",
    "test_backbone",
    "test_classifier",
    "test_triplet_dataset",
    "test_siamese_encoder",
    "test_siamese_network",
    "test_pairwise_distances",
    "test_batch_hard_triplet_loss",
    "test_recall_at_k",
    "test_projection_head",
    "test_query_embedding",
    "test_get_embeddings",
    "test_find_closest",
    "test_grad_cam",
]
