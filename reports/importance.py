"""How much of the variation in test accuracy each factor explains.

A complete paired grid gets the exact variance decomposition of its full factorial model (each grid
point of each replicate once; main effects, two-way interactions, higher interactions, seed-to-seed
noise; ``stats.variance_decomposition``). Any other study gets Optuna's fANOVA (a random forest over
the complete trials, the learning rate on a log scale; seeded). Both give percent of variance.

:func:`compute` returns an :class:`Importance`; :func:`blocks` draws it.
"""

import math
import warnings
from dataclasses import dataclass

import pandas as pd

from reports import figures, stats
from reports.blocks import Figure, Text

SEED = 0


@dataclass
class Importance:
    method: str  # "decomposition", "fanova" or "" when none could be computed
    table: pd.DataFrame  # term, percent (and df, sum_sq for the decomposition)
    n: int  # rows behind it: grid points × replicates, or complete trials
    note: str = ""  # why none could be computed
    epoch: int | None = None


def from_design(trials: pd.DataFrame, epoch: int) -> Importance:
    """The exact decomposition of the accuracy at ``epoch`` over a complete, balanced grid."""
    table = stats.variance_decomposition(trials, ["activation", "loss", "lr"], "acc")
    return Importance("decomposition", table, len(trials), epoch=epoch)


def fanova(trials: pd.DataFrame, space: dict) -> Importance:
    """Optuna's fANOVA importances (percent) of activation, loss and lr over the complete trials, lr on a log scale."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    complete = trials[(trials["state"] == "complete") & trials["value"].notna()].drop_duplicates(["activation", "loss", "lr", "replicate"])
    if len(complete) < 2:
        return Importance("", pd.DataFrame(columns=["term", "percent"]), len(complete), "fewer than two complete trials")
    lr_min = min(space.get("lr_min", math.inf), complete["lr"].min())
    lr_max = max(space.get("lr_max", 0.0), complete["lr"].max())
    distributions = {
        "activation": CategoricalDistribution(space.get("activations") or sorted(complete["activation"].unique())),
        "loss": CategoricalDistribution(space.get("losses") or sorted(complete["loss"].unique())),
        "lr": FloatDistribution(lr_min, lr_max if lr_max > lr_min else lr_min * 10, log=True),
    }
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory" line in the user's output
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"activation": r.activation, "loss": r.loss, "lr": r.lr}, distributions=distributions, value=r.value
            )
            for r in complete.itertuples()
        ]
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=SEED), normalize=True
            )
    except (RuntimeError, ValueError) as error:
        return Importance("", pd.DataFrame(columns=["term", "percent"]), len(complete), str(error))
    table = pd.DataFrame({"term": list(values), "percent": [100 * v for v in values.values()]})
    return Importance("fanova", table, len(complete))


def compute(trials: pd.DataFrame, space: dict, design_trials: pd.DataFrame | None = None, epoch: int | None = None) -> Importance:
    """The decomposition when ``design_trials`` is a complete grid, else fANOVA over ``trials``."""
    if design_trials is not None and len(design_trials):
        whole = _whole_replicates(design_trials)
        try:
            return from_design(whole, epoch)
        except ValueError:
            pass  # no whole replicate: fANOVA below
    return fanova(trials, space)


def _whole_replicates(design_trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of the replicates that hold every grid point (a study cut short leaves its last replicate partial)."""
    factors = ["activation", "loss", "lr"]
    size = math.prod(design_trials[f].nunique() for f in factors)
    points = design_trials.groupby("replicate")[factors].apply(lambda g: len(g.drop_duplicates()))
    return design_trials[design_trials["replicate"].isin(points[points == size].index)]


def blocks(result: Importance) -> list:
    if not result.method:
        return [Text(f"Parameter importances could not be computed: {result.note}.")]
    listed = ", ".join(f"{t} {p:.0f}%" for t, p in zip(result.table["term"], result.table["percent"], strict=True))
    if result.method == "decomposition":
        text = (
            f"Where the variation in test accuracy (epoch {result.epoch}) comes from, as percent of its variance: {listed}. This is the "
            f"exact decomposition of the complete grid ({result.n} trials: each grid point of each whole replicate once): main effects, "
            "two-way interactions, higher interactions and the spread between replicates of the same grid point add up to 100%. "
            "It agrees with the sections by construction: a factor with a large share is one whose paired differences above are "
            'large, and an interaction with lr is what the "depends on the learning rate" verdicts test. The shares describe '
            "this grid, not the options in general: they grow with the range a factor spans (a learning rate at which training "
            "fails, such as 0.1, gives lr much of the variance) and shrink when other factors get more extreme levels."
        )
    else:
        text = (
            f"Parameter importance (Optuna's fANOVA, a seeded random forest over {result.n} complete trials, the learning rate on a "
            f"log scale), as percent: {listed}. It describes where this sampler's trials differ, not a paired comparison."
        )
    return [Text(text), Figure("importances", "where the variance of test accuracy comes from", lambda: figures.importances(result.table))]
