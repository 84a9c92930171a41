"""Grade a class: ``python -m unittests.grade SUBMISSIONS`` (or ``make grade SUBMISSIONS=...``).

``SUBMISSIONS`` holds one folder or ``.zip`` per learner with any of the learner notebooks,
under the names learners' tools give them (:mod:`unittests.grading.collect`: copies' names, one
nested folder, zips); a ``--roster`` gives everyone on it rows. The gradebook goes to
``grading-output/`` beside ``SUBMISSIONS`` (``--out`` for another place): ``grades.csv``,
``totals.csv``, ``run.json`` and ``feedback/``, written as each learner finishes, so that a
stopped run keeps them (``--resume`` goes on; ``--learner NAME`` regrades one learner). For each
learner and graded notebook, in a fresh kernel whose working directory is a scratch copy of the
folder that holds the learner's notebook:

1. the recorder is armed (:mod:`unittests.grading.recorder`): every grader's report will be
   signed, the kit's own answers to this notebook are behind tripwires, memory and output capped;
2. the learner's set-up and exercise cells run (:mod:`unittests.grading.cells`); no training cell runs;
3. the kit's own grader cells run (a learner's edited or deleted grader cell changes nothing),
   then the recorder's last check of the kit.

What reaches the gradebook is decided here, from the signed messages of the kernel's channel
(:mod:`unittests.grading.channel`), never from a file or output the learner's code can write.
An exercise earns its points (:mod:`unittests.grading.points`) when every case of its grader
passes; its answer being the kit's own, or the notebook changing the grader, is ``rejected``.

On Linux each kernel runs in a sandbox (:mod:`unittests.grading.sandbox`, started by a warden:
:mod:`unittests.grading.warden`): no network, a read-only kit, its own scratch copy, its own
processes only, memory and disk capped, and every process it started killed when its notebook
is done. The grader says at the start what isolation this machine gives. Nothing a submission
does stops the run: an unreadable notebook, a renamed exercise, an endless loop, a dead kernel,
memory exhaustion, a flood of output, a killed kernel starter (restarted; the notebooks it hit
are graded again) all end as a status in the gradebook.

Sharding: ``--shard i/n`` grades the learners whose index in sorted order is ``i-1`` modulo
``n``, and its ``run.json`` records ``i/n``; ``--merge part1.csv part2.csv ... --out grades.csv``
joins the partial gradebooks once they are every shard of the run, each finished.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from helper_utils.cli import EXIT_INTERRUPTED, ArgumentParser, one_line
from helper_utils.paths import REPO
from unittests.grading import forkkernel, kernels, sandbox
from unittests.grading.cells import learner_cells
from unittests.grading.channel import Reader
from unittests.grading.collect import Collection, handed_in_notebooks, read_roster, resolve, survey
from unittests.grading.gradebook import (JOURNAL, RECORD, TOTALS, ExerciseResult, Journal, merge, read_csv,
                                         read_record, write_csv, write_feedback, write_record, write_totals)
from unittests.grading.points import EXERCISES, Exercise, notebook_exercises
from unittests.grading.submission import Refused, display_name, stage

__all__ = ["Settings", "grade_submissions", "default_out", "shard_of", "main"]

NOTE_CHARS = 300  # of a learner's error message in the feedback
# A request to a kernel is queued at once while its connection stands; once the notebook has broken it (by
# writing into the kernel's own sockets, say) a send would wait for it forever, past every time limit.
SEND_TIMEOUT_S = 10.0
BROKEN_CONNECTION = ("error: the kernel's connection to the grader broke (did the notebook write into the "
                     "kernel's sockets?); the cells after it did not run")
MAX_NOTEBOOK_MB = 50  # a notebook file bigger than this is not read


@dataclass(frozen=True)
class Settings:
    """Limits and parallelism of a grading run (the CLI's options)."""

    notebook_timeout_s: float = 180.0  # per notebook, kernel start included
    cell_timeout_s: float = 60.0  # per cell; the graders' own limit is 30 s
    memory_mb: int = 2048  # the kernel may add this much; its child processes together as much again
    disk_mb: int = 512  # a submission folder, and what a kernel may write (scratch copy, /tmp, /dev/shm)
    output_chars: int = 100_000  # of stdout and of stderr, per notebook; the rest is dropped in the kernel
    jobs: int = 2  # kernels at a time
    fork: bool = True  # fork kernels from a zygote that imported the kit (Linux); else one launcher each
    sandbox: bool = True  # Linux namespaces where the machine allows them


@dataclass
class _Run:
    """What every notebook of one run shares."""

    submissions: Path
    workdir: Path
    settings: Settings
    starter: kernels.Starter
    sandboxed: bool
    context: object
    hidden: list[Path]
    tokens: dict = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)  # learner -> collect.Resolved, while the learner is graded

    def token(self, learner: str, notebook: str) -> str:
        """A short name for the scratch and socket folders (learner names can be anything)."""
        return self.tokens.setdefault((learner, notebook), f"j{len(self.tokens):05d}")


