"""Helpers shared by the tests (one copy of each)."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

REPO = Path(__file__).resolve().parents[1]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def load(storage: str, name: str = "cnn-study") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def finished(study: optuna.Study) -> list:
    return study.get_trials(states=FINISHED)


def record_hole(trial: FrozenTrial) -> str:
    """What is wrong with a trial's stored epochs, or "" when nothing: its history and its reported values run 1, 2, ...
    without a hole, the history at most one epoch ahead (it is written first; a crash may fall between the two), and a
    finished trial holds every epoch in both."""
    history = [row["epoch"] for row in trial.user_attrs.get("history") or []]
    values = sorted(trial.intermediate_values)
    whole = trial.state in FINISHED
    if history != list(range(1, len(history) + 1)) or values != list(range(1, len(values) + 1)):
        return f"trial {trial.number}: history epochs {history}, reported epochs {values}"
    if len(values) not in ((len(history),) if whole else (len(history) - 1, len(history))):
        return f"trial {trial.number} ({trial.state.name}): {len(history)} epochs in its history, {len(values)} reported"
    return ""


def wait_for(condition, seconds: float) -> bool:
    """Poll ``condition()`` every 0.2 s until it is true (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def spawn(*args: str, module: str = "study.run", **kwargs) -> subprocess.Popen:
    """Start ``python -m MODULE ARGS`` as its own process, as a user would (in the repository unless ``cwd`` is given)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=kwargs.pop("cwd", REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a test can kill it with its workers
        **kwargs,
    )


def postgresql(action: str) -> None:
    """``pg_ctlcluster VERSION main ACTION`` (stop, start, restart) on the newest PostgreSQL that .ci/postgres.sh installed."""
    version = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: [int(p) for p in v.split(".")])[-1]
    # The server outlives this call: it must hold none of our descriptors (a CI runner reading our output would wait for
    # their end forever), so its output goes to a file, as .ci/postgres.sh does.
    with tempfile.TemporaryFile() as log:
        done = subprocess.run(["pg_ctlcluster", version, "main", action], stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=120)
        log.seek(0)
        assert done.returncode == 0, log.read().decode(errors="replace")


def group(pgid: int) -> list[int]:
    """The live processes (zombies excepted) of process group ``pgid``: a command started by ``spawn`` and its workers."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state not in ("Z", "X"):
            alive.append(int(stat.parent.name))
    return alive


# A run of the command that kills itself (kill -9) inside study.ask() of the first trial after a round's plan is stored:
# the trial exists, RUNNING, and has no grid point yet.
KILLED_AT_A_ROUNDS_START = """
import os, signal, sys
from study import rounds, samplers
from study.run import main

before_trial = samplers.DesignGridSampler.before_trial

def killed_at_a_rounds_start(self, study, trial):
    if rounds.stored_rounds(study.user_attrs):
        os.kill(os.getpid(), signal.SIGKILL)
    before_trial(self, study, trial)

samplers.DesignGridSampler.before_trial = killed_at_a_rounds_start
sys.exit(main(sys.argv[1:]))
"""
