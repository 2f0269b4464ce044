"""Storage helpers on real SQLite files (no training)."""

import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from study.storage import (
    StudyError,
    command_line,
    dead,
    describe_fault,
    fail_and_queue_again,
    load_existing_study,
    mask_password,
    open_storage,
    output_dir,
    resumable,
    sqlite_path,
)


def test_mask_password_and_command_line():
    url = "postgresql://me:hunter2@db:5432/s"
    assert mask_password(url) == "postgresql://me:***@db:5432/s"
    assert (
        command_line("study.run", ["--storage", url, "--trials", "3"])
        == "python -m study.run --storage 'postgresql://me:***@db:5432/s' --trials 3"
    )
    assert "hunter2" not in command_line("study.run", [f"--storage={url}"])


def test_output_dir_sits_beside_a_sqlite_file_else_under_runs(tmp_path):
    assert output_dir(f"sqlite:///{tmp_path}/a.db", "s", "report") == tmp_path / "a-s-report"
    assert str(output_dir("postgresql://h/db", "s", "artifacts")) == "runs/db-s-artifacts"
    assert sqlite_path("sqlite:///:memory:") is None


def test_two_databases_of_one_folder_never_share_a_report_folder():
    # The default study in the default database keeps its short name; a study of that name in another database of the
    # same folder (--storage runs/t50.db) gets its own folder instead of overwriting the first one's report.
    assert output_dir("sqlite:///runs/cnn-study.db", "cnn-study", "report") == Path("runs/cnn-study-report")
    assert output_dir("sqlite:///runs/t50.db", "cnn-study", "report") == Path("runs/t50-cnn-study-report")
    assert output_dir("sqlite:///runs/t50.db", "other", "report") == Path("runs/t50-other-report")


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("attempt to write a readonly database", "is read-only (attempt to write a readonly database)"),
        ("database is locked", "stayed locked by another process for over 120 s"),
    ],
)
def test_a_fault_a_rerun_cannot_mend_says_what_to_do_instead(reason, words):
    error = sqlalchemy.exc.OperationalError("INSERT INTO trials ...", {}, sqlite3.OperationalError(reason))
    wrapped = optuna.exceptions.StorageInternalError("commit failed")  # how Optuna passes on a failed commit
    wrapped.__cause__ = error
    fault = describe_fault(wrapped, "sqlite:///s.db")
    assert fault.startswith(f"sqlite:///s.db {words}") and not resumable(fault)
    # A fault that a rerun does mend keeps its "resume with".
    assert resumable(describe_fault(sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")), "x"))


def test_open_storage_refuses_a_missing_file_for_readers(tmp_path):
    with pytest.raises(StudyError, match="there is no study database at"):
        open_storage(f"sqlite:///{tmp_path}/none.db", must_exist=True)
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [("nonsense", "malformed storage URL"), ("redis://x/0", "unsupported storage 'redis'"), ("sqlite:///{tmp}/no/s.db", "does not exist")],
)
def test_open_storage_refuses_bad_urls(tmp_path, url, message):
    with pytest.raises(StudyError, match=message):
        open_storage(url.replace("{tmp}", str(tmp_path)))


def test_load_existing_study_lists_the_studies_there(db):
    optuna.create_study(study_name="one", storage=db)
    assert load_existing_study(db, "one").study_name == "one"
    with pytest.raises(StudyError, match=r"no study 'two' in .*; studies there: 'one'"):
        load_existing_study(db, "two")


def test_a_trial_names_its_process_from_its_first_moment_and_a_dead_ones_is_queued_once(db):
    study = optuna.create_study(study_name="s", storage=open_storage(db), direction="maximize")
    study.enqueue_trial({"x": 0.5})
    study.ask()  # takes the queued trial
    new = study.ask()  # a new trial
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    # Written with the state, before any sampler runs: a kill -9 inside study.ask() leaves a trial that names its process.
    assert [t.user_attrs["worker"] for t in study.trials] == [me, me]
    exited = subprocess.Popen(["true"])
    exited.wait()
    study._storage.set_trial_user_attr(new._trial_id, "worker", {**me, "pid": exited.pid})
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert [dead(t) for t in running] == [False, True]  # at once: no ORPHAN_SECONDS to wait
    # Two processes failing the same dead trial at once: one wins, and its point is queued again once.
    assert fail_and_queue_again(study, [running[1]]) == [new.number] and fail_and_queue_again(study, [running[1]]) == []
    assert [t.state for t in study.trials] == [TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING]
