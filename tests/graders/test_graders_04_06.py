"""The graders of notebooks 04-06 pass the references and correct alternatives, and fail stubs and mutants.

Graders are named ``test_*``: they are reached through ``unittests.<name>`` only, never imported
by name (pytest would collect them as tests).
"""

from __future__ import annotations

import time

import pytest

import unittests
# the mutants sit beside this file; pytest puts this folder on sys.path (no __init__.py here)
import mutants_triplets as triplets
import mutants_siamese as siamese
import mutants_search as search
from helper_utils import retrieval
from helper_utils.models import SiameseEncoder, SiameseNetwork
from helper_utils.triplets import TripletDataset





# grader name, reference answer, {name: correct alternative}, {name: stub}, {name: (mutant, failing case)}
GRADERS = {
    "test_triplet_dataset": (TripletDataset, triplets.CORRECT, triplets.STUBS, triplets.MUTANTS),
    "test_siamese_encoder": (SiameseEncoder, siamese.ENCODER_CORRECT, siamese.ENCODER_STUBS, siamese.ENCODER_MUTANTS),
    "test_siamese_network": (SiameseNetwork, siamese.NETWORK_CORRECT, siamese.NETWORK_STUBS, siamese.NETWORK_MUTANTS),
    "test_query_embedding": (retrieval.get_query_img_embedding, search.QUERY_CORRECT, search.QUERY_STUBS,
                             search.QUERY_MUTANTS),
    "test_get_embeddings": (retrieval.get_embeddings, search.EMBEDDINGS_CORRECT, search.EMBEDDINGS_STUBS,
                            search.EMBEDDINGS_MUTANTS),
    "test_find_closest": (retrieval.find_closest, search.CLOSEST_CORRECT, search.CLOSEST_STUBS,
                          search.CLOSEST_MUTANTS),
}


def _params(kind: str):
    return [pytest.param(grader, name, answer, id=f"{grader}-{name}")
            for grader, entry in GRADERS.items()
            for name, answer in {"correct": entry[1], "stub": entry[2]}[kind].items()]


def _mutant_params():
    return [pytest.param(grader, name, mutant, case, id=f"{grader}-{name}")
            for grader, entry in GRADERS.items() for name, (mutant, case) in entry[3].items()]


@pytest.fixture(autouse=True)
def _lenient(monkeypatch):
    monkeypatch.delenv(unittests.STRICT_ENV, raising=False)


def _grade(grader: str, answer):
    return getattr(unittests, grader)(answer)


@pytest.fixture(autouse=True)
def one_thread():
    """Run the graders as on a learner's idle machine: on a busy shared runner, intra-op threads working on
    these tiny tensors spend most of their time waiting for each other (seconds instead of milliseconds)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("grader", GRADERS)
def test_grader_passes_the_reference_quickly(grader, capsys):
    start = time.perf_counter()
    report = _grade(grader, GRADERS[grader][0])
    seconds = time.perf_counter() - start
    assert report, capsys.readouterr().out
    assert report.summary() == f"All {len(report.results)} tests passed"
    assert "All" in capsys.readouterr().out
    assert seconds < 2.0, f"{grader} took {seconds:.2f} s on the reference (budget: well under 2 s)"


@pytest.mark.parametrize("grader, name, answer", _params("correct"))
def test_grader_passes_a_correct_alternative(grader, name, answer, capsys):
    report = _grade(grader, answer)
    assert report, capsys.readouterr().out


@pytest.mark.parametrize("grader, name, answer", _params("stub"))
def test_grader_fails_the_stub_cleanly(grader, name, answer, capsys):
    report = _grade(grader, answer)
    out = capsys.readouterr().out
    assert not report
    assert report.results[0].name.endswith("is defined")
    assert "failed" in report.summary() and report.summary() in out
    failed = [r for r in report.results if not r.passed and not r.skipped]
    assert failed and all(r.hint for r in failed), out


@pytest.mark.parametrize("grader, name, mutant, case", _mutant_params())
def test_grader_fails_a_mutant_at_the_right_case(grader, name, mutant, case, capsys):
    report = _grade(grader, mutant)
    out = capsys.readouterr().out
    assert not report, f"{grader} passed the mutant '{name}':\n{out}"
    results = {r.name: r for r in report.results}
    assert case in results, f"no case named {case!r} in {list(results)}"
    assert not results[case].passed and not results[case].skipped, \
        f"mutant '{name}' should fail case {case!r}:\n{out}"
    failed = [r for r in report.results if not r.passed and not r.skipped]
    assert all(r.hint for r in failed), out


@pytest.mark.parametrize("grader", GRADERS)
def test_grader_has_five_mutants_or_more(grader):
    assert len(GRADERS[grader][3]) >= 5


@pytest.mark.parametrize("grader", GRADERS)
def test_grader_raises_in_strict_mode(grader, monkeypatch, capsys):
    monkeypatch.setenv(unittests.STRICT_ENV, "1")
    with pytest.raises(unittests.GraderFailed):
        _grade(grader, None)
    assert _grade(grader, GRADERS[grader][0])  # a passing grader does not raise


def test_mutant_hints_name_the_mistake(capsys):
    """A few mutants whose hint must say exactly what is wrong, as the notebook's learner reads it."""
    expectations = [
        ("test_triplet_dataset", triplets.PositiveFromAnotherClass, "positive drawn from another class"),
        ("test_triplet_dataset", triplets.NegativeFromAnchorClass, "negative drawn from anchor's class"),
        ("test_triplet_dataset", triplets.PositiveMayBeAnchor, "positive can be the anchor itself"),
        ("test_triplet_dataset", triplets.LenTimesThree, "__len__ should equal the wrapped dataset's"),
        ("test_triplet_dataset", triplets.AssumesSevenClasses, "don't hard-code the number of classes"),
        ("test_siamese_encoder", siamese.MaxPoolEncoder, "not max pooling"),
        ("test_siamese_encoder", siamese.CopiesBackboneEncoder, "not a copy"),
        ("test_siamese_network", siamese.SwappedOrder, "in that order"),
        ("test_siamese_network", siamese.NormalisesForwardOnly, "no normalisation"),
        ("test_query_embedding", search.query_no_eval, "encoder.eval()"),
        ("test_query_embedding", search.query_squeezed, "keep the batch dimension"),
        ("test_get_embeddings", search.embeddings_shuffled, "shuffle=False"),
        ("test_get_embeddings", search.embeddings_drop_last, "drop_last"),
        ("test_find_closest", search.closest_descending, "farthest first"),
        ("test_find_closest", search.closest_cosine, "not cosine similarity"),
        ("test_find_closest", search.closest_manhattan, "not Manhattan"),
        ("test_find_closest", search.closest_returns_distances, "not the distances"),
        ("test_find_closest", search.closest_k_plus_one, "off by one"),
        ("test_find_closest", search.closest_argmax, "np.argsort"),
        ("test_query_embedding", search.query_no_unsqueeze, "unsqueeze(0)"),
        ("test_get_embeddings", search.embeddings_stacked_batches, "np.concatenate"),
        ("test_get_embeddings", search.embeddings_no_default, "default"),
        ("test_siamese_encoder", siamese.FixedKernelEncoder, "AdaptiveAvgPool2d(1)"),
        ("test_siamese_encoder", siamese.FrozenBackboneEncoder, "requires_grad=False"),
    ]
    for grader, answer, words in expectations:
        report = _grade(grader, answer)
        hints = " | ".join(r.hint for r in report.results if not r.passed)
        assert words in hints, f"{grader} on {getattr(answer, '__name__', answer)}: {hints}"
