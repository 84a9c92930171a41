"""The kit's training recipes, as dataclasses with a reason for every value, and the functions that run them.

Notebook 03 shows the classifier recipe step by step. Later notebooks call
:func:`load_or_train_backbone`, :func:`load_or_train_classifier` and :func:`load_or_train_encoder`,
which load the checkpoint an earlier notebook wrote or, when there is no usable one (missing, or
refused by :mod:`helper_utils.checkpoints`: a stopped run, an older kit's encoder, a corrupt
file), train one here, and say which they did and why. Before they train, they print a line
saying so and about how long it takes, so a learner who opens a later notebook first is not left
watching a progress bar they did not expect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from helper_utils.augment import BatchAugment
from helper_utils.checkpoints import (BACKBONE_FILE, CLASSIFIER_FILE, ENCODER_FILE, CheckpointError, load_backbone,
                                      load_classifier, load_encoder, save_model)
from helper_utils.data import ClothingDataset
from helper_utils.device import get_device, seed_everything
from helper_utils.embedding import HeadedEncoder, ProjectedEncoder, embedding_dim
from helper_utils.loaders import ClassBalancedLoader, TensorLoader
from helper_utils.losses import MinedTripletLoss
from helper_utils.reference import MobileNetLikeClassifier, SiameseEncoder, compute_class_weights, get_embeddings
from helper_utils.retrieval import l2_normalize, retrieval_metrics
from helper_utils.training import checkpoint_dir, train_classifier, train_siamese

# What the learner reads before a fallback training starts: the rough times of notebooks 03 and 05 on a
# laptop CPU (the measured ones are on the results page, docs/results/README.md). How long the classifier
# takes depends on the machine: train_classifier prints this machine's estimate after the first epoch.
CLASSIFIER_TIME = "a few minutes on a laptop CPU; after the first epoch it says how long here"
TRAINING_CLASSIFIER_NOTICE = f"No checkpoint from notebook 03: training the classifier here first ({CLASSIFIER_TIME})"
TRAINING_ENCODER_NOTICE = ("No encoder from notebook 05: fine-tuning one here "
                           "(under a minute on a laptop CPU once the backbone is there)")

__all__ = [
    "ClassifierRecipe",
    "SiameseRecipe",
    "TutorialRecipe",
    "fit_classifier",
    "load_or_train_backbone",
    "load_or_train_classifier",
    "fit_siamese",
    "load_or_train_encoder",
    "embedding_metrics",
]


MEDIUM_AUGMENT = dict(  # BatchAugment arguments: the best of the kit's sweep on this data
    flip=0.5, zoom=(0.9, 1.25), aspect=0.15, translate=0.1, degrees=10.0,
    brightness=0.2, contrast=0.2, saturation=0.2, erase=0.25)

STRONG_AUGMENT = dict(  # notebook 08: a 16x larger model overfits less, so it can take harder views
    MEDIUM_AUGMENT, zoom=(0.8, 1.3), translate=0.12, degrees=15.0, erase=0.4)

TUTORIAL_AUGMENT = dict(  # the tutorial's train_transform: random horizontal flip and +-10 degrees, nothing else
    flip=0.5, zoom=(1.0, 1.0), aspect=0.0, translate=0.0, degrees=10.0,
    brightness=0.0, contrast=0.0, saturation=0.0, erase=0.0)


@dataclass
class ClassifierRecipe:
    """How the kit trains the 32.6k-parameter classifier from scratch on a laptop CPU.

    Found by a sweep over learning rate, weight decay, schedule, augmentation strength,
    label smoothing, class weights and EMA on a GPU over several seeds, then confirmed on a
    2-core CPU; the measured results are on the results page (docs/results/README.md).
    """

    epochs: int = 120  # long enough for the one-cycle schedule to pay off, short enough for minutes on a CPU
    batch_size: int = 64  # small batches: more steps per epoch, and a regularising noise
    max_lr: float = 2e-2  # peak of the one-cycle schedule; high, because the model is tiny and BN-normalised
    pct_start: float = 0.25  # a quarter of the steps warm up, the rest anneal
    div_factor: float = 25.0  # the warm-up starts at max_lr / 25
    final_div_factor: float = 1e3  # and the run ends at a thousandth of that
    weight_decay: float = 0.05  # AdamW's decoupled decay, on conv/linear weights only (not BN, not biases)
    label_smoothing: float = 0.1  # soft targets: less over-confident on look-alike classes
    class_weights: bool = True  # inverse-frequency weighted cross-entropy (notebook 01)
    augment: dict = field(default_factory=lambda: dict(MEDIUM_AUGMENT))
    seed: int = 42  # the same seed gives the same run on the same machine

    def make_augment(self) -> BatchAugment:
        return BatchAugment(**self.augment, seed=self.seed)

    def make_optimizer(self, model: nn.Module) -> torch.optim.AdamW:
        """AdamW whose weight decay skips 1-D parameters: decaying BatchNorm scales and biases only hurts."""
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.max_lr)

    def make_scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.max_lr, total_steps=self.epochs * steps_per_epoch, pct_start=self.pct_start,
            div_factor=self.div_factor, final_div_factor=self.final_div_factor)


@dataclass
class SiameseRecipe:
    """How the kit fine-tunes the backbone into an embedding for visual search."""

    epochs: int = 10  # the backbone is already trained: a short fine-tune
    classes_per_batch: int = 7  # P: every class in every batch
    samples_per_class: int = 16  # K: many positives and negatives per anchor to mine from
    lr: float = 3e-4  # small: the backbone is already good, don't wreck it
    margin: float = 0.2  # in units of the L2-normalised embedding: distances lie in [0, 2] ([0, sqrt(2)] with head="none")
    mining: str = "semihard"  # "semihard" beat "hard" in the sweep (hard negatives are often look-alikes)
    head: str = "linear"  # "linear": a projection head (helper_utils.embedding); "none": the pooled ReLU features
    head_lr_factor: float = 3.0  # the new head learns 3x faster than the pre-trained backbone
    augment: dict = field(default_factory=lambda: dict(MEDIUM_AUGMENT))
    seed: int = 42

    def __post_init__(self) -> None:
        if self.head not in ("linear", "none"):
            raise ValueError(f"head should be 'linear' or 'none', got {self.head!r}")

    def make_augment(self) -> BatchAugment:
        return BatchAugment(**self.augment, seed=self.seed)

    def make_model(self, backbone: nn.Module) -> nn.Module:
        """``SiameseEncoder(backbone)``, with the projection head on top when ``head == "linear"``."""
        encoder = SiameseEncoder(backbone)
        return ProjectedEncoder(encoder, embedding_dim(encoder)) if self.head == "linear" else encoder

    def make_optimizer(self, model: nn.Module) -> torch.optim.Adam:
        """Adam at ``lr`` for the encoder, ``lr * head_lr_factor`` for a projection head (the kit's or a learner's)."""
        if not isinstance(model, (ProjectedEncoder, HeadedEncoder)):
            return torch.optim.Adam(model.parameters(), lr=self.lr)
        head = model.head if isinstance(model, HeadedEncoder) else model.projection
        return torch.optim.Adam([{"params": model.encoder.parameters(), "lr": self.lr},
                                 {"params": head.parameters(), "lr": self.lr * self.head_lr_factor}])

    def make_scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
        """One cycle: a tenth of the steps warm up to each group's learning rate, the rest anneal."""
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=self.epochs * steps_per_epoch, pct_start=0.1, div_factor=10, final_div_factor=100,
            cycle_momentum=False)


