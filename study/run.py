"""``python -m study.run``: an Optuna study of the notebook's CNN over activation, loss and lr.

The command parses its flags into a :class:`StudyConfig`, checks every input before it
touches the database, then runs trials until the study holds ``--trials`` finished
(complete or pruned) ones. Rerunning the same command resumes.
"""

import argparse
import contextlib
import os
import shlex
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from cnn import ACTIVATIONS, LOSSES, OPTIMIZERS, DataError, DeviceError, TrainConfig, UnknownNameError, load_data, resolve_device
from cnn.cli import ArgumentParser
from cnn.registry import lookup
from study.objective import make_objective
from study.space import BASELINE, SearchSpace
from study.storage import (
    DEFAULT_STORAGE,
    StudyError,
    command_line,
    fail_dead_trials,
    mask_password,
    open_storage,
    output_dir,
    requeue_interrupted,
)

# name -> constructor of a sampler from (search space, seed).
SAMPLERS = {
    "tpe": lambda space, seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda space, seed: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda space, seed: optuna.samplers.QMCSampler(seed=seed),
    "grid": lambda space, seed: optuna.samplers.GridSampler(space.grid(), seed=seed),
}

# name -> constructor of a pruner from (epochs, min_epochs). Pruners compare trials at the same epoch,
# and none of them stops a trial before it has run min_epochs epochs.
PRUNERS = {
    "median": lambda epochs, min_epochs: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=min_epochs),
    "hyperband": lambda epochs, min_epochs: optuna.pruners.HyperbandPruner(
        min_resource=min(min_epochs, epochs), max_resource=epochs, reduction_factor=3
    ),
    "successive-halving": lambda epochs, min_epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min(min_epochs, epochs), reduction_factor=3
    ),
    "none": lambda epochs, min_epochs: optuna.pruners.NopPruner(),
}

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Settings that must match when a study is resumed: a mix would compare unlike trials.
_COMPARED = (
    "search_space",
    "epochs",
    "batch_size",
    "optimizer",
    "augment",
    "data_source",
    "train_size",
    "test_size",
    "val_size",
    "classes",
)


