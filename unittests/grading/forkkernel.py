"""Fresh kernels in a fraction of a second: forked from a process that has already imported torch.

Starting a plain IPython kernel and importing torch, torchvision, scikit-learn and the kit
costs about 5 s of CPU; grading a class means hundreds of kernels. ``python -m unittests.grade``
therefore starts one *zygote* (``serve``) that imports all of that once and never runs learner
code, and launches each kernel through a tiny ``proxy`` (the command in the kernel spec). The
proxy asks the zygote to fork; the child becomes an ordinary ipykernel with the proxy's
connection file, working directory and environment. Every notebook still gets a new process
that no other submission has touched.

The proxy stands in for the kernel towards jupyter_client: SIGINT (interrupt) is passed on,
SIGTERM kills the kernel, and the kernel exits by itself when the proxy disappears (SIGKILL).

Run with ``python -I path/to/forkkernel.py proxy -f CONNECTION_FILE`` (stdlib only, so it starts
in milliseconds) and ``python -m unittests.grading.forkkernel serve SOCKET`` (imports the kit).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

ZYGOTE_ENV = "FASHION_GRADE_ZYGOTE"  # the zygote's Unix socket, in the proxy's environment
PRELOAD = (  # what the notebooks' set-up cells import: the reason the zygote exists
    "numpy", "torch", "torchvision", "PIL.Image", "sklearn.metrics", "sklearn.decomposition", "sklearn.manifold",
    "torchinfo", "matplotlib.pyplot", "helper_utils", "helper_utils.plotting", "helper_utils.recipes",
    "helper_utils.widgets", "helper_utils.loaders", "helper_utils.augment", "helper_utils.retrieval",
    "unittests", "unittests.grading.recorder", "ipykernel.kernelapp",
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proxy(kernel_args: list[str]) -> int:
    """Ask the zygote for a kernel with ``kernel_args`` (``-f CONNECTION_FILE ...``); wait until it ends."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(os.environ[ZYGOTE_ENV])
        request = {"args": kernel_args, "cwd": os.getcwd(), "env": dict(os.environ), "proxy": os.getpid()}
        s.sendall(json.dumps(request).encode() + b"\n")
        pid = int(s.makefile().readline())

    def forward(signum, frame):
        if signum == signal.SIGINT:
            os.kill(pid, signal.SIGINT)
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        sys.exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    while _alive(pid):  # not our child (the zygote's), so poll instead of waitpid
        time.sleep(0.05)
    return 0


def _watch_proxy(proxy_pid: int) -> None:
    """In the kernel: exit when the proxy is gone (jupyter_client killed it)."""
    while _alive(proxy_pid):
        time.sleep(0.2)
    os._exit(1)


def _become_kernel(request: dict) -> None:
    """In the forked child: take on the request's directory and environment, then run ipykernel."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote ignores it; the kernel's subprocesses need it
    os.setpgid(0, 0)  # own process group: a signal for the zygote's group does not reach learners' kernels
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # what learner code writes to the raw file descriptors goes nowhere
        os.dup2(devnull, fd)
    sys.path.insert(0, "")  # as in a plain kernel: the working directory is importable
    threading.Thread(target=_watch_proxy, args=(request["proxy"],), daemon=True).start()

    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(request["args"])
    app.start()


def serve(socket_path: str) -> None:
    """Import ``PRELOAD``, print ``ready``, then fork one kernel per request on ``socket_path`` until killed."""
    import importlib

    os.environ.setdefault("MPLBACKEND", "agg")  # no display in a grading kernel
    for name in PRELOAD:
        importlib.import_module(name)
    import unittests

    for name in unittests.__all__:  # the graders (unittests imports them on first use)
        getattr(unittests, name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kernels are reaped by the OS, never left as zombies
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            request = json.loads(conn.makefile().readline())
            pid = os.fork()
            if pid == 0:
                try:
                    listener.close()
                    conn.close()
                    _become_kernel(request)
                finally:
                    os._exit(0)
            conn.sendall(f"{pid}\n".encode())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["proxy"]:
        return proxy(argv[1:])
    if argv[:1] == ["serve"] and len(argv) == 2:
        serve(argv[1])
        return 0
    print("usage: forkkernel.py proxy -f CONNECTION_FILE [ARGS] | serve SOCKET", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
