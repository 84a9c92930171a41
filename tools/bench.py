"""Benchmarks of the kit, run on the machine at hand.

``python -m tools.bench results`` (``make bench``) trains the tutorial's recipe, the
kit's core recipe and the going-further recipe with three seeds each and writes the results
table of the results page, docs/results/README.md (see :mod:`tools.results`).

The course's own numbers come from the notebooks as nbval executes them (``make bench-course``
for the six core notebooks, ``make test`` for all): see :mod:`tools.course_report`.

``python -m tools.bench pipeline`` compares data pipelines:

``pipeline`` times one training epoch of the same model fed three ways, in one run:

(a) ``tutorial``: torchvision ``ImageFolder`` + ``DataLoader``: every access opens the JPEG,
    decodes, resizes, flips and rotates it with PIL, one image at a time;
(b) ``kit``: ``ClothingDataset`` (decoded and resized once, cached) + ``TensorLoader`` with
    ``BatchAugment`` on whole uint8 batches (the recipe of notebook 03);
(c) ``in-memory``: normalised float tensors already in memory, no augmentation: the model's
    own compute, the limit any pipeline can reach.

Timings are only compared as ratios within one run, on one machine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from helper_utils.augment import normalize_batch
from helper_utils.cli import ArgumentParser, int_at_least, run
from helper_utils.device import machine_description
from helper_utils.data import CLASSES_7, ClothingDataset, dataset_dir
from helper_utils.files import atomic_path
from helper_utils.loaders import TensorLoader
from helper_utils.reference import MobileNetLikeClassifier
from helper_utils.recipes import ClassifierRecipe

__all__ = ["time_epoch", "main"]


def time_epoch(loader, batch_size: int, seed: int = 0, warmup_batches: int = 2) -> tuple[float, int]:
    """Seconds for one training epoch over ``loader`` (a fresh, identical model each time) and images seen."""
    torch.manual_seed(seed)
    model = MobileNetLikeClassifier(len(CLASSES_7)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(images, targets):
        loss = loss_fn(model(images.contiguous(memory_format=torch.channels_last)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup_batches):  # first calls allocate and pick kernels: keep them out of the timing
        step(torch.randn(batch_size, 3, 64, 64), torch.zeros(batch_size, dtype=torch.long))
    seen = 0
    start = time.perf_counter()
    for images, targets in loader:
        step(images, targets)
        seen += len(targets)
    return time.perf_counter() - start, seen


class _InMemory:
    """Pre-normalised float batches, sliced in a fixed shuffled order: no work besides indexing."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, batch_size: int) -> None:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        self.images = normalize_batch(images)[order].contiguous(memory_format=torch.channels_last)
        self.targets, self.batch_size = targets[order], batch_size

    def __iter__(self):
        for start in range(0, len(self.images), self.batch_size):
            yield self.images[start:start + self.batch_size], self.targets[start:start + self.batch_size]


def _tutorial_loader(batch_size: int, num_workers: int):
    from torchvision import datasets, transforms as T

    transform = T.Compose([T.Resize((64, 64)), T.RandomHorizontalFlip(), T.RandomRotation(10), T.ToTensor(),
                           T.Normalize((0.5,) * 3, (0.5,) * 3)])

    class SevenClassFolder(datasets.ImageFolder):
        def find_classes(self, directory):
            return list(CLASSES_7), {name: i for i, name in enumerate(CLASSES_7)}

    folder = SevenClassFolder(str(dataset_dir() / "train"), transform=transform)
    return torch.utils.data.DataLoader(folder, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                       generator=torch.Generator().manual_seed(0))


