"""torch.compile for the training step, one trial's (``cnn.train``) and a fused run's (``cnn.fused``) alike.

A step is compiled as two functions with backward between them: the forward pass with the loss(es), and the optimiser
step. What waits for the device (the finiteness check) stays outside both, between steps, so that "reduce-overhead" can
capture each as a CUDA graph; the optimiser's step count must then live on the device (``FusedOptimizer`` keeps it
there; ``cnn.train.setup`` builds Adam capturable on CUDA when compiling).
"""

from collections.abc import Callable

import torch

# TrainConfig.compile_mode: torch.compile's modes. "reduce-overhead" captures CUDA graphs on a GPU (on an H200 it failed
# before compile_forward marked each step; not measured since); None, eager, is the default everywhere: on the CPU
# compiling cost more than it saved (docs/gpu-and-speed.md).
COMPILE_MODES = {"default": "default", "reduce-overhead": "reduce-overhead", "max-autotune-no-cudagraphs": "max-autotune-no-cudagraphs"}


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
