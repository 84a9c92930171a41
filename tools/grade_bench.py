"""Time the class grader on a generated class, project it to a bigger class and to a cluster, and write the page.

    python -m tools.grade_bench --learners 60 --json docs/results/grading.json --markdown docs/results/grading.md
    python -m tools.grade_bench --from-json docs/results/grading.json --markdown docs/results/grading.md --pods 40
    python -m tools.grade_bench --learners 30 --compare /tmp/kit-OLD   # and another commit, in turns

Half the learners hand in the six core solution notebooks, half the untouched learner notebooks.
The class is generated once, from this kit, and each kit grades it with its own
``python -m unittests.grade`` (the same Python and options, one after the other, in alternating
order when ``--repeats`` > 1), so the times compare. Make the other checkout with
``git worktree add /tmp/kit-OLD OLD`` or ``mkdir /tmp/kit-OLD && git archive OLD | tar -x -C /tmp/kit-OLD``.

The page (``--markdown``) is written from this kit's first run only (or a saved run, ``--from-json``):
what each notebook cost (a kernel slot's wall seconds, from the grader's ``run.json``), the run's
wall time, a projection to ``--class-learners`` on this machine, and the time and CPU-hours of
``--cluster-learners`` on ``--pods`` pods of ``--pod-cpus`` CPUs (:func:`cost_model`). Times from a
machine that other jobs share are not results: the page shows the load average before and after,
and ``--note`` says what else ran.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from helper_utils.cli import ArgumentParser, int_at_least
from helper_utils.paths import NOTEBOOKS, REPO, SOLUTIONS

__all__ = ["CORE", "make_class", "cost_model", "main"]

CORE = [p.stem for p in sorted(SOLUTIONS.glob("0[1-6]_*.ipynb"))]
COMMAND = "python -m tools.grade_bench"


def make_class(folder: Path, learners: int) -> Path:
    """``learners`` folders: even ones hold the solutions, odd ones the untouched learner notebooks."""
    for index in range(learners):
        source = SOLUTIONS if index % 2 == 0 else NOTEBOOKS
        learner = folder / f"learner-{index:03d}"
        learner.mkdir(parents=True)
        for name in CORE:
            shutil.copyfile(source / f"{name}.ipynb", learner / f"{name}.ipynb")
    return folder


def _commit(kit: Path) -> str:
    done = subprocess.run(["git", "-C", str(kit), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "?"


def _time_grading(kit: Path, submissions: Path, out: Path, extra: list[str]) -> dict:
    """Run ``kit``'s grader on ``submissions``; its wall time, the line it printed, its statuses and its run record."""
    env = {**os.environ, "PYTHONPATH": str(kit)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "unittests.grade", str(submissions), "--out", str(out / "grades.csv"),
                           "--notebooks", *CORE, *extra], cwd=kit, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{kit}: the grader failed:\n{done.stderr[-2000:]}")
    rows = (out / "grades.csv").read_text().splitlines()[1:]
    statuses: dict[str, int] = {}
    for row in rows:
        status = row.split(",")[7]
        statuses[status] = statuses.get(status, 0) + 1
    record_path = out / "run.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else None  # an older kit writes none
    return {"kit": str(kit), "commit": _commit(kit), "seconds": round(seconds, 1), "rows": len(rows),
            "statuses": statuses, "said": done.stdout.strip().splitlines(), "record": record}


def _machine() -> dict:
    from helper_utils.device import cpu_name

    cpu = cpu_name()
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": memory, "python": platform.python_version(),
            "torch": torch_version, "system": f"{platform.system()} {platform.release()}"}


