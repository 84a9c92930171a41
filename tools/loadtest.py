"""A short, bounded load test of the search service: the real server under a few concurrent clients.

It starts ``python -m helper_utils.going_further.serve run`` in its own process on a free port of
**127.0.0.1** (never another address), waits for ``/health``, then sends a fixed number of
requests, alternating ``POST /search`` and ``POST /predict``, from ``concurrency`` clients
(httpx, asyncio), and stops the server again. The queries are photos of the test split, sent
as the JPEG files they are (so decoding and resizing are part of every request), and none of
them is in the default catalog. A hard time limit ends the run early; whatever finished by
then is reported, and the report says the run was cut short.

``--baseline REF`` measures an older version of the service side by side with this one: the
tree of the git commit ``REF`` is unpacked into a temporary folder (``git archive``: nothing in
the repository changes) and both servers serve the same artifacts, one after the other, in
``--rounds`` rounds of alternating order (old, new, new, old, ...), so that a machine that grows
busier during the run slows both alike. The report gives each one's requests per second and
latency percentiles (p50, p95, p99).

Client and server share the machine's CPU, so the numbers are those of a service on a busy
laptop, not a capacity figure for a dedicated server.

From a terminal (builds ``artifacts/service`` first when it is missing)::

    python -m tools.loadtest --requests 300 --concurrency 4 --report docs/results/service.md
    python -m tools.loadtest --baseline 7a30068 --rounds 4 --requests 300 --concurrency 4 --report docs/results/service.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from helper_utils.cli import ArgumentParser, int_at_least, run
from helper_utils.files import atomic_path
from helper_utils.going_further.serve import DEFAULT_DIR, build, free_port, is_built
from helper_utils.paths import REPO

__all__ = ["run_loadtest", "compare", "summarize_requests", "report_markdown", "compare_markdown", "main"]

ENDPOINTS = ("/search", "/predict")
COMMAND = "python -m tools.loadtest"


def _query_photos(n: int = 50, data_root: str | Path | None = None) -> list[tuple[str, bytes]]:
    """``n`` test-split photos spread over all classes, as ``(file name, JPEG bytes)``."""
    from helper_utils.data import ClothingDataset

    samples = ClothingDataset("test", root=data_root).samples
    picks = np.linspace(0, len(samples) - 1, num=min(n, len(samples))).round().astype(int)
    return [(Path(samples[i][0]).name, Path(samples[i][0]).read_bytes()) for i in picks]


def run_loadtest(service_dir: str | Path = DEFAULT_DIR, requests: int = 300, concurrency: int = 4,
                 time_limit_s: float = 60.0, k: int = 5, threads: int = 1, n_queries: int = 50,
                 data_root: str | Path | None = None) -> dict:
    """Start the server, send ``requests`` requests from ``concurrency`` clients, stop it; returns the summary.

    Raises:
        ValueError: for a count, concurrency or time limit out of range.
        RuntimeError: the server did not come up (its log is in the message).
    """
    _check_settings(requests, concurrency, time_limit_s)
    service_dir = _built(service_dir, data_root)
    queries = _query_photos(n_queries, data_root)
    load_before = os.getloadavg()[0]
    with _server(service_dir, threads) as (url, health):
        records, elapsed, cut_short = asyncio.run(_drive(url, queries, requests, concurrency, time_limit_s, k))
    summary = summarize_requests(records, elapsed)
    summary.update(requests_planned=requests, concurrency=concurrency, time_limit_s=time_limit_s, cut_short=cut_short,
                   k=k, server_threads=threads, queries=len(queries), catalog_size=health["catalog"]["size"],
                   catalog_backend=health["catalog"]["backend"], load_before=round(load_before, 2),
                   load_after=round(os.getloadavg()[0], 2))
    return summary


def compare(baseline: str, service_dir: str | Path = DEFAULT_DIR, rounds: int = 2, requests: int = 300,
            concurrency: int = 4, time_limit_s: float = 60.0, k: int = 5, threads: int = 1, n_queries: int = 50,
            data_root: str | Path | None = None) -> dict:
    """The service at git commit ``baseline`` and this one, measured side by side; returns both summaries.

    Each round runs both servers, one after the other, with the order alternating between rounds
    (old first, then new first, ...). Requests per second are the answered requests of all rounds
    over their time; the percentiles are over every answered request.

    Raises:
        ValueError: bad settings, or ``baseline`` is not a commit of this repository.
        RuntimeError: a server did not come up.
    """
    _check_settings(requests, concurrency, time_limit_s)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 20:
        raise ValueError(f"rounds should be a number from 1 to 20, got {rounds!r}")
    _commit_of(baseline)  # a wrong commit fails now, not after building
    service_dir = _built(service_dir, data_root)
    queries = _query_photos(n_queries, data_root)
    load_before = os.getloadavg()[0]
    runs: dict[str, list] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="loadtest-baseline-") as tmp:
        old_tree = _unpack_commit(baseline, Path(tmp))
        for i in range(rounds):
            for label in (("before", "after") if i % 2 == 0 else ("after", "before")):
                tree = old_tree if label == "before" else None
                with _server(service_dir, threads, tree) as (url, health):
                    runs[label].append(asyncio.run(_drive(url, queries, requests, concurrency, time_limit_s, k)))
    result = {"baseline": baseline, "head": _commit_of("HEAD"), "rounds": rounds, "requests_planned": requests,
              "concurrency": concurrency, "k": k, "server_threads": threads, "queries": len(queries),
              "catalog_size": health["catalog"]["size"], "time_limit_s": time_limit_s,
              "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    for label, parts in runs.items():
        records = [record for part in parts for record in part[0]]
        result[label] = summarize_requests(records, sum(part[1] for part in parts))
        result[label]["cut_short"] = any(part[2] for part in parts)
    return result


def _check_settings(requests: int, concurrency: int, time_limit_s: float) -> None:
    _check("requests", requests, 1, 100_000)
    _check("concurrency", concurrency, 1, 64)
    _check("time_limit_s", time_limit_s, 1, 600)


def _check(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} should be a number from {low} to {high}, got {value!r}")


def _built(service_dir: str | Path, data_root: str | Path | None) -> Path:
    service_dir = Path(service_dir)
    if not is_built(service_dir):
        print(f"No service artifacts in {service_dir}: building them first.", flush=True)
        build(service_dir, data_root=data_root)
    return service_dir


def _commit_of(ref: str) -> str:
    """The full hash of ``ref`` in this repository; a ValueError when it names no commit."""
    result = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(f"{ref!r} is not a commit of the repository at {REPO} (git rev-parse found none)")
    return result.stdout.strip()


def _unpack_commit(ref: str, folder: Path) -> Path:
    """The files of commit ``ref`` (``git archive``), unpacked into ``folder``; the repository is not touched."""
    commit = _commit_of(ref)
    archive = folder / "tree.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], stdout=out, check=True)
    tree = folder / commit[:12]
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(tree, filter="data")
        except TypeError:  # pragma: no cover - a Python without extraction filters (3.10.11 and older)
            tar.extractall(tree)
    return tree


@contextmanager
def _server(service_dir: Path, threads: int, tree: Path | None = None) -> Iterator[tuple[str, dict]]:
    """A server process on a free loopback port, from this tree or from ``tree`` (an older commit's files)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "helper_utils.going_further.serve", "run", "--dir", str(service_dir.resolve()),
               "--port", str(port), "--threads", str(threads), "--no-access-log"]
    env = dict(os.environ)
    if tree is not None:  # the older package first on the path: `python -m` also puts the cwd first
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tree or REPO, env=env)
        try:
            yield url, _wait_for_health(url, server, log, timeout_s=120)
        finally:
            _stop(server)


