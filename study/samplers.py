"""Samplers and pruners by name: plain name -> constructor registries."""

from collections.abc import Callable

import optuna

from study.space import SearchSpace

# name -> sampler(space, repeats, seed, stream). Only "grid" runs the paired design (activation x loss x lr x
# replicate); the others hunt for the best configuration, and their comparisons are observational. Samplers that
# draw at random seed themselves with seed + stream, so that a resumed run or another worker does not replay the
# same draws. The grid's order must be the same in every process (Optuna maps trial numbers to grid points by
# it), so it uses the study's seed alone.
SAMPLERS: dict[str, Callable[[SearchSpace, int, int, int], optuna.samplers.BaseSampler]] = {
    "grid": lambda space, repeats, seed, stream: optuna.samplers.GridSampler(space.grid(repeats), seed=seed),
    "tpe": lambda space, repeats, seed, stream: optuna.samplers.TPESampler(seed=seed + stream),
    "random": lambda space, repeats, seed, stream: optuna.samplers.RandomSampler(seed=seed + stream),
    "qmc": lambda space, repeats, seed, stream: optuna.samplers.QMCSampler(seed=seed + stream),
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


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for a driver that asks and tells, and stops at its own count of trials.

    ``GridSampler.after_trial`` calls ``study.stop()`` when the last grid point is told, which
    Optuna allows only inside ``study.optimize``; the fused driver counts finished trials itself.
    """

    def after_trial(self, study, trial, state, values) -> None:
        return None


# Samplers the ask/tell driver (--fuse) uses instead of those of SAMPLERS, same signature.
ASK_TELL_SAMPLERS = {"grid": lambda space, repeats, seed, stream: AskTellGridSampler(space.grid(repeats), seed=seed)}
