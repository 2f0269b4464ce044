"""Samplers and pruners by name: plain name -> constructor registries."""

from collections.abc import Callable

import optuna

from study.space import SearchSpace

# name -> sampler(space, repeats, seed). Only "grid" runs the paired design (activation x loss x lr x replicate);
# the others hunt for the best configuration, and their comparisons are observational.
SAMPLERS: dict[str, Callable[[SearchSpace, int, int], optuna.samplers.BaseSampler]] = {
    "grid": lambda space, repeats, seed: optuna.samplers.GridSampler(space.grid(repeats), seed=seed),
    "tpe": lambda space, repeats, seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda space, repeats, seed: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda space, repeats, seed: optuna.samplers.QMCSampler(seed=seed),
}

# name -> pruner(epochs, min_epochs). Pruners compare trials at the same epoch, and none of them stops a
# trial before it has run min_epochs epochs.
PRUNERS: dict[str, Callable[[int, int], optuna.pruners.BasePruner]] = {
    "median": lambda epochs, min_epochs: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=min_epochs),
    "hyperband": lambda epochs, min_epochs: optuna.pruners.HyperbandPruner(
        min_resource=min(min_epochs, epochs), max_resource=epochs, reduction_factor=3
    ),
    "successive-halving": lambda epochs, min_epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min(min_epochs, epochs), reduction_factor=3
    ),
    "none": lambda epochs, min_epochs: optuna.pruners.NopPruner(),
}
AUTO_PRUNER = {"grid": "none"}  # --pruner auto: a design compares pairs at equal epochs, so it prunes nothing; else median
