"""The statistics behind every claim of a report, each a thin wrapper around a kept library.

- a mean with its t interval, its t test against zero and its TOST at a margin:
  ``statsmodels.stats.weightstats.DescrStatsW`` (``tconfint_mean``, ``ttest_mean``, ``ttost_mean``);
- the interaction of an option pair with the learning rate: the one-way F test of the paired
  differences grouped by learning rate (``scipy.stats.f_oneway``);
- one error rate per report: Holm's step-down correction (``statsmodels.stats.multitest.multipletests``), and its
  form for comparisons whose two hypotheses (no difference, a margin-sized one) cannot both be true;
- replicates advice: the power of a paired t test (``statsmodels.stats.power.TTestPower``);
- the exact variance decomposition of a complete grid: sequential sums of squares of the full
  factorial model (``statsmodels.formula.api.ols`` and ``statsmodels.stats.anova.anova_lm``),
  which on a balanced grid do not depend on the order of the terms;
- where a curve peaks: a bootstrap over trials of the argmax of the mean curve (numpy).

Nothing here knows about studies: every function takes numbers and returns numbers.
"""

import math
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW

ALPHA = 0.05  # the report's family-wise error rate (Holm)
LEVEL = 0.95  # coverage of every interval shown
POWER = 0.8  # the probability the replicates advice aims at
N_BOOT = 2000  # bootstrap resamples for where a peak lies


class Estimate(NamedTuple):
    """A mean of ``n`` values with its t interval (``df`` degrees of freedom); NaN where it cannot be computed."""

    n: int
    mean: float
    low: float
    high: float
    sd: float
    df: int
    p: float  # two-sided t test of mean == 0
    p_equiv: float  # TOST of |mean| >= margin (NaN without a margin)