@dataclass(frozen=True)
class StudyConfig:
    """Everything ``python -m study.run`` was asked to do, validated."""

    trials: int | None = None  # finished trials the study ends with; None: 50, or the grid's size
    epochs: int = 10
    batch_size: int = 100
    study_name: str = "cnn-study"
    storage: str = DEFAULT_STORAGE
    data_dir: str = "./data"
    train_size: int | None = None  # None: all 50,000 training images
    test_size: int | None = None  # None: all 10,000 test images
    val_split: float = 0.0  # > 0: prune and select on a validation split of the training set
    space: SearchSpace = field(default_factory=SearchSpace)
    optimizer: str = "adam"
    augment: bool = False
    sampler: str = "tpe"
    pruner: str = "median"
    min_epochs: int = 3  # epochs every trial runs before the pruner may stop it
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    timeout: float | None = None  # seconds; stop starting new trials after this
    workers: int = 1  # processes on this machine, sharing the cores (or the GPUs)
    baseline: bool = True  # enqueue the notebook's configuration as the first trial
    report: bool = True
    verbose: bool = False
    command: str = "python -m study.run"  # how this run was started, password masked

    def __post_init__(self):
        for name in ("trials", "epochs", "batch_size", "workers", "min_epochs", "train_size", "test_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1 but got {value}")
        if not 0 <= self.val_split < 1:
            raise ValueError(f"--val-split must be in [0, 1) but got {self.val_split}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"--timeout must be a positive number of seconds but got {self.timeout}")
        lookup(SAMPLERS, self.sampler, "sampler")
        lookup(PRUNERS, self.pruner, "pruner")
        lookup(OPTIMIZERS, self.optimizer, "optimizer")
        if self.sampler == "grid" and self.trials is not None and self.trials > self.grid_trials:
            raise ValueError(f"--trials {self.trials} is more than the grid's {self.grid_trials} trials; use --trials {self.grid_trials}")

    @property
    def enqueue_baseline(self) -> bool:
        """Whether a new study starts with the notebook's configuration as an extra trial."""
        if not (self.baseline and self.space.contains(BASELINE)):
            return False
        return self.sampler != "grid" or BASELINE["lr"] not in self.space.grid()["lr"]  # else the grid holds it already

    @property
    def grid_trials(self) -> int:
        """Trials a full grid study runs: every grid point, plus the baseline when it is off the grid."""
        grid = len(self.space.activations) * len(self.space.losses) * self.space.grid_lrs
        return grid + self.enqueue_baseline

    @property
    def target(self) -> int:
        if self.trials is not None:
            return self.trials
        return self.grid_trials if self.sampler == "grid" else 50

    def train_config(self) -> TrainConfig:
        """The settings every trial shares; the sampled ones are placeholders."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            augment=self.augment,
            seed=self.seed,
            device=self.device,
            precision=self.precision,
        )


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def build_parser() -> argparse.ArgumentParser:
    """The command's flags; parsing is left to the caller so other entry points can reuse them."""
    parser = ArgumentParser(
        prog="python -m study.run",
        description=(
            "Run an Optuna study of the lecture notebook's CIFAR-10 CNN over activation, loss and learning rate. "
            "Each trial trains the CNN, reports test accuracy every epoch and is pruned when it falls behind; "
            "every epoch of every trial is stored in the study database. Rerun the same command to resume."
        ),
        epilog=(
            "examples:\n"
            "  python -m study.run --trials 50\n"
            "  python -m study.run --data-dir ~/cifar10-jpg --train-size 10000 --epochs 5 --sampler grid\n"
            "  optuna-dashboard sqlite:///runs/cnn-study.db    # browse the study while it runs\n"
            "\n"
            "Outputs, beside a SQLite database (else under runs/): the database itself, every trial's weights in\n"
            "<study-name>-artifacts/, and the report in <study-name>-report/ (rebuild it with python -m reports.build)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("study")
    run.add_argument("--trials", type=int, help="finished (complete or pruned) trials to end with (default: 50; grid: the grid's size)")
    run.add_argument("--study-name", default="cnn-study", help="study name in the storage (default: cnn-study)")
    run.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna storage URL (default: {DEFAULT_STORAGE})")
    run.add_argument("--sampler", default="tpe", help=f"one of {', '.join(SAMPLERS)} (default: tpe); grid = activations x losses x lrs")
    run.add_argument("--pruner", default="median", help=f"one of {', '.join(PRUNERS)} (default: median)")
    run.add_argument("--min-epochs", type=int, default=3, help="epochs every trial runs before the pruner may stop it (default: 3)")
    run.add_argument("--seed", type=int, default=0, help="seeds the sampler, the data subsets and each trial's training (default: 0)")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on this machine; they share the CPU cores, or take one GPU each (default: 1)",
    )
    run.add_argument("--timeout", type=float, help="seconds after which no new trial starts (default: none)")
    run.add_argument(
        "--no-baseline", dest="baseline", action="store_false", help="do not start a new study with the notebook's relu/cross_entropy/1e-3"
    )
    run.add_argument("--no-report", dest="report", action="store_false", help="do not build the report at the end")
    run.add_argument("--verbose", action="store_true", help="show Optuna's own log messages")
    space = parser.add_argument_group("search space")
    space.add_argument(
        "--activations", default="relu,leaky_relu,tanh", help=f"comma list from {', '.join(ACTIVATIONS)} (default: relu,leaky_relu,tanh)"
    )
    space.add_argument(
        "--losses", default="cross_entropy,mse,bce_with_logits", help=f"comma list from {', '.join(LOSSES)} (default: %(default)s)"
    )
    space.add_argument("--lr-min", type=float, default=1e-5, help="smallest learning rate, sampled log-uniformly (default: 1e-5)")
    space.add_argument("--lr-max", type=float, default=1.0, help="largest learning rate (default: 1.0)")
    space.add_argument("--grid-lrs", type=int, default=6, help="learning rates in the grid, log-spaced from lr-min to lr-max (default: 6)")
    training = parser.add_argument_group("training (the same for every trial)")
    training.add_argument("--epochs", type=int, default=10, help="epochs per trial (default: 10, as the notebook)")
    training.add_argument("--batch-size", type=int, default=100, help="images per step (default: 100, as the notebook)")
    training.add_argument("--optimizer", default="adam", help=f"one of {', '.join(OPTIMIZERS)} (default: adam, as the notebook)")
    training.add_argument("--augment", action="store_true", help="random crop (4-pixel padding) and horizontal flip")
    training.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default: auto)")
    training.add_argument("--precision", default="auto", help="auto (bf16 where the hardware has it), bf16 or fp32 (default: auto)")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir",
        default=None,
        help="folder with train/<class>/ and test/<class>/ images, or with torchvision's cifar-10-batches-py "
        "(default: ./data, where CIFAR-10 is downloaded when missing)",
    )
    data.add_argument("--train-size", type=int, help="stratified random subset of the training images (default: all)")
    data.add_argument("--test-size", type=int, help="stratified random subset of the test images (default: all)")
    data.add_argument(
        "--val-split",
        type=float,
        default=0.0,
        help="fraction of the training images held out to prune and select on; test accuracy is still recorded "
        "(default: 0, prune and select on test accuracy as the notebook measures it)",
    )
    return parser


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
        # Flags are named after the config's fields; the rest are assembled here.
        given = {f.name: getattr(args, f.name) for f in fields(StudyConfig) if f.name not in ("data_dir", "space", "command")}
        config = StudyConfig(**given, data_dir=args.data_dir or "./data", space=space, command=command_line("study.run", argv))
        config.train_config()  # validates precision and the rest
    except ValueError as error:
        parser.error(str(error))
    return config, args.data_dir is None


