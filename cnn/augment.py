"""Batch augmentations: pure tensor -> tensor functions on the images' own device."""

import torch
import torch.nn.functional as F


def flip_lr(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image of (B, C, H, W) left-right with probability 1/2."""
    flip = torch.rand(len(images), generator=generator).lt(0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad (B, C, H, W) by ``padding`` zeros on every side and cut a random H x W window per image.

    The same as torchvision's ``RandomCrop(H, padding=padding)``, for a whole batch at once.
    """
    b, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None].expand(b, c, h, w + 2 * padding)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :].expand(b, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with ``padding`` pixels, then a random horizontal flip."""
    return flip_lr(random_crop(images, padding, generator), generator)