def cost_model(run: dict, class_learners: int = 300, cluster_learners: int = 3000, pods: int = 20,
               pod_cpus: int = 2, pod_overhead_s: float = 120.0) -> dict:
    """What the measured run says about a bigger class on this machine, and about a class on a cluster.

    From the run: ``N`` learners, ``J`` kernels at a time (``--jobs``), the grader's wall time ``W``
    and each notebook's mean cost ``c`` (the wall seconds a kernel slot spent on it, kernel start
    included). A learner costs ``C = sum(c)`` slot-seconds for the six notebooks; the run's fixed
    part, ``F = W - N * C / J`` (start-up, the kernel starter's imports, writing), is what the
    kernels do not explain. Then ``T(M) = F + M * C / J`` for ``M`` learners on this machine.

    On a cluster of ``pods`` pods of ``pod_cpus`` CPUs, each grading a shard with ``--jobs pod_cpus``
    (the Kubernetes Job's shape): a pod grades ``ceil(M / pods)`` learners, in
    ``pod_overhead_s + F + ceil(M / pods) * C / pod_cpus`` (the overhead, for scheduling and the
    image's pull, is an assumption, not measured); the class takes as long as one pod (they run at
    once, if the cluster has ``pods * pod_cpus`` CPUs free), and costs ``pods * pod_cpus`` times that
    in CPU-hours. A kernel slot's cost assumes a pod's CPU is as fast as this machine's.
    """
    record = run["record"]
    n = record["learners"]
    jobs = record["settings"]["jobs"]
    per_notebook = {nb: t["mean_s"] for nb, t in record["notebook_seconds"].items()}
    per_learner = sum(per_notebook.values())
    wall = run["seconds"]
    fixed = max(0.0, wall - n * per_learner / jobs)

    def on_this_machine(learners: int) -> float:
        return fixed + learners * per_learner / jobs

    def on_cluster(learners: int, pod_count: int) -> dict:
        shard = math.ceil(learners / pod_count)
        pod_s = pod_overhead_s + fixed + shard * per_learner / pod_cpus
        return {"pods": pod_count, "learners_per_pod": shard, "wall_s": round(pod_s),
                "cpu_hours": round(pod_count * pod_cpus * pod_s / 3600, 1)}

    sizes = sorted({10, 20, 50, pods})
    return {"learners": n, "jobs": jobs, "wall_s": wall, "per_notebook_s": per_notebook,
            "per_learner_slot_s": round(per_learner, 2), "fixed_s": round(fixed, 1),
            "class": {"learners": class_learners, "wall_s": round(on_this_machine(class_learners))},
            "cluster_on_this_machine": {"learners": cluster_learners, "wall_s": round(on_this_machine(cluster_learners))},
            "cluster": {"learners": cluster_learners, "pod_cpus": pod_cpus, "pod_overhead_s": pod_overhead_s,
                        "chosen": on_cluster(cluster_learners, pods),
                        "sizes": [on_cluster(cluster_learners, p) for p in sizes]}}


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _to_markdown(saved: dict, model: dict) -> str:
    """The results page of a saved run (``--json``'s content) and its cost model."""
    run = saved["runs"][0]
    record = run["record"]
    machine = saved["machine"]
    seconds = record["notebook_seconds"]
    cluster = model["cluster"]
    chosen = cluster["chosen"]
    lines = [
        "# Grading a class: measured cost and what it projects to",
        "",
        f"Written by `{saved['command']}` from its run of {saved['when']} (kit {run['commit']}); the numbers below "
        "are that run's, and the projections are computed from them (`tools/grade_bench.py`, `cost_model`). "
        "[Back to the results](README.md) · [Instructors' guide](../INSTRUCTORS.md#4-grade-a-class).",
        "",
        f"**Machine**: {machine['cpu']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB, {machine['system']}, "
        f"Python {machine['python']}, torch {machine['torch']}. Load average before the run "
        f"{saved['load_before']}, after {saved['load_after']}." + (f" {saved['note']}" if saved.get("note") else ""),
        "",
        f"## The run: {model['learners']} learners x {len(seconds)} notebooks, {model['jobs']} kernels at a time",
        "",
        f"Half the learners hand in the solution notebooks (every exercise passes), half the untouched learner "
        f"notebooks (every exercise fails). The grader took **{_duration(model['wall_s'])}**"
        + (f" ({model['wall_s']:.0f} s)" if model["wall_s"] >= 90 else "")
        + f" for the class; statuses: {run['statuses']}.",
        "",
        "| notebook | graded | mean s | solutions' mean s | untouched mean s | max s |",
        "|---|---|---|---|---|---|",
    ]
    for notebook, t in sorted(seconds.items()):
        lines.append(f"| {notebook} | {t['graded']} | {t['mean_s']:.1f} | {_maybe(t['ok_mean_s'])} | "
                     f"{_maybe(t['not_ok_mean_s'])} | {t['max_s']:.1f} |")
    lines += [
        f"| **one learner, all {len(seconds)}** | | **{model['per_learner_slot_s']:.1f}** | | | |",
        "",
        "A notebook's cost is the wall time a kernel slot spent on it, the kernel's start included, with "
        f"{model['jobs']} kernels sharing the machine's {machine['cpus']} CPUs.",
        "",
        "## Projections",
        "",
        "With `C` the cost of one learner's notebooks (above), `J` kernels at a time and `F` the run's fixed "
        "part (start-up, the kernel starter's imports, writing the gradebook: the measured wall time less "
        f"`N * C / J`, here {model['fixed_s']:.0f} s), `M` learners take `F + M * C / J`.",
        "",
        "| class | where | time |",
        "|---|---|---|",
        f"| {model['class']['learners']} learners | this machine, --jobs {model['jobs']} | "
        f"**{_duration(model['class']['wall_s'])}** |",
        f"| {model['cluster_on_this_machine']['learners']:,} learners | this machine, --jobs {model['jobs']} | "
        f"{_duration(model['cluster_on_this_machine']['wall_s'])} |",
        f"| {cluster['learners']:,} learners | {chosen['pods']} pods x {cluster['pod_cpus']} CPUs (Kubernetes) | "
        f"**{_duration(chosen['wall_s'])}**, {chosen['cpu_hours']} CPU-hours |",
        "",
        f"**On Kubernetes** (`docs/grading/grade-job.yaml`: each pod grades one shard with `--jobs "
        f"{cluster['pod_cpus']}` on {cluster['pod_cpus']} CPUs), a pod grades `ceil(M / pods)` learners in "
        f"`overhead + F + ceil(M / pods) * C / {cluster['pod_cpus']}`; the class takes as long as one pod when "
        f"the cluster has `pods x {cluster['pod_cpus']}` CPUs free, and costs `pods x {cluster['pod_cpus']}` times "
        f"that in CPU-hours. The overhead ({cluster['pod_overhead_s']:.0f} s for scheduling and pulling the "
        "image) is an assumption, not measured; the merge Job reads CSV files and is not counted. A pod's CPU "
        "is taken to be as fast as this machine's.",
        "",
        f"| pods x {cluster['pod_cpus']} CPUs | learners per pod | time | CPU-hours |",
        "|---|---|---|---|",
    ]
    for size in cluster["sizes"]:
        lines.append(f"| {size['pods']} | {size['learners_per_pod']} | {_duration(size['wall_s'])} | "
                     f"{size['cpu_hours']} |")
    lines += ["", "Set `SHARDS`, `completions` and `parallelism` to the pod count, and `activeDeadlineSeconds` "
              "above the time per pod (docs/INSTRUCTORS.md, *On a cluster*).", ""]
    return "\n".join(lines)