def _pipeline_benchmark(batch_size: int = 64, num_workers: int = 0, repeats: int = 2) -> dict:
    """Time (a), (b) and (c); returns seconds, images/s and the two ratios that matter.

    One untimed epoch first warms the kernels up (oneDNN picks and caches its kernels on
    the first batches of each shape); then each pipeline runs ``repeats`` epochs and its
    fastest counts (the tutorial's once: it is the slow one by far).
    """
    start = time.perf_counter()
    train = ClothingDataset("train")
    cache_seconds = time.perf_counter() - start
    images, targets = train.as_tensors()
    recipe = ClassifierRecipe()
    loaders = {
        "tutorial": _tutorial_loader(batch_size, num_workers),
        "kit": TensorLoader(images, targets, batch_size=batch_size, shuffle=True, augment=recipe.make_augment(),
                            seed=0),
        "in-memory": _InMemory(images, targets, batch_size),
    }
    results = {"machine": machine_description(), "batch_size": batch_size, "tutorial_num_workers": num_workers,
               "cache_load_seconds": round(cache_seconds, 3), "epochs": {}}
    time_epoch(loaders["in-memory"], batch_size)  # warm-up, not counted
    for name, loader in loaders.items():
        runs = [time_epoch(loader, batch_size) for _ in range(1 if name == "tutorial" else repeats)]
        seconds, seen = min(runs)
        results["epochs"][name] = {"seconds": round(seconds, 3), "images": seen,
                                   "images_per_second": round(seen / seconds, 1)}
        print(f"  {name:<10} {seconds:7.2f} s/epoch  {seen / seconds:8.1f} images/s", flush=True)
    epochs = results["epochs"]
    results["kit_vs_tutorial"] = round(epochs["kit"]["seconds"] / epochs["tutorial"]["seconds"], 3)
    results["kit_vs_in_memory"] = round(epochs["kit"]["seconds"] / epochs["in-memory"]["seconds"], 3)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pipe = commands.add_parser("pipeline", help="time one epoch fed three ways: tutorial, kit, in-memory")
    pipe.add_argument("--batch-size", type=int_at_least(1), default=64)
    pipe.add_argument("--num-workers", type=int_at_least(0), default=0,
                      help="DataLoader workers of the tutorial pipeline")
    pipe.add_argument("--repeats", type=int_at_least(1), default=2,
                      help="epochs timed for the kit and in-memory pipelines")
    pipe.add_argument("--json", type=Path, help="also write the results to this file")
    res = commands.add_parser("results", help="train the tutorial, core and going-further recipes; write the table")
    res.add_argument("--recipes", nargs="+", default=["tutorial", "core", "going-further"],
                     choices=["tutorial", "core", "going-further"])
    res.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    res.add_argument("--repeat", nargs="*", default=["core"], help="recipes whose first seed runs twice")
    res.add_argument("--json", type=Path, default=Path("docs/results/bench_results.json"))
    res.add_argument("--markdown", type=Path, default=Path("docs/results/bench_results.md"))
    res.add_argument("--readme", type=_optional_path, default=Path("docs/results/README.md"),
                     help="the results page whose table between the bench:results markers is rewritten ('' to skip)")
    res.add_argument("--from-json", type=Path, help="re-render the table and README from a saved run, training nothing")
    args = parser.parse_args(argv)
    return run(lambda: _results_command(args) if args.command == "results" else _pipeline_command(args))


def _optional_path(text: str) -> Path | None:
    """``''`` means none: ``Path('')`` would be the current folder."""
    return Path(text) if text else None


def _pipeline_command(args) -> int:
    print(f"Pipeline benchmark on {machine_description()}", flush=True)
    results = _pipeline_benchmark(args.batch_size, args.num_workers, args.repeats)
    print(f"kit / tutorial   = {results['kit_vs_tutorial']:.3f}  (target <= 0.2: at least 5x faster)")
    print(f"kit / in-memory  = {results['kit_vs_in_memory']:.3f}  (target <= 1.5)")
    if args.json:
        with atomic_path(args.json, mode=0o644) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _results_command(args) -> int:
    from tools.results import results_markdown, run_benchmark, update_readme

    if args.from_json:
        try:
            results = json.loads(args.from_json.read_text(encoding="utf-8"))
            table = results_markdown(results)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:  # not JSON, or not a run
            raise ValueError(f"{args.from_json} is not a run saved by `python -m tools.bench results` "
                             f"({type(error).__name__}: {str(error)[:80]})") from None
    else:
        print(f"Results benchmark on {machine_description()}: recipes {args.recipes}, seeds {args.seeds}", flush=True)
        results = run_benchmark(args.recipes, args.seeds, args.repeat, log=lambda line: print(line, flush=True))
        table = results_markdown(results)
    outputs = [(args.markdown, table)] if args.from_json else [(args.json, json.dumps(results, indent=2) + "\n"),
                                                              (args.markdown, table)]
    for path, text in outputs:
        with atomic_path(path, mode=0o644) as tmp:
            tmp.write_text(text)
    print("\n" + table)
    if args.readme is not None and args.readme.exists():
        updated = update_readme(args.readme, table)
        print(f"{'updated' if updated else 'NOT updated (no bench:results markers in)'} {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
