"""What only the going-further notebooks (07-10) need: Grad-CAM, the wide model and its recipe, search at
scale (FAISS), ONNX export and the search service.

Notebooks 09 and 10 also need the optional ``going-further`` dependencies (FAISS, ONNX, onnxruntime,
FastAPI, uvicorn). :func:`require_extras` checks for them first and says how to install them.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtrasError", "require_extras"]

# import name -> pip package, for the packages of the `going-further` extra in pyproject.toml
EXTRAS = {"faiss": "faiss-cpu", "onnx": "onnx", "onnxruntime": "onnxruntime", "fastapi": "fastapi",
          "uvicorn": "uvicorn", "multipart": "python-multipart", "httpx": "httpx"}
INSTALL = "pip install -e '.[going-further]'   (from the kit's folder; or `make going-further`)"


class MissingExtrasError(ImportError):
    """Some of the going-further packages are not installed; the message says how to install them.

    In a notebook it shows as that message alone, without a traceback (IPython's ``_render_traceback_``).
    """

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def require_extras(names: list[str] | None = None) -> None:
    """Raise :class:`MissingExtrasError` naming every missing package of ``names`` (default: all of them)."""
    missing = [EXTRAS[name] for name in (names or EXTRAS) if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtrasError(
            f"This notebook needs the kit's going-further packages, and these are not installed: "
            f"{', '.join(missing)}.\nInstall them, then restart the kernel:\n    {INSTALL}")
