"""Starting grading kernels: a zygote that forks them, and the launcher jupyter_client runs for each.

Starting a plain IPython kernel and importing torch, torchvision, scikit-learn and the kit
costs seconds of CPU, every time; grading a class means hundreds of kernels. The grader therefore starts
one *zygote* (``serve``) that imports all of that once and never runs learner code. For each
kernel, jupyter_client runs a tiny *proxy* (``proxy``, the command in the kernel spec; stdlib
only, so it starts in milliseconds). The proxy hands the zygote its standard output (the
grading channel, the pipe to the grader) and its job; the zygote forks a warden
(:mod:`unittests.grading.warden`), which forks the kernel. Every notebook still gets a new
process that no other submission has touched.

The proxy stands in for the kernel towards jupyter_client: SIGINT (interrupt) is passed on to
the kernel; when the proxy ends or is killed, its connection to the warden closes and the warden
ends the kernel and every process below it.

``direct`` is the launcher without a zygote (``--no-fork``): it forks its own warden, or, where
there is no fork or no ``/proc`` (Windows, macOS), becomes the kernel itself.

Run with ``python -I path/to/forkkernel.py proxy -f CONNECTION_FILE``,
``python path/to/forkkernel.py direct -f CONNECTION_FILE`` and
``python -m unittests.grading.forkkernel serve SOCKET``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

JOB_ENV = "FASHION_GRADE_JOB"  # the grader's job for one kernel (JSON); never passed on to the kernel


def _die_with_the_grader() -> None:
    """Linux: end when the process that started this one (the grader) ends, however it ends."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _kernel_request(kernel_args: list[str]) -> dict:
    job = json.loads(os.environ[JOB_ENV])
    env = {k: v for k, v in os.environ.items() if k not in (JOB_ENV, "JPY_PARENT_PID")}
    return {"args": kernel_args, "env": env, "job": job}


def _channel_off_stdout() -> None:
    """Point standard output (the channel, now held by the warden) and error at /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def _stand_in(connection: socket.socket) -> int:
    """Be the kernel for jupyter_client: pass SIGINT on, and end when the warden closes the connection."""
    pid = int(connection.makefile().readline() or 0)
    if not pid:
        return 1  # the warden could not start the kernel

    def forward(signum, frame):
        if signum == signal.SIGINT:
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass
            return
        sys.exit(128 + signum)  # closing the connection tells the warden to end the kernel

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:
        try:
            if not connection.recv(64):
                return 0
        except InterruptedError:
            continue


def proxy(kernel_args: list[str]) -> int:
    """Ask the zygote for a kernel: send it the job and the channel, then stand in for the kernel."""
    _die_with_the_grader()  # then the warden sees the connection close and ends the kernel
    request = _kernel_request(kernel_args)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(request["job"]["zygote"])
    socket.send_fds(connection, [json.dumps(request).encode() + b"\n"], [1])
    _channel_off_stdout()
    return _stand_in(connection)


def direct(kernel_args: list[str]) -> int:
    """Without a zygote: fork a warden (Linux), or become the kernel (elsewhere)."""
    sys.path[:] = [p for p in sys.path if p != os.path.dirname(os.path.abspath(__file__))]  # not the kit's modules
    from unittests.grading import warden

    _die_with_the_grader()
    request = _kernel_request(kernel_args)
    channel = os.dup(1)
    if not (sys.platform.startswith("linux") and hasattr(os, "fork")):
        warden.run_kernel_direct(request["job"], kernel_args, request["env"], channel)
    ours, theirs = socket.socketpair()
    if os.fork() == 0:
        ours.close()
        warden.run_kernel(request["job"], kernel_args, request["env"], channel, theirs)
    theirs.close()
    os.close(channel)
    _channel_off_stdout()
    return _stand_in(ours)


def serve(socket_path: str) -> None:
    """Import the kit once, print ``ready``, then fork one warden per request on ``socket_path`` while the grader lives."""
    import select

    from unittests.grading import sandbox, warden

    warden.preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # wardens are reaped by the OS, never left as zombies
    if sys.platform.startswith("linux"):
        sandbox.become_subreaper()  # an orphan of a killed warden comes here, where the grader's sweep finds it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(16)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([listener, 0], [], [])
        if 0 in ready and not os.read(0, 4096):
            return  # the grader holds our standard input: end of file means it is gone
        if listener not in ready:
            continue
        connection, _ = listener.accept()
        try:
            data, fds, _, _ = socket.recv_fds(connection, 1 << 20, 1)
            while not data.endswith(b"\n"):
                more = connection.recv(1 << 20)
                if not more:
                    break
                data += more
            request = json.loads(data)
        except (OSError, ValueError):
            connection.close()
            continue
        if not fds:
            connection.close()
            continue
        if os.fork() == 0:
            listener.close()
            os.close(0)  # a warden does not hold the grader's pipe open
            warden.run_kernel(request["job"], request["args"], request["env"], fds[0], connection)
        os.close(fds[0])
        connection.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["proxy"]:
        return proxy(argv[1:])
    if argv[:1] == ["direct"]:
        return direct(argv[1:])
    if argv[:1] == ["serve"] and len(argv) == 2:
        serve(argv[1])
        return 0
    print("usage: forkkernel.py proxy|direct -f CONNECTION_FILE [ARGS] | serve SOCKET", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
