"""Read a study once into tidy frames: one row per trial, one row per trial-epoch."""

from dataclasses import dataclass, field

import optuna
import pandas as pd
from optuna.trial import TrialState

from study.storage import StudyError, mask_password, open_storage

TRIAL_COLUMNS = [
    "number",
    "state",
    "activation",
    "loss",
    "lr",
    "value",
    "final_test_acc",
    "final_train_acc",
    "gap",
    "peak_test_acc",
    "epochs_run",
    "diverged",
    "baseline",
    "seconds",
    "device",
    "precision",
]
EPOCH_COLUMNS = ["number", "state", "activation", "loss", "lr", "diverged", "epoch", "train_loss", "train_acc", "test_loss", "test_acc"]


@dataclass
class Frames:
    """A study as data: ``trials`` (one row each), ``epochs`` (one row per trial-epoch) and the rest."""

    study_name: str
    attrs: dict  # the study's user attributes: settings, command, sampler, pruner, ...
    trials: pd.DataFrame
    epochs: pd.DataFrame
    confusion: dict[int, list[list[int]]] = field(default_factory=dict)  # trial number -> test confusion counts
    study: optuna.Study | None = None  # for Optuna's own analyses (importances)

    @property
    def settings(self) -> dict:
        return self.attrs.get("settings", {})

    @property
    def classes(self) -> list[str]:
        return self.settings.get("classes") or [str(i) for i in range(10)]


def load_study(storage: str, study_name: str) -> optuna.Study:
    """Open an existing study; an unknown name gets the list of studies in that storage."""
    store = open_storage(storage, must_exist=True)
    try:
        return optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
        listing = ", ".join(repr(n) for n in names) if names else "none"
        raise StudyError(f"no study {study_name!r} in {mask_password(storage)}; studies there: {listing}") from None


def frames_from_study(study: optuna.Study) -> Frames:
    """Turn a study into :class:`Frames`: every number in a report comes from here."""
    trial_rows, epoch_rows, confusion = [], [], {}
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        history = attrs.get("history") or []
        last = history[-1] if history else {}
        state = trial.state.name.lower()
        row = {
            "number": trial.number,
            "state": state,
            "activation": trial.params.get("activation"),
            "loss": trial.params.get("loss"),
            "lr": trial.params.get("lr"),
            "value": trial.value if trial.state == TrialState.COMPLETE else None,
            "final_test_acc": last.get("test_acc"),
            "final_train_acc": last.get("train_acc"),
            "peak_test_acc": max((r["test_acc"] for r in history), default=None),
            "epochs_run": len(history),
            "diverged": bool(attrs.get("diverged", False)),
            "baseline": bool(attrs.get("baseline", False)),
            "seconds": sum(r.get("seconds") or 0.0 for r in history),
            "device": attrs.get("device"),
            "precision": attrs.get("precision"),
        }
        row["gap"] = None if not history or last.get("train_acc") is None else last["train_acc"] - last["test_acc"]
        trial_rows.append(row)
        if "confusion" in attrs:
            confusion[trial.number] = attrs["confusion"]
        for epoch in history:
            epoch_rows.append({key: row[key] for key in ("number", "state", "activation", "loss", "lr", "diverged")} | epoch)
    trials = pd.DataFrame(trial_rows, columns=TRIAL_COLUMNS)
    extra = sorted({k for r in epoch_rows for k in r} - set(EPOCH_COLUMNS) - {"seconds"})
    epochs = pd.DataFrame(epoch_rows, columns=[*EPOCH_COLUMNS, *extra, "seconds"])
    numeric = ["lr", "value", "final_test_acc", "final_train_acc", "gap", "peak_test_acc", "seconds"]
    trials[numeric] = trials[numeric].astype(float)
    numeric = ["lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]
    epochs[numeric] = epochs[numeric].astype(float)
    return Frames(study.study_name, dict(study.user_attrs), trials, epochs, confusion, study)


def load_frames(storage: str, study_name: str) -> Frames:
    """Read ``study_name`` from ``storage`` once into :class:`Frames`."""
    return frames_from_study(load_study(storage, study_name))
