"""The contract between a study and its report: the study's settings and each trial's record.

The objective writes them as Optuna user attributes (so optuna-dashboard shows them), the
report reads them back through :meth:`StudySettings.from_attrs` and :meth:`TrialRecord.from_trial`.
No other module knows the attribute names. Studies written by the first release (no
``format`` in their settings) still read: missing fields get the values that release used.
"""

import base64
import contextlib
import math
import platform
import queue
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import optuna
import torch
import torchvision
from optuna.trial import FrozenTrial, TrialState

from cnn import EpochRow, TrainConfig, TrainResult
from study.storage import worker_id

FORMAT = 3  # 3: trials store per-image predictions; 2: seeds come from replicates, trials store their config; 1 (absent): the first release
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class StudySettings:
    """What a study did, stored once as the study's ``settings`` attribute when it is created."""

    search_space: dict  # SearchSpace.as_dict(): activations, losses, lr_min, lr_max, grid_lrs
    epochs: int  # per trial
    batch_size: int
    optimizer: str
    augment: bool
    data_source: str  # "folder" or "cifar10"
    data_path: str  # on the machine that created the study
    classes: list[str]  # in label order
    train_size: int  # images used, after any subset and validation split
    test_size: int
    val_size: int
    val_split: float
    selection: str  # "test" or "validation": what pruning and the best trial are judged on
    sampler: str  # key of study.samplers.SAMPLERS
    pruner: str  # key of study.samplers.PRUNERS, resolved ("auto" never appears here)
    min_epochs: int | None  # epochs every trial runs before the pruner may stop it (None: unknown, first release)
    seed: int  # base seed: data subsets, sampler, and trial seeds (seed + replicate)
    repeats: int = 1  # replicates of every grid point (the paired design); 1 for other samplers
    baseline: dict | None = None  # parameters of the notebook's configuration, when the study runs it
    command: str = "python -m study.run"  # how the study was started, password masked
    format: int = FORMAT
    margin: float = 2.0  # accuracy points: the report's practical margin (a smaller difference is negligible)
    compare_epoch: int | None = None  # the epoch questions 1-3 compare at (None: 10, the notebook's, or the last)
    design: str = "fixed"  # "sequential": rounds of replicates where comparisons are open (study.rounds); "fixed": every
    # point gets `repeats` replicates (studies stored before the sequential design: fixed)
    threads: int = 0  # CPU threads every trial trains with (torch.set_num_threads), whatever --workers a run has: the
    # sums of a CPU kernel depend on them, so the same seed gives the same accuracies only at the same count (0: not
    # recorded, an earlier release's study: each run uses cores / --workers)

    @property
    def sequential(self) -> bool:
        return self.paired and self.design == "sequential"

    # Settings that must match when a study is resumed: a mix would compare unlike trials. (A study of format 2
    # resumes: its new trials store predictions, and its report uses them where every trial of a comparison has them.)
    COMPARED = (
        "search_space",
        "sampler",
        "repeats",
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

    @property
    def paired(self) -> bool:
        """Whether trials form blocks of the paired design (grid sampler: options share seeds)."""
        return self.sampler == "grid" and self.format >= 2

    @property
    def pruner_text(self) -> str:
        if self.pruner == "none" or self.min_epochs is None:
            return self.pruner
        return f"{self.pruner} (each trial runs at least {self.min_epochs} epochs)"

    def to_attrs(self) -> dict:
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict) -> "StudySettings":
        """Read a study's user attributes; a study of the first release kept some of them outside ``settings``."""
        stored = dict(attrs.get("settings") or {})
        if "format" not in stored:  # the first release
            stored.update(
                format=1,
                sampler=attrs.get("sampler", "?"),
                pruner=attrs.get("pruner", "?"),  # it stored the pruner's description
                min_epochs=None,
                seed=attrs.get("seed", 0),
                command=attrs.get("command", "python -m study.run"),
                baseline={"activation": "relu", "loss": "cross_entropy", "lr": 1e-3},
            )
        known = {f.name for f in fields(cls)}
        for name, fallback in _FALLBACKS.items():
            stored.setdefault(name, fallback)  # a study whose creator died before writing them
        return cls(**{k: v for k, v in stored.items() if k in known})

    def differences(self, other: "StudySettings") -> list[str]:
        """``"epochs 10 (now 5)"`` for every compared setting in which ``other`` differs from this one."""
        diffs = []
        for name in self.COMPARED:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                diffs.append(f"{name} {_short(mine)} (now {_short(theirs)})")
        return diffs


