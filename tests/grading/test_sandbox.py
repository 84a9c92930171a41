"""The Linux sandbox of a grading kernel, without a kernel: what a process inside it can and cannot reach."""

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from unittests.grading import sandbox

REASON = sandbox.probe()
needs_sandbox = pytest.mark.skipif(bool(REASON), reason=f"no Linux sandbox here: {REASON}")
ROOT = Path(__file__).resolve().parents[2]


def _inside(view: sandbox.View, check) -> dict:
    """Run ``check()`` as process 1 of a sandbox with ``view``; returns what it returned (a dict)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            sandbox.enter_user_namespace()
            sandbox.enter_pid_namespace()
            inner = os.fork()
            if inner == 0:
                sandbox.enter_view(view)
                sandbox.drop_privileges()
                os.write(write, json.dumps(check()).encode())
                os._exit(0)
            os._exit(os.waitstatus_to_exitcode(os.waitpid(inner, 0)[1]))
        except BaseException as e:
            os.write(write, json.dumps({"error": repr(e)}).encode())
            os._exit(1)
    os.close(write)
    out = b""
    while chunk := os.read(read, 65536):
        out += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(out or b"{}")


def _can(action) -> bool:
    try:
        action()
        return True
    except OSError:
        return False


def test_the_probe_says_yes_or_why_not():
    assert REASON == "" or isinstance(REASON, str) and len(REASON.splitlines()) == 1


@needs_sandbox
def test_a_sandboxed_process_sees_only_its_view(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    scratch = tmp_path / "work" / "scratch"
    scratch.mkdir(parents=True)
    (scratch / "mine.txt").write_text("mine")
    kit = tmp_path / "kit"
    (kit / "pkg").mkdir(parents=True)
    (kit / "pkg" / "module.py").write_text("x = 1")
    (kit / "pkg" / "hidden").mkdir()
    (kit / "pkg" / "hidden" / "answer.py").write_text("answer = 42")
    newroot = tmp_path / "root"
    newroot.mkdir()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    python = [Path(sys.prefix), Path(sys.base_prefix)]  # as the warden's view holds them
    view = sandbox.View(newroot=newroot, scratch=scratch, readonly=[kit / "pkg", *python],
                        hidden=[kit / "pkg" / "hidden"], disk_mb=8)

    def check():
        return {
            "pid": os.getpid(),
            "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "secret": os.path.exists(secret),
            "mine": (scratch / "mine.txt").read_text(),
            "kit": (kit / "pkg" / "module.py").read_text(),
            "hidden": os.listdir(kit / "pkg" / "hidden"),
            "write_kit": _can(lambda: (kit / "pkg" / "new.py").write_text("")),
            "write_scratch": _can(lambda: (scratch / "new.txt").write_text("ok")),
            "write_tmp": _can(lambda: Path("/tmp/t").write_text("ok")),
            "fill_disk": _can(lambda: Path("/tmp/big").write_bytes(b"x" * 16 * 2**20)),
            "network": _can(lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close()),
            "home": os.path.exists(os.path.expanduser("~/.bashrc")),
            "python": sys.executable and os.path.exists(sys.prefix),
        }

    seen = _inside(view, check)
    server.close()
    assert "error" not in seen, seen
    assert seen["pid"] == 1 and seen["processes"] == [1]  # alone in its PID namespace
    assert seen["mine"] == "mine" and seen["kit"] == "x = 1" and seen["hidden"] == []
    assert not seen["secret"] and not seen["home"] and not seen["network"]
    assert not seen["write_kit"] and seen["write_scratch"] and seen["write_tmp"] and not seen["fill_disk"]
    assert seen["python"]
    assert not (kit / "pkg" / "new.py").exists() and not (scratch / "new.txt").exists()  # its writes stay inside


def test_descendants_and_their_memory(tmp_path):
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(64 * 2**20); x[::4096] = b'x' * "
                              "(len(x) // 4096); print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"
        assert child.pid in sandbox.descendants(os.getpid())
        assert sandbox.private_mb(child.pid) > 60
        assert sandbox.kill_descendants(os.getpid(), spare=frozenset(p for p in sandbox.descendants(os.getpid())
                                                                    if p != child.pid)) == 1
        child.wait(timeout=10)  # reaped already (it was this process's child): the return code is lost
        assert not Path(f"/proc/{child.pid}").exists()
    finally:
        child.kill()


def test_disk_use_counts_blocks_not_claimed_sizes(tmp_path):
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(2**30)
    (tmp_path / "real").write_bytes(b"x" * 2**20)
    assert 0.9 < sandbox.tree_disk_mb(tmp_path) < 2

