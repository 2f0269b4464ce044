"""The sequential design in a study: rounds of replicates only where the report's comparisons are open."""

import datetime
import socket
import subprocess
import sys
from collections import Counter

import optuna
import pytest
from helpers import FINISHED, KILLED_AT_A_ROUNDS_START, REPO, load
from optuna.trial import TrialState

from cnn import TrainConfig
from reports.build import build_report
from reports.frames import frames_from_study
from reports.sequential import plan_round
from study import rounds
from study.run import main
from study.samplers import SAMPLERS
from study.space import SearchSpace, suggest_config
from study.storage import queue_again

SPACE = SearchSpace(("relu", "tanh"), ("cross_entropy", "mse"), 1e-3, 1e-1, 2)
DESIGN = ["--activations", "relu,tanh", "--losses", "cross_entropy,mse", "--grid-lrs", "2", "--lr-min", "1e-3", "--lr-max", "1e-1"]
KEYS = ("activation", "loss", "lr", "replicate")


def test_allowed_points_are_replicate_0_and_each_rounds_plan_in_whole_blocks():
    sampler = SAMPLERS["grid"](SPACE, 3, 0, 0)
    points = sampler.points()
    assert len(rounds.allowed(sampler, [])) == 8 and all(points[g]["replicate"] == 0 for g in rounds.allowed(sampler, []))
    a, b, c = ["relu", "mse", 0.1], ["tanh", "mse", 0.1], ["relu", "cross_entropy", 0.001]
    plan = {"points": [a, b, c], "blocks": [[a, b], [c]]}
    chosen = [points[g] for g in rounds.allowed(sampler, [plan]) if points[g]["replicate"] == 1]
    assert sorted((p["activation"], p["loss"], p["lr"]) for p in chosen) == sorted(map(tuple, [a, b, c]))
    # A budget of 2 trials buys the first whole block; 1 trial buys the next block that fits, not half of the first.
    for budget, want in ((2, [a, b]), (1, [c]), (0, [])):
        chosen = [points[g] for g in rounds.allowed(sampler, [plan], budget) if points[g]["replicate"] == 1]
        assert sorted((p["activation"], p["loss"], p["lr"]) for p in chosen) == sorted(map(tuple, want)), budget


def test_a_round_cut_by_trials_ends_the_study_until_a_rerun_with_more(tmp_path):
    # --trials 11 fits round 0 (8 points) and the first block of round 1; the one trial left fits no other block. With
    # those finished the study is done: no plan for round 2 from a round with holes, and no block of round 1 in parts.
    sampler = SAMPLERS["grid"](SPACE, 3, 0, 0)
    a, b, c, d = ["relu", "mse", 0.1], ["tanh", "mse", 0.1], ["relu", "cross_entropy", 0.001], ["tanh", "cross_entropy", 0.001]
    plan = {"points": [a, b, c, d], "blocks": [[a, b], [c, d]], "open": ["relu vs tanh"], "decided": 0, "stop": ""}
    finished = [p for p in sampler.points() if p["replicate"] == 0]
    finished += [dict(zip(KEYS, (*point, 1), strict=True)) for point in (a, b)]
    study = _study_with(tmp_path, finished)
    study.set_user_attr("round 1", plan)
    assert rounds.next_step(study, sampler, 3, target=11) == rounds.Step("done")
    assert "round 2" not in study.user_attrs
    # A rerun with room for the other block (--trials 12) trains it, whole.
    assert rounds.next_step(study, sampler, 3, target=12) == rounds.Step("run", free=2)
    chosen = {tuple(sampler.points()[g][k] for k in KEYS) for g in rounds.allowed(sampler, [plan], 4) - sampler.finished_ids(study)}
    assert chosen == {(*c, 1), (*d, 1)}