def _classifier_training_setup(model: nn.Module, train: ClothingDataset, recipe: ClassifierRecipe):
    """Loader, optimizer, one-cycle scheduler and weighted, smoothed loss for ``recipe``."""
    loader = TensorLoader.from_dataset(train, batch_size=recipe.batch_size, shuffle=True, drop_last=True,
                                       augment=recipe.make_augment(), seed=recipe.seed)
    optimizer = recipe.make_optimizer(model)
    scheduler = recipe.make_scheduler(optimizer, len(loader))
    weights = compute_class_weights(train.targets, len(train.classes)) if recipe.class_weights else None
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=recipe.label_smoothing)
    return loader, optimizer, scheduler, loss_fn


def fit_classifier(recipe: ClassifierRecipe | None = None, model: nn.Module | None = None, device=None,
                   progress: bool = True, save_dir: Path | None = None):
    """Train a classifier with ``recipe``; saves the best epoch's classifier and backbone under ``save_dir``.

    The two files say which recipe made them and are marked finished once the last epoch ends
    (:class:`helper_utils.checkpoints.BestEpochFiles`).

    Returns:
        ``(model, history)``: the model as the last epoch left it; the best epoch is in the files.
    """
    recipe = recipe or ClassifierRecipe()
    device = device or get_device()
    seed_everything(recipe.seed)
    train, val = ClothingDataset("train"), ClothingDataset("validation")
    if model is None:
        model = MobileNetLikeClassifier(len(train.classes))
    model = model.to(device, memory_format=torch.channels_last)
    loader, optimizer, scheduler, loss_fn = _classifier_training_setup(model, train, recipe)
    save_dir = _folder(save_dir)
    history = train_classifier(
        model, loader, TensorLoader.from_dataset(val, batch_size=256), epochs=recipe.epochs,
        optimizer=optimizer, loss_fn=loss_fn.to(device), device=device, scheduler=scheduler,
        checkpoint_path=save_dir / CLASSIFIER_FILE, backbone_path=save_dir / BACKBONE_FILE,
        checkpoint_info={"recipe": asdict(recipe), "made_by": "helper_utils.recipes.fit_classifier"},
        progress=progress)
    history["recipe"] = asdict(recipe)
    return model, history


