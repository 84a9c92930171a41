"""Export the trained encoder and classifier to ONNX, prove the export right, and time it.

Why ONNX: an ``.onnx`` file is the model's graph and weights in an open format that runs
without Python's PyTorch, in onnxruntime (C, C++, C#, Java, JavaScript, Python), on phones
and in browsers. The service in :mod:`helper_utils.going_further.serve` loads these files, not checkpoints.

What the exported graphs take and give (the contract every client codes against)::

    input   "images"         uint8  (batch, 64, 64, 3)  RGB pixels, channels last, as decoded
    encoder "embeddings"     float32 (batch, 64)        L2-normalised: length 1 (distances in [0, 2])
    classifier "logits"      float32 (batch, C)         raw scores
               "probabilities" float32 (batch, C)       softmax of the logits, rows sum to 1

``batch`` is dynamic: one graph serves one photo or a thousand. Both graphs **include the
preprocessing** (uint8 -> float in [-1, 1], channels last -> first), so a client only
decodes the photo and resizes it to 64x64; it cannot get the normalisation constants wrong.
The encoder **includes the L2 normalisation** that notebooks 05 and 06 apply, so embeddings
from any client are comparable with the catalog's. Resizing stays outside the graph: the
catalog was resized with PIL (bilinear with antialiasing, :func:`resize_for_model`), which
ONNX's ``Resize`` does not reproduce pixel for pixel. Class names, the image size and the
input layout are stored in the file's metadata (:func:`read_metadata`).

From a terminal (writes ``encoder.onnx``, ``classifier.onnx``, ``report.json`` and a report)::

    python -m helper_utils.going_further.export --out artifacts/onnx [--report docs/results/onnx.md]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from helper_utils.data import CLASSES_7, CLASSES_10, ClothingDataset
from helper_utils import paths
from helper_utils.checkpoints import CLASSIFIER_FILE as CLASSIFIER_CHECKPOINT
from helper_utils.checkpoints import ENCODER_FILE as ENCODER_CHECKPOINT
from helper_utils.checkpoints import load_classifier, load_encoder
from helper_utils.files import atomic_path, sha256_file
from helper_utils.reference import MobileNetLikeClassifier
from helper_utils.training import checkpoint_dir

__all__ = [
    "IMAGE_SIZE",
    "INPUT_NAME",
    "ENCODER_OUTPUTS",
    "CLASSIFIER_OUTPUTS",
    "PARITY_TOLERANCE",
    "EncoderForExport",
    "ClassifierForExport",
    "export_onnx",
    "export_models",
    "onnx_session",
    "read_metadata",
    "resize_for_model",
    "reference_outputs",
    "parity",
    "latency",
    "validation_batch",
    "main",
]

IMAGE_SIZE = 64  # the course's input size (helper_utils.reference.IMAGE_SIZE)
OPSET = 17  # supported by every onnxruntime since 1.14
INPUT_NAME = "images"
ENCODER_OUTPUTS = ("embeddings",)
CLASSIFIER_OUTPUTS = ("logits", "probabilities")
PARITY_TOLERANCE = 1e-4  # largest |onnxruntime - PyTorch| accepted on any output value
INPUT_LAYOUT = "uint8 RGB (batch, 64, 64, 3), channels last, pixels 0-255; resize with PIL bilinear first"
ENCODER_FILE, CLASSIFIER_FILE = "encoder.onnx", "classifier.onnx"
REPO = paths.REPO  # re-exported for notebook 10


# --------------------------------------------------------------------------- what gets exported

def _preprocess(images: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float in ``[-1, 1]``, exactly as ``val_transform`` scales."""
    x = images.permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    return x.div(255.0).sub(0.5).div(0.5)


class EncoderForExport(nn.Module):
    """uint8 photos ``(B, 64, 64, 3)`` -> L2-normalised embeddings ``(B, D)``: the whole search model."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(_preprocess(images)), dim=1)  # (B, D), length 1


class ClassifierForExport(nn.Module):
    """uint8 photos ``(B, 64, 64, 3)`` -> ``(logits, probabilities)``, both ``(B, C)``."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.classifier(_preprocess(images))  # (B, C)
        return logits, logits.softmax(dim=1)