def _wait_for_health(url: str, server: subprocess.Popen, log, timeout_s: float) -> dict:
    """Poll ``/health`` until it answers; fail with the server's log if it exits or never answers."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}: {_tail(log)}")
        try:
            return httpx.get(f"{url}/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /health within {timeout_s:.0f} s: {_tail(log)}")


def _tail(log, lines: int = 5) -> str:
    log.flush()
    log.seek(0)
    return " | ".join(log.read().splitlines()[-lines:])


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM lets uvicorn finish and exit; kill only if it has not within 10 s."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def _drive(url: str, queries: list[tuple[str, bytes]], total: int, concurrency: int, time_limit_s: float,
                 k: int) -> tuple[list[tuple[str, object, float]], float, bool]:
    """Send ``total`` requests from ``concurrency`` workers; returns ``(records, seconds, cut_short)``."""
    import httpx

    records: list[tuple[str, object, float]] = []  # (endpoint, status or error name, seconds)
    next_request = 0

    async def send(client, i: int) -> tuple[str, object, float]:
        endpoint = ENDPOINTS[i % len(ENDPOINTS)]
        name, data = queries[i % len(queries)]
        params = {"k": k} if endpoint == "/search" else None
        start = time.perf_counter()
        try:
            response = await client.post(endpoint, params=params, files={"file": (name, data, "image/jpeg")})
            status: object = response.status_code
        except httpx.HTTPError as error:
            status = type(error).__name__
        return endpoint, status, time.perf_counter() - start

    async def worker(client) -> None:
        nonlocal next_request
        while next_request < total:  # one event loop: taking a number needs no lock
            i, next_request = next_request, next_request + 1
            records.append(await send(client, i))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits) as client:
        for i in range(len(ENDPOINTS) * concurrency):  # warm-up, not counted: connections, first-call costs
            await send(client, i)
        start = time.perf_counter()
        tasks = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=time_limit_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return records, time.perf_counter() - start, bool(pending)


def summarize_requests(records: Sequence[tuple[str, object, float]], elapsed_s: float) -> dict:
    """Requests per second and latency percentiles (ms), overall and per endpoint; errors counted apart."""
    def stats(rows) -> dict:
        ok = [seconds * 1000 for _, status, seconds in rows if status == 200]
        errors: dict[str, int] = {}
        for _, status, _ in rows:
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
        row = {"requests": len(rows), "ok": len(ok), "errors": errors}
        if ok:
            row.update(p50_ms=float(np.percentile(ok, 50)), p95_ms=float(np.percentile(ok, 95)),
                       p99_ms=float(np.percentile(ok, 99)), max_ms=float(max(ok)))
        return row

    summary = {"elapsed_s": elapsed_s, "overall": stats(records)}
    summary["overall"]["rps"] = summary["overall"]["ok"] / elapsed_s if elapsed_s > 0 else 0.0
    summary["endpoints"] = {e: stats([r for r in records if r[0] == e]) for e in ENDPOINTS}
    return summary


def _machine_line(load_before: float, load_after: float) -> str:
    from helper_utils.device import machine_description

    return (f"- Machine: {machine_description()}. Server and clients ran on it together (1-minute load average "
            f"{load_before} before the run, {load_after} after; above the core count means other programs were "
            f"using the CPU too).")


def _timing_cells(row: dict) -> str:
    return " | ".join(f"{row[key]:.1f}" if key in row else "-" for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))


def report_markdown(summary: dict, command: str) -> str:
    """The summary as a markdown page (docs/results/service.md)."""
    o = summary["overall"]
    lines = [
        "# Search service: a short load test", "",
        f"Measured {summary['date']} with `{command}`.", "",
        _machine_line(summary["load_before"], summary["load_after"]),
        f"- Server: `python -m helper_utils.going_further.serve run` (uvicorn, one process, 127.0.0.1), onnxruntime "
        f"with {summary['server_threads']} thread(s) per model, catalog of {summary['catalog_size']} photos "
        f"({summary['catalog_backend']} index), access log off.",
        f"- Load: {summary['requests_planned']} requests from {summary['concurrency']} concurrent clients (httpx), "
        f"alternating `POST /search?k={summary['k']}` and `POST /predict`, each uploading one of "
        f"{summary['queries']} test-split JPEGs; {2 * summary['concurrency']} warm-up requests first, not counted; "
        f"time limit {summary['time_limit_s']:.0f} s"
        + (" (**reached: the run was cut short**)." if summary["cut_short"] else " (not reached)."), "",
        "| | requests | ok | errors | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |", "|---|---|---|---|---|---|---|---|"]
    for name, row in [("all", o), *summary["endpoints"].items()]:
        errors = ", ".join(f"{n} x {s}" for s, n in row["errors"].items()) or "0"
        lines.append(f"| {name if name == 'all' else '`' + name + '`'} | {row['requests']} | {row['ok']} | "
                     f"{errors} | {_timing_cells(row)} |")
    lines += ["", f"**{o['rps']:.1f} requests per second** ({o['ok']} answered with 200 in "
              f"{summary['elapsed_s']:.1f} s); latency is measured by the client, from sending the upload to "
              "the whole answer.", ""]
    return "\n".join(lines)


def compare_markdown(result: dict, command: str) -> str:
    """A side-by-side run (:func:`compare`) as a markdown page."""
    lines = [
        "# Search service: load test, before and after", "",
        f"Measured {result['date']} with `{command}`.", "",
        _machine_line(result["load_before"], result["load_after"]),
        f"- Before: the service at commit `{result['baseline']}`; after: this tree (`{result['head'][:12]}`"
        " and its uncommitted changes). Both serve the same artifacts (catalog of "
        f"{result['catalog_size']} photos), with onnxruntime on {result['server_threads']} thread(s) per model.",
        f"- Load: {result['rounds']} rounds, each running both servers one after the other (the order alternates); "
        f"per server and round {result['requests_planned']} requests from {result['concurrency']} concurrent clients, "
        f"alternating `POST /search?k={result['k']}` and `POST /predict` with {result['queries']} test-split JPEGs, "
        "after uncounted warm-up requests.", "",
        "| | requests | ok | errors | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---|---|---|---|---|---|---|"]
    for label in ("before", "after"):
        o = result[label]["overall"]
        errors = ", ".join(f"{n} x {s}" for s, n in o["errors"].items()) or "0"
        lines.append(f"| {label} | {o['requests']} | {o['ok']} | {errors} | {o['rps']:.1f} | {_timing_cells(o)} |")
    before, after = result["before"]["overall"], result["after"]["overall"]
    if before.get("rps") and after.get("p99_ms") and before.get("p99_ms"):
        lines += ["", f"After / before: **{after['rps'] / before['rps']:.2f}x** the requests per second, "
                  f"**{after['p99_ms'] / before['p99_ms']:.2f}x** the p99 latency."]
    lines.append("")
    return "\n".join(lines)


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="service folder (default: artifacts/service)")
    parser.add_argument("--requests", type=int_at_least(1), default=300)
    parser.add_argument("--concurrency", type=int_at_least(1), default=4)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds; the run stops there at the latest")
    parser.add_argument("--k", type=int_at_least(1), default=5)
    parser.add_argument("--threads", type=int_at_least(1), default=1, help="onnxruntime threads per model in the server")
    parser.add_argument("--baseline", help="also measure the service of this git commit, side by side (e.g. main)")
    parser.add_argument("--rounds", type=int_at_least(1), default=2, help="rounds of a side-by-side run")
    parser.add_argument("--report", type=Path, help="write the report as markdown here, e.g. docs/results/service.md")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    return run(lambda: _main(args, f"{COMMAND} " + " ".join(argv)), errors=(RuntimeError,))


def _main(args: argparse.Namespace, command: str) -> int:
    if args.baseline:
        result = compare(args.baseline, args.dir, args.rounds, args.requests, args.concurrency, args.time_limit,
                         args.k, args.threads)
        result["date"] = _dt.date.today().isoformat()
        markdown, failed = compare_markdown(result, command.strip()), any(
            result[label]["overall"]["ok"] != result[label]["overall"]["requests"] for label in ("before", "after"))
    else:
        result = run_loadtest(args.dir, args.requests, args.concurrency, args.time_limit, args.k, args.threads)
        result["date"] = _dt.date.today().isoformat()
        markdown, failed = report_markdown(result, command.strip()), result["overall"]["ok"] != result["overall"]["requests"]
    for path, text in [(args.report, markdown), (args.json, json.dumps(result, indent=2) + "\n")]:
        if path:
            with atomic_path(path, mode=0o644) as tmp:
                tmp.write_text(text)
    print(markdown)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