def test_the_rounds_last_point_queued_again_is_run_and_one_being_taken_is_waited_for(tmp_path):
    # Round 0 holds 8 points; 7 finished. The 8th, queued again after a crash (a killed run, a machine gone silent), is
    # this round's to run: the next study.ask() takes it. Waiting for it instead would wait forever.
    sampler = SAMPLERS["grid"](SPACE, 3, 0, 0)
    points = [p for p in sampler.points() if p["replicate"] == 0]
    study = _study_with(tmp_path, points[:7])
    study.add_trial(optuna.trial.create_trial(params=points[7], distributions=DISTRIBUTIONS, state=TrialState.FAIL))
    queue_again(study, study.trials[-1])
    assert rounds.next_step(study, sampler, 3, target=20) == rounds.Step("run", free=1)
    # Another process's trial, asked this instant, takes the 8th point (it has no grid id yet): this process waits for
    # it rather than ask for a trial the grid has no point for.
    study = _study_with(tmp_path / "taking", points[:7])
    study._storage.create_new_trial(study._study_id)  # what study.ask() writes before the sampler names its point
    assert rounds.next_step(study, sampler, 3, target=20) == rounds.Step("wait")
    # Unless that trial was asked minutes ago: its process died inside study.ask(), and the point is free again.
    study = _study_with(tmp_path / "orphan", points[:7])
    orphan = optuna.trial.create_trial(state=TrialState.RUNNING)
    orphan.datetime_start = datetime.datetime.now() - datetime.timedelta(minutes=5)
    study._storage.create_new_trial(study._study_id, template_trial=orphan)
    assert rounds.next_step(study, sampler, 3, target=20) == rounds.Step("run", free=1)


DISTRIBUTIONS = {
    "activation": optuna.distributions.CategoricalDistribution(SPACE.activations),
    "loss": optuna.distributions.CategoricalDistribution(SPACE.losses),
    "lr": optuna.distributions.FloatDistribution(SPACE.lr_min, SPACE.lr_max, log=True),
    "replicate": optuna.distributions.IntDistribution(0, 2),
}


def _study_with(folder, finished: list[dict]) -> optuna.Study:
    """A SQLite study holding a complete trial at each of the grid points ``finished``."""
    folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=f"sqlite:///{folder / 'study.db'}", direction="maximize")
    for params in finished:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=DISTRIBUTIONS, value=50.0))
    return study


def _trained(study: optuna.Study) -> Counter:
    return Counter(tuple(t.params[k] for k in KEYS) for t in study.get_trials(states=FINISHED))


def _check_rounds(study: optuna.Study, max_repeats: int) -> list[dict]:
    """Every finished trial is a planned point of its round, trained once; each plan is the report's plan of its time."""
    stored = rounds.stored_rounds(study.user_attrs)
    trained = _trained(study)
    assert max(trained.values()) == 1  # no replicate of a grid point ran twice
    planned = {(*p, 0) for p in {k[:3] for k in trained}}
    for number, plan in enumerate(stored, start=1):
        planned |= {(*p, number) for p in map(tuple, plan["points"])}
    assert set(trained) == planned  # every planned point finished, and nothing else ran
    assert len({k[:3] for k in trained if k[3] == 0}) == 8  # round 0: the whole grid
    # The latest plan is what the report's analysis says now: the study ran until it said stop.
    final = plan_round(frames_from_study(study), max_repeats)
    assert final.done and final.stop in ("answered", "max repeats")
    return stored


@pytest.mark.slow
def test_a_sequential_study_trains_replicates_only_where_a_comparison_is_open(db, small_args, capsys, tmp_path):
    args = [*small_args, *DESIGN, "--epochs", "3", "--max-repeats", "3", "--storage", db]
    assert main(args) == 0
    study = load(db)
    stored = _check_rounds(study, 3)
    out = capsys.readouterr().out
    assert "sequential design: " in out
    assert len(study.get_trials(states=FINISHED)) == 8 + sum(len(plan["points"]) for plan in stored)
    # The same command again has nothing left to do: the rounds are stored.
    assert main(args) == 0 and len(load(db).trials) == len(study.trials)
    # The report says how the study spent its trials, round by round.
    text = build_report(frames_from_study(study), tmp_path / "report", samples=False).read_text()
    assert "## How the study spent its trials (sequential design)" in text and "paired, sequential" in text


