"""Image data as uint8 tensors: decoded once, cached on disk, normalised on the device.

Two sources are understood, chosen by what the data folder holds:

- an image folder with ``train/<class>/*`` and ``test/<class>/*`` (any format torchvision
  decodes; 32x32 images, as the CNN expects), for example the CIFAR-10 JPEG set;
- CIFAR-10 as torchvision stores it (``cifar-10-batches-py``), downloaded into the folder
  when it is missing and downloading is allowed, exactly as the notebook does.

The decoded tensors are cached as plain ``.npy`` files (read with ``allow_pickle=False``,
so a cache file can never run code) and rebuilt when the source's file list, sizes or
modification times change.
"""

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

CIFAR10_FOLDER = "cifar-10-batches-py"
IMAGE_SIZE = (32, 32)  # (H, W) the notebook's CNN is built for
_CACHE_VERSION = 1


class DataError(ValueError):
    """A data folder that cannot be used; the message says what to do.

    ``fix`` tells a command line what to add (``cnn.cli.flag_hint``): ``"folder"``, another data
    folder; ``"download"``, a local folder instead of the download; ``""``, nothing (the message
    says it, for example which files to remove).
    """

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 (N, 3, H, W) in [0, 255] and labels as int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> "ImageSet":
        return ImageSet(self.images[indices], self.labels[indices])

    def to(self, device: torch.device | str) -> "ImageSet":
        """The same images on ``device``, uint8 in channels_last (NHWC) memory: 4x smaller than float, the layout convs want."""
        return ImageSet(self.images.to(device).contiguous(memory_format=torch.channels_last), self.labels.to(device))


@dataclass(frozen=True)
class Data:
    """The splits a training run uses, with the class names in label order."""

    train: ImageSet
    test: ImageSet
    classes: tuple[str, ...]
    source: str  # "cifar10" or "folder"
    path: str  # resolved data folder
    val: ImageSet | None = None  # taken from the training set when val_split > 0

    @property
    def sizes(self) -> dict[str, int]:
        sizes = {"train": len(self.train), "test": len(self.test)}
        if self.val is not None:
            sizes["val"] = len(self.val)
        return sizes


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32, as ``ToTensor()`` then ``Normalize((0.5,)*3, (0.5,)*3)``.

    The same operations in the same order as torchvision's, so results match bit for bit.
    """
    return images.float().div_(255).sub_(0.5).div_(0.5)


def load_data(
    data_dir: str | os.PathLike = "./data",
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    val_split: float = 0.0,
    seed: int = 0,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    clip: bool = False,
) -> Data:
    """Load the images under ``data_dir``, decoding them only when the cache is stale.

    Args:
        data_dir: a folder with ``train/`` and ``test/`` class folders, or one that holds
            (or will receive) torchvision's CIFAR-10.
        train_size: keep a stratified random subset of this many training images.
        test_size: keep a stratified random subset of this many test images.
        val_split: fraction of the (subset) training set held out, stratified, as a
            validation set.
        seed: seeds the subset and validation draws.
        download: download CIFAR-10 when the folder holds no data; when False a missing
            or empty folder is an error.
        cache_dir: where decoded tensors are cached; default ``$CNN_STUDY_CACHE`` or
            ``~/.cache/cnn-study``.
        clip: a size larger than its split takes the whole split instead of raising.

    Returns:
        The :class:`Data`, on the CPU.

    Example:
        >>> data = load_data("cifar10-jpg", train_size=1000, test_size=500)  # doctest: +SKIP
    """
    for name, size in (("train_size", train_size), ("test_size", test_size)):
        if size is not None and size < 1:
            raise DataError(f"{name} must be at least 1 but got {size}")
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"val_split must be in [0, 1) but got {val_split}")

    path = Path(data_dir).expanduser().resolve()
    source = _detect_source(path, download)
    if source == "cifar10" and not (path / CIFAR10_FOLDER).is_dir():
        _download_cifar10(path)
    train, test, classes = _load_cached(path, source, Path(cache_dir) if cache_dir else default_cache_dir())

    generator = torch.Generator().manual_seed(seed)
    if train_size is not None:
        train = train.subset(stratified_indices(train.labels, _at_most(train_size, train, "train", clip), generator))
    if test_size is not None:
        test = test.subset(stratified_indices(test.labels, _at_most(test_size, test, "test", clip), generator))
    data = Data(train, test, classes, source, str(path))
    if val_split > 0:
        n_val = round(len(train) * val_split)
        if n_val < 1 or n_val >= len(train):
            raise DataError(f"val_split {val_split} of {len(train)} training images leaves no validation or no training image")
        val_idx = stratified_indices(train.labels, n_val, generator)
        keep = torch.ones(len(train), dtype=torch.bool)
        keep[val_idx] = False
        data = replace(data, train=train.subset(keep.nonzero().squeeze(1)), val=train.subset(val_idx))
    return data


def stratified_indices(labels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``size`` indices so that each class keeps its share of ``labels``.

    Shares are rounded by largest remainder, so the result has exactly ``size`` indices.
    """
    counts = torch.bincount(labels)
    quota = counts.double() * size / len(labels)
    take = quota.floor().long()
    short = size - int(take.sum())
    if short:
        take[torch.argsort(quota - take, descending=True)[:short]] += 1
    picked = []
    for cls, n in enumerate(take.tolist()):
        members = (labels == cls).nonzero().squeeze(1)
        picked.append(members[torch.randperm(len(members), generator=generator)[:n]])
    return torch.cat(picked).sort().values


