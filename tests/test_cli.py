"""helper_utils.cli, and every kit command answering bad input with one line on stderr and exit code 1.

Each row runs one command's ``main`` in this process (``python -m`` calls nothing else) with bad
arguments or bad files: a wrong option or value, a file that is missing, corrupt or of the wrong
shape, a folder that cannot be written.
"""

from __future__ import annotations

import importlib
import json

import pytest

from helper_utils.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, ArgumentParser, int_at_least, one_line, run
from helper_utils.files import shown_path


def test_a_bad_argument_is_one_line_and_exit_code_1(capsys):
    parser = ArgumentParser(prog="python -m kit.tool")
    parser.add_argument("--n", type=int_at_least(1))
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--n", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err == "error: argument --n: must be an integer of at least 1, got '0' (see python -m kit.tool --help)\n"


def test_run_turns_bad_input_into_one_line(capsys):
    def missing():
        open("/no/such/folder/file.json")

    assert run(missing) == 1
    assert capsys.readouterr().err == "error: /no/such/folder/file.json: No such file or directory\n"
    assert run(lambda: (_ for _ in ()).throw(ValueError("first line\n  second line"))) == 1
    assert capsys.readouterr().err == "error: first line second line\n"
    assert run(lambda: 3) == 3 and run(lambda: None) == 0


def test_run_answers_ctrl_c_as_shells_do(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert run(interrupted, interrupted="stopped: nothing was written") == EXIT_INTERRUPTED == 128 + 2  # SIGINT
    assert capsys.readouterr().err == "stopped: nothing was written\n"
    assert EXIT_BAD_INPUT == 1  # what the README and every command's help promise


def test_run_leaves_bugs_their_traceback():
    with pytest.raises(ZeroDivisionError):
        run(lambda: 1 / 0)


def test_names_are_shown_escaped_on_one_line():
    assert shown_path(b"caf\xe9.jpg") == "caf\\xe9.jpg" and shown_path("a\nb.jpg") == "a\\nb.jpg"
    assert one_line(FileNotFoundError(2, "No such file or directory", "caf\udce9.jpg")) == \
        "caf\\xe9.jpg: No such file or directory"


@pytest.fixture
def files(tmp_path):
    """Bad files for the commands: corrupt JSON, JSON of the wrong shape, a file where a folder should be."""
    (tmp_path / "corrupt.json").write_text("{not json")
    (tmp_path / "shape.json").write_text(json.dumps({"setup": 1, "rows": 2}))
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "empty").mkdir()
    return tmp_path


