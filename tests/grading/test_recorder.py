"""The kernel side's audit hook, without a kernel: what it signs, and what makes it report or forget its key.

An audit hook cannot be removed, so the cases run in a fresh Python process, armed for notebook
02 as a grading kernel is; the cases that forget the key each run in a fork of it, with the
channel's descriptor pointed at a pipe of their own.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
import inspect, json, os, sys
import torch
from torch import nn
import torch.nn.functional as F
import helper_utils.reference as _reference
from unittests.grading import channel, recorder, warden

read, write = os.pipe()
key = os.urandom(32)
os.write(write, channel.key_line(key))
recorder.install([key], write, warden.trusted_folders({kit!r}))
test_key = key  # the test reads the cases' own pipes with it; a kernel keeps no copy
recorder.arm("02_inverted_residual_block")
import unittests
_source = inspect.getsource(sys.modules["unittests.inverted_residual_block"]._RefBlock)
exec(_source.replace("class InvertedResidualBlock(", "class OwnBlock("))  # the learner's own, copied


def messages(fd):
    reader = channel.Reader(fd)
    reader.join(30)
    return {{"messages": reader.messages, "forged": reader.forged}}
"""

ONE_PROCESS = SETUP + """
{scenario}
recorder.finish()
os.close(write)
print(json.dumps(messages(read)))
"""

FORKS = SETUP + """
os.close(write)
first = messages(read)  # the key and the armed line
results = []
for scenario in {scenarios!r}:
    mine, theirs = os.pipe()
    os.write(theirs, channel.key_line(test_key))
    pid = os.fork()
    if pid == 0:
        os.close(mine)
        os.dup2(theirs, write)  # the hook writes to this descriptor number: now this case's own pipe
        exec(scenario)
        unittests.test_block(OwnBlock)
        recorder.finish()
        os._exit(0)
    os.close(theirs)
    os.waitpid(pid, 0)
    results.append(messages(mine))
print(json.dumps({{"first": first, "cases": results}}))
"""


def _python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def _kinds(result: dict) -> list[str]:
    return [m["kind"] for m in result["messages"]]


def _tampers(result: dict) -> list[str]:
    return [m["what"] for m in result["messages"] if m["kind"] == "tamper"]


def test_checks_that_hold_the_key():
    result = _python(ONE_PROCESS.format(kit=str(ROOT), scenario=textwrap.dedent("""
        import tempfile
        open(os.path.join(tempfile.mkdtemp(), "mem"), "w").close()  # a file of its own named mem: fine
        unittests.test_block(OwnBlock)  # honest: signed, passes, not the kit's
        unittests.test_block(_reference.inverted_residual_block.InvertedResidualBlock)  # the kit's, via a tripwire
        _Real = sys.modules["unittests.inverted_residual_block"]._RefBlock  # the kit's, reached through the grader
        class Subclass(_Real):
            pass
        class Borrowed(OwnBlock):
            forward = _Real.forward  # the kit's code in a class of its own
        unittests.test_block(Subclass)
        unittests.test_block(Borrowed)
        sys.audit(recorder.RECORD, "test_block", (OwnBlock,), (("all", True, False, None, None, ""),))
        unittests.framework.Report.__bool__ = lambda self: True
        unittests.test_block(OwnBlock)
        del unittests.framework.Report.__bool__
        unittests.test_block(OwnBlock)
        import unittests.framework as _framework
        _framework.check = lambda *args, **kwargs: None
        unittests.test_block(OwnBlock)
        recorder.arm("02_inverted_residual_block")
    """)))
    assert result["forged"] == 0
    records = [m for m in result["messages"] if m["kind"] == "record"]
    assert [r["answer"] for r in records] == [False, True, True, True, False, False, False]
    assert all(c["passed"] for c in records[0]["cases"]) and len(records[0]["cases"]) == 15
    tampers = " | ".join(_tampers(result))
    assert "memory" not in tampers
    for words in ("replaced a grader", "changed Report.__bool__", "changed the class Report",
                  "changed unittests.framework.check", "armed the grader again"):
        assert words in tampers, tampers
    assert _kinds(result)[0] == "armed" and _kinds(result)[-1] == "finish"


KEY_CASES = {  # what could reach the key -> words of the tamper line it gets (None: nothing is signed after it)
    "import gc; gc.get_objects()": "gc.get_objects",
    "sys.settrace(lambda *a: None); sys.settrace(None)": "tracer",
    "import ctypes; ctypes.string_at(id(1), 8)": "ctypes",
    "open('/tmp/../proc/self/mem', 'rb').close()": "memory",
    "compile('x = 1', os.path.join(sys.prefix, 'lib', 'fake.py'), 'exec')": "claims to be",
    "import signal; signal.signal(signal.SIGUSR1, lambda *a: None)": None,
}


def test_what_could_reach_the_key_is_reported_then_the_key_is_forgotten():
    result = _python(FORKS.format(kit=str(ROOT), scenarios=list(KEY_CASES)))
    assert _kinds(result["first"]) == ["armed"]
    for (scenario, words), case in zip(KEY_CASES.items(), result["cases"]):
        assert case["forged"] == 0, scenario
        if words is None:
            assert case["messages"] == [], scenario
        else:
            assert _kinds(case) == ["tamper"] and words in _tampers(case)[0], (scenario, case)
