"""torch.compile and CUDA graphs for the training step, one trial's (``cnn.train``) and a fused run's (``cnn.fused``) alike.

Under torch.compile a step is compiled as two functions with backward between them: the forward pass with the loss(es),
and the optimiser step. What waits for the device (the finiteness check) stays outside both, between steps, so that
"reduce-overhead" can capture each as a CUDA graph; the optimiser's step count must then live on the device
(``FusedOptimizer`` keeps it there; ``cnn.train.setup`` builds Adam capturable on CUDA when compiling).

Under ``cuda-graph`` (:data:`CUDA_GRAPH`) nothing is compiled: :class:`StepGraph` captures the whole eager step (batch
gather, augmentation, forward, backward, optimiser) as one CUDA graph and replays it, one launch per step where eager
PyTorch makes hundreds (an H200 spent 5.3 ms of host time per eager step of one trial, docs/gpu-and-speed.md).
"""

import warnings
from collections.abc import Callable
from typing import Any

import torch

# TrainConfig.compile_mode: torch.compile's modes, and "cuda-graph" (StepGraph, no compiling). None is eager. On an H200
# (docs/gpu-and-speed.md) one trial's full epoch took 0.35 s under cuda-graph, 0.72 s under reduce-overhead, 1.66 s
# eager; fused K=16 3.46, 2.08 and 3.81 s. On the CPU compiling cost more than it saved. study.run's --compile auto
# picks cuda-graph on CUDA, eager elsewhere.
CUDA_GRAPH = "cuda-graph"  # no torch.compile: the eager step captured whole (StepGraph)
COMPILE_MODES = {
    "default": "default",
    "reduce-overhead": "reduce-overhead",
    "max-autotune-no-cudagraphs": "max-autotune-no-cudagraphs",
    CUDA_GRAPH: CUDA_GRAPH,
}


def compile_step(function: Callable, mode: str) -> Callable:
    """``function`` compiled in torch.compile ``mode``: the one place that compiles (tests trace with dynamo's eager backend)."""
    return torch.compile(function, mode=mode)


def compile_forward(function: Callable, mode: str) -> Callable:
    """The forward part of a training step compiled in ``mode``; under CUDA graphs ("reduce-overhead") each call first marks
    a new step (``torch.compiler.cudagraph_mark_step_begin``), so that the last step's graph outputs may be reused.

    Without the mark, CUDA graph trees guess where a step begins: once backward has run, they took the separately compiled
    optimiser step's call for a new step, which freed the gradients it was about to read (found on an H200: "accessing
    tensor output of CUDAGraphs that has been overwritten by a subsequent run"). With marks, steps begin at the marks
    only: forward, backward and the optimiser step share one.
    """
    compiled = compile_step(function, mode)
    if mode != "reduce-overhead":
        return compiled

    def step_begins(*args, **kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args, **kwargs)

    return step_begins


def compiled(mode: str | None) -> bool:
    """Whether ``mode`` (a TrainConfig.compile_mode) compiles the step with torch.compile: not eager, not ``cuda-graph``."""
    return mode is not None and mode != CUDA_GRAPH


class StepGraph:
    """A whole training step, replayed as one CUDA graph (``torch.cuda.graph``, PyTorch's "whole network capture").

    Call it as ``graph(step, *inputs)``: ``step(*inputs)`` is one eager training step (forward, backward and optimiser
    step) of the tensors ``inputs`` (None allowed), returning tensors; everything else it uses (the images on the
    device, the model, the optimiser) must stay the same objects for the graph's life. The first :data:`WARMUP` calls
    with the first call's shapes run ``step`` eagerly on a side stream (cuDNN's autotuning, the optimiser's state and
    other one-time work happen there), the next one captures it and every later one copies its inputs into the
    captured ones and replays: one launch for the whole step. A call with other shapes (an epoch's short last batch)
    runs ``step`` eagerly: the captured step reads and writes the same parameters and optimiser state, so both paths
    train the same model.

    What the graph returns is overwritten by the next replay: use it (or queue work on it) before the next call. The
    optimiser must hold no host number that changes from step to step (Adam ``capturable=True``; ``FusedOptimizer``).
    A network that changes (a fused run narrowed) needs a new StepGraph. Where the capture fails (an operator that waits
    for the device, say), a RuntimeWarning says why and every step runs eagerly: slower, the same training.
    """

    WARMUP = 3  # eager steps before capture, as PyTorch's CUDA graph notes do

    def __init__(self):
        self.calls = 0  # eager calls with the captured shapes so far
        self.shapes: list | None = None  # (shape, dtype) of the first call's inputs: the ones that are captured
        self.fixed: list[tuple] = []  # (address, shape, stride, dtype) of the fixed tensors at the first call
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: list[torch.Tensor | None] = []  # the captured step's own inputs, refilled before each replay
        self.outputs: Any = None
        self.stream: torch.cuda.Stream | None = None
        self.failed = False  # the capture raised: every call runs the step eagerly

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, step: Callable, *inputs: torch.Tensor | None, fixed: tuple[torch.Tensor, ...] = ()) -> Any:
        """``step(*inputs)``, eager or replayed; ``fixed``: tensors ``step`` reads in place (the images on the device), whose
        storage the graph holds: other storage than the captured step's starts a new graph."""
        shapes = [None if t is None else (t.shape, t.dtype) for t in inputs]
        where = [(t.data_ptr(), t.shape, t.stride(), t.dtype) for t in fixed]
        if self.shapes is not None and where != self.fixed:
            self.__init__()  # the step now reads other tensors: warm up and capture again
        if self.shapes is None:
            self.shapes, self.fixed = shapes, where
        if shapes != self.shapes:
            return step(*inputs)  # another shape: eager, on the current stream
        if self.graph is not None:
            for static, tensor in zip(self.inputs, inputs, strict=True):
                if static is not None:
                    static.copy_(tensor, non_blocking=True)
            self.graph.replay()
            return self.outputs
        if self.calls < self.WARMUP:
            self.calls += 1
            if self.stream is None:
                self.stream = torch.cuda.Stream(inputs[0].device)
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                out = step(*inputs)
            torch.cuda.current_stream().wait_stream(self.stream)
            return out
        if self.failed:
            return step(*inputs)
        self.inputs = [None if t is None else t.clone() for t in inputs]
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.current_stream()
        try:
            # thread_local: another thread's CUDA call during the capture (a study's record writer) is its own business.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.outputs = step(*self.inputs)
        except torch.OutOfMemoryError:
            torch.cuda.set_stream(stream)
            raise  # out of memory is out of memory, captured or not
        except RuntimeError as error:  # an operator that cannot be captured: nothing ran, so the step runs eagerly
            # torch.cuda.graph leaves its capture stream current when ending the capture fails: back to the caller's.
            torch.cuda.set_stream(stream)
            self.failed, self.inputs, self.outputs = True, [], None
            cause = error.__context__ or error  # ending a broken capture raises too: the first error is the reason
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            message = f"the training step could not be captured as a CUDA graph ({first}); it runs eagerly"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            return step(*inputs)
        self.graph = graph
        self.graph.replay()  # capture only records: this step runs now
        return self.outputs
