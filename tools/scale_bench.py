"""``make bench-scale``: exact against approximate search on a million synthetic embeddings, as a report.

Runs :func:`helper_utils.going_further.scale.run_scale_benchmark` (the benchmark notebook 09
teaches with, on smaller catalogs) and writes what it measured three ways: the full results as
JSON, a markdown page (setup, verdict against the targets, the tables, the geometry check) and a
recall-against-latency plot. ``--from-json`` re-renders the page and plot of a saved run without
measuring again, so a change of wording never needs a new 6-minute run::

    python -m tools.scale_bench --n 1000000 --json docs/results/scale_results.json \\
        --plot docs/results/scale_recall_latency.png --markdown docs/results/scale.md
    python -m tools.scale_bench --from-json docs/results/scale_results.json --markdown docs/results/scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from helper_utils.cli import ArgumentParser, int_at_least, run
from helper_utils.files import atomic_path
from helper_utils.going_further import MissingExtrasError, require_extras
from helper_utils.going_further.scale import format_speedup, plot_recall_latency, results_table, run_scale_benchmark

__all__ = ["main"]

COMMAND = "python -m tools.scale_bench"


def _to_markdown(report: dict, plot_name: str | None = None, rendered_from: str | None = None) -> str:
    """The report as markdown: setup, verdicts, the synthetic and real tables, the geometry check.

    Args:
        report: what :func:`run_scale_benchmark` returned (or its JSON, read back).
        plot_name: the plot's path relative to the markdown file, to embed it.
        rendered_from: the command that re-rendered this report from a saved JSON, if it was.
    """
    s, summary = report["setup"], report["summary"]
    best, high = summary["best_hnsw"], summary["fastest_high_recall"]
    lines = [f"# Search at scale: {s['n']:,} synthetic embeddings ({s['dim']}-d)", "",
             f"Measured {s['date']} on {s['machine']}; {s['cpu_count']} CPU cores, FAISS, torch and BLAS limited to "
             f"{s['threads']} threads; numpy {s['versions']['numpy']}, faiss {s['versions']['faiss']}. Seed {s['seed']}.",
             _load_sentence(s), "Single queries run on one thread, batches on "
             f"{s['threads']} (why: `helper_utils/going_further/scale.py`).", ""]
    if s.get("command"):
        lines += ["Command:", "", "```", s["command"], "```", ""]
    if rendered_from:
        lines += [f"This page was re-rendered from the run's JSON, without measuring again: `{rendered_from}`.", ""]
    lines += [f"Queries: {s['n_queries']} new draws from the same mixture, searched as one batch (recall@{s['k']} "
              f"against exact brute force, batch latency); the first {s['n_single']} also one at a time "
              "(median and p95 latency, through `SearchIndex.search`, validation and normalisation included). "
              "Speedups are against the faster brute force per single query: torch (`exact`) or FAISS (`flat`).", "",
              "## Verdict", ""]
    if best:
        lines.append(f"- Fastest HNSW with recall@{s['k']} >= {summary['target_recall']}: **{best['method']}**, "
                     f"{best['single_median_ms']:.3f} ms per single query against {summary['exact_single_ms']:.2f} ms "
                     f"for exact brute force (`{summary['exact_method']}`): **{format_speedup(best['speedup_single'])} faster** at recall@{s['k']} "
                     f"{best['recall_at_k']:.4f}.")
    lines.append(f"- Target (HNSW >= {summary['target_speedup']:.0f}x faster per single query at recall@{s['k']} >= "
                 f"{summary['target_recall']}): **{'met' if summary['target_met'] else 'not met'}**.")
    lines.append(f"- Fastest setting with recall@{s['k']} >= {summary['high_recall']}: " + (
        f"**{high['method']}**, {high['single_median_ms']:.3f} ms ({format_speedup(high['speedup_single'])} faster than brute force), "
        f"recall {high['recall_at_k']:.4f}." if high else "none of the settings measured."))
    lines += ["", "## Synthetic catalog", ""] + results_table(report["synthetic"], s["k"])
    if plot_name:
        lines += ["", f"![recall against single-query latency]({plot_name})"]
    lines += _geometry_lines(report.get("geometry", {}), s["k"])
    if report.get("real"):
        real = report["real"]
        lines += ["", f"## The real catalog ({report['geometry']['real']['n']} photos, test photos as queries)", "",
                  "Too small for approximate search to matter: everything is well under a millisecond, and exact "
                  "search is the right choice at this size.", ""] + results_table(real, s["k"])
    lines += ["", f"Regenerate with the command above (`{COMMAND} --help` for options); "
              "the synthetic catalog is described in `helper_utils/going_further/scale.py`, how it was fitted "
              "on the results page (docs/results/README.md)."]
    return "\n".join(lines) + "\n"




def _load_sentence(setup: dict) -> str:
    """Whether other jobs competed for the cores during the run, from the load averages recorded."""
    start, end, cores = setup.get("load_average_at_start"), setup.get("load_average_at_end"), setup["cpu_count"]
    if not start or not end:
        return "The load average was not recorded."
    loads = f"load average (1, 5, 15 min) {'/'.join(f'{v:.1f}' for v in start)} at the start and " \
            f"{'/'.join(f'{v:.1f}' for v in end)} at the end, on {cores} cores"
    if max(start[0], end[0]) > cores:
        return (f"**The machine was shared**: {loads}, so other jobs competed for the cores during the run and "
                "the timings carry that noise (the p95 column shows it).")
    return f"The machine was otherwise quiet: {loads}."



def _geometry_lines(geometry: dict, k: int) -> list[str]:
    if "real" not in geometry:
        return []
    columns = [("real", "real catalog"), ("synthetic_same_size", "synthetic, same size"), ("synthetic", "synthetic, benchmark size")]
    columns = [(key, title) for key, title in columns if key in geometry]
    lines = ["", "## Is the synthetic catalog shaped like the real one?", "",
             "The mixture's weights were fitted to the real embeddings at their size; the same generator at the "
             "benchmark size has more clusters, as a bigger shop has more kinds of products. The distances to the "
             "nearest items, which set how hard a search is around a query, stay close to the real catalog's; the "
             "many more cluster centres fill more directions than the real catalog does (effective dimensions), "
             "which a million real photos may or may not do.", "",
             "| statistic | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    names = [("n", "items"), ("nn1_median", "median distance, query to its nearest item"),
             (f"nn{k}_median", f"median distance, query to its {k}th nearest"),
             ("pair_median", "median distance between random items"), ("mean_length", "length of the mean vector"),
             ("effective_dims", "effective dimensions (participation ratio)")]
    for key, title in names:
        values = [geometry[c][key] for c, _ in columns]
        lines.append(f"| {title} | " + " | ".join(f"{v:,}" if key == "n" else f"{v:.3f}" for v in values) + " |")
    return lines


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int_at_least(1), default=1_000_000, help="synthetic catalog size")
    parser.add_argument("--dim", type=int_at_least(2), default=64)
    parser.add_argument("--queries", type=int_at_least(1), default=1000, help="batch of queries (recall, batch latency)")
    parser.add_argument("--single", type=int_at_least(1), default=200, help="queries also timed one at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int_at_least(1), default=None, help="FAISS/BLAS threads (default: torch's)")
    parser.add_argument("--no-real", action="store_true", help="skip the real catalog (no checkpoint or data needed)")
    parser.add_argument("--from-json", type=Path, help="re-render the markdown and plot of an earlier run's JSON "
                        "instead of measuring")
    parser.add_argument("--json", type=Path, help="write the full results here")
    parser.add_argument("--plot", type=Path, help="write the recall-latency plot (PNG) here")
    parser.add_argument("--markdown", type=Path, help="write the markdown report here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Measure (or re-render) and write the report; bad input is one line on stderr and exit code 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    return run(lambda: _main(args, f"{COMMAND} " + " ".join(argv)), errors=(MissingExtrasError,))


def _main(args: argparse.Namespace, command: str) -> int:
    if args.single > args.queries:
        raise ValueError(f"--single ({args.single}) cannot be more than --queries ({args.queries})")
    if args.plot or args.markdown:
        import matplotlib

        matplotlib.use("Agg")
    rendered = None
    if args.from_json:
        report, rendered = _read_report(args.from_json), command
    else:
        require_extras(["faiss"])
        report = run_scale_benchmark(args.n, args.dim, args.queries, args.single, seed=args.seed,
                                     real=not args.no_real, threads=args.threads)
        report["setup"]["command"] = command
    outputs = _render(report, args, rendered)  # everything in memory first: a bad report writes nothing
    for path, write in outputs:
        with atomic_path(path, mode=0o644) as tmp:
            write(tmp)
        print(f"wrote {path}")
    return 0


def _read_report(path: Path) -> dict:
    """A saved run's JSON, or a ValueError that names the file and says what is wrong with it."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a scale benchmark's JSON (not UTF-8 text); write one with --json") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a scale benchmark's JSON ({error.msg} at line {error.lineno}); "
                         "write one with --json") from None
    if not isinstance(report, dict) or not all(isinstance(report.get(key), kind) for key, kind in _REPORT_KEYS.items()):
        raise ValueError(f"{path} is not a scale benchmark's JSON: it needs the objects "
                         f"{', '.join(_REPORT_KEYS)}; write one with --json")
    return report


