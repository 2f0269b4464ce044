"""GPU check: one command for a GPU machine without internet that brings back the speed figures and a full-data study.

Usage:
    python scripts/gpu_check.py --data cifar10-jpg.tar.gz [--out gpu-check] [--time-limit 450] [-- STUDY FLAGS]

Uses the machine's own PyTorch (nothing is installed or downloaded) and, within the time limit
(everything included, data extraction and the report too):

1. the data: a JPEG archive (.tar.gz, .tgz or .tar, with train/<class>/ and test/<class>/ at
   its top or one folder down) is extracted into OUT/data, or a folder is used as it is;
2. the figures, each printed with the GPU's name, in this order: one epoch of the notebook's loop
   and of ours for one trial; a roofline line (our epoch's FLOP/s against the dense matmul rate);
   our loop one trial at a time (the baseline); K trials fused for K in 1, 4, 16 as the study
   fuses them (the study's activations and losses mixed), in trial-epochs per second and as a
   multiple of the baseline; fused K=16 in the contiguous layout against channels_last; each of
   the three convolutions at K=16, grouped against 16 separate ones, forward and backward, in both
   layouts (cnn.layers), and the layout ``--memory-format auto`` would pick from them; on CUDA,
   our loop and fused K=16 with the training step captured or compiled (``--compile``, by default
   ``cuda-graph``: the whole eager step replayed as one CUDA graph, with K=32 too, then
   ``reduce-overhead``: torch.compile's CUDA graphs); last, fused K=32 and 64. The fused figures stop at the first K that runs out of GPU
   memory (only a real allocation failure: ``torch.OutOfMemoryError``, CUDA's "out of memory",
   cuBLAS's or cuDNN's ``*_STATUS_ALLOC_FAILED``) or passes its share of the time. Any other
   error in a figure (a device mismatch, an illegal memory access, ``CUDNN_STATUS_NOT_SUPPORTED``,
   a CUDA graph error...) fails the check loudly: its traceback goes to the log and figures.json,
   the study still runs, and the command exits with status 1. Such an error in an eager figure
   stops the figures; one in the roofline line or in a compiled figure costs none of the others;
3. a real study in the time left: ``python -m study.run --fuse auto`` on the whole training and
   test sets, the default sequential design of 10 epochs (27 grid points in its first round, or
   what fits: it is stopped in time and resumes where it stopped when the command runs again),
   the database written with weights stripped (``--keep-weights none``) to OUT/study.db and the
   report to OUT/report; with ``--compile cuda-graph`` when our loop's ``cuda-graph`` figure was
   measured, else ``--compile off`` (unless ``--compile`` is among the study flags);
4. OUT/gpu-check-results.tar.gz: the log, the figures (figures.json), the database and the
   report: the one file to bring back.

``--device cpu`` runs the same steps on the CPU (for the test that runs the whole script on a
tiny subset); flags after ``--`` go to ``study.run`` as they are (the last of a repeated flag wins).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from cnn.bench import (  # noqa: E402
    Loop,
    fair_cudnn,
    fuse_configs,
    fused_loop,
    matmul_rate,
    notebook_loop,
    one_at_a_time_loop,
    ours_loop,
    roofline,
    time_loop,
)
from cnn.cli import ArgumentParser, flag_hint  # noqa: E402
from cnn.compiling import COMPILE_MODES, CUDA_GRAPH  # noqa: E402
from cnn.data import DataError, load_data  # noqa: E402
from cnn.layers import conv_layer_times, pick_memory_format  # noqa: E402
from cnn.train import DeviceError, resolve_device, resolve_precision  # noqa: E402

# The compiled figures' modes on CUDA: the whole eager step as one CUDA graph (cheap to make), then torch.compile's.
CUDA_MODES = ("cuda-graph", "reduce-overhead")
FUSE_SIZES = (1, 4, 16, 32, 64)  # trials per fused network (32: a whole first round of 27 in one group)
STUDY_NAME = "gpu-check"
REPORT_SECONDS = 60.0  # kept back from the study for the report and the archive
# What the message of a RuntimeError from a failed GPU allocation holds (case-insensitive): CUDA's cudaErrorMemoryAllocation
# ("CUDA error: out of memory"), cuBLAS's and cuDNN's allocation statuses. Nothing broader: "cuda" or "cudnn" alone would
# turn a device mismatch, an illegal memory access or CUDNN_STATUS_NOT_SUPPORTED into a quiet "out of memory".
ALLOCATION_FAILURES = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python scripts/gpu_check.py",
        description="Speed figures and a full-data fused study on one GPU, within a time limit; everything lands in one archive.",
    )
    parser.add_argument("--data", "--data-dir", dest="data", required=True, help="CIFAR-10 JPEG archive (.tar.gz) or image folder")
    parser.add_argument("--out", default="gpu-check", help="output folder; a second run resumes the study there (default: %(default)s)")
    parser.add_argument("--time-limit", type=float, default=450.0, help="seconds for everything (default: %(default)s, 7.5 minutes)")
    parser.add_argument(
        "--figures-share", type=float, default=0.5, help="most of the time limit the figures may take (default: %(default)s)"
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a test run (default: %(default)s)")
    parser.add_argument("--train-size", type=int, help="stratified training images, for figures and study (default: all)")
    parser.add_argument("--test-size", type=int, help="stratified test images, for figures and study (default: all)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial of the study (default: %(default)s)")
    parser.add_argument("--fuse-sizes", default=",".join(map(str, FUSE_SIZES)), help="K of the fused figures (default: %(default)s)")
    parser.add_argument("--precision", default="auto", help="auto, bf16 or fp32 (default: %(default)s)")
    parser.add_argument(
        "--compile",
        type=_modes,
        help=f"modes of the compiled figures (our loop, fused K=16, and K=32 under cuda-graph), comma-separated, of "
        f"{', '.join(COMPILE_MODES)}; "
        f"or off (default: {','.join(CUDA_MODES)} on CUDA, off on the CPU)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _modes(text: str) -> list[str]:
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in ("off", *COMPILE_MODES)]
    if unknown or not modes:
        known = ", ".join(COMPILE_MODES)
        raise argparse.ArgumentTypeError(f"unknown compile mode {', '.join(unknown) or text!r}: use off or some of {known}")
    return [mode for mode in modes if mode != "off"]


def is_allocation_failure(error: BaseException) -> bool:
    """Whether ``error`` is the GPU running out of memory: ``torch.OutOfMemoryError``, or a RuntimeError whose message is
    one of :data:`ALLOCATION_FAILURES` (CUDA's "out of memory", cuBLAS's or cuDNN's ``*_STATUS_ALLOC_FAILED``)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(word in str(error).lower() for word in ALLOCATION_FAILURES)


class FigureFailure(Exception):
    """A figure failed with something other than an allocation failure: its traceback is in the log and figures.json."""

    def __init__(self, name: str, error: BaseException):
        super().__init__(f"{name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        self.name = name


class Clock:
    """The time left before a deadline."""

    def __init__(self, seconds: float, start: float | None = None):
        self.deadline = (time.monotonic() if start is None else start) + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


class Log:
    """Print to stdout and to OUT/gpu_check.log; every figure line carries the device's name."""

    def __init__(self, path: Path):
        self.file = path.open("a")
        self.device_name = ""

    def __call__(self, message: str, figure: bool = False) -> None:
        line = f"[{self.device_name}] {message}" if figure else message
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def prepare_data(source: Path, out: Path, log: Log) -> Path:
    """The image folder: ``source`` itself, or the archive extracted into OUT/data (once; a rerun reuses it)."""
    if source.is_dir():
        return source
    if not source.is_file():
        raise DataError(f"{source} is neither an image folder nor an archive")
    target = out / "data"
    done = target / ".extracted"
    if not done.exists() or done.read_text() != f"{source.resolve()} {source.stat().st_size}":
        started = time.monotonic()
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(source) as archive:
            archive.extractall(target, filter="data")
        done.write_text(f"{source.resolve()} {source.stat().st_size}")
        log(f"extracted {source.name} into {target} in {time.monotonic() - started:.0f} s")
    for folder in (target, *sorted(p for p in target.iterdir() if p.is_dir())):
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return folder
    raise DataError(f"{source} holds no train/ and test/ folders at its top or one folder down")


def measure(
    device: torch.device, make: Callable[[], Loop], estimate: float, clock: Clock, warm: bool = True, warm_estimate: float | None = None
) -> dict | None:
    """Time one epoch of the loop ``make()`` builds, then (``warm``) a second one when it fits; None when the first would not fit.

    The first epoch pays for cuDNN's autotuning and the allocator's growth (and for compiling, where the step is
    compiled: ``warm_estimate`` then says what a warm epoch costs, else 1.2 times the first): a second one that fits is
    the figure.
    """
    if estimate > clock.left():
        return None
    loop = make()
    row = {**time_loop(device, loop), "cold": True}
    # The first epoch's test accuracy (from the seed's weights: the same in every mode, up to rounding) and seconds
    # (compiling or capturing included).
    first = {"first_test_acc": row["test_acc"], "first_seconds": row["seconds"]}
    if warm and (1.2 * row["seconds"] if warm_estimate is None else warm_estimate) < clock.left():
        row = {**time_loop(device, loop), "cold": False}
    return {**row, **first}


def _cold(row: dict) -> str:
    return " (cold)" if row["cold"] else ""


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        try:
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
        except RuntimeError:  # a CUDA error that sticks to this process: the study runs in a fresh one
            pass


def compile_modes(args: argparse.Namespace, device: torch.device) -> list[str]:
    """The modes of the compiled figures, in order: ``--compile``, by default :data:`CUDA_MODES` on CUDA, none elsewhere."""
    if args.compile is not None:
        return args.compile
    return list(CUDA_MODES) if device.type == "cuda" else []


def guarded(name: str, run: Callable[[], dict | None], device: torch.device, log: Log, found: dict) -> dict | bool | None:
    """``run()``'s figure; False when the GPU ran out of memory (said, into ``found[name]``: the caller stops growing K).

    Raises:
        FigureFailure: any other error, a real failure: its traceback is logged and kept in ``found[name]``.
    """
    try:
        return run()
    except Exception as error:
        if not is_allocation_failure(error):
            trace = traceback.format_exc()
            log(f"{name}: FAILED, not an allocation failure; traceback:\n{trace.rstrip()}", figure=True)
            found[name] = {"error": f"{type(error).__name__}: {error}", "traceback": trace}
            raise FigureFailure(name, error) from error
        _free(device)
        log(f"{name}: out of GPU memory ({type(error).__name__}: {str(error).splitlines()[0][:160]})", figure=True)
        found[name] = {"error": str(error).splitlines()[0]}
        return False


def fused_figure(
    args: argparse.Namespace,
    device: torch.device,
    data,
    k: int,
    layout: str,
    mode: str | None,
    estimate: float,
    clock: Clock,
    log: Log,
    found: dict,
    warm_estimate: float | None = None,
    also: str | None = None,
) -> bool:
    """K=``k`` trials fused (the study's mix) in ``layout``, the step compiled with ``mode``; whether it was measured
    (False: out of time or memory, said). Its rate is printed as a multiple of found["one at a time"]'s, and of
    found[``also``]'s (one trial, the step compiled alike) where that was measured warm."""
    name = f"fused K={k}" + ("" if layout == "channels_last" else f" {layout}") + (f" {mode}" if mode else "")
    make = lambda: fused_loop(fuse_configs(k, device, args.precision, args.seed), data, layout, mode)  # noqa: E731
    row = guarded(name, lambda: measure(device, make, estimate, clock, warm_estimate=warm_estimate), device, log, found)
    if not row:
        if row is None:
            log(f"{name}: skipped, about {estimate:.0f} s would pass the figures' time ({clock.left():.0f} s left)", figure=True)
        return False
    found[name] = row
    alike = found.get(also or "", {})
    versus = f"  {row['trial_epochs_per_s'] * alike['seconds']:5.2f}x {also}" if alike.get("cold") is False else ""
    log(
        f"{name:<26s}{row['seconds']:7.2f} s/epoch{_cold(row)}  {row['trial_epochs_per_s']:7.3f} trial-epochs/s  "
        f"{row['trial_epochs_per_s'] / found['one at a time']['trial_epochs_per_s']:5.2f}x one at a time{versus}  "
        f"peak {row['peak_bytes'] / 2**30:.2f} GiB",
        figure=True,
    )
    _free(device)
    return True


def figures(args: argparse.Namespace, device: torch.device, data, clock: Clock, log: Log, found: dict | None = None) -> dict:
    """Measure and print every eager figure up to fused K=16 that fits before ``clock``'s deadline; returns them by name
    (into ``found``).

    Raises:
        FigureFailure: a figure failed with anything but an allocation failure; ``found`` holds the figures so far and
            the failed one's error and traceback.
    """
    found = {} if found is None else found
    fair_cudnn(device)  # the same cuDNN settings for every contender, set before the first is built
    # The notebook's epoch is bound by PIL on the CPU, which needs no warming up: timed once.
    notebook_row = lambda: measure(device, lambda: notebook_loop(data, device, args.seed), 0.0, clock, warm=False)  # noqa: E731
    notebook = guarded("notebook", notebook_row, device, log, found)
    if notebook:
        found["notebook"] = notebook
        log(f"notebook loop, one trial: {notebook['seconds']:7.2f} s/epoch", figure=True)
    ours_row = lambda: measure(device, lambda: ours_loop(data, device, args.precision, args.seed), 0.0, clock)  # noqa: E731
    ours = guarded("ours", ours_row, device, log, found)
    if not ours:
        log("our loop: skipped, no time or memory left", figure=True)
        return found
    found["ours"] = ours
    speedup = f"  {notebook['seconds'] / ours['seconds']:.2f}x the notebook's speed" if notebook else ""
    log(f"our loop, one trial:      {ours['seconds']:7.2f} s/epoch{_cold(ours)}{speedup}", figure=True)
    roofline_failure = None
    try:  # a diagnostic beside the figures: its failure is loud (and fails the check) but costs none of the others
        guarded("roofline", lambda: roofline_figure(args, device, data, ours["seconds"], log, found), device, log, found)
    except FigureFailure as error:
        roofline_failure = error

    one_loop = lambda: one_at_a_time_loop(fuse_configs(1, device, args.precision, args.seed), data)  # noqa: E731
    one = lambda: measure(device, one_loop, ours["seconds"], clock)  # noqa: E731
    baseline = guarded("one at a time", one, device, log, found)
    if not baseline:
        log("one trial at a time: skipped, no time or memory left", figure=True)
        return found
    found["one at a time"] = baseline
    rate = baseline["trial_epochs_per_s"]
    log(f"one at a time, K=1:       {baseline['seconds']:7.2f} s/epoch{_cold(baseline)}  {rate:7.3f} trial-epochs/s", figure=True)

    fused_sizes(args, device, data, clock, log, found, [k for k in _sizes(args) if k <= 16], (1, baseline["seconds"]))
    if "seconds" in found.get("fused K=16", {}) and "matmul" in found.get("roofline", {}):
        line = found["roofline"]
        line["fused K=16 share"] = 16 * line["epoch_flops"] / found["fused K=16"]["seconds"] / line["matmul"]
        log(f"roofline: fused K=16 reaches {line['fused K=16 share']:.1%} of the dense matmul rate", figure=True)
    if roofline_failure:
        raise roofline_failure
    return found


def _sizes(args: argparse.Namespace) -> list[int]:
    return [int(k) for k in args.fuse_sizes.split(",")]


def fused_sizes(
    args: argparse.Namespace, device: torch.device, data, clock: Clock, log: Log, found: dict, sizes: list[int], previous: tuple
) -> None:
    """Fused K for each of ``sizes`` in turn (K=16 in both layouts), from ``previous`` = (K, seconds) measured; stops at the
    first K out of time or memory (a larger K would be too)."""
    for k in sizes:
        estimate = previous[1] * k / previous[0]  # linear in K: the most a fused epoch should cost
        layouts = ["channels_last", "contiguous"] if k == 16 else ["channels_last"]  # grouped convs in both layouts, once
        if not all(fused_figure(args, device, data, k, layout, None, estimate, clock, log, found) for layout in layouts):
            return
        previous = (k, found[f"fused K={k}"]["seconds"])


def larger_fused_figures(args: argparse.Namespace, device: torch.device, data, clock: Clock, log: Log, found: dict) -> None:
    """Fused K above 16 (``--fuse-sizes``), measured last: they decide whether ``--fuse auto`` should fuse more, the
    figures before them are the targets'. Only where every smaller K was measured."""
    small = [k for k in _sizes(args) if k <= 16]
    if "one at a time" not in found or not all("seconds" in found.get(f"fused K={k}", {}) for k in small):
        return
    previous = (small[-1], found[f"fused K={small[-1]}"]["seconds"]) if small else (1, found["one at a time"]["seconds"])
    fused_sizes(args, device, data, clock, log, found, [k for k in _sizes(args) if k > 16], previous)


def compiled_figures(args: argparse.Namespace, device: torch.device, data, clock: Clock, log: Log, found: dict) -> None:
    """Our loop and fused K=16 with the training step captured or compiled, in each mode of :func:`compile_modes` in turn,
    beside the eager figures in ``found``.

    Measured after every eager figure: compiling takes long, and a failing mode must cost none of those. The first epoch
    pays for compiling or capturing (the estimate allows 30 s for it); the warm one is the figure. Each line says the
    test accuracy after the first epoch beside eager's: the same step from the same seed, so the same figure up to
    rounding (bfloat16, cuDNN's choice of kernels).
    """
    if "seconds" not in found.get("ours", {}):
        return
    failures = []  # every figure is tried whatever the others did; the first failure is raised at the end
    with warnings.catch_warnings():
        # A step that could not be captured runs eagerly in a study, with a warning; here it fails its figure, which
        # would otherwise time the eager step under the name of the captured one.
        warnings.filterwarnings("error", message="the training step could not be captured", category=RuntimeWarning)
        _compiled_figures(args, device, data, clock, log, found, failures)
    if failures:
        raise failures[0]


def _compiled_figures(args: argparse.Namespace, device: torch.device, data, clock: Clock, log: Log, found: dict, failures: list) -> None:
    """compiled_figures' measurements, their failures appended to ``failures``."""
    ours = found["ours"]["seconds"]
    for mode in compile_modes(args, device):
        name = f"ours {mode}"
        make = lambda mode=mode: ours_loop(data, device, args.precision, args.seed, compile_mode=mode)  # noqa: E731
        try:
            row = guarded(name, lambda make=make: measure(device, make, 2 * ours + 30, clock, warm_estimate=1.5 * ours), device, log, found)
        except FigureFailure as error:
            failures.append(error)
            row = False
        if row:
            found[name] = row
            # A cold epoch includes compiling: no multiple of eager is claimed from it.
            versus = "  cold: compiling included, no warm epoch fit" if row["cold"] else f"  {ours / row['seconds']:5.2f}x eager"
            if not row["cold"] and "first_seconds" in row:
                versus += f", first epoch {row['first_seconds']:.1f} s"
            firsts = row.get("first_test_acc"), found["ours"].get("first_test_acc")
            accuracy = f"  first epoch's test accuracy {firsts[0]:.2f}% (eager {firsts[1]:.2f}%)" if None not in firsts else ""
            log(f"{name:<26s}{row['seconds']:7.2f} s/epoch{versus}{accuracy}", figure=True)
        elif row is None:
            log(f"{name}: skipped, no time left", figure=True)
        eager16 = found.get("fused K=16", {}).get("seconds")
        # Under cuda-graph (cheap to capture) K=32 too: whether a whole first round of 27 should be one group.
        for k in [16, *([32] if mode == CUDA_GRAPH and 32 in _sizes(args) else [])]:
            if not (eager16 and "one at a time" in found):
                break
            try:
                eager = eager16 * k / 16
                if not fused_figure(args, device, data, k, "channels_last", mode, 2 * eager + 30, clock, log, found, 1.5 * eager, name):
                    break
            except FigureFailure as error:
                failures.append(error)
                break


def roofline_figure(args: argparse.Namespace, device: torch.device, data, seconds: float, log: Log, found: dict) -> dict:
    """Our epoch's achieved FLOP/s against this device's dense matrix-multiply rate in the same precision (cnn.bench's
    roofline), into ``found["roofline"]``: how far one trial is from the arithmetic limit."""
    dtype = resolve_precision(args.precision, device)
    rate = matmul_rate(device, dtype, n=8192 if device.type == "cuda" else 1024, seconds=1.0)
    row = roofline(data, device, dtype, [seconds], [rate])
    found["roofline"] = row
    log(
        f"roofline: our epoch {row['achieved'] / 1e12:.2f} TFLOP/s ({row['epoch_flops'] / 1e12:.2f} TFLOP per epoch) against "
        f"{rate / 1e12:.0f} TFLOP/s of dense {str(dtype).removeprefix('torch.')} matmul: {row['share']:.1%}",
        figure=True,
    )
    return row


def layer_figures(device: torch.device, dtype: torch.dtype, clock: Clock, log: Log, found: dict, k: int = 16) -> None:
    """Each of the three convolutions at ``k`` members, grouped against ``k`` separate ones, forward and backward, in both
    memory formats (cnn.layers), and the layout a fused run would pick from them; into ``found["conv layers"]``.

    An allocation failure is said and skipped; any other error raises :class:`FigureFailure` with its traceback logged.
    """
    if clock.left() < 10:
        log("conv layers: skipped, no time left", figure=True)
        return
    batch = 100 if device.type == "cuda" else 8  # the study's batch on a GPU; a small one for a test run on the CPU
    try:
        rows = conv_layer_times(device, dtype, k=k, batch=batch, repeats=3)
    except Exception as error:
        if not is_allocation_failure(error):
            trace = traceback.format_exc()
            log(f"conv layers: FAILED, not an allocation failure; traceback:\n{trace.rstrip()}", figure=True)
            found["conv layers"] = {"error": f"{type(error).__name__}: {error}", "traceback": trace}
            raise FigureFailure("conv layers", error) from error
        _free(device)
        log(f"conv layers: out of GPU memory ({type(error).__name__}: {str(error).splitlines()[0][:160]})", figure=True)
        found["conv layers"] = {"error": str(error).splitlines()[0]}
        return
    found["conv layers"] = rows
    for row in rows:
        log(
            f"conv layer {row['layer']} K={k} {row['memory_format']:<13s} forward+backward, {batch} images: grouped "
            f"{1e3 * row['grouped_s']:7.2f} ms, {k} separate {1e3 * row['separate_s']:7.2f} ms: grouped {row['speedup']:5.2f}x",
            figure=True,
        )
    name, why = pick_memory_format(rows)
    found["memory format"] = name
    log(f"memory format auto would pick for K={k}: {name} ({why})", figure=True)


def last_flag(flags: list[str], name: str) -> str | None:
    """The value of the last ``name`` among ``flags`` (the one argparse keeps), or None."""
    given = [flags[i + 1] for i, flag in enumerate(flags[:-1]) if flag == name]
    return given[-1] if given else None


def group_size(device: torch.device, extra: list[str]) -> int:
    """Trials per fused group of the study: ``--fuse`` among the extra flags (the last one), else auto's (16 on CUDA, 1 elsewhere)."""
    given = last_flag(extra, "--fuse")
    if given is not None and given.isdigit():
        return int(given)
    return 16 if device.type == "cuda" else 1


def study_compile(found: dict, extra: list[str]) -> str:
    """The study's ``--compile``: the extra flags', else ``cuda-graph`` where our loop's ``cuda-graph`` figure was
    measured and ``off`` where it was not (``auto`` would capture on CUDA all the same)."""
    given = last_flag(extra, "--compile")
    if given is not None:
        return given
    return CUDA_GRAPH if "seconds" in found.get(f"ours {CUDA_GRAPH}", {}) else "off"


def group_seconds(found: dict, group: int, epochs: int, mode: str | None = None) -> float:
    """About how long one fused group of ``group`` trials takes, from the largest fused figure up to that K (0: none
    measured): among the figures of compile ``mode`` (the study's, as "fused K=16 cuda-graph") where there are any, else
    among the eager ones."""

    def sizes(suffix: str) -> list[tuple[int, dict]]:
        ours = [(name, row) for name, row in found.items() if name.startswith("fused K=") and name.endswith(suffix)]
        named = [(name[8 : len(name) - len(suffix)], row) for name, row in ours]
        named = [(int(k), row) for k, row in named if k.isdigit() and "seconds" in row]
        return [(k, row) for k, row in named if k <= max(group, 1)]

    measured = (sizes(f" {mode}") if mode else []) or sizes("")
    if not measured:
        return 0.0
    k, row = max(measured, key=lambda pair: pair[0])
    return row["seconds"] * group / k * epochs


def study_command(args: argparse.Namespace, data_dir: Path, out: Path, timeout: float, extra: list[str], found: dict) -> list[str]:
    """``python -m study.run`` for a fused, resumable study into OUT/study.db, weights stripped, no report (built after);
    its step captured as a CUDA graph (``--compile cuda-graph``) where our loop's ``cuda-graph`` figure was measured,
    eager (``--compile off``) where it was not, unless the extra flags say ``--compile``."""
    command = [sys.executable, "-m", "study.run", "--data-dir", str(data_dir), "--fuse", "auto"]
    if "--compile" not in extra:
        command += ["--compile", study_compile(found, extra)]
    command += ["--storage", f"sqlite:///{(out / 'study.db').resolve()}", "--study-name", STUDY_NAME, "--keep-weights", "none"]
    command += ["--device", args.device, "--epochs", str(args.epochs), "--precision", args.precision, "--seed", str(args.seed)]
    command += ["--no-report", "--timeout", f"{max(1.0, timeout):.0f}"]
    for flag, value in (("--train-size", args.train_size), ("--test-size", args.test_size)):
        if value is not None:
            command += [flag, str(value)]
    return command + extra


def run_logged(command: list[str], log: Log, seconds: float) -> int:
    """Run ``command`` in the repository, its output into the log; past ``seconds``, SIGINT (the study queues its running
    trials again, so a rerun resumes them), then SIGKILL 30 s later. Returns its exit status."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")

    def pump():
        for line in process.stdout:
            log(line.rstrip("\n").split("\r")[-1])

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        process.wait(timeout=max(1.0, seconds))
    except subprocess.TimeoutExpired:
        log(f"time is up: stopping {command[2]} (a rerun of this command resumes it)")
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    return process.returncode


def pack(out: Path, log: Log) -> Path:
    """OUT/gpu-check-results.tar.gz: the log, figures.json, study.db and report/."""
    archive = out / "gpu-check-results.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("gpu_check.log", "figures.json", "study.db", "report"):
            if (out / name).exists():
                tar.add(out / name, arcname=name)
    log(f"results: {archive} ({archive.stat().st_size / 2**20:.1f} MiB): bring this file back")
    return archive


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = build_parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    clock = Clock(args.time_limit)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_check.log")
    log(f"== gpu_check {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {' '.join(argv)}")
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        log(f"gpu_check: {error}; nothing measured (--device cpu runs the check on the CPU)")
        return 1
    log.device_name = device_name(device)
    try:
        data_dir = prepare_data(Path(args.data).expanduser().resolve(), out, log)
        data = load_data(data_dir, train_size=args.train_size, test_size=args.test_size, seed=args.seed, download=False, clip=True)
    except DataError as error:
        log(f"error: {error}{flag_hint(error)}")
        return 2
    dtype = resolve_precision(args.precision, device)
    versions = f"torch {torch.__version__}"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        versions += f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {props.total_memory / 2**30:.0f} GiB"
    log(
        f"device: {log.device_name}; {versions}; ours in {dtype}, notebook in float32; "
        f"{len(data.train)} train + {len(data.test)} test images; {args.time_limit:.0f} s limit, {clock.left():.0f} s left"
    )

    share = Clock(min(args.figures_share * args.time_limit, clock.left() - REPORT_SECONDS))
    found: dict = {}
    failure = None
    try:
        figures(args, device, data, share, log, found)
        layer_figures(device, dtype, share, log, found)
    except FigureFailure as error:
        failure = error  # the figures stop there; the study runs in a fresh process all the same, and the exit status says it
    if not failure:
        for stage in (compiled_figures, larger_fused_figures):  # a failing compiled figure costs the larger K nothing
            try:
                stage(args, device, data, share, log, found)
            except FigureFailure as error:
                failure = failure or error
    (out / "figures.json").write_text(
        json.dumps(
            {"device": log.device_name, "torch": torch.__version__, "figures": found, "failed": str(failure) if failure else None},
            indent=2,
            default=str,
        )
        + "\n"
    )
    del data
    _free(device)

    left = clock.left() - REPORT_SECONDS
    # No fused group should start that cannot finish in time: --timeout leaves room for one group's epochs, with a margin
    # (on the H200 a group of 50 s started 51 s before the end was stopped 0.1 s short of finishing).
    group = 1.2 * group_seconds(found, group_size(device, extra), args.epochs, study_compile(found, extra)) + 10
    log(f"study: {left:.0f} s for python -m study.run --fuse auto, new groups of trials until {max(1.0, left - group):.0f} s")
    status = run_logged(study_command(args, data_dir, out, left - group, extra, found), log, left) if left > 5 else None
    # 130: stopped in time by SIGINT; its running trials are queued again for the next run.
    study_ok = status in (0, 130)
    if not study_ok:
        log(f"study.run exited with status {status}" if status is not None else "study: skipped, no time left")
    report = [sys.executable, "-m", "reports.build", "--storage", f"sqlite:///{out / 'study.db'}"]
    report += ["--study-name", STUDY_NAME, "--out", str(out / "report"), "--no-samples"]
    report_ok = (out / "study.db").exists() and run_logged(report, log, max(10.0, clock.left() - 5)) == 0
    if not report_ok:
        log("report: not built (see above)")
    if failure:
        log(f"FAILED: figure {failure} (traceback above and in figures.json)")
    pack(out, log)
    log(f"done in {args.time_limit - clock.left():.0f} s")
    return 0 if study_ok and report_ok and not failure else 1


if __name__ == "__main__":
    sys.exit(main())