# ---------------------------------------------------------------------------------------
# Cells the grader sends
# ---------------------------------------------------------------------------------------

def _preamble(notebook: str, settings: Settings) -> str:
    return ("import unittests.grading.recorder as _recorder\n"
            f"_recorder.arm({notebook!r}, memory_mb={settings.memory_mb}, output_chars={settings.output_chars})\n"
            "del _recorder\n")


FINISH = "import unittests.grading.recorder as _recorder\n_recorder.finish()\n"


def _client_class():
    from nbclient import NotebookClient

    class QuietClient(NotebookClient):
        """Keeps no cell output: the results come from the channel, errors from the execute reply."""

        def output(self, outs, msg, display_id, cell_index):
            return None

    return QuietClient


async def _interrupt(client, deadline: float) -> bool:
    """Interrupt a cell that ran past its limit; True once the kernel answers again.

    The kernel drops requests that arrive while the interrupted cell still runs, so the next cell
    is sent only after a ``pass`` has run.
    """
    import zmq

    await client.km.interrupt_kernel()
    for _ in range(3):
        client.timeout = int(min(10, deadline - time.monotonic()))
        if client.timeout < 1:
            return False
        try:
            msg_id = client.kc.execute("pass", store_history=False, stop_on_error=False)
            reply = await client.async_wait_for_reply(msg_id)
        except zmq.Again:  # the request could not even be sent: _run_cells says the connection broke
            raise
        except Exception:  # no answer: the code swallows KeyboardInterrupt, or the kernel is gone
            return False
        if reply and reply["content"].get("status") == "ok":
            return True
    return False


def _bounded_sends(client) -> None:
    """Every socket the grader sends a kernel requests on gives up after ``SEND_TIMEOUT_S`` (``zmq.Again``)."""
    import zmq

    kc = client.kc
    sockets = [kc.shell_channel.socket, kc.control_channel.socket, kc.stdin_channel.socket,
               getattr(client.km, "_control_socket", None)]
    for sock in sockets:
        if sock is not None:
            sock.setsockopt(zmq.SNDTIMEO, int(SEND_TIMEOUT_S * 1000))


async def _stop(client) -> None:
    """Kill the kernel if it is still there (a failed start skips nbclient's own clean-up)."""
    import atexit

    atexit.unregister(client._cleanup_kernel)
    km = client.km
    with contextlib.suppress(Exception):
        if km is not None and km.has_kernel:
            await km.shutdown_kernel(now=True)


# ---------------------------------------------------------------------------------------
# One notebook
# ---------------------------------------------------------------------------------------

def _results(learner: str, notebook: str, exercises, status: str, note: str) -> list[ExerciseResult]:
    return [ExerciseResult(learner, notebook, e.name, e.points, status, note=note) for e in exercises]


def _error_line(error: Exception) -> str:
    ename = getattr(error, "ename", type(error).__name__)
    evalue = getattr(error, "evalue", str(error))
    return " ".join(f"{ename}: {evalue}".split())[:NOTE_CHARS]


