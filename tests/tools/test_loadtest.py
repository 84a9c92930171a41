"""tools.loadtest: the summary's arithmetic, a real (tiny) run against the server, and the side-by-side run."""

import pytest

from conftest import build_synthetic_service
from tools import loadtest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Seeded checkpoints + a 7-class synthetic data root, built into a service folder."""
    return build_synthetic_service(tmp_path_factory.mktemp("service"), per_class=3)


def test_loadtest_summary_counts_errors_apart_from_latency():
    records = [("/search", 200, 0.010), ("/predict", 200, 0.030), ("/search", 400, 0.001),
               ("/predict", "ReadTimeout", 10.0)]
    summary = loadtest.summarize_requests(records, elapsed_s=2.0)
    assert summary["overall"]["ok"] == 2 and summary["overall"]["rps"] == 1.0
    assert summary["overall"]["errors"] == {"400": 1, "ReadTimeout": 1}
    assert summary["overall"]["max_ms"] == pytest.approx(30.0)  # failed requests do not enter the percentiles
    assert summary["endpoints"]["/search"]["p50_ms"] == pytest.approx(10.0)


def test_loadtest_drives_the_real_server_and_stops_it(built):
    summary = loadtest.run_loadtest(built["dir"], requests=8, concurrency=2, time_limit_s=60, threads=1, n_queries=4,
                                    data_root=built["image_root"].parent)
    assert summary["overall"]["requests"] == summary["overall"]["ok"] == 8 and not summary["cut_short"]
    assert summary["endpoints"]["/search"]["ok"] == summary["endpoints"]["/predict"]["ok"] == 4
    assert summary["catalog_size"] == 21
    summary["date"] = "today"
    assert "requests per second" in loadtest.report_markdown(summary, "python -m tools.loadtest")


@pytest.mark.parametrize("kwargs", [{"requests": 0}, {"concurrency": 65}, {"time_limit_s": 0}])
def test_loadtest_refuses_unbounded_settings(kwargs):


    with pytest.raises(ValueError, match=next(iter(kwargs))):
        loadtest.run_loadtest("unused", **kwargs)


def test_the_summary_has_the_99th_percentile():
    records = [("/search", 200, ms / 1000) for ms in range(1, 101)]
    assert loadtest.summarize_requests(records, 1.0)["overall"]["p99_ms"] == pytest.approx(99.01)


def test_a_side_by_side_run_measures_both_servers(built, monkeypatch):
    """HEAD against this tree: both servers come up from their own files, and both are measured."""
    started = []
    real_server = loadtest._server

    def recording_server(service_dir, threads, tree=None):
        started.append("before" if tree is not None else "after")
        if tree is not None:
            assert (tree / "helper_utils" / "going_further" / "serve.py").is_file()
        return real_server(service_dir, threads, tree)

    monkeypatch.setattr(loadtest, "_server", recording_server)
    result = loadtest.compare("HEAD", built["dir"], rounds=1, requests=4, concurrency=2, n_queries=4,
                              data_root=built["image_root"].parent)
    assert started == ["before", "after"]
    for label in ("before", "after"):
        assert result[label]["overall"]["requests"] == result[label]["overall"]["ok"] == 4
        assert result[label]["overall"]["rps"] > 0 and "p99_ms" in result[label]["overall"]
    result["date"] = "today"
    page = loadtest.compare_markdown(result, "python -m tools.loadtest --baseline HEAD")
    assert "| before | 4 | 4 | 0 |" in page and "| after | 4 | 4 | 0 |" in page and "the p99 latency" in page


def test_rounds_alternate_which_server_goes_first(built, monkeypatch):
    import contextlib

    order = []

    @contextlib.contextmanager
    def fake_server(service_dir, threads, tree=None):
        order.append("before" if tree is not None else "after")
        yield "http://127.0.0.1:1", {"catalog": {"size": 21}}

    async def fake_drive(url, queries, total, concurrency, time_limit_s, k):
        return [("/search", 200, 0.01)] * total, 1.0, False

    monkeypatch.setattr(loadtest, "_server", fake_server)
    monkeypatch.setattr(loadtest, "_drive", fake_drive)
    result = loadtest.compare("HEAD", built["dir"], rounds=3, requests=5, n_queries=2,
                              data_root=built["image_root"].parent)
    assert order == ["before", "after", "after", "before", "before", "after"]
    assert result["before"]["overall"]["requests"] == result["after"]["overall"]["requests"] == 15


def test_a_baseline_that_is_no_commit_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="is not a commit"):
        loadtest.compare("no-such-commit", tmp_path / "unbuilt")
