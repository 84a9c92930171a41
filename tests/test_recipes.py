"""The load-or-train helpers that notebooks 05 and 06 rely on, on a tiny synthetic dataset."""

import torch

from helper_utils.reference import MobileNetBackbone
from helper_utils.recipes import (TRAINING_CLASSIFIER_NOTICE, TRAINING_ENCODER_NOTICE, ClassifierRecipe, SiameseRecipe,
                                  fit_classifier, load_or_train_backbone, load_or_train_encoder)

TINY_CLASSIFIER = ClassifierRecipe(epochs=2, batch_size=4)  # 5 batches: enough steps for one-cycle
TINY_SIAMESE = SiameseRecipe(epochs=1, samples_per_class=2)


def test_recipe_optimizer_skips_decay_on_batchnorm_and_biases():
    groups = TINY_CLASSIFIER.make_optimizer(MobileNetBackbone()).param_groups
    assert groups[0]["weight_decay"] == TINY_CLASSIFIER.weight_decay and all(p.ndim > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.ndim == 1 for p in groups[1]["params"])


def test_fit_classifier_saves_model_and_backbone(synthetic_imagefolder, monkeypatch, tmp_path):
    monkeypatch.setenv("FASHION_KIT_DATA", str(synthetic_imagefolder))
    model, history = fit_classifier(TINY_CLASSIFIER, device="cpu", progress=False, save_dir=tmp_path)
    assert len(history["val_acc"]) == 2 and history["recipe"]["epochs"] == 2
    assert (tmp_path / "classifier_best.pt").exists() and (tmp_path / "backbone_best.pt").exists()


def test_load_or_train_trains_once_then_loads(synthetic_imagefolder, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FASHION_KIT_DATA", str(synthetic_imagefolder))
    encoder, message = load_or_train_encoder("cpu", tmp_path, progress=False, classifier_recipe=TINY_CLASSIFIER,
                                             siamese_recipe=TINY_SIAMESE)
    assert "No checkpoint" in message and "fine-tuned one here" in message
    # said before training, not only in the message returned at the end
    assert capsys.readouterr().out.splitlines() == [TRAINING_ENCODER_NOTICE, TRAINING_CLASSIFIER_NOTICE]
    assert "a few minutes on a laptop CPU" in TRAINING_CLASSIFIER_NOTICE
    assert encoder(torch.zeros(2, 3, 64, 64)).shape == (2, 64)
    _, message = load_or_train_backbone("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the backbone")
    again, message = load_or_train_encoder("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the encoder")
    assert capsys.readouterr().out == ""  # loading announces nothing
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(again(x), encoder.eval()(x), atol=1e-6)


def test_a_stopped_run_is_never_loaded_as_a_finished_one(synthetic_imagefolder, monkeypatch, tmp_path):
    """Notebook 06's fallback training stopped at epoch 82 of 120 leaves best-epoch checkpoints marked partial."""
    from helper_utils.reference import MobileNetLikeClassifier
    from helper_utils.training import _save_best, read_checkpoint_info

    monkeypatch.setenv("FASHION_KIT_DATA", str(synthetic_imagefolder))
    _save_best(MobileNetLikeClassifier(7), 82, 0.5, tmp_path / "classifier_best.pt", tmp_path / "backbone_best.pt", 120)
    assert read_checkpoint_info(tmp_path / "backbone_best.pt")["finished"] is False
    backbone, message = load_or_train_backbone("cpu", tmp_path, progress=False, recipe=TINY_CLASSIFIER)
    assert "stopped after epoch 82 of 120" in message and "retrained from the start" in message
    info = read_checkpoint_info(tmp_path / "backbone_best.pt")
    assert info["finished"] is True and info["epochs_done"] == info["epochs_planned"] == 2
    assert info["recipe"]["epochs"] == 2 and info["kit_version"]
    _, message = load_or_train_backbone("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the backbone") and "older kit" not in message


def test_an_encoder_without_the_projection_head_is_replaced(synthetic_imagefolder, monkeypatch, tmp_path):
    """An older kit saved encoder_best.pt without the head: notebooks 06-10 expect the head, so it is retrained."""
    from helper_utils.reference import SiameseEncoder
    from helper_utils.training import save_checkpoint

    monkeypatch.setenv("FASHION_KIT_DATA", str(synthetic_imagefolder))
    fit_classifier(TINY_CLASSIFIER, device="cpu", progress=False, save_dir=tmp_path)
    save_checkpoint({"state_dict": SiameseEncoder(MobileNetBackbone()).state_dict()}, tmp_path / "encoder_best.pt")
    encoder, message = load_or_train_encoder("cpu", tmp_path, progress=False, siamese_recipe=TINY_SIAMESE)
    assert "has no projection head" in message and "fine-tuned one here" in message
    assert hasattr(encoder, "projection")
    _, message = load_or_train_encoder("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the encoder")


def test_an_older_kits_checkpoint_is_loaded_and_says_so(tmp_path):
    from helper_utils.training import save_checkpoint

    save_checkpoint({"state_dict": MobileNetBackbone().state_dict(), "epoch": 3, "val_acc": 0.5}, tmp_path / "backbone_best.pt")
    _, message = load_or_train_backbone("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the backbone") and "did not record whether its run finished" in message
