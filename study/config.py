"""What ``python -m study.run`` is asked to do: :class:`StudyConfig` and the flags that fill it.

Every default lives in one dataclass: training settings in :class:`cnn.TrainConfig`, the
search space in :class:`SearchSpace`, the rest in :class:`StudyConfig`. The parser reads its
defaults from them, so a new training option takes a field in ``TrainConfig`` and one
``add_argument`` line.
"""

import argparse
import shlex
import sys
from dataclasses import dataclass, field, fields, replace

from cnn import ACTIVATIONS, LOSSES, OPTIMIZERS, DeviceError, TrainConfig, resolve_device
from cnn.cli import ArgumentParser, python, script
from cnn.compiling import COMPILE_MODES, CUDA_GRAPH
from cnn.fused import MEMORY_FORMATS
from cnn.registry import lookup
from study.samplers import AUTO_PRUNER, PRUNERS, SAMPLERS
from study.space import BASELINE, SearchSpace
from study.storage import DEFAULT_STORAGE, command_line

KEEP_WEIGHTS = ("all", "complete", "none")  # --keep-weights: finished trials, complete trials only, no weights
# --fuse auto: on CUDA, where one small trial leaves the GPU mostly idle, 16 trials per fused network (on an H200, each
# step one CUDA graph: 1.6x the trial-epochs per second of one captured trial at a time, 4.4 GiB; K=32 gave 8% more
# than K=16 for twice the memory); on CPUs grouped convolutions ran at 0.5-0.8x the speed of separate ones
# (cnn.bench --fuse), so trials run one at a time.
AUTO_FUSE = {"cuda": 16}
MAX_REPEATS = 5  # the sequential design's default --max-repeats

# TrainConfig fields that are flags of study.run; activation, loss, lr and seed are per trial.
TRAIN_FLAGS = ("epochs", "batch_size", "optimizer", "augment", "device", "precision", "compile_mode")
COMPILE_FLAG = {"off": None, "auto": "auto", **COMPILE_MODES}  # --compile: off (eager), auto, or a mode of cnn.compiling
# --compile auto: on CUDA the whole step replayed as one CUDA graph (on an H200: one trial 0.35 s per full epoch against
# 1.66 s eager; fused K=16 3.46 s against 3.81 s; reduce-overhead ran that fused epoch in 2.08 s, but compiles again for
# every new fused network); elsewhere eager (compiling cost more than it saved on the CPU, docs/gpu-and-speed.md).
AUTO_COMPILE = {"cuda": CUDA_GRAPH}


