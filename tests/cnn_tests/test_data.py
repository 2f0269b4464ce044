import hashlib
import os
import shutil

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms as transforms

import cnn.data
from cnn import DataError, load_data, normalize


def test_normalize_matches_torchvision_transform_on_real_images(cifar_dir):
    # The notebook's pipeline, reading the same files with PIL.
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    reference = torchvision.datasets.ImageFolder(str(cifar_dir / "test"), transform=transform)
    expected = torch.stack([image for image, _ in reference])
    data = load_data(cifar_dir, download=False)
    assert data.classes == tuple(reference.classes)
    assert data.test.labels.tolist() == reference.targets
    assert (normalize(data.test.images) - expected).abs().max() < 1e-6


def test_load_data_reads_all_images_with_class_labels(cifar_dir):
    data = load_data(cifar_dir, download=False)
    assert data.sizes == {"train": 5000, "test": 1000}
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape == (5000, 3, 32, 32)
    assert torch.bincount(data.test.labels).tolist() == [100] * 10
    assert data.classes[:3] == ("airplane", "automobile", "bird")


def test_cache_is_reused_without_decoding(cifar_dir, monkeypatch):
    first = load_data(cifar_dir, download=False)

    def fail(*args):
        raise AssertionError("decoded again although the cache is fresh")

    monkeypatch.setattr(cnn.data, "_decode_folder", fail)
    second = load_data(cifar_dir, download=False)
    assert torch.equal(first.train.images, second.train.images)


def test_cache_is_rebuilt_when_a_file_is_added(tmp_path, cifar_dir):
    folder = tmp_path / "copy"
    shutil.copytree(cifar_dir, folder)
    assert len(load_data(folder, download=False).train) == 5000
    shutil.copy(folder / "train" / "cat" / "0000.jpg", folder / "train" / "cat" / "extra.jpg")
    data = load_data(folder, download=False)
    assert len(data.train) == 5001
    assert torch.bincount(data.train.labels)[data.classes.index("cat")] == 501


def test_cache_never_unpickles(tmp_path, cifar_dir):
    load_data(cifar_dir, download=False)
    cache = _cache_folder_of(cifar_dir)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    # A cache file replaced by a pickle: np.load(allow_pickle=False) must refuse it.
    np.save(cache / "train_labels.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    data = load_data(cifar_dir, download=False)
    assert not marker.exists()
    assert len(data.train.labels) == 5000
    # The damaged file was replaced by a freshly decoded, pickle-free one.
    assert np.load(cache / "train_labels.npy", allow_pickle=False).shape == (5000,)


def _cache_folder_of(folder):
    root = cnn.data.default_cache_dir()
    return root / hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]


def test_subsets_are_stratified_and_seeded(cifar_dir):
    data = load_data(cifar_dir, train_size=1000, test_size=100, seed=3, download=False)
    assert torch.bincount(data.train.labels).tolist() == [100] * 10
    assert torch.bincount(data.test.labels).tolist() == [10] * 10
    again = load_data(cifar_dir, train_size=1000, test_size=100, seed=3, download=False)
    other = load_data(cifar_dir, train_size=1000, test_size=100, seed=4, download=False)
    assert torch.equal(data.train.images, again.train.images)
    assert not torch.equal(data.train.images, other.train.images)


def test_odd_subset_size_is_exact(cifar_dir):
    data = load_data(cifar_dir, train_size=1005, download=False)
    counts = torch.bincount(data.train.labels)
    assert len(data.train) == 1005 and counts.max() - counts.min() <= 1


def test_validation_split_is_disjoint_and_stratified(cifar_dir):
    data = load_data(cifar_dir, train_size=2000, val_split=0.1, download=False)
    assert data.sizes == {"train": 1800, "val": 200, "test": 1000}
    assert torch.bincount(data.val.labels).tolist() == [20] * 10
    flat = lambda images: {bytes(image.flatten().tolist()) for image in images}  # noqa: E731
    assert not flat(data.val.images) & flat(data.train.images)


def test_missing_folder_is_an_error_without_download(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nope", download=False)


def test_empty_folder_is_an_error_without_download(tmp_path):
    with pytest.raises(DataError, match="holds neither train/ and test/"):
        load_data(tmp_path, download=False)


def test_folder_without_test_split_is_an_error(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="has no test/"):
        load_data(tmp_path, download=False)


def test_file_that_is_not_an_image_is_named(tmp_path, cifar_dir):
    shutil.copytree(cifar_dir, tmp_path / "d")
    (tmp_path / "d" / "train" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"notes.txt is not an image"):
        load_data(tmp_path / "d", download=False)


def test_subset_larger_than_split_is_an_error(cifar_dir):
    with pytest.raises(DataError, match="test size 1001 is larger than the 1000 test images"):
        load_data(cifar_dir, test_size=1001, download=False)
