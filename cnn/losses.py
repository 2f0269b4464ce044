"""Classification losses that all take ``(logits, integer labels)``.

Each entry of :data:`LOSSES` builds a module whose ``forward(logits, labels)`` takes
logits of shape (B, C) and class indices of shape (B,) and returns the batch mean as a
scalar. What each one compares:

- ``cross_entropy``: softmax cross-entropy of the logits against the label (the notebook's).
- ``label_smoothing``: cross-entropy against a target that puts 0.9 on the label and
  spreads 0.1 uniformly over all C classes.
- ``mse``: mean squared error between the raw logits and the one-hot target
  (``nn.MSELoss()(logits, one_hot)``, the literal swap in the notebook), averaged over B*C.
- ``mse_softmax``: mean squared error between softmax probabilities and the one-hot
  target, averaged over B*C (the Brier score divided by C).
- ``bce_with_logits``: binary cross-entropy of each logit against its one-hot entry, as C
  independent yes/no problems (``nn.BCEWithLogitsLoss()``), averaged over B*C.
- ``multi_margin``: the multi-class hinge loss ``sum_{j != y} max(0, 1 - x_y + x_j) / C``
  (``nn.MultiMarginLoss()``).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnn.registry import lookup


class _OneHotLoss(nn.Module):
    """Apply ``loss(transform(logits), one_hot(labels))``."""

    def __init__(self, loss: nn.Module, transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.loss = loss
        self.transform = transform

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        inputs = self.transform(logits) if self.transform else logits
        return self.loss(inputs, target)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=1)


# name -> constructor of a module mapping (logits (B, C), labels (B,)) to a scalar.
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "cross_entropy": nn.CrossEntropyLoss,
    "label_smoothing": lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
    "mse": lambda: _OneHotLoss(nn.MSELoss()),
    "mse_softmax": lambda: _OneHotLoss(nn.MSELoss(), _softmax),
    "bce_with_logits": lambda: _OneHotLoss(nn.BCEWithLogitsLoss()),
    "multi_margin": nn.MultiMarginLoss,
}


def build_loss(name: str) -> nn.Module:
    """Build the loss registered as ``name`` in :data:`LOSSES`.

    Example:
        >>> build_loss("mse")(torch.zeros(1, 2), torch.tensor([0])).item()
        0.5
    """
    return lookup(LOSSES, name, "loss")()
