"""Variations of notebook 05's siamese recipe, each fine-tuned from one saved backbone (``make bench-siamese``).

Every variation is a set of :class:`~helper_utils.recipes.SiameseRecipe` fields; each is trained
from the same backbone (``checkpoints/backbone_best.pt`` by default, notebook 03's) and measured
the way notebook 05 measures: leave-one-out on the validation catalog, L2-normalised embeddings.
The results page's projection-head table was measured with::

    python -m tools.siamese_sweep --variations '[{"head": "none"}, {"head_lr_factor": 10}, ...]'

One run per variation: a difference of a query or two (0.36 points each) is noise; the bootstrap
intervals of notebook 05 and the seeds of ``make bench`` say how much.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from helper_utils.checkpoints import BACKBONE_FILE, load_backbone
from helper_utils.cli import ArgumentParser, run
from helper_utils.data import ClothingDataset
from helper_utils.files import atomic_path
from helper_utils.device import get_device, machine_description
from helper_utils.recipes import SiameseRecipe, fit_siamese
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
    return {name: round(metrics[name], 3) for name in ("P@1", "Recall@5", "R-Precision", "mAP@R")}


def _run_variation(changes: dict, backbone_path: Path, device, catalog: ClothingDataset) -> dict:
    """Fine-tune ``SiameseRecipe(**changes)`` from the backbone at ``backbone_path``; its metrics and time."""
    recipe = SiameseRecipe(**changes)
    backbone, _ = load_backbone(backbone_path, device=device)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # never overwrite the course's encoder_best.pt
        encoder, _ = fit_siamese(backbone, recipe, device=device, progress=False, save_dir=Path(tmp))
    return {"changes": changes, **_measure(encoder, catalog, device), "seconds": round(time.perf_counter() - start)}


def sweep_markdown(rows: list[dict]) -> str:
    """The rows as the results page's table: one line per variation, the recipe's own values named as such."""
    lines = ["| variation of `SiameseRecipe()` | P@1 | Recall@5 | R-Precision | mAP@R | train (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        changes = row["changes"]
        if isinstance(changes, dict):
            changes = ", ".join(f"`{key}={value!r}`" for key, value in changes.items()) or "the recipe as it is"
        lines.append(f"| {changes} | {row['P@1']:.3f} | {row['Recall@5']:.3f} | {row['R-Precision']:.3f} | "
                     f"{row['mAP@R']:.3f} | {row['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tools.siamese_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--variations", type=_variations, default=list(_DEFAULT_VARIATIONS),
                        help="a JSON list of SiameseRecipe field changes, one training run each")
    parser.add_argument("--backbone", type=Path, default=None, help="default: checkpoints/backbone_best.pt")
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
    device = get_device()
    backbone_path = args.backbone or checkpoint_dir() / BACKBONE_FILE
    backbone, _ = load_backbone(backbone_path, device=device)  # a finished run of notebook 03; else a CheckpointError
    catalog = ClothingDataset("validation", transform=val_transform)
    print(f"Siamese recipe sweep on {machine_description()}, from {backbone_path}", flush=True)
    rows = [{"changes": "backbone as it is", **_measure(SiameseEncoder(backbone).to(device), catalog, device),
             "seconds": 0}]
    print(rows[0], flush=True)
    for changes in args.variations:
        rows.append(_run_variation(changes, backbone_path, device, catalog))
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
