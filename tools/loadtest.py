"""A short, bounded load test of the search service: the real server under a few concurrent clients.

It starts ``python -m helper_utils.going_further.serve run`` in its own process on a free port of
**127.0.0.1** (never another address), waits for ``/health``, then sends a fixed number of
requests, alternating ``POST /search`` and ``POST /predict``, from ``concurrency`` clients
(httpx, asyncio), and stops the server again. The queries are photos of the test split, sent
as the JPEG files they are (so decoding and resizing are part of every request), and none of
them is in the default catalog. A hard time limit ends the run early; whatever finished by
then is reported, and the report says the run was cut short.

Client and server share the machine's CPU, so the numbers are those of a service on a busy
laptop, not a capacity figure for a dedicated server.

From a terminal (builds ``artifacts/service`` first when it is missing)::

    python -m tools.loadtest --requests 300 --concurrency 4 --report docs/results/service.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from helper_utils.going_further.serve import DEFAULT_DIR, build, free_port, is_built

__all__ = ["run_loadtest", "query_photos", "summarize", "report_markdown", "main"]

ENDPOINTS = ("/search", "/predict")


def query_photos(n: int = 50, data_root: str | Path | None = None) -> list[tuple[str, bytes]]:
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
    _check("requests", requests, 1, 100_000)
    _check("concurrency", concurrency, 1, 64)
    _check("time_limit_s", time_limit_s, 1, 600)
    service_dir = Path(service_dir)
    if not is_built(service_dir):
        print(f"No service artifacts in {service_dir}: building them first.", flush=True)
        build(service_dir, data_root=data_root)
    queries = query_photos(n_queries, data_root)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "helper_utils.going_further.serve", "run", "--dir", str(service_dir), "--port", str(port),
               "--threads", str(threads), "--no-access-log"]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            health = _wait_for_health(url, server, log, timeout_s=60)
            records, elapsed, cut_short = asyncio.run(_drive(url, queries, requests, concurrency, time_limit_s, k))
        finally:
            _stop(server)
    summary = summarize(records, elapsed)
    summary.update(requests_planned=requests, concurrency=concurrency, time_limit_s=time_limit_s, cut_short=cut_short,
                   k=k, server_threads=threads, queries=len(queries), catalog_size=health["catalog"]["size"],
                   catalog_backend=health["catalog"]["backend"], load_before=round(load_before, 2),
                   load_after=round(os.getloadavg()[0], 2))
    return summary


def _check(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} should be a number from {low} to {high}, got {value!r}")


def _wait_for_health(url: str, server: subprocess.Popen, log, timeout_s: float) -> dict:
    """Poll ``/health`` until it answers; fail with the server's log if it exits or never answers."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}:\n{_tail(log)}")
        try:
            return httpx.get(f"{url}/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /health within {timeout_s:.0f} s:\n{_tail(log)}")


def _tail(log, lines: int = 20) -> str:
    log.flush()
    log.seek(0)
    return "\n".join(log.read().splitlines()[-lines:])


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


def summarize(records: Sequence[tuple[str, object, float]], elapsed_s: float) -> dict:
    """Requests per second and latency percentiles (ms), overall and per endpoint; errors counted apart."""
    def stats(rows) -> dict:
        ok = [seconds * 1000 for _, status, seconds in rows if status == 200]
        errors: dict[str, int] = {}
        for _, status, _ in rows:
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
        row = {"requests": len(rows), "ok": len(ok), "errors": errors}
        if ok:
            row.update(p50_ms=float(np.percentile(ok, 50)), p95_ms=float(np.percentile(ok, 95)), max_ms=float(max(ok)))
        return row

    summary = {"elapsed_s": elapsed_s, "overall": stats(records)}
    summary["overall"]["rps"] = summary["overall"]["ok"] / elapsed_s if elapsed_s > 0 else 0.0
    summary["endpoints"] = {e: stats([r for r in records if r[0] == e]) for e in ENDPOINTS}
    return summary


def report_markdown(summary: dict, command: str) -> str:
    """The summary as a markdown page (docs/results/service.md)."""
    from helper_utils.device import machine_description

    o = summary["overall"]
    lines = [
        "# Search service: a short load test", "",
        f"Measured {summary['date']} with `{command}`.", "",
        f"- Machine: {machine_description()}. Server and clients ran on it together (1-minute load average "
        f"{summary['load_before']} before the run, {summary['load_after']} after; above the core count means "
        f"other programs were using the CPU too).",
        f"- Server: `python -m helper_utils.going_further.serve run` (uvicorn, one process, 127.0.0.1), onnxruntime with "
        f"{summary['server_threads']} thread(s) per model, catalog of {summary['catalog_size']} photos "
        f"({summary['catalog_backend']} index), access log off.",
        f"- Load: {summary['requests_planned']} requests from {summary['concurrency']} concurrent clients (httpx), "
        f"alternating `POST /search?k={summary['k']}` and `POST /predict`, each uploading one of "
        f"{summary['queries']} test-split JPEGs; {2 * summary['concurrency']} warm-up requests first, not counted; "
        f"time limit {summary['time_limit_s']:.0f} s"
        + (" (**reached: the run was cut short**)." if summary["cut_short"] else " (not reached)."), "",
        "| | requests | ok | errors | p50 (ms) | p95 (ms) | max (ms) |", "|---|---|---|---|---|---|---|"]
    for name, row in [("all", o), *summary["endpoints"].items()]:
        errors = ", ".join(f"{n} x {s}" for s, n in row["errors"].items()) or "0"
        timing = " | ".join(f"{row[key]:.1f}" if key in row else "-" for key in ("p50_ms", "p95_ms", "max_ms"))
        lines.append(f"| {name if name == 'all' else '`' + name + '`'} | {row['requests']} | {row['ok']} | "
                     f"{errors} | {timing} |")
    lines += ["", f"**{o['rps']:.1f} requests per second** ({o['ok']} answered with 200 in "
              f"{summary['elapsed_s']:.1f} s); latency is measured by the client, from sending the upload to "
              "the whole answer.", ""]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="service folder (default: artifacts/service)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds; the run stops there at the latest")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model in the server")
    parser.add_argument("--report", type=Path, help="write the report as markdown here, e.g. docs/results/service.md")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = "python -m tools.loadtest " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        summary = run_loadtest(args.dir, args.requests, args.concurrency, args.time_limit, args.k, args.threads)
    except (ValueError, RuntimeError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary["date"] = _dt.date.today().isoformat()
    markdown = report_markdown(summary, command.strip())
    for path, text in [(args.report, markdown), (args.json, json.dumps(summary, indent=2) + "\n")]:
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    print(markdown)
    return 0 if summary["overall"]["ok"] == summary["overall"]["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
