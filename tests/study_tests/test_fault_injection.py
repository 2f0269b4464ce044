"""Fault injection: kill, interrupt and restart studies at seeded random moments, then check the invariant users rely on.

After any sequence of faults and resumes with the same command: every grid point (with its
replicate) is COMPLETE exactly once, no trial is left RUNNING or WAITING, every finished
trial's weights load, and every trial's stored epochs (history and reported values, written off
the training thread) run from epoch 1 without a hole, whole in a finished trial. Each study
takes at least ``FAULTS`` signals (SIGKILL of the whole process group as a dead machine,
SIGTERM to the command as a scheduler sends it, SIGINT to the group as Ctrl-C does), each at a
random moment after a trial of that run started; the PostgreSQL variants also restart the
server in the middle of a trial.

CI runs a representative slice (``SLICE``); ``make faults`` runs every variant and prints its figures.

Three moments a random signal seldom meets have their own variants (``MOMENTS``): a kill -9 inside
``study.ask()`` of a round's first trial, just after the round's plan is stored; a kill -9 of a
``--workers`` command's parent alone; SIGTERM to a ``--workers`` command while both workers train.
Each is followed at once by the same command, and the same invariant is checked.
"""

import contextlib
import datetime
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from helpers import KILLED_AT_A_ROUNDS_START, REPO, group, load, postgresql, record_hole, spawn, wait_for
from optuna.trial import TrialState

from study import load_model, rounds, runner
from study.storage import worker_id

pytestmark = pytest.mark.slow

GRID = ["--activations", "relu,tanh", "--losses", "cross_entropy,mse", "--grid-lrs", "2", "--lr-min", "1e-3", "--lr-max", "1e-2"]
REPEATS = 2  # replicates (fixed design) or the most replicates (sequential design)
POINTS = 16  # 2 activations x 2 losses x 2 learning rates x 2 replicates: enough work to take every fault
FAULTS = 5  # signals per study, at least
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
# (storage, workers, fuse, design): every combination under `make faults`; CI runs SLICE.
VARIANTS = [
    (storage, workers, fuse, design)
    for design in ("fixed", "sequential")
    for storage in ("sqlite", "postgresql")
    for workers in (1, 2)
    for fuse in (1, 2)
]
SLICE = [("sqlite", 1, 1, "sequential"), ("postgresql", 2, 2, "sequential")]
ALL = os.environ.get("CNN_STUDY_FAULTS") == "all"


def _started_since(db: str, name: str, since: datetime.datetime) -> bool:
    try:
        trials = load(db, name).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    except KeyError:
        return False
    return any(t.datetime_start and t.datetime_start > since for t in trials)


def _signal(process: subprocess.Popen, sig: int) -> None:
    if sig == signal.SIGTERM:
        process.send_signal(sig)  # a scheduler or a container stop signals the command
    else:
        os.killpg(process.pid, sig)  # Ctrl-C reaches the terminal's whole group; a dead machine takes every process


def run_with_faults(args: list[str], db: str, name: str, seed: int, restart_server: bool) -> dict:
    """Run ``python -m study.run ARGS`` with ``FAULTS`` seeded faults, then to the end; return the figures."""
    rng = random.Random(seed)
    sent, restarts = Counter(), 0
    while sum(sent.values()) < FAULTS:
        since = datetime.datetime.now()
        process = spawn(*args)
        if not wait_for(lambda p=process, t=since: p.poll() is not None or _started_since(db, name, t), 300):
            process.kill()
            pytest.fail(f"no trial started within 300 s: {process.communicate()[0]}")
        if process.poll() is not None:
            output = process.communicate()[0]
            assert process.returncode == 0, output
            break  # the study ended before this fault: fewer faults than planned (checked below)
        time.sleep(rng.uniform(0.0, 3.0))
        if restart_server and restarts == 0 and sum(sent.values()) == 2:
            postgresql("restart")  # in the middle of a trial: the study must not notice
            restarts += 1
            time.sleep(rng.uniform(0.0, 2.0))
        sig = rng.choice(SIGNALS)
        if process.poll() is None:
            _signal(process, sig)
            sent[signal.Signals(sig).name] += 1
        output = process.communicate(timeout=180)[0]
        assert "Traceback" not in output, output
    final = subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert final.returncode == 0, final.stdout + final.stderr
    return {"signals": dict(sent), "faults": sum(sent.values()), "restarts": restarts, "resumes": sum(sent.values())}


def planned_points(db: str, name: str, design: str) -> set[tuple]:
    """The (activation, loss, lr, replicate) points the study had to train: the whole grid, or its rounds' plans."""
    study = load(db, name)
    grid = {tuple(t.params[k] for k in ("activation", "loss", "lr")) for t in study.trials if "lr" in t.params}
    if design == "fixed":
        return {(*p, r) for p in grid for r in range(REPEATS)}
    planned = {(*p, 0) for p in grid}
    for number, plan in enumerate(rounds.stored_rounds(study.user_attrs), start=1):
        planned |= {(*p, number) for p in map(tuple, plan["points"])}
    return planned


