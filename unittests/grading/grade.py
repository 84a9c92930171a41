"""Grade a class: ``python -m unittests.grade SUBMISSIONS --out grades.csv`` (or ``make grade SUBMISSIONS=...``).

``SUBMISSIONS`` holds one folder per learner with any of the learner notebooks, named as in
``notebooks/`` (``02_inverted_residual_block.ipynb``...). For each learner and graded notebook,
in a fresh kernel whose working directory is a scratch copy of the learner's folder:

1. a preamble wraps every ``unittests.test_*`` so that each report is appended as JSON to a
   file outside the scratch folder (:mod:`unittests.grading.recorder`), and caps memory and output;
2. the learner's set-up cells (tags ``export``, ``setup``) and exercise cells (``exercise``) run;
   no training cell runs;
3. the kit's own grader cells run (a learner's edited or deleted grader cell changes nothing).

Each exercise's points (:mod:`unittests.grading.points`) are awarded when its grader's cases all pass.
Nothing a submission does stops the run: an unreadable notebook, a renamed exercise, an endless
loop (per-cell and per-notebook time limits), a dead kernel, memory exhaustion, a flood of
output, deleted files (it only sees a scratch copy) all end as a status in the gradebook.

Sharding: ``--shard i/n`` grades the learners whose index in sorted order is ``i-1`` modulo
``n``; ``--merge part1.csv part2.csv ... --out grades.csv`` joins the partial gradebooks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from helper_utils.paths import REPO
from unittests.grading.cells import learner_cells
from unittests.grading.gradebook import ExerciseResult, merge, write_csv, write_feedback
from unittests.grading.forkkernel import ZYGOTE_ENV
from unittests.grading.points import Exercise, notebook_exercises

__all__ = ["Settings", "grade_class", "grade_submissions", "learners", "shard_of", "main"]

KIT = REPO  # the kit's root: its helper_utils/ and unittests/ go first on the path


@dataclass(frozen=True)
class Settings:
    """Limits and parallelism of a grading run (the CLI's options)."""

    notebook_timeout_s: float = 180.0  # per notebook, kernel start included
    cell_timeout_s: float = 60.0  # per cell; the graders' own limit is 30 s
    memory_mb: int = 2048  # address space a submission's code may add to its kernel
    output_chars: int = 100_000  # of stdout and of stderr, per notebook; the rest is dropped in the kernel
    jobs: int = 2  # kernels at a time
    fork: bool = True  # fork kernels from a zygote that imported the kit (Linux); else plain ipykernel


# ---------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------

class _Zygote:
    """The process that forks kernels (:mod:`unittests.grading.forkkernel`), and the kernel spec that reaches it."""

    def __init__(self, workdir: Path) -> None:
        self.socket = str(workdir / "zygote.sock")
        spec = workdir / "kernels" / "fashion-grade"
        spec.mkdir(parents=True)
        argv = [sys.executable, "-I", str(Path(__file__).with_name("forkkernel.py")), "proxy",
                "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps(
            {"argv": argv, "display_name": "grading", "language": "python", "interrupt_mode": "signal"}))
        self.kernel_dirs = [str(spec.parent)]
        env = {**os.environ, "PYTHONPATH": _pythonpath(), "MPLBACKEND": "agg", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "unittests.grading.forkkernel", "serve", self.socket],
                                        cwd=KIT, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                        text=True)
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.close()
            raise RuntimeError(f"the kernel zygote did not start (it said {line!r}); try --no-fork")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def _pythonpath() -> str:
    rest = os.environ.get("PYTHONPATH", "")
    return str(KIT) + (os.pathsep + rest if rest else "")


def _kernel_manager(zygote: _Zygote | None):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    if zygote is None:
        return AsyncKernelManager(kernel_name="python3")
    return AsyncKernelManager(kernel_name="fashion-grade",
                              kernel_spec_manager=KernelSpecManager(kernel_dirs=zygote.kernel_dirs))


def _client_class():
    from nbclient import NotebookClient

    class QuietClient(NotebookClient):
        """Keeps no cell output: the results come from the record file, errors from the execute reply."""

        def output(self, outs, msg, display_id, cell_index):
            return None

    return QuietClient


