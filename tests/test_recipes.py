"""The load-or-train helpers that notebooks 05-10 rely on, on a tiny synthetic dataset."""

import pytest
import torch

from helper_utils import training
from helper_utils.checkpoints import (BestEpochFiles, load_backbone, load_classifier, load_encoder, read_checkpoint,
                                     save_checkpoint)
from helper_utils.reference import MobileNetBackbone, MobileNetLikeClassifier, SiameseEncoder
from helper_utils.recipes import (TRAINING_CLASSIFIER_NOTICE, TRAINING_ENCODER_NOTICE, ClassifierRecipe, SiameseRecipe,
                                  fit_classifier, fit_siamese, load_or_train_backbone, load_or_train_classifier,
                                  load_or_train_encoder)

TINY_CLASSIFIER = ClassifierRecipe(epochs=2, batch_size=4)  # 5 batches: enough steps for one-cycle
TINY_SIAMESE = SiameseRecipe(epochs=1, samples_per_class=2)


@pytest.fixture
def data(synthetic_imagefolder, monkeypatch):
    monkeypatch.setenv("FASHION_KIT_DATA", str(synthetic_imagefolder))
    return synthetic_imagefolder


@pytest.fixture
def accuracies(monkeypatch):
    """Make every validation pass of ``train_classifier`` report the next of the given accuracies."""

    def use(values):
        sequence = iter(values)
        monkeypatch.setattr(training, "evaluate", lambda *args, **kwargs: (1.0, next(sequence)))

    return use


def test_recipe_optimizer_skips_decay_on_batchnorm_and_biases():
    groups = TINY_CLASSIFIER.make_optimizer(MobileNetBackbone()).param_groups
    assert groups[0]["weight_decay"] == TINY_CLASSIFIER.weight_decay and all(p.ndim > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.ndim == 1 for p in groups[1]["params"])


def test_embedding_metrics_score_an_encoder_that_separates_the_classes_as_perfect(data):
    from helper_utils.data import ClothingDataset
    from helper_utils.recipes import embedding_metrics
    from helper_utils.reference import val_transform

    mean_colour = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())  # one colour per class
    catalog = ClothingDataset("validation", transform=val_transform)
    metrics = embedding_metrics(mean_colour, catalog, "cpu", ks=(1, 2))
    assert set(metrics) == {"P@1", "Recall@1", "Recall@2", "R-Precision", "mAP@R"}
    assert metrics["P@1"] == metrics["Recall@2"] == metrics["mAP@R"] == 1.0


def test_fit_classifier_saves_model_and_backbone(data, tmp_path):
    model, history = fit_classifier(TINY_CLASSIFIER, device="cpu", progress=False, save_dir=tmp_path)
    assert len(history["val_acc"]) == 2 and history["recipe"]["epochs"] == 2
    for name in ("classifier_best.pt", "backbone_best.pt"):
        info = read_checkpoint(tmp_path / name).info
        assert info["finished"] is True and info["recipe"] == history["recipe"]
        assert info["made_by"] == "helper_utils.recipes.fit_classifier" and info["epoch"] == history["best_epoch"]


def test_fit_classifier_writes_each_file_once_per_best_epoch_and_once_to_finish(data, tmp_path, monkeypatch,
                                                                                accuracies):
    """Drift: the best-epoch file was written, rewritten as finished, then rewritten again to add the recipe."""
    from helper_utils import checkpoints

    writes, reads = [], []
    save, read = checkpoints.save_checkpoint, checkpoints.read_checkpoint
    monkeypatch.setattr(checkpoints, "save_checkpoint", lambda state, path: writes.append(path.name) or save(state, path))
    monkeypatch.setattr(checkpoints, "read_checkpoint", lambda *a, **k: reads.append(a) or read(*a, **k))
    accuracies([0.5, 0.7, 0.6])  # new best at epochs 1 and 2, not 3
    fit_classifier(ClassifierRecipe(epochs=3, batch_size=4), device="cpu", progress=False, save_dir=tmp_path)
    assert writes.count("classifier_best.pt") == writes.count("backbone_best.pt") == 2 + 1
    assert reads == []  # finishing the run rewrites from memory, never reads a file back
    info = read(tmp_path / "classifier_best.pt").info
    assert info["finished"] is True and info["epoch"] == 2 and info["epochs_done"] == 3
    assert info["recipe"]["epochs"] == 3


