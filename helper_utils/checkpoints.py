"""The files that hand trained models from one notebook to the next: one writer, one reader.

Notebook 03 saves the best epoch of its classifier (``classifier_best.pt``) and of its backbone
alone (``backbone_best.pt``), notebook 05 its encoder (``encoder_best.pt``), ``make bench`` the
going-further models. Later notebooks, the ONNX export and the search service load them. Every
file is written here (to a temporary file, then renamed: never half a file) and read here, once,
and checked before its weights are used, so every loader refuses the same files for the same
reasons, in the same words (:attr:`CheckpointError.reason`):

- ``missing``: there is no file yet (:class:`CheckpointNotFoundError`);
- ``corrupt``: truncated, or not a file ``torch.save`` wrote;
- ``foreign``: a torch file without the kit's ``state_dict``;
- ``stopped``: the best epoch so far of a training run that was stopped before its end;
- ``misfit``: the weights of another model;
- ``no_head``: an encoder without the projection head, where one is required.

A file of an older kit, which did not record whether its run finished, is loaded, and
:meth:`Checkpoint.describe` says so. :func:`load_checkpoint`, the learner's own loader, also
loads a stopped run's best epoch: notebook 03 evaluates what its own run saved, however it ended.

On disk a checkpoint is ``{"state_dict": ..., **info}``; ``info`` holds ``finished`` (``False``
while the run trains or after it was stopped, ``True`` once it ended), ``epoch`` and ``val_acc``
of the best epoch, ``epochs_done``, ``epochs_planned``, ``made_by``, ``recipe`` and ``kit_version``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from helper_utils.embedding import ProjectedEncoder, encoder_for
from helper_utils.files import atomic_path
from helper_utils.paths import checkpoint_dir
from helper_utils.reference import MobileNetBackbone, MobileNetLikeClassifier

__all__ = [
    "KIT_VERSION",
    "BACKBONE_FILE",
    "CLASSIFIER_FILE",
    "ENCODER_FILE",
    "REASONS",
    "CheckpointError",
    "CheckpointNotFoundError",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "save_model",
    "BestEpochFiles",
    "read_checkpoint",
    "load_backbone",
    "load_classifier",
    "load_encoder",
]

KIT_VERSION = "0.2.0"  # recorded in every checkpoint; the version in pyproject.toml
BACKBONE_FILE, CLASSIFIER_FILE, ENCODER_FILE = "backbone_best.pt", "classifier_best.pt", "encoder_best.pt"
REASONS = ("missing", "corrupt", "foreign", "stopped", "misfit", "no_head")

# what makes each kind of file: the second half of every refusal
_HOW = {
    "backbone": "run notebook 03 (or helper_utils.recipes.load_or_train_backbone())",
    "classifier": "run notebook 03 (or helper_utils.recipes.load_or_train_classifier())",
    "encoder": "run notebook 05 (or helper_utils.recipes.load_or_train_encoder())",
}


class CheckpointError(ValueError):
    """A checkpoint the kit will not load; the message says why and how to make a good one.

    Attributes:
        path: the file.
        reason: one of :data:`REASONS`.
        why: the reason in words, to follow "The encoder at PATH" in a loader's message.
    """

    def __init__(self, path: Path, reason: str, why: str, what: str) -> None:
        self.path, self.reason, self.why = Path(path), reason, why
        super().__init__(self._message(what))

    def _message(self, what: str) -> str:
        return f"{self.path} {self.why}. To make a new one, {_how(what)}."

    def _render_traceback_(self) -> list[str]:  # in a notebook: the message alone, no traceback
        return [f"{type(self).__name__}: {self}"]


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """There is no checkpoint at the path yet; the message says how to make it."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(path, "missing", "does not exist", what)

    def _message(self, what: str) -> str:
        return (f"no {_noun(what)} at {self.path}.\n  To make it, {_how(what)}; or set "
                f"$FASHION_KIT_CHECKPOINTS (or a command's --checkpoints) to the folder that holds it.")


def _how(what: str) -> str:
    return _HOW.get(what, "run the notebook that trains it")


