"""Kernel side of class grading: every grader's report, signed, and the checks a learner cannot skip.

Three calls, in this order, in each grading kernel:

1. :func:`install`, by the kernel launcher before IPython starts: adds an audit hook (PEP 578)
   that alone holds the channel's key (:mod:`unittests.grading.channel`). An audit hook cannot
   be removed, and nothing else in the process refers to it.
2. :func:`arm`, the first cell the grader sends: wraps every ``unittests.test_*`` so that its
   report goes to the hook, puts tripwires where the kit's own answers to this notebook can be
   imported from, caps memory and output, and tells the hook what the kit looks like now.
3. :func:`finish`, the last cell: the hook checks the kit once more and signs a closing line.

The hook signs a report only when it comes from the kit's own wrapper around the kit's own
grader, with the graders, their framework, the reference answers, torch, numpy and builtins as
they were at :func:`arm`; it marks the answer when it is the kit's own (imported in any way,
subclassed, or rebuilt from the reference's functions). It reports, and then forgets the key,
when learner code uses what could reach the key: ``gc`` object walks, other threads' frames,
tracing, ``ctypes``, ``/proc/*/mem``, or a signal handler of its own while the hook signs.

Python has no sandbox inside a process, so these are checks, not walls: the trust model in
docs/INSTRUCTORS.md says what they do not stop.
"""

from __future__ import annotations

import functools
import io
import sys
from typing import Any, Callable

__all__ = ["install", "arm", "finish", "RECORD", "FINISH"]

RECORD, _ARM, FINISH, _TRIPWIRE = "fashion.grade.record", "fashion.grade.arm", "fashion.grade.finish", \
    "fashion.grade.tripwire"
_TEXT_LIMIT = 300  # characters kept of each expected/got/hint value and of each note
_WATCHED_MODULES = ("unittests", "helper_utils", "torch", "numpy", "builtins", "json", "functools", "math")
_SNAPSHOT_MODULES = ("torch", "torch.nn", "torch.nn.functional", "torch.nn.modules.module", "torch.testing",
                     "torch.autograd", "numpy", "numpy.testing", "builtins", "json", "json.encoder", "math",
                     "functools", "copy", "signal")
_KEY_EVENTS = {  # what could reach the key: reported, then the key is forgotten
    "gc.get_objects": "walked every object with gc.get_objects",
    "gc.get_referrers": "walked objects with gc.get_referrers",
    "gc.get_referents": "walked objects with gc.get_referents",
    "sys._current_frames": "read other threads' frames (sys._current_frames)",
}


# ---------------------------------------------------------------------------------------
# 1. The hook (installed before IPython starts)
# ---------------------------------------------------------------------------------------

def install(secret: list, fd: int, trusted: tuple[str, ...]) -> None:
    """Add the audit hook; it takes the key out of ``secret`` (a one-item list), so no caller frame keeps it.

    Args:
        secret: ``[key]``, emptied here.
        fd: the channel's file descriptor (the pipe to the grader).
        trusted: folders whose code is the kit's or the Python installation's (signal handlers and
            tracers from elsewhere are learner code).
    """
    sys.addaudithook(_make_hook(secret, fd, trusted))