def _preamble(record: Path, settings: Settings) -> str:
    # The kit's packages are imported with the working directory off the path, so that a
    # submission folder holding its own `unittests` cannot stand in for the kit's.
    return (
        "import os as _os, sys as _sys\n"
        "_path = list(_sys.path)\n"
        "_sys.path[:] = [p for p in _sys.path if p not in ('', '.', _os.getcwd())]\n"
        "import unittests, unittests.grading.recorder, helper_utils\n"
        "_sys.path[:] = _path\n"
        f"unittests.grading.recorder.install({str(record)!r}, memory_mb={settings.memory_mb}, "
        f"output_chars={settings.output_chars})\n"
        "del _os, _sys, _path\n"
    )


async def _interrupt(client, deadline: float) -> bool:
    """Interrupt a cell that ran past its limit; True once the kernel answers again.

    The kernel drops requests that arrive while the interrupted cell still runs, so the next cell
    is sent only after a ``pass`` has run.
    """
    await client.km.interrupt_kernel()
    for _ in range(3):
        client.timeout = int(min(10, deadline - time.monotonic()))
        if client.timeout < 1:
            return False
        try:
            msg_id = client.kc.execute("pass", store_history=False, stop_on_error=False)
            reply = await client.async_wait_for_reply(msg_id)
        except Exception:  # no answer: the code swallows KeyboardInterrupt, or the kernel is gone
            return False
        if reply and reply["content"].get("status") == "ok":
            return True
    return False


async def _stop(client) -> None:
    """Kill the kernel if it is still there (a failed start skips nbclient's own clean-up)."""
    import atexit

    atexit.unregister(client._cleanup_kernel)
    km = client.km
    with contextlib.suppress(Exception):
        if km is not None and km.has_kernel:
            await km.shutdown_kernel(now=True)


