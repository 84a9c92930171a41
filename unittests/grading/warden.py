"""One kernel's warden: starts the kernel in its sandbox, watches it, and ends everything it started.

For each notebook the kernel starter (:mod:`unittests.grading.forkkernel`) forks a warden. It
never runs learner code. It

1. enters a new user namespace (:mod:`unittests.grading.sandbox`; without one it is only a
   subreaper), imports the kit, writes the channel's key (:mod:`unittests.grading.channel`) and
   makes its next child the first process of a new PID namespace;
2. forks the kernel, which enters its sandbox, hardens itself (dies with the warden, cannot be
   read by its own children, writes no file over the disk limit), drops every capability, gives
   the key to the recorder's audit hook and becomes an IPython kernel;
3. watches it: when the kernel ends, when the grader lets go of it (the connection from the
   launcher closes), or when the kernel's child processes together pass the memory limit or
   ``MAX_PROCESSES`` (or, without namespaces, the scratch copy passes the disk limit), it kills
   the kernel and every process below itself, then signs a last line saying why, and exits.

So every process a learner's code starts is gone when its notebook's grading ends, and the
channel's end of file tells the grader exactly that.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import NoReturn

from unittests.grading import channel, sandbox

__all__ = ["preload", "trusted_folders", "run_kernel", "run_kernel_direct"]

_PRELOAD = (  # what the notebooks' set-up cells import, imported once before any kernel forks
    "numpy", "torch", "torchvision", "PIL.Image", "sklearn.metrics", "sklearn.decomposition", "sklearn.manifold",
    "torchinfo", "matplotlib.pyplot", "helper_utils", "helper_utils.plotting", "helper_utils.recipes",
    "helper_utils.widgets", "helper_utils.loaders", "helper_utils.augment", "helper_utils.retrieval",
    "helper_utils.reference", "helper_utils.going_further.explain", "unittests", "unittests.grading.recorder",
    "ipykernel.kernelapp",
)
POLL_S = 0.2  # how often the warden looks at the kernel's processes
MAX_PROCESSES = 256  # that a kernel may start (a fork bomb is stopped at the next look)
DISK_POLL_S = 1.0  # without namespaces: how often it measures the scratch copy


def preload() -> None:
    """Import what every kernel needs: the kit, its graders and reference answers, torch, ipykernel.

    In the sandbox the reference answers' source is hidden, so they must be imported before.
    """
    import importlib

    os.environ.setdefault("MPLBACKEND", "agg")  # no display in a grading kernel
    for name in _PRELOAD:
        importlib.import_module(name)
    import unittests

    for name in unittests.__all__:  # the graders (unittests imports them on first use)
        getattr(unittests, name)


def trusted_folders(kit: str) -> tuple[str, ...]:
    """Folders whose code is the kit's or the Python installation's, as the recorder's hook tells them apart."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, f"{kit}/helper_utils", f"{kit}/unittests"}
    return tuple(sorted(f.rstrip("/") + "/" for f in folders))