@pytest.mark.parametrize("what", ["backbone", "classifier"])
def test_a_trained_fallback_returns_the_best_epoch_its_message_reports(data, tmp_path, accuracies, what):
    """Drift: load_or_train_backbone returned the last epoch's backbone and reported the best epoch's accuracy."""
    load_or_train, load = {"backbone": (load_or_train_backbone, load_backbone),
                           "classifier": (load_or_train_classifier, load_classifier)}[what]
    accuracies([0.9, 0.2, 0.1])  # the best epoch is the first of three: the last one is not it
    model, message = load_or_train("cpu", tmp_path, progress=False, recipe=ClassifierRecipe(epochs=3, batch_size=4))
    assert message.startswith("No checkpoint at") and "(epoch 1, validation accuracy 90.0%)" in message
    saved, checkpoint = load(tmp_path / f"{what}_best.pt")
    assert checkpoint.info["epoch"] == 1
    for name, value in saved.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_load_or_train_trains_once_then_loads(data, tmp_path, capsys):
    encoder, message = load_or_train_encoder("cpu", tmp_path, progress=False, classifier_recipe=TINY_CLASSIFIER,
                                             siamese_recipe=TINY_SIAMESE)
    assert "No checkpoint" in message and "fine-tuned one here" in message
    # said before training, not only in the message returned at the end
    assert capsys.readouterr().out.splitlines() == [TRAINING_ENCODER_NOTICE, TRAINING_CLASSIFIER_NOTICE]
    assert "a few minutes on a laptop CPU" in TRAINING_CLASSIFIER_NOTICE
    assert encoder(torch.zeros(2, 3, 64, 64)).shape == (2, 64)
    _, message = load_or_train_backbone("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the backbone")
    classifier, message = load_or_train_classifier("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the classifier trained in notebook 03") and not classifier.training
    again, message = load_or_train_encoder("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the encoder")
    assert capsys.readouterr().out == ""  # loading announces nothing
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(again(x), encoder.eval()(x), atol=1e-6)


@pytest.mark.parametrize("load_or_train", [load_or_train_backbone, load_or_train_classifier])
def test_a_stopped_run_is_never_loaded_as_a_finished_one(data, tmp_path, capsys, load_or_train):
    """Notebook 03 stopped at epoch 1 of 120: notebooks 05-10 retrain rather than load it (notebook 07 included)."""
    model = MobileNetLikeClassifier(7)
    files = BestEpochFiles(120).add(tmp_path / "classifier_best.pt", model).add(tmp_path / "backbone_best.pt",
                                                                                model.backbone)
    files.save(1, 0.5)  # and then the kernel was stopped
    _, message = load_or_train("cpu", tmp_path, progress=False, recipe=TINY_CLASSIFIER)
    assert "is from a run that stopped after epoch 1 of 120, not a finished one" in message
    assert "retrained from the start" in message and not message.startswith("Loaded")
    assert "stopped after epoch 1 of 120" in capsys.readouterr().out  # said before the training starts
    info = read_checkpoint(tmp_path / "backbone_best.pt").info
    assert info["finished"] is True and info["epochs_done"] == info["epochs_planned"] == 2
    assert info["recipe"]["epochs"] == 2 and info["kit_version"]
    _, message = load_or_train("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the") and "older kit" not in message


def test_an_encoder_without_the_projection_head_is_replaced(data, tmp_path):
    """An older kit saved encoder_best.pt without the head: notebooks 06-10 expect the head, so it is retrained."""
    fit_classifier(TINY_CLASSIFIER, device="cpu", progress=False, save_dir=tmp_path)
    save_checkpoint({"state_dict": SiameseEncoder(MobileNetBackbone()).state_dict()}, tmp_path / "encoder_best.pt")
    encoder, message = load_or_train_encoder("cpu", tmp_path, progress=False, siamese_recipe=TINY_SIAMESE)
    assert "has no projection head (an older kit saved it)" in message and "fine-tuned one here" in message
    assert hasattr(encoder, "projection")
    _, message = load_or_train_encoder("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the encoder")