def load_or_train_backbone(device=None, save_dir: Path | None = None, progress: bool = True,
                           recipe: ClassifierRecipe | None = None):
    """The backbone notebook 03 trained, or one trained here with ``recipe`` when there is no usable one.

    Returns:
        ``(backbone, message)``: the backbone of the best epoch, and a message that says where it
        came from, which epoch it is and its validation accuracy.
    """
    return _load_or_train_notebook_03("backbone", load_backbone, BACKBONE_FILE, device, save_dir, progress, recipe)


def load_or_train_classifier(device=None, save_dir: Path | None = None, progress: bool = True,
                             recipe: ClassifierRecipe | None = None):
    """The classifier notebook 03 trained, or one trained here with ``recipe`` when there is no usable one.

    Returns:
        ``(classifier, message)``: the classifier of the best epoch in eval mode, and a message
        that says where it came from, which epoch it is and its validation accuracy.
    """
    return _load_or_train_notebook_03("classifier", load_classifier, CLASSIFIER_FILE, device, save_dir, progress,
                                      recipe)


def _load_or_train_notebook_03(what, load, file_name, device, save_dir, progress, recipe):
    """Load ``what`` with ``load``; else say why, train notebook 03's classifier, and load what that saved."""
    device = device or get_device()
    path = _folder(save_dir) / file_name
    try:
        model, checkpoint = load(path, device=device)
        return model, f"Loaded the {what} trained in notebook 03 from {path.name} ({checkpoint.describe()})."
    except CheckpointError as error:
        refused = error
    missing = refused.reason == "missing"
    print(TRAINING_CLASSIFIER_NOTICE if missing else f"The checkpoint from notebook 03 {refused.why}: training the "
          f"classifier again here ({CLASSIFIER_TIME})", flush=True)  # before the bars
    fit_classifier(recipe, device=device, progress=progress, save_dir=save_dir)
    model, checkpoint = load(path, device=device)  # the best epoch, as saved: what the message reports
    done = "trained a classifier here instead" if missing else "retrained from the start"
    saved = "saved its backbone" if what == "backbone" else "saved it"
    return model, f"{_refusal(refused, what)}: {done} ({checkpoint.describe()}) and {saved}."


