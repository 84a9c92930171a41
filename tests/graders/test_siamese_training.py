"""Graders of notebook 05 (``test_siamese_encoder``, ``test_siamese_network``, ``test_pairwise_distances``,
``test_batch_hard_triplet_loss``, ``test_recall_at_k``, ``test_projection_head``) against the answers in
mutants_siamese_training."""

import mutants_siamese_training as m
from harness import Grader, first_hint_tests, grader_tests, hint_tests

from helper_utils.reference import (ProjectionHead, SiameseEncoder, SiameseNetwork, batch_hard_triplet_loss,
                                    pairwise_distances, recall_at_k)

GRADERS = {
    "test_siamese_encoder": Grader(SiameseEncoder, m.ENCODER_CORRECT, m.ENCODER_STUBS, m.ENCODER_MUTANTS),
    "test_siamese_network": Grader(SiameseNetwork, m.NETWORK_CORRECT, m.NETWORK_STUBS, m.NETWORK_MUTANTS),
    "test_pairwise_distances": Grader(pairwise_distances, m.PAIRWISE_CORRECT, m.PAIRWISE_STUBS, m.PAIRWISE_MUTANTS),
    "test_batch_hard_triplet_loss": Grader(batch_hard_triplet_loss, m.LOSS_CORRECT, m.LOSS_STUBS, m.LOSS_MUTANTS),
    "test_recall_at_k": Grader(recall_at_k, m.RECALL_CORRECT, m.RECALL_STUBS, m.RECALL_MUTANTS),
    "test_projection_head": Grader(ProjectionHead, m.HEAD_CORRECT, m.HEAD_STUBS, m.HEAD_MUTANTS),
}
globals().update(grader_tests(GRADERS))

HINTS = [  # (grader, mutant, words its hint must say)
    ("test_siamese_encoder", m.MaxPoolEncoder, "not max pooling"),
    ("test_siamese_encoder", m.CopiesBackboneEncoder, "not a copy"),
    ("test_siamese_encoder", m.FixedKernelEncoder, "AdaptiveAvgPool2d(1)"),
    ("test_siamese_encoder", m.FrozenBackboneEncoder, "requires_grad=False"),
    ("test_siamese_network", m.SwappedOrder, "in that order"),
    ("test_siamese_network", m.NormalisesForwardOnly, "no normalisation"),
    ("test_pairwise_distances", m.pairwise_squared, "squared distances: take the square root"),
    ("test_pairwise_distances", m.pairwise_plain_sqrt, "clamp the squared distances before the square root"),
    ("test_pairwise_distances", m.pairwise_eps, "sqrt(eps)"),
    ("test_pairwise_distances", m.pairwise_diagonal_only, "identical rows are at distance 0 too"),
    ("test_pairwise_distances", m.pairwise_cosine, "not cosine similarity"),
    ("test_pairwise_distances", m.pairwise_centres_in_place, "in place"),
    ("test_pairwise_distances", m.pairwise_numpy, "NumPy cuts the autograd graph"),
    ("test_batch_hard_triplet_loss", m.loss_nearest_positive, "*farthest* positive"),
    ("test_batch_hard_triplet_loss", m.loss_farthest_negative, "*nearest* negative"),
    ("test_batch_hard_triplet_loss", m.loss_self_positive, "not its own positive"),
    ("test_batch_hard_triplet_loss", m.loss_mean_over_all, "not over all the anchors"),
    ("test_batch_hard_triplet_loss", m.loss_sum, "don't sum"),
    ("test_batch_hard_triplet_loss", m.loss_no_hinge, "apply the hinge"),
    ("test_batch_hard_triplet_loss", m.loss_margin_subtracted, "the margin is added"),
    ("test_batch_hard_triplet_loss", m.loss_squared, "not squared distances"),
    ("test_recall_at_k", m.recall_includes_self, "leave the query out"),
    ("test_recall_at_k", m.recall_drops_first_column, "dropping the first column"),
    ("test_recall_at_k", m.recall_farthest, "take the k nearest"),
    ("test_recall_at_k", m.recall_precision, "precision@k"),
    ("test_recall_at_k", m.recall_tensor, ".item()"),
    ("test_recall_at_k", m.recall_cosine, "not cosine similarity"),
    ("test_recall_at_k", m.recall_unclipped_k, "min(k, N - 1)"),
]
globals().update(hint_tests(HINTS))

FIRST_HINTS = [  # mistakes whose first hint used to point elsewhere: the first failure must name them
    ("test_recall_at_k", m.recall_skips_lonely_queries, "count it as a miss"),
    ("test_recall_at_k", m.recall_labels_without_column, "labels[:, None]"),
    ("test_recall_at_k", m.recall_farthest, "you took the k farthest items"),
    ("test_recall_at_k", m.recall_normalises_in_place, "don't modify the inputs in place"),
    ("test_batch_hard_triplet_loss", m.loss_labels_without_column, "labels[:, None] == labels[None, :]"),
    ("test_batch_hard_triplet_loss", m.loss_masks_multiplied, "the minimum picks them"),
    ("test_batch_hard_triplet_loss", m.loss_active_anchors_only, "dividing by the active"),
    ("test_batch_hard_triplet_loss", m.loss_normalises_first, "don't L2-normalise them first"),
    ("test_batch_hard_triplet_loss", m.loss_semi_hard, "that is semi-hard mining"),
    ("test_batch_hard_triplet_loss", m.loss_margin_subtracted, "the margin is added"),
    ("test_batch_hard_triplet_loss", m.loss_normalises_in_place, "don't modify the inputs in place"),
    ("test_pairwise_distances", m.pairwise_centres_in_place, "don't modify the inputs in place"),
    ("test_projection_head", m.NoNormalisationHead, "normalise the output"),
    ("test_projection_head", m.ReluHead, "no activation"),
    ("test_projection_head", m.RandomWeightHead, "start the weight as the identity"),
    ("test_projection_head", m.RandomBiasHead, "start the bias at zero"),
    ("test_projection_head", m.ColumnsHead, "not each column"),
    ("test_projection_head", m.InputNormalisedHead, "not its input"),
    ("test_projection_head", m.HardCodedHead, "not a fixed number like 64"),
    ("test_projection_head", m.InPlaceHead, "don't modify the inputs in place"),
    ("test_projection_head", m.TransposedHead, "transposed matrix"),
]
globals().update(first_hint_tests(FIRST_HINTS))


def test_outputs_in_another_order_are_told_the_order_not_a_copy(capsys):
    import unittests

    for answer in (m.SwappedOrder, m.RotatedOrder):
        report = unittests.test_siamese_network(answer)
        hints = [r.hint for r in report.results if not r.passed]
        assert hints and all("(anchor, positive, negative)" in hint for hint in hints), hints
        assert not any("cop" in hint for hint in hints), hints