def _at_most(size: int, images: ImageSet, split: str, clip: bool = False) -> int:
    if clip:
        return min(size, len(images))
    if size > len(images):
        raise DataError(f"{split} size {size} is larger than the {len(images)} {split} images available")
    return size


def _detect_source(path: Path, download: bool) -> str:
    has_train, has_test = (path / "train").is_dir(), (path / "test").is_dir()
    if has_train and has_test:
        return "folder"
    if (path / CIFAR10_FOLDER).is_dir():
        return "cifar10"
    if has_train or has_test:
        missing = "test/" if has_train else "train/"
        raise DataError(f"data folder {path} has no {missing}; an image folder needs train/<class>/ and test/<class>/")
    if path.exists() and not path.is_dir():
        raise DataError(f"data folder {path} is a file, not a folder", fix="folder")
    if download:
        return "cifar10"
    if not path.exists():
        raise DataError(f"data folder {path} does not exist", fix="folder")
    raise DataError(f"data folder {path} holds neither train/ and test/ class folders nor {CIFAR10_FOLDER}", fix="folder")


def _download_cifar10(path: Path) -> None:
    import torchvision

    existed = path.exists()
    try:
        torchvision.datasets.CIFAR10(root=str(path), train=True, download=True)
    except Exception as error:  # URLError, OSError, integrity failures: all mean the same to the user
        if not existed:
            shutil.rmtree(path, ignore_errors=True)  # leave no empty folder behind
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line, whatever the library wrote
        raise DataError(f"could not download CIFAR-10 into {path} ({reason})", fix="download") from None


def default_cache_dir() -> Path:
    """Where cached files go: ``$CNN_STUDY_CACHE``, else ~/.cache/cnn-study."""
    return Path(os.environ.get("CNN_STUDY_CACHE") or Path.home() / ".cache" / "cnn-study")


def _source_files(path: Path, source: str) -> list[Path]:
    if source == "cifar10":
        return sorted(p for p in (path / CIFAR10_FOLDER).iterdir() if p.is_file())
    files = (p for split in ("train", "test") for p in (path / split).rglob("*") if p.is_file())
    return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(path).parts))


