import pytest
import torch
from torchvision import transforms as T

from helper_utils.augment import normalize_batch
from helper_utils.data import ClothingDataset
from helper_utils.loaders import ClassBalancedLoader, TensorLoader, make_loader


def _data(n=10, classes=3):
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8)
    return images, torch.arange(n) % classes


@pytest.mark.parametrize("drop_last,expected", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batches_cover_the_data_once(drop_last, expected):
    images, targets = _data()
    loader = TensorLoader(images, targets, batch_size=4, drop_last=drop_last)
    sizes = [len(t) for _, t in loader]
    assert sizes == expected and len(loader) == len(expected)
    if not drop_last:
        assert torch.equal(torch.cat([t for _, t in loader]), targets)


def test_shuffle_is_seeded_and_changes_each_epoch():
    images, targets = _data(20)
    a = TensorLoader(images, targets, batch_size=20, shuffle=True, seed=1)
    b = TensorLoader(images, targets, batch_size=20, shuffle=True, seed=1)
    first_a, first_b = next(iter(a))[1], next(iter(b))[1]
    assert torch.equal(first_a, first_b)
    assert not torch.equal(first_a, next(iter(a))[1])


def test_augment_is_applied_to_uint8_batches():
    images, targets = _data()
    seen = []
    loader = TensorLoader(images, targets, batch_size=5, augment=lambda b: seen.append(b.dtype) or normalize_batch(b))
    batch, _ = next(iter(loader))
    assert seen == [torch.uint8] and batch.dtype == torch.float32 and batch.shape == (5, 3, 8, 8)


def test_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        TensorLoader(torch.zeros(2, 3, 4, 4), torch.zeros(2))


def test_class_balanced_batches():
    images, targets = _data(30, classes=5)
    loader = ClassBalancedLoader(images, targets, classes_per_batch=3, samples_per_class=4, seed=0)
    for _, labels in loader:
        counts = torch.bincount(labels)
        assert len(labels) == 12 and sorted(counts[counts > 0].tolist()) == [4, 4, 4]
    with pytest.raises(ValueError, match="classes_per_batch"):
        ClassBalancedLoader(images, targets, classes_per_batch=6)


# ---------------------------------------------------------------------------------------------
# make_loader
# ---------------------------------------------------------------------------------------------

def test_make_loader_batches_and_seeded_shuffling(synthetic_imagefolder):
    dataset = ClothingDataset("train", root=synthetic_imagefolder, image_size=8, transform=T.ToTensor(),
                              cache=False)
    images, labels = next(iter(make_loader(dataset, batch_size=5)))
    assert images.shape == (5, 3, 8, 8) and labels.dtype == torch.long

    def order(seed):
        return torch.cat([y for _, y in make_loader(dataset, batch_size=4, shuffle=True, seed=seed)]).tolist()

    assert order(0) == order(0) and order(0) != order(1)
    loader = make_loader(dataset, batch_size=4, drop_last=True)
    assert len(loader) == 5 and not loader.persistent_workers


def test_make_loader_rejects_bad_sizes(synthetic_imagefolder):
    with pytest.raises(ValueError, match="batch_size"):
        make_loader([], batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        make_loader([], num_workers=-1)
