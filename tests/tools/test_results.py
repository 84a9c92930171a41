"""The results benchmark (``make bench``) and the going-further recipe, on a tiny synthetic dataset."""

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helper_utils.data import CLASSES_10
from conftest import make_synthetic_imagefolder
from tools import bench, results
from helper_utils.going_further.models import WideMobileNetBackbone, WideMobileNetClassifier
from helper_utils.reference import InvertedResidualBlock
from helper_utils.training import count_parameters
from helper_utils.going_further.recipe import GoingFurtherRecipe, load_or_train_going_further
from helper_utils.recipes import ClassifierRecipe, SiameseRecipe, TutorialRecipe

TINY_GOING_FURTHER = GoingFurtherRecipe(classifier=ClassifierRecipe(epochs=2, batch_size=4),
                                        siamese=SiameseRecipe(epochs=1, samples_per_class=2))


def test_wide_backbone_follows_its_config_table_and_stays_under_the_budget():
    backbone = WideMobileNetBackbone()
    blocks = [m for m in backbone.modules() if isinstance(m, InvertedResidualBlock)]
    assert len(blocks) == sum(n for _, _, n, _ in WideMobileNetBackbone.CONFIG)
    assert count_parameters(WideMobileNetClassifier(7)) <= 700_000
    assert backbone(torch.zeros(2, 3, 64, 64)).shape == (2, 256, 4, 4)
    small = WideMobileNetBackbone([(1, 8, 1, 2)], stem_channels=8, last_channels=16)
    assert small(torch.zeros(1, 3, 64, 64)).shape == (1, 16, 16, 16)


def test_shortened_recipe_keeps_everything_but_the_epochs():
    recipe = GoingFurtherRecipe()
    short = recipe.shortened(3, 1)
    assert (short.classifier.epochs, short.siamese.epochs) == (3, 1)
    assert replace(short.classifier, epochs=recipe.classifier.epochs) == recipe.classifier
    assert recipe.with_seed(7).classifier.seed == 7 and recipe.with_seed(7).siamese.seed == 7


def test_load_or_train_going_further_trains_short_then_loads(synthetic_imagefolder, monkeypatch, tmp_path):
    monkeypatch.setenv("FASHION_KIT_DATA", str(synthetic_imagefolder))
    classifier, encoder, message = load_or_train_going_further("cpu", tmp_path, progress=False,
                                                               recipe=TINY_GOING_FURTHER, short_epochs=(1, 1))
    assert "SHORT version" in message and "make bench" in message
    assert json.loads((tmp_path / "short" / "recipe.json").read_text())["classifier"]["epochs"] == 1
    x = torch.randn(2, 3, 64, 64)
    _, again, message = load_or_train_going_further("cpu", tmp_path, progress=False, recipe=TINY_GOING_FURTHER)
    assert "loaded a SHORT version" in message and "trained here earlier" in message  # never passed off as the full one
    assert torch.allclose(again(x), encoder(x), atol=1e-5)
    for name in ("classifier_best.pt", "encoder_best.pt"):  # what `make bench` leaves behind
        (tmp_path / "short" / name).rename(tmp_path / name)
    _, again, message = load_or_train_going_further("cpu", tmp_path, progress=False, recipe=TINY_GOING_FURTHER)
    assert message.startswith("Loaded the going-further model that `make bench` trained")
    assert torch.allclose(again(x), encoder(x), atol=1e-5)



def test_a_stopped_make_bench_run_is_never_loaded_as_the_full_model(synthetic_imagefolder, monkeypatch, tmp_path):
    """Drift: the going-further loader took the best epoch of a stopped run for the benchmark's finished model."""
    from helper_utils.checkpoints import BestEpochFiles, read_checkpoint, save_model

    monkeypatch.setenv("FASHION_KIT_DATA", str(synthetic_imagefolder))
    BestEpochFiles(60).add(tmp_path / "classifier_best.pt", WideMobileNetClassifier(7)).save(3, 0.5)  # then killed
    save_model(SiameseRecipe().make_model(WideMobileNetBackbone()), tmp_path / "encoder_best.pt", finished=True)
    classifier, _, message = load_or_train_going_further("cpu", tmp_path, progress=False, recipe=TINY_GOING_FURTHER,
                                                         short_epochs=(1, 1))
    assert not message.startswith("Loaded") and "stopped after epoch 3 of 60, not a finished one" in message
    assert "trained a SHORT version" in message
    short = read_checkpoint(tmp_path / "short" / "classifier_best.pt")
    assert f"(epoch {short.info['epoch']}, validation accuracy {short.info['val_acc']:.1%})" in message
    for name, value in short.state_dict.items():  # what it returns is the short run's best epoch, as reported
        assert torch.equal(classifier.state_dict()[name], value), name