def _kernel_env(scratch: Path, zygote: _Zygote | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "UNITTESTS_STRICT"}  # a failing grader must not raise
    env.update({"PYTHONPATH": _pythonpath(), "HOME": str(scratch), "MPLBACKEND": "agg", "OMP_NUM_THREADS": "1",
                "FASHION_KIT_CHECKPOINTS": str(scratch / ".checkpoints"), "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if zygote is not None:
        env[ZYGOTE_ENV] = zygote.socket
    return env


# ---------------------------------------------------------------------------------------
# One notebook
# ---------------------------------------------------------------------------------------

def _results(learner: str, notebook: str, exercises, status: str, note: str) -> list[ExerciseResult]:
    return [ExerciseResult(learner, notebook, e.name, e.points, status, note=note) for e in exercises]


def _error_line(error: Exception) -> str:
    ename = getattr(error, "ename", type(error).__name__)
    evalue = getattr(error, "evalue", str(error))
    return " ".join(f"{ename}: {evalue}".split())[:300]


async def grade_notebook(learner: str, folder: Path, notebook: str, workdir: Path, settings: Settings,
                         zygote: _Zygote | None) -> list[ExerciseResult]:
    """Grade ``folder/<notebook>.ipynb`` in a fresh kernel; one result per exercise of the points table."""
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    exercises = notebook_exercises(notebook)
    path = folder / f"{notebook}.ipynb"
    if not path.is_file():
        return _results(learner, notebook, exercises, "missing", f"no {path.name} in the submission")
    try:
        nb = nbformat.read(path, as_version=4)
        cells = learner_cells(nb, notebook, exercises)
    except Exception as e:  # invalid JSON, not a notebook, a cell without source...
        return _results(learner, notebook, exercises, "error", f"{path.name} could not be read: {_error_line(e)}")

    scratch = workdir / "scratch" / learner / notebook
    try:
        shutil.copytree(folder, scratch, symlinks=True)
    except (OSError, shutil.Error) as e:  # an unreadable file, a socket...
        return _results(learner, notebook, exercises, "error", f"the folder could not be copied: {_error_line(e)}")
    record = workdir / "records" / f"{learner}.{notebook}.jsonl"
    record.parent.mkdir(parents=True, exist_ok=True)

    program = [("preamble", _preamble(record, settings), ())] + cells
    # The grader calls come from the points table (the kit's grader cells, tests/test_grade.py checks),
    # never from the submission.
    program += [("grader", e.call, (e.grader,)) for e in exercises]
    run_nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for _, src, _ in program])
    client = _client_class()(run_nb, km=_kernel_manager(zygote), timeout=settings.cell_timeout_s,
                             allow_errors=False, interrupt_on_timeout=False, record_timing=False,
                             shutdown_kernel="immediate", resources={"metadata": {"path": str(scratch)}})

    trouble: dict[str, tuple[str, str]] = {}  # exercise or grader -> (status, note) when its cell did not finish
    deadline = time.monotonic() + settings.notebook_timeout_s
    stopped = ""  # why the remaining cells did not run
    try:
        async with client.async_setup_kernel(env=_kernel_env(scratch, zygote), cleanup_kc=True):
            for index, (kind, source, owners) in enumerate(program):
                left = deadline - time.monotonic()
                if left <= 1:
                    stopped = stopped or "timeout"
                    break
                client.timeout = int(min(settings.cell_timeout_s, left))
                try:
                    await client.async_execute_cell(run_nb.cells[index], index)
                except CellTimeoutError:
                    for owner in owners:
                        trouble[owner] = ("timeout", f"a {kind} cell ran past {client.timeout} s")
                    if kind in ("preamble", "setup"):
                        stopped = "timeout"
                        break
                    if not await _interrupt(client, deadline):
                        stopped = "timeout"
                        break
                except CellExecutionError as e:
                    for owner in owners:
                        trouble.setdefault(owner, ("error", f"the {kind} cell raised {_error_line(e)}"))
                    if kind == "preamble":
                        stopped = f"error: the grader's set-up failed: {_error_line(e)}"
                        break
                    if kind == "setup":
                        trouble.setdefault("*setup", ("error", f"a set-up cell raised {_error_line(e)}"))
    except DeadKernelError:
        stopped = "error: the kernel died (os._exit, a crash, or memory exhaustion)"
    except Exception as e:  # a kernel that would not start or answer
        stopped = f"error: {_error_line(e)}"
    finally:
        await _stop(client)
        shutil.rmtree(scratch, ignore_errors=True)

    records = {}
    if record.exists():
        for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = json.loads(line)
                records[entry["grader"]] = entry["cases"]  # a grader called twice: its last report counts
    return [_exercise_result(learner, notebook, e, records, trouble, stopped) for e in exercises]


def _exercise_result(learner, notebook, exercise: Exercise, records, trouble, stopped) -> ExerciseResult:
    result = ExerciseResult(learner, notebook, exercise.name, exercise.points, "error")
    cases = records.get(exercise.grader)
    own = trouble.get(exercise.name)
    grader = trouble.get(exercise.grader)
    if cases is not None:
        result.cases = cases
        result.status = "ok" if cases and all(c["passed"] for c in cases) else "failed"
        result.note = own[1] if own else ""  # e.g. the exercise cell raised after defining the answer
        return result
    if own and own[0] == "timeout" or grader and grader[0] == "timeout":
        result.status, result.note = "timeout", (own or grader)[1]
    elif stopped:
        result.status = "timeout" if stopped == "timeout" else "error"
        result.note = "the notebook ran past its time limit" if stopped == "timeout" else stopped[len("error: "):]
    elif own:
        result.status, result.note = own
    elif grader and "NameError" in grader[1]:
        result.status = "missing"
        result.note = f"the grader could not find the exercise ({grader[1]}); was it renamed or deleted?"
    elif "*setup" in trouble:
        result.status, result.note = trouble["*setup"]
    elif grader:
        result.status, result.note = grader
    else:
        result.note = "the grader did not report"
    return result


# ---------------------------------------------------------------------------------------
# A class
# ---------------------------------------------------------------------------------------

def learners(submissions: Path) -> list[str]:
    """The learner folders in ``submissions``, sorted (the order sharding uses)."""
    return sorted(p.name for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))


def shard_of(names: list[str], shard: tuple[int, int]) -> list[str]:
    """The learners of shard ``i`` of ``n`` (1-based): those whose sorted index % n == i - 1."""
    i, n = shard
    if not 1 <= i <= n:
        raise ValueError(f"shard {i}/{n}: i must be between 1 and n")
    return [name for index, name in enumerate(names) if index % n == i - 1]