def _settings(config: StudyConfig, data) -> dict:
    return {
        "search_space": config.space.as_dict(),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "optimizer": config.optimizer,
        "augment": config.augment,
        "data_source": data.source,
        "data_path": data.path,
        "classes": list(data.classes),
        "train_size": len(data.train),
        "test_size": len(data.test),
        "val_size": len(data.val) if data.val is not None else 0,
        "val_split": config.val_split,
        "selection": "validation" if data.val is not None else "test",
    }


def _check_compatible(study: optuna.Study, settings: dict, storage_url: str) -> None:
    stored = study.user_attrs.get("settings")
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise StudyError(f"study {study.study_name!r} in {mask_password(storage_url)} minimises; choose another --study-name")
    if stored is None:
        raise StudyError(
            f"study {study.study_name!r} in {mask_password(storage_url)} was not made by study.run; choose another --study-name"
        )
    diffs = [f"{key} {stored.get(key)} (now {settings[key]})" for key in _COMPARED if stored.get(key) != settings[key]]
    if diffs:
        raise StudyError(
            f"study {study.study_name!r} was created with other settings: {'; '.join(diffs)}. "
            "Rerun with its settings to resume it, or choose a new --study-name"
        )


def _count(study: optuna.Study) -> dict[str, int]:
    counts = {state: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return {state.name.lower(): n for state, n in counts.items()}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _fmt_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """A bar over the study's target trials, one line per finished trial, and a time estimate."""

    def __init__(self, study: optuna.Study, config: StudyConfig):
        self.config = config
        self.finished = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
        self.bar = tqdm(total=config.target, initial=min(self.finished, config.target), unit="trial", dynamic_ncols=True, disable=None)
        self.estimated = False
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        self._describe(study)

    def _describe(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False, states=FINISHED)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = f", best {max(t.value for t in complete):.2f}%" if complete else ""
        self.bar.set_description(f"{len(trials)} done, {pruned} pruned{best}")

    def epoch(self, trial: optuna.Trial, row: dict) -> None:
        self.bar.set_postfix_str(f"trial {trial.number} epoch {row['epoch']}/{self.config.epochs} test {row['test_acc']:.1f}%")
        if not self.estimated:
            self.estimated = True
            per_trial = row["seconds"] * self.config.epochs
            left = max(self.config.target - self.finished, 1)
            tqdm.write(
                f"first epoch took {_fmt_seconds(row['seconds'])}: about {_fmt_seconds(per_trial)} per trial of "
                f"{_plural(self.config.epochs, 'epoch')}, at most {_fmt_seconds(per_trial * left)} for the {_plural(left, 'trial')} to go "
                "(pruning shortens it)"
            )

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.seen.add(trial.number)
        if trial.state in FINISHED:
            self.finished += 1
            self.bar.update(1)
        self._describe(study)
        self.bar.set_postfix_str("")
        tqdm.write(describe_trial(trial))

    def poll(self, study: optuna.Study) -> None:
        """Catch up with trials other processes finished: one line each, and the bar."""
        for trial in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL)):
            if trial.number not in self.seen:
                self.seen.add(trial.number)
                self.trial_done(study, trial)

    def close(self) -> None:
        self.bar.close()


def describe_trial(trial: FrozenTrial) -> str:
    """One line for a finished trial: its state, accuracy, parameters and time."""
    p = trial.params
    params = f"{p.get('activation')} / {p.get('loss')} / lr {p.get('lr', float('nan')):.2e}"
    history = trial.user_attrs.get("history", [])
    seconds = sum(row.get("seconds") or 0 for row in history)
    epochs = len(history)
    if trial.state == TrialState.COMPLETE:
        diverged = trial.user_attrs.get("diverged")
        what = f"diverged at epoch {epochs}" if diverged else f"complete after {_plural(epochs, 'epoch')}"
        return f"trial {trial.number:3d} {trial.value:6.2f}%  {params}  {what}, {_fmt_seconds(seconds)}"
    if trial.state == TrialState.PRUNED:
        last = history[-1]["test_acc"] if history else float("nan")
        return f"trial {trial.number:3d} {last:6.2f}%  {params}  pruned after epoch {epochs}, {_fmt_seconds(seconds)}"
    return f"trial {trial.number:3d}  {trial.state.name.lower()}  {params}"