@pytest.fixture
def tiny_recipes(monkeypatch, tmp_path):
    """Every recipe cut to one or two epochs on synthetic data with all ten classes (three are only measured)."""
    monkeypatch.setenv("FASHION_KIT_DATA", str(make_synthetic_imagefolder(tmp_path / "data", classes=CLASSES_10)))
    monkeypatch.setattr(results, "TutorialRecipe", lambda seed: TutorialRecipe(
        epochs=1, siamese_epochs=1, batch_size=4, seed=seed))
    monkeypatch.setattr(results, "ClassifierRecipe", lambda seed: ClassifierRecipe(epochs=2, batch_size=4, seed=seed))
    monkeypatch.setattr(results, "SiameseRecipe", lambda seed: SiameseRecipe(epochs=1, samples_per_class=2, seed=seed))
    monkeypatch.setattr(results, "GoingFurtherRecipe", lambda: TINY_GOING_FURTHER)


def test_benchmark_runs_every_recipe_and_writes_the_readme_table(tiny_recipes, monkeypatch, tmp_path):
    monkeypatch.setenv("FASHION_KIT_CHECKPOINTS", str(tmp_path / "checkpoints"))
    out = results.run_benchmark(seeds=(0, 1), repeat=("tutorial",), device="cpu", log=lambda line: None)
    assert [r["recipe"] for r in out["runs"]] == ["tutorial"] * 2 + ["core"] * 2 + ["going-further"] * 2
    for run in out["runs"]:
        assert 0 <= run["val_acc"] <= 1 and 0 <= run["P@1"] <= 1 and run["train_s"] > 0 and run["search_ms"] > 0
    assert (tmp_path / "checkpoints" / "going_further" / "encoder_best.pt").exists()  # kept for notebook 08
    rep = out["reproducibility"][0]
    assert rep["recipe"] == "tutorial" and rep["val_acc"]["first"] == pytest.approx(rep["val_acc"]["again"])
    for run in out["runs"]:  # the siamese stage against its own backbone, with a paired interval
        for gain in (run["gain_P@1"], run["gain_Recall@5"], run["gain_mAP@R"], run["gain_unseen_P@1"]):
            assert gain["low"] <= gain["mean"] <= gain["high"]
        assert run["gain_P@1"]["mean"] == pytest.approx(run["P@1"] - run["backbone_P@1"])
        assert run["gain_Recall@5"]["mean"] == pytest.approx(run["Recall@5"] - run["backbone_Recall@5"])
    table = results.results_markdown(out)
    assert "Recall@5 backbone → encoder" in table
    out["load"] = [99.0, 99.0]  # a busy machine is named in the header; a quiet one is not
    assert "Other programs shared the CPU" in results.results_markdown(out)
    out["load"] = [0.1, 0.2]
    assert "Other programs shared the CPU" not in results.results_markdown(out)
    cores = os.cpu_count() or 1
    out["load"] = [0.1, cores + 0.1]  # the benchmark's own threads, one per core, alone
    assert "Other programs shared the CPU" not in results.results_markdown(out)
    assert table.count("\n| ") == 5 + 2 + 6 and "going further" in table and "run twice" in table
    assert "(notebooks 03, 05), P@1 ≥ 0.85:" in table and "going further (notebook 08), val accuracy ≥ 93%:" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.README_START}\nold table\n{results.README_END}\noutro\n")
    assert results.update_readme(readme, table)
    text = readme.read_text()
    assert "old table" not in text and table in text and text.startswith("intro") and text.endswith("outro\n")


def test_paired_gain_interval_excludes_zero_only_for_a_clear_gain():
    before = np.zeros(200)
    clear = results.paired_gain(np.r_[np.ones(60), np.zeros(140)], before)
    assert clear["mean"] == pytest.approx(0.3) and clear["low"] > 0
    noise = results.paired_gain(np.r_[np.ones(3), np.zeros(197)], np.r_[np.zeros(3), np.ones(2), np.zeros(195)])
    assert noise["low"] < 0 < noise["high"]


def test_goals_say_met_or_by_how_much_they_are_missed():
    summary = {"core": {"P@1": {"mean": 0.8312}, "Recall@5": {"mean": 0.975}}}
    assert results._target_lines(summary) == ["- kit core (notebooks 03, 05), P@1 ≥ 0.85: 0.831, missed by 0.019",
                                              "- kit core (notebooks 03, 05), Recall@5 ≥ 0.97: 0.975, met"]


