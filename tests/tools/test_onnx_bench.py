"""tools.onnx_bench: export from checkpoints, parity and latency reports, and a clear error without checkpoints."""

import json

import torch

from helper_utils.going_further import export
from helper_utils.reference import MobileNetBackbone, MobileNetLikeClassifier, SiameseEncoder
from helper_utils.checkpoints import save_checkpoint
from tools import onnx_bench


def _models(seed=0):
    torch.manual_seed(seed)
    return SiameseEncoder(MobileNetBackbone()).eval(), MobileNetLikeClassifier(7).eval()


def test_cli_exports_from_checkpoints_and_writes_reports(tmp_path, synthetic_imagefolder, capsys):
    encoder, classifier = _models()
    checkpoints = tmp_path / "ckpt"
    save_checkpoint({"state_dict": encoder.state_dict()}, checkpoints / "encoder_best.pt")
    save_checkpoint({"state_dict": classifier.state_dict()}, checkpoints / "classifier_best.pt")
    out, report_md = tmp_path / "onnx", tmp_path / "docs" / "onnx.md"
    code = onnx_bench.main(["--out", str(out), "--checkpoints", str(checkpoints), "--data-root",
                            str(synthetic_imagefolder), "--images", "8", "--batch-sizes", "1", "8", "--repeats", "2",
                            "--threads", "1", "--report", str(report_md)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["parity_ok"] and report["max_abs_diff"] <= export.PARITY_TOLERANCE
    assert set(report["models"]["classifier"]["parity"]) == {"1", "8"}
    assert set(report["models"]["encoder"]["latency"]) == {"1"}  # thread counts
    assert set(report["models"]["encoder"]["latency"]["1"]) == {"1", "8"}  # batch sizes
    assert "sha256:" in report["models"]["encoder"]["metadata"]["source"]
    text = report_md.read_text()
    assert "python -m tools.onnx_bench --out" in text and "--checkpoints" in text and "Parity on real photos" in text and "onnxruntime median" in text


def test_cli_without_checkpoints_fails_with_a_message(tmp_path, capsys):
    assert onnx_bench.main(["--out", str(tmp_path / "onnx"), "--checkpoints", str(tmp_path)]) == 1
    assert "no encoder checkpoint" in capsys.readouterr().err
