"""Trained weights live in the study's own database: they travel with it, load anywhere, show in the dashboard."""

import io
import os
import shutil
import socket
import subprocess
import sys
import urllib.request

import optuna
import pytest
import torch
from helpers import FINISHED, load, spawn, wait_for
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from study import load_model
from study.artifacts import IN_DATABASE, artifact_store
from study.run import main

pytestmark = pytest.mark.slow  # every test here trains on real images or starts processes


def test_weights_travel_with_a_copied_sqlite_database(db, small_args, tmp_path, monkeypatch):
    assert main([*small_args, "--storage", db, "--trials", "2", "--epochs", "1"]) == 0
    study = load(db)
    assert study.user_attrs["artifacts"] == IN_DATABASE
    original = {k: v.clone() for k, v in load_model(db, "cnn-study", trial=1).state_dict().items()}
    # The database file alone, in another folder, away from any artifacts folder.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(db.removeprefix("sqlite:///"), elsewhere / "copy.db")
    monkeypatch.chdir(elsewhere)
    copied = load_model("sqlite:///copy.db", "cnn-study", trial=1).state_dict()
    assert copied.keys() == original.keys() and all(torch.equal(copied[k], original[k]) for k in original)
    assert not list(tmp_path.rglob("*-artifacts"))


def test_keep_weights_none_keeps_none(db, small_args, capsys):
    assert main([*small_args, "--storage", db, "--trials", "1", "--epochs", "1", "--keep-weights", "none"]) == 0
    assert "weights_artifact" not in load(db).trials[0].user_attrs
    out = capsys.readouterr().out
    assert "\nweights:" not in out and "best model:" not in out  # no line on kept weights, no way to load what is not kept
    with pytest.raises(Exception, match="has no saved weights"):
        load_model(db, "cnn-study")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_command_serves_a_trials_weights(db, small_args):
    assert main([*small_args, "--storage", db, "--trials", "1", "--epochs", "1"]) == 0
    study = load(db)
    trial = study.trials[0]
    artifact_id = trial.user_attrs["weights_artifact"]
    stored = artifact_store(study).open_reader(artifact_id).read()
    port = _free_port()
    dashboard = spawn("--storage", db, "--port", str(port), module="study.dashboard")
    url = f"http://127.0.0.1:{port}/artifacts/{study._study_id}/{trial._trial_id}/{artifact_id}"

    def fetch():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            return None

    try:
        assert wait_for(lambda: fetch() is not None, 90)
        # The bytes served over HTTP are the trial's weights, which torch loads.
        assert fetch() == stored
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def test_weights_of_a_failed_trial_are_removed_when_it_is_requeued(db, small_args):
    assert main([*small_args, "--storage", db, "--trials", "1", "--epochs", "1"]) == 0
    study = load(db)
    # A trial that died after its weights were written but before it finished: running, its process gone.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    params = {"activation": "tanh", "loss": "mse", "lr": 0.01, "replicate": 0}
    trial_id = study._storage.create_new_trial(
        study._study_id,
        optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=params,
            distributions=study.trials[0].distributions,
            user_attrs={"worker": {"host": socket.gethostname(), "pid": int(dead)}},
        ),
    )
    weights = os.path.join(os.path.dirname(db.removeprefix("sqlite:///")), "w.pt")
    torch.save({"w": torch.zeros(3)}, weights)
    store, running = artifact_store(study, create=True), study._storage.get_trial(trial_id)
    orphan = optuna.artifacts.upload_artifact(artifact_store=store, file_path=weights, study_or_trial=running, storage=study._storage)
    assert main([*small_args, "--storage", db, "--trials", "2", "--epochs", "1"]) == 0
    study = load(db)
    with pytest.raises(ArtifactNotFound):
        artifact_store(study).open_reader(orphan)
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == study.trials[1].number)
    assert retry.state in FINISHED and load_model(db, "cnn-study", trial=retry.number) is not None


def test_the_weights_table_created_by_another_process_at_the_same_instant_is_taken_as_it_is(tmp_path, monkeypatch):
    # Two --workers processes open a new SQLite study at once: the other creates the table between this one's check and
    # its CREATE TABLE, which SQLite answers with "table ... already exists" (an OperationalError; CI saw it).
    import sqlalchemy

    from study.artifacts import DatabaseArtifactStore

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'study.db'}")
    real, raced = sqlalchemy.MetaData.create_all, []

    def racing(self, bind, checkfirst=True):
        if not raced:
            raced.append(True)
            real(self, bind, checkfirst=True)  # the other process
            return real(self, bind, checkfirst=False)  # this one, past its check
        return real(self, bind, checkfirst=checkfirst)

    monkeypatch.setattr(sqlalchemy.MetaData, "create_all", racing)
    store = DatabaseArtifactStore(engine)
    assert raced
    store.write("weights", io.BytesIO(b"w"))  # the table the other process made works as this one's
    assert store.open_reader("weights").read() == b"w"
