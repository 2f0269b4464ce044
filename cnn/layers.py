"""Per-layer micro-benchmark: each convolution of the fused network, grouped, against K separate convolutions.

A fused network of K members turns each of the CNN's three convolutions into one grouped
convolution (``groups=K``). Whether that is faster than K plain convolutions, and in which
memory format, depends on the device's kernels (cuDNN's grouped kernels in channels_last are
slow on some GPUs). :func:`conv_layer_times` times both, forward and backward, in both memory
formats; :func:`pick_memory_format` turns that into the layout a fused run should use.
"""

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

# (input channels, output channels, height = width) of the CNN's three convolutions, per member.
CONV_LAYERS = ((3, 32, 32), (32, 64, 16), (64, 128, 8))
LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(device: torch.device, run: Callable[[], None], repeats: int) -> float:
    run()  # warm-up: cuDNN's autotuning, oneDNN's kernel creation
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_layer_times(
    device: torch.device, dtype: torch.dtype = torch.float32, k: int = 16, batch: int = 100, repeats: int = 3, separate: bool = True
) -> list[dict]:
    """Forward and backward of each convolution at ``k`` members: grouped against ``k`` separate ones, in both layouts.

    Returns one row per (layer, memory_format): ``layer`` (1-3), ``memory_format``, ``grouped_s`` and
    ``separate_s`` (median seconds of one forward and backward over ``batch`` images), and ``speedup``
    (separate / grouped: above 1, the grouped convolution is faster). With ``separate`` False only the grouped
    convolutions are timed (``separate_s`` and ``speedup`` are NaN): what :func:`pick_memory_format` needs.
    """
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        return _rows(device, dtype, k, batch, repeats, separate)


def _rows(device: torch.device, dtype: torch.dtype, k: int, batch: int, repeats: int, separate: bool) -> list[dict]:
    generator = torch.Generator(device="cpu").manual_seed(0)
    rows = []
    for layer, shape in enumerate(CONV_LAYERS, 1):
        for name, layout in LAYOUTS.items():
            grouped, apart = _contenders(device, dtype, layout, k, batch, shape, generator)
            grouped_s = _seconds(device, grouped, repeats)
            separate_s = _seconds(device, apart, repeats) if separate else float("nan")
            rows.append({"layer": layer, "memory_format": name, "grouped_s": grouped_s, "separate_s": separate_s,
                         "speedup": separate_s / grouped_s})  # fmt: skip
    return rows


def _contenders(
    device: torch.device,
    dtype: torch.dtype,
    layout: torch.memory_format,
    k: int,
    batch: int,
    shape: tuple[int, int, int],
    generator: torch.Generator,
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(one grouped convolution of K members, K separate ones), each a forward and backward on random tensors."""
    c_in, c_out, side = shape

    def tensor(*size):
        t = torch.randn(*size, generator=generator).to(device, dtype)
        return (t.contiguous(memory_format=layout) if t.dim() == 4 else t).requires_grad_()

    x, weight, bias = tensor(batch, k * c_in, side, side), tensor(k * c_out, c_in, 3, 3), tensor(k * c_out)
    xs = [tensor(batch, c_in, side, side) for _ in range(k)]
    weights, biases = [tensor(c_out, c_in, 3, 3) for _ in range(k)], [tensor(c_out) for _ in range(k)]

    def grouped():
        out = F.conv2d(x, weight, bias, padding=1, groups=k)  # (B, K*c_out, H, W)
        out.backward(torch.ones_like(out))

    def separate():
        outs = [F.conv2d(a, w, b, padding=1) for a, w, b in zip(xs, weights, biases, strict=True)]
        torch.autograd.backward(outs, [torch.ones_like(out) for out in outs])

    return grouped, separate


def pick_memory_format(rows: list[dict]) -> tuple[str, str]:
    """The layout whose three grouped convolutions take the least time in ``rows`` (of :func:`conv_layer_times`), and why."""
    totals = {name: sum(row["grouped_s"] for row in rows if row["memory_format"] == name) for name in LAYOUTS}
    best = min(totals, key=totals.get)
    other = next(name for name in totals if name != best)
    return best, f"its grouped convolutions took {1e3 * totals[best]:.1f} ms against {1e3 * totals[other]:.1f} ms in {other}"


_picked: dict[tuple, tuple[str, str]] = {}  # (device, dtype, k, batch) -> pick_memory_format's answer, measured once


def auto_memory_format(device: torch.device, dtype: torch.dtype, k: int, batch: int) -> tuple[str, str]:
    """The faster layout for a fused run of ``k`` members on ``device``, by a short measurement (once per process)."""
    key = (str(device), dtype, k, batch)
    if key not in _picked:
        name, why = pick_memory_format(conv_layer_times(device, dtype, k, batch, repeats=2, separate=False))
        _picked[key] = name, f"measured on {device}: {why}"
    return _picked[key]
