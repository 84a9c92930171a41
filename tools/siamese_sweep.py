"""Variations of notebook 05's siamese recipe, each fine-tuned from one saved backbone (``make bench-siamese``).

Every variation is a set of :class:`~helper_utils.recipes.SiameseRecipe` fields; each is trained
from the same backbone (``checkpoints/backbone_best.pt`` by default, notebook 03's) and measured
the way notebook 05 measures: leave-one-out on the validation catalog, L2-normalised embeddings.
The results page's projection-head table was measured with::

    python -m tools.siamese_sweep --variations '[{"head": "none"}, {"head_lr_factor": 10}, ...]'

One run per variation: a difference of a query or two (0.36 points each) is noise; the bootstrap
intervals of notebook 05 and the seeds of ``make bench`` say how much. ``--seeds 0 1 2`` measures
each variation the way ``make bench`` measures the core recipe instead: from the backbone of
each seed's core classifier (trained once, about 4 minutes each on a 2-core CPU, and kept in
``checkpoints/siamese_sweep/``), with the siamese recipe's seed set to the same number. The
row is then the mean over the seeds, with each seed's P@1 beside it; the recipe's own row
repeats ``make bench``'s numbers on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from helper_utils.checkpoints import BACKBONE_FILE, CheckpointError, load_backbone
from helper_utils.cli import ArgumentParser, run
from helper_utils.data import ClothingDataset
from helper_utils.files import atomic_path
from helper_utils.device import get_device, machine_description
from helper_utils.recipes import ClassifierRecipe, SiameseRecipe, fit_classifier, fit_siamese
from helper_utils.reference import SiameseEncoder, get_embeddings, val_transform
from helper_utils.retrieval import l2_normalize, retrieval_metrics
from helper_utils.training import checkpoint_dir

__all__ = ["sweep_markdown", "main"]

_DEFAULT_VARIATIONS = (  # the recipe's own values, then one change at a time
    {"head": "none"}, {}, {"head_lr_factor": 1.0}, {"head_lr_factor": 10.0}, {"head_lr_factor": 30.0},
    {"mining": "hard"}, {"margin": 0.1}, {"margin": 0.3}, {"samples_per_class": 8}, {"epochs": 20},
)


def _measure(encoder, catalog: ClothingDataset, device) -> dict[str, float]:
    embeddings = l2_normalize(get_embeddings(encoder, catalog, device))
    metrics = retrieval_metrics(embeddings, catalog.targets)
    return {name: float(metrics[name]) for name in ("P@1", "Recall@5", "R-Precision", "mAP@R")}


def _run_variation(changes: dict, backbones: list[tuple[Path, int | None]], device, catalog: ClothingDataset) -> dict:
    """Fine-tune ``SiameseRecipe(**changes)`` from each backbone; the mean metrics and the time of one run.

    Each backbone comes with the siamese recipe's seed to train it with (``None``: the recipe's own);
    a ``seed`` in ``changes`` overrides it (another draw of batches and augmentations, same backbones).
    """
    runs, start = [], time.perf_counter()
    for path, seed in backbones:
        recipe = SiameseRecipe(**{**({} if seed is None else {"seed": seed}), **changes})
        backbone, _ = load_backbone(path, device=device)
        with tempfile.TemporaryDirectory() as tmp:  # never overwrite the course's encoder_best.pt
            encoder, _ = fit_siamese(backbone, recipe, device=device, progress=False, save_dir=Path(tmp))
        runs.append(_measure(encoder, catalog, device))
    row = {"changes": changes, **_mean(runs), "seconds": round((time.perf_counter() - start) / len(backbones))}
    return _with_seeds(row, runs, backbones)


def _mean(runs: list[dict]) -> dict[str, float]:
    return {name: round(sum(run[name] for run in runs) / len(runs), 3) for name in runs[0]}


def _with_seeds(row: dict, runs: list[dict], backbones: list[tuple[Path, int | None]]) -> dict:
    """``row`` with each seed's P@1 when the sweep ran over several seeds."""
    if len(runs) > 1:
        row["P@1 per seed"] = {str(seed): round(run["P@1"], 3) for (_, seed), run in zip(backbones, runs)}
    return row


