"""Benchmark: the notebook's training loop against ours, on the same images, in one run.

Usage:
    python -m cnn.bench --data-dir DIR [--train-size N] [--test-size N] [--rounds R] [--fuse K]
        [--activations A,B] [--losses L,M] [--augment] [--optimizer adam|sgd] [--memory-format channels_last|contiguous]
        [--compile MODE]

Each round runs one epoch (train + test evaluation) of the notebook's loop exactly as
written (a dataset that turns each uint8 image into a PIL image and applies
``ToTensor()`` + ``Normalize``, ``DataLoader(batch_size=100, shuffle=True)``, the eager
NCHW model, its test loop), then one epoch of ours, alternating so that both see the
same machine state. The last line is ``train+eval speedup vs notebook: N.NNx``. With
``--precision auto`` (the default) ours also runs in the precision auto did not pick, and a
line says what auto picked, why, and how it compared (``precision: auto (...) ran N.NNx the
speed of ...``). A ``roofline:`` line gives our epoch's achieved FLOP/s (convolutions and
matmuls, counted by FlopCounterMode) against a dense 1024x1024 matmul timed in every round:
how close to the machine's limit one trial runs. With ``--compile MODE`` our loop also runs with its training step
compiled in that torch.compile mode, or replayed as one CUDA graph (``cuda-graph``, CUDA only), and with ``--fuse``
the fused trials too; a line gives that loop's speed against the eager one's over the rounds after the first (the
first pays for compiling or capturing).

With ``--fuse K`` each round also runs K trials for one epoch each, one at a time, and the
same K trials fused into one network (``cnn.fused``), and the last line becomes
``fused K=K vs one at a time: N.NNx trial-epochs/s``. The K trials are those a study fuses:
they cycle through the study's default activations and losses (``--activations``,
``--losses``), seeds seed..seed+K-1, with ``--augment`` and ``--optimizer`` when given.

Fair to every contender: cuDNN's autotuning (``cudnn.benchmark``) is switched on once, before
any contender is built, so every round of every contender runs under the same setting; and
every one of our contenders has its images on the device before the clock starts (a ``train``
run moves them once per run, not per epoch). The notebook's loop feeds the device from a
DataLoader on the CPU, as the notebook does.
"""

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from cnn.cli import ArgumentParser, flag_hint
from cnn.compiling import COMPILE_MODES
from cnn.data import Data, DataError, ImageSet, load_data
from cnn.fused import MEMORY_FORMATS, evaluate_many, setup_many, train_epoch_many
from cnn.model import build_model
from cnn.registry import UnknownNameError, lookup
from cnn.train import (
    OPTIMIZERS,
    DeviceError,
    TrainConfig,
    check_compile,
    evaluate,
    precision_choice,
    resolve_device,
    resolve_precision,
    setup,
    train_one_epoch,
)

DEFAULT_SIZES = (10_000, 2_000)  # (train, test) images per epoch when not given
# The study's default grid (study.space.SearchSpace): fused members cycle through these, as a study's fused groups mix them.
STUDY_ACTIVATIONS = ("relu", "leaky_relu", "tanh")
STUDY_LOSSES = ("cross_entropy", "mse", "bce_with_logits")


