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

import numpy as np
import pandas as pd

from reports import figures, stats
from reports.blocks import Figure, Text

SEED = 0


@dataclass
class Importance:
    method: str  # "decomposition", "fanova" or "" when none could be computed
    table: pd.DataFrame  # term, percent (and df, sum_sq, low, high for the decomposition)
    n: int  # rows behind it: grid points × replicates, or complete trials
    note: str = ""  # why none could be computed
    epoch: int | None = None
    noise: str = ""  # the decomposition's seed spread: where the intervals' seed variances come from


def from_design(trials: pd.DataFrame, epoch: int, every: pd.DataFrame | None = None) -> Importance:
    """The exact decomposition of the accuracy at ``epoch`` over a complete, balanced grid, with 95% intervals for its shares
    (``stats.share_intervals``) from the seed spread of ``every`` design trial (default: ``trials``)."""
    factors = ["activation", "loss", "lr"]
    table = stats.variance_decomposition(trials, factors, "acc")
    variances, noise = seed_variances(trials, trials if every is None else every)
    table = table.merge(stats.share_intervals(trials, factors, variances), on="term", how="left")
    return Importance("decomposition", table, len(trials), epoch=epoch, noise=noise)


def seed_variances(grid: pd.DataFrame, every: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Each row of ``grid``'s seed variance (points²) and a sentence on where it comes from.

    Per learning rate (its runs scatter differently: ±7 points at 0.1 where ±1 at 1e-3), the spread between replicates of
    the same grid point, pooled over the points of that learning rate that ran more than once in ``every``; a learning
    rate without such points takes the pooled spread of the others; a study with no point run twice takes the highest
    interaction's mean square (an upper bound: it holds the true interaction too).
    """
    point = ["activation", "loss", "lr"]
    deviations = every["acc"] - every.groupby(point)["acc"].transform("mean")
    sums = (deviations**2).groupby(every["lr"]).sum()
    dfs = (every.groupby(point).size() - 1).groupby(level="lr").sum()
    if dfs.sum() == 0:
        table = stats.variance_decomposition(grid, point, "acc").set_index("term")
        top = table.loc["highest interaction and noise"]
        variance = top["sum_sq"] / top["df"]
        return np.full(len(grid), variance), (
            f"no grid point ran twice, so the seeds' spread is taken from the highest interaction (sd {math.sqrt(variance):.1f} "
            "points, an upper bound)"
        )
    pooled = sums.sum() / dfs.sum()
    by_lr = {lr: sums[lr] / dfs[lr] if dfs.get(lr, 0) > 0 else pooled for lr in grid["lr"].unique()}
    spread = ", ".join(f"{lr:g}: {math.sqrt(v):.1f}" + ("" if dfs.get(lr, 0) > 0 else " (pooled)") for lr, v in sorted(by_lr.items()))
    return grid["lr"].map(by_lr).to_numpy(float), (
        f"the seeds' spread per learning rate (sd in points, from {int(dfs.sum())} degrees of freedom of the grid points run "
        f"more than once: {spread})"
    )


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
            return from_design(whole, epoch, design_trials)
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
        listed = ", ".join(f"{r.term} {r.percent:.0f}% [{r.low:.0f}, {r.high:.0f}]" for r in result.table.itertuples())
        text = (
            f"Where the variation in test accuracy (epoch {result.epoch}) comes from, as percent of its variance, with 95% "
            f"intervals over seed noise: {listed}. This is the exact decomposition of the complete grid ({result.n} trials: each "
            "grid point of each whole replicate once): main effects, two-way interactions, higher interactions and the spread "
            "between replicates of the same grid point add up to 100%. The intervals say where each share would lie on "
            f"average over new seeds (a parametric bootstrap, docs/statistics.md), given {result.noise}. "
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