def _read_notebook(path: Path):
    import nbformat

    if path.stat().st_size > MAX_NOTEBOOK_MB * 2**20:
        raise ValueError(f"{path.name} is larger than {MAX_NOTEBOOK_MB} MB")
    return nbformat.reads(path.read_text(encoding="utf-8", errors="replace"), as_version=4)


async def grade_notebook(run: _Run, learner: str, notebook: str) -> list[ExerciseResult]:
    """Grade one learner's ``<notebook>.ipynb`` in a fresh kernel; one result per exercise of the points table."""
    exercises = notebook_exercises(notebook)
    shown = display_name(learner)
    token = run.token(learner, notebook)
    scratch, runtime = run.workdir / "scratch" / token, run.workdir / "run" / token
    resolved = run.resolved.get(learner)
    try:
        if resolved is None:  # no collection: submissions/<learner>/<notebook>.ipynb
            path = stage(run.submissions / learner, notebook, scratch, run.settings.disk_mb)
        elif notebook in resolved.paths:
            found = resolved.paths[notebook]
            path = stage(found.parent, notebook, scratch, run.settings.disk_mb, found)
        elif notebook in resolved.refused:
            return _results(shown, notebook, exercises, "error", resolved.refused[notebook])
        else:
            raise FileNotFoundError(notebook)
        cells = learner_cells(_read_notebook(path), notebook, exercises)
    except FileNotFoundError:
        nothing = resolved is not None and not resolved.paths and not resolved.refused
        return _results(shown, notebook, exercises, "missing",
                        "handed in nothing" if nothing else f"no {notebook}.ipynb in the submission")
    except Refused as e:
        return _results(shown, notebook, exercises, "error", f"refused: {e}")
    except OSError as e:
        return _results(shown, notebook, exercises, "error", f"the folder could not be copied: {_error_line(e)}")
    except Exception as e:  # invalid JSON, not a notebook, a cell without source...
        return _results(shown, notebook, exercises, "error", f"{notebook}.ipynb could not be read: {_error_line(e)}")
    else:
        (runtime / "root").mkdir(parents=True)
        reader, trouble, stopped = await _run_cells(run, notebook, cells, exercises, scratch, runtime)
        return [_exercise_result(shown, notebook, e, reader, trouble, stopped) for e in exercises]
    finally:
        _remove(scratch, runtime)


def _remove(*folders: Path) -> None:
    import shutil

    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


async def _run_cells(run: _Run, notebook: str, cells, exercises, scratch: Path, runtime: Path):
    """Run the program of one notebook in a new kernel; returns its channel, the cells' trouble, why it stopped."""
    import nbformat
    import zmq
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    settings = run.settings
    program = [("preamble", _preamble(notebook, settings), ())] + cells
    # The grader calls come from the points table (the kit's grader cells, tests/grading/test_grade.py checks),
    # never from the submission.
    program += [("grader", e.call, (e.grader,)) for e in exercises] + [("finish", FINISH, ())]
    run_nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for _, src, _ in program])
    client = _client_class()(run_nb, km=kernels.kernel_manager(run.starter, runtime, run.context),
                             timeout=settings.cell_timeout_s, allow_errors=False, interrupt_on_timeout=False,
                             record_timing=False, shutdown_kernel="immediate",
                             resources={"metadata": {"path": str(scratch)}})
    job = kernels.job_for(run.starter, scratch, runtime, settings, run.sandboxed, run.hidden)
    env = {**kernels.kernel_env(scratch, run.sandboxed), forkkernel.JOB_ENV: json.dumps(job)}
    (scratch / ".tmp").mkdir(exist_ok=True)

    trouble: dict[str, tuple[str, str]] = {}  # exercise or grader -> (status, note) when its cell did not finish
    deadline = time.monotonic() + settings.notebook_timeout_s
    stopped = ""  # why the remaining cells did not run
    reader = None
    try:
        async with client.async_setup_kernel(env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             cleanup_kc=True):
            reader = Reader(os.dup(client.km.provisioner.process.stdout.fileno()))
            _bounded_sends(client)
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
                        trouble[owner] = ("timeout", f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} cell ran past "
                                                     f"{client.timeout} s")
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
    except zmq.Again:  # a send that ran past SEND_TIMEOUT_S
        stopped = BROKEN_CONNECTION
    except Exception as e:  # a kernel that would not start or answer
        stopped = f"error: {_error_line(e)}"
    finally:
        await _stop(client)
    if reader is not None and not await asyncio.to_thread(reader.join, 30):
        stopped = stopped or "error: the kernel's processes did not end"
    return reader, trouble, stopped