def _view_for(job: dict) -> sandbox.View:
    """What the kernel of ``job`` sees: Python and what it loaded, the kit's two packages, the data, its scratch."""
    kit = Path(job["kit"])
    readonly = [kit / "helper_utils", kit / "unittests", Path(sys.executable).parent,
                Path(os.path.realpath(sys.executable)).parent]
    readonly += [Path(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
    readonly += [Path(p) for p in sys.path if p and Path(p).exists() and Path(p).resolve() != kit.resolve()]
    readonly += _loaded_library_folders()
    if job.get("data"):
        readonly.append(Path(job["data"]))
    hidden_roots = {kit.resolve(), Path(job["scratch"]).parent.resolve()}
    readonly = [p for p in readonly if p.resolve() not in hidden_roots and p.exists()]
    hidden = [kit / "helper_utils" / "reference", kit / "notebooks", *map(Path, job.get("hidden", []))]
    needed = [*readonly, Path(job["runtime"]), Path(job["scratch"])]
    hidden = [h for h in hidden if not any(n == h or h in n.parents for n in needed)]  # never hide what is needed
    return sandbox.View(newroot=Path(job["newroot"]), scratch=Path(job["scratch"]), readonly=readonly,
                        hidden=hidden, writable=[Path(job["runtime"])], disk_mb=job["disk_mb"])


def _loaded_library_folders() -> list[Path]:
    """Folders of the shared libraries this process has loaded (torch's, OpenMP...): the kernel may load more."""
    folders = set()
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                folders.add(Path(parts[5]).parent)
    except OSError:
        pass
    return sorted(folders)


# ---------------------------------------------------------------------------------------
# The warden
# ---------------------------------------------------------------------------------------

def run_kernel(job: dict, kernel_args: list[str], env: dict, fd: int, launcher: socket.socket) -> NoReturn:
    """Be the warden of one kernel (in a freshly forked process); exits when it is over, never returns.

    Args:
        job: the grader's job for this kernel (``forkkernel.JOB_ENV``): paths, limits, sandbox or not.
        kernel_args: ipykernel's arguments (``-f CONNECTION_FILE``).
        env: the kernel's environment.
        fd: the channel (the pipe to the grader).
        launcher: the connection to the process the grader launched; it closing means stop.
    """
    code = 1
    secret = [os.urandom(32)]  # the channel's key; the kernel's hook takes its own copy out of this list
    try:
        _write_all(fd, channel.key_line(secret[0]))
        os.setsid()  # out of the launcher's process group: the grader's kill of that group is for the launcher
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        sandbox.become_subreaper()
        if job["sandbox"]:  # first: a new user namespace needs a single thread, and an import may start one
            sandbox.enter_user_namespace()
        sandbox.undumpable()  # its memory holds the key (after the namespace: it writes its own uid_map first)
        preload()
        warden = os.getpid()
        if job["sandbox"]:
            sandbox.enter_pid_namespace()
        pid = os.fork()
        if pid == 0:
            _kernel(job, kernel_args, env, fd, secret, warden)
        launcher.sendall(f"{pid}\n".encode())
        why = _watch(pid, job, launcher)
        _end(pid)
        _write_all(fd, channel.signed_line(secret[0], {"kind": "ended", "killed": why}))
        code = 0
    except BaseException as e:  # the grader shows it as the notebook's note
        message = {"kind": "error", "what": f"the kernel could not start: {type(e).__name__}: {e}"[:300]}
        try:
            _write_all(fd, channel.signed_line(secret[0], message))
        except OSError:
            pass
    finally:
        os._exit(code)


def _watch(pid: int, job: dict, launcher: socket.socket) -> str:
    """Wait until the kernel ends or must be killed; ``""`` for a normal end, else why it was killed."""
    scratch, next_disk_check = Path(job["scratch"]), 0.0
    while True:
        ready, _, _ = select.select([launcher], [], [], POLL_S)
        if ready and not launcher.recv(64):
            return ""  # the grader let go of the kernel
        if _reaped(pid):
            return ""
        below = [p for p in sandbox.descendants(os.getpid()) if p != pid]  # detached ones come back here too
        if len(below) > MAX_PROCESSES:
            return f"the notebook started more than {MAX_PROCESSES} processes"
        if below:
            used = sum(sandbox.private_mb(p) for p in below)
            if used > job["memory_mb"]:
                return (f"the processes the notebook started used {used:.0f} MB of memory together, "
                        f"more than the {job['memory_mb']} MB allowed")
        if not job["sandbox"] and time.monotonic() >= next_disk_check:  # in the sandbox a tmpfs bounds it
            next_disk_check = time.monotonic() + DISK_POLL_S
            used = sandbox.tree_disk_mb(scratch)
            if used > job["disk_mb"]:
                return f"the notebook wrote more than the {job['disk_mb']} MB of files allowed"


def _reaped(pid: int) -> bool:
    """Reap every finished child; True once ``pid`` is among them (or gone)."""
    while True:
        try:
            done, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if done == 0:
            return False
        if done == pid:
            return True


def _end(pid: int) -> None:
    """Kill the kernel (in the sandbox: its whole PID namespace) and every process left below the warden."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    sandbox.kill_descendants(os.getpid())
    _reaped(-1)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


# ---------------------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------------------

def _kernel(job: dict, kernel_args: list[str], env: dict, fd: int, secret: list, warden: int) -> NoReturn:
    """In the kernel's process: sandbox, limits, then ipykernel with the recorder's hook. Never returns."""
    try:
        os.setsid()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if job["sandbox"]:
            sandbox.enter_view(_view_for(job))
        sandbox.harden(job["disk_mb"])
        if not job["sandbox"] and os.getppid() != warden:  # the warden died before harden() could tie us to it
            os._exit(1)
        if job["sandbox"]:
            sandbox.drop_privileges()
        _become_kernel(job, kernel_args, env, fd, secret)
    except BaseException as e:
        if secret:
            _write_all(fd, channel.signed_line(secret[0], {"kind": "error", "what": f"the kernel did not start: {e}"[:300]}))
        os._exit(1)
    os._exit(0)


def _become_kernel(job: dict, kernel_args: list[str], env: dict, fd: int, secret: list) -> None:
    """Standard streams to /dev/null, only the channel kept open, the kernel's environment, the hook, ipykernel."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):  # what learner code writes to the raw file descriptors goes nowhere
        os.dup2(devnull, target)
    os.set_inheritable(fd, False)  # a program the learner runs does not get the channel
    for other in range(3, _max_fd()):
        if other != fd:
            try:
                os.close(other)
            except OSError:
                pass
    os.chdir(job["scratch"])
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, "")  # as in a plain kernel: the working directory is importable
    from unittests.grading import recorder

    recorder.install(secret, fd, trusted_folders(job["kit"]))
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(kernel_args)
    app.start()


def _max_fd() -> int:
    try:
        return max(int(name) for name in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return 1024


def run_kernel_direct(job: dict, kernel_args: list[str], env: dict, fd: int) -> NoReturn:
    """Without fork (Windows) or Linux's tools (macOS): this process itself becomes the kernel.

    The channel, the key and the recorder's hook are the same; there is no warden, no sandbox
    and no memory cap for child processes (the grader says so when it starts).
    """
    key = os.urandom(32)
    _write_all(fd, channel.key_line(key))
    secret = [key]
    del key
    preload()
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    os.set_inheritable(fd, False)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, "")
    from unittests.grading import recorder

    recorder.install(secret, fd, trusted_folders(job["kit"]))
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(kernel_args)
    app.start()
    os._exit(0)
