"""The concept diagrams: each function returns a figure that shows what its notebook explains."""

import matplotlib

matplotlib.use("Agg")  # no window: tests draw off-screen

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from helper_utils import diagrams


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _texts(fig: Figure) -> str:
    """All the text drawn in a figure (titles, labels, box contents), one string."""
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def _pixels(fig: Figure) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


EXPECTED = {
    "inverted_residual_block": ["expand", "depthwise", "project", "shortcut", "ReLU", "+", "no ReLU",
                                "8x8x32", "8x8x192", "4x4x192", "4x4x64"],
    "backbone": ["stem", "block 1", "block 2", "block 3", "64x64x3", "32x32x16", "16x16x24", "8x8x32", "4x4x64",
                 "backbone", "head", "avg pool", "linear -> 7"],
    "triplet_geometry": ["anchor", "positive", "negative", "margin 0.5", "before a training step",
                         "after a training step", "d(a, p)", "d(a, n)"],
    "search_pipeline": ["catalog photos", "encoder", "embeddings", "index", "query photo", "query embedding",
                        "k nearest", "results"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_diagram_is_a_figure_with_its_labels(name):
    fig = getattr(diagrams, name)()
    assert isinstance(fig, Figure)
    text = _texts(fig)
    missing = [label for label in EXPECTED[name] if label not in text]
    assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_diagrams_are_deterministic(name):
    first, second = getattr(diagrams, name)(), getattr(diagrams, name)()
    assert np.array_equal(_pixels(first), _pixels(second))


def test_block_without_shape_change_has_no_shortcut():
    text = _texts(diagrams.inverted_residual_block(32, 32, stride=1))
    assert "shortcut" not in text and "x itself" in text and "8x8x32" in text


def test_triplet_losses_are_computed_from_the_drawn_points():
    fig = diagrams.triplet_geometry(margin=0.5)
    before, after = (ax.get_title() for ax in fig.axes)
    d_ap, d_an = (float(v) for v in before.split("max(0, ")[1].split(" + ")[0].split(" - "))
    assert before.endswith(f"= {max(0.0, d_ap - d_an + 0.5):.2f}") and not before.endswith("= 0.00")
    assert after.endswith("= 0.00")  # the step has done its job


def test_search_pipeline_shows_k_and_the_embedding_size():
    text = _texts(diagrams.search_pipeline(k=3, dim=128))
    assert "k = 3" in text and "1 x 128" in text and "N x 128" in text


@pytest.mark.parametrize("call, words", [
    (lambda: diagrams.inverted_residual_block(stride=3), "stride should be 1 or 2, got 3"),
    (lambda: diagrams.inverted_residual_block(in_channels=0), "in_channels should be a positive int, got 0"),
    (lambda: diagrams.triplet_geometry(margin=0), "margin should be in (0, 1], got 0"),
])
def test_bad_arguments_say_what_was_got_and_allowed(call, words):
    with pytest.raises(ValueError) as error:
        call()
    assert words in str(error.value)
