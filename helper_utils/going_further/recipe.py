"""Notebook 08's going-further recipe: the wide backbone, a longer one-cycle run, harder augmentation.

``make bench`` trains it with three seeds and keeps the first seed's model in
:func:`going_further_dir`; notebook 08 loads that model, or trains a short version here. Both
are read by :mod:`helper_utils.checkpoints`, which refuses a stopped run as it does for the core
notebooks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from helper_utils.checkpoints import CLASSIFIER_FILE, ENCODER_FILE, CheckpointError, load_classifier, load_encoder
from helper_utils.device import get_device
from helper_utils.files import atomic_path
from helper_utils.going_further.models import WideMobileNetBackbone, WideMobileNetClassifier
from helper_utils.recipes import STRONG_AUGMENT, ClassifierRecipe, SiameseRecipe, fit_classifier, fit_siamese
from helper_utils.training import checkpoint_dir

__all__ = ["GoingFurtherRecipe", "going_further_dir", "fit_going_further", "load_or_train_going_further"]


@dataclass
class GoingFurtherRecipe:
    """Notebook 08's stronger model: a wider backbone, a longer one-cycle run, harder augmentation.

    The classifier recipe is the core one with a lower peak learning rate (a 16x larger model
    needs smaller steps) and ``STRONG_AUGMENT``; the metric-learning step is the core one
    (normalised embeddings, semi-hard mined triplets on P x K batches), run longer.
    """

    classifier: ClassifierRecipe = field(default_factory=lambda: ClassifierRecipe(
        epochs=60, max_lr=8e-3, augment=dict(STRONG_AUGMENT)))
    siamese: SiameseRecipe = field(default_factory=lambda: SiameseRecipe(epochs=15))
    config: list = field(default_factory=lambda: list(WideMobileNetBackbone.CONFIG))

    def with_seed(self, seed: int) -> "GoingFurtherRecipe":
        return replace(self, classifier=replace(self.classifier, seed=seed), siamese=replace(self.siamese, seed=seed))

    def shortened(self, classifier_epochs: int = 8, siamese_epochs: int = 2) -> "GoingFurtherRecipe":
        """The same recipe, cut to a few epochs: enough to run the notebook on a CPU, not to reach its numbers."""
        return replace(self, classifier=replace(self.classifier, epochs=classifier_epochs),
                       siamese=replace(self.siamese, epochs=siamese_epochs))


def going_further_dir() -> Path:
    """Where ``make bench`` leaves the going-further model for notebook 08 to load."""
    return checkpoint_dir() / "going_further"


def fit_going_further(recipe: GoingFurtherRecipe | None = None, device=None, progress: bool = True,
                      save_dir: Path | None = None, eval_dataset=None):
    """Train the wide classifier, then fine-tune its backbone into an encoder; both saved under ``save_dir``.

    Returns:
        ``(classifier, encoder, histories)`` with ``histories = {"classifier": ..., "siamese": ...}``.
    """
    recipe = recipe or GoingFurtherRecipe()
    save_dir = Path(save_dir) if save_dir is not None else going_further_dir()
    model = WideMobileNetClassifier(7, WideMobileNetBackbone(recipe.config))
    device = device or get_device()
    model, cls_history = fit_classifier(recipe.classifier, model=model, device=device, progress=progress,
                                        save_dir=save_dir)
    model, _ = load_classifier(save_dir / CLASSIFIER_FILE, model, device)  # the best epoch, not the last
    encoder, siamese_history = fit_siamese(model.backbone, recipe.siamese, device=device, progress=progress,
                                           eval_dataset=eval_dataset, save_dir=save_dir)
    with atomic_path(save_dir / "recipe.json") as tmp:  # which recipe made these files
        tmp.write_text(json.dumps(asdict(recipe), indent=1))
    return model, encoder, {"classifier": cls_history, "siamese": siamese_history}


def load_or_train_going_further(device=None, save_dir: Path | None = None, progress: bool = True,
                                recipe: GoingFurtherRecipe | None = None, short_epochs: tuple[int, int] = (8, 2)):
    """The going-further model ``make bench`` trained, or a short version trained here.

    The short version runs ``short_epochs`` (classifier, encoder) epochs of ``recipe`` and is
    kept apart, in ``<save_dir>/short``, so it is never mistaken for the benchmark's model.

    Returns:
        ``(classifier, encoder, message)``: the message says which it was, and why when a model
        was there but refused (a stopped run, a corrupt file).
    """
    device = device or get_device()
    save_dir = Path(save_dir) if save_dir is not None else going_further_dir()
    recipe = recipe or GoingFurtherRecipe()
    try:
        classifier, encoder, checkpoint = _load_going_further(save_dir, recipe, device)
        return classifier, encoder, (f"Loaded the going-further model that `make bench` trained, from {save_dir} "
                                     f"(classifier {checkpoint.describe()}).")
    except CheckpointError as error:
        bench = (f"No `make bench` model in {save_dir}" if error.reason == "missing" else
                 f"The `make bench` model in {save_dir} is not usable ({error.path.name} {error.why})")
    short = recipe.shortened(*short_epochs)
    note = (f"a SHORT version ({short.classifier.epochs} + {short.siamese.epochs} epochs instead of "
            f"{recipe.classifier.epochs} + {recipe.siamese.epochs}); run `make bench` for the full model")
    try:
        classifier, encoder, checkpoint = _load_going_further(save_dir / "short", recipe, device)
        return classifier, encoder, f"{bench}: loaded {note}, trained here earlier ({checkpoint.describe()})."
    except CheckpointError:
        pass  # none yet, or one that cannot be used: train it again
    fit_going_further(short, device=device, progress=progress, save_dir=save_dir / "short")
    classifier, encoder, checkpoint = _load_going_further(save_dir / "short", recipe, device)  # what it saved
    return classifier, encoder, f"{bench}: trained {note} here ({checkpoint.describe()})."


def _load_going_further(folder: Path, recipe: GoingFurtherRecipe, device):
    """The wide classifier and encoder saved in ``folder`` and the classifier's checkpoint (``CheckpointError`` if refused)."""
    classifier, checkpoint = load_classifier(folder / CLASSIFIER_FILE, WideMobileNetClassifier(
        7, WideMobileNetBackbone(recipe.config)), device)
    encoder, _ = load_encoder(folder / ENCODER_FILE, WideMobileNetBackbone(recipe.config), device)
    return classifier, encoder, checkpoint