def _noun(what: str) -> str:
    """``"encoder checkpoint"``, or just ``"checkpoint"`` when nothing more is known."""
    return "checkpoint" if what == "checkpoint" else f"{what} checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read from disk: its weights and what it says about the run that made it."""

    path: Path
    what: str  # "backbone", "classifier", "encoder" or "checkpoint": names it in messages
    state_dict: dict = field(repr=False)
    info: dict  # everything but the weights (see the module's docstring)

    @property
    def finished(self) -> bool | None:
        """``True`` once its run ended, ``False`` while it trains or after it was stopped, ``None`` from an older kit."""
        return self.info.get("finished")

    def stopped_at(self) -> str:
        """``"stopped after epoch 82 of 120"``: how far its run got."""
        done, planned = self.info.get("epochs_done", self.info.get("epoch")), self.info.get("epochs_planned")
        return f"stopped after epoch {done} of {planned}" if planned else f"stopped after epoch {done}"

    def describe(self) -> str:
        """``"epoch 104, validation accuracy 86.2%"``, the words a loader's message puts in brackets."""
        parts = []
        if "epoch" in self.info:
            parts.append(f"epoch {self.info['epoch']}")
        if "val_acc" in self.info:
            parts.append(f"validation accuracy {self.info['val_acc']:.1%}")
        text = ", ".join(parts)
        if self.finished is None:
            text += "; saved by an older kit, which did not record whether its run finished"
        return text.lstrip("; ")

    def load_into(self, model: nn.Module) -> nn.Module:
        """``model`` with these weights, or a :class:`CheckpointError` (``misfit``) that says what does not fit."""
        try:
            model.load_state_dict(self.state_dict)
        except (RuntimeError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(self.path, "misfit", f"does not fit the kit's {type(model).__name__} "
                                  f"({_misfit(model.state_dict(), self.state_dict, error)})", self.what) from None
        return model


def _misfit(expected: dict, saved: dict, error: Exception) -> str:
    """What does not fit, in one line: weights missing, unexpected, or of another shape (one example of each)."""
    missing = [key for key in expected if key not in saved]
    unexpected = [key for key in saved if key not in expected]
    reshaped = [key for key in expected if key in saved and getattr(saved[key], "shape", None) != expected[key].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} weights missing, e.g. {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]!r}")
    if reshaped:
        key = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape, e.g. {key!r}: saved {tuple(getattr(saved[key], 'shape', ()))}, "
                     f"expected {tuple(expected[key].shape)}")
    return "; ".join(parts) or (str(error).splitlines() or [type(error).__name__])[0][:200]


# --------------------------------------------------------------------------- writing

def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a half-written file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def save_model(model: nn.Module, path: str | os.PathLike, **info) -> Path:
    """Save ``model``'s weights with what its run says about itself (``finished``, ``recipe``, ...) and the kit version."""
    return save_checkpoint({"state_dict": model.state_dict(), "kit_version": KIT_VERSION, **info}, path)


class BestEpochFiles:
    """The best epoch so far of one training run, in one or more files (e.g. the classifier and its backbone).

    :meth:`save` writes every file at each new best epoch, marked ``finished=False``, so a run
    stopped at any moment leaves files that say so. :meth:`finish` writes each file once more,
    marked finished, from the copy kept in memory: the file is never read back and rewritten.

    Args:
        epochs_planned: epochs the run means to train.
        info: metadata saved in every file (``made_by``, ``recipe``, ...).
    """

    def __init__(self, epochs_planned: int | None = None, **info) -> None:
        self.models: dict[Path, nn.Module] = {}
        self.info = {"epochs_planned": epochs_planned, "kit_version": KIT_VERSION, **info}
        self._saved: dict[Path, dict] = {}

    def add(self, path: str | os.PathLike, model: nn.Module) -> "BestEpochFiles":
        """Save ``model`` (or a part of it, such as ``model.backbone``) to ``path`` at every best epoch."""
        self.models[Path(path)] = model
        return self

    def save(self, epoch: int, val_acc: float) -> None:
        """``epoch`` is the best so far: write every file now, marked not finished."""
        for path, model in self.models.items():
            state = {"state_dict": copy.deepcopy(model.state_dict()), **self.info,
                     "epoch": epoch, "val_acc": val_acc, "epochs_done": epoch, "finished": False}
            save_checkpoint(state, path)
            self._saved[path] = state

    def finish(self, epochs_done: int) -> None:
        """The run ended after ``epochs_done`` epochs: mark each file written so far finished (one write each)."""
        for path, state in self._saved.items():
            save_checkpoint({**state, "epochs_done": epochs_done, "finished": True}, path)


# --------------------------------------------------------------------------- reading

