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

``make export-onnx`` (``python -m tools.onnx_bench``) exports both models, checks parity on real
photos and times both engines into ``docs/results/onnx.md``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from helper_utils.data import CLASSES_7, CLASSES_10, ClothingDataset
from helper_utils import paths
from helper_utils.checkpoints import CLASSIFIER_FILE as CLASSIFIER_CHECKPOINT
from helper_utils.checkpoints import ENCODER_FILE as ENCODER_CHECKPOINT
from helper_utils.checkpoints import load_classifier, load_encoder
from helper_utils.files import atomic_path, sha256_file
from helper_utils.images import resize_for_model  # re-exported: what a client does before the graph
from helper_utils.reference import MobileNetLikeClassifier
from helper_utils.training import checkpoint_dir

__all__ = [
    "INPUT_NAME",
    "PARITY_TOLERANCE",
    "EncoderForExport",
    "ClassifierForExport",
    "export_models",
    "onnx_session",
    "read_metadata",
    "resize_for_model",
    "reference_outputs",
    "parity",
    "latency",
    "validation_batch",
]

_IMAGE_SIZE = 64  # the course's input size: val_transform makes every photo 64x64
OPSET = 17  # supported by every onnxruntime since 1.14
INPUT_NAME = "images"
_ENCODER_OUTPUTS = ("embeddings",)
_CLASSIFIER_OUTPUTS = ("logits", "probabilities")
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

def _export_onnx(module: nn.Module, path: str | Path, output_names: Sequence[str],
                metadata: dict[str, str] | None = None) -> Path:
    """Export ``module`` (uint8 ``(B, 64, 64, 3)`` in) to ``path`` with a dynamic batch dimension.

    Uses the TorchScript-based exporter (``dynamo=False``): for a model this size it takes a
    fraction of a second and needs nothing but torch. The file is checked with
    ``onnx.checker``, gets ``metadata`` as string properties, and is written to a temporary
    file and then renamed, so a failed export never leaves half a model behind.
    """
    import onnx

    path = Path(path)
    example = torch.zeros(2, _IMAGE_SIZE, _IMAGE_SIZE, 3, dtype=torch.uint8)  # 2, not 1: nothing may specialise on 1
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
    common = {"kit.image_size": str(_IMAGE_SIZE), "kit.torch": torch.__version__}
    encoder_path = _export_onnx(EncoderForExport(encoder), out_dir / ENCODER_FILE, _ENCODER_OUTPUTS, {
        **common, "kit.model": "encoder", "kit.source": encoder_source, "kit.normalized": "L2"})
    classifier_path = _export_onnx(ClassifierForExport(classifier), out_dir / CLASSIFIER_FILE, _CLASSIFIER_OUTPUTS, {
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
        raise FileNotFoundError(f"no ONNX model at {path}: `python -m helper_utils.going_further.serve build --out "
                                f"{path.parent}` writes the service's models, `make export-onnx` the export report's")
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1  # one small graph: parallelism inside operators only
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's InvalidProtobuf, Fail, ...: not worth a traceback
        raise ValueError(f"{path} is not a loadable ONNX model ({type(error).__name__}): the file is truncated or "
                         "corrupt. Rebuild it: `python -m helper_utils.going_further.serve build` for the service, "
                         "`make export-onnx` for the export report") from None


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