def check_invariant(db: str, name: str, design: str = "fixed") -> dict:
    """Every planned grid point COMPLETE exactly once, nothing RUNNING or WAITING, every finished trial's weights load,
    and every trial's stored epochs without a hole (``holes`` lists those that have one)."""
    study = load(db, name)
    keys = ("activation", "loss", "lr", "replicate")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    points = Counter(tuple(t.params[k] for k in keys) for t in complete)
    planned = planned_points(db, name, design)
    left = [t.number for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for trial in complete:
        load_model(db, name, trial=trial.number)
    return {
        "planned": len(planned),
        "points_once": sum(n == 1 for n in points.values()),
        "lost": len(planned - set(points)),
        "unplanned": len(set(points) - planned),
        "duplicated": sum(n > 1 for n in points.values()),
        "left_running": len(left),
        "failed_trials": sum(t.state == TrialState.FAIL for t in study.trials),
        "holes": [hole for hole in map(record_hole, study.trials) if hole],
    }


@pytest.mark.parametrize(("storage", "workers", "fuse", "design"), VARIANTS if ALL else SLICE, ids=lambda v: str(v))
def test_faults_never_leave_a_hole_in_the_grid(storage, workers, fuse, design, small_args, tmp_path, request):
    name = f"faults-{uuid.uuid4().hex[:6]}"
    if storage == "postgresql":
        db = request.getfixturevalue("postgres_url")
        if not shutil.which("pg_ctlcluster"):
            pytest.skip("restarting the server needs pg_ctlcluster (Debian's PostgreSQL, as .ci/postgres.sh installs)")
    else:
        db = f"sqlite:///{tmp_path / 'study.db'}"
    replicates = ["--repeats", str(REPEATS)] if design == "fixed" else ["--max-repeats", str(REPEATS)]
    args = [*small_args, *GRID, "--storage", db, "--study-name", name, *replicates, "--epochs", "3"]
    args += ["--workers", str(workers), "--fuse", str(fuse)]
    seed = VARIANTS.index((storage, workers, fuse, design))
    figures = run_with_faults(args, db, name, seed, restart_server=storage == "postgresql")
    invariant = check_invariant(db, name, design)
    print(f"\nfaults {storage} workers={workers} fuse={fuse} {design} seed={seed}: {figures} -> {invariant}")
    assert figures["faults"] >= FAULTS, figures
    expected = {"points_once": invariant["planned"], "lost": 0, "unplanned": 0, "duplicated": 0, "left_running": 0, "holes": []}
    assert invariant == {**invariant, **expected}
    assert design == "sequential" or invariant["planned"] == POINTS


MOMENTS = ["round start", "parent of workers killed", "sigterm to workers"]
MOMENTS_SLICE = ["round start"]


def _training(db: str, name: str) -> int:
    try:
        trials = load(db, name).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    except KeyError:
        return 0
    return sum(bool(t.user_attrs.get("history")) for t in trials)


def fault_at(moment: str, args: list[str], db: str, name: str) -> dict:
    """Bring the study to ``moment`` and fault it there; return what was seen."""
    if moment == "round start":
        command = [sys.executable, "-c", KILLED_AT_A_ROUNDS_START, *args]
        killed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900)
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        left = load(db, name).get_trials(states=(TrialState.RUNNING,))
        assert len(left) == 1 and "grid_id" not in left[0].system_attrs and left[0].user_attrs["worker"]["host"] == worker_id()["host"]
        return {"killed in ask": left[0].number}
    process = spawn(*args, "--workers", "2")
    assert wait_for(lambda: process.poll() is not None or _training(db, name) == 2, 300)
    assert process.poll() is None, process.communicate()[0]
    if moment == "sigterm to workers":
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0]
        assert process.returncode == 128 + signal.SIGTERM, output
        failed = sorted(t.number for t in load(db, name).trials if t.state == TrialState.FAIL)
        assert len(failed) == 2 and f"trial(s) {', '.join(map(str, failed))} failed and queued to run again" in output, output
        return {"named": failed}
    os.kill(process.pid, signal.SIGKILL)  # the parent alone
    process.wait(timeout=60)
    try:
        # Within a second here; a worker whose clean-up is held ends by itself after runner.PARENT_GRACE_SECONDS.
        limit = runner.PARENT_POLL_SECONDS + runner.PARENT_GRACE_SECONDS + 10
        assert wait_for(lambda: not group(process.pid), limit), group(process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.stdout.close()
    return {"workers gone": True}


@pytest.mark.parametrize("moment", MOMENTS if ALL else MOMENTS_SLICE)
def test_a_fault_at_a_rare_moment_is_mended_by_the_same_command_at_once(moment, small_args, tmp_path):
    name = f"moment-{uuid.uuid4().hex[:6]}"
    db = f"sqlite:///{tmp_path / 'study.db'}"
    args = [*small_args, *GRID, "--storage", db, "--study-name", name, "--max-repeats", str(REPEATS), "--epochs", "2"]
    seen = fault_at(moment, args, db, name)
    started = time.monotonic()
    final = subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert final.returncode == 0, final.stdout + final.stderr
    invariant = check_invariant(db, name, "sequential")
    print(f"\nmoment {moment!r}: {seen}, rerun {time.monotonic() - started:.0f} s -> {invariant}")
    expected = {"points_once": invariant["planned"], "lost": 0, "unplanned": 0, "duplicated": 0, "left_running": 0, "holes": []}
    assert invariant == {**invariant, **expected}
