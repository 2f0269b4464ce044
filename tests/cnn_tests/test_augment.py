import torch
import torch.nn.functional as F

from cnn.augment import augment, flip_lr, random_crop


def _images(n=6):
    return torch.arange(n * 3 * 8 * 8, dtype=torch.int64).reshape(n, 3, 8, 8).to(torch.uint8)


def test_random_crop_without_padding_is_identity():
    images = _images()
    assert torch.equal(random_crop(images, 0, torch.Generator().manual_seed(0)), images)


def test_random_crop_cuts_a_window_of_the_zero_padded_image():
    images = _images()
    out = random_crop(images, 2, torch.Generator().manual_seed(1))
    padded = F.pad(images, (2, 2, 2, 2))
    assert out.shape == images.shape and out.dtype == torch.uint8
    for image, crop in zip(padded, out, strict=True):
        windows = [image[:, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(crop, window) for window in windows)


def test_random_crop_moves_some_images():
    images = _images(32)
    out = random_crop(images, 4, torch.Generator().manual_seed(2))
    assert (out != images).flatten(1).any(1).sum() > 16


def test_flip_lr_mirrors_about_half_of_the_batch():
    images = _images(200)
    out = flip_lr(images, torch.Generator().manual_seed(3))
    flipped = (out == images.flip(3)).flatten(1).all(1)
    unchanged = (out == images).flatten(1).all(1)
    assert bool((flipped | unchanged).all())
    assert 70 < int(flipped.sum()) < 130


def test_augment_keeps_device_dtype_and_shape():
    images = _images().contiguous(memory_format=torch.channels_last)
    out = augment(images, torch.Generator().manual_seed(4))
    assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
