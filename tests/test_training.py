"""Training loops on tiny synthetic data: history, schedulers, the best epoch saved and marked finished at the end."""

import pytest
import torch
from torch import nn

from helper_utils.checkpoints import load_checkpoint, read_checkpoint
from helper_utils.loaders import TensorLoader
from helper_utils.losses import MinedTripletLoss
from helper_utils.reference import MobileNetLikeClassifier, SiameseEncoder, SiameseNetwork, MobileNetBackbone
from helper_utils.reference import compute_class_weights
from helper_utils.training import evaluate, train_classifier, train_siamese


def _separable_data(n=48, size=16):
    """Two classes: bright left half or bright right half. Learnable in a few steps."""
    torch.manual_seed(0)
    targets = torch.arange(n) % 2
    images = torch.randint(0, 60, (n, 3, size, size), dtype=torch.uint8)
    images[targets == 0, :, :, : size // 2] += 180
    images[targets == 1, :, :, size // 2:] += 180
    return images, targets


def test_class_weights_are_inverse_frequency():
    weights = compute_class_weights([0, 0, 0, 1], num_classes=3)
    assert weights.dtype == torch.float32
    assert torch.allclose(weights, torch.tensor([4 / 3, 4.0, 0.0]))


def test_train_classifier_learns_and_checkpoints(tmp_path):
    images, targets = _separable_data()
    loader = TensorLoader(images, targets, batch_size=16, shuffle=True, seed=0)
    model = MobileNetLikeClassifier(num_classes=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    epochs = 6
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=epochs * len(loader))
    history = train_classifier(model, loader, TensorLoader(images, targets, batch_size=16), epochs=epochs,
                               optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), scheduler=scheduler,
                               checkpoint_path=tmp_path / "clf.pt", backbone_path=tmp_path / "bb.pt", progress=False)
    assert len(history["val_acc"]) == epochs and history["val_acc"][-1] > 0.9
    assert history["best_val_acc"] == max(history["val_acc"])
    assert history["lr"][-1] < history["lr"][0] * 10  # one-cycle ends low
    reloaded = MobileNetLikeClassifier(num_classes=2)
    meta = load_checkpoint(reloaded, tmp_path / "clf.pt")
    assert meta["epoch"] == history["best_epoch"]
    _, acc = evaluate(reloaded, TensorLoader(images, targets, batch_size=16))
    assert acc == history["best_val_acc"]
    backbone = MobileNetBackbone()
    load_checkpoint(backbone, tmp_path / "bb.pt")
    assert not list(tmp_path.glob(".*.tmp"))


def test_train_siamese_accepts_triplets_and_labelled_batches():
    images, targets = _separable_data(32)
    network = SiameseNetwork(SiameseEncoder(MobileNetBackbone()))
    x = images.float() / 127.5 - 1
    triplets = [(x[:8], x[8:16], x[16:24])]
    history = train_siamese(network, triplets, epochs=2, optimizer=torch.optim.Adam(network.parameters(), 1e-3),
                            loss_fn=nn.TripletMarginLoss(margin=1.0), progress=False,
                            eval_fn=lambda: {"P@1": 0.5})
    assert len(history["train_loss"]) == 2 and history["P@1"] == [0.5, 0.5]
    labelled = TensorLoader(images, targets, batch_size=16)
    history = train_siamese(network, labelled, epochs=1, optimizer=torch.optim.Adam(network.parameters(), 1e-3),
                            loss_fn=MinedTripletLoss(margin=0.2, mining="hard"), progress=False)
    assert history["train_loss"][0] >= 0


# --------------------------------------------------------------------------- progress bars

def _bar_run(capsys, monkeypatch, epochs=3, progress=True, siamese=False, interactive=False):
    """Run a tiny training with bars on stderr; returns (stderr, keyword arguments of every bar created).

    ``interactive=False`` is a log file; ``True`` is what a terminal or a notebook gets.
    """
    import sys

    import helper_utils.training as training

    if interactive:
        monkeypatch.setitem(sys.modules, "ipykernel", sys)  # any module will do: only its presence is checked
    else:
        monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    created = []

    class RecordingBar(training.tqdm):
        def __init__(self, *args, **kwargs):
            created.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(training, "tqdm", RecordingBar)
    images, targets = _separable_data()
    loader = TensorLoader(images, targets, batch_size=16)
    capsys.readouterr()
    if siamese:
        encoder = SiameseEncoder(MobileNetBackbone())
        train_siamese(encoder, TensorLoader(images, targets, batch_size=16), epochs=epochs,
                      optimizer=torch.optim.Adam(encoder.parameters(), lr=1e-3),
                      loss_fn=MinedTripletLoss(margin=0.2, mining="hard"), progress=progress)
    else:
        model = MobileNetLikeClassifier(num_classes=2)
        train_classifier(model, loader, loader, epochs=epochs, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                         loss_fn=nn.CrossEntropyLoss(), progress=progress)
    return capsys.readouterr().err, created


def _screens(err):
    """Every state a bar line was drawn in (tqdm redraws with carriage returns)."""
    return [part for part in err.replace("\x1b[A", "").replace("\n", "\r").split("\r") if part.strip()]


def test_a_run_shows_one_epoch_bar_and_one_transient_batch_bar(capsys, monkeypatch):
    err, created = _bar_run(capsys, monkeypatch, epochs=3, interactive=True)
    assert [bar["desc"] for bar in created] == ["epochs", "batches"]  # not one batch bar per epoch
    assert created[1]["leave"] is False and created[0].get("leave", True)
    screens = _screens(err)
    batch_screens = [s for s in screens if s.startswith("batches")]
    assert 1 <= len(batch_screens) <= 3 * 3 + 3  # drawn at each epoch's start, at most once per batch
    assert screens[-1].startswith("epochs") and "3/3" in screens[-1] and "val_acc=" in screens[-1]
    assert "best=" in screens[-1]
    assert err.endswith("\n")  # the epoch bar stays; the batch bar was cleared before it


def test_a_log_gets_the_epoch_bar_only_drawn_twice(capsys, monkeypatch):
    err, created = _bar_run(capsys, monkeypatch, epochs=3)
    screens = _screens(err)
    assert not [s for s in screens if s.startswith("batches")]  # no line per epoch in a log
    assert len(screens) == 2  # the epoch bar at the start and at the end, whatever the epoch count
    assert "3/3" in screens[-1] and "val_acc=" in screens[-1] and err.count("\n") == 1  # one line in all


def test_the_batch_bar_is_reused_across_epochs(capsys, monkeypatch):
    bars_for_three = len(_bar_run(capsys, monkeypatch, epochs=3)[1])
    monkeypatch.undo()
    bars_for_six = len(_bar_run(capsys, monkeypatch, epochs=6, siamese=True)[1])
    assert bars_for_three == bars_for_six == 2


def test_no_bars_without_progress(capsys, monkeypatch):
    err, _ = _bar_run(capsys, monkeypatch, epochs=2, progress=False)
    assert err == ""


def test_bars_close_when_a_run_fails(capsys, monkeypatch):
    import helper_utils.training as training

    closed = []

    class ClosingBar(training.tqdm):
        def close(self):
            closed.append(self.desc)
            super().close()

    monkeypatch.setattr(training, "tqdm", ClosingBar)
    images, targets = _separable_data()
    model = MobileNetLikeClassifier(num_classes=2)

    def broken_loss(logits, targets):
        raise RuntimeError("boom")

    try:
        train_classifier(model, TensorLoader(images, targets, batch_size=16), TensorLoader(images, targets),
                         epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), loss_fn=broken_loss)
    except RuntimeError:
        pass
    assert set(closed) == {"batches", "epochs"}


