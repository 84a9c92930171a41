"""environment.yml and pyproject.toml must describe the same environment."""

import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_installs_the_kit_for_every_notebook():
    pip_section = [d for d in _environment()["dependencies"] if isinstance(d, dict)]
    assert pip_section == [{"pip": ["-e .[going-further]"]}], \
        "environment.yml must install the kit with `pip install -e .[going-further]`"


def test_the_going_further_stack_is_an_extra_not_a_core_dependency():
    core = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    extra = {_name(r) for r in _pyproject()["project"]["optional-dependencies"]["going-further"]}
    assert {"faiss-cpu", "onnx", "onnxruntime", "fastapi", "uvicorn"} <= extra
    assert not core & extra, f"notebooks 01-08 should not install {sorted(core & extra)}"


def test_environment_python_is_allowed_by_pyproject():
    conda = [d for d in _environment()["dependencies"] if isinstance(d, str)]
    python = next(d for d in conda if d.startswith("python"))
    version = tuple(int(x) for x in python.split("=")[-1].split("."))
    minimum = tuple(int(x) for x in _pyproject()["project"]["requires-python"].lstrip(">=").split("."))
    assert version >= minimum


def test_environment_lists_no_package_beside_pyproject():
    """Conda packages other than python and pip would be a second, drifting list of dependencies."""
    conda = {_name(d.split("=")[0]) for d in _environment()["dependencies"] if isinstance(d, str)}
    assert conda <= {"python", "pip"}, f"declare these in pyproject.toml instead: {sorted(conda - {'python', 'pip'})}"


def test_pyproject_declares_the_runtime_stack():
    names = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    for needed in ("torch", "torchvision", "numpy", "matplotlib", "torchinfo", "tqdm", "pillow",
                   "ipywidgets", "jupyterlab", "scikit-learn"):
        assert needed in names
    dev = {_name(r) for r in _pyproject()["project"]["optional-dependencies"]["dev"]}
    assert {"pytest", "nbval"} <= dev


def test_packages_import_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import helper_utils  # noqa: F401
    import unittests  # noqa: F401



def test_an_installed_kit_carries_the_pinned_file_list():
    """fetch reads helper_utils/dataset_files.txt: a wheel (not only a clone) must ship it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "dataset_files.txt" in package_data["helper_utils"]
    assert (ROOT / "helper_utils" / "dataset_files.txt").is_file()
