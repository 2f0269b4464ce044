import dataclasses
import math

import pytest
import torch

from cnn import LOSSES, TrainConfig, build_loss, build_model, load_data, train, train_many
from cnn.augment import augment
from cnn.fused import SHARED_FIELDS, FusedCNN, _MemberLosses, draw_many, member_batches

# Three trials that differ in everything a fused run lets them differ in.
TRIO = [
    TrainConfig(activation="relu", loss="cross_entropy", lr=1e-3, seed=0),
    TrainConfig(activation="tanh", loss="mse", lr=3e-4, seed=1),
    TrainConfig(activation="leaky_relu", loss="bce_with_logits", lr=1e-2, seed=2),
]
CPU = {"device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module")
def small(cifar_dir):
    return load_data(cifar_dir, train_size=300, test_size=200, download=False)


def _configs(optimizer: str = "adam", epochs: int = 1, trio=TRIO) -> list[TrainConfig]:
    return [dataclasses.replace(c, optimizer=optimizer, epochs=epochs, **CPU) for c in trio]


def _assert_same_run(fused, plain, config: TrainConfig, data) -> None:
    """``fused`` (one member of train_many) is ``plain`` (its own train run) up to fp32 summation order.

    The gradients of a grouped convolution and of K plain ones agree to about 1e-5 relative (the
    same sums in another order). SGD is linear in the gradient, so after a few steps losses agree
    to 1e-4 relative and weights to 1e-3 of a step (measured: 5e-5 lr after 3 steps).

    Adam's first steps are close to ``lr * sign(gradient)``. Where the true gradient is zero, as
    for a convolution bias that the next BatchNorm cancels, the rounding noise of the gradient
    becomes a step of random sign: conv biases end up to 5 lr apart (measured), and the other
    weights, which that noise reaches through rounding, on average 4e-2 lr apart after 6 steps.
    Training mode cancels those biases, so train_loss still agrees to 1e-4 and train_acc to one
    image. Evaluation subtracts running means that lag them, so at lr 1e-2 evaluation losses move
    by up to 2% (measured: 1.8% after two epochs, and train_many with that member alone differs
    from train() as much: it is train()'s own sensitivity), and a near-tie prediction may flip.
    """
    adam = config.optimizer == "adam"
    assert (fused.diverged, fused.stopped, len(fused.history)) == (plain.diverged, plain.stopped, len(plain.history))
    assert [row.keys() for row in fused.history] == [row.keys() for row in plain.history]
    # One image more or less right moves an accuracy by 100/N points.
    images = {"train_acc": 1, "val_acc": 2 if adam else 1, "test_acc": 2 if adam else 1}
    sizes = {"train_acc": len(data.train), "val_acc": len(data.val) if data.val is not None else 0, "test_acc": len(data.test)}
    for got, want in zip(fused.history, plain.history, strict=True):
        assert got["epoch"] == want["epoch"]
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
        for split in ("val", "test"):
            if f"{split}_loss" in want:
                assert got[f"{split}_loss"] == pytest.approx(want[f"{split}_loss"], rel=5e-2 if adam else 1e-4)
        for name in images.keys() & want.keys():
            assert abs(got[name] - want[name]) <= images[name] * 100 / sizes[name] + 1e-9, name
    ours, theirs = fused.model.state_dict(), plain.model.state_dict()
    for name, want in theirs.items():
        got = ours[name]
        if name.endswith("num_batches_tracked"):
            assert got == want
        elif not adam:
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * config.lr, msg=name)
        elif not (name.endswith(".0.bias") or "running" in name):  # conv biases and the statistics that follow them: noise, see above
            # A member stepped with another member's learning rate drifts by about half a step per step.
            assert (got - want).abs().mean() <= 0.25 * config.lr, name


# Fast checks of the fused network on random tensors.


