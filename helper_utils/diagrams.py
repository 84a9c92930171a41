"""Diagrams of the course's core ideas, drawn with matplotlib patches and arrows.

One function per concept, each returning its :class:`matplotlib.figure.Figure` (nothing random,
so a diagram looks the same on every run):

* :func:`inverted_residual_block` (notebook 02): expand -> depthwise -> project, the skip or
  shortcut, and the ReLU after the addition, with the tensor shapes between the stages;
* :func:`backbone` (notebook 03): stem and three blocks shrinking a 64x64x3 photo to 4x4x64, and
  where the backbone ends and the head begins;
* :func:`triplet_geometry` (notebook 04): anchor, positive, negative and the margin, before and
  after one training step, with the loss of each;
* :func:`search_pipeline` (notebook 06): the catalog embedded once into an index, and a query
  going through the same encoder to its k nearest catalog photos.

Shapes are written ``H x W x C``, the way one describes a photo; in PyTorch the same tensor is
``(B, C, H, W)``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

__all__ = ["inverted_residual_block", "backbone", "triplet_geometry", "search_pipeline"]

# One colour per kind of step, the same in every diagram.
POINTWISE = "#cfe2f3"  # 1x1 convolutions: mix channels
SPATIAL = "#d9ead3"  # 3x3 convolutions: look at neighbouring pixels
TENSOR = "#f3f3f3"  # data: photos, feature maps, embeddings
HEAD = "#fce5cd"  # task-specific layers
SKIP = "#ead1dc"  # the skip path
EDGE = "#444444"


def _canvas(width: float, height: float):
    """A figure whose axes use inches as data units (so circles stay round), without ticks or frame."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def _box(ax, x: float, y: float, w: float, h: float, text: str, color: str, fontsize: float = 10,
         bold_first_line: bool = True):
    """A rounded box centred on ``(x, y)``; the first line of ``text`` is its name, in bold."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=color, edgecolor=EDGE, linewidth=1.2, zorder=3))
    name, _, rest = text.partition("\n")
    weight = "bold" if bold_first_line else "normal"
    if rest:  # the name above the box's middle, the details below it
        ax.text(x, y + 0.06, name, ha="center", va="bottom", fontsize=fontsize + 1, fontweight=weight, zorder=4)
        ax.text(x, y - 0.02, rest, ha="center", va="top", fontsize=fontsize - 1, linespacing=1.3, zorder=4)
    else:
        ax.text(x, y, name, ha="center", va="center", fontsize=fontsize + 1, fontweight=weight, zorder=4)


def _arrow(ax, start, end, label: str | None = None, rad: float = 0.0, color: str = EDGE, style: str = "-|>",
           label_offset=(0.0, 0.14), fontsize: float = 9, linestyle: str = "-"):
    """An arrow from ``start`` to ``end`` (optionally curved by ``rad``), with a label at its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, linewidth=1.4, color=color,
                                 connectionstyle=f"arc3,rad={rad}", linestyle=linestyle, shrinkA=2, shrinkB=2))
    if label:
        mid = ((start[0] + end[0]) / 2 + label_offset[0], (start[1] + end[1]) / 2 + label_offset[1])
        ax.text(*mid, label, ha="center", va="bottom", fontsize=fontsize, color=color)