def _load(config: StudyConfig, download: bool):
    return load_data(
        config.data_dir,
        train_size=config.train_size,
        test_size=config.test_size,
        val_split=config.val_split,
        seed=config.seed,
        download=download,
    )


def _open_study(storage: optuna.storages.BaseStorage, config: StudyConfig, settings: dict) -> optuna.Study:
    """Load the study, or create it with its settings and baseline; refuse one made with other settings."""
    for attempt in range(20):
        try:
            study = optuna.load_study(study_name=config.study_name, storage=storage)
        except KeyError:
            try:
                study = optuna.create_study(study_name=config.study_name, storage=storage, direction="maximize")
            except optuna.exceptions.DuplicatedStudyError:
                continue  # another machine created it this instant: load theirs
            study.set_user_attr("command", config.command)
            study.set_user_attr("sampler", config.sampler)
            study.set_user_attr(
                "pruner",
                config.pruner if config.pruner == "none" else f"{config.pruner} (each trial runs at least {config.min_epochs} epochs)",
            )
            study.set_user_attr("seed", config.seed)
            study.set_user_attr("artifacts", str(output_dir(config.storage, config.study_name, "artifacts").resolve()))
            if config.enqueue_baseline:
                study.enqueue_trial(BASELINE, user_attrs={"baseline": True})
            study.set_user_attr("settings", settings)  # last: other machines wait for it before joining
            return study
        if "settings" not in study.user_attrs and not study.trials and attempt < 19:
            time.sleep(0.5)  # its creator on another machine is still writing its settings
            continue
        _check_compatible(study, settings, config.storage)
        failed = fail_dead_trials(study)
        if failed:
            print(f"trial(s) {', '.join(map(str, failed))} were left running by a process that died: marked failed, queued again")
        return study
    raise StudyError(f"could not create or load study {config.study_name!r} in {mask_password(config.storage)}")


def _optimize(study: optuna.Study, config: StudyConfig, data, worker: int = 0, progress: "Progress | None" = None) -> None:
    """Run trials in this process until the study holds ``config.target`` finished ones."""
    existing = len(study.get_trials(deepcopy=False))
    # A resumed run or another worker must not replay the same random draws.
    study.sampler = lookup(SAMPLERS, config.sampler, "sampler")(config.space, config.seed + existing + 10_007 * worker)
    study.pruner = lookup(PRUNERS, config.pruner, "pruner")(config.epochs, config.min_epochs)
    artifacts = Path(study.user_attrs.get("artifacts") or output_dir(config.storage, config.study_name, "artifacts").resolve())
    artifacts.mkdir(parents=True, exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(artifacts))
    settings = study.user_attrs["settings"] | {"data_path": data.path}
    objective = make_objective(config.space, config.train_config(), data, settings, store, on_epoch=progress.epoch if progress else None)
    callbacks = [progress.trial_done] if progress else []
    callbacks.append(optuna.study.MaxTrialsCallback(config.target, states=FINISHED))
    try:
        study.optimize(objective, n_trials=config.target, timeout=config.timeout, callbacks=callbacks)
    except KeyboardInterrupt:
        if progress:
            progress.close()
        for number in requeue_interrupted(study):
            print(f"\ninterrupted: trial {number} is recorded as failed and queued to run again", file=sys.stderr)
        raise


def _worker_device(device: str, worker: int) -> str:
    """Spread workers over the GPUs: worker k gets GPU k mod n."""
    if device in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return f"cuda:{worker % torch.cuda.device_count()}"
    return device


def _quiet_optuna(verbose: bool) -> None:
    """Optuna's log lines and experimental-feature warnings only with --verbose."""
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    if not verbose:
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="optuna")


def _worker_main(config: StudyConfig, worker: int) -> None:
    """One of ``--workers`` processes: its share of the cores, its GPU, the shared study."""
    _quiet_optuna(config.verbose)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))
    config = replace(config, device=_worker_device(config.device, worker))
    data = _load(config, download=False)  # the parent made sure the data is there, and cached
    study = optuna.load_study(study_name=config.study_name, storage=open_storage(config.storage))
    with contextlib.suppress(KeyboardInterrupt):  # the parent reports the interruption
        _optimize(study, config, data, worker)


