"""Launch anywhere: Binder's configuration, and the Colab set-up cell at the top of every notebook.

The Colab cell is run twice: as it runs outside Colab (it must do nothing), and, in a fresh
virtual environment with a fake ``google.colab`` module, against a local clone of this
repository tagged like a release (it must install the kit from the tag and fetch the data).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
COLAB_TAG = "colab-setup"


def colab_cell(path: Path) -> str:
    return nbformat.read(path, as_version=4).cells[1].source


# ---------------------------------------------------------------------------------------
# Binder
# ---------------------------------------------------------------------------------------

def test_binder_reads_the_root_configuration():
    # repo2docker uses binder/ (or .binder/) instead of the root when that folder exists.
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e .[lab,going-further]" in pip  # the kit, every notebook's packages and JupyterLab, from pyproject.toml


def test_binder_postbuild_fetches_the_data():
    post = ROOT / "postBuild"
    text = post.read_text()
    assert text.startswith("#!/bin/bash\n") and "set -e" in text
    assert post.stat().st_mode & stat.S_IXUSR, "postBuild must be executable (git keeps the bit)"
    commands = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "python -m helper_utils.data fetch" in commands
    from helper_utils.data import _parser

    assert _parser().parse_args(["fetch"]).command == "fetch"  # the command exists as written


# ---------------------------------------------------------------------------------------
# Colab
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: str(p.relative_to(ROOT / "notebooks")))
def test_every_notebook_starts_with_the_colab_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    cell = nb.cells[1]
    assert cell.cell_type == "code" and cell.metadata.get("tags") == [COLAB_TAG]
    assert cell.source == colab_cell(NOTEBOOKS[0])  # one cell, the same everywhere
    assert not cell.get("outputs")


def test_colab_cell_pins_one_repository_and_tag():
    source = colab_cell(NOTEBOOKS[0])
    assert len(re.findall(r"^REPO = ", source, re.M)) == 1 and len(re.findall(r"^TAG = ", source, re.M)) == 1
    assert re.search(r'^TAG = "[A-Za-z0-9][A-Za-z0-9._-]*"', source, re.M)  # a fork's tags are its own
    assert "fashion-visual-search-kit @ git+{REPO}@{TAG}" in source
    assert 'if "google.colab" in sys.modules:' in source


def test_colab_cell_does_nothing_outside_colab(tmp_path):
    run = subprocess.run([sys.executable, "-c", colab_cell(NOTEBOOKS[0])], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and list(tmp_path.iterdir()) == []


def test_colab_cell_left_on_the_placeholder_says_what_to_set(tmp_path):
    """On Colab, with REPO still naming <org>: one line saying what to set, no pip run and no traceback."""
    source = re.sub(r'^REPO = "https://github\.com/[^/"]+/', 'REPO = "https://github.com/<org>/', colab_cell(NOTEBOOKS[0]),
                    count=1, flags=re.M)
    assert "/<org>/" in source
    program = ("import sys, types\n"
               "sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
               f"exec(compile({source!r}, 'colab-cell', 'exec'))\n")
    env = {**os.environ, "PIP_NO_INDEX": "1"}  # were pip run anyway, it could not reach the network
    run = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert len(run.stdout.splitlines()) == 1 and "Set REPO" in run.stdout and "instructor" in run.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_grader_skips_the_colab_cell():
    from unittests.grading.cells import RUN_TAGS

    assert COLAB_TAG not in RUN_TAGS


@pytest.mark.slow
def test_colab_cell_installs_the_kit_from_the_tag(tmp_path):
    """Fresh venv, fake google.colab, REPO pointed at a local clone tagged as the cell's TAG."""
    from helper_utils.paths import data_root

    if not (data_root() / "clothing-dataset-small").is_dir():
        pytest.skip("needs the fetched dataset (the cell's fetch must not download here)")
    source = colab_cell(NOTEBOOKS[0])
    tag = re.search(r'^TAG = "(.+)"', source, re.M).group(1)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "tag", tag], check=True)
    source = re.sub(r'^REPO = .*$', f'REPO = "file://{clone}"', source, count=1, flags=re.M)

    venv = tmp_path / "venv"
    # No pip of its own: the venv's bundled pip may predate git+file:// requirements; this one is recent.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # pip and the kit's dependencies (torch...) come from this environment, after the venv's own
    # packages, so only the kit itself is installed: from the tag, not from this working tree.
    Path(site, "kit-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    program = ("import sys, types\n"
               "sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
               f"exec(compile({source!r}, 'colab-cell', 'exec'))\n"
               "import helper_utils.paths, unittests\n"
               "print('kit at', helper_utils.paths.REPO)\n")
    env = {**os.environ, "PIP_NO_DEPS": "1", "PIP_NO_BUILD_ISOLATION": "0", "PYTHONPATH": "",
           "FASHION_KIT_DATA": str(data_root())}
    run = subprocess.run([python, "-c", program], cwd=content, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "already fetched" in run.stdout + run.stderr
    kit_at = run.stdout.strip().splitlines()[-1]
    assert kit_at.startswith("kit at") and str(venv) in kit_at  # installed into the venv, not imported from here
    listed = subprocess.run([python, "-m", "pip", "show", "fashion-visual-search-kit"], capture_output=True,
                            text=True, env=env).stdout
    assert "Location: " + site in listed
