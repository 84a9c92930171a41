"""Helpers for the fashion visual-search course: data, models, training, retrieval, plots, widgets.

Every name a notebook needs is importable from here, e.g. ``from helper_utils import fetch``.
The reference answers of earlier exercises live here too (``InvertedResidualBlock``,
``MobileNetBackbone``, ``TripletDataset``, ...), so a later notebook never depends on an
earlier exercise being right.

Names are imported on first use (PEP 562), so that ``python -m helper_utils.data`` and
friends start without importing every module twice.
"""

from importlib import import_module

_EXPORTS = {
    "helper_utils.data": ["CLASSES_7", "CLASSES_10", "ClothingDataset", "DatasetNotFoundError", "FetchError",
                          "data_root", "dataset_dir", "fetch", "make_loader"],
    "helper_utils.device": ["get_device", "seed_everything"],
    "helper_utils.explain": ["GradCAM", "grad_cam", "overlay_cam"],
    "helper_utils.models": ["InvertedResidualBlock", "MobileNetBackbone", "MobileNetLikeClassifier",
                            "SiameseEncoder", "SiameseNetwork", "count_parameters"],
    "helper_utils.retrieval": ["find_closest", "get_embeddings", "get_query_img_embedding", "retrieval_metrics"],
    "helper_utils.search_index": ["SearchIndex"],
    "helper_utils.training": ["checkpoint_dir", "compute_class_weights", "evaluate", "load_checkpoint", "predict",
                              "save_checkpoint", "train_classifier", "train_siamese"],
    "helper_utils.transforms": ["train_transform", "val_transform"],
    "helper_utils.triplets": ["TripletDataset"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'helper_utils' has no attribute {name!r}")
    value = getattr(import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
