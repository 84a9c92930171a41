"""``make export-onnx``: export the trained encoder and classifier to ONNX, prove the export right, time it.

Exports both models with :func:`helper_utils.going_further.export.export_models` (what notebook
10 teaches), checks parity with PyTorch on real validation photos and times both engines at each
batch size and thread count, then writes ``encoder.onnx``, ``classifier.onnx`` and ``report.json``
to ``--out`` and the report as a markdown page::

    python -m tools.onnx_bench --out artifacts/onnx --report docs/results/onnx.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from helper_utils.cli import ArgumentParser, int_at_least, run
from helper_utils.files import atomic_path
from helper_utils.going_further import MissingExtrasError, require_extras
from helper_utils.checkpoints import CLASSIFIER_FILE, ENCODER_FILE, CheckpointError, load_classifier, load_encoder
from helper_utils.going_further.export import (OPSET, PARITY_TOLERANCE, ClassifierForExport, EncoderForExport,
                                               export_models, latency, onnx_session, parity, read_metadata,
                                               validation_batch)

from helper_utils.paths import artifacts_dir, checkpoint_dir

__all__ = ["main"]

COMMAND = "python -m tools.onnx_bench"


def _run_export(out_dir: Path, checkpoints: Path | None = None, data_root: Path | None = None,
               threads: Sequence[int] | None = None, n_images: int = 64, batch_sizes: Sequence[int] = (1, 32),
               repeats: int = 100) -> dict:
    """Export both models, check parity on real validation photos and time both engines; returns the report.

    ``threads`` lists the thread counts to time (each used by both engines); the default is
    1 and torch's current count. One thread is the fair figure on a busy machine, where a
    multi-threaded PyTorch call waits for every one of its threads to be scheduled.
    """
    threads = sorted(set(threads or (1, torch.get_num_threads())))
    if len(set(batch_sizes)) != len(batch_sizes) or any(b > n_images for b in batch_sizes):
        raise ValueError(f"batch sizes must be distinct and at most --images ({n_images}), got {list(batch_sizes)}")
    load_before = os.getloadavg()[0]
    folder = Path(checkpoints or checkpoint_dir())
    encoder, _ = load_encoder(folder / ENCODER_FILE)  # a CheckpointError (a ValueError) says why a file is refused
    classifier, _ = load_classifier(folder / CLASSIFIER_FILE)
    paths = export_models(out_dir, checkpoints)
    images = validation_batch(n_images, data_root)
    report: dict[str, Any] = {"date": _dt.date.today().isoformat(), "machine": _machine(), "versions": _versions(),
                              "threads": threads, "repeats": repeats,
                              "parity_images": f"first {len(images)} validation photos", "models": {}}
    default_threads = torch.get_num_threads()
    for name, model, wrapper in [("encoder", encoder, EncoderForExport(encoder)),
                                 ("classifier", classifier, ClassifierForExport(classifier))]:
        session = onnx_session(paths[name])
        report["models"][name] = {
            "file": str(paths[name]), "bytes": paths[name].stat().st_size, "metadata": read_metadata(session),
            "inputs": [_io(arg) for arg in session.get_inputs()], "outputs": [_io(arg) for arg in session.get_outputs()],
            "parity": parity(session, model, images, batch_sizes), "latency": {}}
        try:
            for n in threads:
                torch.set_num_threads(n)
                report["models"][name]["latency"][n] = latency(onnx_session(paths[name], n), wrapper, images,
                                                               batch_sizes, repeats)
        finally:
            torch.set_num_threads(default_threads)
    report["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    report["cores"] = os.cpu_count()
    report["max_abs_diff"] = max(d for m in report["models"].values() for row in m["parity"].values() for d in row.values())
    report["parity_ok"] = report["max_abs_diff"] <= PARITY_TOLERANCE
    return report


def _io(arg) -> dict:
    return {"name": arg.name, "type": arg.type, "shape": [d if isinstance(d, int) else str(d) for d in arg.shape]}


def _machine() -> str:
    from helper_utils.device import machine_description

    return machine_description()


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": str(OPSET)}


def _report_markdown(report: dict, command: str) -> str:
    """The report as a markdown page (docs/results/onnx.md)."""
    v = report["versions"]
    lines = [
        "# ONNX export: parity and latency", "",
        f"Measured {report['date']} with `{command}`.", "",
        f"- Machine: {report['machine']}. Latency is timed with {' and '.join(map(str, report['threads']))} "
        "thread(s), the same for both engines (`torch.set_num_threads`, onnxruntime `intra_op_num_threads`).",
        f"- Versions: Python {v['python']}, torch {v['torch']}, onnx {v['onnx']}, onnxruntime {v['onnxruntime']}, "
        f"opset {v['opset']}.",
        f"- Other programs may share the CPU (1-minute load average {report['load_average'][0]} before the run, "
        f"{report['load_average'][1]} after); the calls of the two engines alternate, so both see the same load.", "",
        "## What the graphs take and give", "",
        "| model | file | input | outputs |", "|---|---|---|---|"]
    for name, m in report["models"].items():
        inputs = ", ".join(f"`{a['name']}` {a['type']} {a['shape']}" for a in m["inputs"])
        outputs = ", ".join(f"`{a['name']}` {a['type']} {a['shape']}" for a in m["outputs"])
        lines.append(f"| {name} | `{Path(m['file']).name}` ({m['bytes'] / 1024:.0f} KiB) | {inputs} | {outputs} |")
    lines += ["", "Preprocessing (uint8 -> [-1, 1], channels last -> first) is inside both graphs and the encoder's "
              "embeddings are L2-normalised inside the graph; resizing to 64x64 (PIL bilinear) is the client's job. "
              "Class names are in the classifier's metadata (`kit.classes`).", "",
              f"## Parity on real photos ({report['parity_images']})", "",
              "Largest absolute difference between onnxruntime and the course's PyTorch path, "
              f"tolerance {PARITY_TOLERANCE:g}:", "",
              "| model | output | " + " | ".join(f"batch {b}" for b in _batch_sizes(report)) + " |",
              "|---|---|" + "---|" * len(_batch_sizes(report))]
    for name, m in report["models"].items():
        for output in next(iter(m["parity"].values())):
            cells = " | ".join(f"{m['parity'][b][output]:.1e}" for b in _batch_sizes(report))
            lines.append(f"| {name} | `{output}` | {cells} |")
    verdict = "within" if report["parity_ok"] else "**outside**"
    lines += ["", f"Overall maximum: **{report['max_abs_diff']:.1e}**, {verdict} the tolerance.", "",
              "## Latency on the CPU (milliseconds per call)", "",
              "| model | threads | batch | PyTorch median | PyTorch p95 | onnxruntime median | onnxruntime p95 | "
              "PyTorch / ORT (median) |", "|---|---|---|---|---|---|---|---|"]
    for name, m in report["models"].items():
        for n, rows in m["latency"].items():
            for b, row in rows.items():
                pt, ort_ = row["pytorch"], row["onnxruntime"]
                lines.append(f"| {name} | {n} | {b} | {pt['median_ms']:.2f} | {pt['p95_ms']:.2f} | "
                             f"{ort_['median_ms']:.2f} | {ort_['p95_ms']:.2f} | {row['speedup']:.2f}x |")
    lines += ["", f"{report['repeats']} timed calls per engine and batch size after 5 warm-up calls; both engines "
              "get the same uint8 batch and run the same graph (preprocessing included)."]
    cores = report.get("cores") or 0
    if cores and max(report["load_average"]) > cores and max(report["threads"]) > 1:
        lines += ["", f"The load average was above the machine's {cores} cores during the run: other programs wanted "
                  "more CPU than there was. A multi-threaded call then waits until all its threads get a core, at "
                  "every operator (PyTorch's OpenMP threads synchronise after each one), so the multi-threaded rows "
                  "measure that waiting more than the engines. The 1-thread rows are the fair comparison here; "
                  "run the command on an idle machine for multi-threaded figures."]
    lines.append("")
    return "\n".join(lines)


def _batch_sizes(report: dict) -> list[int]:
    return list(next(iter(report["models"].values()))["parity"])


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=artifacts_dir() / "onnx", help="where the .onnx files go")
    parser.add_argument("--checkpoints", type=Path, help="folder of the checkpoints (default: checkpoints/)")
    parser.add_argument("--data-root", type=Path, help="data root holding the validation photos (default: data/)")
    parser.add_argument("--report", type=Path, help="also write the report as markdown here, e.g. docs/results/onnx.md")
    parser.add_argument("--threads", type=int_at_least(1), nargs="+",
                        help="thread counts to time, each used by both engines (default: 1 and torch's current count)")
    parser.add_argument("--images", type=int_at_least(1), default=64, help="validation photos used for the parity check")
    parser.add_argument("--batch-sizes", type=int_at_least(1), nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int_at_least(1), default=100, help="timed calls per engine and batch size")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Export, check and time; writes the reports. Bad input (or a failed parity check) is exit code 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    return run(lambda: _main(args, f"{COMMAND} " + " ".join(argv)), errors=(MissingExtrasError, CheckpointError))


def _main(args: argparse.Namespace, command: str) -> int:
    require_extras(["onnx", "onnxruntime"])
    report = _run_export(args.out, args.checkpoints, args.data_root, args.threads, args.images,
                        args.batch_sizes, args.repeats)
    report["command"] = command.strip()
    markdown = _report_markdown(report, report["command"])
    with atomic_path(args.out / "report.json", mode=0o644) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    if args.report:
        with atomic_path(args.report, mode=0o644) as tmp:
            tmp.write_text(markdown)
    print(markdown)
    if not report["parity_ok"]:
        print(f"error: onnxruntime and PyTorch differ by {report['max_abs_diff']:.1e} > {PARITY_TOLERANCE:g}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