def _seed_backbone(seed: int, device) -> Path:
    """The backbone of the core classifier trained with ``ClassifierRecipe(seed=seed)``, as ``make bench`` trains it.

    Trained once into ``checkpoints/siamese_sweep/seed<seed>/``; a later sweep reuses that file while
    it holds a finished run of today's recipe, and trains it again otherwise.
    """
    recipe = ClassifierRecipe(seed=seed)
    folder = checkpoint_dir() / "siamese_sweep" / f"seed{seed}"
    try:
        _, checkpoint = load_backbone(folder / BACKBONE_FILE, device=device)
        if checkpoint.info.get("recipe") == asdict(recipe):
            return folder / BACKBONE_FILE
        print(f"{folder / BACKBONE_FILE} was trained with another recipe: training it again", flush=True)
    except CheckpointError as error:
        print(f"Training the core classifier with seed {seed} ({error.path} {error.why})", flush=True)
    fit_classifier(recipe, device=device, progress=False, save_dir=folder)
    return folder / BACKBONE_FILE


def sweep_markdown(rows: list[dict]) -> str:
    """The rows as the results page's table: one line per variation, the recipe's own values named as such."""
    seeds = any("P@1 per seed" in row for row in rows)
    lines = ["| variation of `SiameseRecipe()` | P@1 | " + ("P@1 per seed | " if seeds else "")
             + "Recall@5 | R-Precision | mAP@R | train (s) |",
             "| --- | ---: | " + ("---: | " if seeds else "") + "---: | ---: | ---: | ---: |"]
    for row in rows:
        changes = row["changes"]
        if isinstance(changes, dict):
            changes = ", ".join(f"`{key}={value!r}`" for key, value in changes.items()) or "the recipe as it is"
        per_seed = ", ".join(f"{p:.3f}" for p in row.get("P@1 per seed", {}).values())
        lines.append(f"| {changes} | {row['P@1']:.3f} | " + (f"{per_seed} | " if seeds else "")
                     + f"{row['Recall@5']:.3f} | {row['R-Precision']:.3f} | {row['mAP@R']:.3f} | {row['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tools.siamese_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--variations", type=_variations, default=list(_DEFAULT_VARIATIONS),
                        help="a JSON list of SiameseRecipe field changes, one training run each")
    parser.add_argument("--backbone", type=Path, default=None, help="default: checkpoints/backbone_best.pt")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="instead of one backbone: make bench's core seeds, each from its own seed's backbone")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--from-json", type=Path, help="print the table of a saved sweep, training nothing")
    args = parser.parse_args(argv)
    return run(lambda: _main(args))


def _variations(text: str) -> list[dict]:
    """``--variations``: a JSON list of objects, each a set of SiameseRecipe field changes."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"is not JSON ({error.msg}); give a list of objects, e.g. "
                                         "'[{\"margin\": 0.1}]'") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise argparse.ArgumentTypeError("must be a JSON list of objects, e.g. '[{\"margin\": 0.1}]'")
    return value


def _main(args: argparse.Namespace) -> int:
    if args.from_json:
        print(_saved_table(args.from_json), end="")
        return 0
    if args.seeds and args.backbone:
        raise ValueError("give --backbone or --seeds, not both: --seeds trains each seed's own backbone")
    device = get_device()
    catalog = ClothingDataset("validation", transform=val_transform)  # before any training: fails fast without data
    if args.seeds:
        backbones = [(_seed_backbone(seed, device), seed) for seed in args.seeds]
    else:
        backbones = [(args.backbone or checkpoint_dir() / BACKBONE_FILE, None)]
    print(f"Siamese recipe sweep on {machine_description()}, from {', '.join(str(p) for p, _ in backbones)}",
          flush=True)
    before = [_measure(SiameseEncoder(load_backbone(path, device=device)[0]).to(device), catalog, device)
              for path, _ in backbones]  # a finished run of notebook 03; else a CheckpointError
    rows = [_with_seeds({"changes": "backbone as it is", **_mean(before), "seconds": 0}, before, backbones)]
    print(rows[0], flush=True)
    for changes in args.variations:
        rows.append(_run_variation(changes, backbones, device, catalog))
        print(rows[-1], flush=True)
    if args.json:
        with atomic_path(args.json, mode=0o644) as tmp:
            tmp.write_text(json.dumps({"machine": machine_description(), "rows": rows}, indent=2) + "\n")
    print("\n" + sweep_markdown(rows), end="")
    return 0


def _saved_table(path: Path) -> str:
    """The table of a sweep saved with ``--json``; a ValueError naming the file when it is not one."""
    try:
        return sweep_markdown(json.loads(path.read_text(encoding="utf-8"))["rows"])
    except (ValueError, KeyError, TypeError, IndexError) as error:  # ValueError: not JSON, or not UTF-8
        raise ValueError(f"{path} is not a sweep saved with --json ({type(error).__name__}: {str(error)[:80]})") from None


if __name__ == "__main__":
    sys.exit(main())