def _make_hook(secret: list, fd: int, trusted: tuple[str, ...]) -> Callable:
    import hashlib
    import os
    import signal
    import types

    # Every name the hook uses is bound here, once. Learner code can rebind module attributes
    # and builtins later, never these; the hook calls only C functions and its own closures,
    # compares with ``is``, and formats only exact ``str``: no learner code ever runs while it
    # holds the key.
    _type, _str, _bytes, _tuple, _int, _len, _zip = type, str, bytes, tuple, int, len, zip
    _write, _frame, _blake, _getsignal, _stat = os.write, sys._getframe, hashlib.blake2b, signal.getsignal, os.stat
    _proc_device = os.stat("/proc").st_dev if os.path.isdir("/proc") else -1
    _dev_mem = os.makedev(1, 1) if hasattr(os, "makedev") else -1  # /dev/mem
    _encode, _translate, _join, _starts, _ends = str.encode, str.translate, str.join, str.startswith, str.endswith
    _bends = bytes.endswith
    _dict_get, _dict_items, _append = dict.get, dict.items, list.append
    _mro = type.__dict__["__mro__"].__get__
    _class_dict = type.__dict__["__dict__"].__get__
    _class_module = type.__dict__["__module__"].__get__
    _class_name = type.__dict__["__qualname__"].__get__
    _proxy_values, _proxy_get, _proxy_items = type(type.__dict__).values, type(type.__dict__).get, \
        type(type.__dict__).items
    _FunctionType, _MethodType, _ModuleType, _Builtin = types.FunctionType, types.MethodType, types.ModuleType, \
        types.BuiltinFunctionType
    _func_code = _FunctionType.__dict__["__code__"].__get__
    _func_module = _FunctionType.__dict__["__module__"].__get__
    _func_name = _FunctionType.__dict__["__qualname__"].__get__
    _func_defaults = _FunctionType.__dict__["__defaults__"].__get__
    _func_kwdefaults = _FunctionType.__dict__["__kwdefaults__"].__get__
    _func_closure = _FunctionType.__dict__["__closure__"].__get__
    _method_func = _MethodType.__dict__["__func__"].__get__
    _module_dict = _ModuleType.__dict__["__dict__"].__get__
    _cell_contents = types.CellType.__dict__["cell_contents"].__get__
    _modules = sys.modules
    _signals = tuple(s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP))
    _escapes = {i: f"\\u{i:04x}" for i in range(32)} | {34: '\\"', 92: "\\\\", 127: "\\u007f"}
    _record, _arm, _finish, _tripwire = RECORD, _ARM, FINISH, _TRIPWIRE
    _key_events, _watched_modules, _kit_prefixes = dict(_KEY_EVENTS), _WATCHED_MODULES, ("unittests", "helper_utils")
    _snapshot_modules = frozenset(_SNAPSHOT_MODULES)
    _kit_classes = (("torch", "Tensor"), ("torch.nn", "Module"), ("torch.nn", "Parameter"))
    _watched = frozenset({RECORD, _ARM, FINISH, _TRIPWIRE, "sys.settrace", "sys.setprofile", "open",
                          "object.__setattr__", "object.__delattr__", "compile", "code.__new__", *_KEY_EVENTS})
    _trusted = (*trusted, "<frozen ")
    _volatile = frozenset({"_", "input", "raw_input"})  # builtins IPython rebinds for every cell
    _missing = object()
    state = {"key": secret.pop(), "fd": fd, "armed": None}

    def derives(kind, base) -> bool:  # ``issubclass`` without calling anything a learner's metaclass defines
        for cls in _mro(kind):
            if cls is base:
                return True
        return False

    def is_class(obj) -> bool:
        return derives(_type(obj), _type)

    def text(value) -> str:  # a JSON string of an exact str, capped
        return '"' + _translate(value[:2000], _escapes) + '"'

    def emit(payload: str) -> None:
        key = state["key"]
        if key is None:
            return
        if not handlers_are_trusted():  # a learner's handler could run in this very frame: forget the key first
            state["key"] = None
            return
        data = _encode(payload, "utf-8", "backslashreplace")
        line = _encode(_blake(data, key=key, digest_size=32).hexdigest(), "ascii") + b" " + data + b"\n"
        done = 0
        while done < _len(line):
            done += _write(state["fd"], line[done:])

    def tamper(what: str, forget: bool = False) -> None:
        emit('{"kind":"tamper","what":' + text(what) + "}")
        if forget:
            state["key"] = None

    def trusted_file(filename) -> bool:
        return _type(filename) is _str and _starts(filename, _trusted)

    def trusted_handler(handler) -> bool:
        kind = _type(handler)
        if kind is _MethodType:
            handler = _method_func(handler)
            kind = _type(handler)
        if kind is _FunctionType:
            return trusted_file(_func_code(handler).co_filename)
        return kind is _Builtin or handler is None or derives(kind, _int)  # SIG_DFL and SIG_IGN are ints

    def handlers_are_trusted() -> bool:
        for signum in _signals:
            try:
                handler = _getsignal(signum)
            except (ValueError, OSError):
                continue
            if not trusted_handler(handler):
                return False
        return True

    def watched_module(name) -> bool:
        if _type(name) is not _str:
            return False
        for prefix in _watched_modules:
            if name == prefix or _starts(name, prefix + "."):
                return True
        return False

    # -- what arm() tells the hook, and the checks against it -------------------------------------
    def capture(info: dict) -> None:
        snapshot, functions, classes = [], [], []
        for name, module in _tuple(_dict_items(_modules)):
            if _type(name) is _str and (_starts(name, _kit_prefixes) or name in _snapshot_modules) \
                    and derives(_type(module), _ModuleType):
                namespace = _module_dict(module)
                _append(snapshot, (name, module, namespace, _tuple(_dict_items(namespace))))
        for name, module, namespace, items in snapshot:
            if not _starts(name, "unittests"):
                continue
            for _, value in items:
                if _type(value) is _FunctionType:
                    cells = _func_closure(value) or ()
                    _append(functions, (value, _func_code(value), _func_defaults(value), _func_kwdefaults(value),
                                        _tuple(_cell_contents(c) for c in cells), cells))
                elif is_class(value) and _class_module(value) == name:
                    _append(classes, value)
        for module, name in _kit_classes:  # classes a grader's checks lean on, beyond the kit's own
            found = _dict_get(_modules, module)
            if found is not None and is_class(getattr(found, name, None)):
                _append(classes, getattr(found, name))
        info["snapshot"], info["functions"] = snapshot, functions
        info["classes"] = [(cls, _tuple(_proxy_items(_class_dict(cls))), _len(_class_dict(cls))) for cls in classes]
        state["armed"] = info
        emit('{"kind":"armed"}')

    def intact() -> str:
        """\"\" when the kit is as arm() saw it, else what changed."""
        info = state["armed"]
        for name, module, namespace, items in info["snapshot"]:
            if _dict_get(_modules, name) is not module:
                return f"replaced the module {name}"
            for key, value in items:
                if _dict_get(namespace, key, _missing) is not value and not (_type(key) is _str and key in _volatile):
                    return f"changed {name}.{key}" if _type(key) is _str else f"changed {name}"
        for cls, items, size in info["classes"]:
            namespace = _class_dict(cls)
            if _len(namespace) != size:
                return f"changed the class {_class_name(cls)}"
            for key, value in items:
                if _proxy_get(namespace, key, _missing) is not value:
                    return f"changed {_class_name(cls)}.{key}" if _type(key) is _str else f"changed {_class_name(cls)}"
        for function, code, defaults, kwdefaults, contents, cells in info["functions"]:
            if (_func_code(function) is not code or _func_defaults(function) is not defaults
                    or _func_kwdefaults(function) is not kwdefaults):
                return f"changed the function {_func_name(function)}"
            for cell, content in _zip(cells, contents):
                if _cell_contents(cell) is not content:
                    return f"changed what the function {_func_name(function)} refers to"
        return ""

    def is_answer(obj) -> bool:
        for answer in state["armed"]["answers"]:
            if obj is answer:
                return True
        return False

    def from_reference(function) -> bool:
        return _starts(_func_code(function).co_filename, state["armed"]["reference_file"])

    def kit_answer(obj) -> bool:
        """True when ``obj`` is the kit's answer to this notebook, a subclass or instance of it, or built from it."""
        if is_answer(obj):
            return True
        kind = _type(obj)
        if kind is _FunctionType:
            return from_reference(obj)
        for cls in _mro(obj) if is_class(obj) else _mro(kind):
            if is_answer(cls):
                return True
            for value in _proxy_values(_class_dict(cls)):
                if _type(value) is _FunctionType and from_reference(value):
                    return True
        return False

    def record(origin, args: tuple) -> None:
        name, answers, cases = args
        local = origin.f_locals
        armed = state["armed"]
        if not (origin.f_code is armed["wrapper_code"] and _type(name) is _str and _dict_get(local, "name") is name
                and _dict_get(local, "grader") is _dict_get(armed["graders"], name, _missing)):
            tamper("replaced a grader: a report did not come from the kit's own grader")
            return
        changed = intact()
        if changed:
            tamper(changed)
        is_kit = False
        for answer in answers:
            is_kit = is_kit or kit_answer(answer)
        parts = []
        for case in cases:
            if _type(case) is not _tuple or _len(case) != 6:
                continue
            label, passed, skipped, expected, got, hint = case
            _append(parts, '{"name":' + (text(label) if _type(label) is _str else '""')
                    + ',"passed":' + ("true" if passed is True else "false")
                    + ',"skipped":' + ("true" if skipped is True else "false")
                    + ',"expected":' + (text(expected) if _type(expected) is _str else "null")
                    + ',"got":' + (text(got) if _type(got) is _str else "null")
                    + ',"hint":' + (text(hint) if _type(hint) is _str else '""') + "}")
        emit('{"kind":"record","grader":' + text(name) + ',"answer":' + ("true" if is_kit else "false")
             + ',"cases":[' + _join(",", parts) + "]}")

    def changed_kit_object(obj, attribute) -> str:
        if is_class(obj):
            module = _class_module(obj)
            return f"changed the class {module}.{_class_name(obj)}" if watched_module(module) else ""
        if _type(obj) is _FunctionType:
            return f"changed the function {_func_name(obj)}" if watched_module(_func_module(obj)) else ""
        if derives(_type(obj), _ModuleType) and _type(attribute) is _str and attribute == "__class__":
            return "changed the class of a module"
        return ""

    def memory_file(path) -> bool:
        """A path (however spelled) to a process's memory: a ``mem`` file of procfs, or ``/dev/mem``."""
        if _type(path) is _bytes:
            named_mem = path == b"mem" or _bends(path, b"/mem")
        elif _type(path) is _str:
            named_mem = path == "mem" or _ends(path, "/mem")
        else:
            return False
        if not named_mem:
            return False
        try:
            found = _stat(path)
        except OSError:
            return False
        return found.st_dev == _proc_device or found.st_rdev == _dev_mem


    def handle(event: str, args: tuple, origin) -> None:
        armed = state["armed"]
        if event == _arm:
            if armed is None:
                capture(args[0])
            else:
                tamper("armed the grader again")
        elif armed is None:
            return  # the kernel is starting: no learner code has run yet
        elif event == _record:
            record(origin, args)
        elif event == _finish:
            if origin.f_code is not armed["finish_code"]:
                tamper("called the grader's last check itself")
                return
            changed = intact()
            if changed:
                tamper(changed)
            emit('{"kind":"finish"}')
        elif event == _tripwire:
            name = args[0] if args and _type(args[0]) is _str else "?"
            tamper(f"used the kit's own answer `{name[:100]}`")
        elif event in _key_events:
            tamper(_key_events[event], forget=True)
        elif event == "sys.settrace" or event == "sys.setprofile":
            for code in armed["tracers"]:
                if origin.f_code is code:
                    return
            tamper(f"installed a tracer ({event}): no debugger or profiler may run while grading", forget=True)
        elif event == "object.__setattr__" or event == "object.__delattr__":
            what = changed_kit_object(args[0], args[1])
            if what:
                tamper(what)
        elif event == "open":
            if memory_file(args[0]):
                tamper("opened a process's memory", forget=True)
        elif event == "compile" or event == "code.__new__":
            if trusted_file(args[1]) and not trusted_file(origin.f_code.co_filename):
                tamper("made code that claims to be the kit's or Python's own", forget=True)

    def hook(event, args):
        if event not in _watched and not _starts(event, "ctypes."):
            return
        try:
            if _starts(event, "ctypes."):
                if event != "ctypes.dlopen" and state["armed"] is not None:
                    tamper(f"used ctypes ({event})", forget=True)
                return
            handle(event, args, _frame(1))  # the frame that raised the event (C functions have none)
        except BaseException:  # never raise: a traceback through this frame would show its locals
            pass

    return hook


