"""Faults cost nothing: a crash never leaves a hole in the grid, signals requeue, storage faults get one line."""

import contextlib
import hashlib
import inspect
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter
from pathlib import Path

import optuna
import pytest
from helpers import REPO, group, load, postgresql, spawn, wait_for
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from study import runner
from study.run import main
from study.storage import PatientStorage, StudyError, dead, open_storage

GRID = [
    *("--activations", "relu,tanh", "--losses", "cross_entropy,mse"),
    *("--grid-lrs", "2", "--lr-min", "1e-3", "--lr-max", "1e-2", "--repeats", "1"),
]
POINTS = 8  # 2 activations x 2 losses x 2 learning rates, one replicate


def _points(study: optuna.Study) -> Counter:
    """How many COMPLETE trials each grid point (activation, loss, lr, replicate) has."""
    keys = ("activation", "loss", "lr", "replicate")
    return Counter(tuple(t.params[k] for k in keys) for t in study.get_trials(states=(TrialState.COMPLETE,)))


def _second_trial_training(db: str) -> bool:
    try:
        trials = load(db).trials
    except KeyError:
        return False
    return any(t.number >= 1 and t.state == TrialState.RUNNING and t.user_attrs.get("history") for t in trials)


def _training(db: str) -> list:
    """The RUNNING trials that have finished an epoch."""
    return [t for t in _trials(db) if t.state == TrialState.RUNNING and t.user_attrs.get("history")]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_sigterm_requeues_the_trial_at_its_own_grid_point_and_resume_fills_the_grid(db, small_args):
    args = [*small_args, *GRID, "--storage", db, "--epochs", "2"]
    process = spawn(*args)
    assert wait_for(lambda: _second_trial_training(db), 300), process.communicate()[0]
    process.send_signal(signal.SIGTERM)  # what a cluster scheduler or a container stop sends first
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 128 + signal.SIGTERM, output
    # One line says what happened and how to resume; no traceback.
    assert "Traceback" not in output
    line = next(line for line in output.splitlines() if line.startswith("interrupted by SIGTERM"))
    assert "failed and queued to run again; resume with: " in line and " -m study.run" in line
    study = load(db)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    # The trial queued again carries the dead trial's grid point, so the grid sampler gives it no other.
    assert [t.system_attrs["grid_id"] for t in waiting] == [t.system_attrs["grid_id"] for t in failed]
    assert [t.params for t in waiting] == [t.params for t in failed]

    result = subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr
    study = load(db)
    # Every grid point COMPLETE exactly once: the retry ran its own point, and no point was left out.
    assert len(_points(study)) == POINTS and set(_points(study).values()) == {1}
    assert {t.state for t in study.trials} == {TrialState.COMPLETE, TrialState.FAIL}


@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_no_traceback(db, small_args):
    process = spawn(*small_args, *GRID, "--storage", db, "--epochs", "30")
    assert wait_for(lambda: any(t.user_attrs.get("history") for t in _trials(db)), 300), process.communicate()[0]
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert sum(line.startswith("interrupted by SIGINT: trial(s) 0 failed and queued") for line in output.splitlines()) == 1


def _trials(db: str) -> list:
    try:
        return load(db).trials
    except KeyError:
        return []


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB file system (tmpfs), as a full disk; needs root."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here ({made.stderr.strip()}): run the tests as root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_full_disk_gives_one_line_keeps_finished_trials_and_resumes(small_disk, small_args):
    db = f"sqlite:///{small_disk / 'study.db'}"
    args = [*small_args, *GRID, "--storage", db, "--epochs", "1"]
    result = subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"the disk holding {db} is full; its trained weights take" in errors[0]
    assert "--keep-weights complete or none" in errors[0] and " -m study.run" in errors[0]
    finished = load(db).get_trials(states=(TrialState.COMPLETE,))
    assert 0 < len(finished) < POINTS
    assert all(len(t.user_attrs["history"]) == 1 and t.user_attrs["weights_artifact"] for t in finished)

    # Once there is room, the same command resumes and fills the grid.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    result = subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr
    study = load(db)
    assert len(_points(study)) == POINTS and set(_points(study).values()) == {1}
    assert [t.number for t in study.get_trials(states=(TrialState.COMPLETE,))][: len(finished)] == [t.number for t in finished]