def inverted_residual_block(in_channels: int = 32, out_channels: int = 64, stride: int = 2,
                            expansion_factor: int = 6, size: int = 8):
    """The inverted residual block of notebook 02, with the shape of the tensor after every stage.

    Args:
        in_channels, out_channels, stride, expansion_factor: the block drawn; the default is the
            backbone's last block (32 -> 64 channels, stride 2, expansion 6).
        size: height and width of the input feature map.

    Returns:
        The figure: input -> expand (1x1) -> depthwise (3x3, stride) -> project (1x1, no ReLU)
        -> add -> ReLU -> output, and the skip path from the input to the add: the input itself
        when the shape does not change, a 1x1 "shortcut" convolution when it does.
    """
    if stride not in (1, 2):
        raise ValueError(f"stride should be 1 or 2, got {stride!r}")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("expansion_factor", expansion_factor), ("size", size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} should be a positive int, got {value!r}")
    hidden = in_channels * expansion_factor
    out_size = math.ceil(size / stride)
    needs_shortcut = stride != 1 or in_channels != out_channels
    fig, ax = _canvas(15.0, 5.2)
    y = 2.0
    _box(ax, 0.9, y, 1.4, 1.1, f"input x\n{size}x{size}x{in_channels}", TENSOR)
    _box(ax, 3.1, y, 2.2, 1.8, f"expand\n1x1 conv\n{in_channels} -> {hidden} channels\nBatchNorm, ReLU\n"
         f"out: {size}x{size}x{hidden}", POINTWISE)
    _box(ax, 5.9, y, 2.4, 1.8, f"depthwise\n3x3 conv, stride {stride}\none filter per channel\nBatchNorm, ReLU\n"
         f"out: {out_size}x{out_size}x{hidden}", SPATIAL)
    _box(ax, 8.7, y, 2.2, 1.8, f"project\n1x1 conv\n{hidden} -> {out_channels} channels\nBatchNorm, no ReLU\n"
         f"out: {out_size}x{out_size}x{out_channels}", POINTWISE)
    ax.add_patch(Circle((10.7, y), 0.3, facecolor="white", edgecolor=EDGE, linewidth=1.4))
    ax.text(10.7, y, "+", ha="center", va="center", fontsize=16, fontweight="bold")
    _box(ax, 12.0, y, 1.1, 0.8, "ReLU", HEAD)
    _box(ax, 13.9, y, 1.5, 1.1, f"output\n{out_size}x{out_size}x{out_channels}", TENSOR)

    _arrow(ax, (1.6, y), (2.0, y))
    _arrow(ax, (4.2, y), (4.7, y))
    _arrow(ax, (7.1, y), (7.6, y))
    _arrow(ax, (9.8, y), (10.4, y))
    _arrow(ax, (11.0, y), (11.45, y))
    _arrow(ax, (12.55, y), (13.15, y))

    # the skip path runs above the main path, from the input to the add
    top = 4.3
    ax.plot([0.9, 0.9, 10.7], [y + 0.55, top, top], color="#7f3f5f", linewidth=1.6, zorder=2)
    _arrow(ax, (10.7, top), (10.7, y + 0.3), color="#7f3f5f")
    if needs_shortcut:
        _box(ax, 5.9, top, 4.6, 1.0,
             f"shortcut\n1x1 conv, stride {stride}, {in_channels} -> {out_channels}, BatchNorm", SKIP)
        note = "the shape changes, so a 1x1 shortcut makes x the output's shape"
    else:
        _box(ax, 5.9, top, 3.2, 0.7, "skip: x itself", SKIP)
        note = "same shape in and out, so the skip is x itself"
    ax.text(5.9, top - 0.7, note, ha="center", va="center", fontsize=9, color="#7f3f5f", style="italic")
    ax.text(11.5, 0.6, "ReLU after the add:\nthis course's block (MobileNetV2 has none)", ha="center",
            va="center", fontsize=9, style="italic")
    ax.text(5.9, 0.4, "narrow -> wide -> narrow: the expanded tensor never leaves the block", ha="center",
            va="center", fontsize=9, style="italic")
    ax.set_title(f"Inverted residual block: {in_channels} -> {out_channels} channels, stride {stride}, "
                 f"expansion {expansion_factor}", fontsize=13)
    fig.tight_layout()
    return fig


# (name, what it does, output side, output channels) for a 64x64x3 photo
_BACKBONE_STAGES = [
    ("stem", "3x3 conv, stride 2\nBatchNorm, ReLU", 32, 16),
    ("block 1", "inverted residual\nstride 2, expansion 3", 16, 24),
    ("block 2", "inverted residual\nstride 2, expansion 3", 8, 32),
    ("block 3", "inverted residual\nstride 2, expansion 6", 4, 64),
]


