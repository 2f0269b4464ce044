"""Every sampler and every pruner, driven by in-memory studies with ask/tell (as Optuna's own tests do)."""

import optuna
import pytest

from cnn import TrainConfig
from study.samplers import AUTO_PRUNER, PRUNERS, SAMPLERS
from study.space import SearchSpace, suggest_config

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
    # Optuna maps trial numbers to grid points by the sampler's shuffle: workers and resumed runs must agree on it.
    first = SAMPLERS["grid"](SPACE, 2, 5, 0)
    other = SAMPLERS["grid"](SPACE, 2, 5, 10_007)
    assert first._all_grids == other._all_grids


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
    study = optuna.create_study(direction="maximize", pruner=PRUNERS[name](epochs=9, min_epochs=3))
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
