"""The grader's side of its kernels: the kernel starter, each kernel's job and environment, and caps on what it sends.

A kernel gets a minimal environment (no tokens, SSH agent or cloud credentials: the grader's
own environment never reaches it), talks to the grader over Unix sockets in its own folder
(the sandbox has no network), and every message it sends is capped in size, so that no
output, however it is written, can swell the grader's memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from helper_utils.paths import DATA_ENV, REPO, data_root
from unittests.grading import forkkernel

__all__ = ["Starter", "kernel_env", "job_for", "kernel_manager", "zmq_context", "isolation"]

_KIT = REPO  # the kit's root: its helper_utils/ and unittests/ are what every kernel imports
MAX_MESSAGE_BYTES = 4 * 2**20  # a bigger message from a kernel is dropped (and its connection reset)
MAX_QUEUED_MESSAGES = 256  # per socket
_PASSED_ON = ("LANG", "LC_ALL", "LC_CTYPE", "TZ",  # harmless settings passed on; Windows needs the rest
              "SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT", "TEMP", "TMP")


def _minimal_env(home: Path) -> dict:
    env = {k: os.environ[k] for k in _PASSED_ON if k in os.environ}
    env.update({"PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
                "HOME": str(home), "PYTHONPATH": str(_KIT), "MPLBACKEND": "agg", "OMP_NUM_THREADS": "1",
                "PYTHONDONTWRITEBYTECODE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if os.environ.get(DATA_ENV):
        env[DATA_ENV] = os.environ[DATA_ENV]
    return env


def kernel_env(scratch: Path, sandboxed: bool) -> dict:
    """The whole environment of a grading kernel: paths to its scratch copy, the kit, the data; nothing else."""
    env = _minimal_env(scratch)
    env["FASHION_KIT_CHECKPOINTS"] = str(scratch / ".checkpoints")
    if not sandboxed:  # in the sandbox /tmp is the kernel's own; here temporary files count towards its disk
        env["TMPDIR"] = str(scratch / ".tmp")
    return env


def job_for(starter: "Starter", scratch: Path, runtime: Path, settings, sandboxed: bool, hidden: list[Path]) -> dict:
    """What the launcher and the warden need to know about one kernel (``FASHION_GRADE_JOB``)."""
    data = data_root()
    return {"zygote": starter.socket, "kit": str(_KIT), "scratch": str(scratch), "runtime": str(runtime),
            "newroot": str(runtime / "root"), "memory_mb": settings.memory_mb, "disk_mb": settings.disk_mb,
            "sandbox": sandboxed, "data": str(data) if data.is_dir() else None, "hidden": [str(p) for p in hidden]}


class Starter:
    """Starts kernels: through one zygote that forks them (Linux), or a launcher per kernel (``--no-fork``).

    Attributes:
        socket: the zygote's socket (``None`` without one).
        generation: how many zygotes were started; a kernel started under an earlier one may have been hit.
    """

    def __init__(self, workdir: Path, fork: bool) -> None:
        self.workdir, self.fork = workdir, fork
        self.socket: str | None = None
        self.generation = 0
        self.process: subprocess.Popen | None = None
        self._restarting = threading.Lock()
        spec = workdir / "kernels" / "fashion-grade"
        spec.mkdir(parents=True)
        script = str(Path(forkkernel.__file__))
        argv = ([sys.executable, "-I", script, "proxy", "-f", "{connection_file}"] if fork
                else [sys.executable, script, "direct", "-f", "{connection_file}"])
        (spec / "kernel.json").write_text(json.dumps(
            {"argv": argv, "display_name": "grading", "language": "python", "interrupt_mode": "signal"}))
        self.kernel_dirs = [str(spec.parent)]
        if fork:
            self._start_zygote()

    def _start_zygote(self) -> None:
        self.generation += 1
        self.socket = str(self.workdir / f"zygote-{self.generation}.sock")
        home = self.workdir / "zygote-home"
        home.mkdir(exist_ok=True)
        self.process = subprocess.Popen([sys.executable, "-m", "unittests.grading.forkkernel", "serve", self.socket],
                                        cwd=_KIT, env=_minimal_env(home), stdout=subprocess.PIPE,
                                        stdin=subprocess.PIPE, text=True)  # it ends when this pipe closes
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.close()
            raise RuntimeError(f"the kernel starter did not start (it said {line!r}); try --no-fork")

    def alive(self) -> bool:
        return not self.fork or (self.process is not None and self.process.poll() is None)

    def restart(self, generation: int) -> None:
        """Start a new zygote if the one of ``generation`` is dead (once, however many kernels noticed)."""
        with self._restarting:
            if self.fork and generation == self.generation and not self.alive():
                self.close()
                self._start_zygote()

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process.stdin.close()
            self.process.stdout.close()


def zmq_context():
    """One ZeroMQ context for every kernel of a run; its sockets drop messages over ``MAX_MESSAGE_BYTES``."""
    import zmq
    import zmq.asyncio

    context = zmq.asyncio.Context()
    context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    context.setsockopt(zmq.RCVHWM, MAX_QUEUED_MESSAGES)
    return context


def kernel_manager(starter: Starter, runtime: Path, context):
    """A kernel manager for one kernel: Unix sockets in ``runtime`` (no network needed), the grading kernel spec.

    Its clients use ``context`` (whose sockets cap message sizes) and no heartbeat: jupyter_client's
    heartbeat thread can wait forever on a kernel whose sockets a submission broke, and the manager
    watches the kernel's process anyway. Windows has no Unix sockets for ZeroMQ: loopback TCP there
    (it has no sandbox either).
    """
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class Client(AsyncKernelClient):
        def start_channels(self, shell=True, iopub=True, stdin=True, hb=True, control=True):
            super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=False, control=control)

    class Manager(AsyncKernelManager):
        def client(self, **kwargs):
            return super().client(context=self.context, **kwargs)

    where = {"transport": "tcp"} if sys.platform == "win32" else {"transport": "ipc", "ip": str(runtime / "k")}
    return Manager(kernel_name="fashion-grade", kernel_spec_manager=KernelSpecManager(kernel_dirs=starter.kernel_dirs),
                   connection_file=str(runtime / "kernel.json"), context=context, client_factory=Client, **where)


def isolation(sandbox: bool, fork: bool) -> tuple[bool, str]:
    """Whether kernels run in the Linux sandbox, and the line the grader prints about it."""
    if sys.platform == "win32":
        return False, ("isolation: none on Windows: learner code runs as you, can read your files and use the "
                       "network, and no memory cap holds; grade on Linux for a sandbox (docs/INSTRUCTORS.md)")
    if sys.platform == "darwin":
        return False, ("isolation: process groups only on macOS: learner code runs as you, can read your files and "
                       "use the network, and child processes have no memory cap; grade on Linux for a sandbox "
                       "(docs/INSTRUCTORS.md)")
    if not sandbox:
        return False, ("isolation: off (--no-sandbox): learner code runs as you and can read your files and use "
                       "the network; its processes still end with its notebook")
    result = subprocess.run([sys.executable, "-m", "unittests.grading.sandbox"], cwd=_KIT, capture_output=True,
                            text=True, env=_minimal_env(Path.home()))
    if result.returncode == 0:
        return True, ("isolation: each kernel in its own user, PID, mount and network namespaces: no network, "
                      "read-only kit, its own scratch copy, capped memory and disk"
                      + ("" if fork else "; kernels start from scratch (--no-fork)"))
    lines = (result.stdout + result.stderr).strip().splitlines() or ["unknown"]
    reason = lines[-1].removeprefix("sandbox: not available ").strip("()")
    return False, (f"isolation: PARTIAL, the Linux sandbox is not available here ({reason}): learner code runs as "
                   "you and can read your files and use the network; its processes still end with its notebook "
                   "(docs/INSTRUCTORS.md)")