_FALLBACKS = {"search_space": {}, "epochs": 0, "batch_size": 0, "optimizer": "?", "augment": False, "data_source": "?",
              "data_path": "?", "classes": [], "train_size": 0, "test_size": 0, "val_size": 0, "val_split": 0.0,
              "selection": "test", "sampler": "?", "pruner": "?", "min_epochs": None, "seed": 0}  # fmt: skip


def _short(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the report sees it."""

    number: int
    state: str  # "complete", "pruned", "fail", "running", "waiting", or "surplus" (failed untrained: samplers.drop_surplus)
    activation: str | None
    loss: str | None
    lr: float | None
    replicate: int  # the paired design's replicate (0 without one)
    seed: int | None  # the training seed
    value: float | None  # what the sampler saw: the last epoch's selection accuracy, complete trials only
    history: list[dict] = field(default_factory=list)  # one EpochRow per epoch run, losses None when not finite
    diverged: bool = False
    baseline: bool = False  # enqueued as the notebook's configuration
    confusion: list[list[int]] | None = None  # test confusion counts [true][predicted] after the last epoch
    device: str | None = None
    precision: str | None = None
    config: dict | None = None  # the resolved TrainConfig (format 2)
    batch_order: str | None = None  # fingerprint of the first epoch's shuffle (format 2)
    weights_artifact: str | None = None
    # split ("test", "val") -> (epochs run, images) uint8: the class predicted for each image after each epoch;
    # None for trials of studies that did not store them (before format 3)
    predictions: dict[str, np.ndarray] | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("complete", "pruned")

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> "TrialRecord":
        attrs, params = trial.user_attrs, trial.params
        return cls(
            number=trial.number,
            state="surplus" if attrs.get("surplus") else trial.state.name.lower(),
            activation=params.get("activation"),
            loss=params.get("loss"),
            lr=params.get("lr"),
            replicate=int(params.get("replicate", attrs.get("replicate", 0))),
            seed=attrs.get("seed"),
            value=trial.value if trial.state == TrialState.COMPLETE else None,
            history=list(attrs.get("history") or []),
            diverged=bool(attrs.get("diverged", False)),
            baseline=bool(attrs.get("baseline", False)),
            confusion=attrs.get("confusion"),
            device=attrs.get("device"),
            precision=attrs.get("precision"),
            config=attrs.get("config"),
            batch_order=attrs.get("batch_order"),
            weights_artifact=attrs.get("weights_artifact"),
            predictions=_read_predictions(attrs.get("predictions")),
        )


def surplus_text(surplus: int) -> str:
    """What the closing lines and the report add to their counts of trials for surplus ones (nothing when none)."""
    return f", {surplus} surplus (asked as another process took the last free grid point; never trained)" if surplus else ""


# Per-image predictions and labels: one byte per image (a class index), zlib-compressed, in base64 so
# that they sit in a JSON user attribute (about 0.4 bytes per image and epoch on CIFAR-10's 10 classes).


def encode_classes(classes: np.ndarray) -> dict:
    """A uint8 array of class indices as a JSON-able ``{"shape", "zlib_base64"}``."""
    classes = np.ascontiguousarray(classes, dtype=np.uint8)
    return {"shape": list(classes.shape), "zlib_base64": base64.b64encode(zlib.compress(classes.tobytes(), 9)).decode("ascii")}


def decode_classes(stored: dict) -> np.ndarray:
    """The array :func:`encode_classes` stored."""
    raw = zlib.decompress(base64.b64decode(stored["zlib_base64"]))
    return np.frombuffer(raw, dtype=np.uint8).reshape(stored["shape"])


def _read_predictions(stored: dict | None) -> dict[str, np.ndarray] | None:
    if not stored:
        return None
    return {split: decode_classes(value) for split, value in stored.items()}


def read_labels(study_attrs: dict) -> dict[str, np.ndarray]:
    """The study's true labels per split ("test", "val"), in the order of the trials' predictions; {} when not stored."""
    return {split: decode_classes(value) for split, value in (study_attrs.get("labels") or {}).items()}


# The writing side, used by the objective.


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "optuna": optuna.__version__,
    }


def write_start(trial: optuna.Trial, config: TrainConfig, replicate: int) -> None:
    """What is known before training: who runs it, the resolved config (as nanoGPT saves it), versions."""
    trial.set_user_attr("worker", worker_id())
    trial.set_user_attr("config", asdict(config))
    trial.set_user_attr("seed", config.seed)
    trial.set_user_attr("replicate", replicate)
    trial.set_user_attr("versions", versions())


def json_row(row: EpochRow) -> dict:
    # JSON has no NaN or infinity (the dashboard could not parse them): a diverged loss is null.
    return {k: (v if isinstance(v, int) or math.isfinite(v) else None) for k, v in row.items()}


def write_history(trial: optuna.Trial, history: list[dict]) -> None:
    trial.set_user_attr("history", history)  # the whole history, written every epoch: what is stored never has a hole


def write_result(trial: optuna.Trial, result: TrainResult) -> None:
    trial.set_user_attr("device", result.device)
    trial.set_user_attr("precision", result.precision)
    if result.memory_format:  # trained fused: the layout and why (a measurement, with --memory-format auto)
        trial.set_user_attr("memory_format", result.memory_format)
    trial.set_user_attr("n_params", result.n_params)
    trial.set_user_attr("diverged", result.diverged)
    trial.set_user_attr("epochs_run", len(result.history))
    trial.set_user_attr("test_acc", result.test_acc)
    trial.set_user_attr("confusion", result.confusion)
    trial.set_user_attr("batch_order", result.batch_order)  # trials of one replicate share it: the same batches
    # Every image's predicted class after every epoch: the report's intervals resample the test images with them.
    trial.set_user_attr("predictions", {split: encode_classes(p.numpy()) for split, p in result.predictions.items()})


def write_labels(study: optuna.Study, labels: dict[str, torch.Tensor]) -> None:
    """Store the true labels of the evaluated splits once per study (the order the predictions follow)."""
    if "labels" not in study.user_attrs:
        study.set_user_attr("labels", {split: encode_classes(y.numpy()) for split, y in labels.items()})


def write_weights(trial: optuna.Trial, artifact_id: str) -> None:
    trial.set_user_attr("weights_artifact", artifact_id)


SETTLE_SECONDS = 5.0  # how long a run that stops on an error waits for the records already submitted before it fails its trials


class Writer:
    """Writes trial records on a thread of its own, one at a time, in the order they were submitted.

    A write to the database takes tens of milliseconds (a transaction, on SQLite a file sync): on
    the training thread, K fused members' records kept the device idle for K such writes every
    epoch. Here the training thread submits them and goes on; it waits only where an order must
    hold (``TrialRun``: the previous epoch before the next, an epoch before a pruning decision,
    every epoch before the trial ends). Optuna's storages serve several threads (``optimize`` with
    ``n_jobs``). A write that fails is never lost in silence: its error is raised on the caller's
    thread by the next :meth:`submit`, :meth:`flush` or wait on a write submitted after it, and the
    writes queued after a failed one are not run (they would land out of order).

    Example:
        >>> with Writer() as writer:
        ...     done = writer.submit(lambda: None)
        ...     writer.flush()
        >>> done.done()
        True
    """

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None  # the first write that failed; later ones are not run
        self._dropping = False  # stopping after an error: what is still queued is not written
        self._thread = threading.Thread(target=self._run, daemon=True, name="record-writer")
        self._thread.start()

    def submit(self, write: Callable[[], None]) -> Future:
        """Queue ``write`` (a call that writes to the storage); the future is done when it has run.

        Raises:
            The error of an earlier write that failed.
        """
        if self._error is not None:
            raise self._error
        return self._put(write)

    def flush(self) -> None:
        """Wait until every write submitted so far has run; raise the error of any that failed."""
        self.submit(lambda: None).result()

    def settle(self, seconds: float = SETTLE_SECONDS) -> None:
        """Wait at most ``seconds`` for the writes submitted so far, then drop those still queued; never raises.

        For a run that stops on an error or a signal: its trials are failed next (and queued again),
        and the records still queued then are worth less than a prompt exit.
        """
        with contextlib.suppress(Exception):  # a failed write, or the time is up
            self._put(lambda: None).result(seconds)
        self._dropping = True

    def close(self) -> None:
        """Stop the thread once the writes submitted before have run (or been dropped)."""
        self._put(None)
        self._thread.join()

    def _put(self, write: Callable[[], None] | None) -> Future:
        done: Future = Future()
        self._queue.put((write, done))
        return done

    def _run(self) -> None:
        while True:
            write, done = self._queue.get()
            if write is None:
                done.set_result(None)
                return
            if self._error is not None or self._dropping:
                done.set_exception(self._error or RuntimeError("record dropped: the run stopped on an error"))
                continue
            try:
                write()
            except BaseException as error:
                self._error = error
                done.set_exception(error)
            else:
                done.set_result(None)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is not None:  # the run failed: what is still queued is dropped, and the thread ends after the
            self._dropping = True  # write in progress (not waited for: a database that hangs must not hold the exit)
            self._put(None)
            return
        try:
            self.flush()  # a failed write raises here, rather than vanish with the thread
        finally:
            self.close()
