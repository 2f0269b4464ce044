import dataclasses
import math

import pytest
import torch

from cnn import DeviceError, TrainConfig, compiling, load_data, resolve_device, train
from tests.cnn_tests.test_fused_step import _random_data


@pytest.fixture(scope="module")
def small(cifar_dir):
    return load_data(cifar_dir, train_size=500, test_size=200, download=False)


def _without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_train_one_epoch_on_real_images_beats_chance(cifar_dir):
    data = load_data(cifar_dir, download=False)  # 5,000 train, 1,000 test
    result = train(TrainConfig(epochs=1, device="cpu"), data)
    # Chance is 10%; the notebook's CNN reaches about 40% after one epoch on 5,000 images.
    assert result.test_acc > 25.0
    assert sum(map(sum, result.confusion)) == 1000
    assert sum(result.confusion[i][i] for i in range(10)) == round(result.test_acc * 10)


def test_history_rows_have_notebook_metrics(small):
    result = train(TrainConfig(epochs=2, device="cpu"), small)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert set(result.history[0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"}
    for row in result.history:
        assert 0 <= row["train_acc"] <= 100 and 0 <= row["test_acc"] <= 100
        assert math.isfinite(row["train_loss"]) and row["seconds"] > 0
    assert result.n_params == 114_186 and not result.diverged and not result.stopped


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_same_seed_gives_same_history(small, precision):
    config = TrainConfig(epochs=2, seed=7, device="cpu", precision=precision, augment=True)
    assert _without_time(train(config, small).history) == _without_time(train(config, small).history)


def test_other_seed_gives_other_history(small):
    first = train(TrainConfig(epochs=1, seed=1, device="cpu"), small)
    second = train(TrainConfig(epochs=1, seed=2, device="cpu"), small)
    assert _without_time(first.history) != _without_time(second.history)


def test_nan_loss_stops_training_and_is_reported(small):
    # SGD at lr 10 on the MSE of raw logits blows up within a few steps.
    result = train(TrainConfig(epochs=3, loss="mse", optimizer="sgd", lr=10.0, device="cpu"), small)
    assert result.diverged
    assert len(result.history) == 1
    assert not math.isfinite(result.history[0]["train_loss"])
    assert 0 <= result.history[0]["test_acc"] <= 100


def test_callback_sees_every_epoch_and_can_stop(small):
    seen = []
    result = train(TrainConfig(epochs=3, device="cpu"), small, on_epoch=lambda row: seen.append(row) or row["epoch"] == 2)
    assert [row["epoch"] for row in seen] == [1, 2]
    assert result.stopped and len(result.history) == 2


def test_validation_split_is_evaluated_every_epoch(cifar_dir):
    data = load_data(cifar_dir, train_size=500, test_size=100, val_split=0.2, download=False)
    result = train(TrainConfig(epochs=1, device="cpu"), data)
    assert {"val_loss", "val_acc"} <= set(result.history[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1 but got 0"),
        ({"batch_size": -1}, "batch_size must be at least 1 but got -1"),
        ({"lr": 0.0}, "lr must be a positive number but got 0.0"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; choose one of: adam, sgd"),
        ({"precision": "fp8"}, "unknown precision 'fp8'; choose one of: auto, bf16, fp32"),
        ({"compile_mode": "fast"}, "unknown compile mode 'fast'; choose one of: default, reduce-overhead, max-autotune-no-cudagraphs"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_unavailable_cuda_is_a_clear_error():
    with pytest.raises(DeviceError, match="'cuda' is not available"):
        resolve_device("cuda")


def test_auto_device_is_usable():
    device = resolve_device("auto")
    assert torch.zeros(1, device=device).device.type == device.type


def _traced(monkeypatch) -> list[str]:
    # torch.compile traced by dynamo on the CPU without code generation (backend "eager"); returns the modes asked for.
    modes = []

    def compile_step(function, mode):
        modes.append(mode)
        return torch.compile(function, backend="eager")

    monkeypatch.setattr(compiling, "compile_step", compile_step)
    torch._dynamo.reset()
    return modes


def test_a_compiled_trial_gives_the_eager_trials_history_and_weights(monkeypatch):
    # The compile switch's wiring: the forward pass with the loss, and the optimiser step, compiled apart (backward and the
    # finiteness check between them), give the eager run's history and weights bit for bit (SGD: the same arithmetic).
    modes = _traced(monkeypatch)
    # Under CUDA graphs each step's forward call marks a new step, or the optimiser's graph reads gradients a later replay
    # overwrote (seen on an H200 before the mark): once per step, never for the optimiser step.
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    data = _random_data()
    config = TrainConfig(epochs=2, batch_size=50, optimizer="sgd", augment=True, device="cpu", precision="fp32")
    eager = train(config, data)
    assert marks == []
    compiled = train(dataclasses.replace(config, compile_mode="reduce-overhead"), data)
    assert modes == ["reduce-overhead"] * 2  # compiled once per run
    assert len(marks) == 2 * len(data.train) // 50  # 2 epochs of 4 steps
    assert _without_time(compiled.history) == _without_time(eager.history)
    for a, b in zip(eager.model.state_dict().values(), compiled.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_compiled_adam_trial_gives_the_eager_trials_losses(monkeypatch):
    _traced(monkeypatch)
    data = _random_data()
    config = TrainConfig(epochs=1, batch_size=100, device="cpu", precision="fp32")  # two steps
    eager = train(config, data)
    compiled = train(dataclasses.replace(config, compile_mode="default"), data)
    # Not bit for bit: traced, Adam computes its bias corrections from its step count as a float32 tensor, eager from a
    # Python float; and the convolutions' biases, whose exact gradient is zero (BatchNorm follows), move by the sign of
    # rounding noise, so they are left out.
    want, got = _without_time(eager.history)[0], _without_time(compiled.history)[0]
    assert got == pytest.approx(want, rel=1e-4)
    for (name, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values(), strict=True):
        if not (name.startswith("layer") and name.endswith(".0.bias")):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
