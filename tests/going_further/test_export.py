"""ONNX export: the graph contract, a dynamic batch, parity with PyTorch, clear errors. Seeded models, no training."""

import numpy as np
import pytest
import torch

from helper_utils.data import CLASSES_7
from helper_utils.going_further import export
from helper_utils.reference import MobileNetBackbone, MobileNetLikeClassifier, SiameseEncoder


def _models(seed=0):
    torch.manual_seed(seed)
    encoder, classifier = SiameseEncoder(MobileNetBackbone()), MobileNetLikeClassifier(7)
    for model in (encoder, classifier):  # non-trivial BatchNorm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return encoder.eval(), classifier.eval()


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    encoder, classifier = _models()
    paths = export.export_models(tmp_path_factory.mktemp("onnx"), encoder=encoder, classifier=classifier)
    sessions = {name: export.onnx_session(path, threads=1) for name, path in paths.items()}
    return {"encoder": encoder, "classifier": classifier, "paths": paths, "sessions": sessions}


def test_graph_contract_names_types_and_shapes(exported):
    """The contract in export's docstring: uint8 NHWC in; embeddings / logits + probabilities out."""
    for name, outputs in [("encoder", {"embeddings": ["batch", 64]}),
                          ("classifier", {"logits": ["batch", 7], "probabilities": ["batch", 7]})]:
        session = exported["sessions"][name]
        (arg,) = session.get_inputs()
        assert (arg.name, arg.type, arg.shape) == ("images", "tensor(uint8)", ["batch", 64, 64, 3])
        assert {o.name: o.shape for o in session.get_outputs()} == outputs
        assert all(o.type == "tensor(float)" for o in session.get_outputs())


def test_metadata_names_the_model_and_classes(exported):
    encoder_meta = export.read_metadata(exported["paths"]["encoder"])
    classifier_meta = export.read_metadata(exported["sessions"]["classifier"])
    assert encoder_meta["model"] == "encoder" and encoder_meta["normalized"] == "L2"
    assert classifier_meta["classes"] == CLASSES_7 and classifier_meta["image_size"] == 64
    assert "uint8" in classifier_meta["input"]


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_dynamic_batch(exported, batch_size):
    embeddings = exported["sessions"]["encoder"].run(None, {"images": _images(batch_size)})[0]
    logits, probabilities = exported["sessions"]["classifier"].run(None, {"images": _images(batch_size)})
    assert embeddings.shape == (batch_size, 64) and logits.shape == probabilities.shape == (batch_size, 7)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)  # L2 inside the graph
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["encoder", "classifier"])
def test_parity_with_pytorch_within_tolerance(exported, name):
    result = export.parity(exported["sessions"][name], exported[name], _images(40, seed=1), batch_sizes=(1, 32))
    assert set(result) == {1, 32}
    worst = max(d for row in result.values() for d in row.values())
    assert worst <= export.PARITY_TOLERANCE, result


def test_parity_detects_a_different_model(exported):
    """The check can fail: a model with other weights than the exported one is far outside the tolerance."""
    other_encoder, _ = _models(seed=1)
    result = export.parity(exported["sessions"]["encoder"], other_encoder, _images(4), batch_sizes=(4,))
    assert result[4]["embeddings"] > 100 * export.PARITY_TOLERANCE


def test_exported_graph_matches_the_courses_preprocessing(exported):
    """uint8 NHWC through the graph == val_transform's tensor through the encoder, then F.normalize."""
    from PIL import Image

    from helper_utils.reference import val_transform

    images = _images(2, seed=2)
    expected = torch.nn.functional.normalize(
        exported["encoder"](torch.stack([val_transform(Image.fromarray(im)) for im in images])), dim=1)
    got = exported["sessions"]["encoder"].run(None, {"images": images})[0]
    np.testing.assert_allclose(got, expected.detach().numpy(), atol=1e-5)


def test_latency_reports_both_engines(exported):
    wrapper = export.EncoderForExport(exported["encoder"])
    result = export.latency(exported["sessions"]["encoder"], wrapper, _images(2), batch_sizes=(1, 2), repeats=3,
                            warmup=1)
    assert set(result) == {1, 2}
    for row in result.values():
        for engine in ("pytorch", "onnxruntime"):
            assert 0 < row[engine]["median_ms"] <= row[engine]["p95_ms"]
        assert row["speedup"] > 0


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    from helper_utils.checkpoints import CheckpointNotFoundError

    with pytest.raises(CheckpointNotFoundError, match=r"encoder_best\.pt.*\n.*notebook 05"):
        export.export_models(tmp_path / "out", tmp_path, classifier=_models()[1])
    with pytest.raises(CheckpointNotFoundError, match=r"classifier_best\.pt.*\n.*notebook 03"):
        export.export_models(tmp_path / "out", tmp_path, encoder=_models()[0])
    assert not (tmp_path / "out" / "classifier.onnx").exists()


def test_missing_onnx_file_says_which_command_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="serve build --out"):
        export.onnx_session(tmp_path / "encoder.onnx")


def test_wrong_class_names_are_refused(tmp_path):
    encoder, classifier = _models()
    with pytest.raises(ValueError, match="7 outputs"):
        export.export_models(tmp_path, encoder=encoder, classifier=classifier, classes=["a", "b"])
