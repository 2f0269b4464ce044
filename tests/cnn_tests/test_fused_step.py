"""The fused training step: operators that do not grow with K, and members that leave with their own state."""

import dataclasses

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from cnn import TrainConfig, compiling
from cnn.data import Data, ImageSet
from cnn.fused import draw_many, evaluate_many, setup_many, train_epoch_many, train_step

CPU = {"device": "cpu", "precision": "fp32"}


def _random_data(n: int = 200) -> Data:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    split = ImageSet(images, torch.randint(0, 10, (n,), generator=generator))
    return Data(split, split, tuple(str(c) for c in range(10)), "folder", "")


def _configs(k: int, activations=("relu",), losses=("cross_entropy",), **fields) -> list[TrainConfig]:
    return [
        TrainConfig(
            activation=activations[j % len(activations)], loss=losses[j // len(activations) % len(losses)], seed=j, **{**CPU, **fields}
        )
        for j in range(k)
    ]


def _batch(run, data: Data, seed: int = 0):
    k = len(run.members)
    generator = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(len(data.train), generator=generator)[: run.batch_size] for _ in range(k)])  # (K, B)
    draws = draw_many([m.generator for m in run.members], run.batch_size, run.device) if run.augment else None
    return data.train.images.contiguous(memory_format=torch.channels_last), data.train.labels, idx, draws


def step_operators(configs: list[TrainConfig], data: Data) -> int:
    """Operators (profiler events: aten ops and autograd nodes) of one fused training step, after a warm-up step.

    Batches of 8 images: the count does not depend on the batch size, and the test stays fast.
    """
    run = setup_many([dataclasses.replace(config, batch_size=8) for config in configs], data)
    train_step(run, *_batch(run, data, 0))  # the first step creates the optimiser's state
    batch = _batch(run, data, 1)  # augmentation draws are made here, outside the step: K small host calls, see draw_many
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(run, *batch)
    return len(prof.events())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("augment", [False, True])
def test_train_step_operators_do_not_grow_with_k(optimizer, augment, record_property):
    data = _random_data()
    counts = {k: step_operators(_configs(k, optimizer=optimizer, augment=augment), data) for k in (1, 4, 16)}
    ratio = counts[16] / counts[1]
    print(f"operators per fused step ({optimizer}, augment={augment}): {counts}; K=16 / K=1 = {ratio:.3f}")
    record_property("operators", counts)
    record_property("ratio_16_to_1", round(ratio, 3))
    assert ratio <= 1.2, counts


def test_train_step_operators_grow_per_distinct_activation_and_loss_not_per_member(record_property):
    data = _random_data()
    three_by_three = {"activations": ("relu", "leaky_relu", "tanh"), "losses": ("cross_entropy", "mse", "bce_with_logits")}
    # 9 members: each activation and loss pair once; 36: each four times (members of one activation sit side by side).
    counts = {k: step_operators(_configs(k, **three_by_three), data) for k in (9, 36)}
    ratio = counts[36] / counts[9]
    print(f"operators per fused step, 3 activations x 3 losses: {counts}; K=36 / K=9 = {ratio:.3f}")
    record_property("ratio_36_to_9", round(ratio, 3))
    assert ratio <= 1.2, counts


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_member_that_leaves_takes_its_weights_statistics_and_optimizer_state(optimizer):
    # Two identical runs of two members; in one, member 0 leaves after two steps and takes its third step alone,
    # as a plain CNN with its exported torch optimiser; in the other it takes the third step fused.
    data = _random_data()
    lr = 1e-2
    configs = _configs(2, activations=("relu", "tanh"), optimizer=optimizer, lr=lr)
    fused, alone = setup_many(configs, data), setup_many(configs, data)
    batches = [_batch(fused, data, seed) for seed in range(3)]
    for batch in batches[:2]:
        train_step(fused, *batch)
        train_step(alone, *batch)
    train_step(fused, *batches[2])
    expected = fused.members[0].model
    fused.finish()
    assert fused.members == [] and fused.members is not None
    leaver = alone.members[0]
    alone.drop([leaver])
    assert [m.index for m in alone.members] == [1] and alone.net.k == 1
    assert leaver.model.layer1[1].num_batches_tracked == 2
    images, labels, idx, _ = batches[2]
    model = leaver.model.train()
    loss = leaver.criterion(model(images[idx[0]].float().div(255).sub(0.5).div(0.5)), labels[idx[0]])
    leaver.optimizer.zero_grad()
    loss.backward()
    leaver.optimizer.step()
    got = dict(model.named_parameters())
    for name, want in expected.named_parameters():
        if optimizer == "sgd":
            torch.testing.assert_close(got[name], want, rtol=1e-4, atol=1e-6 * lr, msg=name)
        else:
            # Adam's step is about lr * sign(gradient), so where the gradient is rounding noise (conv biases, which
            # BatchNorm cancels) a third step can go either way: at most 2 lr apart; elsewhere almost always equal.
            assert (got[name] - want).abs().max() <= 2.01 * lr, name
            assert (got[name] - want).abs().mean() <= (1.0 if name.endswith(".0.bias") else 1e-2) * lr, name
    buffers = dict(model.named_buffers())
    for name, want in expected.named_buffers():
        torch.testing.assert_close(buffers[name], want, msg=name)