# ---------------------------------------------------------------------------------------
# Verdicts: from the signed channel only
# ---------------------------------------------------------------------------------------

def _rejection(reader: Reader | None, stopped: str) -> str:
    """Why every exercise of the notebook is rejected, or ``""``."""
    if reader is None:
        return ""
    if reader.forged or reader.flooded:
        return ("rejected: the grading channel received lines the grader did not write"
                + (" (and more than it reads)" if reader.flooded else "") + ": the notebook tried to forge a result")
    tampered = list(dict.fromkeys(m.get("what", "?") for m in reader.messages if m.get("kind") == "tamper"))
    if tampered:
        return f"rejected: the notebook changed the grader or reached for its key: {'; '.join(tampered)}"[:NOTE_CHARS]
    finished = any(m.get("kind") == "finish" for m in reader.messages)
    armed = any(m.get("kind") == "armed" for m in reader.messages)
    if armed and not stopped and not finished:
        return "rejected: the grader's last check did not report: the notebook interfered with the grader"
    return ""


def _exercise_result(learner: str, notebook: str, exercise: Exercise, reader: Reader | None, trouble: dict,
                     stopped: str) -> ExerciseResult:
    result = ExerciseResult(learner, notebook, exercise.name, exercise.points, "error")
    messages = reader.messages if reader is not None else []
    records = {m.get("grader"): m for m in messages if m.get("kind") == "record"}  # called twice: the last counts
    killed = next((m.get("killed") for m in messages if m.get("kind") == "ended" and m.get("killed")), "")
    start_error = next((m.get("what") for m in messages if m.get("kind") == "error"), "")
    rejected = _rejection(reader, stopped)
    record = records.get(exercise.grader)
    own, grader = trouble.get(exercise.name), trouble.get(exercise.grader)
    if rejected:
        result.status, result.note = "rejected", rejected
    elif record is not None and record.get("answer"):
        result.status = "rejected"
        result.note = (f"rejected: `{', '.join(exercise.defines)}` is the kit's own answer (imported from "
                       "helper_utils), not the learner's code")
    elif record is not None:
        result.cases = [c for c in record.get("cases", []) if isinstance(c, dict)]
        result.status = "ok" if result.cases and all(c.get("passed") is True for c in result.cases) else "failed"
        result.note = own[1] if own else ""  # e.g. the exercise cell raised after defining the answer
    elif killed:
        result.note = f"the kernel was stopped: {killed}"
    elif own and own[0] == "timeout" or grader and grader[0] == "timeout":
        broken = f"; then {BROKEN_CONNECTION[len('error: '):]}" if stopped == BROKEN_CONNECTION else ""
        result.status, result.note = "timeout", (own or grader)[1] + broken
    elif stopped:
        result.status = "timeout" if stopped == "timeout" else "error"
        result.note = ("the notebook ran past its time limit" if stopped == "timeout"
                       else start_error or stopped[len("error: "):])
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
        result.note = start_error or "the grader did not report"
    return result


# ---------------------------------------------------------------------------------------
# A class
# ---------------------------------------------------------------------------------------

def shard_of(names: list[str], shard: tuple[int, int]) -> list[str]:
    """The learners of shard ``i`` of ``n`` (1-based): those whose sorted index % n == i - 1."""
    i, n = shard
    if not 1 <= i <= n:
        raise ValueError(f"shard {i}/{n}: i must be between 1 and n")
    return [name for index, name in enumerate(names) if index % n == i - 1]


