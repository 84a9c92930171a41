"""The kit's results benchmark: three recipes, several seeds, one table (``make bench``).

Each recipe trains a classifier from scratch on the seven-class train split, fine-tunes its
backbone into a search encoder, and is measured the same way:

* validation accuracy of the best epoch (the checkpoint the kit keeps) and the test accuracy
  of that checkpoint;
* leave-one-out retrieval on the validation catalog: P@1, Recall@5 and mAP@R;
* training wall time (classifier + encoder), the classifier's mean epoch time, and search
  latency (embed one test photo and search the catalog, mean over test photos).

The recipes:

* ``tutorial``: :class:`~helper_utils.recipes.TutorialRecipe`, the tutorial as written (raw
  embeddings, searched as the tutorial does);
* ``core``: what notebooks 03 and 05 run (:class:`ClassifierRecipe`, :class:`SiameseRecipe`);
* ``going-further``: notebook 08's wider backbone (:class:`GoingFurtherRecipe`).

Seeds are run in turn; the first seed of ``--repeat`` recipes is run a second time to show
how far a seeded run repeats on the same machine. ``--readme`` rewrites the results page's table
(docs/results/README.md) between the ``bench:results`` markers, so it always shows the last measured run.
"""

from __future__ import annotations

import copy
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from helper_utils.checkpoints import CLASSIFIER_FILE, load_classifier
from helper_utils.data import ClothingDataset
from helper_utils.device import get_device, seed_everything
from helper_utils.files import atomic_path
from helper_utils.loaders import TensorLoader
from helper_utils.going_further.recipe import GoingFurtherRecipe, fit_going_further, going_further_dir
from helper_utils.recipes import ClassifierRecipe, SiameseRecipe, TutorialRecipe, fit_classifier, fit_siamese
from helper_utils.reference import (MobileNetLikeClassifier, SiameseEncoder, SiameseNetwork, TripletDataset,
                                    compute_class_weights, get_embeddings, val_transform)
from helper_utils.retrieval import knn, l2_normalize, retrieval_scores
from helper_utils.training import evaluate, train_classifier, train_siamese

__all__ = ["run_recipe", "run_benchmark", "summarize_runs", "paired_gain", "results_markdown", "update_readme"]

_RECIPES = ("tutorial", "core", "going-further")
METRICS = ("val_acc", "test_acc", "P@1", "Recall@5", "mAP@R", "train_s", "epoch_s", "search_ms",
           "backbone_P@1", "backbone_Recall@5", "backbone_mAP@R", "unseen_P@1", "unseen_backbone_P@1")
UNSEEN_CLASSES = ("outwear", "shirt", "skirt")  # in the dataset, never trained on by any recipe
README_START = "<!-- bench:results:start -->"
README_END = "<!-- bench:results:end -->"


# --------------------------------------------------------------------------- one run

def run_recipe(name: str, seed: int, device=None, save_dir: Path | None = None, progress: bool = False) -> dict:
    """Train recipe ``name`` with ``seed`` and measure it; checkpoints go to ``save_dir`` (a temp dir if None)."""
    if name not in _RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose from {', '.join(_RECIPES)}")
    device = device or get_device()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(save_dir) if save_dir is not None else Path(tmp)
        start = time.perf_counter()
        if name == "tutorial":
            classifier, encoder, epoch_s, normalized = _train_tutorial(seed, device, progress)
        elif name == "core":
            classifier, encoder, epoch_s, normalized = _train_core(seed, device, out, progress)
        else:
            classifier, encoder, epoch_s, normalized = _train_going_further(seed, device, out, progress)
        train_s = time.perf_counter() - start
        return {"recipe": name, "seed": seed, **_measure(classifier, encoder, device, normalized),
                "train_s": train_s, "epoch_s": epoch_s}