def resize_for_model(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """An RGB PIL image -> uint8 ``(size, size, 3)``, resized as ``ClothingDataset`` resized the catalog."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)


# --------------------------------------------------------------------------- checkpoints

def _checkpoint_files(checkpoints: str | Path | None) -> tuple[Path, Path]:
    """The encoder's and the classifier's checkpoint in the folder ``checkpoints`` (default: ``checkpoint_dir()``)."""
    folder = Path(checkpoints or checkpoint_dir())
    return folder / ENCODER_CHECKPOINT, folder / CLASSIFIER_CHECKPOINT


def _class_names(num_classes: int, classes: Sequence[str] | None, what: str) -> list[str]:
    """``classes``, or the kit's seven or ten names when there are that many outputs."""
    if classes is None:
        classes = {len(CLASSES_7): CLASSES_7, len(CLASSES_10): CLASSES_10}.get(num_classes)
    if classes is None or len(classes) != num_classes:
        raise ValueError(f"{what} has {num_classes} outputs; pass that many class names, got {classes!r}")
    return list(classes)


# --------------------------------------------------------------------------- export and load

def export_onnx(module: nn.Module, path: str | Path, output_names: Sequence[str],
                metadata: dict[str, str] | None = None) -> Path:
    """Export ``module`` (uint8 ``(B, 64, 64, 3)`` in) to ``path`` with a dynamic batch dimension.

    Uses the TorchScript-based exporter (``dynamo=False``): for a model this size it takes a
    fraction of a second and needs nothing but torch. The file is checked with
    ``onnx.checker``, gets ``metadata`` as string properties, and is written to a temporary
    file and then renamed, so a failed export never leaves half a model behind.
    """
    import onnx

    path = Path(path)
    example = torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8)  # 2, not 1: nothing may specialise on 1
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *output_names)}
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": deliberate, see above
            torch.onnx.export(module.eval(), (example,), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=list(output_names), dynamic_axes=dynamic)
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
        onnx.helper.set_model_props(model, {"kit.input": INPUT_LAYOUT, **(metadata or {})})
        onnx.save(model, str(tmp))
    return path


def export_models(out_dir: str | Path, checkpoints: str | Path | None = None, *,
                  encoder: nn.Module | None = None, classifier: nn.Module | None = None,
                  classes: Sequence[str] | None = None) -> dict[str, Path]:
    """Write ``encoder.onnx`` and ``classifier.onnx`` to ``out_dir``.

    Args:
        out_dir: folder to write to (created).
        checkpoints: folder of ``encoder_best.pt`` / ``classifier_best.pt``; ``None`` means
            ``checkpoint_dir()``. Ignored for a model passed directly.
        encoder: an encoder to export instead of the checkpoint (tests pass seeded ones).
        classifier: a ``MobileNetLikeClassifier`` to export instead of the checkpoint.
        classes: class names of the classifier's outputs (default: the kit's classes).

    Returns:
        ``{"encoder": path, "classifier": path}``.

    Raises:
        CheckpointError: a model was not passed and its checkpoint is missing (``CheckpointNotFoundError``)
            or refused (truncated, from a stopped run, ...): :mod:`helper_utils.checkpoints` says why.
    """
    out_dir = Path(out_dir)
    encoder_file, classifier_file = _checkpoint_files(checkpoints)
    encoder_source = classifier_source = "in-memory model"
    if encoder is None:
        encoder, _ = load_encoder(encoder_file)  # with or without a projection head
        encoder_source = _describe_file(encoder_file)
    if classifier is None:
        classifier, _ = load_classifier(classifier_file)
        classifier_source = _describe_file(classifier_file)
    classes = _class_names(classifier.head[-1].out_features, classes, "the classifier")
    common = {"kit.image_size": str(IMAGE_SIZE), "kit.torch": torch.__version__}
    encoder_path = export_onnx(EncoderForExport(encoder), out_dir / ENCODER_FILE, ENCODER_OUTPUTS, {
        **common, "kit.model": "encoder", "kit.source": encoder_source, "kit.normalized": "L2"})
    classifier_path = export_onnx(ClassifierForExport(classifier), out_dir / CLASSIFIER_FILE, CLASSIFIER_OUTPUTS, {
        **common, "kit.model": "classifier", "kit.source": classifier_source, "kit.classes": json.dumps(list(classes))})
    return {"encoder": encoder_path, "classifier": classifier_path}


