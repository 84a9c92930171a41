"""Helpers for the fashion visual-search course: data, models, training, retrieval, plots, widgets.

Every name a notebook needs is importable from here, e.g. ``from helper_utils import fetch``.
The reference answers of earlier exercises live here too (``InvertedResidualBlock``,
``MobileNetBackbone``, ``TripletDataset``, ...), so a later notebook never depends on an
earlier exercise being right.
"""

from helper_utils.data import (CLASSES_7, CLASSES_10, ClothingDataset, DatasetNotFoundError, FetchError,
                               data_root, dataset_dir, fetch, make_loader)
from helper_utils.device import get_device, seed_everything
from helper_utils.models import (InvertedResidualBlock, MobileNetBackbone, MobileNetLikeClassifier,
                                 SiameseEncoder, SiameseNetwork, count_parameters)
from helper_utils.retrieval import find_closest, get_embeddings, get_query_img_embedding, retrieval_metrics
from helper_utils.training import (checkpoint_dir, compute_class_weights, evaluate, load_checkpoint, predict,
                                   save_checkpoint, train_classifier, train_siamese)
from helper_utils.transforms import train_transform, val_transform
from helper_utils.triplets import TripletDataset

__all__ = [
    "CLASSES_7", "CLASSES_10", "ClothingDataset", "DatasetNotFoundError", "FetchError",
    "data_root", "dataset_dir", "fetch", "make_loader",
    "get_device", "seed_everything",
    "InvertedResidualBlock", "MobileNetBackbone", "MobileNetLikeClassifier", "SiameseEncoder",
    "SiameseNetwork", "count_parameters",
    "find_closest", "get_embeddings", "get_query_img_embedding", "retrieval_metrics",
    "checkpoint_dir", "compute_class_weights", "evaluate", "load_checkpoint", "predict", "save_checkpoint",
    "train_classifier", "train_siamese",
    "train_transform", "val_transform",
    "TripletDataset",
]
