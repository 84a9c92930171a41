"""The one owner of the files that hand models between notebooks: written atomically, read once, refused for a reason."""

import re
from pathlib import Path

import pytest
import torch

from helper_utils import checkpoints
from helper_utils.checkpoints import (REASONS, BestEpochFiles, Checkpoint, CheckpointError, CheckpointNotFoundError, load_backbone,
                                      load_checkpoint, load_classifier, load_encoder, read_checkpoint, save_checkpoint,
                                      save_model)
from helper_utils.embedding import ProjectedEncoder
from helper_utils.going_further.models import WideMobileNetBackbone, WideMobileNetClassifier
from helper_utils.reference import MobileNetBackbone, MobileNetLikeClassifier, SiameseEncoder

ROOT = Path(__file__).resolve().parents[1]


def _finished(path, model, **info):
    return save_model(model, path, finished=True, epoch=7, val_acc=0.75, **info)


def _stopped(path, model):
    BestEpochFiles(120).add(path, model).save(82, 0.5)  # the best epoch so far; then the run was stopped
    return path


def _truncated(path, model):
    _finished(path, model)
    path.write_bytes(path.read_bytes()[:5000])
    return path


# what: (loader, the model a good file holds, a model of another architecture)
LOADERS = {
    "backbone": (load_backbone, MobileNetBackbone, MobileNetLikeClassifier),
    "classifier": (load_classifier, MobileNetLikeClassifier, MobileNetBackbone),
    "encoder": (load_encoder, lambda: ProjectedEncoder(SiameseEncoder(MobileNetBackbone())), MobileNetBackbone),
}

REFUSALS = {  # reason: (make the file, words the message must hold)
    "missing": (lambda path, model: path, "no {what} checkpoint at"),
    "corrupt": (_truncated, "is not a readable {what} checkpoint"),
    "corrupt-text": (lambda path, model: path.write_text("hello") and path, "the file is truncated or corrupt"),
    "foreign": (lambda path, model: save_checkpoint({"weights": model.state_dict()}, path),
                "holds no state_dict: not a {what} checkpoint saved by the kit"),
    "stopped": (_stopped, "is from a run that stopped after epoch 82 of 120, not a finished one"),
}


@pytest.mark.parametrize("case", REFUSALS)
@pytest.mark.parametrize("what", LOADERS)
def test_every_loader_refuses_a_bad_file_the_same_way(tmp_path, what, case):
    load, make_model, _ = LOADERS[what]
    make, words = REFUSALS[case]
    path = make(tmp_path / f"{what}_best.pt", make_model())
    with pytest.raises(CheckpointError) as raised:
        load(path)
    error = raised.value
    assert error.reason == case.split("-")[0] and error.path == path
    assert words.format(what=what) in str(error) and "To make" in str(error) and "notebook 0" in str(error)
    assert len(str(error).splitlines()) == (2 if case == "missing" else 1)  # a sentence, not a traceback
    assert isinstance(error, FileNotFoundError) == (case == "missing")
    assert error._render_traceback_() == [f"{type(error).__name__}: {error}"]  # in a notebook: the message alone


@pytest.mark.parametrize("what", LOADERS)
def test_weights_of_another_model_do_not_fit(tmp_path, what):
    load, _, other = LOADERS[what]
    path = _finished(tmp_path / f"{what}_best.pt", other())
    with pytest.raises(CheckpointError) as raised:
        load(path)
    assert raised.value.reason == "misfit"
    assert re.search(r"does not fit the kit's \w+ \(\d+ weights missing, e\.g\. '[\w.]+'|has no classifier head",
                     str(raised.value))


def test_an_encoder_without_the_projection_head_is_refused_only_where_one_is_required(tmp_path):
    path = _finished(tmp_path / "encoder_best.pt", SiameseEncoder(MobileNetBackbone()))
    encoder, _ = load_encoder(path)  # the export takes either
    assert type(encoder) is SiameseEncoder and not encoder.training
    with pytest.raises(CheckpointError, match=r"has no projection head \(an older kit saved it\)") as raised:
        load_encoder(path, require_head=True)  # notebooks 06-10 expect notebook 05's head
    assert raised.value.reason == "no_head"