def _describe_file(path: Path) -> str:
    digest = sha256_file(path)[:12]
    return f"{path.name} sha256:{digest}"


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session for ``path``; ``threads`` caps its intra-op threads (``None``: all cores).

    Raises:
        FileNotFoundError: ``path`` does not exist (with the command that writes it).
        ValueError: ``path`` is not a loadable ONNX model (truncated or corrupt).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}: run `python -m helper_utils.going_further.export --out {path.parent}`")
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1  # one small graph: parallelism inside operators only
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's InvalidProtobuf, Fail, ...: not worth a traceback
        raise ValueError(f"{path} is not a loadable ONNX model ({type(error).__name__}): the file is truncated or "
                         "corrupt. Rebuild it: `python -m helper_utils.going_further.serve build` for the service, "
                         "`python -m helper_utils.going_further.export` for the export report") from None


def read_metadata(session_or_path: Any) -> dict[str, Any]:
    """The kit's metadata of an exported model: model, classes (a list), image size, source, input layout."""
    session = onnx_session(session_or_path) if isinstance(session_or_path, (str, Path)) else session_or_path
    props = session.get_modelmeta().custom_metadata_map
    meta = {key.removeprefix("kit."): value for key, value in props.items() if key.startswith("kit.")}
    if "classes" in meta:
        meta["classes"] = json.loads(meta["classes"])
    if "image_size" in meta:
        meta["image_size"] = int(meta["image_size"])
    return meta


# --------------------------------------------------------------------------- parity and latency

@torch.no_grad()
def reference_outputs(model: nn.Module, images: np.ndarray) -> dict[str, np.ndarray]:
    """What the course computes in PyTorch for uint8 ``images`` ``(B, 64, 64, 3)``, independent of the export.

    The encoder path is notebook 06's (``normalize_batch`` then ``F.normalize``); the
    classifier's is logits and their softmax. Keyed by the ONNX output names.
    """
    from helper_utils.augment import normalize_batch

    model.eval()
    x = normalize_batch(torch.from_numpy(np.array(images)).permute(0, 3, 1, 2))  # (B, 3, H, W); a copy: cache arrays are read-only
    out = model(x)
    if isinstance(model, MobileNetLikeClassifier):
        return {"logits": out.numpy(), "probabilities": out.softmax(dim=1).numpy()}
    return {"embeddings": F.normalize(out, dim=1).numpy()}


def parity(session, model: nn.Module, images: np.ndarray, batch_sizes: Sequence[int] = (1, 32)) -> dict[int, dict]:
    """Largest ``|onnxruntime - PyTorch|`` of every output, for each batch size, on ``images``.

    Each batch size runs over consecutive slices covering all of ``images`` (the last may be
    shorter), so every photo is compared at every batch size.

    Returns:
        ``{batch_size: {output_name: max_abs_diff}}``.
    """
    names = [output.name for output in session.get_outputs()]
    reference = reference_outputs(model, images)
    result = {}
    for batch_size in batch_sizes:
        chunks = [session.run(names, {INPUT_NAME: images[i:i + batch_size]}) for i in range(0, len(images), batch_size)]
        result[int(batch_size)] = {
            name: float(np.abs(np.concatenate([chunk[j] for chunk in chunks]) - reference[name]).max())
            for j, name in enumerate(names)}
    return result