def _quiet_about_nbclient(loop, context: dict) -> None:
    """Drop what nbclient's own background tasks raise once their kernel is gone (a dead kernel is a status here)."""
    task = context.get("future")
    coroutine = getattr(task, "get_coro", lambda: None)()
    if getattr(coroutine, "__qualname__", "").startswith("NotebookClient."):
        return
    loop.default_exception_handler(context)


async def _grade_class(submissions: Path, notebooks: list[str], names: list[str], settings: Settings,
                      hidden: list[Path] = (), sandboxed: bool = False, *, collection: Collection | None = None,
                      partial: bool = False, on_learner=None, warn=None,
                      timings: list | None = None) -> list[ExerciseResult]:
    """Grade ``notebooks`` of the learners ``names``, ``settings.jobs`` kernels at a time.

    With a ``collection`` (:func:`unittests.grading.collect.survey`), each learner's files are
    found as learners hand them in (copies' names, a nested folder, zips); without one, in
    ``submissions/<learner>/<notebook>.ipynb``. ``on_learner(name, results)`` is called as each
    learner finishes; ``warn(line)`` gets each line about a file that is not graded; ``timings``
    gets ``(notebook, seconds, all_ok)`` for each notebook graded (a kernel slot's wall time).
    Every process the grading started is gone when this returns (the gradebook is written after).
    """
    asyncio.get_running_loop().set_exception_handler(_quiet_about_nbclient)
    linux = sys.platform.startswith("linux")
    me = os.getpid()
    before = frozenset(sandbox.descendants(me)) if linux else frozenset()
    if linux:
        sandbox.become_subreaper()  # an orphan of a killed kernel starter or warden comes back here
    known = list(dict.fromkeys(e.notebook for e in EXERCISES))
    with tempfile.TemporaryDirectory(prefix="fashion-grade-") as tmp:
        workdir = Path(tmp)
        starter = kernels.Starter(workdir, fork=settings.fork and linux)
        context = kernels.zmq_context()
        run = _Run(submissions, workdir, settings, starter, sandboxed, context, list(hidden))
        gate = asyncio.Semaphore(settings.jobs)
        learner_gate = asyncio.Semaphore(max(2, 2 * settings.jobs))  # learners whose files are out at a time

        async def attempts(learner: str, notebook: str) -> list[ExerciseResult]:
            for attempt in range(2):
                generation = starter.generation
                try:
                    results = await grade_notebook(run, learner, notebook)
                except Exception as e:  # a bug of the grader's own must not lose the rest of the class
                    results = _results(display_name(learner), notebook, notebook_exercises(notebook), "error",
                                       f"the grader failed: {_error_line(e)}")
                if starter.alive() or attempt:
                    return results
                await asyncio.to_thread(starter.restart, generation)  # it died under this notebook: once more
            return results

        async def one(learner: str, notebook: str) -> list[ExerciseResult]:
            async with gate:
                began = time.perf_counter()
                results = await attempts(learner, notebook)
                ran = not all(r.status == "missing" and not r.cases for r in results)  # no notebook: no kernel
                if timings is not None and ran:
                    timings.append((notebook, time.perf_counter() - began, all(r.status == "ok" for r in results)))
                return results

        async def learner_task(learner: str) -> list[ExerciseResult]:
            async with learner_gate:
                unzip = workdir / "unzip" / run.token(learner, "")
                try:
                    if collection is not None:
                        resolved = await asyncio.to_thread(resolve, collection.handins[learner], notebooks, known,
                                                           unzip, settings.disk_mb, submissions)
                        run.resolved[learner] = resolved
                        for line in resolved.warnings:
                            if warn is not None:
                                warn(line)
                    graded = await asyncio.gather(*[one(learner, notebook) for notebook in notebooks])
                finally:
                    run.resolved.pop(learner, None)
                    _remove(unzip)
                results = [r for part in graded for r in part]
                for r in results:
                    r.partial = partial
                if on_learner is not None:
                    on_learner(learner, results)
                return results

        try:
            graded = await asyncio.gather(*[learner_task(learner) for learner in names])
        finally:
            starter.close()
            context.destroy(linger=0)
            if linux:
                sandbox.kill_descendants(me, spare=before)
                sandbox.become_subreaper(False)
    return [r for results in graded for r in results]