@pytest.mark.slow
def test_a_read_only_database_gets_one_line_that_says_what_to_do(small_disk, small_args, capsys):
    db = f"sqlite:///{small_disk / 'study.db'}"
    args = [*small_args, *GRID, "--storage", db, "--epochs", "1"]
    # In another process: a file this one held open would keep the file system from turning read-only.
    made = subprocess.run([sys.executable, "-m", "study.run", *args, "--trials", "1"], capture_output=True, text=True, cwd=REPO)
    assert made.returncode == 0, made.stderr
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    capsys.readouterr()
    assert main([*args, "--trials", "2"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    # Rerunning the same command would fail the same way: the line says what to do instead of "resume with".
    assert len(errors) == 1 and errors[0].startswith(f"error: {db} is read-only (attempt to write a readonly database)"), errors
    assert "make the file and its folder writable" in errors[0] and "resume with" not in errors[0]
    assert len(load(db).get_trials(states=(TrialState.COMPLETE,))) == 1


def test_a_text_file_is_refused_untouched(tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("shopping list\n" * 200)
    before = _digest(notes)
    with pytest.raises(StudyError, match=r"notes.db is not a SQLite database .*name a study database or a new file with --storage"):
        open_storage(f"sqlite:///{notes}")
    assert _digest(notes) == before


def test_a_sqlite_database_of_another_program_is_refused_untouched(tmp_path):
    other = tmp_path / "photos.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE albums (id INTEGER PRIMARY KEY, name TEXT)")
    before = _digest(other)
    with pytest.raises(StudyError, match=r"photos.db is a SQLite database of another program \(tables: albums\)"):
        open_storage(f"sqlite:///{other}")
    assert _digest(other) == before


def test_an_unreachable_server_is_waited_for_then_named(monkeypatch):
    monkeypatch.setenv("CNN_STUDY_STORAGE_WAIT", "2")
    with pytest.raises(StudyError, match=r"cannot open storage postgresql://u:\*\*\*@127.0.0.1:9/db \(waited [23] s\)"):
        open_storage("postgresql://u:secret@127.0.0.1:9/db")


def test_every_call_optunas_cache_makes_waits_for_the_server():
    # Optuna's cache calls private methods of its backend (``_create_new_trial``, ``_get_trials``, ...); one left
    # impatient fails a worker whose call meets a server restart.
    source = inspect.getsource(optuna.storages._cached_storage)
    called = set(re.findall(r"self\._backend\.(\w+)\(", source)) - {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback"}
    assert called
    impatient = sorted(name for name in called if getattr(PatientStorage, name) is getattr(RDBStorage, name))
    assert not impatient


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_stopped_server_is_waited_for_in_every_kind_of_call(postgres_url, monkeypatch):
    if not shutil.which("pg_ctlcluster"):
        pytest.skip("stopping the server needs pg_ctlcluster (Debian's PostgreSQL, as .ci/postgres.sh installs)")
    monkeypatch.setenv("CNN_STUDY_STORAGE_WAIT", "60")
    study = optuna.create_study(study_name="patient", storage=open_storage(postgres_url), direction="maximize")
    study.enqueue_trial({"x": 0.5})
    calls = {
        "ask": study.ask,
        "suggest": lambda: trial.suggest_float("x", 0.0, 1.0),
        "tell": lambda: study.tell(trial, 1.0),
        "trials": lambda: study.trials,
        "best": lambda: study.best_trial,
    }
    for name, call in calls.items():
        postgresql("stop")
        later = threading.Timer(2.0, postgresql, args=("start",))
        later.start()
        try:
            result = call()
        finally:
            later.join()
        if name == "ask":
            trial = result
    assert study.best_trial.params == {"x": 0.5} and study.best_value == 1.0


@pytest.mark.slow
def test_a_foreign_file_gets_one_line_from_the_command(tmp_path, small_args, capsys):
    notes = tmp_path / "notes.db"
    notes.write_text("not a database")
    assert main([*small_args, "--storage", f"sqlite:///{notes}", "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "is not a SQLite database" in err[-1] and "Traceback" not in "\n".join(err)
    assert notes.read_text() == "not a database"


@pytest.mark.slow
def test_sigterm_to_the_parent_of_workers_queues_and_names_every_workers_trial(db, small_args):
    process = spawn(*small_args, *GRID, "--storage", db, "--epochs", "3", "--workers", "2")
    assert wait_for(lambda: len(_training(db)) == 2, 300), process.communicate()[0]
    process.send_signal(signal.SIGTERM)  # to the command only, as a scheduler sends it
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 128 + signal.SIGTERM, output
    study = load(db)
    assert TrialState.RUNNING not in [t.state for t in study.trials]
    failed = sorted(t.number for t in study.trials if t.state == TrialState.FAIL)
    # Both workers' trials are failed, queued again, and named in the one line.
    assert len(failed) == 2, output
    assert f"interrupted by SIGTERM: trial(s) {', '.join(map(str, failed))} failed and queued to run again" in output
    assert wait_for(lambda: not group(process.pid), 15), group(process.pid)


def _processes(pids: list[int]) -> str:
    """Each process's state and command line, for a failure's message."""
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            lines.append(f"{pid} {state} {command[:200]}")
    return "\n".join(lines)


# A worker (the fork) whose clean-up never ends: it ignores the SIGTERM its parent watch sends.
HELD_WORKER = """
import os, signal, time
from study import runner
runner.PARENT_POLL_SECONDS, runner.PARENT_GRACE_SECONDS = 0.1, 1.0
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    runner._watch_parent(os.getppid())
    print("watching", flush=True)
    time.sleep(120)
else:
    time.sleep(120)
"""


def test_a_worker_held_past_its_grace_after_its_parent_dies_says_where_and_ends():
    process = subprocess.Popen(
        [sys.executable, "-c", HELD_WORKER], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        assert process.stdout.readline() == "watching\n"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        assert wait_for(lambda: not group(process.pid), 30), _processes(group(process.pid))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    output = process.stdout.read()
    assert "its command ended and it did not stop within 1 s; it ends now" in output, output
    line = HELD_WORKER.splitlines().index("    time.sleep(120)") + 1
    assert f'File "<string>", line {line} in <module>' in output, output  # where the held worker's main thread was


@pytest.mark.slow
def test_workers_end_when_their_parent_is_killed_and_the_rerun_completes_the_grid(db, small_args):
    args = [*small_args, *GRID, "--storage", db, "--epochs", "3", "--workers", "2"]
    process = spawn(*args)
    assert wait_for(lambda: len(_training(db)) == 2, 300), process.communicate()[0]
    os.kill(process.pid, signal.SIGKILL)  # the parent alone (the OOM killer's choice, or kill -9 PID)
    process.wait(timeout=60)
    try:
        # The workers notice, queue their trials again and end: no process of the study is alive moments later
        # (within a second here; runner.PARENT_GRACE_SECONDS bounds it, tested below).
        limit = runner.PARENT_POLL_SECONDS + runner.PARENT_GRACE_SECONDS + 10
        assert wait_for(lambda: not group(process.pid), limit), _processes(group(process.pid))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # an earlier release's workers ran on for minutes
    output = process.stdout.read()
    study = load(db)
    # Both workers' trials are queued again: by the workers themselves, or (a worker whose clean-up was held past
    # its grace, which then said so and where it was) left RUNNING under its dead pid, which the rerun queues.
    waiting = study.get_trials(states=(TrialState.WAITING,))
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert len(waiting) + len(running) == 2, output
    assert all(dead(t) for t in running), output
    assert not running or "did not stop within" in output, output

    result = subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    study = load(db)
    assert len(_points(study)) == POINTS and set(_points(study).values()) == {1}
    assert {t.state for t in study.trials} == {TrialState.COMPLETE, TrialState.FAIL}


def test_a_signal_inside_a_garbage_collection_callback_is_delivered_again_not_lost():
    # Python swallows an exception raised in a __del__ or a weak reference's callback ("Exception ignored"): a SIGTERM
    # whose handler raised there was lost, and the worker trained on (a CI run of the kill -9 test above). The handler
    # now sends it again a moment later, where raising reaches the code that queues the trials.
    class Collected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here, inside __del__

    with pytest.raises(runner.Interrupted), runner.interruptible():
        Collected()  # collected at once
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            time.sleep(0.01)
    seen = []
    held = type("Plain", (), {})()
    weakref.finalize(held, lambda: seen.append(runner._unsafe(sys._getframe())))
    del held
    assert seen == [True] and not runner._unsafe(sys._getframe())
