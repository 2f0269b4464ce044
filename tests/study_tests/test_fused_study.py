"""A study with --fuse: trials trained as one fused network end exactly as trials trained alone."""

import os
import re
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from helpers import FINISHED, REPO, finished, load, spawn, wait_for
from optuna.trial import TrialState

from study.record import TrialRecord, read_labels
from study.run import main

pytestmark = pytest.mark.slow  # every test here trains on real images or starts processes

# The fixed design of one replicate (a later --repeats wins): the sequential design's rounds are tested in test_sequential_study.py.
DESIGN = [
    *("--activations", "relu,tanh", "--losses", "cross_entropy,mse"),
    *("--grid-lrs", "2", "--lr-min", "1e-3", "--lr-max", "1e-2", "--repeats", "1"),
]


def _by_point(study) -> dict:
    return {tuple(t.params[k] for k in ("activation", "loss", "lr", "replicate")): t for t in study.trials}


def _check_predictions(study) -> None:
    """Each finished trial's stored predictions give its recorded accuracy at every epoch and its confusion counts exactly."""
    labels = read_labels(study.user_attrs)["test"]
    assert len(labels) == 200 and np.bincount(labels).tolist() == [20] * 10  # the stratified test subset, in order
    for trial in study.get_trials(states=FINISHED):
        record = TrialRecord.from_trial(trial)
        predictions = record.predictions["test"]
        assert predictions.shape == (len(record.history), 200)
        for row, predicted in zip(record.history, predictions, strict=True):
            assert 100.0 * int((predicted == labels).sum()) / len(labels) == row["test_acc"]  # as evaluate() computes it
        confusion = np.zeros((10, 10), dtype=int)
        np.add.at(confusion, (labels, predictions[-1]), 1)
        assert confusion.tolist() == record.confusion


def test_fused_trials_end_with_the_same_record_as_trials_trained_alone(tmp_path, small_args):
    # SGD in float32: a fused member follows its own run to summation order (see tests/cnn_tests/test_fused.py).
    args = [*small_args, *DESIGN, "--epochs", "2", "--optimizer", "sgd", "--precision", "fp32", "--no-baseline"]
    alone, fused = f"sqlite:///{tmp_path / 'alone.db'}", f"sqlite:///{tmp_path / 'fused.db'}"
    assert main([*args, "--storage", alone, "--fuse", "1"]) == 0
    assert main([*args, "--storage", fused, "--fuse", "3"]) == 0
    alone_trials, fused_trials = _by_point(load(alone)), _by_point(load(fused))
    assert alone_trials.keys() == fused_trials.keys() and len(alone_trials) == 8
    for point, a in alone_trials.items():
        f = fused_trials[point]
        # The fused trial also says which layout its network used and why: by default (--memory-format auto) measured here.
        assert set(f.user_attrs) == set(a.user_attrs) | {"memory_format"} and f.state == a.state
        assert re.fullmatch(r"(channels_last|contiguous): measured on cpu: its grouped convolutions took .+", f.user_attrs["memory_format"])
        for key in ("config", "seed", "replicate", "batch_order", "epochs_run", "diverged", "device", "precision", "n_params"):
            assert f.user_attrs[key] == a.user_attrs[key], (point, key)
        for row_a, row_f in zip(a.user_attrs["history"], f.user_attrs["history"], strict=True):
            assert row_f["train_loss"] == pytest.approx(row_a["train_loss"], rel=1e-3)
            assert abs(row_f["test_acc"] - row_a["test_acc"]) <= 100 / 200  # one test image of 200
        assert f.user_attrs["weights_artifact"]
    for study in (load(alone), load(fused)):
        _check_predictions(study)


def test_fused_study_resumes_to_the_exact_target_with_heartbeats(db, small_args):
    args = [*small_args, *DESIGN, "--repeats", "2", "--epochs", "1", "--storage", db, "--fuse", "3"]
    assert main([*args, "--trials", "4"]) == 0
    assert len(finished(load(db))) == 4 and len(load(db).trials) == 4  # 3 fused, then 1
    assert main([*args, "--trials", "7"]) == 0
    study = load(db)
    assert len(finished(study)) == 7 and len(study.trials) == 7
    assert len(set(_by_point(study))) == 7  # seven different grid points
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        beats = {row[0] for row in connection.execute("SELECT trial_id FROM trial_heartbeats")}
    assert beats == {t._trial_id for t in study.trials}


def test_fused_study_killed_mid_epoch_resumes(db, small_args):
    args = [*small_args, *DESIGN, "--storage", db, "--epochs", "40", "--fuse", "3"]
    process = spawn(*args, "--trials", "3")
    assert wait_for(lambda: _running_with_history(db), 180), process.communicate()[0]
    os.killpg(process.pid, 9)
    process.wait(timeout=60)
    running = [t.number for t in load(db).trials if t.state == TrialState.RUNNING]
    assert running  # the fused trials died with their process
    result = subprocess.run(
        [sys.executable, "-m", "study.run", *args, "--trials", "1"], capture_output=True, text=True, cwd=REPO, timeout=900
    )
    assert result.returncode == 0, result.stderr
    study = load(db)
    states = {t.number: t.state for t in study.trials}
    assert all(states[n] == TrialState.FAIL for n in running) and TrialState.RUNNING not in states.values()
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") in running]
    assert len(retried) == len(running) and sum(t.state in FINISHED for t in retried) == 1
    assert all(t.params == study.trials[t.system_attrs["failed_trial"]].params for t in retried)


def _running_with_history(db) -> bool:
    try:
        return any(t.user_attrs.get("history") for t in load(db).get_trials(states=(TrialState.RUNNING,)))
    except KeyError:
        return False
