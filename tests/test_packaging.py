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
    assert pip_section == [{"pip": ["-e .[lab,going-further]"]}], \
        "environment.yml must install the kit with `pip install -e .[lab,going-further]`"


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
                   "ipywidgets", "scikit-learn"):
        assert needed in names
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["lab"]} == {"jupyterlab"}
    assert {"nbformat", "nbclient", "jupyter-client", "ipykernel"} <= {_name(r) for r in extras["grading"]}
    dev = {_name(r) for r in extras["dev"]}
    assert {"pytest", "nbval"} <= dev
    assert "fashion-visual-search-kit[lab,grading,going-further]" in extras["dev"]


# Packages of the notebook server and kernel: Colab has its own, which the kit's install must leave alone.
SERVER_AND_KERNEL = {"jupyterlab", "notebook", "nbclassic", "jupyter-server", "jupyterlab-server", "ipykernel",
                     "jupyter-client", "nbclient", "nbconvert"}


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution ``requirements`` pull in, as resolved in this environment (markers and extras honoured)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        name = _name(requirement.name)
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for wanted in ("", *requirement.extras):
            todo += [(Requirement(r), wanted) for r in requires]
    return seen


def test_the_colab_install_pulls_no_notebook_server_or_kernel():
    """Colab installs the kit's core dependencies into its running kernel: pip would upgrade its own server or
    kernel packages (ipykernel, jupyter-client) if any of them asked for newer ones."""
    core = _pyproject()["project"]["dependencies"]
    pulled = _closure(core)
    assert {"torch", "ipywidgets", "traitlets"} <= pulled  # the walk does follow the requirements
    assert not pulled & SERVER_AND_KERNEL, f"the core install pulls {sorted(pulled & SERVER_AND_KERNEL)}"
    assert "jupyterlab" in _closure(_pyproject()["project"]["optional-dependencies"]["lab"])


def test_ipywidgets_floor_is_colabs_own():
    """Colab ships ipywidgets 7.7.1 and renders 7's widgets only: a higher floor would replace it."""
    from packaging.requirements import Requirement

    ipywidgets = next(Requirement(r) for r in _pyproject()["project"]["dependencies"] if _name(r) == "ipywidgets")
    assert ipywidgets.specifier.contains("7.7.1") and ipywidgets.specifier.contains("8.1.5")


def test_packages_import_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import helper_utils  # noqa: F401
    import unittests  # noqa: F401


def test_make_lab_installs_jupyterlab_with_the_course():
    """JupyterLab is no longer a core dependency: the course's own install (`make lab`, `make setup`) adds it."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP): pyproject.toml\n", 1)[1].split("\n\n", 1)[0]
    assert "pip install --quiet -e '.[lab]'" in recipe
    assert re.search(r"^lab: data\n", makefile, re.M) and re.search(r"^data: \$\(STAMP\)", makefile, re.M)


def test_an_installed_kit_carries_the_pinned_file_list():
    """fetch reads helper_utils/dataset_files.txt: a wheel (not only a clone) must ship it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "dataset_files.txt" in package_data["helper_utils"]
    assert (ROOT / "helper_utils" / "dataset_files.txt").is_file()