class NotebookDataset(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per item: uint8 HWC array -> PIL -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        import torchvision.transforms as transforms

        self.data = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C), as CIFAR10.data
        self.targets = labels.tolist()
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def notebook_epoch(model, criterion, optimizer, train_loader, test_loader, device) -> float:
    """The notebook's training cell and test loop for one epoch, as written; returns test accuracy."""
    model.train()
    running_loss = 0.0
    running_correct = 0
    running_total = 0
    for images, labels in train_loader:
        images = images.to(device)
        labels = labels.to(device)
        outputs = model(images)
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        _, predicted = torch.max(outputs.data, 1)
        running_total += labels.size(0)
        running_correct += (predicted == labels).sum().item()
    model.eval()
    with torch.no_grad():
        correct = 0
        total = 0
        for images, labels in test_loader:
            images = images.to(device)
            labels = labels.to(device)
            outputs = model(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return 100.0 * correct / total


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak on a GPU, sampled process RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._stop = threading.Event()
            self.peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _timed(device: torch.device, run: Callable[[], float]) -> tuple[float, float, int]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        accuracy = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return seconds, accuracy, memory.peak


def _tensors(images: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    return images.images, images.labels


@dataclass(frozen=True)
class Loop:
    """One contender: ``run()`` trains each of its ``trials`` for one epoch and evaluates it on the test set."""

    name: str
    trials: int  # trial-epochs one call of run() does
    run: Callable[[], float]  # returns the first trial's test accuracy (percent)


def notebook_loop(data: Data, device: torch.device, seed: int = 0) -> Loop:
    """The notebook's cells for one trial, as written."""
    torch.manual_seed(seed)
    train_set = NotebookDataset(data.train.images, data.train.labels)
    test_set = NotebookDataset(data.test.images, data.test.labels)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=100, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=100, shuffle=False)
    model = build_model().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    return Loop("notebook", 1, lambda: notebook_epoch(model, criterion, optimizer, train_loader, test_loader, device))


def ours_loop(
    data: Data, device: torch.device, precision: str = "auto", seed: int = 0, name: str = "ours", compile_mode: str | None = None
) -> Loop:
    """Our loop for the notebook's configuration, set up exactly as train() does it (its step compiled with ``compile_mode``)."""
    mine = setup(TrainConfig(seed=seed, device=str(device), precision=precision, compile_mode=compile_mode), data)
    # train() moves the data once per run, not per epoch: moved here, untimed, as for the other contenders of ours.
    train_set, test_set = data.train.to(device), data.test.to(device)

    def ours() -> float:
        train_one_epoch(
            mine.model,
            mine.criterion,
            mine.optimizer,
            *_tensors(train_set),
            100,
            mine.generator,
            dtype=mine.dtype,
            step=mine.step_functions(),
            graph=mine.graph,
        )
        return evaluate(mine.model, mine.criterion, *_tensors(test_set), mine.num_classes, mine.eval_batch, mine.dtype)[1]

    return Loop(name, 1, ours)


def fuse_configs(
    k: int,
    device: torch.device,
    precision: str = "auto",
    seed: int = 0,
    activations: tuple[str, ...] = STUDY_ACTIVATIONS,
    losses: tuple[str, ...] = STUDY_LOSSES,
    augment: bool = False,
    optimizer: str = "adam",
) -> list[TrainConfig]:
    """K trials as a study fuses them: trial j has ``activations[j % A]``, ``losses[(j // A) % L]`` and seed ``seed + j``.

    So a fused group of 9 or more holds every activation-loss pair of the study's default grid.
    """
    return [
        TrainConfig(
            activation=activations[j % len(activations)],
            loss=losses[j // len(activations) % len(losses)],
            seed=seed + j,
            device=str(device),
            precision=precision,
            augment=augment,
            optimizer=optimizer,
        )
        for j in range(k)
    ]


def one_at_a_time_loop(configs: list[TrainConfig], data: Data) -> Loop:
    """Each config's epoch run by our loop, one trial after the other, as K ``train`` calls would."""
    runs = [setup(config, data) for config in configs]
    device = runs[0].device
    # Each train() call moves its data once per run, not per epoch: moved here, untimed, as for the fused loop.
    train_set, test_set = data.train.to(device), data.test.to(device)

    def one_at_a_time() -> float:
        accuracies = []
        for run, config in zip(runs, configs, strict=True):
            train_one_epoch(
                run.model,
                run.criterion,
                run.optimizer,
                *_tensors(train_set),
                config.batch_size,
                run.generator,
                config.augment,
                run.dtype,
                run.step_functions(),
                run.graph,
            )
            accuracies.append(evaluate(run.model, run.criterion, *_tensors(test_set), run.num_classes, run.eval_batch, run.dtype)[1])
        return accuracies[0]

    return Loop("one at a time", len(configs), one_at_a_time)


def fused_loop(configs: list[TrainConfig], data: Data, memory_format: str = "channels_last", compile_mode: str | None = None) -> Loop:
    """The configs' epochs run as one fused network, with the functions ``train_many`` runs (compiled with ``compile_mode``)."""
    run = setup_many([replace(config, compile_mode=compile_mode) for config in configs], data, memory_format)
    train_set, test_set = data.train.to(run.device), data.test.to(run.device)

    def fused() -> float:
        train_epoch_many(run, *_tensors(train_set))
        scores = evaluate_many(run, *_tensors(test_set))
        accuracies = {member.index: score[1] for member, score in zip(run.members, scores, strict=True)}
        return accuracies.get(0, float("nan"))  # nan: the first trial diverged and left

    return Loop("fused", len(configs), fused)


def time_loop(device: torch.device, loop: Loop) -> dict:
    """One timed call of ``loop``: its seconds, trial-epochs per second, first trial's test accuracy and peak memory."""
    seconds, accuracy, peak = _timed(device, loop.run)
    return {
        "loop": loop.name,
        "trials": loop.trials,
        "seconds": seconds,
        "trial_epochs_per_s": loop.trials / seconds,
        "test_acc": accuracy,
        "peak_bytes": peak,
    }


def other_precision(precision: str, device: torch.device) -> str | None:
    """The precision ``auto`` did not pick on ``device`` ("bf16" or "fp32"); None unless ``precision`` is auto on a CPU or CUDA."""
    if precision != "auto" or device.type not in ("cpu", "cuda"):
        return None
    return "fp32" if precision_choice(device)[0] == torch.bfloat16 else "bf16"


def step_flops(data: Data, device: torch.device, dtype: torch.dtype, batch_size: int = 100) -> tuple[int, int]:
    """FLOPs (multiply-adds count 2) of one training step of the notebook's CNN and of one evaluation image.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on a real step (forward, backward: the convolutions and the
    matmuls, which hold almost all the arithmetic). Returns (per training step of ``batch_size`` images, per evaluated image).
    """
    from torch.utils.flop_counter import FlopCounterMode

    run = setup(TrainConfig(device=str(device), precision="fp32" if dtype == torch.float32 else "bf16"), data)
    x = torch.zeros(batch_size, 3, *data.train.images.shape[-2:], device=device).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(batch_size, dtype=torch.int64, device=device)
    with FlopCounterMode(display=False) as train_count:
        run.criterion(run.model(x), y).backward()
    run.model.eval()
    with FlopCounterMode(display=False) as eval_count, torch.no_grad():
        run.model(x)
    return train_count.get_total_flops(), eval_count.get_total_flops() // batch_size


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 1024, seconds: float = 0.5) -> float:
    """This device's dense matrix-multiply rate in FLOP/s: (n, n) @ (n, n) in ``dtype``, repeated for about ``seconds``.

    The roofline's compute ceiling for our step, measured in the same run (a machine shared with others shows here too).
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up: library initialisation, clocks
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        torch.mm(a, b)
        calls += 1
        if device.type == "cuda" and calls % 10 == 0:
            torch.cuda.synchronize(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
    return 2 * n**3 * calls / elapsed


def roofline(
    data: Data, device: torch.device, dtype: torch.dtype, seconds: list[float], matmul: list[float], batch_size: int = 100
) -> dict:
    """Our epoch's achieved FLOP/s against the dense matmul rate, from per-round ``seconds`` of our epoch and ``matmul`` rates.

    The share is the median over rounds of (epoch FLOPs / that round's seconds) / that round's matmul rate: both measured
    under the same load. Returns epoch_flops, achieved and matmul (medians, FLOP/s) and share.
    """
    per_step, per_image = step_flops(data, device, dtype, batch_size)
    steps = -(-len(data.train) // batch_size)
    flops = steps * per_step + len(data.test) * per_image
    share = statistics.median(flops / s / m for s, m in zip(seconds, matmul, strict=True))
    return {"epoch_flops": flops, "achieved": flops / statistics.median(seconds), "matmul": statistics.median(matmul), "share": share}


def fair_cudnn(device: torch.device) -> None:
    """cuDNN's settings for every contender: autotuning on (fixed shapes, as ``setup`` sets it), set before any is built."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def run_bench(
    data: Data,
    rounds: int,
    device: torch.device,
    precision: str = "auto",
    seed: int = 0,
    fuse: int = 0,
    configs: list[TrainConfig] | None = None,
    memory_format: str = "channels_last",
    compile_mode: str | None = None,
) -> list[dict]:
    """Alternate one notebook epoch and one of ours (and with ``fuse`` K trials one at a time and fused), ``rounds`` times.

    With ``precision`` auto (on a CPU or CUDA device), ours also runs in the precision auto did not pick ("ours bf16" or
    "ours fp32"), so that one run shows whether auto picked the faster.

    The fused trials are ``configs`` (default: :func:`fuse_configs`). Returns one row per
    timed call (see :func:`time_loop`), with its ``round``, and per round a ``matmul`` row: the dense matmul rate
    (``flops_per_s``, :func:`matmul_rate`) in our loop's precision, measured after the round's loops.
    """
    fair_cudnn(device)
    loops = [notebook_loop(data, device, seed), ours_loop(data, device, precision, seed)]
    other = other_precision(precision, device)
    if other:  # auto's choice against the precision it did not pick, in the same rounds
        loops.append(ours_loop(data, device, other, seed, name=f"ours {other}"))
    if compile_mode:  # our loop with the step compiled, beside the eager one
        loops.append(ours_loop(data, device, precision, seed, name=f"ours {compile_mode}", compile_mode=compile_mode))
    if fuse:
        configs = configs or fuse_configs(fuse, device, precision, seed)
        loops += [one_at_a_time_loop(configs, data), fused_loop(configs, data, memory_format)]
        if compile_mode:  # the same fused trials with the step compiled, beside the eager ones
            loops.append(fused_loop(configs, data, memory_format, compile_mode))
            loops[-1] = Loop(f"fused {compile_mode}", loops[-1].trials, loops[-1].run)
    width = max(len(loop.name) for loop in loops)
    dtype = resolve_precision(precision, device)
    rows = []
    for r in range(1, rounds + 1):
        for loop in loops:
            row = {"round": r, **time_loop(device, loop)}
            rows.append(row)
            images = loop.trials * (len(data.train) + len(data.test))
            print(
                f"round {r} {loop.name:{width}s} {row['seconds']:7.2f} s  {images / row['seconds']:8.0f} img/s"
                f"  test acc {row['test_acc']:5.2f}%  peak {row['peak_bytes'] / 2**20:7.0f} MiB",
                flush=True,
            )
        # The roofline's ceiling, measured in every round beside the loops, under the same load.
        rows.append({"round": r, "loop": "matmul", "flops_per_s": matmul_rate(device, dtype)})
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m cnn.bench",
        description="Time the notebook's training loop and ours on the same images, alternating, in one run.",
    )
    parser.add_argument(
        "--data-dir", help="image folder (train/, test/) or CIFAR-10 folder (default: ./data, where CIFAR-10 is downloaded when missing)"
    )
    parser.add_argument(
        "--train-size", type=int, help=f"stratified training images per epoch (default: {DEFAULT_SIZES[0]}; 0 or more than there are = all)"
    )
    parser.add_argument(
        "--test-size", type=int, help=f"stratified test images per epoch (default: {DEFAULT_SIZES[1]}; 0 or more than there are = all)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="epochs of each loop, alternating (default: 2)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--precision", default="auto", help="our loop's precision: auto, bf16 or fp32 (default: auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fuse", type=int, default=0, metavar="K", help="also time K trials one at a time and fused into one network (default: 0: off)"
    )
    fused = parser.add_argument_group("the K trials of --fuse")
    fused.add_argument(
        "--activations", default=",".join(STUDY_ACTIVATIONS), help="comma list; trial j gets the (j mod A)-th (default: %(default)s)"
    )
    fused.add_argument(
        "--losses", default=",".join(STUDY_LOSSES), help="comma list; trial j gets the (j div A mod L)-th (default: %(default)s)"
    )
    fused.add_argument("--augment", action="store_true", help="random crop and flip in every trial")
    fused.add_argument("--optimizer", default="adam", help=f"one of {', '.join(OPTIMIZERS)} (default: %(default)s)")
    fused.add_argument(
        "--compile",
        metavar="MODE",
        help=f"also time our loop (and the fused trials) with the step compiled in this mode: {', '.join(COMPILE_MODES)} "
        "(default: off)",
    )
    fused.add_argument(
        "--memory-format", default="channels_last", help=f"the fused network's layout: {' or '.join(MEMORY_FORMATS)} (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1 but got {args.rounds}")
    if args.fuse < 0:
        parser.error(f"--fuse must be at least 0 but got {args.fuse}")
    try:
        device = resolve_device(args.device)
        names = {"activations": tuple(args.activations.split(",")), "losses": tuple(args.losses.split(","))}
        configs = fuse_configs(args.fuse, device, args.precision, args.seed, **names, augment=args.augment, optimizer=args.optimizer)
        lookup(MEMORY_FORMATS, args.memory_format, "memory format")
        if args.compile:
            lookup(COMPILE_MODES, args.compile, "compile mode")
            check_compile(args.compile, device, instead="leave --compile out")
    except (DeviceError, UnknownNameError) as error:
        parser.error(str(error))
    try:
        data = load_data(
            args.data_dir or "./data",
            train_size=DEFAULT_SIZES[0] if args.train_size is None else args.train_size or None,
            test_size=DEFAULT_SIZES[1] if args.test_size is None else args.test_size or None,
            seed=args.seed,
            download=args.data_dir is None,  # as study.run: only the default folder is downloaded into
            clip=True,  # a folder with fewer images gives all it has; the first line printed says how many ran
        )
    except DataError as error:
        raise SystemExit(f"error: {error}{flag_hint(error)}") from None
    dtype = resolve_precision(args.precision, device)
    print(
        f"torch {torch.__version__} on {device} ({torch.get_num_threads()} threads); "
        f"{len(data.train)} train + {len(data.test)} test images; ours in {dtype}, notebook in float32"
    )
    if args.precision == "auto":
        print(f"precision auto on {device.type}: {str(dtype).removeprefix('torch.')}, because {precision_choice(device)[1]}")
    if args.fuse:
        members = ", ".join(f"{c.activation}/{c.loss}" for c in configs)
        print(f"K={args.fuse} trials (optimizer {args.optimizer}, augment {args.augment}, fused in {args.memory_format}): {members}")
    if device.type == "cuda":
        print("cudnn.benchmark on for every contender, set once before any of them is built")
    rows = run_bench(data, args.rounds, device, args.precision, args.seed, args.fuse, configs, args.memory_format, args.compile)
    per_loop: dict[str, list[float]] = {}
    for row in rows:
        if row["loop"] != "matmul":
            per_loop.setdefault(row["loop"], []).append(row["seconds"])
    width = max(8, *map(len, per_loop))
    n = len(data.train) + len(data.test)
    for name, seconds in per_loop.items():
        peak = max(row["peak_bytes"] for row in rows if row["loop"] == name)
        median = statistics.median(seconds)
        trials = next(row["trials"] for row in rows if row["loop"] == name)
        per_trial = f"  {trials / median:6.3f} trial-epochs/s" if args.fuse else ""
        print(f"{name:{width}s} median {median:7.2f} s/epoch  {trials * n / median:8.0f} img/s{per_trial}  peak {peak / 2**20:.0f} MiB")
    ratios = [nb / ours for nb, ours in zip(per_loop["notebook"], per_loop["ours"], strict=True)]
    other = other_precision(args.precision, device)
    if other:
        # Per-round ratios: each round's two epochs ran side by side, under the same load.
        ratio = statistics.median(o / a for o, a in zip(per_loop[f"ours {other}"], per_loop["ours"], strict=True))
        picked = str(dtype).removeprefix("torch.")
        verdict = "auto picked the faster" if ratio >= 1 else f"auto is {100 * (1 - ratio):.0f}% slower than {other}"
        print(f"precision: auto ({picked}) ran {ratio:.2f}x the speed of {other}: {verdict}")
    line = roofline(data, device, dtype, per_loop["ours"], [row["flops_per_s"] for row in rows if row["loop"] == "matmul"])
    print(
        f"roofline: our epoch {line['achieved'] / 1e9:.1f} GFLOP/s ({line['epoch_flops'] / 1e9:.1f} GFLOP of convolutions and "
        f"matmuls, train + test) against {line['matmul'] / 1e9:.1f} GFLOP/s of dense {str(dtype).removeprefix('torch.')} "
        f"1024x1024 matmul in the same rounds: {100 * line['share']:.0f}% of it"
    )
    # The first round of a compiled loop includes compiling it: the later rounds are the figure.
    later = slice(1, None) if args.rounds > 1 else slice(None)
    if args.compile:
        gain = [e / c for e, c in zip(per_loop["ours"][later], per_loop[f"ours {args.compile}"][later], strict=True)]
        print(f"ours compiled ({args.compile}) vs eager: {statistics.median(gain):.2f}x (rounds after the first)")
    print(f"train+eval speedup vs notebook: {statistics.median(ratios):.2f}x")
    if args.fuse:
        # Both do the same K trial-epochs per round, so the ratio of their seconds is the ratio of their throughputs.
        fused = [one / fused for one, fused in zip(per_loop["one at a time"], per_loop["fused"], strict=True)]
        if args.compile:
            gain = [e / c for e, c in zip(per_loop["fused"][later], per_loop[f"fused {args.compile}"][later], strict=True)]
            print(f"fused K={args.fuse} compiled ({args.compile}) vs eager: {statistics.median(gain):.2f}x (rounds after the first)")
        print(f"fused K={args.fuse} vs one at a time: {statistics.median(fused):.2f}x trial-epochs/s")


if __name__ == "__main__":
    main()