BAD_INPUT = [  # (module, argv, words of the one-line error); {tmp} is the folder of the `files` fixture
    ("helper_utils.data", [], "the following arguments are required"),
    ("helper_utils.data", ["fetch", "--bogus"], "unrecognized arguments: --bogus"),
    ("helper_utils.data", ["fetch", "--archive", "{tmp}/none.zip", "--root", "{tmp}/data"], "archive not found"),
    ("helper_utils.data", ["fetch", "--archive", "{tmp}/corrupt.json", "--root", "{tmp}/data"], "not a zip archive"),
    ("helper_utils.data", ["cache", "--image-size", "0"], "must be an integer of at least 1"),
    ("helper_utils.data", ["cache", "--classes", "eight"], "invalid choice: 'eight'"),
    ("helper_utils.data", ["cache", "--root", "{tmp}/empty"], "split is not at"),
    ("helper_utils.going_further.serve", ["build", "--backend", "annoy"], "invalid choice: 'annoy'"),
    ("helper_utils.going_further.serve", ["build", "--splits", "holdout"], "invalid choice: 'holdout'"),
    ("helper_utils.going_further.serve", ["build", "--checkpoints", "{tmp}/empty", "--out", "{tmp}/svc"],
     "no encoder checkpoint"),
    ("helper_utils.going_further.serve", ["run", "--port", "0"], "must be a port number from 1 to 65535"),
    ("helper_utils.going_further.serve", ["--port", "http"], "must be a port number"),
    ("helper_utils.going_further.serve", ["run", "--threads", "0"], "must be an integer of at least 1"),
    ("helper_utils.going_further.serve", ["run", "--max-connections", "-5"], "must be an integer of at least 1"),
    ("tools.scale_bench", ["--n", "0"], "--n: must be an integer of at least 1, got '0'"),
    ("tools.scale_bench", ["--dim", "1"], "--dim: must be an integer of at least 2"),
    ("tools.scale_bench", ["--queries", "10", "--single", "20"], "--single (20) cannot be more than --queries (10)"),
    ("tools.scale_bench", ["--from-json", "{tmp}/none.json", "--markdown", "{tmp}/r.md"], "none.json: No such file"),
    ("tools.scale_bench", ["--from-json", "{tmp}/corrupt.json", "--markdown", "{tmp}/r.md"], "is not a scale benchmark's JSON"),
    ("tools.scale_bench", ["--from-json", "{tmp}/binary.json", "--markdown", "{tmp}/r.md"], "not UTF-8"),
    ("tools.scale_bench", ["--from-json", "{tmp}/shape.json", "--markdown", "{tmp}/r.md"], "it needs the objects"),
    ("tools.scale_bench", ["--from-json", "{tmp}/list.json", "--markdown", "{tmp}/r.md"], "it needs the objects"),
    ("tools.onnx_bench", ["--images", "0"], "--images: must be an integer of at least 1"),
    ("tools.onnx_bench", ["--batch-sizes", "one"], "--batch-sizes: must be an integer"),
    ("tools.onnx_bench", ["--checkpoints", "{tmp}/empty", "--out", "{tmp}/onnx"], "no encoder checkpoint"),
    ("tools.loadtest", ["--requests", "0"], "--requests: must be an integer of at least 1"),
    ("tools.loadtest", ["--concurrency", "many"], "--concurrency: must be an integer"),
    ("tools.loadtest", ["--time-limit", "0", "--dir", "{tmp}/empty"], "time_limit_s should be a number from 1 to 600"),
    ("tools.loadtest", ["--baseline", "no-such-commit-anywhere", "--dir", "{tmp}/empty"], "is not a commit"),
    ("tools.bench", [], "the following arguments are required"),
    ("tools.bench", ["pipeline", "--batch-size", "0"], "--batch-size: must be an integer of at least 1"),
    ("tools.bench", ["results", "--recipes", "fancy"], "invalid choice: 'fancy'"),
    ("tools.bench", ["results", "--from-json", "{tmp}/corrupt.json", "--markdown", "{tmp}/b.md"],
     "is not a run saved by"),
    ("tools.bench", ["results", "--from-json", "{tmp}/shape.json", "--markdown", "{tmp}/b.md"], "is not a run saved by"),
    ("tools.siamese_sweep", ["--variations", "not json"], "--variations: is not JSON"),
    ("tools.siamese_sweep", ["--variations", "[1, 2]"], "must be a JSON list of objects"),
    ("tools.siamese_sweep", ["--from-json", "{tmp}/none.json"], "none.json: No such file"),
    ("tools.siamese_sweep", ["--from-json", "{tmp}/shape.json"], "is not a sweep saved with --json"),
    ("tools.siamese_sweep", ["--seeds", "0", "--backbone", "{tmp}/b.pt"], "give --backbone or --seeds, not both"),
    ("tools.release", ["--bogus"], "unrecognized arguments: --bogus"),
    ("tools.decode_memory", ["--bogus"], "unrecognized arguments: --bogus"),
    ("tools.fork", ["--org", "my org"], "owner 'my org'"),
    ("tools.fork", [], "the following arguments are required: --org"),
    ("unittests.grade", ["{tmp}/nowhere", "--out", "{tmp}/g.csv"], "nowhere"),
    ("unittests.grade", ["--jobs", "many"], "--jobs: invalid int value"),
    ("unittests.grade", ["--shard", "5"], "expected i/n"),
    ("tools.grade_bench", ["--learners", "0"], "--learners: must be an integer of at least 1"),
    ("tools.grade_bench", ["--learners", "2", "--compare", "{tmp}/empty"], "is not a checkout of the kit"),
    ("tools.pin_dataset", [], "the following arguments are required: archive"),
    ("tools.pin_dataset", ["{tmp}/none.zip"], "no archive at"),
    ("tools.pin_dataset", ["{tmp}/corrupt.json"], "not a zip archive"),
]


@pytest.mark.parametrize("module, argv, words", BAD_INPUT, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_command_answers_bad_input_with_one_line_and_exit_code_1(module, argv, words, files, capsys,
                                                                         monkeypatch):
    monkeypatch.setenv("FASHION_KIT_DATA", str(files / "empty"))  # nothing here may touch the real data or artifacts
    main = importlib.import_module(module).main
    try:
        code = main([arg.format(tmp=files) for arg in argv])
    except SystemExit as exit_info:  # argparse exits by itself
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert words in err, err