def test_every_reason_a_loader_gives_is_tested():
    tested = {case.split("-")[0] for case in REFUSALS} | {"misfit", "no_head"}  # the two tests above
    assert tested == set(REASONS)


@pytest.mark.parametrize("what", LOADERS)
def test_a_good_file_loads_with_what_it_says_about_its_run(tmp_path, what):
    load, make_model, _ = LOADERS[what]
    torch.manual_seed(0)
    model = make_model()
    _finished(tmp_path / f"{what}_best.pt", model, recipe={"epochs": 7})
    loaded, checkpoint = load(tmp_path / f"{what}_best.pt")
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert checkpoint.finished is True and checkpoint.info["recipe"] == {"epochs": 7}
    assert checkpoint.info["kit_version"] == checkpoints.KIT_VERSION
    assert checkpoint.describe() == "epoch 7, validation accuracy 75.0%"


def test_loaders_default_to_the_checkpoint_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_KIT_CHECKPOINTS", str(tmp_path))
    _finished(tmp_path / "classifier_best.pt", MobileNetLikeClassifier(10))  # all ten classes
    classifier, checkpoint = load_classifier()
    assert checkpoint.path == tmp_path / "classifier_best.pt" and classifier.head[-1].out_features == 10
    with pytest.raises(CheckpointNotFoundError, match=re.escape(str(tmp_path / "encoder_best.pt"))):
        load_encoder()


def test_the_going_further_architectures_load_through_the_same_loaders(tmp_path):
    torch.manual_seed(0)
    config = [(1, 8, 1, 2), (2, 16, 1, 2)]
    classifier = WideMobileNetClassifier(7, WideMobileNetBackbone(config))
    encoder = ProjectedEncoder(SiameseEncoder(WideMobileNetBackbone(config)), dim=256)
    _finished(tmp_path / "classifier_best.pt", classifier)
    _finished(tmp_path / "backbone_best.pt", classifier.backbone)
    _finished(tmp_path / "encoder_best.pt", encoder)
    x = torch.randn(2, 3, 64, 64)
    loaded, _ = load_classifier(tmp_path / "classifier_best.pt", WideMobileNetClassifier(7, WideMobileNetBackbone(config)))
    assert torch.allclose(loaded(x), classifier.eval()(x))
    backbone, _ = load_backbone(tmp_path / "backbone_best.pt", WideMobileNetBackbone(config))
    assert torch.allclose(backbone.eval()(x), classifier.backbone(x))
    loaded, _ = load_encoder(tmp_path / "encoder_best.pt", WideMobileNetBackbone(config), require_head=True)
    assert torch.allclose(loaded(x), encoder.eval()(x))
    with pytest.raises(CheckpointError, match=r"does not fit the kit's MobileNetBackbone \(.*of another shape, e\.g\. "
                                              r"'stem\.0\.weight': saved \(32, 3, 3, 3\), expected \(16, 3, 3, 3\)"):
        load_backbone(tmp_path / "backbone_best.pt")  # the core backbone is another architecture


def test_an_older_kits_file_loads_and_says_so(tmp_path):
    path = save_checkpoint({"state_dict": MobileNetBackbone().state_dict(), "epoch": 3, "val_acc": 0.5}, tmp_path / "b.pt")
    _, checkpoint = load_backbone(path)
    assert checkpoint.finished is None
    assert checkpoint.describe() == ("epoch 3, validation accuracy 50.0%; saved by an older kit, which did not "
                                     "record whether its run finished")