def _refusal(error: CheckpointError, what: str) -> str:
    """Why a checkpoint was not loaded, as the start of a sentence."""
    return f"No checkpoint at {error.path}" if error.reason == "missing" else f"The {what} at {error.path} {error.why}"


def _folder(save_dir: Path | None) -> Path:
    return Path(save_dir) if save_dir is not None else checkpoint_dir()


def embedding_metrics(encoder: nn.Module, dataset, device, ks=(1, 5)) -> dict[str, float]:
    """Leave-one-out retrieval metrics of ``encoder`` on ``dataset`` (every item queries the others)."""
    embeddings = get_embeddings(encoder, dataset, device)
    return retrieval_metrics(embeddings, dataset.targets, ks=ks)


def fit_siamese(backbone: nn.Module, recipe: SiameseRecipe | None = None, device=None, progress: bool = True,
                eval_dataset=None, save_dir: Path | None = None, *, loss_fn=None, head: nn.Module | None = None,
                save_as: str | None = ENCODER_FILE):
    """Fine-tune ``SiameseEncoder(backbone)`` (plus a projection head) with triplets mined in each batch.

    Batches are class-balanced (P classes x K photos); the loss mines its triplets inside each.
    Called with the recipe alone, it trains the kit's way: ``MinedTripletLoss(recipe.margin,
    recipe.mining)`` and the recipe's ``head``, saved to ``encoder_best.pt``, the file notebooks
    06-10 load.

    Args:
        backbone: the trained backbone; it is trained in place (pass a copy to keep it).
        recipe: epochs, batches, learning rates, margin, mining and head; ``SiameseRecipe()`` by default.
        eval_dataset: a catalog measured after every epoch (its metrics go into the history).
        save_dir: the checkpoint folder; ``None`` means the kit's (``helper_utils.paths``).
        loss_fn: your own loss instead of the recipe's mining, called as
            ``loss_fn(embeddings, labels, recipe.margin)`` on L2-normalised embeddings, like notebook 05's
            ``batch_hard_triplet_loss``.
        head: your own head module instead of the recipe's ``head``, e.g. notebook 05's
            ``ProjectionHead(64)``: it takes the pooled ``(B, 64)`` embedding and learns at
            ``recipe.lr * recipe.head_lr_factor``. To be saved, it must compute ``linear(x)`` with each
            row L2-normalised (as that exercise specifies); checked before training starts.
        save_as: the file name under ``save_dir``; ``None`` saves nothing. Keep the default only for the
            encoder later notebooks should use: every other run should save under a name of its own.

    Returns:
        ``(encoder, history)``: the trained encoder (with ``head`` on top when given) in eval mode.

    Raises:
        ValueError: ``save_as`` is a path rather than a file name, or ``head`` cannot be saved.
    """
    recipe = recipe or SiameseRecipe()
    device = device or get_device()
    if save_as is not None and Path(save_as).name != save_as:
        raise ValueError(f"save_as should be a file name such as 'encoder_mined.pt', got {save_as!r}")
    seed_everything(recipe.seed)
    encoder = _siamese_model(backbone, recipe, head, save_as).to(device, memory_format=torch.channels_last)
    train = ClothingDataset("train")
    images, targets = train.as_tensors()
    loader = ClassBalancedLoader(images, targets, recipe.classes_per_batch, recipe.samples_per_class,
                                 augment=recipe.make_augment(), seed=recipe.seed)
    optimizer = recipe.make_optimizer(encoder)
    scheduler = recipe.make_scheduler(optimizer, len(loader))
    eval_fn = (lambda: embedding_metrics(encoder, eval_dataset, device)) if eval_dataset is not None else None
    history = train_siamese(encoder, loader, epochs=recipe.epochs, optimizer=optimizer,
                            loss_fn=_siamese_loss(recipe, loss_fn), device=device, scheduler=scheduler,
                            eval_fn=eval_fn, progress=progress)
    encoder.eval()
    if save_as is not None:
        saved = encoder.to_projected() if isinstance(encoder, HeadedEncoder) else encoder
        loss_name = "recipe" if loss_fn is None else getattr(loss_fn, "__name__", type(loss_fn).__name__)
        save_model(saved, _folder(save_dir) / save_as, recipe=asdict(recipe), finished=True,
                   epochs_done=recipe.epochs, epochs_planned=recipe.epochs, loss=loss_name,
                   head="recipe" if head is None else type(head).__name__,
                   made_by="helper_utils.recipes.fit_siamese")  # written once, after the last epoch: a finished run
    return encoder, history