def _train_tutorial(seed: int, device, progress: bool):
    recipe = TutorialRecipe(seed=seed)
    seed_everything(seed)
    train = ClothingDataset("train")
    model = MobileNetLikeClassifier(len(train.classes)).to(device, memory_format=torch.channels_last)
    loader = TensorLoader.from_dataset(train, batch_size=recipe.batch_size, shuffle=True,
                                       augment=recipe.make_augment(), seed=seed)
    weights = compute_class_weights(train.targets, len(train.classes)).to(device)
    history = train_classifier(model, loader, TensorLoader.from_dataset(ClothingDataset("validation"), batch_size=256),
                               epochs=recipe.epochs, optimizer=torch.optim.Adam(model.parameters(), lr=recipe.lr),
                               loss_fn=nn.CrossEntropyLoss(weight=weights), device=device, progress=progress,
                               checkpoint_path=None, backbone_path=None)
    # The tutorial keeps the last epoch's model and fine-tunes a copy of its backbone on random triplets.
    network = SiameseNetwork(SiameseEncoder(copy.deepcopy(model.backbone))).to(device, memory_format=torch.channels_last)
    triplets = DataLoader(TripletDataset(_AugmentedImages(train, recipe.make_augment())),  # seeded by seed_everything
                          batch_size=recipe.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(seed))
    train_siamese(network, triplets, epochs=recipe.siamese_epochs,
                  optimizer=torch.optim.Adam(network.parameters(), lr=recipe.siamese_lr),
                  loss_fn=nn.TripletMarginLoss(margin=recipe.margin), device=device, progress=progress)
    return model, network.embedding_network, float(np.mean(history["epoch_seconds"])), False


class _AugmentedImages(torch.utils.data.Dataset):
    """The cached uint8 images, one augmented view per access: the tutorial's per-item transform, without PIL."""

    def __init__(self, dataset: ClothingDataset, augment) -> None:
        self.images, self.targets = dataset.as_tensors()
        self.targets = [int(t) for t in self.targets]
        self.augment = augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.augment(self.images[index : index + 1])[0], self.targets[index]


def _train_core(seed: int, device, out: Path, progress: bool):
    model, history = fit_classifier(ClassifierRecipe(seed=seed), device=device, progress=progress, save_dir=out)
    model, _ = load_classifier(out / CLASSIFIER_FILE, model, device)  # the best epoch, not the last
    encoder, _ = fit_siamese(copy.deepcopy(model.backbone), SiameseRecipe(seed=seed), device=device,
                             progress=progress, save_dir=out)
    return model, encoder, float(np.mean(history["epoch_seconds"])), True


def _train_going_further(seed: int, device, out: Path, progress: bool):
    classifier, encoder, histories = fit_going_further(GoingFurtherRecipe().with_seed(seed), device=device,
                                                       progress=progress, save_dir=out)
    return classifier, encoder, float(np.mean(histories["classifier"]["epoch_seconds"])), True


def _measure(classifier: nn.Module, encoder: nn.Module, device, normalized: bool) -> dict:
    """Accuracy, the encoder's retrieval metrics, and the siamese stage's gain over its own backbone.

    The backbone is measured as notebook 05 measures it before training: ``SiameseEncoder`` on the
    classifier's backbone (the one the siamese stage started from), embeddings treated like the
    encoder's. Gains come with a paired 95% bootstrap interval over the catalog's queries.
    """
    val, test = (ClothingDataset(split, transform=val_transform) for split in ("validation", "test"))
    _, val_acc = evaluate(classifier, TensorLoader.from_dataset(val, batch_size=256), device=device)
    _, test_acc = evaluate(classifier, TensorLoader.from_dataset(test, batch_size=256), device=device)
    backbone = SiameseEncoder(classifier.backbone).to(device).eval()
    catalog = _embed(encoder, val, device, normalized)
    scores = retrieval_scores(catalog, val.targets, ks=(1, 5))
    before = retrieval_scores(_embed(backbone, val, device, normalized), val.targets, ks=(1, 5))
    unseen = ConcatDataset([ClothingDataset(split, classes=list(UNSEEN_CLASSES), transform=val_transform)
                            for split in ("validation", "test")])
    unseen_labels = np.concatenate([part.targets for part in unseen.datasets])
    unseen_after = retrieval_scores(_embed(encoder, unseen, device, normalized), unseen_labels, ks=(1,))
    unseen_before = retrieval_scores(_embed(backbone, unseen, device, normalized), unseen_labels, ks=(1,))
    out = {"val_acc": val_acc, "test_acc": test_acc, "P@1": scores["P@1"].mean(), "Recall@5": scores["Recall@5"].mean(),
           "mAP@R": scores["mAP@R"].mean(), "backbone_P@1": before["P@1"].mean(),
           "backbone_Recall@5": before["Recall@5"].mean(), "backbone_mAP@R": before["mAP@R"].mean(),
           "unseen_P@1": unseen_after["P@1"].mean(), "unseen_photos": len(unseen), "unseen_backbone_P@1": unseen_before["P@1"].mean(),
           "search_ms": _search_latency(encoder, catalog, test, device, normalized)}
    for metric in ("P@1", "Recall@5", "mAP@R"):
        out[f"gain_{metric}"] = paired_gain(scores[metric], before[metric])
    out["gain_unseen_P@1"] = paired_gain(unseen_after["P@1"], unseen_before["P@1"])
    return {name: value if isinstance(value, dict) else float(value) for name, value in out.items()}


