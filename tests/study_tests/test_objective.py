"""A trial's records are written off the training thread, and are in the database before a pruning decision, before the
trial ends, and (but for the epoch in flight) before a crash."""

import os
import random
import signal
import subprocess
import sys
import time

import optuna
import pytest
import torch
from helpers import REPO, record_hole

from cnn import TrainConfig, TrainResult
from study import record
from study.objective import TrialRun
from study.space import SearchSpace

WRITE_SECONDS = 0.5  # what a history write takes more here, as on a busy database: a record read too early misses it


@pytest.fixture
def slow_writes(monkeypatch):
    write_history = record.write_history

    def slow(trial, history):
        time.sleep(WRITE_SECONDS)
        write_history(trial, history)

    monkeypatch.setattr(record, "write_history", slow)


def _row(epoch: int, acc: float) -> dict:
    return {"epoch": epoch, "train_loss": 1.0, "train_acc": acc, "test_loss": 1.0, "test_acc": acc, "seconds": 0.0}


def _result(history: list[dict]) -> TrainResult:
    predictions = {"test": torch.zeros(len(history), 4, dtype=torch.uint8)}
    return TrainResult(history, torch.nn.Linear(2, 1), [[1]], "cpu", "float32", predictions=predictions)


def _run(study: optuna.Study, writer: record.Writer) -> TrialRun:
    return TrialRun(study.ask(), SearchSpace(), TrainConfig(epochs=3), None, "test_acc", writer)


def test_training_goes_on_while_an_epoch_is_written(db, slow_writes):
    study = optuna.create_study(storage=db, direction="maximize", pruner=optuna.pruners.NopPruner())
    with record.Writer() as writer:
        run = _run(study, writer)
        assert run.epoch(_row(1, 30.0)) is False
        # No pruner decides: epoch() returned before the write did.
        assert "history" not in optuna.load_study(study_name=study.study_name, storage=db).trials[0].user_attrs
        run.wait()
        assert optuna.load_study(study_name=study.study_name, storage=db).trials[0].intermediate_values == {1: 30.0}


def test_every_epoch_is_in_the_database_before_the_trial_ends(db, slow_writes, monkeypatch):
    study = optuna.create_study(storage=db, direction="maximize", pruner=optuna.pruners.NopPruner())
    rows = [_row(epoch, 30.0 + epoch) for epoch in (1, 2, 3)]
    writes = []
    write_history, write_result = record.write_history, record.write_result
    monkeypatch.setattr(record, "write_history", lambda trial, history: (write_history(trial, history), writes.append(len(history))))
    monkeypatch.setattr(record, "write_result", lambda trial, result: (writes.append("result"), write_result(trial, result)))
    with record.Writer() as writer:
        run = _run(study, writer)
        for row in rows:
            run.epoch(row)
        study.tell(run.trial, run.finish(_result(rows)))
    # The result is written once the last epoch's record is in, not while it is on its way.
    assert writes == [1, 2, 3, "result"]
    trial = optuna.load_study(study_name=study.study_name, storage=db).trials[0]
    assert trial.user_attrs["history"] == rows and trial.intermediate_values == {1: 31.0, 2: 32.0, 3: 33.0}
    assert trial.user_attrs["epochs_run"] == 3 and record_hole(trial) == ""


def test_a_pruner_decides_on_the_epoch_just_reported(db, slow_writes):
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(storage=db, direction="maximize", pruner=pruner)
    study.add_trial(optuna.trial.create_trial(value=50.0, intermediate_values={1: 50.0}))
    with record.Writer() as writer:
        # Below the median at epoch 1: pruned there, which it can only be once its value of epoch 1 is stored.
        assert _run(study, writer).epoch(_row(1, 10.0))
        assert not _run(study, writer).epoch(_row(1, 60.0))


# K fused members reporting epochs as fast as they can, each write slowed: the writes lag behind unless each member
# waits for its previous epoch's. Prints "member epoch" once a member's epoch() has returned.
MEMBERS = """
import sys, time
import optuna
from cnn import TrainConfig
from study import record
from study.objective import TrialRun
from study.space import SearchSpace
from study.storage import open_storage

write_history = record.write_history
def slow(trial, history):
    time.sleep(0.03)
    write_history(trial, history)
record.write_history = slow
study = optuna.create_study(storage=open_storage(sys.argv[1]), pruner=optuna.pruners.NopPruner(), direction="maximize")
writer = record.Writer()
runs = [TrialRun(study.ask(), SearchSpace(), TrainConfig(epochs=1000), None, "test_acc", writer) for _ in range(4)]
print("ready", flush=True)
for epoch in range(1, 1001):
    for k, run in enumerate(runs):
        run.epoch({"epoch": epoch, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0, "test_acc": 40.0, "seconds": 0.0})
        print(k, epoch, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_a_kill_loses_at_most_the_epoch_in_flight(seed, tmp_path):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    with open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", MEMBERS, db], cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert process.stdout.readline() == "ready\n", (tmp_path / "stderr").read_text()
    output = [process.stdout.readline().strip() for _ in range(random.Random(seed).randrange(10, 80))]
    os.kill(process.pid, signal.SIGKILL)
    output += process.communicate(timeout=60)[0].splitlines()
    returned = {}  # member -> the last epoch whose epoch() returned before the kill
    for line in output:
        if line.count(" ") == 1 and line.replace(" ", "").isdigit():
            k, epoch = map(int, line.split())
            returned[k] = epoch
    trials = optuna.load_study(study_name=optuna.get_all_study_names(db)[0], storage=db).trials
    assert len(returned) == 4, output
    for k, trial in enumerate(trials):
        assert record_hole(trial) == ""
        # An epoch() waits for its trial's previous epoch: stored are all epochs but the last one returned, at least.
        assert len(trial.user_attrs["history"]) >= returned[k] - 1 and len(trial.intermediate_values) >= returned[k] - 1