def _siamese_model(backbone: nn.Module, recipe: SiameseRecipe, head: nn.Module | None, save_as) -> nn.Module:
    """``SiameseEncoder(backbone)`` with the recipe's head, or with ``head`` (checked to be savable when saved)."""
    if head is None:
        return recipe.make_model(backbone)
    model = HeadedEncoder(SiameseEncoder(backbone), head)
    if save_as is not None and not model.head_is_linear_then_normalize():
        raise ValueError(f"{type(head).__name__} does not compute linear(x) with each row L2-normalised, which an "
                         f"encoder file stores: pass save_as=None to train it without saving")
    return model


def _siamese_loss(recipe: SiameseRecipe, loss_fn):
    """The recipe's mined loss, or ``loss_fn(embeddings, labels, margin)`` on L2-normalised embeddings."""
    if loss_fn is None:
        return MinedTripletLoss(recipe.margin, recipe.mining)
    return lambda embeddings, labels: loss_fn(l2_normalize(embeddings), labels, recipe.margin)


def load_or_train_encoder(device=None, save_dir: Path | None = None, progress: bool = True,
                          classifier_recipe: ClassifierRecipe | None = None,
                          siamese_recipe: SiameseRecipe | None = None):
    """The encoder notebook 05 trained, or one fine-tuned here (backbone from notebook 03 or trained here).

    Notebooks 06-10 expect notebook 05's projection head: an encoder without one is replaced.

    Returns:
        ``(encoder, message)``: the encoder in eval mode, and a message that says where it came from.
    """
    device = device or get_device()
    path = _folder(save_dir) / ENCODER_FILE
    try:
        encoder, _ = load_encoder(path, device=device, require_head=True)
        return encoder, f"Loaded the encoder trained in notebook 05 from {path.name}."
    except CheckpointError as error:
        refused = error
    print(TRAINING_ENCODER_NOTICE, flush=True)
    backbone, message = load_or_train_backbone(device, save_dir, progress, classifier_recipe)
    encoder, _ = fit_siamese(backbone, siamese_recipe, device=device, progress=progress, save_dir=save_dir)
    why = f"No encoder at {path}" if refused.reason == "missing" else _refusal(refused, "encoder")
    return encoder, f"{message} {why}: fine-tuned one here and saved it."


@dataclass
class TutorialRecipe:
    """The tutorial's recipe as written, kept only to measure the kit against (``make bench``).

    Adam at 1e-3 for 10 epochs with weighted cross-entropy and flip + rotation, then random
    triplets with ``nn.TripletMarginLoss(margin=1.0)`` and Adam at 1e-4 for 15 epochs, on raw
    (not normalised) embeddings. Batches come from the kit's in-memory cache rather than the
    tutorial's per-image PIL pipeline: the same numbers, several times faster (see the pipeline
    benchmark).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    siamese_epochs: int = 15
    siamese_lr: float = 1e-4
    margin: float = 1.0
    augment: dict = field(default_factory=lambda: dict(TUTORIAL_AUGMENT))
    seed: int = 42

    def make_augment(self) -> BatchAugment:
        return BatchAugment(**self.augment, seed=self.seed)