def default_out(submissions: Path) -> Path:
    """``grading-output/grades.csv`` beside the submissions folder: outside the kit, or git-ignored in it."""
    return submissions.resolve().parent / "grading-output" / "grades.csv"


def _kit_version() -> dict:
    """The kit's version, and its git commit when it is a checkout (``None`` in an image built from an archive)."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("fashion-visual-search-kit")
    except importlib.metadata.PackageNotFoundError:
        version = None
    commit = dirty = None
    try:
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if done.returncode == 0:
            commit = done.stdout.strip()
            status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10)
            dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": version, "commit": commit, "modified": dirty}


def _notebook_seconds(timings: list) -> dict:
    """Per notebook: how many were graded, and a kernel slot's wall seconds (mean, max; for all-ok ones and the rest)."""
    table = {}
    for notebook in sorted({t[0] for t in timings}):
        mine = [(s, ok) for n, s, ok in timings if n == notebook]
        ok = [s for s, good in mine if good]
        rest = [s for s, good in mine if not good]
        table[notebook] = {"graded": len(mine), "mean_s": round(sum(s for s, _ in mine) / len(mine), 2),
                           "max_s": round(max(s for s, _ in mine), 2),
                           "ok": len(ok), "ok_mean_s": round(sum(ok) / len(ok), 2) if ok else None,
                           "not_ok_mean_s": round(sum(rest) / len(rest), 2) if rest else None}
    return table


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _stderr_line(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"warning: {line}", file=sys.stderr)


