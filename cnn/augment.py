"""Batch augmentations: pure tensor -> tensor functions on the images' own device.

The random draws are made on the CPU from the caller's generator (so a seed gives the same
augmentation on every device), once per batch, and reach the device in one copy: pinned and
non-blocking on CUDA, so the GPU is never made to wait for them. :func:`crop_flip` applies
draws already made, which lets a fused run augment the batches of all its members in one pass.
"""

import torch
import torch.nn.functional as F

PADDING = 4  # pixels of zeros around each image before the random crop, as the usual CIFAR-10 recipe


def draw(batch: int, generator: torch.Generator, padding: int = PADDING) -> torch.Tensor:
    """The random draws of :func:`augment` for ``batch`` images: uint8 (3, B) on the CPU, rows (dy, dx, flip).

    Drawn in the order the earlier ``random_crop`` then ``flip_lr`` drew them (crop offsets,
    then flip coins), so a seed gives the same augmentation as before.
    """
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator)  # (2, B): dy, dx in [0, 2p]
    flip = torch.rand(batch, generator=generator).lt(0.5)  # (B,)
    return torch.cat([offsets, flip[None]]).to(torch.uint8)


def draw_codes(n: int, generator: torch.Generator, padding: int = PADDING) -> torch.Tensor:
    """An epoch's augmentation for ``n`` images in one host call: int64 (N,) codes, one per image (see :func:`decode`).

    Code v in [0, 2 (2p+1)^2) holds the crop offsets and the flip coin of one image, all three
    uniform and independent: dy = v // (2 (2p+1)), dx = v // 2 mod (2p+1), flip = v mod 2.
    One ``randint`` per member per epoch, decoded on the device for all members at once.
    """
    side = 2 * padding + 1
    if 2 * side * side > 256:
        raise ValueError(f"padding must be at most 5 (codes that fit in uint8 draws) but got {padding}")
    return torch.randint(0, 2 * side * side, (n,), generator=generator)


def decode(codes: torch.Tensor, padding: int = PADDING) -> torch.Tensor:
    """Codes (..., N) of :func:`draw_codes` -> draws (..., 3, N) uint8 on their device: rows dy, dx, flip (see :func:`crop_flip`)."""
    side = 2 * padding + 1
    return torch.stack([codes // (2 * side), codes // 2 % side, codes % 2], dim=-2).to(torch.uint8)


def to_device(draws: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy CPU ``draws`` to ``device`` without making the host wait: pinned and non-blocking on CUDA."""
    if device.type != "cuda":
        return draws.to(device)
    return draws.pin_memory().to(device, non_blocking=True)


def crop_flip(images: torch.Tensor, draws: torch.Tensor, padding: int = PADDING) -> torch.Tensor:
    """Crop and flip (N, C, H, W) with ``draws`` (3, N) on the images' device: rows dy, dx (window offsets), flip (0/1).

    Image n is padded by ``padding`` zeros on every side, cut to the H x W window whose top-left
    corner is (dy[n], dx[n]), and mirrored left-right when flip[n] is 1: torchvision's
    ``RandomCrop(H, padding=padding)`` then ``RandomHorizontalFlip()``, for a whole batch at once.
    """
    b, c, h, w = images.shape
    dy, dx, flip = draws.long()
    padded = F.pad(images, (padding,) * 4)  # (N, C, H + 2p, W + 2p)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None].expand(b, c, h, w + 2 * padding)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :].expand(b, c, h, w)
    cropped = padded.gather(2, rows).gather(3, cols)
    return torch.where(flip.bool()[:, None, None, None], cropped.flip(3), cropped)


def flip_lr(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image of (B, C, H, W) left-right with probability 1/2."""
    flip = torch.rand(len(images), generator=generator).lt(0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad (B, C, H, W) by ``padding`` zeros on every side and cut a random H x W window per image.

    The same as torchvision's ``RandomCrop(H, padding=padding)``, for a whole batch at once.
    """
    offsets = torch.randint(0, 2 * padding + 1, (2, len(images)), generator=generator)
    no_flip = torch.zeros(1, len(images), dtype=offsets.dtype)
    return crop_flip(images, to_device(torch.cat([offsets, no_flip]), images.device), padding)


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = PADDING) -> torch.Tensor:
    """Random crop with ``padding`` pixels, then a random horizontal flip; one copy of the draws to the device."""
    return crop_flip(images, to_device(draw(len(images), generator, padding), images.device), padding)