@torch.inference_mode()
def latency(session, module: nn.Module, images: np.ndarray, batch_sizes: Sequence[int] = (1, 32),
            repeats: int = 100, warmup: int = 5) -> dict[int, dict]:
    """Median and p95 milliseconds per call of PyTorch (``module``) and onnxruntime (``session``).

    Both get the same uint8 batch and do the same work (``module`` is the wrapper that was
    exported). Calls alternate between the two engines, so a burst of load from another
    program on the machine slows both alike. The caller sets the thread counts.

    Returns:
        ``{batch_size: {"pytorch": {"median_ms", "p95_ms"}, "onnxruntime": {...}, "speedup": pytorch/ort}}``.
    """
    module.eval()
    names = [output.name for output in session.get_outputs()]
    result = {}
    for batch_size in batch_sizes:
        batch = np.array(images[:batch_size])  # a writable, contiguous copy
        engines = {"pytorch": lambda: module(torch.from_numpy(batch)),
                   "onnxruntime": lambda: session.run(names, {INPUT_NAME: batch})}
        times: dict[str, list[float]] = {name: [] for name in engines}
        for i in range(warmup + repeats):
            for name, call in engines.items():
                start = time.perf_counter()
                call()
                if i >= warmup:
                    times[name].append((time.perf_counter() - start) * 1000)
        row = {name: {"median_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95))}
               for name, t in times.items()}
        row["speedup"] = row["pytorch"]["median_ms"] / row["onnxruntime"]["median_ms"]
        result[int(batch_size)] = row
    return result


def validation_batch(n: int = 64, root: str | Path | None = None) -> np.ndarray:
    """The first ``n`` photos of the validation split as uint8 ``(n, 64, 64, 3)``: real inputs for the checks."""
    images = ClothingDataset("validation", root=root).images  # (N, 64, 64, 3), resized as the catalog is
    if len(images) < n:
        raise ValueError(f"the validation split has {len(images)} photos, fewer than the {n} asked for")
    return images[:n]


# --------------------------------------------------------------------------- the command

def run_export(out_dir: Path, checkpoints: Path | None = None, data_root: Path | None = None,
               threads: Sequence[int] | None = None, n_images: int = 64, batch_sizes: Sequence[int] = (1, 32),
               repeats: int = 100) -> dict:
    """Export both models, check parity on real validation photos and time both engines; returns the report.

    ``threads`` lists the thread counts to time (each used by both engines); the default is
    1 and torch's current count. One thread is the fair figure on a busy machine, where a
    multi-threaded PyTorch call waits for every one of its threads to be scheduled.
    """
    threads = sorted(set(threads or (1, torch.get_num_threads())))
    load_before = os.getloadavg()[0]
    encoder_file, classifier_file = _checkpoint_files(checkpoints)
    encoder, _ = load_encoder(encoder_file)
    classifier, _ = load_classifier(classifier_file)
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
        for n in threads:
            torch.set_num_threads(n)
            report["models"][name]["latency"][n] = latency(onnx_session(paths[name], n), wrapper, images, batch_sizes,
                                                           repeats)
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


def report_markdown(report: dict, command: str) -> str:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helper_utils.going_further.export", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "onnx", help="where the .onnx files go")
    parser.add_argument("--checkpoints", type=Path, help="folder of the checkpoints (default: checkpoints/)")
    parser.add_argument("--data-root", type=Path, help="data root holding the validation photos (default: data/)")
    parser.add_argument("--report", type=Path, help="also write the report as markdown here, e.g. docs/results/onnx.md")
    parser.add_argument("--threads", type=int, nargs="+",
                        help="thread counts to time, each used by both engines (default: 1 and torch's current count)")
    parser.add_argument("--images", type=int, default=64, help="validation photos used for the parity check")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per engine and batch size")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = "python -m helper_utils.going_further.export " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        report = run_export(args.out, args.checkpoints, args.data_root, args.threads, args.images,
                            args.batch_sizes, args.repeats)
    except (FileNotFoundError, ValueError) as error:  # a CheckpointError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["command"] = command.strip()
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = report_markdown(report, report["command"])
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(markdown)
    print(markdown)
    if not report["parity_ok"]:
        print(f"error: onnxruntime and PyTorch differ by {report['max_abs_diff']:.1e} > {PARITY_TOLERANCE:g}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
