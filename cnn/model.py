"""The lecture notebook's CNN, with the activation chosen by name."""

from collections.abc import Callable

import torch
from torch import nn

from cnn.registry import lookup

# name -> constructor of the nonlinearity placed after each BatchNorm.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01, PyTorch's default and the notebook's
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}


def _block(c_in: int, c_out: int, activation: str) -> nn.Sequential:
    # Conv keeps H, W (padding 1); MaxPool halves them.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.BatchNorm2d(c_out),
        lookup(ACTIVATIONS, activation, "activation")(),
        nn.MaxPool2d(2),
    )


class CNN(nn.Module):
    """Three Conv3x3-BatchNorm-activation-MaxPool blocks and one linear classifier.

    Attribute names match the notebook's ``CNN`` so that its state dicts load here.
    """

    def __init__(self, activation: str = "relu", num_classes: int = 10):
        super().__init__()
        self.layer1 = _block(3, 32, activation)  # (B, 3, 32, 32) -> (B, 32, 16, 16)
        self.layer2 = _block(32, 64, activation)  # -> (B, 64, 8, 8)
        self.layer3 = _block(64, 128, activation)  # -> (B, 128, 4, 4)
        self.fc = nn.Linear(128 * 4 * 4, num_classes)  # 2048 features -> logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(out.flatten(1))  # (B, num_classes)


def build_model(activation: str = "relu", num_classes: int = 10) -> CNN:
    """Build the notebook's CNN with the named activation.

    Args:
        activation: a key of :data:`ACTIVATIONS`.
        num_classes: number of output logits.

    Returns:
        A freshly initialised :class:`CNN` on the CPU (114,186 parameters with defaults).

    Example:
        >>> sum(p.numel() for p in build_model().parameters())
        114186
    """
    return CNN(activation, num_classes)