_REPORT_KEYS = {"setup": dict, "synthetic": list, "summary": dict}  # what run_scale_benchmark returns, at least


def _render(report: dict, args: argparse.Namespace, rendered: str | None) -> list[tuple[Path, Callable]]:
    """``(path, write(tmp_path))`` for each output asked for, rendered now; a wrong-shaped report is a ValueError."""
    outputs: list[tuple[Path, Callable]] = []
    try:
        if args.json:
            text = json.dumps(report, indent=1)
            outputs.append((args.json, lambda tmp, text=text: tmp.write_text(text)))
        if args.markdown:
            text = _to_markdown(report, _relative(args.plot, args.markdown), rendered)
            outputs.append((args.markdown, lambda tmp, text=text: tmp.write_text(text)))
        if args.plot:
            figure = plot_recall_latency(report)
            outputs.append((args.plot, lambda tmp: figure.savefig(tmp, format="png")))
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as error:
        where = args.from_json or "the run"
        raise ValueError(f"{where} is not a complete scale benchmark report ({type(error).__name__}: "
                         f"{str(error)[:100]}); write one with --json") from None
    return outputs


def _relative(plot: Path | None, markdown: Path | None) -> str | None:
    if plot is None or markdown is None:
        return None
    return os.path.relpath(plot, markdown.parent)


if __name__ == "__main__":
    sys.exit(main())