def _maybe(value) -> str:
    return "" if value is None else f"{value:.1f}"


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int_at_least(1), default=30, help="class size (default 30)")
    parser.add_argument("--compare", type=Path, help="another checkout of the kit, graded in turn with this one")
    parser.add_argument("--repeats", type=int_at_least(1), default=1, help="runs per kit (default 1)")
    parser.add_argument("--json", type=Path, help="write the runs, the machine and the model here as JSON")
    parser.add_argument("--from-json", type=Path, help="write the page of a saved run (--json) without grading again")
    parser.add_argument("--markdown", type=Path, help="write the results page here (e.g. docs/results/grading.md)")
    parser.add_argument("--note", default="", help="one sentence for the page: what else ran on the machine")
    parser.add_argument("--class-learners", type=int_at_least(1), default=300,
                        help="project to this many learners on this machine (default 300)")
    parser.add_argument("--cluster-learners", type=int_at_least(1), default=3000,
                        help="learners of the cluster projection (default 3000)")
    parser.add_argument("--pods", type=int_at_least(1), default=20, help="pods of the cluster projection (default 20)")
    parser.add_argument("--pod-cpus", type=int_at_least(1), default=2, help="CPUs (and --jobs) per pod (default 2)")
    parser.add_argument("--pod-overhead", type=float, default=120.0,
                        help="seconds a pod spends being scheduled and pulling the image (default 120, assumed)")
    parser.add_argument("grade_args", nargs="*", help="passed on to python -m unittests.grade (after --)")
    args = parser.parse_args(argv)
    kits = [REPO] + ([args.compare.resolve()] if args.compare else [])
    for kit in kits[1:]:
        if not (kit / "unittests").is_dir():
            print(f"error: {kit} is not a checkout of the kit (no unittests/ in it)", file=sys.stderr)
            return 1
    model_args = dict(class_learners=args.class_learners, cluster_learners=args.cluster_learners, pods=args.pods,
                      pod_cpus=args.pod_cpus, pod_overhead_s=args.pod_overhead)
    if args.from_json:
        try:
            saved = json.loads(args.from_json.read_text())
            saved["runs"][0]["record"]["notebook_seconds"]
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            print(f"error: {args.from_json}: not a saved run of {COMMAND} --json ({type(e).__name__}: {e})",
                  file=sys.stderr)
            return 1
    else:
        runs = []
        load_before = _load()
        with tempfile.TemporaryDirectory(prefix="grade-bench-") as tmp:
            submissions = make_class(Path(tmp) / "submissions", args.learners)
            print(f"{args.learners} learners x {len(CORE)} notebooks; {os.cpu_count()} CPUs; load {load_before}",
                  flush=True)
            for repeat in range(args.repeats):
                order = kits if repeat % 2 == 0 else kits[::-1]
                for kit in order:
                    out = Path(tmp) / f"out-{len(runs)}"
                    extra = [*args.grade_args] + (["--no-progress"] if (kit / "unittests" / "grading" /
                                                                          "collect.py").exists() else [])
                    run = _time_grading(kit, submissions, out, extra)
                    runs.append(run)
                    print(f"{run['commit']:>10}  {run['seconds']:7.1f} s  {run['statuses']}  ({kit})", flush=True)
        mine = [r for r in runs if r["kit"] == str(REPO)]
        saved = {"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
                 "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": _machine(),
                 "load_before": load_before, "load_after": _load(), "note": args.note,
                 "runs": mine + [r for r in runs if r not in mine]}
    model = cost_model(saved["runs"][0], **model_args)
    saved["model"] = model
    if args.json and not args.from_json:
        args.json.write_text(json.dumps(saved, indent=2) + "\n")
    c = model["cluster"]["chosen"]
    print(f"one learner: {model['per_learner_slot_s']:.1f} slot-s; {model['class']['learners']} learners here: "
          f"{_duration(model['class']['wall_s'])}; {model['cluster']['learners']} on {c['pods']} pods x "
          f"{model['cluster']['pod_cpus']} CPUs: {_duration(c['wall_s'])}, {c['cpu_hours']} CPU-hours")
    if args.markdown:
        args.markdown.write_text(_to_markdown(saved, model))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
