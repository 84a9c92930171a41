"""Helpers for the fashion visual-search course: what the notebooks import.

Every name a notebook needs is importable from here, e.g. ``from helper_utils import fetch``.
The reference answers of the exercises are here too (``InvertedResidualBlock``,
``MobileNetBackbone``, ``TripletDataset``, ...), so a later notebook never depends on an
earlier exercise being right. They are generated from the solution notebooks into
:mod:`helper_utils.reference` (``make release``); edit the notebook, never the copy.

Layout: one module per concept (``archive``, ``data``, ``loaders``, ``training``, ``retrieval``,
``plotting``, ...), the reference answers in ``reference/``, and what only the going-further notebooks (07-10) need in
``going_further/``. Maintainer tools (release, benchmarks) live outside the package, in ``tools/``.

Names are imported on first use (PEP 562): ``import helper_utils`` stays fast, and
``python -m helper_utils.data fetch`` does not import its own module twice.
"""

from importlib import import_module

_EXPORTS = {
    "helper_utils.archive": ["FetchError", "dataset_dir", "fetch"],
    "helper_utils.checkpoints": ["load_checkpoint", "save_checkpoint"],
    "helper_utils.data": ["CLASSES_7", "CLASSES_10", "ClothingDataset", "DatasetNotFoundError", "data_root"],
    "helper_utils.device": ["get_device", "machine_description", "seed_everything"],
    "helper_utils.loaders": ["make_loader"],
    "helper_utils.paths": ["checkpoint_dir"],
    "helper_utils.retrieval": ["knn", "l2_normalize", "retrieval_metrics"],
    "helper_utils.training": ["count_parameters", "evaluate", "predict", "train_classifier", "train_siamese"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
_REFERENCE = "helper_utils.reference"  # every name in its __all__: the exercises' answers


def __getattr__(name: str):
    if name in _MODULE_OF:
        value = getattr(import_module(_MODULE_OF[name]), name)
    else:
        reference = import_module(_REFERENCE)
        if name not in reference.__all__:
            raise AttributeError(f"module 'helper_utils' has no attribute {name!r}")
        value = getattr(reference, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF) | set(import_module(_REFERENCE).__all__))