def backbone(num_classes: int = 7):
    """The classifier of notebook 03: a backbone (stem + three blocks) and a head.

    Each feature map is drawn as a square whose side follows its height and width (64, 32, 16,
    8, 4) and is labelled ``H x W x C``: the photo shrinks while the channels grow.

    Returns:
        The figure, with the backbone (kept and reused by the siamese network of notebook 05)
        and the head (pool, flatten, linear: the classification part) marked.
    """
    fig, ax = _canvas(16.0, 4.6)
    y = 2.4
    maps = [("photo", 64, 3)] + [(name, side, channels) for name, _, side, channels in _BACKBONE_STAGES]
    xs = [0.9, 3.8, 6.7, 9.1, 11.2]
    for (name, side, channels), x in zip(maps, xs):
        half = 0.3 + 1.2 * side / 64  # 64 -> 1.5, 4 -> 0.375
        ax.add_patch(FancyBboxPatch((x - half / 2, y - half / 2), half, half, boxstyle="square,pad=0",
                                    facecolor=TENSOR if name == "photo" else SPATIAL, edgecolor=EDGE))
        ax.text(x, y - half / 2 - 0.25, f"{side}x{side}x{channels}", ha="center", va="top", fontsize=10,
                fontweight="bold")
    for (name, what, _, _), x0, x1 in zip(_BACKBONE_STAGES, xs[:-1], xs[1:]):
        _arrow(ax, (x0 + 0.85 if x0 == xs[0] else x0 + 0.55, y), (x1 - 0.55, y))
        ax.text((x0 + x1) / 2 + 0.1, y + 0.95, name, ha="center", va="bottom", fontsize=11, fontweight="bold")
        ax.text((x0 + x1) / 2 + 0.1, y + 0.9, what, ha="center", va="top", fontsize=8)
    # the head, read top to bottom
    _arrow(ax, (11.6, y), (12.2, y + 0.85))
    _box(ax, 13.2, y + 0.85, 1.9, 0.5, "avg pool -> 1x1x64", HEAD, fontsize=8, bold_first_line=False)
    _box(ax, 13.2, y, 1.9, 0.5, "flatten -> 64", HEAD, fontsize=8, bold_first_line=False)
    _box(ax, 13.2, y - 0.85, 1.9, 0.5, f"linear -> {num_classes}", HEAD, fontsize=8, bold_first_line=False)
    _arrow(ax, (13.2, y + 0.6), (13.2, y + 0.25))
    _arrow(ax, (13.2, y - 0.25), (13.2, y - 0.6))
    _arrow(ax, (14.2, y - 0.85), (14.8, y - 0.85))
    ax.text(15.35, y - 0.85, f"{num_classes}\nlogits", ha="center", va="center", fontsize=10)

    # brackets: which part is the backbone, which the head
    for x0, x1, label, color in [(0.2, 11.8, "backbone: features, reused by the siamese network (notebook 05)",
                                  "#38761d"),
                                 (12.15, 15.8, "head: this task only", "#b45f06")]:
        ax.plot([x0, x0, x1, x1], [0.55, 0.35, 0.35, 0.55], color=color, linewidth=1.6)
        ax.text((x0 + x1) / 2, 0.25, label, ha="center", va="top", fontsize=10, color=color, fontweight="bold")
    ax.set_title("MobileNet-like classifier: the photo shrinks, the channels grow", fontsize=13)
    fig.tight_layout()
    return fig


# Positions (in embedding units) of one triplet before and after a training step: the step pulls
# the positive in and pushes the negative out, so the loss drops to zero.
_TRIPLET_BEFORE = {"anchor": (0.0, 0.0), "positive": (1.2, 0.3), "negative": (-0.6, -1.2)}
_TRIPLET_AFTER = {"anchor": (0.0, 0.0), "positive": (0.7, 0.15), "negative": (-0.9, -1.8)}
_LABEL_AT = {"anchor": ((-10, 8), "right"), "positive": ((4, -18), "left"), "negative": ((10, -12), "left")}


def triplet_geometry(margin: float = 0.5):
    """Anchor, positive and negative in embedding space, before and after one training step.

    Args:
        margin: the triplet loss's margin, drawn as a ring around the anchor: the negative must lie
            outside ``d(anchor, positive) + margin``.

    Returns:
        The figure: two panels, each with the distances and the loss
        ``max(0, d(a, p) - d(a, n) + margin)`` computed from the points drawn.
    """
    if not 0 < margin <= 1.0:  # a wider ring would leave the drawing
        raise ValueError(f"margin should be in (0, 1], got {margin!r}")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    colours = {"anchor": "#1f77b4", "positive": "#2ca02c", "negative": "#d62728"}
    for ax, (title, points) in zip(axes, [("before a training step", _TRIPLET_BEFORE),
                                          ("after a training step", _TRIPLET_AFTER)]):
        a, p, n = (points[k] for k in ("anchor", "positive", "negative"))
        d_ap, d_an = math.dist(a, p), math.dist(a, n)
        loss = max(0.0, d_ap - d_an + margin)
        # inside the inner circle: as close as the positive; the ring up to + margin is where a negative still costs
        ax.add_patch(Circle(a, d_ap + margin, facecolor="#fde9e9", edgecolor="#d62728", linestyle="--",
                            linewidth=1.2))
        ax.add_patch(Circle(a, d_ap, facecolor="#e8f4e8", edgecolor="#2ca02c", linestyle="--", linewidth=1.2))
        for name, (x, y) in points.items():
            ax.add_patch(Circle((x, y), 0.07, color=colours[name], zorder=3))
            offset, align = _LABEL_AT[name]
            ax.annotate(name, (x, y), xytext=offset, textcoords="offset points", fontsize=11, ha=align,
                        color=colours[name], fontweight="bold", zorder=4)
        ax.plot(*zip(a, p), color=colours["positive"], linewidth=1.5)
        ax.plot(*zip(a, n), color=colours["negative"], linewidth=1.5)
        ax.text((a[0] + p[0]) / 2, (a[1] + p[1]) / 2 - 0.1, f"d(a, p)\n= {d_ap:.2f}", fontsize=10,
                ha="center", va="top", color=colours["positive"])
        ax.text((a[0] + n[0]) / 2 - 0.12, (a[1] + n[1]) / 2, f"d(a, n) = {d_an:.2f}", fontsize=10, ha="right",
                va="center", color=colours["negative"])
        # the margin: the width of the ring, drawn along the positive's direction
        ux, uy = (p[0] - a[0]) / d_ap, (p[1] - a[1]) / d_ap
        inner, outer = (a[0] + ux * d_ap, a[1] + uy * d_ap), (a[0] + ux * (d_ap + margin), a[1] + uy * (d_ap + margin))
        ax.add_patch(FancyArrowPatch(inner, outer, arrowstyle="<|-|>", mutation_scale=10, color="#7f3f5f",
                                     linewidth=1.3))
        ax.text(outer[0] + 0.05, outer[1] + 0.08, f"margin {margin:g}", fontsize=10, color="#7f3f5f")
        if points is _TRIPLET_BEFORE:  # what the step will do
            after = _TRIPLET_AFTER
            for name in ("positive", "negative"):
                ax.add_patch(FancyArrowPatch(points[name], after[name], arrowstyle="-|>", mutation_scale=14,
                                             color=colours[name], linewidth=1.4, linestyle=":",
                                             connectionstyle="arc3,rad=0.4", zorder=4))
            ax.text(0.0, -2.45, "loss > 0: the gradient pulls the positive in\nand pushes the negative out (dotted)",
                    ha="center", fontsize=10, style="italic")
        else:
            ax.text(0.0, -2.45, "loss = 0: the negative lies beyond d(a, p) + margin,\nthis triplet teaches nothing more",
                    ha="center", fontsize=10, style="italic")
        ax.set_title(f"{title}\nloss = max(0, {d_ap:.2f} - {d_an:.2f} + {margin:g}) = {loss:.2f}", fontsize=12)
        ax.set_xlim(-2.4, 2.4)
        ax.set_ylim(-2.6, 1.9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Triplet loss: the anchor must be closer to the positive than to the negative, by the margin",
                 fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.95))  # leave the suptitle its own line
    return fig


