"""Hostile learners: exercise cells that try to fake a grade, break other learners' grades, or leak what is not theirs.

Each function returns the source of an exercise cell (or code put before one). The class in
``test_grade.py`` hands them in beside honest learners; its tests check what each attack gets.
"""

from __future__ import annotations

MARKER = "FASHION-HOSTILE-NEIGHBOUR"  # in the command line of the process the neighbour leaves behind

# -- full marks without the work ------------------------------------------------------------------

IMPORT_BLOCK = "from helper_utils import InvertedResidualBlock\n"

IMPORT_SEARCH = {  # notebook 06's three exercises, three more spellings of "import the kit's answer"
    "get_query_img_embedding": ("import helper_utils.reference.visual_search as _kit\n"
                                "get_query_img_embedding = _kit.get_query_img_embedding\n"),
    "get_embeddings": ("import importlib\n"
                       "get_embeddings = getattr(importlib.import_module('helper_' + 'utils'), 'get_' + 'embeddings')\n"),
    "find_closest": ("import helper_utils\n\n"
                     "def find_closest(embeddings, query_embedding, k=5):\n"
                     "    return helper_utils.reference.find_closest(embeddings, query_embedding, k)\n"),
}

PATCH_GRADE = """\
import unittests.framework as _framework
import unittests.inverted_residual_block as _grader


class InvertedResidualBlock:  # nothing written
    pass


_real_grade = _grader.grade


def _every_case_passes(name, cases, **kwargs):
    return _real_grade(name, [_framework.Case("all good", lambda: None)], **kwargs)


_grader.grade = _every_case_passes
"""

PATCH_SEARCH = {  # notebook 06: three more ways to change the graders or their framework
    "get_query_img_embedding": ("import unittests\n"
                                "unittests.test_query_embedding = lambda *a: None\n"
                                "get_query_img_embedding = None\n"),
    "get_embeddings": ("import unittests.framework as _framework\n"
                       "_framework.check = lambda *args, **kwargs: None\n"
                       "get_embeddings = None\n"),
    "find_closest": ("import unittests\n"
                     "unittests.test_find_closest.__closure__[0].cell_contents = lambda *a: None\n"
                     "find_closest = None\n"),
}

FORGE = """\
import glob, json, os, sys, threading, time

FORGED = json.dumps({"kind": "record", "grader": "test_block", "answer": False,
                     "cases": [{"name": "everything", "passed": True, "skipped": False, "expected": None,
                                "got": None, "hint": ""}]}) + "\\n"


def _forge():
    for _ in range(50):
        for fd in os.listdir("/proc/self/fd"):
            try:
                os.write(int(fd), ("0" * 64 + " " + FORGED).encode())
                os.write(int(fd), FORGED.encode())
            except OSError:
                pass
        for path in glob.glob("/tmp/fashion-grade-*/**/*", recursive=True):
            try:
                with open(path, "a") as f:
                    f.write(FORGED)
            except OSError:
                pass
        time.sleep(0.05)


threading.Thread(target=_forge, daemon=True).start()
try:
    sys.audit("fashion.grade.record", "test_block", (), (("everything", True, False, None, None, ""),))
except Exception:
    pass


class InvertedResidualBlock:  # nothing written
    pass
"""

# -- one learner against the others ----------------------------------------------------------------

NEIGHBOUR = f"""\
import os, signal, subprocess, sys

_LINGER = '''
import glob, os, sys, time
end = time.time() + 120
while time.time() < end:  # for two minutes: spoil every gradebook, record and scratch copy it can find
    for pattern in ("/tmp/fashion-grade-*/**/*", "/tmp/pytest-of-*/**/grades.csv", "/tmp/pytest-of-*/**/*.md"):
        for path in glob.glob(pattern, recursive=True):
            try:
                with open(path, "a") as f:
                    f.write("spoiled,0,0\\\\n")
            except OSError:
                pass
    time.sleep(0.2)
'''
subprocess.Popen([sys.executable, "-c", _LINGER, "{MARKER}"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    os.kill(os.getppid(), signal.SIGKILL)  # the process that started this kernel
except OSError:
    pass
"""

# code put before an exercise: garbage into every socket its kernel holds, its connection to the grader included
JAM_SOCKETS = """\
import os, stat, threading, time


def _jam():
    end = time.time() + 20
    while time.time() < end:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if stat.S_ISSOCK(os.fstat(int(fd)).st_mode):
                    os.write(int(fd), b"\\xff" * 64)
            except OSError:
                pass
        time.sleep(0.01)


threading.Thread(target=_jam, daemon=True).start()
time.sleep(0.5)
"""

KILL_STARTER = """\
import os, signal

for _pid in os.listdir("/proc"):
    try:
        _cmdline = open(f"/proc/{_pid}/cmdline", "rb").read()
    except OSError:
        continue
    if b"forkkernel" in _cmdline and b"serve" in _cmdline:
        os.kill(int(_pid), signal.SIGKILL)
"""

# -- what is not the learner's ---------------------------------------------------------------------


def probe(secret: str, port: int, kit: str) -> str:
    """An exercise that reports what it could reach, in its error message (which lands in its feedback)."""
    return f"""\
import os, socket

def _can(action):
    try:
        action()
        return 1
    except Exception:
        return 0

_secret = _can(lambda: open({secret!r}).read())
_environ = " ".join(open(p, "rb").read().decode(errors="replace") for p in ("/proc/self/environ", "/proc/1/environ")
                    if os.path.exists(p))
_env = int("SEKRIT" in repr(dict(os.environ)) or "SEKRIT" in _environ)
_net = _can(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2).close())
_kit = _can(lambda: open({kit!r} + "/unittests/hostile_was_here.py", "w").close())
_procs = len([p for p in os.listdir("/proc") if p.isdigit()])
get_query_img_embedding = None
raise RuntimeError(f"probe secret={{_secret}} env={{_env}} net={{_net}} kitwrite={{_kit}} procs={{_procs}} " + "x" * 2000)
"""


def flood() -> str:
    """Output written past the kernel's own cap: through the stream under it, and to the raw descriptors."""
    return """\
import os, sys

_under = getattr(sys.stdout, "_stream", sys.stdout)
for _ in range(60):
    _under.write("x" * 2_000_000)
_under.flush()
os.write(1, b"y" * 50_000_000)
os.write(2, b"z" * 50_000_000)
"""


def child_memory(mb: int) -> str:
    """A child process that allocates and touches memory, 64 MB at a time, up to ``mb``."""
    return f"""\
import subprocess, sys

_HOG = '''
import time
chunks = []
for _ in range({mb} // 64):
    chunk = bytearray(64 * 2**20)
    chunk[::4096] = b"x" * (len(chunk) // 4096)  # touched: real memory, not just address space
    chunks.append(chunk)
    time.sleep(0.05)
print("survived")
'''
_result = subprocess.run([sys.executable, "-c", _HOG], capture_output=True, text=True)
"""


def fork_bomb(children: int) -> str:
    """Sleeping child processes, as many as ``children``."""
    return f"""\
import os, time

for _ in range({children}):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
time.sleep(5)
"""