def _embed(encoder: nn.Module, dataset, device, normalized: bool) -> np.ndarray:
    embeddings = get_embeddings(encoder, dataset, device, batch_size=256)
    return l2_normalize(embeddings) if normalized else embeddings


def paired_gain(after: np.ndarray, before: np.ndarray, draws: int = 2000, seed: int = 0) -> dict:
    """Mean of ``after - before`` per query, and its 95% paired bootstrap interval (the same queries for both)."""
    difference = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)  # (Q,)
    picks = np.random.default_rng(seed).integers(0, len(difference), size=(draws, len(difference)))
    low, high = np.percentile(difference[picks].mean(axis=1), [2.5, 97.5])
    return {"mean": float(difference.mean()), "low": float(low), "high": float(high)}


@torch.no_grad()
def _search_latency(encoder: nn.Module, catalog: np.ndarray, queries: ClothingDataset, device, normalized: bool,
                    count: int = 50) -> float:
    """Mean milliseconds to embed one query photo and find its 5 nearest catalog photos."""
    encoder.eval()
    times = []
    for i in range(min(count, len(queries))):
        image = queries[i][0].unsqueeze(0).to(device)
        start = time.perf_counter()
        query = encoder(image).float().cpu().numpy()
        if normalized:
            query = l2_normalize(query)
        knn(catalog, query, k=5)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.mean(times))


# --------------------------------------------------------------------------- many runs

