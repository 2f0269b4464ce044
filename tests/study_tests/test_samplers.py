"""Every sampler and every pruner, driven by in-memory studies with ask/tell (as Optuna's own tests do)."""

import optuna
import pytest

from cnn import TrainConfig
from study.progress import summarize
from study.record import TrialRecord
from study.samplers import AUTO_PRUNER, PRUNERS, SAMPLERS, drop_surplus
from study.space import SearchSpace, suggest_config
from study.storage import queue_again

SPACE = SearchSpace(("relu", "tanh"), ("cross_entropy", "mse"), 1e-4, 1e-1, 2)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_proposes_configs_inside_the_space(name):
    repeats = 2 if name == "grid" else None
    study = optuna.create_study(direction="maximize", sampler=SAMPLERS[name](SPACE, repeats or 1, 0, 0))
    seen = []
    for _ in range(8):
        trial = study.ask()
        config, replicate = suggest_config(trial, SPACE, TrainConfig(seed=100), repeats)
        assert config.activation in SPACE.activations and config.loss in SPACE.losses and SPACE.lr_min <= config.lr <= SPACE.lr_max
        assert config.seed == 100 + replicate
        seen.append((config.activation, config.loss, config.lr, replicate))
        study.tell(trial, config.lr)
    if name == "grid":
        # Eight asks of the 16-point grid (2 x 2 x 2 lrs x 2 replicates): eight different points.
        assert len(set(seen)) == 8 and {lr for *_, lr, _ in seen} <= set(SPACE.grid_lr_values())


def test_the_grid_order_is_the_same_in_every_process():
    # Trial numbers map to grid points by the sampler's order: workers and resumed runs must agree on it.
    first = SAMPLERS["grid"](SPACE, 2, 5, 0)
    other = SAMPLERS["grid"](SPACE, 2, 5, 10_007)
    assert first._all_grids == other._all_grids


FIXED = TrainConfig(seed=0)  # what every trial shares


def _run(study, fail=False):
    trial = study.ask()
    config, replicate = suggest_config(trial, SPACE, FIXED, 2)
    point = (config.activation, config.loss, config.lr, replicate)
    if fail:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, 1.0)
    return trial, point



def test_the_grid_runs_replicate_major():
    study = optuna.create_study(direction="maximize", sampler=SAMPLERS["grid"](SPACE, 2, 0, 0))
    points = [_run(study)[1] for _ in range(16)]
    # Replicate 0 of every lr, loss and activation, then replicate 1: a study cut short holds whole replicates.
    assert [p[3] for p in points] == [0] * 8 + [1] * 8
    assert [p[2] for p in points[:8]] == [1e-4] * 4 + [0.1] * 4
    assert len(set(points)) == 16


def test_a_trial_queued_again_runs_its_own_grid_point_and_no_point_is_left_out():
    study = optuna.create_study(direction="maximize", sampler=SAMPLERS["grid"](SPACE, 2, 0, 0))
    _run(study)
    dead, point = _run(study, fail=True)
    queue_again(study, study.trials[dead.number])
    retry, retried = _run(study)
    assert retried == point  # Optuna's grid sampler gave the retry a new point and left this one out
    for _ in range(14):
        _run(study)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    keys = ("activation", "loss", "lr", "replicate")
    assert len(complete) == 16 and len({tuple(t.params[k] for k in keys) for t in complete}) == 16


def test_the_grid_reads_a_trials_point_from_its_parameters():
    # A trial of an earlier release: its grid_id followed another order, its parameters are the truth.
    study = optuna.create_study(direction="maximize", sampler=SAMPLERS["grid"](SPACE, 2, 0, 0))
    params = {"activation": "relu", "loss": "cross_entropy", "lr": 1e-4, "replicate": 0}  # point 0 of the new order
    distributions = {
        "activation": optuna.distributions.CategoricalDistribution(SPACE.activations),
        "loss": optuna.distributions.CategoricalDistribution(SPACE.losses),
        "lr": optuna.distributions.FloatDistribution(SPACE.lr_min, SPACE.lr_max, log=True),
        "replicate": optuna.distributions.IntDistribution(0, 1),
    }
    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=1.0, system_attrs={"grid_id": 9}))
    points = [_run(study)[1] for _ in range(15)]
    assert tuple(params.values()) not in points and len(set(points)) == 15


def test_two_trials_asked_for_the_last_point_at_once_one_runs_it_and_the_other_is_surplus(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, direction="maximize", sampler=SAMPLERS["grid"](SPACE, 2, 0, 0))
    for _ in range(15):
        _run(study)
    first = study._storage.create_new_trial(study._study_id)  # another process's ask(), before its sampler names a point
    late = study.ask()
    assert drop_surplus(study, late)  # the lower trial number takes the last point; this one is ended untrained
    study.sampler.before_trial(study, study._storage.get_trial(first))
    taker = optuna.Trial(study, first)
    assert not drop_surplus(study, taker)
    suggest_config(taker, SPACE, FIXED, 2)
    study.tell(taker, 1.0)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 16  # the last point, run once
    lines = summarize(study, storage)
    assert "16 finished (16 complete of which 0 diverged, 0 pruned), 0 failed, 1 surplus" in lines
    records = {t.number: TrialRecord.from_trial(t).state for t in study.trials}
    assert records[late.number] == "surplus" and list(records.values()).count("complete") == 16


def _report(study, values):
    trial = study.ask()
    for epoch, value in enumerate(values, 1):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return "pruned"
    study.tell(trial, values[-1])
    return "complete"


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruner_respects_min_epochs_and_stops_a_clear_loser(name):
    # A fixed name: Hyperband puts a trial in the bracket crc32(f"{study name}_{trial number}") names, so an unnamed
    # study's random name sometimes left the loser alone in its bracket, with nothing to be pruned against (a CI failure).
    study = optuna.create_study(study_name="pruners", direction="maximize", pruner=PRUNERS[name](epochs=9, min_epochs=3))
    for _ in range(6):
        assert _report(study, [50.0 + e for e in range(9)]) == "complete"
    # A trial far behind at every epoch: stopped by every pruner but "none", never before epoch 3.
    loser = [10.0] * 9
    outcome = _report(study, loser)
    assert outcome == ("complete" if name == "none" else "pruned")
    pruned = study.trials[-1]
    if outcome == "pruned":
        assert max(pruned.intermediate_values) >= 3


def test_auto_pruner_is_none_for_the_design():
    assert AUTO_PRUNER == {"grid": "none"}