def test_a_corrupt_checkpoint_is_replaced_and_the_message_says_why(data, tmp_path):
    (tmp_path / "backbone_best.pt").write_bytes(b"not a checkpoint")
    _, message = load_or_train_backbone("cpu", tmp_path, progress=False, recipe=TINY_CLASSIFIER)
    assert "truncated or corrupt" in message and "retrained from the start" in message


def test_an_older_kits_checkpoint_is_loaded_and_says_so(tmp_path):
    save_checkpoint({"state_dict": MobileNetBackbone().state_dict(), "epoch": 3, "val_acc": 0.5}, tmp_path / "backbone_best.pt")
    _, message = load_or_train_backbone("cpu", tmp_path, progress=False)
    assert message.startswith("Loaded the backbone") and "did not record whether its run finished" in message


class _Head(torch.nn.Module):
    """A learner's ProjectionHead: the identity at the start, then L2 normalisation (records its calls)."""

    def __init__(self, dim: int, relu: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, dim)
        torch.nn.init.eye_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        self.relu, self.calls = relu, 0

    def forward(self, x):
        self.calls += 1
        y = self.linear(x)
        return torch.nn.functional.normalize(y.relu() if self.relu else y, dim=1)


def test_fit_siamese_trains_with_the_learners_loss_and_head_and_saves_under_its_own_name(data, tmp_path):
    """Notebook 05's own loss and head train the encoder; a run with save_as leaves encoder_best.pt alone."""
    calls = []

    def my_loss(embeddings, labels, margin):
        calls.append((embeddings.detach().norm(dim=1), margin))
        return embeddings.sum() * 0.0 + (embeddings[0] - embeddings[-1]).pow(2).sum()

    (tmp_path / "encoder_best.pt").write_bytes(b"notebook 06's encoder")
    head = _Head(64)
    before = head.linear.weight.detach().clone()
    encoder, history = fit_siamese(MobileNetBackbone(), TINY_SIAMESE, "cpu", progress=False, save_dir=tmp_path,
                                   loss_fn=my_loss, head=head, save_as="encoder_mine.pt")
    assert calls and all(margin == TINY_SIAMESE.margin for _, margin in calls)  # the learner's loss ran
    assert all(torch.allclose(norms, torch.ones_like(norms), atol=1e-5) for norms, _ in calls)  # on unit rows
    assert head.calls > 0 and encoder.head is head and not torch.equal(head.linear.weight, before)  # it learned
    assert (tmp_path / "encoder_best.pt").read_bytes() == b"notebook 06's encoder"  # untouched
    saved, checkpoint = load_encoder(tmp_path / "encoder_mine.pt", require_head=True)
    assert checkpoint.info["loss"] == "my_loss" and checkpoint.info["head"] == "_Head"
    x = torch.randn(3, 3, 64, 64)
    assert torch.allclose(saved(x), encoder(x), atol=1e-5)  # the file holds the learner-headed encoder


def test_fit_siamese_by_default_writes_the_encoder_later_notebooks_load(data, tmp_path):
    tmp_path = tmp_path / "checkpoints"  # the synthetic photos are in tmp_path too
    tmp_path.mkdir()
    _, history = fit_siamese(MobileNetBackbone(), TINY_SIAMESE, "cpu", progress=False, save_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["encoder_best.pt"]
    info = read_checkpoint(tmp_path / "encoder_best.pt").info
    assert info["loss"] == info["head"] == "recipe" and info["finished"] is True


def test_fit_siamese_with_save_as_none_saves_nothing_and_refuses_a_head_it_cannot_save(data, tmp_path):
    tmp_path = tmp_path / "checkpoints"  # the synthetic photos are in tmp_path too
    tmp_path.mkdir()
    fit_siamese(MobileNetBackbone(), TINY_SIAMESE, "cpu", progress=False, save_dir=tmp_path, head=_Head(64, relu=True),
                save_as=None)  # the Linear+ReLU head of a Try it: trained, not saved
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="save_as=None"):
        fit_siamese(MobileNetBackbone(), TINY_SIAMESE, "cpu", progress=False, save_dir=tmp_path,
                    head=_Head(64, relu=True), save_as="encoder_relu.pt")
    with pytest.raises(ValueError, match="file name"):
        fit_siamese(MobileNetBackbone(), TINY_SIAMESE, "cpu", progress=False, save_dir=tmp_path,
                    save_as="../encoder_best.pt")
    assert list(tmp_path.iterdir()) == []
