import math

import pytest
import torch

from cnn import LOSSES, UnknownNameError, build_loss

LOGITS = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
LABELS = [2, 0]


def _softmax(row):
    total = sum(math.exp(v) for v in row)
    return [math.exp(v) / total for v in row]


def _softplus(v):
    return math.log1p(math.exp(v))


def _mean(values):
    return sum(values) / len(values)


# Each expected value is written from the loss's textbook formula, in plain Python.
EXPECTED = {
    "cross_entropy": _mean([-math.log(_softmax(x)[y]) for x, y in zip(LOGITS, LABELS, strict=True)]),
    "label_smoothing": _mean(
        [-sum((0.9 * (j == y) + 0.1 / 3) * math.log(p) for j, p in enumerate(_softmax(x))) for x, y in zip(LOGITS, LABELS, strict=True)]
    ),
    "mse": _mean([(v - (j == y)) ** 2 for x, y in zip(LOGITS, LABELS, strict=True) for j, v in enumerate(x)]),
    "mse_softmax": _mean([(p - (j == y)) ** 2 for x, y in zip(LOGITS, LABELS, strict=True) for j, p in enumerate(_softmax(x))]),
    # BCE of logit v against target t is softplus(v) - t * v.
    "bce_with_logits": _mean([_softplus(v) - (j == y) * v for x, y in zip(LOGITS, LABELS, strict=True) for j, v in enumerate(x)]),
    "multi_margin": _mean(
        [sum(max(0.0, 1 - x[y] + v) for j, v in enumerate(x) if j != y) / 3 for x, y in zip(LOGITS, LABELS, strict=True)]
    ),
}


def test_every_loss_has_a_hand_computed_case():
    assert set(EXPECTED) == set(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_equals_hand_computed_value(name):
    value = build_loss(name)(torch.tensor(LOGITS), torch.tensor(LABELS))
    assert value.item() == pytest.approx(EXPECTED[name], rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_is_finite_scalar_with_gradient(name):
    torch.manual_seed(0)
    logits = torch.randn(8, 10, requires_grad=True)
    value = build_loss(name)(logits, torch.randint(0, 10, (8,)))
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_unknown_loss_lists_valid_names():
    with pytest.raises(UnknownNameError, match="unknown loss 'hinge'; choose one of: cross_entropy, label_smoothing, mse"):
        build_loss("hinge")
