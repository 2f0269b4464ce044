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


def test_draw_codes_decode_to_every_crop_and_flip_once():
    from cnn.augment import decode

    # The 2 * 9 * 9 codes of padding 4 are the 162 (dy, dx, flip) triples, each once.
    triples = decode(torch.arange(162)).T.tolist()
    assert len({tuple(t) for t in triples}) == 162
    assert {t[0] for t in triples} == set(range(9)) and {t[1] for t in triples} == set(range(9)) and {t[2] for t in triples} == {0, 1}


def test_draw_codes_are_one_host_call_of_uniform_codes():
    from cnn.augment import decode, draw_codes

    draws = decode(draw_codes(18_000, torch.Generator().manual_seed(5)))  # (3, N)
    assert draws.shape == (3, 18_000) and draws.dtype == torch.uint8
    assert 8_500 < int(draws[2].sum()) < 9_500  # about half flipped
    assert all(1_700 < int((draws[0] == dy).sum()) < 2_300 for dy in range(9))


def test_train_one_epoch_augments_position_i_of_the_shuffle_with_code_i():
    # The order since the augmentation is drawn per epoch: randperm(N), then draw_codes(N), from the run's generator;
    # step s's batch is positions [sB, (s+1)B) of the shuffle, cropped and flipped by those columns of the codes.
    from torch import nn

    from cnn.augment import crop_flip, decode, draw_codes
    from cnn.data import normalize
    from cnn.train import train_one_epoch

    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, 10)

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.fc(x.flatten(1))

    images, labels = _images(12), torch.arange(12) % 10
    model = Recorder()
    train_one_epoch(
        model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), 0.0), images, labels, 4, torch.Generator().manual_seed(9), True
    )
    generator = torch.Generator().manual_seed(9)
    order = torch.randperm(12, generator=generator)
    draws = decode(draw_codes(12, generator))
    for step, x in enumerate(seen):
        positions = slice(4 * step, 4 * step + 4)
        torch.testing.assert_close(x, normalize(crop_flip(images[order[positions]], draws[:, positions])))
    assert len(seen) == 3