def test_summary_reports_mean_and_spread():
    runs = [{"recipe": "core", **{m: v for m in results.METRICS}} for v in (0.8, 0.9)]
    s = results.summarize_runs(runs)["core"]["val_acc"]
    assert s == {"mean": pytest.approx(0.85), "min": 0.8, "max": 0.9}
    assert results._cell(s, percent=True, digits=1) == "85.0 ± 5.0"


def test_update_readme_leaves_a_readme_without_markers_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    assert not results.update_readme(readme, "table\n") and readme.read_text() == "no markers here\n"


def test_unknown_recipe_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        results.run_recipe("fast", seed=0)


def test_siamese_sweep_trains_each_variation_from_one_backbone(synthetic_imagefolder, monkeypatch, tmp_path):
    from helper_utils.reference import MobileNetBackbone
    from helper_utils.checkpoints import save_checkpoint
    from tools import siamese_sweep

    monkeypatch.setenv("FASHION_KIT_DATA", str(synthetic_imagefolder))
    monkeypatch.setenv("FASHION_KIT_CHECKPOINTS", str(tmp_path / "checkpoints"))
    save_checkpoint({"state_dict": MobileNetBackbone().state_dict()}, tmp_path / "checkpoints" / "backbone_best.pt")
    variations = [{"epochs": 1, "samples_per_class": 2, "head": "none"}, {"epochs": 1, "samples_per_class": 2}]
    assert siamese_sweep.main(["--variations", json.dumps(variations), "--json", str(tmp_path / "sweep.json")]) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert [row["changes"] for row in rows] == ["backbone as it is", *variations]
    assert all(0 <= row["P@1"] <= 1 and 0 <= row["mAP@R"] <= 1 for row in rows)
    assert not (tmp_path / "checkpoints" / "encoder_best.pt").exists()  # the course's encoder is left alone
    table = siamese_sweep.sweep_markdown(rows)
    assert table.count("\n") == 2 + 3 and "| backbone as it is |" in table and "`head='none'`" in table


def test_siamese_sweep_over_seeds_trains_each_seeds_backbone_once(synthetic_imagefolder, monkeypatch, tmp_path,
                                                                   capsys):
    from tools import siamese_sweep

    monkeypatch.setenv("FASHION_KIT_DATA", str(synthetic_imagefolder))
    monkeypatch.setenv("FASHION_KIT_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(siamese_sweep, "ClassifierRecipe", lambda seed: ClassifierRecipe(epochs=2, batch_size=4, seed=seed))
    trained, fit = [], siamese_sweep.fit_classifier
    monkeypatch.setattr(siamese_sweep, "fit_classifier", lambda recipe, **kw: trained.append(recipe.seed) or fit(recipe, **kw))
    variations = [{"epochs": 1, "samples_per_class": 2}, {"epochs": 1, "samples_per_class": 2, "seed": 7}]
    argv = ["--seeds", "0", "1", "--variations", json.dumps(variations), "--json", str(tmp_path / "sweep.json")]

    assert siamese_sweep.main(argv) == 0
    assert trained == [0, 1]
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert [row["changes"] for row in rows] == ["backbone as it is", *variations]
    for row in rows:
        per_seed = row["P@1 per seed"]
        assert list(per_seed) == ["0", "1"] and row["P@1"] == pytest.approx(np.mean(list(per_seed.values())), abs=1e-3)
    assert "| P@1 per seed |" in siamese_sweep.sweep_markdown(rows)
    assert not (tmp_path / "checkpoints" / "encoder_best.pt").exists()

    assert siamese_sweep.main(argv) == 0 and trained == [0, 1]  # the two backbones are reused
    monkeypatch.setattr(siamese_sweep, "ClassifierRecipe", lambda seed: ClassifierRecipe(epochs=3, batch_size=4, seed=seed))
    assert siamese_sweep.main(argv) == 0 and trained == [0, 1, 0, 1]  # another recipe: trained again
    assert "was trained with another recipe" in capsys.readouterr().out


def test_an_empty_readme_argument_skips_the_results_page(tmp_path, monkeypatch, capsys):
    committed = Path(__file__).resolve().parents[2] / "docs" / "results" / "bench_results.json"
    monkeypatch.chdir(tmp_path)  # '' must not become the current folder, nor any README in it
    (tmp_path / "README.md").write_text(f"{results.README_START}\nold\n{results.README_END}\n")
    code = bench.main(["results", "--from-json", str(committed), "--markdown", "table.md", "--readme", ""])
    assert code == 0, capsys.readouterr()
    assert "P@1" in (tmp_path / "table.md").read_text()
    assert "old" in (tmp_path / "README.md").read_text() and "updated" not in capsys.readouterr().out