async def grade_class(submissions: Path, notebooks: list[str], names: list[str],
                      settings: Settings) -> list[ExerciseResult]:
    """Grade ``notebooks`` of the learners ``names``, ``settings.jobs`` kernels at a time."""
    with tempfile.TemporaryDirectory(prefix="fashion-grade-") as tmp:
        workdir = Path(tmp)
        zygote = _Zygote(workdir) if settings.fork and sys.platform.startswith("linux") else None
        gate = asyncio.Semaphore(settings.jobs)

        async def one(learner: str, notebook: str) -> list[ExerciseResult]:
            async with gate:
                try:
                    return await grade_notebook(learner, submissions / learner, notebook, workdir, settings, zygote)
                except Exception as e:  # a bug of the grader's own must not lose the rest of the class
                    return _results(learner, notebook, notebook_exercises(notebook), "error",
                                    f"the grader failed: {_error_line(e)}")

        try:
            jobs = [one(learner, notebook) for learner in names for notebook in notebooks]
            graded = await asyncio.gather(*jobs)
        finally:
            if zygote is not None:
                zygote.close()
    return [r for results in graded for r in results]


def grade_submissions(submissions: Path, out: Path, notebooks: list[str] | None = None,
                      shard: tuple[int, int] = (1, 1), settings: Settings = Settings()) -> list[ExerciseResult]:
    """Grade a class and write ``out`` (CSV) and ``feedback/<learner>.md`` beside it."""
    from unittests.grading.points import EXERCISES

    if not submissions.is_dir():
        raise ValueError(f"SUBMISSIONS {submissions} is not a folder (expected one folder per learner)")
    known = list(dict.fromkeys(e.notebook for e in EXERCISES))
    notebooks = notebooks or known
    unknown = [n for n in notebooks if n not in known]
    if unknown:
        raise ValueError(f"notebooks {unknown} are not graded; choose from {known}")
    names = shard_of(learners(submissions), shard)
    results = asyncio.run(grade_class(submissions, notebooks, names, settings))
    write_csv([r.row() for r in results], out)
    write_feedback(results, out.parent / "feedback")
    return results


def _shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected i/n, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unittests.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", nargs="?", type=Path, help="one folder per learner")
    parser.add_argument("--out", type=Path, default=Path("grades.csv"), help="the gradebook (default grades.csv)")
    parser.add_argument("--notebooks", nargs="+", help="notebook names to grade (default: every graded notebook)")
    parser.add_argument("--shard", type=_shard, default=(1, 1), help="i/n: grade the i-th of n shards of learners")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="PART_CSV", help="merge partial gradebooks")
    parser.add_argument("--jobs", type=int, default=Settings.jobs, help="kernels at a time (default 2)")
    parser.add_argument("--timeout", type=float, default=Settings.notebook_timeout_s, help="seconds per notebook")
    parser.add_argument("--cell-timeout", type=float, default=Settings.cell_timeout_s, help="seconds per cell")
    parser.add_argument("--memory-mb", type=int, default=Settings.memory_mb, help="memory a submission may add")
    parser.add_argument("--no-fork", action="store_true", help="start every kernel from scratch (slower)")
    args = parser.parse_args(argv)
    try:
        if args.merge:
            rows = merge(args.merge, args.out)
            print(f"merged {len(args.merge)} gradebooks: {len(rows)} rows -> {args.out}")
            return 0
        if args.submissions is None:
            parser.error("give SUBMISSIONS, or --merge PART_CSV...")
        settings = Settings(notebook_timeout_s=args.timeout, cell_timeout_s=args.cell_timeout,
                            memory_mb=args.memory_mb, jobs=args.jobs, fork=not args.no_fork)
        start = time.perf_counter()
        results = grade_submissions(args.submissions, args.out, args.notebooks, args.shard, settings)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    n_learners = len({r.learner for r in results})
    print(f"graded {n_learners} learners in {time.perf_counter() - start:.0f} s -> {args.out} "
          f"and {args.out.parent / 'feedback'}/; statuses: {dict(sorted(counts.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
