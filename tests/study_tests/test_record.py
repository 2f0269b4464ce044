"""The typed contract between study and report: settings and trial records, written and read back."""

import math

import numpy as np
import optuna
import pytest

from cnn import TrainConfig
from study import record
from study.record import FORMAT, StudySettings, TrialRecord
from study.runner import _check_compatible
from study.storage import StudyError


def _settings(**changes) -> StudySettings:
    fields = dict(
        search_space={"activations": ["relu"], "losses": ["mse"], "lr_min": 1e-5, "lr_max": 1.0, "grid_lrs": 6},
        epochs=10, batch_size=100, optimizer="adam", augment=False, data_source="folder", data_path="/data",
        classes=["a", "b"], train_size=100, test_size=50, val_size=0, val_split=0.0, selection="test",
        sampler="grid", pruner="none", min_epochs=3, seed=0,
    )  # fmt: skip
    return StudySettings(**(fields | changes))


def test_settings_round_trip_through_the_study_attributes():
    settings = _settings(repeats=3, baseline={"activation": "relu", "loss": "mse", "lr": 1e-3, "replicate": 0})
    study = optuna.create_study()
    study.set_user_attr("settings", settings.to_attrs())
    assert StudySettings.from_attrs(study.user_attrs) == settings
    assert settings.paired and settings.format == FORMAT


def test_differences_name_every_changed_setting_and_notice_grid_lrs():
    stored = _settings()
    now = _settings(epochs=5, search_space={**stored.search_space, "grid_lrs": 4})
    assert stored.differences(now) == [
        "search_space {activations: relu, losses: mse, lr_min: 1e-05, lr_max: 1.0, grid_lrs: 6} "
        "(now {activations: relu, losses: mse, lr_min: 1e-05, lr_max: 1.0, grid_lrs: 4})",
        "epochs 10 (now 5)",
    ]
    assert stored.differences(_settings(data_path="/elsewhere", seed=1)) == []  # another machine's path is no difference


def test_a_first_release_study_still_reads():
    # What the first release stored: settings without format, sampler and pruner beside them.
    attrs = {
        "settings": {k: v for k, v in _settings().to_attrs().items() if k in (
            "search_space", "epochs", "batch_size", "optimizer", "augment", "data_source", "data_path", "classes",
            "train_size", "test_size", "val_size", "val_split", "selection")},
        "sampler": "grid", "pruner": "median (each trial runs at least 3 epochs)", "seed": 4, "command": "python -m study.run",
    }  # fmt: skip
    settings = StudySettings.from_attrs(attrs)
    assert settings.format == 1 and not settings.paired  # seeds came from trial numbers: no pairs
    assert settings.pruner_text == "median (each trial runs at least 3 epochs)" and settings.seed == 4
    assert settings.baseline == {"activation": "relu", "loss": "cross_entropy", "lr": 1e-3}
    # Resuming it would mix two seeding schemes: the runner refuses, with the reason.
    study = optuna.create_study(direction="maximize")
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    with pytest.raises(StudyError, match="made by an earlier release that seeded trials by trial number"):
        _check_compatible(study, _settings(), "sqlite://")


def test_pruner_text():
    assert _settings(pruner="median", min_epochs=2).pruner_text == "median (each trial runs at least 2 epochs)"
    assert _settings(pruner="none").pruner_text == "none"


def test_trial_record_reads_what_the_objective_writes():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.suggest_categorical("activation", ["tanh"])
    trial.suggest_categorical("loss", ["mse"])
    trial.suggest_float("lr", 1e-3, 1e-3)
    trial.suggest_int("replicate", 1, 1)
    config = TrainConfig("tanh", "mse", 1e-3, seed=1)
    record.write_start(trial, config, 1)
    record.write_history(trial, [record.json_row({"epoch": 1, "train_loss": math.nan, "train_acc": 20.0, "test_acc": 21.0})])
    study.tell(trial, 21.0)
    got = TrialRecord.from_trial(study.trials[0])
    assert (got.activation, got.loss, got.lr, got.replicate, got.seed) == ("tanh", "mse", 1e-3, 1, 1)
    assert (got.value, got.state) == (21.0, "complete")
    assert got.config == {**config.__dict__}
    # JSON has no NaN: a diverged loss is stored as null.
    assert got.history == [{"epoch": 1, "train_loss": None, "train_acc": 20.0, "test_acc": 21.0}]


def test_trial_record_of_a_first_release_trial_has_replicate_zero():
    trial = optuna.trial.create_trial(
        params={"activation": "relu", "loss": "mse", "lr": 0.01},
        distributions={
            "activation": optuna.distributions.CategoricalDistribution(["relu"]),
            "loss": optuna.distributions.CategoricalDistribution(["mse"]),
            "lr": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True),
        },
        value=30.0,
        user_attrs={"seed": 17, "history": [], "diverged": False},
    )
    got = TrialRecord.from_trial(trial)
    assert (got.replicate, got.seed, got.config) == (0, 17, None)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_json_row_nulls_what_json_cannot_hold(value):
    assert record.json_row({"epoch": 3, "train_loss": value}) == {"epoch": 3, "train_loss": None}


def test_predictions_round_trip_in_about_half_a_byte_per_image():
    rng = np.random.default_rng(0)
    predicted = rng.choice(10, size=(3, 2000), p=[0.5] + [0.5 / 9] * 9).astype(np.uint8)  # a classifier near 50%
    stored = record.encode_classes(predicted)
    assert np.array_equal(record.decode_classes(stored), predicted)
    assert len(stored["zlib_base64"]) < 0.7 * predicted.size  # base64 of zlib: well under one byte per image


def test_writer_writes_in_the_order_submitted(db):
    study = optuna.create_study(storage=db)
    trial = study.ask()
    seen = []

    def write(n: int) -> None:
        trial.set_user_attr("n", n)  # a real write to the SQLite file, from the writer's thread
        seen.append(n)

    with record.Writer() as writer:
        for n in range(20):
            writer.submit(lambda n=n: write(n))
        writer.flush()
        assert seen == list(range(20))
    assert optuna.load_study(study_name=study.study_name, storage=db).trials[0].user_attrs["n"] == 19


def test_writer_raises_a_failed_write_on_the_callers_thread_and_runs_nothing_after_it(db):
    study = optuna.create_study(storage=db)
    trial = study.ask()
    study.tell(trial, 1.0)
    after = []
    writer = record.Writer()
    failed = writer.submit(lambda: trial.report(1.0, 1))  # a finished trial takes no more values
    later = writer.submit(lambda: after.append(1))
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        writer.flush()
    # The write queued after it would land out of order: it is not run, and waiting for it raises the same error.
    assert after == [] and later.exception() is failed.exception()
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        writer.submit(lambda: None)
    # Leaving a with-block does not swallow it either.
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError), record.Writer() as writer:
        writer.submit(lambda: trial.report(1.0, 2))