def _members(activations: list[str], memory_format=torch.contiguous_format) -> list:
    torch.manual_seed(0)
    return [build_model(a).to(memory_format=memory_format) for a in activations]


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_fused_cnn_matches_its_members_in_training_and_evaluation(memory_format):
    activations = ["relu", "tanh", "relu"]  # not grouped: the relu members are two runs
    # Plain and fused in the same layout: the kernels of another layout sum in another order.
    models = _members(activations, memory_format)
    fused = FusedCNN(models, memory_format)
    x = torch.randn(5, 9, 32, 32).contiguous(memory_format=memory_format)  # member k's batch in channels 3k..3k+2
    logits = fused(x)
    assert logits.shape == (3, 5, 10)
    (logits**2).sum().backward()
    # Member k's gradient is slice k of each stacked parameter's.
    fused_grads = [{name: fused.stacked[name.replace(".", "_")].grad[k] for name, _ in m.named_parameters()} for k, m in enumerate(models)]
    plain = _members(activations, memory_format)
    for k, model in enumerate(plain):
        want = model(x[:, 3 * k : 3 * k + 3])
        torch.testing.assert_close(logits[k], want, rtol=1e-4, atol=1e-5)
        (want**2).sum().backward()
        for name, p in model.named_parameters():
            # Conv biases feed BatchNorm, which cancels them: their true gradient is 0, both are rounding noise.
            atol = 1e-4 if name.endswith(".0.bias") else 1e-5
            torch.testing.assert_close(fused_grads[k][name], p.grad, rtol=1e-4, atol=atol, msg=name)
    fused.eval()
    shared = torch.randn(4, 3, 32, 32).contiguous(memory_format=memory_format)  # evaluation: every member sees the same images
    with torch.no_grad():
        logits = fused(shared)
    for k, model in enumerate(models):
        fused.export(k, model)
        torch.testing.assert_close(logits[k], model.eval()(shared), rtol=1e-4, atol=1e-5)


def test_fused_cnn_export_gives_each_member_its_own_batchnorm_statistics():
    models = _members(["relu", "gelu"])
    fused = FusedCNN(models, torch.contiguous_format)
    x = torch.randn(6, 6, 32, 32)
    fused(x)
    fused(x)
    for k, model in enumerate(models):
        fused.export(k, model)
    plain = _members(["relu", "gelu"])
    for k, model in enumerate(plain):
        model(x[:, 3 * k : 3 * k + 3])
        model(x[:, 3 * k : 3 * k + 3])
        for name, want in model.state_dict().items():
            if "running" in name or "num_batches" in name:
                torch.testing.assert_close(models[k].state_dict()[name], want, rtol=1e-5, atol=1e-6, msg=name)


def test_member_batches_puts_each_members_own_images_in_its_channels():
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    idx = torch.stack([torch.randperm(20)[:4] for _ in range(3)])  # (K, B)
    x = member_batches(images, idx)
    assert x.shape == (4, 9, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    for k in range(3):
        assert torch.equal(x[:, 3 * k : 3 * k + 3], images[idx[k]])


def test_member_batches_augments_each_member_with_its_own_generator():
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    idx = torch.stack([torch.arange(4), torch.arange(4, 8)])
    generators = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    x = member_batches(images, idx, draw_many(generators, 4, images.device))  # one pass for both members
    for k, seed in enumerate((1, 2)):
        assert torch.equal(x[:, 3 * k : 3 * k + 3], augment(images[idx[k]], torch.Generator().manual_seed(seed)))


def test_member_losses_give_each_member_its_own_loss():
    names = [*LOSSES, "cross_entropy"]  # every loss, one of them twice
    criteria = [build_loss(name) for name in names]
    logits = torch.randn(len(names), 8, 10)
    labels = torch.randint(0, 10, (len(names), 8))
    got = _MemberLosses(names, criteria, torch.device("cpu"))(logits, labels)
    want = torch.stack([c(logits[k], labels[k]) for k, c in enumerate(criteria)])
    torch.testing.assert_close(got, want)


def test_train_many_needs_a_config():
    with pytest.raises(ValueError, match="at least one config"):
        train_many([], None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 2),
        ("batch_size", 50),
        ("optimizer", "sgd"),
        ("augment", True),
        ("device", "auto"),
        ("precision", "auto"),
        ("eval_batch_size", 50),
        ("compile_mode", "default"),
    ],
)
def test_train_many_rejects_configs_that_differ_in_a_shared_field(field, value):
    assert field in SHARED_FIELDS
    configs = [TrainConfig(**CPU), TrainConfig(**{**CPU, field: value}, lr=0.1, seed=3)]
    with pytest.raises(ValueError, match=f"fused trials must share {field}, but configs\\[0\\] has {field}="):
        train_many(configs, None)  # refused before the data is touched


def test_train_many_names_the_first_shared_field_that_differs():
    configs = [TrainConfig(**CPU), TrainConfig(**CPU, optimizer="sgd", augment=True)]
    with pytest.raises(ValueError, match="must share optimizer"):
        train_many(configs, None)


