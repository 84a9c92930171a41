"""Training loops and evaluation for the classifier and the siamese network.

The loops are plain PyTorch: for each batch, forward, loss, backward, step. What they add
is bookkeeping a course needs: progress bars, a per-epoch history, an optional
learning-rate scheduler, and the best epoch saved as it comes (whole model and backbone
alone, so notebook 05 can start from the backbone) through :mod:`helper_utils.checkpoints`,
which writes those files and marks them finished when the run ends.

A run shows two tqdm bars and no more: one over the epochs, which stays and carries the latest
metrics, and one over the current epoch's batches, reused every epoch and removed at the end.
A bar per epoch would add one output per epoch: after a long run JupyterLab folds them behind
"Show more outputs" (hiding the final message or a traceback), and every bar is a widget the
kernel has to send and the browser to keep. In a notebook both bars share one output, which
becomes the epoch bar's last line of text when the run ends (:mod:`helper_utils.progress`), so a
saved notebook shows no widget that needs its kernel. A run expected to take more than a minute
prints, after its first epoch, how long it will take on this machine.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterable

import torch
from torch import nn

from helper_utils.checkpoints import BestEpochFiles
from helper_utils.paths import checkpoint_dir  # re-exported: where notebooks save weights
from helper_utils.progress import tqdm

__all__ = [
    "checkpoint_dir",
    "count_parameters",
    "evaluate",
    "predict",
    "train_classifier",
    "train_siamese",
]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu",
            flip_tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, C)`` and targets ``(N,)`` over a loader, in eval mode.

    ``flip_tta`` averages the logits of each image and its mirror image (test-time augmentation).
    """
    model.eval()
    all_logits, all_targets = [], []
    for images, targets in loader:
        images = images.to(device)
        logits = model(images)
        if flip_tta:
            logits = (logits + model(torch.flip(images, dims=[3]))) / 2
        all_logits.append(logits.float().cpu())
        all_targets.append(torch.as_tensor(targets).cpu())
    return torch.cat(all_logits), torch.cat(all_targets)


def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable | None = None,
             device: torch.device | str = "cpu", flip_tta: bool = False) -> tuple[float, float]:
    """Mean loss and accuracy (0-1) of ``model`` over ``loader``."""
    logits, targets = predict(model, loader, device, flip_tta)
    # the loss runs where its class weights live: on ``device``, like the model
    loss = loss_fn(logits.to(device), targets.to(device)).item() if loss_fn is not None else float("nan")
    accuracy = (logits.argmax(dim=1) == targets).float().mean().item()
    return loss, accuracy


# --------------------------------------------------------------------------- classifier

