"""The figures notebook 05 draws from its measurements: distance histograms and bootstrap intervals."""

import numpy as np

from helper_utils.plotting import plot_distance_histograms, plot_intervals


def test_distance_histograms_split_same_class_from_other_class_pairs():
    labels = [0, 0, 1, 1]
    distances = np.array([[0, 1, 5, 5], [1, 0, 5, 5], [5, 5, 0, 2], [5, 5, 2, 0]], dtype=float)
    fig = plot_distance_histograms({"before": distances, "after": distances / 2}, labels, bins=5)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["before", "after"]
    same, other = (sum(patch.get_height() * patch.get_width() for patch in container)
                   for container in axes[0].containers)
    assert np.isclose(same, 1.0) and np.isclose(other, 1.0)  # each a density over its own pairs


def test_intervals_draw_one_bar_per_comparison_and_grey_the_ones_that_cross_zero():
    fig = plot_intervals({"P@1": {"a - b": (0.05, 0.01, 0.09), "c - b": (0.0, -0.03, 0.03)},
                          "mAP@R": {"a - b": (0.1, 0.08, 0.12), "c - b": (0.02, -0.01, 0.04)}})
    assert [ax.get_title() for ax in fig.axes] == ["P@1", "mAP@R"]
    assert [label.get_text() for label in fig.axes[0].get_yticklabels()] == ["a - b", "c - b"]
    colours = [line.get_color() for line in fig.axes[0].lines if line.get_marker() == "o"]
    assert colours == ["tab:blue", "tab:gray"]
