"""Read a study once into tidy frames: one row per trial, one row per trial-epoch.

The study is read only through ``study.record`` (the typed settings and trial records) and
``study.storage``; every number of a report comes from the frames built here.
"""

from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd

from study.record import StudySettings, TrialRecord, read_labels
from study.storage import load_existing_study

TRIAL_COLUMNS = [
    "number",
    "state",
    "activation",
    "loss",
    "lr",
    "replicate",
    "seed",
    "value",
    "final_test_acc",
    "final_train_acc",
    "final_test_loss",
    "gap",
    "peak_test_acc",
    "epochs_run",
    "diverged",
    "baseline",
    "seconds",
    "device",
    "precision",
]
EPOCH_COLUMNS = [
    "number",
    "state",
    "activation",
    "loss",
    "lr",
    "replicate",
    "diverged",
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
]


@dataclass
class Frames:
    """A study as data: its settings, ``trials`` (one row each), ``epochs`` (one row per trial-epoch)."""

    study_name: str
    settings: StudySettings
    trials: pd.DataFrame
    epochs: pd.DataFrame
    confusion: dict[int, list[list[int]]] = field(default_factory=dict)  # trial number -> test confusion counts
    # trial number -> (epochs run, test images) uint8: each test image's predicted class after each epoch
    # (finished trials of studies that stored them; absent for older trials)
    predictions: dict[int, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None  # (test images,) uint8: the true classes, in the predictions' order; None if not stored

    @property
    def classes(self) -> list[str]:
        return self.settings.classes or [str(i) for i in range(10)]

    @property
    def chance(self) -> float:
        """Test accuracy (percent) of guessing."""
        return 100.0 / len(self.classes)

    @property
    def n_epochs(self) -> int:
        return self.settings.epochs or (int(self.epochs["epoch"].max()) if len(self.epochs) else 1)


def _trial_row(r: TrialRecord) -> dict:
    last = r.history[-1] if r.history else {}
    return {
        "number": r.number,
        "state": r.state,
        "activation": r.activation,
        "loss": r.loss,
        "lr": r.lr,
        "replicate": r.replicate,
        "seed": r.seed,
        "value": r.value,
        "final_test_acc": last.get("test_acc"),
        "final_train_acc": last.get("train_acc"),
        "final_test_loss": last.get("test_loss"),
        "gap": None if last.get("train_acc") is None else last["train_acc"] - last["test_acc"],
        "peak_test_acc": max((row["test_acc"] for row in r.history), default=None),
        "epochs_run": len(r.history),
        "diverged": r.diverged,
        "baseline": r.baseline,
        "seconds": sum(row.get("seconds") or 0.0 for row in r.history),
        "device": r.device,
        "precision": r.precision,
    }


def frames_from_records(
    study_name: str, settings: StudySettings, records: list[TrialRecord], labels: np.ndarray | None = None
) -> Frames:
    """Turn trial records into :class:`Frames` (``labels``: the study's true test labels, when it stored them)."""
    trial_rows, epoch_rows, confusion, predictions = [], [], {}, {}
    for r in records:
        row = _trial_row(r)
        trial_rows.append(row)
        if r.confusion is not None:
            confusion[r.number] = r.confusion
        if r.finished and r.predictions and "test" in r.predictions and labels is not None:
            predictions[r.number] = r.predictions["test"]
        for epoch in r.history:
            epoch_rows.append({key: row[key] for key in EPOCH_COLUMNS[:7]} | epoch)
    trials = pd.DataFrame(trial_rows, columns=TRIAL_COLUMNS)
    extra = sorted({k for r in epoch_rows for k in r} - set(EPOCH_COLUMNS) - {"seconds"})
    epochs = pd.DataFrame(epoch_rows, columns=[*EPOCH_COLUMNS, *extra, "seconds"])
    numeric = ["lr", "value", "final_test_acc", "final_train_acc", "final_test_loss", "gap", "peak_test_acc", "seconds"]
    trials[numeric] = trials[numeric].astype(float)
    trials[["diverged", "baseline"]] = trials[["diverged", "baseline"]].astype(bool)
    numeric = ["lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]
    epochs[numeric] = epochs[numeric].astype(float)
    return Frames(study_name, settings, trials, epochs, confusion, predictions, labels)


def frames_from_study(study: optuna.Study) -> Frames:
    """Read ``study`` once into :class:`Frames`."""
    records = [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]
    labels = read_labels(study.user_attrs).get("test")
    return frames_from_records(study.study_name, StudySettings.from_attrs(study.user_attrs), records, labels)


def load_frames(storage: str, study_name: str) -> Frames:
    """Read ``study_name`` from ``storage`` once into :class:`Frames`."""
    return frames_from_study(load_existing_study(storage, study_name))
