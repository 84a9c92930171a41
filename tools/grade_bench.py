"""Time the class grader on a generated class, for this kit and, side by side, another checkout of it.

    python -m tools.grade_bench --learners 30                          # this kit
    python -m tools.grade_bench --learners 30 --compare /tmp/kit-OLD   # and another commit, in turns

Half the learners hand in the six core solution notebooks, half the untouched learner notebooks.
The class is generated once, from this kit, and each kit grades it with its own
``python -m unittests.grade`` (the same Python and options, one after the other, in alternating
order when ``--repeats`` > 1), so the times compare. Make the other checkout with
``git worktree add /tmp/kit-OLD OLD`` or ``mkdir /tmp/kit-OLD && git archive OLD | tar -x -C /tmp/kit-OLD``.
Times from a machine that other jobs share are not results: say what else ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helper_utils.cli import ArgumentParser, int_at_least
from helper_utils.paths import NOTEBOOKS, REPO, SOLUTIONS

CORE = [p.stem for p in sorted(SOLUTIONS.glob("0[1-6]_*.ipynb"))]


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
    """Run ``kit``'s grader on ``submissions``; its wall time, the line it printed, and its statuses."""
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
    return {"kit": str(kit), "commit": _commit(kit), "seconds": round(seconds, 1), "rows": len(rows),
            "statuses": statuses, "said": done.stdout.strip().splitlines()}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tools.grade_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int_at_least(1), default=30, help="class size (default 30)")
    parser.add_argument("--compare", type=Path, help="another checkout of the kit, graded in turn with this one")
    parser.add_argument("--repeats", type=int_at_least(1), default=1, help="runs per kit (default 1)")
    parser.add_argument("--json", type=Path, help="write the runs here as JSON")
    parser.add_argument("grade_args", nargs="*", help="passed on to python -m unittests.grade (after --)")
    args = parser.parse_args(argv)
    kits = [REPO] + ([args.compare.resolve()] if args.compare else [])
    for kit in kits[1:]:
        if not (kit / "unittests").is_dir():
            print(f"error: {kit} is not a checkout of the kit (no unittests/ in it)", file=sys.stderr)
            return 1
    runs = []
    with tempfile.TemporaryDirectory(prefix="grade-bench-") as tmp:
        submissions = make_class(Path(tmp) / "submissions", args.learners)
        print(f"{args.learners} learners x {len(CORE)} notebooks; {os.cpu_count()} CPUs; load "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        for repeat in range(args.repeats):
            order = kits if repeat % 2 == 0 else kits[::-1]
            for kit in order:
                out = Path(tmp) / f"out-{len(runs)}"
                run = _time_grading(kit, submissions, out, args.grade_args)
                runs.append(run)
                print(f"{run['commit']:>10}  {run['seconds']:7.1f} s  {run['statuses']}  ({kit})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