def grade_submissions(submissions: Path, out: Path | None = None, notebooks: list[str] | None = None,
                      shard: tuple[int, int] = (1, 1), settings: Settings = Settings(), *,
                      roster: Path | None = None, partial: bool = False, resume: bool = False,
                      learner: str | None = None, progress: bool = False,
                      command: list[str] | None = None) -> list[ExerciseResult]:
    """Grade a class into the gradebook ``out`` (CSV; default :func:`default_out`) and the files beside it.

    Writes, as each learner finishes: ``grades.csv``, ``totals.csv``, ``feedback/<learner>.md`` and
    ``journal/``; and ``run.json``, the run's record. Prints the isolation it had, and a warning
    line for every file it does not grade. Returns the results of the learners graded by this call.

    Args:
        roster: a CSV with a ``learner`` column: everyone on it gets rows (``missing`` when they
            handed in nothing).
        partial: points in proportion to the cases passed.
        resume: go on with the run recorded beside ``out``: finished learners are kept.
        learner: regrade this learner only, into the existing gradebook ``out``.
        progress: a progress bar on stderr.
    """
    from tqdm import tqdm

    known = list(dict.fromkeys(e.notebook for e in EXERCISES))
    if not submissions.is_dir():
        raise ValueError(f"SUBMISSIONS {submissions} is not a folder (expected one folder or .zip per learner)")
    unknown = [n for n in notebooks or [] if n not in known]
    if unknown:
        raise ValueError(f"notebooks {unknown} are not graded; choose from {known}")
    if learner is not None and shard != (1, 1):
        raise ValueError("--learner regrades one learner into a gradebook: give it without --shard")
    out = out or default_out(submissions)
    folder = out.parent
    record = read_record(folder) if (resume or learner is not None) else None
    if learner is not None and not out.exists():
        raise ValueError(f"--learner: there is no gradebook at {out} to regrade into (grade the class first, "
                         "or give its --out)")
    if resume and record is not None:
        if record.get("kind") != "grade" or record.get("shard") != f"{shard[0]}/{shard[1]}":
            raise ValueError(f"--resume: {folder / RECORD} is a run of shard {record.get('shard')}, "
                             f"not {shard[0]}/{shard[1]}")
        if notebooks and notebooks != record.get("notebooks"):
            raise ValueError(f"--resume: the run graded {record.get('notebooks')}, not {notebooks}")
    if record is not None:
        notebooks = notebooks or record.get("notebooks")
        partial = bool(record.get("partial", partial))
    roster_names = read_roster(roster) if roster is not None else None
    if roster_names is None and record is not None and record.get("roster"):
        roster_names = read_roster(Path(record["roster"]))
    collection = survey(submissions, known, roster_names)
    handed: dict[str, int] = {}
    for handin in collection.handins.values():
        for notebook in handed_in_notebooks(handin, known):
            handed[notebook] = handed.get(notebook, 0) + 1
    if not notebooks:
        notebooks = [n for n in known if n in handed]
        if not notebooks:
            raise ValueError(f"no learner in {submissions} handed in a graded notebook (names such as "
                             f"{known[0]}.ipynb); give --notebooks to grade anyway")
    warnings = list(collection.warnings)
    others = {n: c for n, c in handed.items() if n not in notebooks}
    if others:
        warnings.append("not graded (not in --notebooks): " + ", ".join(
            f"{n} ({c} learner{'s' if c > 1 else ''})" for n, c in sorted(others.items())))
    for line in warnings:
        _stderr_line(line)

    everyone = collection.names
    if learner is not None:
        matches = [n for n in everyone if n == learner or display_name(n) == learner]
        if not matches:
            raise ValueError(f"--learner {learner!r}: no such learner in {submissions}"
                             + (" or the roster" if roster_names is not None else ""))
        mine = matches[:1]
    else:
        mine = shard_of(everyone, shard)

    journal = Journal(folder / JOURNAL)
    if learner is not None:
        rows_by_learner: dict[str, list[dict]] = {}
        for row in read_csv(out):
            rows_by_learner.setdefault(row["learner"], []).append(row)
        rows_by_learner.pop(display_name(mine[0]), None)
    elif resume:
        rows_by_learner = {k: v for k, v in journal.rows().items() if k in {display_name(n) for n in mine}}
    else:
        journal.clear()
        rows_by_learner = {}
    todo = [n for n in mine if display_name(n) not in rows_by_learner]

    sandboxed, line = kernels.isolation(settings.sandbox, settings.fork)
    print(line, flush=True)
    started = _now()
    if learner is not None and record is not None:
        record = {**record, "regraded": [*record.get("regraded", []), {"learner": display_name(mine[0]),
                                                                          "started": started}]}
    else:
        record = {"kind": "grade", "kit": _kit_version(), "command": command, "submissions": str(submissions.resolve()),
                  "roster": str(roster.resolve()) if roster is not None else (record or {}).get("roster"),
                  "notebooks": notebooks, "shard": f"{shard[0]}/{shard[1]}", "partial": partial,
                  "settings": dataclasses.asdict(settings), "isolation": line, "learners": len(mine),
                  "started": (record or {}).get("started", started) if resume else started, "ended": None,
                  "complete": False, "warnings": warnings}
        if resume:
            record["resumed"] = [*(record.get("resumed") or []), started]
    record["graded"] = len(rows_by_learner)

    def save() -> None:
        rows = [row for rows in rows_by_learner.values() for row in rows]
        write_csv(rows, out)
        write_totals(rows, folder / TOTALS)
        record["graded"] = len(rows_by_learner)
        write_record(folder, record)

    save()
    interactive = sys.stderr.isatty()
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="learner", desc="graded", file=sys.stderr,
               disable=not progress, mininterval=0.5 if interactive else 30, dynamic_ncols=True)

    def on_learner(name: str, results: list[ExerciseResult]) -> None:
        shown = display_name(name)
        rows = [r.row() for r in results]
        if learner is None or journal.folder.is_dir():
            journal.add(shown, rows)
        write_feedback(results, folder / "feedback")
        rows_by_learner[shown] = rows
        save()
        bar.update(1)

    hidden = [submissions.resolve(), folder.resolve()]
    timings: list = []
    began = time.perf_counter()

    def timed() -> None:
        record["seconds"] = round(time.perf_counter() - began, 1)
        record["notebook_seconds"] = _notebook_seconds(timings)

    try:
        results = asyncio.run(_grade_class(submissions, notebooks, todo, settings, hidden, sandboxed,
                                          collection=collection, partial=partial, on_learner=on_learner,
                                          warn=_stderr_line, timings=timings))
    except KeyboardInterrupt:
        bar.close()
        timed()
        record.update(ended=_now(), stopped="interrupted")
        save()
        print(f"stopped: {len(rows_by_learner)} of {len(mine)} learners graded, kept in {folder}; "
              "go on with --resume", file=sys.stderr)
        raise
    bar.close()
    if learner is not None:
        record["regraded"][-1]["ended"] = _now()
    else:
        timed()
        record.update(ended=_now(), complete=True)
        record.pop("stopped", None)
    save()
    return results


