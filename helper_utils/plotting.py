"""Figures for the notebooks: sample grids, class balance, training curves, confusion matrices, search results,
Grad-CAM heatmaps, 2-D embedding maps, distance histograms and bootstrap intervals."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = [
    "show_grid",
    "plot_class_balance",
    "plot_history",
    "plot_confusion_matrix",
    "show_triplets",
    "show_search_results",
    "overlay_cam",
    "show_cams",
    "plot_embedding_map",
    "plot_distance_histograms",
    "plot_intervals",
]


def _to_image(image) -> np.ndarray:
    """A displayable ``(H, W, 3)`` array from a PIL image or a normalised ``(3, H, W)`` tensor."""
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().float()
        if array.min() < 0:  # normalised with mean 0.5, std 0.5: back to [0, 1]
            array = array * 0.5 + 0.5
        return array.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.asarray(image.convert("RGB"))


def show_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 8, size: float = 1.6,
              suptitle: str | None = None):
    """Show images in a grid, each with an optional title; returns the figure."""
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.3)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(_to_image(image))
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_class_balance(counts: dict[str, dict[str, int]]):
    """Bar chart of images per class for each split, e.g. ``{"train": {"dress": 241, ...}, ...}``."""
    splits = list(counts)
    classes = list(next(iter(counts.values())))
    x = np.arange(len(classes))
    width = 0.8 / len(splits)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for i, split in enumerate(splits):
        ax.bar(x + i * width, [counts[split][c] for c in classes], width, label=split)
    ax.set_xticks(x + width * (len(splits) - 1) / 2, classes, rotation=30)
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_history(history: dict, metrics: Sequence[str] = ("train_loss", "val_loss", "val_acc")):
    """Training curves: losses on the left, accuracy (or other metrics) on the right."""
    losses = [m for m in metrics if "loss" in m and m in history]
    others = [m for m in metrics if "loss" not in m and m in history]
    fig, axes = plt.subplots(1, 2 if others else 1, figsize=(11 if others else 5.5, 3.5), squeeze=False)
    for m in losses:
        axes[0, 0].plot(range(1, len(history[m]) + 1), history[m], label=m)
    axes[0, 0].set_xlabel("epoch"), axes[0, 0].set_title("loss"), axes[0, 0].legend()
    if others:
        for m in others:
            axes[0, 1].plot(range(1, len(history[m]) + 1), history[m], label=m)
        axes[0, 1].set_xlabel("epoch"), axes[0, 1].set_title("metrics"), axes[0, 1].legend()
    fig.tight_layout()
    return fig


def plot_confusion_matrix(targets, predictions, class_names: Sequence[str], normalize: bool = True):
    """Confusion matrix (rows: true class) drawn by scikit-learn."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(6, 5.5))
    ConfusionMatrixDisplay.from_predictions(
        np.asarray(targets), np.asarray(predictions), labels=list(range(len(class_names))),
        display_labels=class_names, normalize="true" if normalize else None,
        values_format=".2f" if normalize else "d", cmap="Blues", ax=ax, colorbar=False, xticks_rotation=45)
    fig.tight_layout()
    return fig


def show_triplets(triplets: Sequence, class_names: Sequence[str] | None = None, labels: Sequence | None = None):
    """One row per ``(anchor, positive, negative)``."""
    images, titles = [], []
    for i, (anchor, positive, negative) in enumerate(triplets):
        images += [anchor, positive, negative]
        if labels is not None and class_names is not None:
            a, p, n = labels[i]
            titles += [f"anchor: {class_names[a]}", f"positive: {class_names[p]}", f"negative: {class_names[n]}"]
        else:
            titles += ["anchor", "positive", "negative"]
    return show_grid(images, titles, ncols=3, size=1.8)


def show_search_results(query, results: Sequence, labels: Sequence[str], distances: Sequence[float],
                        query_label: str | None = None):
    """The query, then its nearest catalog items with their label and distance (same class in green)."""
    n = len(results) + 1
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n, 2.4))
    axes[0].imshow(_to_image(query))
    axes[0].set_title(f"query\n{query_label or ''}", fontsize=9)
    for ax, image, label, distance in zip(axes[1:], results, labels, distances):
        ax.imshow(_to_image(image))
        colour = "green" if query_label is not None and label == query_label else "black"
        ax.set_title(f"{label}\nd={distance:.2f}", fontsize=9, color=colour)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def overlay_cam(image, cam, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """A photo with its heatmap blended on top: ``(H, W, 3)`` floats in ``[0, 1]``.

    Args:
        image: PIL image, or normalised ``(3, H, W)`` tensor (as the model sees it).
        cam: ``(H, W)`` tensor or array in ``[0, 1]``, the photo's size.
        alpha: weight of the heatmap (0: the photo only).
        cmap: a matplotlib colormap name.

    Raises:
        ValueError: for a heatmap of another size than the photo, or ``alpha`` outside ``[0, 1]``.
    """
    import matplotlib

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha should be between 0 and 1, got {alpha!r}")
    photo = _to_image(image)
    photo = photo / 255.0 if np.issubdtype(photo.dtype, np.integer) else photo.astype(np.float64)  # PIL: uint8
    heat = cam.detach().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam)
    if heat.shape != photo.shape[:2]:
        raise ValueError(f"the heatmap should have the photo's size {photo.shape[:2]}, got {heat.shape}")
    colours = matplotlib.colormaps[cmap](np.clip(heat, 0.0, 1.0))[..., :3]  # (H, W, 3)
    return (1.0 - alpha) * photo + alpha * colours


