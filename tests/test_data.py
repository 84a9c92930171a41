"""helper_utils.data: ClothingDataset (ImageFolder order, any image mode, skipped files), its caches, the cache command."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

import helper_utils.data as data
from helper_utils.data import CLASSES_7, CLASSES_10, ClothingDataset, DatasetNotFoundError, main


def _jpeg(color=(200, 30, 30), size=(12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_course_classes_are_seven_of_the_ten():
    assert CLASSES_10 == sorted(CLASSES_10) and set(CLASSES_7) < set(CLASSES_10)
    assert set(CLASSES_10) - set(CLASSES_7) == {"outwear", "shirt", "skirt"}


# ---------------------------------------------------------------------------------------------
# ClothingDataset
# ---------------------------------------------------------------------------------------------

def test_dataset_matches_torchvision_imagefolder(synthetic_imagefolder):
    ours = ClothingDataset("train", root=synthetic_imagefolder, image_size=16, cache=False)
    split_dir = synthetic_imagefolder / "clothing-dataset-small" / "train"
    theirs = ImageFolder(str(split_dir), transform=T.Resize((16, 16)))
    assert ours.classes == theirs.classes == CLASSES_7
    assert ours.class_to_idx == theirs.class_to_idx
    assert ours.samples == theirs.samples and ours.targets == theirs.targets
    assert ours.root == theirs.root
    for i in range(len(ours)):
        image, label = ours[i]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (16, 16)
        assert label == theirs[i][1]
        np.testing.assert_array_equal(np.asarray(image), np.asarray(theirs[i][0]))


def test_dataset_applies_the_transform_and_exports_tensors(synthetic_imagefolder):
    dataset = ClothingDataset("validation", root=synthetic_imagefolder, transform=T.ToTensor(), cache=False)
    image, label = dataset[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and label == 0
    images, targets = dataset.as_tensors()
    assert images.shape == (21, 3, 64, 64) and images.dtype == torch.uint8
    assert targets.dtype == torch.long and targets.tolist() == dataset.targets
    torch.testing.assert_close(images[0].float() / 255, image)
    assert dataset.images.shape == (21, 64, 64, 3) and dataset.images.dtype == np.uint8
    assert "Number of datapoints: 21" in repr(dataset)


def test_any_image_mode_becomes_rgb(synthetic_imagefolder):
    folder = synthetic_imagefolder / "clothing-dataset-small" / "test" / "hat"
    Image.new("L", (30, 20), 77).save(folder / "gray.jpg")
    Image.new("LA", (30, 20), (90, 10)).save(folder / "gray_alpha.png")
    Image.new("RGBA", (30, 20), (10, 200, 30, 0)).save(folder / "rgba.png")
    Image.new("CMYK", (30, 20), (0, 255, 0, 0)).save(folder / "cmyk.jpg")
    Image.new("I;16", (30, 20), 1000).save(folder / "deep.png")
    palette = Image.new("P", (30, 20), 1)
    palette.putpalette([0, 0, 0, 250, 20, 20] + [0] * 762)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no PIL warnings about palettes either
        dataset = ClothingDataset("test", classes=["hat"], root=synthetic_imagefolder, image_size=8, cache=False)
    assert len(dataset) == 9 and not dataset.skipped
    by_name = {Path(path).name: i for i, (path, _) in enumerate(dataset.samples)}
    assert dataset.images[by_name["gray.jpg"]][0, 0].tolist() == [77, 77, 77]
    assert dataset.images[by_name["rgba.png"]][0, 0].tolist() == [255, 255, 255]  # transparent: on white, as queries
    assert dataset.images[by_name["palette.png"]][0, 0].tolist() == [250, 20, 20]
    assert all(dataset[i][0].mode == "RGB" and dataset[i][0].size == (8, 8) for i in range(len(dataset)))


def test_unreadable_images_are_skipped_with_one_warning_each(synthetic_imagefolder):
    folder = synthetic_imagefolder / "clothing-dataset-small" / "train" / "dress"
    (folder / "garbage.jpg").write_bytes(b"not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    whole = _jpeg(size=(64, 64))
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.warns(UserWarning) as record:
        dataset = ClothingDataset("train", root=synthetic_imagefolder, cache=False)
    messages = [str(w.message) for w in record if "skipped unreadable image" in str(w.message)]
    assert len(messages) == 3
    assert {Path(p).name for p in dataset.skipped} == {"garbage.jpg", "empty.jpg", "truncated.jpg"}
    assert any(m.startswith(f"skipped unreadable image {folder / 'truncated.jpg'}: QueryImageError")
               and "truncated or corrupt" in m for m in messages)
    assert len(dataset) == 21 == len(dataset.images) == len(dataset.targets)
    assert all(Path(path).name not in {"garbage.jpg", "empty.jpg"} for path, _ in dataset.samples)


@pytest.mark.parametrize("classes, expected", [("seven", CLASSES_7), ("all", CLASSES_10), ("ten", CLASSES_10),
                                               (["shoes", "dress"], ["dress", "shoes"])])
def test_class_selection(make_imagefolder, classes, expected):
    root = make_imagefolder(classes=CLASSES_10, splits=("train",), per_class=1, size=(8, 8))
    dataset = ClothingDataset("train", classes=classes, root=root, image_size=8, cache=False)
    assert dataset.classes == expected and len(dataset) == len(expected)
    assert dataset.targets == list(range(len(expected)))


@pytest.mark.parametrize("kwargs, message", [
    ({"classes": "eight"}, "classes must be one of ['all', 'seven', 'ten']"),
    ({"classes": ["dress", "socks"]}, "classes must be distinct names from"),
    ({"classes": ["hat", "hat"]}, "classes must be distinct names from"),
    ({"classes": []}, "classes must be distinct names from"),
    ({"split": "val"}, "split must be one of ['train', 'validation', 'test'], got 'val'"),
    ({"image_size": 0}, "image_size must be a positive int"),
])
def test_bad_arguments_name_the_allowed_values(synthetic_imagefolder, kwargs, message):
    with pytest.raises(ValueError) as info:
        ClothingDataset(root=synthetic_imagefolder, cache=False, **kwargs)
    assert message in str(info.value)


def test_missing_split_says_how_to_fetch(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        ClothingDataset("test", root=tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    for fix in ("`make data` in the kit's folder", "helper_utils.fetch()"):
        assert fix in str(info.value)
    assert "python -m" not in str(info.value)  # a plain `python` in a fresh shell may lack torch


def test_missing_class_folder_is_reported(make_imagefolder):
    root = make_imagefolder(classes=["dress", "hat"], splits=("train",), per_class=1)
    with pytest.raises(DatasetNotFoundError, match="no folder for"):
        ClothingDataset("train", root=root, cache=False)


# ---------------------------------------------------------------------------------------------
# the on-disk cache
# ---------------------------------------------------------------------------------------------

def test_second_construction_loads_from_the_cache_without_decoding(synthetic_imagefolder, monkeypatch):
    first = ClothingDataset("train", root=synthetic_imagefolder, image_size=32)
    cache_files = list((synthetic_imagefolder / "cache").glob("*.npz"))
    assert [f.name.split("-")[:3] for f in cache_files] == [["train", "seven", "32px"]]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image although the cache was there")

    monkeypatch.setattr(data.Image, "open", no_decoding)
    second = ClothingDataset("train", root=synthetic_imagefolder, image_size=32)
    np.testing.assert_array_equal(first.images, second.images)
    assert first.samples == second.samples and first.targets == second.targets


def test_a_changed_folder_rebuilds_the_cache(synthetic_imagefolder):
    assert len(ClothingDataset("test", root=synthetic_imagefolder, image_size=8)) == 21
    new_photo = synthetic_imagefolder / "clothing-dataset-small" / "test" / "hat" / "new.jpg"
    Image.new("RGB", (9, 9), "red").save(new_photo)
    assert len(ClothingDataset("test", root=synthetic_imagefolder, image_size=8)) == 22
    assert len(list((synthetic_imagefolder / "cache").glob("*.npz"))) == 1  # the stale cache is gone


def test_cached_skips_are_still_reported(synthetic_imagefolder):
    (synthetic_imagefolder / "clothing-dataset-small" / "test" / "hat" / "bad.jpg").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="bad.jpg"):
        ClothingDataset("test", root=synthetic_imagefolder, image_size=8)
    with pytest.warns(UserWarning, match="bad.jpg"):
        again = ClothingDataset("test", root=synthetic_imagefolder, image_size=8)
    assert len(again) == 21 and len(again.skipped) == 1


def test_a_damaged_cache_is_rebuilt(synthetic_imagefolder):
    ClothingDataset("validation", root=synthetic_imagefolder, image_size=8)
    (cache_file,) = (synthetic_imagefolder / "cache").glob("*.npz")
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring unreadable cache"):
        assert len(ClothingDataset("validation", root=synthetic_imagefolder, image_size=8)) == 21


def test_cache_false_writes_nothing(synthetic_imagefolder):
    ClothingDataset("validation", root=synthetic_imagefolder, image_size=8, cache=False)
    assert not (synthetic_imagefolder / "cache").exists()


def test_cache_command_builds_every_split(synthetic_imagefolder, capsys):
    assert main(["cache", "--root", str(synthetic_imagefolder), "--image-size", "8"]) == 0
    assert "train: 21 images of 7 classes at 8x8" in capsys.readouterr().out
    assert len(list((synthetic_imagefolder / "cache").glob("*.npz"))) == 3