def estimate(values, margin: float | None = None, level: float = LEVEL) -> Estimate:
    """Mean of ``values``, its t interval, its t test against 0 and, with ``margin``, its TOST at ±margin.

    >>> e = estimate([1.0, 2.0, 3.0])
    >>> (e.n, e.mean, round(e.low, 3), round(e.high, 3), e.df)
    (3, 2.0, -0.484, 4.484, 2)
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(values.mean())
    if n < 2:
        return Estimate(n, mean, math.nan, math.nan, math.nan, 0, math.nan, math.nan)
    sd = float(values.std(ddof=1))
    if sd == 0:  # every value equal (options all at chance, say): the tests are decided by the value itself
        p = 0.0 if mean != 0 else 1.0
        p_equiv = math.nan if margin is None else (0.0 if abs(mean) < margin else 1.0)
        return Estimate(n, mean, mean, mean, 0.0, n - 1, p, p_equiv)
    d = DescrStatsW(values)
    low, high = d.tconfint_mean(alpha=1 - level)
    p = float(d.ttest_mean(0.0)[1])
    p_equiv = math.nan if margin is None else float(d.ttost_mean(-margin, margin)[0])
    return Estimate(n, mean, float(low), float(high), sd, n - 1, p, p_equiv)


class Interaction(NamedTuple):
    """One-way F test of paired differences grouped by learning rate: does the mean difference vary with it?"""

    f: float
    df_between: int
    df_within: int
    p: float  # NaN when it cannot be tested (fewer than two groups, or no spread within them)


def interaction_test(groups: list) -> Interaction:
    """F test that the mean paired difference is the same in every group (learning rate).

    The within-group spread (across the other factor's options and the replicates) is the error:
    a significant F says the difference between the two options changes with the learning rate.
    """
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    k, n = len(groups), sum(len(g) for g in groups)
    if k < 2 or n - k < 1:
        return Interaction(math.nan, k - 1, n - k, math.nan)
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups)
    means = np.array([g.mean() for g in groups])
    if within == 0:
        spread = float(np.ptp(means))
        return Interaction(math.inf if spread else math.nan, k - 1, n - k, 0.0 if spread else 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant groups; the within spread is checked above
        result = stats.f_oneway(*groups)
    return Interaction(float(result.statistic), k - 1, n - k, float(result.pvalue))


def holm(pvalues, alpha: float = ALPHA) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error rate); NaN stays NaN and is not counted in the family.

    >>> holm([0.01, 0.04, float("nan"), 0.03]).round(3).tolist()
    [0.03, 0.06, nan, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    valid = ~np.isnan(p)
    if valid.any():
        adjusted[valid] = multipletests(p[valid], alpha=alpha, method="holm")[1]
    return adjusted


def holm_grouped(pvalues, groups, alpha: float = ALPHA) -> np.ndarray:
    """Holm's step-down adjustment where the hypotheses of one group cannot all be true together (Shaffer 1986).

    A comparison tests "no difference" and "a difference of at least the margin": at most one of the two
    is true. Holm's proof then holds with the divisor at each step being the number of *groups* that still
    hold an unrejected hypothesis, not the number of hypotheses. With one hypothesis per group this is
    Holm's method exactly. NaN stays NaN and is not counted.

    >>> holm_grouped([0.01, 0.02, 0.04], [0, 0, 1]).round(3).tolist()
    [0.02, 0.04, 0.04]
    """
    p = np.asarray(pvalues, dtype=float)
    groups = np.asarray(groups)
    adjusted = np.full(p.shape, math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        remaining = len(set(groups[order[k:]].tolist()))  # groups with a hypothesis not yet rejected
        running = max(running, min(1.0, remaining * p[i]))
        adjusted[i] = running
    return adjusted


def next_level(adjusted, groups, alpha: float = ALPHA) -> float:
    """The level the step-down asks of the next claim: alpha over the groups still holding an unrejected hypothesis."""
    adjusted, groups = np.asarray(adjusted, dtype=float), np.asarray(groups)
    open_groups = {g for a, g in zip(adjusted, groups, strict=True) if not np.isnan(a) and a >= alpha}
    return alpha / max(len(open_groups), 1)


def pairs_to_decide(sd: float, margin: float, alpha: float, power: float = POWER) -> float:
    """Pairs a paired comparison needs to decide a margin-sized question with probability ``power``.

    Deciding means: a true difference of ``margin`` is claimed (two-sided t test at ``alpha``), and a true
    difference of 0 is shown within the margin (TOST at ``alpha``: each one-sided test needs power
    (1 + power) / 2). The larger of the two sample sizes; ``inf`` when the spread is unknown.
    """
    if not (math.isfinite(sd) and margin > 0):
        return math.inf
    if sd == 0:
        return 2.0
    effect = margin / sd
    return float(max(_smallest_n(effect, alpha, power, "two-sided"), _smallest_n(effect, alpha, (1 + power) / 2, "larger"), 2))


def _smallest_n(effect: float, alpha: float, power: float, alternative: str, most: int = 100_000) -> float:
    """The smallest n whose paired t test reaches ``power`` (``TTestPower.power``), searched up from the normal approximation."""
    z = stats.norm.ppf(1 - alpha / (2 if alternative == "two-sided" else 1)) + stats.norm.ppf(power)
    n = max(2, math.floor((z / effect) ** 2))  # a lower bound: t quantiles exceed normal ones
    solver = TTestPower()
    while n < most:
        candidates = np.arange(n, n + 64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reached = solver.power(effect_size=effect, nobs=candidates, alpha=alpha, alternative=alternative) >= power
        if reached.any():
            return float(candidates[np.argmax(reached)])
        n += 64
    return math.inf


def variance_decomposition(cells: pd.DataFrame, factors: list[str], value: str = "acc") -> pd.DataFrame:
    """Exact decomposition of the variance of ``value`` over a complete, balanced grid of ``factors``.

    Every combination of the factors' levels must hold the same number of rows (replicates). The
    terms are the main effects, the two-way interactions, the interactions of higher order together,
    and the spread between replicates of the same grid point (the residual; with one replicate it
    merges with the highest interaction). Sums of squares of a balanced design are orthogonal, so
    the shares add up to 100%.

    Returns:
        DataFrame[term, df, sum_sq, percent], largest first.
    """
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    factors = [f for f in factors if cells[f].nunique() > 1]
    if not factors:
        raise ValueError("no factor has two levels")
    counts = cells.groupby(factors).size()
    levels = math.prod(cells[f].nunique() for f in factors)
    if len(counts) != levels or counts.nunique() != 1:
        raise ValueError("the grid is not complete and balanced")
    data = cells[[*factors, value]].copy()
    names = {f: f"f{i}" for i, f in enumerate(factors)}
    data = data.rename(columns={**names, value: "y"})
    for f in names.values():
        data[f] = data[f].astype(str)
    formula = "y ~ " + " * ".join(f"C({names[f]})" for f in factors)
    if counts.iloc[0] == 1 and len(factors) < 2:
        raise ValueError("one factor and one replicate: no spread to separate its effect from")
    if counts.iloc[0] == 1:  # no replicates: the highest interaction is the residual
        formula = "y ~ (" + " + ".join(f"C({names[f]})" for f in factors) + f") ** {len(factors) - 1}"
    table = anova_lm(ols(formula, data).fit(), typ=1)
    back = {f"C({v})": k for k, v in names.items()}
    rows = {}
    for term, row in table.iterrows():
        if term == "Residual":
            label = "replicates (seed-to-seed noise)" if counts.iloc[0] > 1 else "highest interaction and noise"
        else:
            parts = [back[p] for p in term.split(":")]
            label = " × ".join(parts) if len(parts) <= 2 else "higher interactions"
        df, ss = rows.get(label, (0.0, 0.0))
        rows[label] = (df + float(row["df"]), ss + float(row["sum_sq"]))
    total = float(((data["y"] - data["y"].mean()) ** 2).sum())
    out = pd.DataFrame([(k, round(d), s, 100 * s / total if total else math.nan) for k, (d, s) in rows.items()],
                       columns=["term", "df", "sum_sq", "percent"])  # fmt: skip
    return out.sort_values("percent", ascending=False, kind="stable").reset_index(drop=True)


class Peak(NamedTuple):
    """Where a mean curve peaks, and where it may peak: the bootstrap range of the argmax over resampled trials."""

    epoch: int  # 1-based epoch of the mean curve's maximum
    low: int  # 2.5% quantile of the bootstrap argmax
    high: int  # 97.5% quantile
    at_end: float  # share of resamples that peak at the last epoch


def peak_location(curves: np.ndarray, seed: int = 0, n_boot: int = N_BOOT) -> Peak:
    """``curves`` (trials × epochs): the epoch of the mean curve's peak and its bootstrap range."""
    curves = np.asarray(curves, dtype=float)
    n, epochs = curves.shape
    best = int(np.argmax(curves.mean(axis=0))) + 1
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n_boot, n))
    argmax = curves[picks].mean(axis=1).argmax(axis=1) + 1  # (n_boot,)
    low, high = np.quantile(argmax, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], method="inverted_cdf")
    return Peak(best, int(low), int(high), float((argmax == epochs).mean()))