def show_cams(images: Sequence, cams, titles: Sequence[str] | None = None, row_titles: Sequence[str] | None = None,
              alpha: float = 0.45, size: float = 1.7):
    """One column per photo: the photo on top, then one Grad-CAM overlay per row below it.

    Args:
        images: ``B`` PIL images or normalised ``(3, H, W)`` tensors.
        cams: one ``(B, H, W)`` tensor of heatmaps in ``[0, 1]``, or a list of them (one row each).
        titles: one title per photo.
        row_titles: one label per heatmap row, written on the left (e.g. the layer).
    """
    rows = list(cams) if isinstance(cams, (list, tuple)) else [cams]  # a list: several rows of heatmaps
    n = len(images)
    fig, axes = plt.subplots(1 + len(rows), n, figsize=(n * size, (1 + len(rows)) * (size + 0.1) + 0.4),
                             squeeze=False)
    for j, image in enumerate(images):
        axes[0, j].imshow(_to_image(image))
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
        for i, row in enumerate(rows, start=1):
            axes[i, j].imshow(overlay_cam(image, row[j], alpha=alpha))
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
        ax.spines[:].set_visible(False)
    for i, label in enumerate(row_titles or [], start=1):
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return fig


def plot_embedding_map(maps: dict, labels: Sequence[int], class_names: Sequence[str], size: float = 4.5):
    """Scatter plots of 2-D projections of the same embeddings, one panel per method, coloured by class.

    Args:
        maps: ``{"PCA": points (N, 2), "t-SNE": points (N, 2), ...}``.
        labels: class index of every point.
        class_names: legend entries.
    """
    labels = np.asarray(labels)
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps) + 1.6, size), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (name, points) in zip(axes[0], maps.items()):
        points = np.asarray(points)
        for c, class_name in enumerate(class_names):
            members = labels == c
            ax.scatter(points[members, 0], points[members, 1], s=10, alpha=0.8, color=colours(c % 10),
                       label=class_name)
        ax.set_title(name)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=1.5)
    fig.tight_layout()
    return fig


def plot_distance_histograms(distances: dict, labels: Sequence[int], bins: int = 40, size: float = 4.0):
    """Histograms of same-class against other-class distances, one panel per set of distances.

    Args:
        distances: ``{"before the head": (N, N) array, ...}``: every pairwise distance of one catalog.
        labels: class index of each of the ``N`` items.
    """
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]  # (N, N)
    upper = np.triu(np.ones_like(same, dtype=bool), k=1)  # each pair once, never an item with itself
    fig, axes = plt.subplots(1, len(distances), figsize=(size * len(distances), size * 0.75), squeeze=False)
    for ax, (name, values) in zip(axes[0], distances.items()):
        values = np.asarray(values)
        edges = np.linspace(0.0, values[upper].max(), bins + 1)
        ax.hist(values[upper & same], bins=edges, density=True, alpha=0.6, label="same class")
        ax.hist(values[upper & ~same], bins=edges, density=True, alpha=0.6, label="other class")
        ax.set_title(name), ax.set_xlabel("distance")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_intervals(panels: dict, size: float = 4.0):
    """Estimates with their intervals as horizontal bars, one panel per metric, with a line at 0.

    Args:
        panels: ``{"P@1": {"mined vs before": (estimate, low, high), ...}, ...}``. A bar that does not
            cross 0 is drawn solid, one that does is drawn grey.
    """
    rows = list(next(iter(panels.values())))
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), 0.45 * len(rows) + 1.2), sharey=True,
                             squeeze=False)
    for ax, (metric, intervals) in zip(axes[0], panels.items()):
        for y, name in enumerate(rows):
            estimate, low, high = intervals[name]
            colour = "tab:blue" if low > 0 or high < 0 else "tab:gray"
            ax.errorbar(estimate, y, xerr=[[estimate - low], [high - estimate]], fmt="o", color=colour, capsize=4)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.locator_params(axis="x", nbins=5)  # few ticks: the labels of a narrow panel do not overlap
        ax.set_title(metric), ax.set_xlabel("difference")
    axes[0, 0].set_yticks(range(len(rows)), rows)
    axes[0, 0].invert_yaxis()
    fig.tight_layout()
    return fig