def _run_workers(study: optuna.Study, config: StudyConfig) -> None:
    """Run ``config.workers`` processes on the study; this process shows the whole study's progress."""
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    progress = Progress(study, config)
    with ThreadPoolExecutor(1) as pool:
        jobs = pool.submit(
            Parallel(n_jobs=config.workers, backend="loky"), (delayed(_worker_main)(config, k) for k in range(config.workers))
        )
        try:
            while not jobs.done():
                progress.poll(study)
                time.sleep(1.0)
            progress.poll(study)
            jobs.result()
        except KeyboardInterrupt:
            progress.close()
            get_reusable_executor().shutdown(wait=False, kill_workers=True)
            failed = fail_dead_trials(study)  # their trials: failed now, and queued to run again
            if failed:
                print(f"\ninterrupted: trial(s) {', '.join(map(str, failed))} recorded as failed and queued to run again", file=sys.stderr)
            raise
    progress.close()


def run_study(config: StudyConfig, download: bool = False) -> optuna.Study:
    """Check inputs, open or create the study and run it to ``config.target`` finished trials.

    Raises:
        StudyError, DataError, DeviceError: a bad input; the storage is left as it was.
        KeyboardInterrupt: after recording the running trial as failed and queueing it again.
    """
    device = resolve_device(config.device)
    print(f"loading data from {config.data_dir} ...", file=sys.stderr)
    data = _load(config, download)
    storage = open_storage(config.storage, create_folder=config.storage == DEFAULT_STORAGE)
    study = _open_study(storage, config, _settings(config, data))
    finished = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
    remaining = config.target - finished
    if remaining <= 0:
        print(f"study {config.study_name!r} already has {finished} finished trials (target {config.target}); nothing to run")
        return study
    where = f"{config.workers} workers" if config.workers > 1 else str(device)
    print(f"study {config.study_name!r} in {mask_password(config.storage)}: {finished} finished, running {remaining} more on {where}")
    if config.workers == 1:
        progress = Progress(study, config)
        _optimize(study, config, data, progress=progress)
        progress.close()
    else:
        _run_workers(study, config)
    return study


def summarize(study: optuna.Study, config: StudyConfig) -> str:
    """The closing lines: counts, the best trial, how to load it, where the report is, the dashboard."""
    counts = _count(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    diverged = sum(bool(t.user_attrs.get("diverged")) for t in complete)
    storage = mask_password(config.storage)
    lines = [
        f"study {study.study_name!r}: {counts['complete'] + counts['pruned']} finished "
        f"({counts['complete']} complete of which {diverged} diverged, {counts['pruned']} pruned), {counts['fail']} failed"
    ]
    if complete:
        best = study.best_trial
        metric = "validation" if study.user_attrs.get("settings", {}).get("selection") == "validation" else "test"
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        lines.append(f"best: trial {best.number}, {best.value:.2f}% {metric} accuracy: {params}")
        lines.append(f'best model: python -c "from study import load_model; model = load_model({storage!r}, {study.study_name!r})"')
    lines.append(f"dashboard: optuna-dashboard {shlex.quote(storage)}")
    if storage != config.storage:
        lines.append("(the password is shown as ***: put it back in those commands)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    config, download = parse_config(argv)
    _quiet_optuna(config.verbose)
    started = time.perf_counter()
    try:
        study = run_study(config, download)
    except (StudyError, DataError, DeviceError, UnknownNameError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"resume with: {config.command}", file=sys.stderr)
        return 130
    print(summarize(study, config))
    status = 0
    if config.report:
        status = _report(study, config)
    print(f"ran for {_fmt_seconds(time.perf_counter() - started)}")
    return status


def _report(study: optuna.Study, config: StudyConfig) -> int:
    from reports.build import build_report
    from reports.frames import frames_from_study

    out = output_dir(config.storage, config.study_name, "report")
    rebuild = (
        f"python -m reports.build --storage {shlex.quote(mask_password(config.storage))} --study-name {shlex.quote(config.study_name)}"
    )
    try:
        path = build_report(frames_from_study(study), out)
    except Exception as error:  # the study is safe in the database whatever happens here
        print(
            f"error: the report could not be built ({type(error).__name__}: {error}); the study is intact, retry with: {rebuild}",
            file=sys.stderr,
        )
        return 1
    print(f"report: {path} (rebuild with: {rebuild})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