# ---------------------------------------------------------------------------------------
# 2. arm(): the preamble cell
# ---------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    """A short one-line text of any value (learner objects may have huge or failing reprs)."""
    try:
        text = value if type(value) is str else repr(value)
        text = str.join(" ", str.split(str(text)))
    except Exception as e:  # a learner's __repr__ may raise
        text = f"<unprintable {type(value).__name__}: {type(e).__name__}>"
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 3] + "..."


def _cases(report: Any) -> tuple:
    """The report's cases as tuples of plain ``str``/``bool``/``None``: what the hook signs."""
    cases = []
    for r in getattr(report, "results", None) or []:
        cases.append((_text(r.name), r.passed is True, getattr(r, "skipped", False) is True,
                      None if r.expected is None else _text(r.expected), None if r.got is None else _text(r.got),
                      _text(r.hint or "")))
    return tuple(cases)


def _recording(grader: Callable, name: str) -> Callable:
    @functools.wraps(grader)
    def recorded(*args, **kwargs):
        report = grader(*args, **kwargs)
        sys.audit(RECORD, name, args + tuple(kwargs.values()), _cases(report))
        return report

    return recorded


class _Tripwire:
    """Stands where the kit's answer to the notebook being graded could be imported from.

    The kit's own code gets the answer through it; anything else reports its use to the hook,
    which rejects the notebook.
    """

    def __init__(self, name: str, answer: Any, kit: tuple[str, ...]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_answer", answer)
        object.__setattr__(self, "_kit", kit)

    def _use(self, depth: int = 2) -> Any:
        name, answer, kit = (object.__getattribute__(self, a) for a in ("_name", "_answer", "_kit"))
        if not sys._getframe(depth).f_code.co_filename.startswith(kit):
            sys.audit(_TRIPWIRE, name)
        return answer

    def __call__(self, *args, **kwargs):
        return self._use()(*args, **kwargs)

    def __getattr__(self, attribute: str):
        return getattr(self._use(), attribute)

    def __mro_entries__(self, bases):  # ``class Mine(InvertedResidualBlock)``
        return (self._use(),)


def _limit_memory(extra_mb: int) -> None:
    """Cap the address space at what the kernel holds now plus ``extra_mb`` (Linux).

    Relative to the current size because importing torch alone maps several GB of address space;
    an allocation past the cap raises ``MemoryError`` instead of swapping the machine. Child
    processes are capped together by the warden (:mod:`unittests.grading.warden`).
    """
    import resource

    with open("/proc/self/status") as f:
        size_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    cap = size_kb * 1024 + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


class _CappedStream(io.TextIOBase):
    """Forwards at most ``limit`` characters to ``stream``, then one truncation line, then nothing.

    The first line of defence against a flood of output; the grader also caps what it accepts
    from the kernel, whatever writes it.
    """

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream, self._left, self._told = stream, limit, False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        n = len(text)
        if self._left > 0:
            kept = text[: self._left]
            self._left -= len(kept)
            self._stream.write(kept)
        elif not self._told:
            self._told = True
            self._stream.write("\n[output truncated by the grader]\n")
        return n

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty...: the real stream's
        return getattr(self._stream, name)


def _kit_folders() -> tuple[str, ...]:
    from pathlib import Path

    import helper_utils
    import unittests

    return tuple(str(Path(m.__file__).parent) + "/" for m in (helper_utils, unittests))


def arm(notebook: str, memory_mb: int | None = None, output_chars: int | None = None) -> None:
    """Wrap the graders, set the tripwires, cap memory and output, and tell the hook (before any learner code).

    Args:
        notebook: the notebook being graded, e.g. ``"02_inverted_residual_block"``.
        memory_mb: address space the learner's code may add to the kernel (Linux).
        output_chars: characters of stdout and of stderr passed on; the rest is dropped.
    """
    import importlib

    import helper_utils
    import helper_utils.reference as reference
    import unittests
    from unittests import framework

    kit = _kit_folders()
    graders = {name: getattr(unittests, name) for name in unittests.__all__ if name.startswith("test_")}
    wrappers = {name: _recording(grader, name) for name, grader in graders.items()}
    for name, wrapper in wrappers.items():
        setattr(unittests, name, wrapper)

    module = importlib.import_module(f"helper_utils.reference.{notebook.split('_', 1)[1]}")
    answers = []
    for name in module.__all__:
        answer = getattr(module, name)
        wire = _Tripwire(name, answer, kit)
        answers += [answer, wire]
        for namespace in (module, reference, helper_utils):
            namespace.__dict__[name] = wire

    if output_chars is not None:
        sys.stdout = _CappedStream(sys.stdout, output_chars)
        sys.stderr = _CappedStream(sys.stderr, output_chars)
    if memory_mb is not None and sys.platform.startswith("linux"):
        _limit_memory(memory_mb)

    time_limit = framework._time_limit.__wrapped__.__code__
    tracers = {time_limit} | {c for c in time_limit.co_consts if hasattr(c, "co_filename")}
    sys.audit(_ARM, {
        "graders": dict(graders),
        "wrapper_code": next(iter(wrappers.values())).__code__,
        "finish_code": finish.__code__,
        "tracers": frozenset(tracers),
        "answers": tuple(answers),
        "reference_file": module.__file__,
    })


# ---------------------------------------------------------------------------------------
# 3. finish(): the last cell
# ---------------------------------------------------------------------------------------

def finish() -> None:
    """Ask the hook for its last check of the kit and its closing line (the grader's last cell)."""
    sys.audit(FINISH)