def test_an_empty_fused_run_trains_and_evaluates_nothing():
    data = _random_data()
    run = setup_many(_configs(2), data)
    run.finish()
    assert run.members == [] and run.net is None and run.optimizer is None
    assert train_epoch_many(run, data.train.images, data.train.labels) == {}
    assert evaluate_many(run, data.test.images, data.test.labels) == []


def test_evaluation_batch_shrinks_as_k_grows_to_keep_layer_one_under_two_to_the_thirty_elements():
    from types import SimpleNamespace

    from cnn.fused import MAX_EVAL_ELEMENTS, eval_batch_for

    net = SimpleNamespace(stacked={"layer1_0_weight": torch.empty(1, 32, 3, 3, 3)})  # (K, c_out, c_in, 3, 3): 32 filters
    for k, want in ((1, 1000), (16, 1000), (64, 512), (66, 496), (4096, 8)):
        run = SimpleNamespace(members=[None] * k, net=net, eval_batch=1000)
        batch = eval_batch_for(run, torch.Size((1, 3, 32, 32)))
        assert batch == want and batch * k * 32 * 32 * 32 <= MAX_EVAL_ELEMENTS < 2**31


STUDY_MIX = {"activations": ("relu", "leaky_relu", "tanh"), "losses": ("cross_entropy", "mse", "bce_with_logits")}


def epoch_operators(configs: list[TrainConfig]) -> tuple[int, int]:
    """Operators of one fused epoch, 5 steps of 8 images and the test evaluation, after a warm-up epoch.

    Returns (top-level operators: each one call from Python into ATen, the CPU's stand-in for a kernel launch; every
    profiler event, the nested ones included).
    """
    data = Data(_random_data(40).train, _random_data(16).test, tuple(str(c) for c in range(10)), "folder", "")
    run = setup_many([dataclasses.replace(config, batch_size=8, eval_batch_size=8) for config in configs], data)

    def epoch():
        train_epoch_many(run, data.train.images, data.train.labels)
        evaluate_many(run, data.test.images, data.test.labels)

    epoch()  # the optimiser's state, the activation masks
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        epoch()
    events = prof.events()
    return sum(1 for event in events if event.cpu_parent is None), len(events)


def test_a_fused_epoch_of_the_study_mix_with_augmentation_costs_about_as_many_operators_at_k16_as_at_k1(record_property):
    # The study's real mix: 3 activations x 3 losses, augmentation on, bf16 autocast. K=1 is one relu/cross-entropy trial.
    # Per member and epoch only its shuffle and its augmentation codes are drawn (two host calls each, its own generator);
    # per step, a few operators per distinct activation and loss, none per member.
    counts = {k: epoch_operators(_configs(k, **STUDY_MIX, augment=True, precision="bf16")) for k in (1, 16)}
    launches, events = counts[16][0] / counts[1][0], counts[16][1] / counts[1][1]
    print(f"operators per fused epoch (top-level, all events): {counts}; K=16 / K=1 = {launches:.3f}, {events:.3f}")
    record_property("epoch_operators", counts)
    assert launches <= 1.3, counts


