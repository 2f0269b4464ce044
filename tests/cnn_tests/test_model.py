import pytest
import torch

from cnn import ACTIVATIONS, UnknownNameError, build_model


def test_build_model_matches_notebook_parameter_count():
    assert sum(p.numel() for p in build_model().parameters()) == 114_186


def test_build_model_has_notebook_layers():
    model = build_model("tanh")
    conv, norm, act, pool = model.layer2
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (32, 64, (3, 3), (1, 1))
    assert isinstance(norm, torch.nn.BatchNorm2d) and isinstance(act, torch.nn.Tanh)
    assert isinstance(pool, torch.nn.MaxPool2d) and pool.kernel_size == 2
    assert (model.fc.in_features, model.fc.out_features) == (2048, 10)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_gives_finite_logits_and_gradients(activation):
    torch.manual_seed(0)
    model = build_model(activation)
    logits = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 10)
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_notebook_activations_are_registered():
    assert {"relu", "leaky_relu", "tanh", "elu", "gelu", "silu", "sigmoid"} <= set(ACTIVATIONS)


def test_unknown_activation_lists_valid_names():
    with pytest.raises(UnknownNameError, match="unknown activation 'swish'; choose one of: relu, leaky_relu, tanh"):
        build_model("swish")
