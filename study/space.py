"""The search space and the one function that samples a trial from it."""

import math
from dataclasses import dataclass

import numpy as np
import optuna

from cnn import ACTIVATIONS, LOSSES, TrainConfig
from cnn.registry import lookup

# The notebook's own configuration: every new study starts with it as its baseline trial.
BASELINE = {"activation": "relu", "loss": "cross_entropy", "lr": 1e-3}


@dataclass(frozen=True)
class SearchSpace:
    """What a study samples. Parameter names are those users enqueue and read in the dashboard."""

    activations: tuple[str, ...] = ("relu", "leaky_relu", "tanh")  # the notebook's three
    losses: tuple[str, ...] = ("cross_entropy", "mse", "bce_with_logits")  # the notebook's three
    lr_min: float = 1e-5  # learning rate, log-uniform from lr_min ...
    lr_max: float = 1.0  # ... to lr_max, so that too low and too high are both explored
    grid_lrs: int = 6  # learning rates of the grid sampler, log-spaced from lr_min to lr_max

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

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {
            "activation": optuna.distributions.CategoricalDistribution(self.activations),
            "loss": optuna.distributions.CategoricalDistribution(self.losses),
            "lr": optuna.distributions.FloatDistribution(self.lr_min, self.lr_max, log=True),
        }

    def grid(self) -> dict[str, list]:
        """activations x losses x a log-spaced learning-rate grid: a fair design for comparing them."""
        lrs = np.logspace(math.log10(self.lr_min), math.log10(self.lr_max), self.grid_lrs)
        return {"activation": list(self.activations), "loss": list(self.losses), "lr": [float(f"{lr:.6g}") for lr in lrs]}

    def contains(self, params: dict) -> bool:
        return params["activation"] in self.activations and params["loss"] in self.losses and self.lr_min <= params["lr"] <= self.lr_max

    def as_dict(self) -> dict:
        return {"activations": list(self.activations), "losses": list(self.losses), "lr_min": self.lr_min, "lr_max": self.lr_max}


def suggest_config(trial: optuna.Trial, space: SearchSpace, fixed: TrainConfig) -> TrainConfig:
    """Sample ``activation``, ``loss`` and ``lr`` for ``trial``; everything else comes from ``fixed``.

    All ``trial.suggest_*`` calls of the project live here. The seed differs per trial so that
    repeated configurations are independent runs, and stays reproducible from the trial number.
    """
    return TrainConfig(
        activation=trial.suggest_categorical("activation", space.activations),
        loss=trial.suggest_categorical("loss", space.losses),
        lr=trial.suggest_float("lr", space.lr_min, space.lr_max, log=True),
        epochs=fixed.epochs,
        batch_size=fixed.batch_size,
        optimizer=fixed.optimizer,
        augment=fixed.augment,
        seed=fixed.seed + trial.number,
        device=fixed.device,
        precision=fixed.precision,
    )