def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint", *, allow_stopped: bool = False,
                    map_location: torch.device | str = "cpu") -> Checkpoint:
    """Read the checkpoint at ``path`` once and check it.

    Args:
        path: the file.
        what: what it should hold ("backbone", "classifier", "encoder"), to name it in messages.
        allow_stopped: also return the best epoch of a run that was stopped (``finished`` False).
        map_location: where the weights are loaded (``torch.load``'s argument).

    Raises:
        CheckpointNotFoundError: there is no file at ``path``.
        CheckpointError: the file is truncated or corrupt, not the kit's, or from a stopped run.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(path, what)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, not a torch file, an unsafe pickle: one sentence, no traceback
        raise CheckpointError(path, "corrupt", f"is not a readable {_noun(what)} ({type(error).__name__}): "
                                               "the file is truncated or corrupt", what) from None
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise CheckpointError(path, "foreign", f"holds no state_dict: not a {_noun(what)} saved by the kit", what)
    info = {key: value for key, value in state.items() if key != "state_dict"}
    checkpoint = Checkpoint(path, what, state["state_dict"], info)
    if checkpoint.finished is False and not allow_stopped:
        raise CheckpointError(path, "stopped", f"is from a run that {checkpoint.stopped_at()}, not a finished one", what)
    return checkpoint


def load_checkpoint(model: nn.Module, path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """Load the weights saved by :func:`save_checkpoint` into ``model``; returns the whole checkpoint.

    Unlike the loaders below it also loads the best epoch of a stopped run: notebook 03 evaluates
    what its own run saved, however that run ended (the returned ``finished`` says which).

    Raises:
        CheckpointNotFoundError: there is no file at ``path``.
        CheckpointError: the file is truncated or corrupt, not the kit's, or the weights do not fit ``model``.
    """
    checkpoint = read_checkpoint(path, allow_stopped=True, map_location=device)
    checkpoint.load_into(model)
    return {"state_dict": checkpoint.state_dict, **checkpoint.info}


def load_backbone(path: str | os.PathLike | None = None, backbone: nn.Module | None = None,
                  device: torch.device | str = "cpu") -> tuple[nn.Module, Checkpoint]:
    """The backbone of a finished run saved at ``path`` (default: notebook 03's), on ``device``.

    Args:
        path: the file; ``None`` means ``checkpoint_dir() / "backbone_best.pt"``.
        backbone: the module to load into, of the saved architecture (default: the course's ``MobileNetBackbone``).

    Returns:
        ``(backbone, checkpoint)``: the module, as a fresh module's mode is, and what the file says about its run.

    Raises:
        CheckpointError: missing, unreadable, from a stopped run, or another architecture's (``reason`` says which).
    """
    checkpoint = read_checkpoint(path or checkpoint_dir() / BACKBONE_FILE, "backbone")
    model = checkpoint.load_into(MobileNetBackbone() if backbone is None else backbone)
    return model.to(device), checkpoint


def load_classifier(path: str | os.PathLike | None = None, classifier: nn.Module | None = None,
                    device: torch.device | str = "cpu") -> tuple[nn.Module, Checkpoint]:
    """The classifier of a finished run saved at ``path`` (default: notebook 03's), in eval mode on ``device``.

    Args:
        path: the file; ``None`` means ``checkpoint_dir() / "classifier_best.pt"``.
        classifier: the module to load into (e.g. notebook 08's wide one); by default the course's
            ``MobileNetLikeClassifier`` with as many classes as the saved head has outputs.

    Raises:
        CheckpointError: missing, unreadable, from a stopped run, or not a classifier (``reason`` says which).
    """
    checkpoint = read_checkpoint(path or checkpoint_dir() / CLASSIFIER_FILE, "classifier")
    if classifier is None:
        head = checkpoint.state_dict.get("head.2.weight")  # the course's head: pool, flatten, Linear
        if not isinstance(head, torch.Tensor) or head.ndim != 2:
            raise CheckpointError(checkpoint.path, "misfit", "has no classifier head (head.2.weight): not a "
                                  "classifier checkpoint", "classifier")
        classifier = MobileNetLikeClassifier(head.shape[0])
    return checkpoint.load_into(classifier).to(device).eval(), checkpoint


def load_encoder(path: str | os.PathLike | None = None, backbone: nn.Module | None = None,
                 device: torch.device | str = "cpu", *, require_head: bool = False) -> tuple[nn.Module, Checkpoint]:
    """The encoder saved at ``path`` (default: notebook 05's), in eval mode on ``device``.

    The saved weights say whether it ends with a projection head (notebook 05's encoder does; an
    older kit's, or a recipe with ``head="none"``, does not): it is rebuilt either way.

    Args:
        path: the file; ``None`` means ``checkpoint_dir() / "encoder_best.pt"``.
        backbone: a fresh backbone of the saved architecture (default: the course's ``MobileNetBackbone``).
        require_head: refuse an encoder without the projection head (``reason`` ``"no_head"``).

    Raises:
        CheckpointError: missing, unreadable, from a stopped run, without a required head, or another architecture's.
    """
    checkpoint = read_checkpoint(path or checkpoint_dir() / ENCODER_FILE, "encoder")
    encoder = encoder_for(checkpoint.state_dict, MobileNetBackbone() if backbone is None else backbone)
    if require_head and not isinstance(encoder, ProjectedEncoder):
        raise CheckpointError(checkpoint.path, "no_head", "has no projection head (an older kit saved it)", "encoder")
    return checkpoint.load_into(encoder).to(device).eval(), checkpoint
