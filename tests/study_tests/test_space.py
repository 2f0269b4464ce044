"""The search space, the paired design's grid, and suggest_config (Optuna's FixedTrial, no training)."""

import optuna
import pytest

from cnn import TrainConfig
from study.space import BASELINE, SearchSpace, suggest_config


def test_default_grid_spans_one_lr_per_decade_from_slow_to_too_high():
    space = SearchSpace()
    assert space.grid_lr_values() == [0.0001, 0.001, 0.01]
    assert space.contains(BASELINE) and BASELINE["lr"] in space.grid_lr_values()


def test_grid_has_a_replicate_axis():
    space = SearchSpace(("relu", "tanh"), ("mse",), 1e-3, 1e-1, 3)
    grid = space.grid(repeats=4)
    assert grid == {"activation": ["relu", "tanh"], "loss": ["mse"], "lr": [0.001, 0.01, 0.1], "replicate": [0, 1, 2, 3]}
    assert space.grid_size(4) == 2 * 1 * 3 * 4


def test_suggest_config_seeds_from_the_replicate_not_the_trial():
    fixed = TrainConfig(epochs=3, batch_size=50, seed=10, eval_batch_size=200)
    space = SearchSpace()
    params = {"activation": "tanh", "loss": "mse", "lr": 0.01, "replicate": 2}
    config, replicate = suggest_config(optuna.trial.FixedTrial(params, number=37), space, fixed, repeats=3)
    # Everything but the sampled fields comes from the fixed config, eval_batch_size included.
    assert config == TrainConfig("tanh", "mse", 0.01, epochs=3, batch_size=50, seed=12, eval_batch_size=200)
    assert replicate == 2


def test_suggest_config_without_a_design_trains_every_trial_from_the_base_seed():
    params = {"activation": "relu", "loss": "cross_entropy", "lr": 1e-3}
    config, replicate = suggest_config(optuna.trial.FixedTrial(params, number=5), SearchSpace(), TrainConfig(seed=7))
    assert (config.seed, replicate) == (7, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activations": ()}, "needs at least one activation"),
        ({"losses": ("mse", "mse")}, "loss names repeat"),
        ({"activations": ("swish",)}, "unknown activation 'swish'"),
        ({"lr_min": 1.0, "lr_max": 0.1}, "0 < lr-min < lr-max"),
        ({"grid_lrs": 0}, "grid learning rates must be at least 1"),
    ],
)
def test_bad_space_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace(**kwargs)