def _shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected i/n, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m unittests.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", nargs="?", type=Path,
                        help="one folder (or .zip) per learner; copies' names, one nested folder and zips are read")
    parser.add_argument("--out", type=Path, help="the gradebook; totals.csv, run.json and feedback/ go beside it "
                        "(default: grading-output/grades.csv beside SUBMISSIONS)")
    parser.add_argument("--notebooks", nargs="+", help="notebook names to grade (default: those any learner handed in)")
    parser.add_argument("--roster", type=Path, help="a CSV with a 'learner' column: everyone on it gets rows")
    parser.add_argument("--partial", action="store_true", help="points in proportion to the checks passed")
    parser.add_argument("--resume", action="store_true", help="go on with a stopped run: finished learners are kept")
    parser.add_argument("--learner", help="regrade this learner only, into the existing gradebook --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--shard", type=_shard, default=(1, 1), help="i/n: grade the i-th of n shards of learners")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="PART_CSV",
                        help="merge the gradebooks of every shard of a run (refused when one is missing)")
    parser.add_argument("--jobs", type=int, default=Settings.jobs, help="kernels at a time (default 2)")
    parser.add_argument("--timeout", type=float, default=Settings.notebook_timeout_s, help="seconds per notebook")
    parser.add_argument("--cell-timeout", type=float, default=Settings.cell_timeout_s, help="seconds per cell")
    parser.add_argument("--memory-mb", type=int, default=Settings.memory_mb,
                        help="memory a kernel may add, and its child processes together (default 2048)")
    parser.add_argument("--disk-mb", type=int, default=Settings.disk_mb,
                        help="size of a submission folder or zip, and what a kernel may write (default 512)")
    parser.add_argument("--no-fork", action="store_true", help="start every kernel from scratch (slower)")
    parser.add_argument("--no-sandbox", action="store_true", help="no Linux namespaces (the run says what that means)")
    args = parser.parse_args(argv)
    try:
        if args.merge:
            if args.out is None:
                parser.error("--merge needs --out, the merged gradebook")
            rows = merge(args.merge, args.out)
            print(f"merged {len(args.merge)} gradebooks: {len(rows)} rows -> {args.out} "
                  f"(and {TOTALS}, {RECORD}, feedback/ beside it)")
            return 0
        if args.submissions is None:
            parser.error("give SUBMISSIONS, or --merge PART_CSV...")
        if args.resume and args.learner:
            parser.error("--resume and --learner: give one of them")
        settings = Settings(notebook_timeout_s=args.timeout, cell_timeout_s=args.cell_timeout,
                            memory_mb=args.memory_mb, disk_mb=args.disk_mb, jobs=args.jobs, fork=not args.no_fork,
                            sandbox=not args.no_sandbox)
        start = time.perf_counter()
        out = args.out or default_out(args.submissions)
        results = grade_submissions(args.submissions, out, args.notebooks, args.shard, settings, roster=args.roster,
                                    partial=args.partial, resume=args.resume, learner=args.learner,
                                    progress=not args.no_progress, command=sys.argv if argv is None else argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as e:  # bad input: one line, exit code 1, as every kit command
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    n_learners = len({r.learner for r in results})
    print(f"graded {n_learners} learners in {time.perf_counter() - start:.0f} s -> {out} "
          f"({TOTALS}, {RECORD} and feedback/ beside it); statuses: {dict(sorted(counts.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