@dataclass(frozen=True)
class StudyConfig:
    """Everything ``python -m study.run`` was asked to do, validated."""

    train: TrainConfig = field(default_factory=TrainConfig)  # shared by every trial; seed is the base seed
    space: SearchSpace = field(default_factory=SearchSpace)
    trials: int | None = None  # finished trials the study ends with; None: the grid's size, or 50
    repeats: int | None = None  # --repeats R: the fixed design, R replicates of every grid point (seeds base + 0 ... base + R - 1);
    # None: the grid runs the sequential design (other samplers: 1)
    max_repeats: int | None = None  # the sequential design's most replicates of a grid point; None: MAX_REPEATS
    study_name: str = "cnn-study"
    storage: str = DEFAULT_STORAGE
    data_dir: str = "./data"
    train_size: int | None = None  # None: all 50,000 training images
    test_size: int | None = None  # None: all 10,000 test images
    val_split: float = 0.0  # > 0: prune and select on a validation split of the training set
    sampler: str = "grid"  # the paired design; tpe, random and qmc hunt for the best configuration instead
    pruner: str = "auto"  # auto: none for the grid (pairs compared at equal epochs), median otherwise
    min_epochs: int = 3  # epochs every trial runs before the pruner may stop it
    timeout: float | None = None  # seconds; stop starting new trials after this
    workers: int = 1  # processes on this machine, sharing the cores (or the GPUs)
    threads: int | None = None  # CPU threads per trial, stored in a new study and used by every run of it; None: cores / workers
    baseline: bool = True  # run the notebook's configuration when the grid does not hold it
    fuse: int | None = None  # trials trained at once as one fused network per worker; None: auto (1 on CPUs, 16 on CUDA)
    memory_format: str = "auto"  # a fused network's activation layout (cnn.MEMORY_FORMATS); auto: measured on the device
    keep_weights: str = "all"  # whose weights to keep: all finished trials, complete ones only, or none
    weights_dir: str | None = None  # None: weights in the study's own database; else a folder
    report: bool = True
    margin: float = 2.0  # accuracy points: the report calls a smaller difference negligible
    compare_epoch: int | None = None  # the epoch the report answers questions 1-3 at; None: 10 (the notebook's) or the last
    verbose: bool = False
    command: str = "python -m study.run"  # how this run was started, password masked

    def __post_init__(self):
        for name in ("trials", "repeats", "max_repeats", "workers", "threads", "min_epochs", "train_size", "test_size", "fuse"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1 but got {value}")
        if not 0 <= self.val_split < 1:
            raise ValueError(f"--val-split must be in [0, 1) but got {self.val_split}")
        if self.margin <= 0:
            raise ValueError(f"--margin must be a positive number of accuracy points but got {self.margin}")
        if self.compare_epoch is not None and not 1 <= self.compare_epoch <= self.train.epochs:
            raise ValueError(f"--compare-epoch must be between 1 and --epochs {self.train.epochs} but got {self.compare_epoch}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"--timeout must be a positive number of seconds but got {self.timeout}")
        lookup(SAMPLERS, self.sampler, "sampler")
        if self.pruner != "auto":
            lookup(PRUNERS, self.pruner, "pruner")
        if self.memory_format != "auto" and self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"unknown --memory-format {self.memory_format!r}; choose one of: auto, {', '.join(MEMORY_FORMATS)}")
        if self.keep_weights not in KEEP_WEIGHTS:
            raise ValueError(f"unknown --keep-weights {self.keep_weights!r}; choose one of: {', '.join(KEEP_WEIGHTS)}")
        if self.repeats is not None and self.max_repeats is not None:
            raise ValueError(
                f"--repeats {self.repeats} runs the fixed design and --max-repeats {self.max_repeats} bounds the sequential one: "
                "give one of them"
            )
        if self.max_repeats is not None and self.sampler != "grid":
            raise ValueError("--max-repeats needs --sampler grid: the sequential design is the paired grid's")
        if self.repeats is not None and self.repeats > 1 and self.sampler != "grid":
            raise ValueError(
                f"--repeats {self.repeats} needs --sampler grid: replicates belong to the paired design "
                f"(the {self.sampler} sampler hunts for the best configuration; its trials all train from seed --seed)"
            )
        if self.sampler == "grid" and self.trials is not None and self.trials > self.grid_trials:
            raise ValueError(f"--trials {self.trials} is more than the grid's {self.grid_trials} trials; use --trials {self.grid_trials}")

    @property
    def seed(self) -> int:
        return self.train.seed

    def fuse_for(self, device_type: str) -> int:
        """Trials per fused network on a device of this type: --fuse, or auto's choice."""
        return self.fuse if self.fuse is not None else AUTO_FUSE.get(device_type, 1)

    @property
    def resolved_pruner(self) -> str:
        return AUTO_PRUNER.get(self.sampler, "median") if self.pruner == "auto" else self.pruner

    @property
    def sequential(self) -> bool:
        """Whether the grid runs the sequential design (rounds of replicates where comparisons are open; see study.rounds)."""
        return self.sampler == "grid" and self.repeats is None

    @property
    def grid_repeats(self) -> int:
        """Replicates the grid holds: --repeats (fixed design), --max-repeats (sequential), 1 for other samplers."""
        if self.sequential:
            return self.max_repeats or MAX_REPEATS
        return self.repeats or 1

    @property
    def design_repeats(self) -> int | None:
        """The replicates of the paired design, or None when the sampler runs no design."""
        return self.grid_repeats if self.sampler == "grid" else None

    @property
    def baseline_on_grid(self) -> bool:
        """Whether the grid holds the notebook's configuration as one of its points."""
        return self.sampler == "grid" and self.space.contains(BASELINE) and BASELINE["lr"] in self.space.grid_lr_values()

    @property
    def baseline_params(self) -> dict | None:
        """The notebook's configuration as this study's trial parameters, or None when the study does not run it."""
        if not (self.baseline_on_grid or (self.baseline and self.space.contains(BASELINE))):
            return None
        return {**BASELINE, "replicate": 0} if self.sampler == "grid" else dict(BASELINE)

    @property
    def enqueue_baseline(self) -> bool:
        """Whether a new study starts with the notebook's configuration as an extra trial (off the grid)."""
        return self.baseline_params is not None and not self.baseline_on_grid

    @property
    def grid_trials(self) -> int:
        """Trials a full grid study runs: every grid point of every replicate, plus the baseline when it is off the grid."""
        return self.space.grid_size(self.grid_repeats) + self.enqueue_baseline

    @property
    def target(self) -> int:
        if self.trials is not None:
            return self.trials
        return self.grid_trials if self.sampler == "grid" else 50


def _fuse(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use auto or a number of trials") from None


def _compile(text: str) -> str | None:
    try:
        return lookup(COMPILE_FLAG, text, "compile mode")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def build_parser() -> argparse.ArgumentParser:
    """The command's flags; parsing is left to the caller so other entry points can reuse them."""
    study, train, space = StudyConfig(), TrainConfig(), SearchSpace()
    parser = ArgumentParser(
        prog="python -m study.run",
        description=(
            "Run an Optuna study of the lecture notebook's CIFAR-10 CNN over activation, loss and learning rate. "
            "By default it runs the sequential paired design: every activation x loss x learning rate of a grid trained "
            "once from the same seed (round 0), then, round by round, another replicate (seed + 1, + 2, ...) only of "
            "the grid points whose comparisons the report cannot decide yet, until every question is answered, "
            "--max-repeats is reached or --trials / --timeout run out. Every epoch of every trial is stored in the "
            "study database. Rerun the same command to resume."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("study")
    run.add_argument(
        "--trials",
        type=int,
        help="the most finished (complete or pruned) trials to end with (default: the grid's size times its replicates; "
        "other samplers: 50); the sequential design stops earlier when every question is answered",
    )
    run.add_argument("--study-name", default=study.study_name, help="study name in the storage (default: %(default)s)")
    run.add_argument("--storage", default=study.storage, help="Optuna storage URL (default: %(default)s)")
    run.add_argument(
        "--sampler",
        default=study.sampler,
        help=f"one of {', '.join(SAMPLERS)} (default: %(default)s). grid: the paired design, activations x losses x "
        "grid learning rates x replicates, which the report compares pair by pair; tpe, random, qmc: hunt for the "
        "best configuration over a log-uniform lr range (comparisons observational)",
    )
    run.add_argument(
        "--repeats",
        type=int,
        help="run the fixed design instead: R replicates of every grid point. Replicate r trains from seed --seed + r, "
        "so options compared within a replicate start from the same weights and see the same batches (grid sampler only)",
    )
    run.add_argument(
        "--max-repeats",
        type=int,
        help=f"the sequential design's most replicates of a grid point (default: {MAX_REPEATS})",
    )
    run.add_argument(
        "--pruner",
        default=study.pruner,
        help=f"auto or one of {', '.join(PRUNERS)} (default: %(default)s: none for the grid, whose pairs are compared "
        "at equal epochs; median for other samplers)",
    )
    run.add_argument(
        "--min-epochs",
        type=int,
        default=study.min_epochs,
        help="epochs every trial runs before the pruner may stop it (default: %(default)s)",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=train.seed,
        help="seeds the sampler, the data subsets and training: a trial trains from seed + its replicate (default: %(default)s)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=study.workers,
        help="worker processes on this machine; they share the CPU cores, or take one GPU each (default: %(default)s)",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads each trial trains with, stored in a new study and kept by every run of it (whatever its --workers), "
        "so that a seed gives the same accuracies (default: the cores / --workers of the run that creates the study)",
    )
    run.add_argument(
        "--fuse",
        type=_fuse,
        default="auto",
        help="train up to K trials at once in each worker, as one fused network (grouped convolutions, as HFTA); each "
        "trial still reports every epoch and is pruned on its own. auto: 16 on CUDA, 1 on CPUs, where fused "
        "convolutions measured slower than separate ones (default: %(default)s)",
    )
    run.add_argument(
        "--memory-format",
        default=study.memory_format,
        help="a fused network's activation layout (with --fuse above 1): channels_last, contiguous, or auto: the one whose "
        "grouped convolutions a short measurement on the device finds faster, stored with each trial (default: %(default)s); "
        "results do not depend on it",
    )
    run.add_argument("--timeout", type=float, help="seconds after which no new trial starts (default: none)")
    run.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="do not add the notebook's relu/cross_entropy/1e-3 as an extra trial when the grid lacks it",
    )
    run.add_argument(
        "--keep-weights",
        default=study.keep_weights,
        help="whose trained weights to keep: all (every finished trial), complete (not the pruned ones) or none; "
        "about 450 KB per trial (default: %(default)s)",
    )
    run.add_argument(
        "--weights-dir",
        help="keep the weights in this folder instead of the study's own database (default: in the database, so that "
        "the study moves, backs up and shares as one thing and load_model works wherever the storage opens)",
    )
    run.add_argument("--no-report", dest="report", action="store_false", help="do not build the report at the end")
    run.add_argument(
        "--margin",
        type=float,
        default=study.margin,
        help="practical margin of the report, in accuracy points: a difference shown but smaller reads as negligible, and "
        "options within it of each other (equivalence test) as equivalent (default: %(default)g; reports.build --margin overrides)",
    )
    run.add_argument(
        "--compare-epoch",
        type=int,
        help="the epoch at which the report compares activations, losses and learning rates (default: 10, the notebook's "
        "budget, or the last epoch when trials run fewer); the epochs question always uses every epoch",
    )
    run.add_argument("--verbose", action="store_true", help="show Optuna's own log messages")
    group = parser.add_argument_group("search space")
    group.add_argument(
        "--activations", default=",".join(space.activations), help=f"comma list from {', '.join(ACTIVATIONS)} (default: %(default)s)"
    )
    group.add_argument("--losses", default=",".join(space.losses), help=f"comma list from {', '.join(LOSSES)} (default: %(default)s)")
    group.add_argument("--lr-min", type=float, default=space.lr_min, help="smallest learning rate (default: %(default)g)")
    group.add_argument("--lr-max", type=float, default=space.lr_max, help="largest learning rate (default: %(default)g)")
    group.add_argument(
        "--grid-lrs",
        type=int,
        default=space.grid_lrs,
        help="learning rates in the grid, log-spaced from lr-min to lr-max (default: %(default)s, one per decade)",
    )
    group = parser.add_argument_group("training (the same for every trial)")
    group.add_argument("--epochs", type=int, default=train.epochs, help="epochs per trial (default: %(default)s, as the notebook)")
    group.add_argument("--batch-size", type=int, default=train.batch_size, help="images per step (default: %(default)s, as the notebook)")
    group.add_argument(
        "--optimizer", default=train.optimizer, help=f"one of {', '.join(OPTIMIZERS)} (default: %(default)s, as the notebook)"
    )
    group.add_argument("--augment", action="store_true", default=train.augment, help="random crop (4-pixel padding) and horizontal flip")
    group.add_argument(
        "--device", default=train.device, help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default: %(default)s)"
    )
    group.add_argument(
        "--precision", default=train.precision, help="auto (bf16 where the hardware has it), bf16 or fp32 (default: %(default)s)"
    )
    group.add_argument(
        "--compile",
        dest="compile_mode",
        metavar="MODE",
        type=_compile,
        default="auto",
        help="how each training step runs: off (eager), cuda-graph (the whole step replayed as one CUDA graph; CUDA only), "
        "a torch.compile mode (default, reduce-overhead, max-autotune-no-cudagraphs; the first epoch pays for compiling), "
        "or auto: cuda-graph on a CUDA GPU, off elsewhere (default: %(default)s)",
    )
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-dir",
        default=None,
        help="folder with train/<class>/ and test/<class>/ images, or with torchvision's cifar-10-batches-py "
        f"(default: {study.data_dir}, where CIFAR-10 is downloaded when missing)",
    )
    group.add_argument("--train-size", type=int, help="stratified random subset of the training images (default: all)")
    group.add_argument("--test-size", type=int, help="stratified random subset of the test images (default: all)")
    group.add_argument(
        "--val-split",
        type=float,
        default=study.val_split,
        help="fraction of the training images held out to prune and select on; test accuracy is still recorded "
        "(default: %(default)s, prune and select on test accuracy as the notebook measures it)",
    )
    return parser


def _epilog() -> str:
    """The help's examples and outputs, with commands that run as printed (this interpreter, not a bare ``python``)."""
    py = shlex.quote(python())
    examples = [
        (f"{py} -m study.run --trials 50", ""),
        (f"{py} -m study.run --repeats 3", "the fixed design: 3 replicates of every point"),
        (f"{py} -m study.run --sampler tpe --trials 100", "hunt for the best configuration"),
        (f"{shlex.quote(script('optuna-dashboard'))} sqlite:///runs/cnn-study.db", "browse the study while it runs"),
    ]
    width = max(len(command) for command, _ in examples) + 2
    lines = [f"  {command:{width}}# {why}" if why else f"  {command}" for command, why in examples]
    return (
        "examples:\n" + "\n".join(lines) + "\n\n"
        "Outputs: the study database (with every finished trial's weights, see --keep-weights) and, beside a SQLite\n"
        f"database (else under runs/), the report in <study-name>-report/ (rebuild it with {py} -m reports.build).\n"
        f"{py} -m study.dashboard --storage URL starts optuna-dashboard with the weights browsable."
    )


def parse_config(argv: list[str] | None = None) -> tuple[StudyConfig, bool]:
    """Parse flags into a :class:`StudyConfig`; exits with a one-line message on bad input.

    Returns:
        The config, and whether CIFAR-10 may be downloaded (only into the default folder).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    try:
        space = SearchSpace(_names(args.activations), _names(args.losses), args.lr_min, args.lr_max, args.grid_lrs)
        if args.compile_mode == "auto":
            args.compile_mode = auto_compile(args.device)
        train = replace(TrainConfig(), seed=args.seed, **{name: getattr(args, name) for name in TRAIN_FLAGS})
        # Flags are named after the config's fields.
        given = {f.name: getattr(args, f.name) for f in fields(StudyConfig) if f.name not in ("train", "space", "data_dir", "command")}
        config = StudyConfig(train, space, **given, data_dir=args.data_dir or StudyConfig.data_dir, command=command_line("study.run", argv))
    except ValueError as error:
        parser.error(_flag_message(str(error)))
    return config, args.data_dir is None


def auto_compile(device: str) -> str | None:
    """What ``--compile auto`` runs on ``device`` (a --device value): :data:`AUTO_COMPILE` by its type, else eager (None).

    A device this machine lacks resolves to eager here; run_study then says what is wrong with it.
    """
    try:
        return AUTO_COMPILE.get(resolve_device(device).type)
    except DeviceError:
        return None


def _flag_message(message: str) -> str:
    """TrainConfig speaks of its fields (``batch_size``); the command line adds the flag (``--batch-size``)."""
    for name in TRAIN_FLAGS:
        if message.startswith(f"{name} "):
            return "--" + name.replace("_", "-") + message[len(name) :]
    return message
