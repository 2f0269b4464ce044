"""Several workers, several machines on PostgreSQL, and recovery from dead workers."""

import os
import sqlite3
import subprocess
import sys
import uuid

import optuna
import pytest
from helpers import FINISHED, REPO, load, spawn, wait_for
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from study import load_model
from study.artifacts import artifact_store, trial_artifacts
from study.run import main
from study.storage import open_storage

pytestmark = pytest.mark.slow  # every test here trains on real images or starts processes


def test_workers_share_one_sqlite_study_without_lock_errors(db, small_args, capsys):
    assert main([*small_args, "--storage", db, "--trials", "6", "--epochs", "2", "--workers", "2"]) == 0
    study = load(db)
    # The parent shows the whole study: one line for every trial, whichever worker ran it.
    out = capsys.readouterr().out
    assert all(f"trial {t.number:3d} " in out for t in study.trials)
    states = [t.state for t in study.trials]
    # Together they reach the target, overshooting by at most workers - 1, and nothing fails.
    assert 6 <= sum(s in FINISHED for s in states) <= 7
    assert TrialState.FAIL not in states and TrialState.RUNNING not in states
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2


def test_workers_starting_together_on_an_empty_database_all_open_it(postgres_url):
    # Each one creates Optuna's tables at the same moment; the ones that lose that race must not fail.
    code = "import sys; from study.storage import open_storage; open_storage(sys.argv[1])"
    processes = [
        subprocess.Popen([sys.executable, "-c", code, postgres_url], cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, errors
    optuna.create_study(study_name="after-the-race", storage=postgres_url)
    assert optuna.get_all_study_names(postgres_url) == ["after-the-race"]


def test_two_machines_share_one_study_through_postgresql(postgres_url, small_args, tmp_path):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    args = [*small_args, "--storage", postgres_url, "--study-name", name, "--trials", "6", "--epochs", "2"]
    machines = [tmp_path / m for m in ("machine-a", "machine-b", "laptop")]
    for folder in machines:
        folder.mkdir()
    # The same command, as on two machines (each in its own working folder), on a new database.
    first, second = spawn(*args, cwd=machines[0]), spawn(*args, cwd=machines[1])
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    study = optuna.load_study(study_name=name, storage=postgres_url)
    states = [t.state for t in study.trials]
    assert 6 <= sum(s in FINISHED for s in states) <= 7
    assert TrialState.RUNNING not in states and TrialState.FAIL not in states
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2
    # The password never reaches the screen.
    password = os.environ["CNN_STUDY_POSTGRES_URL"].split(":")[2].split("@")[0]
    assert all(password not in out for out in outputs)
    # From a third folder, with nothing but the storage, the best model loads, whichever machine trained it.
    code = "import sys; from study import load_model; m = load_model(sys.argv[1], sys.argv[2]); print(type(m).__name__)"
    loaded = subprocess.run([sys.executable, "-c", code, postgres_url, name], capture_output=True, text=True, cwd=machines[2], timeout=300)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "CNN", loaded.stderr
    assert not list(tmp_path.rglob("*-artifacts"))


def test_trial_of_a_silent_worker_is_failed_and_retried(db, small_args):
    main([*small_args, "--storage", db, "--trials", "1", "--epochs", "1"])
    storage = open_storage(db)
    study = optuna.load_study(study_name="cnn-study", storage=storage)
    # A trial left RUNNING by a worker on another machine that stopped sending heartbeats long ago.
    params = {"activation": "tanh", "loss": "mse", "lr": 0.01, "replicate": 0}
    trial_id = storage.create_new_trial(
        study._study_id,
        optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=params,
            distributions=study.trials[0].distributions,
            user_attrs={"worker": {"host": "elsewhere", "pid": 1}},
        ),
    )
    storage.record_heartbeat(trial_id)
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'")
    assert main([*small_args, "--storage", db, "--trials", "2", "--epochs", "1"]) == 0
    study = load(db)
    stale = study.trials[1]
    assert stale.state == TrialState.FAIL
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == stale.number)
    assert retry.params == params and retry.state in FINISHED
    assert [t.state for t in study.trials].count(TrialState.RUNNING) == 0


def test_sigkill_mid_trial_keeps_finished_trials_and_resumes(db, small_args):
    args = [*small_args, "--storage", db, "--epochs", "3"]
    assert main([*args, "--trials", "2"]) == 0
    before = {t.number: t.user_attrs["history"] for t in load(db).trials}
    process = spawn(*args, "--trials", "4", "--workers", "2")
    wait_for(lambda: any(t.user_attrs.get("history") for t in load(db).get_trials(states=(TrialState.RUNNING,))), 120)
    # Kill the whole process group: the command and its workers, as a crash or an OOM kill would.
    os.killpg(process.pid, 9)
    process.wait(timeout=60)
    after = load(db)
    for number, history in before.items():
        assert after.trials[number].user_attrs["history"] == history
    result = subprocess.run(
        [sys.executable, "-m", "study.run", *args, "--trials", "4"], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert result.returncode == 0, result.stderr
    study = load(db)
    assert sum(t.state in FINISHED for t in study.trials) >= 4
    assert [t.state for t in study.trials].count(TrialState.RUNNING) == 0
    # Every finished trial has loadable weights; the killed trials' weights, if any were written, are gone.
    store = artifact_store(study)
    for trial in study.trials:
        if trial.state in FINISHED:
            assert load_model(db, "cnn-study", trial=trial.number) is not None
        else:
            for artifact_id in trial_artifacts(trial):
                with pytest.raises(ArtifactNotFound):
                    store.open_reader(artifact_id)