# Real training on real images: each member against its own train() run.


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_many_member_matches_its_own_train_run(small, optimizer):
    configs = _configs(optimizer)
    results = train_many(configs, small)
    for config, result in zip(configs, results, strict=True):
        plain = train(config, small)
        _assert_same_run(result, plain, config, small)
        assert type(result.model).__name__ == "CNN" and result.n_params == plain.n_params == 114_186
        assert result.confusion == plain.confusion or optimizer == "adam"
        assert (result.device, result.precision, result.batch_order) == (plain.device, plain.precision, plain.batch_order)
        build_model(config.activation).load_state_dict(result.model.state_dict())  # exports as an ordinary CNN


@pytest.mark.slow
def test_train_many_diverging_member_leaves_the_others_unchanged(small):
    # SGD at lr 10 on the MSE of raw logits overflows in the second epoch on 300 images; the others go on to epoch 3.
    exploding = TrainConfig(activation="relu", loss="mse", lr=10.0, seed=1)
    configs = _configs("sgd", epochs=3, trio=[TRIO[0], exploding, TRIO[2]])
    results = train_many(configs, small)
    assert [r.diverged for r in results] == [False, True, False]
    assert len(results[1].history) == len(train(configs[1], small).history) < 3
    assert not math.isfinite(results[1].history[-1]["train_loss"])
    without = train_many([configs[0], configs[2]], small)
    for k, alone in zip((0, 2), without, strict=True):
        _assert_same_run(results[k], alone, configs[k], small)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_many_stopped_member_leaves_and_the_others_go_on_unchanged(cifar_dir, optimizer):
    data = load_data(cifar_dir, train_size=300, test_size=200, val_split=0.2, download=False)
    # SGD's momentum and Adam's step counts and moments must survive the rebuild; augmentation draws from each member's generator.
    configs = [dataclasses.replace(c, augment=True) for c in _configs(optimizer, epochs=2)]
    seen = []

    def on_epoch(index, row):
        seen.append((index, row["epoch"]))
        return index == 1

    results = train_many(configs, data, on_epoch)
    # Members report in config order each epoch; the stopped one is not called again.
    assert seen == [(0, 1), (1, 1), (2, 1), (0, 2), (2, 2)]
    assert results[1].stopped and len(results[1].history) == 1
    _assert_same_run(results[1], train(configs[1], data, on_epoch=lambda row: True), configs[1], data)
    for k in (0, 2):
        assert not results[k].stopped and len(results[k].history) == 2
        _assert_same_run(results[k], train(configs[k], data), configs[k], data)


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2])
def test_train_many_every_member_diverging_in_the_same_epoch_ends_cleanly(small, k):
    # A tail group of one trial at a high SGD lr, or K identical ones: every member still training leaves in the
    # same epoch, mid-epoch (the CPU checks every step), and nothing is left to evaluate fused.
    exploding = dataclasses.replace(TrainConfig(activation="relu", loss="mse", lr=10.0, seed=1), optimizer="sgd", epochs=3, **CPU)
    results = train_many([exploding] * k, small)
    alone = train(exploding, small)
    assert alone.diverged and len(alone.history) < 3
    for result in results:
        assert result.diverged and not result.stopped
        assert len(result.history) == len(alone.history)
        assert result.history[-1]["test_acc"] == pytest.approx(alone.history[-1]["test_acc"], abs=100 / len(small.test))
        assert type(result.model).__name__ == "CNN"


@pytest.mark.slow
def test_train_many_every_member_stopped_at_once_ends_cleanly(small):
    configs = _configs("sgd", epochs=3)
    results = train_many(configs, small, on_epoch=lambda index, row: True)
    for config, result in zip(configs, results, strict=True):
        assert result.stopped and not result.diverged and len(result.history) == 1
        _assert_same_run(result, train(config, small, on_epoch=lambda row: True), config, small)


@pytest.mark.slow
def test_train_many_in_contiguous_memory_format_matches_own_train_runs(small):
    configs = _configs("sgd")
    for config, result in zip(configs, train_many(configs, small, memory_format="contiguous"), strict=True):
        _assert_same_run(result, train(config, small), config, small)


def test_train_many_rejects_an_unknown_memory_format():
    with pytest.raises(ValueError, match="memory format"):
        train_many([TrainConfig(**CPU)], None, memory_format="nhwc")