def test_interrupted_training_leaves_a_checkpoint_marked_partial(tmp_path):
    """Best-epoch checkpoints say finished=False until the last epoch ends, then True."""
    from helper_utils.checkpoints import KIT_VERSION

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    data = [(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 0, 1]))]

    class StopInEpoch2:
        calls = 0

        def __iter__(self):
            StopInEpoch2.calls += 1
            if StopInEpoch2.calls == 2:
                raise KeyboardInterrupt  # Ctrl+C while epoch 2 is evaluated
            return iter(data)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(model, data, StopInEpoch2(), epochs=5, optimizer=optimizer, loss_fn=torch.nn.CrossEntropyLoss(),
                         checkpoint_path=tmp_path / "c.pt", progress=False)
    info = read_checkpoint(tmp_path / "c.pt", allow_stopped=True).info
    assert info["finished"] is False and info["epochs_done"] == 1 and info["epochs_planned"] == 5
    train_classifier(model, data, data, epochs=2, optimizer=optimizer, loss_fn=torch.nn.CrossEntropyLoss(),
                     checkpoint_path=tmp_path / "c.pt", progress=False)
    info = read_checkpoint(tmp_path / "c.pt", allow_stopped=True).info
    assert info["finished"] is True and info["epochs_done"] == 2 and info["kit_version"] == KIT_VERSION