def _fingerprint(files: list[Path], root: Path) -> str:
    digest = hashlib.sha256(str(_CACHE_VERSION).encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def _load_cached(path: Path, source: str, cache_root: Path) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    files = _source_files(path, source)
    fingerprint = _fingerprint(files, path)
    cache = cache_root / hashlib.sha256(str(path).encode()).hexdigest()[:16]
    meta_file = cache / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("fingerprint") == fingerprint:
            arrays = {name: torch.from_numpy(np.load(cache / f"{name}.npy", allow_pickle=False)) for name in _ARRAYS}
            return _splits(arrays, meta["classes"])
    except (OSError, ValueError, KeyError):
        pass  # no cache, or a damaged one: decode again
    arrays, classes = _decode_cifar10(path) if source == "cifar10" else _decode_folder(path, files)
    _write_cache(cache, arrays, {"fingerprint": fingerprint, "classes": classes, "source": str(path)})
    return _splits(arrays, classes)


def _splits(arrays: dict[str, torch.Tensor], classes: list[str]) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    train = ImageSet(arrays["train_images"], arrays["train_labels"])
    test = ImageSet(arrays["test_images"], arrays["test_labels"])
    return train, test, tuple(classes)


def _write_cache(cache: Path, arrays: dict[str, torch.Tensor], meta: dict) -> None:
    """Write atomically: a crash mid-write leaves the old cache or none, never half of one."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=cache.name + ".tmp"))
    except OSError:
        return  # an unwritable cache folder only costs the decoding time next start
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array.numpy(), allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(tmp, cache)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def _decode_cifar10(path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    import torchvision

    arrays = {}
    for split in ("train", "test"):
        try:
            dataset = torchvision.datasets.CIFAR10(root=str(path), train=split == "train", download=False)
        except RuntimeError as error:
            raise DataError(f"CIFAR-10 in {path / CIFAR10_FOLDER} is damaged ({error}); delete that folder to download it again") from None
        # (N, H, W, C) -> (N, C, H, W); the copy keeps NHWC memory order, i.e. channels_last.
        arrays[f"{split}_images"] = torch.from_numpy(dataset.data).permute(0, 3, 1, 2)
        arrays[f"{split}_labels"] = torch.tensor(dataset.targets, dtype=torch.int64)
    return {k: v.contiguous() for k, v in arrays.items()}, list(dataset.classes)


def _decode_folder(path: Path, files: list[Path]) -> tuple[dict[str, torch.Tensor], list[str]]:
    from torchvision.io import ImageReadMode, decode_image, read_file

    classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir() and not p.name.startswith("."))
    test_classes = sorted(p.name for p in (path / "test").iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{path / 'train'} has no class folders; put the images in train/<class>/ and test/<class>/")
    if test_classes != classes:
        raise DataError(f"the class folders of {path / 'train'} and {path / 'test'} differ: {classes} vs {test_classes}")
    index = {name: i for i, name in enumerate(classes)}
    images: dict[str, list[torch.Tensor]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    from tqdm import tqdm

    # Every file is looked at before any error: a folder with three broken images is fixed in one run, not three.
    misplaced, broken, sized = [], [], []
    for file in tqdm(files, desc=f"decoding {path.name}", unit="img", leave=False, disable=True if len(files) < 5000 else None):
        split, *middle = file.relative_to(path).parts
        if len(middle) != 2:
            misplaced.append(file)
            continue
        try:
            image = decode_image(read_file(str(file)), mode=ImageReadMode.RGB)
        except RuntimeError:
            broken.append(file)
            continue
        if tuple(image.shape[1:]) != IMAGE_SIZE:
            sized.append((file, f"{image.shape[2]}x{image.shape[1]}"))
            continue
        images[split].append(image)
        labels[split].append(index[middle[0]])
    if misplaced:
        where = "images go in train/<class>/ and test/<class>/"
        raise DataError(f"{_listed(misplaced, path, 'is not inside a class folder', 'are not inside a class folder')}; {where}")
    if broken:
        them = "it" if len(broken) == 1 else "them"
        listed = _listed(broken, path, "is not an image torchvision can decode", "are not images torchvision can decode")
        raise DataError(f"{listed}; remove {them} from the data folder")
    if sized:
        pixels = sorted({size for _, size in sized})
        many = f"are not 32x32 pixels ({', '.join(pixels[:3])}{', ...' if len(pixels) > 3 else ''})"
        raise DataError(f"{_listed([file for file, _ in sized], path, f'is {pixels[0]} pixels', many)}; this CNN takes 32x32 images")
    arrays = {}
    for split in ("train", "test"):
        if not images[split]:
            raise DataError(f"{path / split} holds no images; put them in {split}/<class>/")
        arrays[f"{split}_images"] = torch.stack(images[split])
        arrays[f"{split}_labels"] = torch.tensor(labels[split], dtype=torch.int64)
    return arrays, classes


def _listed(files: list[Path], root: Path, one: str, many: str, shown: int = 5) -> str:
    """``/data/train/cat/a.jpg is ...`` for one file; for more, ``3 files of /data are ...: train/cat/a.jpg, ...``
    (the first ``shown`` of them, then how many more)."""
    if len(files) == 1:
        return f"{files[0]} {one}"
    names = ", ".join(str(f.relative_to(root)) for f in files[:shown])
    more = f" and {len(files) - shown} more" if len(files) > shown else ""
    return f"{len(files)} files of {root} {many}: {names}{more}"
