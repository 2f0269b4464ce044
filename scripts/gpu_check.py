"""GPU check: the notebook's loop against ours, and fused trials against one at a time, on one CUDA GPU.

Usage:
    python scripts/gpu_check.py --data-dir DIR [--time-limit 420] [--precision auto]

Within the time limit, on the whole training and test sets (or --train-size/--test-size):
one epoch of the notebook's loop and of ours for one trial (s/epoch); one trial at a time
(our loop, K=1, the baseline); then K trials fused into one network for K in 1, 4, 16, 64
(trial-epochs/s and the ratio to the baseline), stopping at the first K that runs out of
memory or would pass the time limit. The contenders and the clock are ``cnn.bench``'s.

A contender whose second epoch fits in the time left is timed twice and reports the second
epoch (the first pays for cuDNN's autotuning and the allocator's growth); "cold" marks a
figure from a first epoch. Without a CUDA device the script says so in one line and exits
with status 0.
"""

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing the package

from cnn.bench import Loop, fuse_configs, fused_loop, notebook_loop, one_at_a_time_loop, ours_loop, time_loop
from cnn.cli import ArgumentParser, flag_hint
from cnn.data import DataError, load_data
from cnn.train import resolve_precision

FUSE_SIZES = (1, 4, 16, 64)  # trials per fused network


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python scripts/gpu_check.py", description="Time fused trials against one at a time on a CUDA GPU.")
    parser.add_argument("--data-dir", required=True, help="image folder (train/, test/) or CIFAR-10 folder; nothing is downloaded")
    parser.add_argument("--time-limit", type=float, default=420.0, help="seconds for the whole check, data loading included (default: 420)")
    parser.add_argument("--train-size", type=int, help="stratified training images per epoch (default: all)")
    parser.add_argument("--test-size", type=int, help="stratified test images per epoch (default: all)")
    parser.add_argument("--precision", default="auto", help="our loops' precision: auto, bf16 or fp32 (default: auto)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


class Clock:
    """The time left before the limit, and what a contender may spend of it."""

    def __init__(self, limit: float):
        self.deadline = time.monotonic() + limit

    def left(self) -> float:
        return self.deadline - time.monotonic()


def measure(device: torch.device, make: Callable[[], Loop], estimate: float, clock: Clock, warm: bool = True) -> dict | None:
    """Time one epoch of the loop ``make()`` builds, then (``warm``) a second one when it fits; None when the first would not fit."""
    if estimate > clock.left():
        return None
    loop = make()
    row = {**time_loop(device, loop), "cold": True}
    if warm and 1.2 * row["seconds"] < clock.left():
        row = {**time_loop(device, loop), "cold": False}
    return row


def _cold(row: dict) -> str:
    return " (cold)" if row["cold"] else ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing measured")
        return 0
    check(args, torch.device("cuda"))
    return 0


def check(args: argparse.Namespace, device: torch.device) -> None:
    """Measure and print every figure that fits in ``args.time_limit`` on ``device``."""
    clock = Clock(args.time_limit)
    try:
        data = load_data(args.data_dir, train_size=args.train_size, test_size=args.test_size, seed=args.seed, download=False, clip=True)
    except DataError as error:
        raise SystemExit(f"error: {error}{flag_hint(error)}") from None
    dtype = resolve_precision(args.precision, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    print(
        f"GPU: {name}; torch {torch.__version__}; ours in {dtype}, notebook in float32; "
        f"{len(data.train)} train + {len(data.test)} test images; {args.time_limit:.0f} s limit",
        flush=True,
    )

    # The notebook's epoch is bound by PIL on the CPU, which needs no warming up: timed once.
    notebook = measure(device, lambda: notebook_loop(data, device, args.seed), 0.0, clock, warm=False)
    print(f"notebook loop, one trial: {notebook['seconds']:7.2f} s/epoch", flush=True)
    ours = measure(device, lambda: ours_loop(data, device, args.precision, args.seed), 0.0, clock)
    if ours is None:
        print("our loop: skipped, the notebook's epoch used up the time limit")
        return
    speedup = notebook["seconds"] / ours["seconds"]
    print(f"our loop, one trial:      {ours['seconds']:7.2f} s/epoch{_cold(ours)}  {speedup:.2f}x the notebook's speed", flush=True)

    baseline = measure(device, lambda: one_at_a_time_loop(fuse_configs(1, device, args.precision, args.seed), data), ours["seconds"], clock)
    if baseline is None:
        print("one trial at a time: skipped, no time left")
        return
    rate = baseline["trial_epochs_per_s"]
    print(f"one at a time, K=1:       {baseline['seconds']:7.2f} s/epoch{_cold(baseline)}  {rate:7.3f} trial-epochs/s", flush=True)

    previous = (1, baseline["seconds"])
    for k in FUSE_SIZES:
        estimate = previous[1] * k / previous[0]  # linear in K: the most a fused epoch should cost
        try:
            row = measure(device, lambda k=k: fused_loop(fuse_configs(k, device, args.precision, args.seed), data), estimate, clock)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            print(f"fused K={k}: out of GPU memory; larger K skipped")
            break
        if row is None:
            print(f"fused K={k}: skipped, about {estimate:.0f} s would pass the time limit ({clock.left():.0f} s left)")
            break
        ratio = row["trial_epochs_per_s"] / rate
        print(
            f"fused K={k:<3d}  {row['seconds']:7.2f} s/epoch{_cold(row)}  {row['trial_epochs_per_s']:7.3f} trial-epochs/s  "
            f"{ratio:5.2f}x one at a time  peak {row['peak_bytes'] / 2**30:.1f} GiB",
            flush=True,
        )
        previous = (k, row["seconds"])
    print(f"done, {args.time_limit - clock.left():.0f} s")


if __name__ == "__main__":
    sys.exit(main())
