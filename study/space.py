"""The search space, the paired design's grid, and the one function that samples a trial from it."""

import math
from dataclasses import dataclass, replace

import numpy as np
import optuna

from cnn import ACTIVATIONS, LOSSES, TrainConfig
from cnn.registry import lookup

# The notebook's own configuration: a new study runs it as its baseline trial when the grid does not hold it.
BASELINE = {"activation": "relu", "loss": "cross_entropy", "lr": 1e-3}


@dataclass(frozen=True)
class SearchSpace:
    """What a study samples. Parameter names are those users enqueue and read in the dashboard."""

    activations: tuple[str, ...] = ("relu", "leaky_relu", "tanh")  # the notebook's three
    losses: tuple[str, ...] = ("cross_entropy", "mse", "bce_with_logits")  # the notebook's three
    lr_min: float = 1e-4  # learning rate, from lr_min (slow for 10 epochs) ...
    lr_max: float = 1e-2  # ... to lr_max (too high: several points behind 1e-3), so that both ends are seen
    grid_lrs: int = 3  # learning rates of the grid, log-spaced from lr_min to lr_max: one per decade, 27 grid points.
    # Not 0.1: there the runs neither learn nor diverge cleanly, and their scatter hides the other answers behind
    # interactions; `--trials 50` of the sequential design answers more on this grid (README, "What --trials 50 buys")

    def __post_init__(self):
        for kind, names, registry in (("activation", self.activations, ACTIVATIONS), ("loss", self.losses, LOSSES)):
            if not names:
                raise ValueError(f"the search space needs at least one {kind}")
            for name in names:
                lookup(registry, name, kind)
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names repeat in {', '.join(names)}")
        if not (math.isfinite(self.lr_min) and math.isfinite(self.lr_max) and 0 < self.lr_min < self.lr_max):
            raise ValueError(
                f"the learning-rate range must satisfy 0 < lr-min < lr-max but got lr-min {self.lr_min:g}, lr-max {self.lr_max:g}"
            )
        if self.grid_lrs < 1:
            raise ValueError(f"grid learning rates must be at least 1 but got {self.grid_lrs}")

    def grid_lr_values(self) -> list[float]:
        """The grid's learning rates, log-spaced and rounded to 6 significant digits (1e-05, 0.001, 0.1)."""
        lrs = np.logspace(math.log10(self.lr_min), math.log10(self.lr_max), self.grid_lrs)
        return [float(f"{lr:.6g}") for lr in lrs]

    def grid(self, repeats: int = 1) -> dict[str, list]:
        """activations x losses x learning rates x replicates: the paired design.

        Trials that differ only in activation (or only in loss) share a learning rate and a
        replicate, hence a seed: the same initial weights and the same batches.
        """
        return {
            "activation": list(self.activations),
            "loss": list(self.losses),
            "lr": self.grid_lr_values(),
            "replicate": list(range(repeats)),
        }

    def grid_size(self, repeats: int = 1) -> int:
        return len(self.activations) * len(self.losses) * self.grid_lrs * repeats

    def contains(self, params: dict) -> bool:
        return params["activation"] in self.activations and params["loss"] in self.losses and self.lr_min <= params["lr"] <= self.lr_max

    def as_dict(self) -> dict:
        return {
            "activations": list(self.activations),
            "losses": list(self.losses),
            "lr_min": self.lr_min,
            "lr_max": self.lr_max,
            "grid_lrs": self.grid_lrs,
        }


def suggest_config(trial: optuna.Trial, space: SearchSpace, fixed: TrainConfig, repeats: int | None = None) -> tuple[TrainConfig, int]:
    """Sample ``activation``, ``loss`` and ``lr`` for ``trial``; everything else comes from ``fixed``.

    All ``trial.suggest_*`` calls of the project live here.

    Args:
        trial: the trial to sample.
        space: what to sample from.
        fixed: the settings every trial shares; its seed is the study's base seed.
        repeats: the paired design's replicates (a ``replicate`` parameter from 0 to
            ``repeats - 1`` is sampled too); None for samplers without a design.

    Returns:
        The trial's training config and its replicate. The training seed is the base seed plus
        the replicate, never the trial number: trials of one replicate start from the same
        initial weights and see the same batches, whatever their activation, loss and lr.
    """
    activation = trial.suggest_categorical("activation", space.activations)
    loss = trial.suggest_categorical("loss", space.losses)
    lr = trial.suggest_float("lr", space.lr_min, space.lr_max, log=True)
    replicate = trial.suggest_int("replicate", 0, repeats - 1) if repeats is not None else 0
    return replace(fixed, activation=activation, loss=loss, lr=lr, seed=fixed.seed + replicate), replicate