def search_pipeline(k: int = 5, dim: int = 64):
    """The visual search engine of notebook 06: what runs once, and what runs for every query.

    Args:
        k: how many nearest catalog photos a search returns.
        dim: the embedding's length.

    Returns:
        The figure: catalog photos -> encoder -> embeddings -> index (once); query photo ->
        the same encoder -> query embedding -> k nearest in the index -> results (every search).
    """
    fig, ax = _canvas(15.0, 5.0)
    top, bottom = 3.6, 1.3
    ax.text(0.1, top + 0.95, "once, offline: embed the catalog", fontsize=11, fontweight="bold", color="#38761d")
    ax.text(0.1, bottom + 0.95, "for every search", fontsize=11, fontweight="bold", color="#b45f06")
    _box(ax, 1.4, top, 2.2, 1.0, "catalog photos\nN photos, 64x64x3", TENSOR)
    _box(ax, 4.6, top, 2.0, 1.0, "encoder\neval mode, no gradients", SPATIAL)
    _box(ax, 7.9, top, 2.4, 1.0, f"embeddings\nN x {dim}, length 1", TENSOR)
    _box(ax, 11.2, top, 2.2, 1.0, "index\nthe N embeddings", HEAD)
    _arrow(ax, (2.5, top), (3.6, top))
    _arrow(ax, (5.6, top), (6.7, top))
    _arrow(ax, (9.1, top), (10.1, top))

    _box(ax, 1.4, bottom, 2.2, 1.0, "query photo\n1 photo, any size", TENSOR)
    _box(ax, 4.6, bottom, 2.0, 1.0, "encoder\nthe same weights", SPATIAL)
    _box(ax, 7.9, bottom, 2.4, 1.0, f"query embedding\n1 x {dim}", TENSOR)
    _box(ax, 11.2, bottom, 2.2, 1.0, f"k nearest\nk = {k}, by distance", HEAD)
    _box(ax, 14.0, bottom, 1.6, 1.0, f"results\n{k} catalog photos", TENSOR)
    _arrow(ax, (2.5, bottom), (3.6, bottom), "transform", label_offset=(0, 0.05))
    _arrow(ax, (5.6, bottom), (6.7, bottom))
    _arrow(ax, (9.1, bottom), (10.1, bottom))
    _arrow(ax, (12.3, bottom), (13.2, bottom))
    _arrow(ax, (11.2, top - 0.5), (11.2, bottom + 0.5), "search in", label_offset=(0.55, -0.1))
    _arrow(ax, (4.6, top - 0.5), (4.6, bottom + 0.5), "same model", label_offset=(0.62, -0.1), linestyle="--",
           style="-")
    ax.set_title("Visual search: embed the catalog once, then each query is one forward pass and a nearest-"
                 "neighbour search", fontsize=12)
    fig.tight_layout()
    return fig