def run_benchmark(recipes: Sequence[str] = _RECIPES, seeds: Sequence[int] = (0, 1, 2),
                  repeat: Sequence[str] = ("core",), device=None, keep_going_further: bool = True,
                  log=print) -> dict:
    """Every recipe with every seed, then the first seed of each ``repeat`` recipe once more.

    With ``keep_going_further``, the first seed's going-further checkpoints are kept in
    :func:`going_further_dir` for notebook 08 to load.
    """
    device = device or get_device()
    runs, repeats = [], []
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    for name in recipes:
        for i, seed in enumerate(seeds):
            keep = keep_going_further and name == "going-further" and i == 0
            log(f"== {name}, seed {seed} ...")
            run = run_recipe(name, seed, device, save_dir=going_further_dir() if keep else None)
            log("   " + _run_line(run))
            runs.append(run)
    for name in repeat:
        if name in recipes:
            log(f"== {name}, seed {seeds[0]} again (reproducibility) ...")
            run = run_recipe(name, seeds[0], device)
            log("   " + _run_line(run))
            repeats.append(run)
    return {"machine": _machine_info(device), "seeds": list(seeds), "recipes": list(recipes), "runs": runs,
            "repeats": repeats, "summary": summarize_runs(runs), "reproducibility": _reproducibility(runs, repeats),
            "total_s": time.perf_counter() - start, "load": [load_before, os.getloadavg()[0]],
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _machine_info(device) -> dict:
    from helper_utils.device import machine_description

    import torchvision

    return {"description": machine_description(), "device": str(device), "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "threads": torch.get_num_threads()}


def summarize_runs(runs: Sequence[dict]) -> dict:
    """Per recipe and metric: mean, min and max over seeds."""
    summary = {}
    for name in dict.fromkeys(run["recipe"] for run in runs):
        rows = [run for run in runs if run["recipe"] == name]
        summary[name] = {m: {"mean": float(np.mean([r[m] for r in rows])), "min": float(min(r[m] for r in rows)),
                             "max": float(max(r[m] for r in rows))} for m in METRICS}
        summary[name]["n"] = len(rows)
    return summary


def _reproducibility(runs: Sequence[dict], repeats: Sequence[dict]) -> list[dict]:
    out = []
    for again in repeats:
        first = next(r for r in runs if r["recipe"] == again["recipe"] and r["seed"] == again["seed"])
        out.append({"recipe": again["recipe"], "seed": again["seed"],
                    **{m: {"first": first[m], "again": again[m]} for m in ("val_acc", "test_acc", "P@1")}})
    return out


def _run_line(run: dict) -> str:
    return (f"val {run['val_acc']:.1%}  test {run['test_acc']:.1%}  P@1 {run['P@1']:.3f}  "
            f"R@5 {run['Recall@5']:.3f}  mAP@R {run['mAP@R']:.3f}  train {run['train_s']:.0f} s  "
            f"epoch {run['epoch_s']:.2f} s  search {run['search_ms']:.2f} ms")


# --------------------------------------------------------------------------- the table

_LABELS = {"tutorial": "tutorial, as written", "core": "kit core (notebooks 03, 05)",
           "going-further": "going further (notebook 08)"}


def _cell(stat: dict, percent: bool, digits: int) -> str:
    scale = 100 if percent else 1
    mean, lo, hi = (stat[k] * scale for k in ("mean", "min", "max"))
    spread = (hi - lo) / 2
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def results_markdown(results: dict) -> str:
    """The README's results table: mean ± half the min-max range over seeds, plus how a seed repeats."""
    m = results["machine"]
    lines = [
        f"Measured by `make bench` on {m['description']} (device {m['device']}), "
        f"torchvision {m['torchvision']}, {results['date']}; "
        f"seeds {', '.join(map(str, results['seeds']))}; mean ± half the spread (max − min) / 2 over seeds; "
        f"whole run {results['total_s'] / 60:.0f} min.{_load_note(results)}",
        "",
        "| recipe | val acc % | test acc % | P@1 | Recall@5 | mAP@R | train time (s) | epoch (s) | search (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in results["summary"].items():
        lines.append(
            f"| {_LABELS.get(name, name)} | {_cell(s['val_acc'], True, 1)} | {_cell(s['test_acc'], True, 1)} | "
            f"{_cell(s['P@1'], False, 3)} | {_cell(s['Recall@5'], False, 3)} | {_cell(s['mAP@R'], False, 3)} | "
            f"{_cell(s['train_s'], False, 0)} | {_cell(s['epoch_s'], False, 2)} | {_cell(s['search_ms'], False, 2)} |")
    gains = [run for run in results["runs"] if "gain_P@1" in run]
    if gains:
        lines += ["", "The siamese stage against the backbone it started from, per seed: leave-one-out on the validation "
                  f"catalog, and on the {gains[0]['unseen_photos']:.0f} validation and test photos of the three classes no "
                  f"recipe trains on ({', '.join(UNSEEN_CLASSES)}). Each gain comes with its 95% paired bootstrap interval over the queries "
                  "(2000 resamples); **beyond noise** means the interval excludes 0.", "",
                  "| recipe | seed | P@1 backbone → encoder | gain [95% interval] | Recall@5 backbone → encoder "
                  "| gain [95% interval] | mAP@R backbone → encoder "
                  "| gain [95% interval] | unseen classes P@1 | gain [95% interval] |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for run in gains:
            lines.append(
                f"| {_LABELS.get(run['recipe'], run['recipe'])} | {run['seed']} | "
                f"{run['backbone_P@1']:.3f} → {run['P@1']:.3f} | {_gain(run['gain_P@1'])} | "
                f"{_pair(run, 'Recall@5')} | "
                f"{run['backbone_mAP@R']:.3f} → {run['mAP@R']:.3f} | {_gain(run['gain_mAP@R'])} | "
                f"{run['unseen_backbone_P@1']:.3f} → {run['unseen_P@1']:.3f} | {_gain(run['gain_unseen_P@1'])} |")
    targets = _target_lines(results["summary"])
    if targets:
        lines += ["", "Against the kit's goals (mean over seeds):", "", *targets]
    for rep in results["reproducibility"]:
        pairs = ", ".join(f"{k.replace('_acc', ' acc')} {_fmt(rep[k]['first'], k)} then {_fmt(rep[k]['again'], k)}"
                          for k in ("val_acc", "test_acc", "P@1"))
        lines += ["", f"Reproducibility: {_LABELS.get(rep['recipe'], rep['recipe'])}, seed {rep['seed']} run twice: "
                  f"{pairs}."]
    return "\n".join(lines) + "\n"


def _pair(run: dict, metric: str) -> str:
    """``backbone → encoder | gain`` cells; runs saved before the kit measured this metric's gain show a dash."""
    if f"gain_{metric}" not in run:
        return "– | –"
    return f"{run[f'backbone_{metric}']:.3f} → {run[metric]:.3f} | {_gain(run[f'gain_{metric}'])}"


def _load_note(results: dict) -> str:
    """Train times only mean something on a quiet machine: say when other programs shared the CPU."""
    if "load" not in results:
        return ""
    before, after = results["load"]
    cores = os.cpu_count() or 1
    if max(before, after) <= cores + 0.5:  # the benchmark's own torch threads keep the load near `cores`
        return ""
    return (f" Other programs shared the CPU during this run (1-minute load average {before:.1f} at the start, "
            f"{after:.1f} at the end, on {cores} cores): the accuracy and retrieval columns do not depend on it, "
            "the times are longer than on a quiet machine.")


def _gain(gain: dict) -> str:
    verdict = " **beyond noise**" if gain["low"] > 0 or gain["high"] < 0 else ""
    return f"{gain['mean']:+.3f} [{gain['low']:+.3f}, {gain['high']:+.3f}]{verdict}"


# The goals the kit's recipes are measured against: (recipe, metric, lowest value wanted).
GOALS = (("core", "P@1", 0.85), ("core", "Recall@5", 0.97),
         ("going-further", "val_acc", 0.93), ("going-further", "P@1", 0.92), ("going-further", "Recall@5", 0.98))


def _target_lines(summary: dict) -> list[str]:
    """One bullet per goal whose recipe was run: the measured mean, and met or missed by how much."""
    out = []
    for recipe, metric, goal in GOALS:
        if recipe not in summary:
            continue
        mean = summary[recipe][metric]["mean"]
        if metric.endswith("acc"):
            wanted, got, short = f"{goal:.0%}", f"{mean:.1%}", f"{100 * (goal - mean):.1f} points"
        else:
            wanted, got, short = f"{goal:.2f}", f"{mean:.3f}", f"{goal - mean:.3f}"
        verdict = "met" if mean >= goal else f"missed by {short}"
        out.append(f"- {_LABELS.get(recipe, recipe)}, {metric.replace('_acc', ' accuracy')} ≥ {wanted}: {got}, {verdict}")
    return out


def _fmt(value: float, key: str) -> str:
    return f"{value:.1%}" if key.endswith("acc") else f"{value:.3f}"


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between the README's ``bench:results`` markers with ``table``; False if no markers."""
    text = Path(readme).read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    with atomic_path(readme) as tmp:
        tmp.write_text(f"{head}{README_START}\n{table}{README_END}{tail}")
    return True
