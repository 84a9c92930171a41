"""The kernel side's audit hook, without a kernel: what it signs, and what makes it report or forget its key.

Each case runs in a fresh Python process (an audit hook cannot be removed), armed for notebook
02 as a grading kernel is, with the channel read back at the end.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import inspect, json, os, sys
import helper_utils.reference as _reference
from unittests.grading import channel, recorder, warden

read, write = os.pipe()
key = os.urandom(32)
os.write(write, channel.key_line(key))
recorder.install([key], write, warden.trusted_folders({kit!r}))
del key
recorder.arm("02_inverted_residual_block")
import unittests
_source = inspect.getsource(sys.modules["unittests.inverted_residual_block"]._RefBlock)
import torch
from torch import nn
import torch.nn.functional as F
exec(_source.replace("class InvertedResidualBlock(", "class OwnBlock("))  # the learner's own, copied
{scenario}
recorder.finish()
os.close(write)
reader = channel.Reader(read)
reader.join(30)
print(json.dumps({{"messages": reader.messages, "forged": reader.forged}}))
"""


def _run(scenario: str) -> dict:
    code = SCRIPT.format(kit=str(ROOT), scenario=textwrap.dedent(scenario))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def _kinds(result: dict) -> list[str]:
    return [m["kind"] for m in result["messages"]]


def _tampers(result: dict) -> list[str]:
    return [m["what"] for m in result["messages"] if m["kind"] == "tamper"]


def test_checks_that_hold_the_key():
    result = _run("""
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
    """)
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


@pytest.mark.parametrize("scenario,words", [
    ("import gc; gc.get_objects()", "gc.get_objects"),
    ("sys.settrace(lambda *a: None); sys.settrace(None)", "tracer"),
    ("import ctypes; ctypes.string_at(id(1), 8)", "ctypes"),
    ("open('/tmp/../proc/self/mem', 'rb').close()", "memory"),
    ("compile('x = 1', os.path.join(sys.prefix, 'lib', 'fake.py'), 'exec')", "claims to be"),
    ("import signal; signal.signal(signal.SIGUSR1, lambda *a: None)", None),  # nothing signed after it
])
def test_what_could_reach_the_key_is_reported_then_the_key_is_forgotten(scenario, words):
    result = _run(scenario + "\nunittests.test_block(OwnBlock)")
    if words is None:
        assert _kinds(result) == ["armed"]
    else:
        assert _kinds(result) == ["armed", "tamper"] and words in _tampers(result)[0], result
    assert result["forged"] == 0