def train_classifier(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    device: torch.device | str = "cpu",
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    backbone_path: str | os.PathLike | None = None,
    checkpoint_info: dict | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` and evaluate it on ``val_loader`` after every epoch.

    Args:
        model: a classifier returning raw logits ``(B, C)``; if it has a ``backbone``
            attribute, that part is checkpointed on its own too.
        train_loader, val_loader: iterables of ``(images (B, 3, H, W), targets (B,))``.
        epochs: passes over ``train_loader``.
        optimizer, loss_fn: as usual; ``loss_fn(logits, targets)``.
        scheduler: optional; stepped after every batch (e.g. ``OneCycleLR``).
        checkpoint_path, backbone_path: where the best epoch's whole model and backbone
            are saved (atomically); ``None`` saves nothing. Until the last epoch ends they
            are marked as a run that did not finish.
        checkpoint_info: more metadata saved with them (e.g. the recipe that made them).

    Returns:
        History with one value per epoch: ``train_loss``, ``train_acc``, ``val_loss``,
        ``val_acc``, ``lr``, ``epoch_seconds``; plus ``best_epoch`` (1-based) and ``best_val_acc``.
    """
    model.to(device)
    history: dict[str, list[float]] = {k: [] for k in
                                       ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds")}
    best_acc = -1.0
    files = BestEpochFiles(epochs, **{"made_by": "train_classifier", **(checkpoint_info or {})})
    if checkpoint_path is not None:
        files.add(checkpoint_path, model)
    if backbone_path is not None and hasattr(model, "backbone"):
        files.add(backbone_path, model.backbone)
    bars = _Bars(epochs, progress)
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            train_loss, train_acc = _train_one_epoch(model, bars.batches(train_loader), optimizer, loss_fn, device,
                                                     scheduler)
            val_loss, val_acc = evaluate(model, val_loader, loss_fn, device)
            _record(history, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                    lr=optimizer.param_groups[0]["lr"], epoch_seconds=time.perf_counter() - start)
            if val_acc > best_acc:
                best_acc = val_acc
                history["best_epoch"], history["best_val_acc"] = epoch, val_acc
                files.save(epoch, val_acc)
            bars.end_epoch(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}", best=f"{best_acc:.3f}")
    finally:  # also on an error or an interrupt: the batch bar goes, the epoch bar stays where it stopped
        bars.close()
    files.finish(epochs_done=epochs)  # reached only when every epoch ran
    return history


def _train_one_epoch(model, batches, optimizer, loss_fn, device, scheduler):
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for images, targets in batches:
        images, targets = images.to(device), targets.to(device)
        logits = model(images)
        loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(targets)
        correct += (logits.argmax(dim=1) == targets).sum().item()
        seen += len(targets)
    return total_loss / seen, correct / seen


# --------------------------------------------------------------------------- siamese

def train_siamese(
    network: nn.Module,
    train_loader: Iterable,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    device: torch.device | str = "cpu",
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    eval_fn: Callable[[], dict[str, float]] | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train an embedding network with a triplet loss.

    Two kinds of ``train_loader`` are understood:

    * batches of ``(anchor, positive, negative)`` images (a ``TripletDataset``): the loss is
      ``loss_fn(emb_a, emb_p, emb_n)``, as with ``nn.TripletMarginLoss``;
    * batches of ``(images, labels)`` (a class-balanced sampler): the loss is
      ``loss_fn(embeddings, labels)`` and mines its own triplets, as with
      :class:`helper_utils.losses.MinedTripletLoss`.

    ``network`` must have ``get_embedding`` (a ``SiameseNetwork``) or be the encoder itself.
    ``eval_fn`` runs after every epoch (e.g. retrieval metrics on a catalog); its values
    are added to the history.
    """
    network.to(device)
    embed = getattr(network, "get_embedding", network)
    history: dict[str, list[float]] = {"train_loss": [], "lr": [], "epoch_seconds": []}
    bars = _Bars(epochs, progress)
    try:
        for _ in range(epochs):
            start = time.perf_counter()
            network.train()
            total, count = 0.0, 0
            for batch in bars.batches(train_loader):
                if len(batch) == 3:  # (anchor, positive, negative)
                    anchor, positive, negative = (t.to(device) for t in batch)
                    loss = loss_fn(embed(anchor), embed(positive), embed(negative))
                    n = len(anchor)
                else:  # (images, labels): the loss mines triplets inside the batch
                    images, labels = batch[0].to(device), batch[1].to(device)
                    loss = loss_fn(embed(images), labels)
                    n = len(images)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                total += loss.item() * n
                count += n
            _record(history, train_loss=total / count, lr=optimizer.param_groups[0]["lr"],
                    epoch_seconds=time.perf_counter() - start)
            if eval_fn is not None:
                network.eval()
                _record(history, **eval_fn())
            bars.end_epoch(loss=f"{total / count:.4f}")
    finally:
        bars.close()
    return history


# --------------------------------------------------------------------------- plumbing

def _record(history: dict, **values: float) -> None:
    for key, value in values.items():
        history.setdefault(key, []).append(float(value))


class _Bars:
    """The two progress bars of a training run: epochs (kept) and the current epoch's batches (transient).

    The batch bar is created once, on the first epoch, and ``reset`` on every later one, so a run
    of any length shows exactly two bars; ``leave=False`` removes it when the run ends. The
    epoch bar's postfix carries the latest metrics. In a log file only the epoch bar is written;
    with ``progress=False`` nothing is shown.
    """

    def __init__(self, epochs: int, progress: bool) -> None:
        self.disable = not progress
        self.epochs = tqdm(total=epochs, desc="epochs", unit="epoch", disable=self.disable, **_bar_style())
        self._batches = None
        self._start = time.perf_counter()

    def batches(self, loader: Iterable) -> Iterable:
        """Iterate over ``loader``, advancing the batch bar (restarted at 0 for each epoch)."""
        total = len(loader) if hasattr(loader, "__len__") else None
        if self._batches is None:  # created with its length: a widget made without one draws a stub of a bar
            # in a log (not a terminal, not a notebook) a batch bar would only add a line per epoch
            self._batches = tqdm(total=total, desc="batches", unit="batch", leave=False, under=self.epochs,
                                 disable=self.disable or not _interactive(), **_bar_style())
        else:
            self._batches.reset(total=total)
        for batch in loader:
            yield batch
            self._batches.update()

    def end_epoch(self, **metrics: str) -> None:
        self.epochs.set_postfix(metrics, refresh=False)  # shown with the next refresh, not one extra message
        self.epochs.update()
        if self.epochs.n == 1 and not self.disable:
            line = _estimate(time.perf_counter() - self._start, self.epochs.total)
            if line:
                tqdm.write(line, file=sys.stdout)

    def close(self) -> None:
        if self._batches is not None:
            self._batches.close()
        self.epochs.close()


ESTIMATE_FROM_S = 60.0  # runs expected to be shorter than this get no estimate: the bar is enough


def _estimate(first_epoch_s: float, epochs: int | None) -> str:
    """What the first epoch says about the whole run, e.g. "... about 4.5 minutes on this machine"; "" if short."""
    if not epochs or epochs < 2 or first_epoch_s * epochs < ESTIMATE_FROM_S:
        return ""
    return (f"The first epoch took {first_epoch_s:.1f} s: all {epochs} epochs should take about "
            f"{_duration(first_epoch_s * epochs)} on this machine.")


def _duration(seconds: float) -> str:
    """``"4.5 minutes"``, ``"12 minutes"``, ``"1.3 hours"``: rounded as an estimate should be."""
    minutes = seconds / 60
    if minutes < 10:
        halves = max(int(minutes * 2 + 0.5), 2) / 2  # to the nearest half minute, half up; at least 1
        return f"{halves:g} minute{'s' if halves > 1 else ''}"
    if minutes < 90:
        return f"{round(minutes)} minutes"
    return f"{minutes / 60:.1f} hours"


def _bar_style() -> dict:
    """Bars that refresh at most twice a second in a notebook or terminal, every 30 s in a log.

    Each refresh of a notebook bar is a message from the kernel to the browser; a flood of
    them can make a test runner that waits for a cell's last output time out.
    """
    return {"mininterval": 0.5 if _interactive() else 30.0, "dynamic_ncols": True}


def _interactive() -> bool:
    """Whether someone watches the bars (a terminal or a notebook) rather than a log file."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules
