"""``--compile cuda-graph``: the whole training step replayed as one CUDA graph trains what the eager step trains.

The graph replays the eager step's own kernels, so one trial's and a fused run's histories match the eager ones up to
rounding (fp32 here, cuDNN's deterministic kernels; setup() still lets cuDNN pick among them). Needs a CUDA GPU; on the
CPU the mode is refused.
"""

import dataclasses
import warnings

import pytest
import torch

from cnn import DeviceError, TrainConfig, train, train_many
from cnn.compiling import StepGraph
from tests.cnn_tests.test_fused_step import _random_data

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


def test_the_cuda_graph_mode_is_refused_off_cuda_with_what_to_do():
    refused = "--compile cuda-graph captures CUDA graphs, but the device is cpu: use a CUDA GPU, or --compile auto or off"
    with pytest.raises(DeviceError, match=refused):
        train(TrainConfig(device="cpu", epochs=1, compile_mode="cuda-graph"), _random_data(20))


@pytest.fixture
def deterministic():
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _close(want: list[dict], got: list[dict]) -> None:
    assert len(want) == len(got)
    for a, b in zip(want, got, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=2e-3)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-2)


@cuda
def test_one_trial_captured_trains_as_eager(deterministic):
    # 230 images in batches of 50: four full steps and a short one per epoch, so the short batch runs eagerly between
    # replays; augmentation on, so the draws reach the graph too.
    data = _random_data(230)
    config = TrainConfig(device="cuda", precision="fp32", epochs=3, batch_size=50, augment=True, loss="mse")
    eager = train(config, data)
    captured = train(dataclasses.replace(config, compile_mode="cuda-graph"), data)
    # Not bit for bit: a captured Adam computes its bias corrections on the device (capturable), eager Adam on the host;
    # on an H200 the training losses after 3 epochs differed by 4e-4 of their value. The weights are not compared: a
    # convolution's bias before BatchNorm has a gradient of rounding noise, which Adam turns into steps of size lr, so
    # those biases wander apart (on the H200 by half their size) while the network computes the same function.
    _close(eager.history, captured.history)


@cuda
def test_a_fused_run_captured_trains_as_eager_and_members_leave_as_eager(deterministic):
    # The study's mix of activations and losses; one member whose lr blows its weights up at the first step, so that its
    # loss is not finite at the first check (step 25 on a GPU) and it leaves mid-epoch: the rest go on as a narrower
    # network, captured again; and one stopped after its first epoch. 230 images in batches of 8: 28 full steps and a
    # short one per epoch.
    data = _random_data(230)
    configs = [
        TrainConfig(activation=a, loss=loss, lr=lr, seed=j, device="cuda", precision="fp32", epochs=3, batch_size=8, augment=True)
        for j, (a, loss, lr) in enumerate(
            [("relu", "cross_entropy", 1e-3), ("tanh", "mse", 1e-3), ("leaky_relu", "label_smoothing", 3e-3), ("relu", "mse", 1e30)]
        )
    ]
    stop = lambda k, row: k == 1  # noqa: E731
    eager = train_many(configs, data, stop)
    captured = train_many([dataclasses.replace(c, compile_mode="cuda-graph") for c in configs], data, stop)
    for want, got in zip(eager, captured, strict=True):
        assert (want.diverged, want.stopped) == (got.diverged, got.stopped)
    assert eager[1].stopped and len(eager[1].history) == 1
    assert eager[3].diverged and len(eager[3].history) == 1
    for k in range(3):  # the wild one's figures, if finite, amplify rounding without bound
        _close(eager[k].history, captured[k].history)


@cuda
def test_a_step_graph_replays_after_its_warm_up_and_runs_other_shapes_eagerly():
    total = torch.zeros((), device="cuda")
    calls = []

    def step(x):
        calls.append(x.shape[0])  # Python runs only when the step is not replayed
        total.add_(x.sum())
        return total * 1

    graph = StepGraph()
    for _ in range(StepGraph.WARMUP + 3):
        graph(step, torch.ones(4, device="cuda"))
    graph(step, torch.ones(2, device="cuda"))
    assert graph.captured and calls == [4] * (StepGraph.WARMUP + 1) + [2]
    assert total.item() == 4 * (StepGraph.WARMUP + 3) + 2
    # Other storage for what the step reads in place: captured again after a new warm-up.
    graph(step, torch.ones(4, device="cuda"), fixed=(torch.zeros(1, device="cuda"),))
    assert not graph.captured


@cuda
def test_a_step_that_cannot_be_captured_warns_once_and_runs_eagerly():
    total = torch.zeros((), device="cuda")

    def step(x):  # .item() waits for the device: not allowed while capturing
        total.add_(x.sum().item())
        return total

    graph = StepGraph()
    with pytest.warns(RuntimeWarning, match=r"could not be captured as a CUDA graph \(.*\); it runs eagerly"):
        for _ in range(StepGraph.WARMUP + 1):
            graph(step, torch.ones(4, device="cuda"))
    stream = torch.cuda.current_stream()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: later steps run eagerly without a word
        graph(step, torch.ones(4, device="cuda"))
    assert graph.failed and not graph.captured and total.item() == 4 * (StepGraph.WARMUP + 2)
    assert torch.cuda.current_stream() == stream  # the failed capture left its stream behind it