@pytest.mark.slow
def test_workers_and_fused_trials_end_in_the_same_rounds_as_one_process(tmp_path, small_args, capsys):
    # SGD in float32: fused members and workers follow the single process's runs (see test_fused_study.py).
    args = [*small_args, *DESIGN, "--epochs", "2", "--max-repeats", "3", "--optimizer", "sgd", "--precision", "fp32"]
    studies = {}
    for name, extra in {"one": [], "workers": ["--workers", "2"], "fused": ["--fuse", "2"]}.items():
        db = f"sqlite:///{tmp_path / f'{name}.db'}"
        assert main([*args, *extra, "--storage", db]) == 0
        studies[name] = load(db)
    plans = {name: [plan["points"] for plan in _check_rounds(study, 3)] for name, study in studies.items()}
    assert plans["workers"] == plans["one"] and plans["fused"] == plans["one"]
    assert {name: set(_trained(s)) for name, s in studies.items()} == {name: set(_trained(studies["one"])) for name in studies}
    # No trial failed. Two processes asking for a round's last point at the same instant is the one race the grid's
    # order resolves by failing the later trial untrained; such a trial is marked surplus, never a failure.
    failed = [t for s in studies.values() for t in s.trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get("surplus") and not t.params and "history" not in t.user_attrs for t in failed)
    assert capsys.readouterr().out.count(" 0 failed") == 3


@pytest.mark.slow
def test_a_study_killed_in_its_rounds_last_trial_resumes_and_goes_on(db, small_args):
    # Round 0 has 8 points: 7 finish, and the 8th is left RUNNING by a process that died (what kill -9 leaves). The
    # resume fails it and queues its point again; the round must run it, then plan and train the next rounds.
    args = [*small_args, *DESIGN, "--storage", db, "--epochs", "2", "--max-repeats", "2"]
    assert main([*args, "--trials", "7"]) == 0
    study = load(db)
    study.sampler = SAMPLERS["grid"](SPACE, 2, 0, 0)
    crashed = study.ask()
    config, replicate = suggest_config(crashed, SPACE, TrainConfig(), 2)
    dead = subprocess.Popen(["true"])
    dead.wait()
    crashed.set_user_attr("worker", {"host": socket.gethostname(), "pid": dead.pid})
    assert replicate == 0 and crashed.number == 7
    resumed = subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "trial(s) 7 were left running by a process that died: marked failed, queued again" in resumed.stdout
    study = load(db)
    _check_rounds(study, 2)  # round 0 whole, each later round its plan, nothing twice
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 7)
    assert retry.state in FINISHED and (retry.params["activation"], retry.params["loss"]) == (config.activation, config.loss)


@pytest.mark.slow
def test_a_study_killed_as_a_round_starts_is_finished_by_an_immediate_rerun(db, small_args):
    # The trial left RUNNING names its dead process from its first moment, so the rerun fails it and queues its
    # point at once; an earlier release waited 30 s for it (ORPHAN_SECONDS) and, finding nothing else to do, ended
    # with "finished" and a planned point never trained.
    args = [*small_args, *DESIGN, "--storage", db, "--epochs", "2", "--max-repeats", "2"]
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_A_ROUNDS_START, *args], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    study = load(db)
    assert rounds.stored_rounds(study.user_attrs)[0]["points"]  # round 1 has points to train
    left = study.get_trials(states=(TrialState.RUNNING,))
    assert len(left) == 1 and "grid_id" not in left[0].system_attrs
    resumed = subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"trial(s) {left[0].number} were left running by a process that died: marked failed, queued again" in resumed.stdout
    study = load(db)
    _check_rounds(study, 2)  # every planned point finished once, nothing else ran
    assert [t.state for t in study.trials].count(TrialState.RUNNING) == 0
    assert [t.state for t in study.trials].count(TrialState.WAITING) == 0
    assert "round 1 is not complete" not in resumed.stdout and " 1 failed" in resumed.stdout