def test_best_epoch_files_say_not_finished_until_the_run_ends(tmp_path):
    model = MobileNetLikeClassifier(7)
    files = BestEpochFiles(5, made_by="a test").add(tmp_path / "c.pt", model).add(tmp_path / "b.pt", model.backbone)
    files.add(tmp_path / "never.pt", model)
    files.save(1, 0.4)
    files.save(3, 0.6)
    info = read_checkpoint(tmp_path / "b.pt", allow_stopped=True).info
    assert info["finished"] is False and (info["epoch"], info["epochs_done"], info["epochs_planned"]) == (3, 3, 5)
    torch.nn.init.zeros_(model.head[2].weight)  # training goes on after the best epoch
    files.finish(epochs_done=5)
    checkpoint = read_checkpoint(tmp_path / "c.pt")
    assert isinstance(checkpoint, Checkpoint) and checkpoint.finished is True and checkpoint.info["epochs_done"] == 5 and checkpoint.info["made_by"] == "a test"
    assert checkpoint.state_dict["head.2.weight"].abs().sum() > 0  # the best epoch's weights, not the last
    assert not list(tmp_path.glob(".*.tmp"))


def test_load_checkpoint_also_loads_a_stopped_run_and_says_so(tmp_path):
    """The learner's ``load_checkpoint`` (notebook 03 evaluates what its own run saved) is not a hand-off loader."""
    model = MobileNetLikeClassifier(7)
    _stopped(tmp_path / "c.pt", model)
    meta = load_checkpoint(MobileNetLikeClassifier(7), tmp_path / "c.pt")
    assert meta["finished"] is False and meta["epoch"] == 82 and "state_dict" in meta
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(model, tmp_path / "missing.pt")


def test_save_checkpoint_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = save_checkpoint({"state_dict": {"w": torch.ones(1)}}, tmp_path / "c.pt")

    def broken_save(obj, f):
        open(f, "wb").write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint({"state_dict": {"w": torch.zeros(1)}}, path)
    monkeypatch.undo()
    assert read_checkpoint(path).state_dict["w"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_kit_version_matches_pyproject():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert checkpoints.KIT_VERSION == pyproject["project"]["version"]


# --------------------------------------------------------------------------- one owner, one name

def _kit_files():
    for folder in ("helper_utils", "unittests", "tools", "notebooks"):
        yield from (ROOT / folder).rglob("*.py")
        yield from (ROOT / folder).rglob("*.ipynb")


def test_only_the_checkpoints_module_calls_torch_save_or_torch_load():
    pattern = re.compile(r"\btorch\.(save|load)\b|from torch import [^\n]*\b(save|load)\b")
    owner = ROOT / "helper_utils" / "checkpoints.py"
    offenders = [str(path.relative_to(ROOT)) for path in _kit_files()
                 if path != owner and ".ipynb_checkpoints" not in path.parts and pattern.search(path.read_text())]
    assert not offenders, f"torch.save/torch.load outside helper_utils/checkpoints.py: {offenders}"
    assert pattern.search(owner.read_text())  # the pattern finds what it looks for


def test_no_notebook_after_03_loads_a_handed_off_file_without_its_checks():
    """Notebooks 04-10 load notebook 03's and 05's files through the loaders that refuse a stopped run."""
    import nbformat

    for notebook in sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb")):
        if notebook.name.startswith(("01", "02", "03")):
            continue  # notebook 03 evaluates what its own run just saved
        for cell in nbformat.read(notebook, as_version=4).cells:
            if cell.cell_type == "code":
                assert not ("load_checkpoint(" in cell.source and "_best.pt" in cell.source), notebook.name


# every command-line module has its own main; data.data_root returns paths.data_root(), the same answer
SAME_NAME_ALLOWED = {"main", "data_root"}


def test_one_public_name_is_one_function():
    """No two of the kit's public functions share a name (the two load_encoders, the two batch_hard_triplet_losses).

    Public: a module's ``__all__``, or else the functions and classes it defines without a leading underscore.
    """
    import importlib
    import pkgutil

    import helper_utils
    import tools
    import unittests

    owners: dict[str, dict[int, str]] = {}
    for package in (helper_utils, unittests, tools):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            names = getattr(module, "__all__", None) or [
                name for name, value in vars(module).items()
                if not name.startswith("_") and getattr(value, "__module__", None) == info.name]
            for name in names:
                value = getattr(module, name)
                if callable(value) and name not in SAME_NAME_ALLOWED:
                    owners.setdefault(name, {})[id(value)] = info.name
    shared = {name: sorted(modules.values()) for name, modules in owners.items() if len(modules) > 1}
    assert not shared, f"one name, several functions: {shared}"