def _adam_pair(lrs=(1e-2, 1e-3)):
    generator = torch.Generator().manual_seed(0)
    stacked = [
        torch.randn(len(lrs), 4, 3, generator=generator, requires_grad=True),
        torch.randn(len(lrs), 5, generator=generator, requires_grad=True),
    ]
    grads = [[torch.randn(p.shape, generator=generator) for p in stacked] for _ in range(3)]
    return stacked, grads


def test_fused_adam_counts_steps_on_the_device_and_matches_torch_adam():
    from cnn.fused import FusedOptimizer

    lrs = (1e-2, 1e-3)
    stacked, grads = _adam_pair(lrs)
    members = [[p.detach()[k].clone().requires_grad_() for p in stacked] for k in range(len(lrs))]
    fused = FusedOptimizer("adam", stacked, list(lrs))
    plain = [torch.optim.Adam(params, lr=lr, foreach=False) for params, lr in zip(members, lrs, strict=True)]
    for step in grads:
        for p, g in zip(stacked, step, strict=True):
            p.grad = g.clone()
        fused.step()
        for k, optimizer in enumerate(plain):
            for p, g in zip(members[k], step, strict=True):
                p.grad = g[k].clone()
            optimizer.step()
    # The step count is a tensor on the parameters' device, read only on demand.
    assert isinstance(fused.step_count, torch.Tensor) and fused.step_count.device == stacked[0].device and fused.steps == 3
    for k in range(len(lrs)):
        for p, want in zip(stacked, members[k], strict=True):
            torch.testing.assert_close(p.detach()[k], want.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fused_optimizer_step_traces_as_one_graph(optimizer):
    # fullgraph=True fails on a graph break: a Python number taken from a tensor (.item(), float()) or a host sync in
    # the step. What a CUDA graph (torch.compile mode="reduce-overhead") needs; traced here on the CPU without compiling.
    from cnn.fused import FusedOptimizer

    stacked, grads = _adam_pair()
    twin = [p.detach().clone().requires_grad_() for p in stacked]
    eager, traced = FusedOptimizer(optimizer, stacked, [1e-2, 1e-3]), FusedOptimizer(optimizer, twin, [1e-2, 1e-3])
    torch._dynamo.reset()
    step = torch.compile(traced.step, backend="eager", fullgraph=True)
    for g in grads:
        for a, b, grad in zip(stacked, twin, g, strict=True):
            a.grad, b.grad = grad.clone(), grad.clone()
        eager.step()
        step()
    for a, b in zip(stacked, twin, strict=True):
        torch.testing.assert_close(a, b)


def test_a_compiled_fused_step_gives_the_eager_steps_losses(monkeypatch):
    # The compile switch's wiring, traced by dynamo on the CPU without code generation (backend "eager"): the forward pass
    # with the study's mixed activations and losses, and the optimiser step, give the eager run's losses and weights.
    monkeypatch.setattr(compiling, "compile_step", lambda function, mode: torch.compile(function, backend="eager"))
    marks = []  # under CUDA graphs each step's forward call marks a new step (cnn.compiling.compile_forward): once per step
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    torch._dynamo.reset()
    data = _random_data()
    configs = _configs(3, **STUDY_MIX, batch_size=8)
    eager, compiled = setup_many(configs, data), setup_many([dataclasses.replace(c, compile_mode="reduce-overhead") for c in configs], data)
    for seed in range(3):
        want, got = train_step(eager, *_batch(eager, data, seed)), train_step(compiled, *_batch(compiled, data, seed))
        torch.testing.assert_close(got[0], want[0])
        assert len(marks) == seed + 1
    assert compiled.compiled is not None
    for a, b in zip(eager.net.parameter_list(), compiled.net.parameter_list(), strict=True):
        torch.testing.assert_close(a, b)


def test_fused_trials_must_share_their_compile_mode():
    configs = _configs(2)
    with pytest.raises(ValueError, match="fused trials must share compile_mode"):
        setup_many([configs[0], dataclasses.replace(configs[1], compile_mode="default")], _random_data())
