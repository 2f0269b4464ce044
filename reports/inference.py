"""The report's one estimate-and-decide core: moderated variances, one error rate, intervals that agree with outcomes.

Every caller (the fixed report through ``claims.settle``, the sequential report and its round planner through
``sequential``) hands this module the same numbers per comparison (a :class:`Test`) and gets back one
:class:`Decision` per comparison. Sentences are written from the decisions elsewhere (``claims.verdict``).

**Estimate.** A comparison is a mean difference ``diff`` over ``n`` pairs with a seeds' variance ``s²`` on
``d = n − 1`` degrees of freedom and, where the trials stored per-image predictions, a test images' variance
``se_images²`` that no replicate shrinks. With 3 to 6 pairs ``s²`` is itself a guess on 2 to 5 df, so it is
*moderated* (Smyth 2004, limma's ``squeezeVar``): within each stratum of comparisons of like spread (one kind at
one learning rate), a scaled-F prior ``s² ~ s0² F(d, d0)`` is fitted to the comparisons' ``s²`` by the method of
moments on ``log s²`` (:func:`fit_prior`), and each comparison's variance becomes the posterior
``(d0 s0² + d s²) / (d0 + d)`` on ``d + d0`` degrees of freedom. ``d0`` is capped at half the smallest own df of
the stratum: the comparisons of one stratum share trials (relu − tanh and leaky_relu − tanh share the tanh trials), so
their variances are not independent, their log-variances spread less than independent ones would and the moment
estimate of ``d0`` runs to infinity on 4 to 6 comparisons. In 100 simulated reports without any effect under
``fwer`` (``tests/reports_tests/simulate.py``, seed 1), a cap at the stratum's summed df made a false claim in 11 of
them, at the largest own df 10, at half the smallest 8, without moderation 7 (binomial noise ±2 at 5%).
Strata of fewer than 3 comparisons are not moderated.
The t statistic is ``diff / sqrt(s²_post / n + se_images²)`` on ``d + d0`` df (the seeds' df: with the images'
part known almost exactly this is the conservative bound; Satterthwaite's df is never below it).

**Decide.** Each comparison tests two hypotheses of which at most one is true: no difference (two-sided t test,
``p``) and a difference of at least the margin (``p_equiv``: twice the larger one-sided p of the TOST, so that it is
below a level exactly when the two-sided interval at that level lies inside ±margin). Its *selection* p is the
smaller of the two, and a selected comparison claims the hypothesis that selected it: an equivalence's interval is
widened to include zero (Hsu, Hwang, Liu & Ruberg 1994), a difference's interval that lies inside ±margin reads
*negligible*. ``error_rate="fdr"`` (default): Benjamini–Hochberg over the comparisons' selection p-values
(grouped: a comparison is one discovery, whichever of its two claims it makes), at q = 5%; with ``R`` comparisons
selected out of ``m``, every interval is printed at level ``1 − R q / m`` (Benjamini & Yekutieli 2005, false
coverage-statement rate ≤ q over the selected), so a comparison's interval excludes zero exactly when its difference
is claimed and lies inside ±margin exactly when its equivalence is claimed. ``error_rate="fwer"``: Holm's
step-down over the same groups (Shaffer 1986); the ``R`` rejected comparisons' intervals are printed at level
``1 − α / (m − R + 1)`` (every rejected p is below it: the last step's), the open ones' at ``1 − α / (m − R)``
(every open p is above it), so again each interval agrees with its outcome.

A comparison's ``multiplicity`` (a Bonferroni factor inside the comparison, fixed before the data: the planned
looks of a sequential study times the epochs a drop was picked from) multiplies its p-values and divides its
interval's error: the interval at one look is then valid at any stopping time by a union bound over the looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as scistats

ALPHA = 0.05  # the report's error rate: q for "fdr", α for "fwer"
ERROR_RATES = ("fdr", "fwer")
DIFFERENCE, EQUIVALENCE, OPEN = "difference", "equivalence", "open"  # a comparison's outcome (comparisons.csv)
MIN_STRATUM = 3  # comparisons a stratum needs before a prior is fitted to their variances


@dataclass(frozen=True)
class Prior:
    """A scaled-F prior of variances: ``s² ~ s0² F(d, d0)``; ``d0 = 0`` is no prior (no moderation)."""

    s0_sq: float  # the prior's variance (points²)
    d0: float  # its degrees of freedom


NO_PRIOR = Prior(math.nan, 0.0)


def _trigamma_inverse(y: float) -> float:
    """x with trigamma(x) = y (Newton's method on 1 / trigamma, as limma's ``trigammaInverse``)."""
    if y > 1e7:
        return 1 / math.sqrt(y)
    if y < 1e-6:
        return 1 / y
    x = 0.5 + 1 / y
    for _ in range(50):
        tri = float(special.polygamma(1, x))
        step = tri * (1 - tri / y) / float(special.polygamma(2, x))
        x += step
        if -step / x < 1e-8:
            break
    return x


def fit_prior(variances, dfs, max_d0: float | None = None) -> Prior:
    """Fit a scaled-F prior to sample ``variances`` on ``dfs`` degrees of freedom (Smyth 2004, limma ``fitFDist``).

    The method of moments on ``log s²``: its mean and variance, less the sampling parts of a chi-square on ``d`` df
    (digamma, trigamma), give the prior's ``s0²`` and ``d0``. ``d0`` is infinite when the variances spread no more than
    sampling alone would; ``max_d0`` caps it. Fewer than ``MIN_STRATUM`` finite positive variances: no prior.

    >>> p = fit_prior([1.0, 1.1, 0.9, 1.05], [4, 4, 4, 4], max_d0=16)
    >>> round(p.s0_sq, 2), p.d0
    (1.32, 16.0)
    """
    v, d = np.asarray(variances, dtype=float), np.asarray(dfs, dtype=float)
    ok = np.isfinite(v) & (v > 0) & np.isfinite(d) & (d > 0)
    v, d = v[ok], d[ok]
    if len(v) < MIN_STRATUM:
        return NO_PRIOR
    e = np.log(v) - special.digamma(d / 2) + np.log(d / 2)
    mean = float(e.mean())
    spread = float(((e - mean) ** 2).sum() / (len(e) - 1) - special.polygamma(1, d / 2).mean())
    if spread > 0:
        d0 = 2 * _trigamma_inverse(spread)
        s0_sq = math.exp(mean + float(special.digamma(d0 / 2)) - math.log(d0 / 2))
    else:
        d0, s0_sq = math.inf, math.exp(mean)
    if max_d0 is not None and d0 > max_d0:
        # The capped prior keeps the fitted location: recomputed at the smaller d0, s0² would shrink (digamma(d0/2) −
        # log(d0/2) < 0) and the t test would reject 7-8% at a nominal 5% on 3 pairs (test_inference's simulation).
        d0 = max_d0
    return Prior(s0_sq, float(d0))


def squeeze(variance: float, df: float, prior: Prior) -> tuple[float, float]:
    """The posterior variance ``(d0 s0² + d s²) / (d0 + d)`` and its df ``d + d0`` (no prior: ``s²`` on ``d``)."""
    if not (prior.d0 > 0 and math.isfinite(prior.s0_sq)) or not math.isfinite(variance):
        return variance, df
    return (prior.d0 * prior.s0_sq + df * variance) / (prior.d0 + df), df + prior.d0


def moderate(variances, dfs, strata) -> tuple[list[float], list[float], dict]:
    """Moderate each variance toward the prior of its stratum: (posterior variances, their df, {stratum: Prior}).

    A stratum of None is not moderated (a pooled row, whose spread is mostly learning rate to learning rate).
    """
    variances, dfs = list(map(float, variances)), list(map(float, dfs))
    priors: dict = {}
    for s in {s for s in strata if s is not None}:
        idx = [i for i, t in enumerate(strata) if t == s]
        own = [dfs[i] for i in idx if math.isfinite(variances[i]) and variances[i] > 0]
        priors[s] = fit_prior([variances[i] for i in idx], [dfs[i] for i in idx], max_d0=min(own, default=0.0) / 2)
    out_v, out_d = [], []
    for v, d, s in zip(variances, dfs, strata, strict=True):
        pv, pd = squeeze(v, d, priors.get(s, NO_PRIOR)) if s is not None else (v, d)
        out_v.append(pv)
        out_d.append(pd)
    return out_v, out_d, priors


@dataclass(frozen=True)
class Test:
    """One comparison as the core sees it. ``se`` NaN: no interval, ``p`` given (an interaction's F test)."""

    diff: float = math.nan  # mean difference (points)
    se: float = math.nan  # its standard error (seeds, moderated, and test images)
    df: float = math.nan  # the t statistic's degrees of freedom
    margin: float | None = None  # equivalence margin (points); None: no equivalence test
    multiplicity: float = 1.0  # Bonferroni factor within the comparison (planned looks × epochs picked from)
    p: float = math.nan  # the p-value when there is no interval (``se`` NaN); NaN: no test


@dataclass(frozen=True)
class Decision:
    """What the report says of one comparison: its p-values, their adjustment, its interval, its outcome."""

    p: float  # two-sided test of no difference, × multiplicity
    p_equiv: float  # TOST at ±margin as a two-sided level (2 × the larger one-sided p), × multiplicity
    p_adjusted: float  # the smallest error rate at which the report would claim the difference
    p_equiv_adjusted: float  # the same for the equivalence
    alpha: float  # the interval's error: it is the (1 − alpha) t interval (alpha already divided by multiplicity)
    low: float
    high: float
    outcome: str  # DIFFERENCE, EQUIVALENCE or OPEN
    shows_difference: bool  # the interval excludes zero (with EQUIVALENCE: a negligible difference)
    shows_equivalence: bool  # the interval lies inside ±margin


def _pvalues(t: Test) -> tuple[float, float]:
    if not math.isfinite(t.se):
        return min(1.0, t.p * t.multiplicity) if math.isfinite(t.p) else math.nan, math.nan
    if t.se <= 0:  # every pair equal: the value itself decides
        p = 0.0 if t.diff != 0 else 1.0
        q = math.nan if t.margin is None else 0.0 if abs(t.diff) < t.margin else 1.0
        return p, q
    dist = scistats.t
    p = float(2 * dist.sf(abs(t.diff) / t.se, t.df))
    q = math.nan
    if t.margin is not None:
        q = float(2 * max(dist.sf((t.diff + t.margin) / t.se, t.df), dist.cdf((t.diff - t.margin) / t.se, t.df)))
    return min(1.0, p * t.multiplicity), (q if math.isnan(q) else min(1.0, q * t.multiplicity))


def _adjust(selection: np.ndarray, error_rate: str) -> tuple[np.ndarray, np.ndarray]:
    """Each comparison's adjusted selection p (BH step-up or Holm step-down; NaN: no test) and the indices tested."""
    adjusted = np.full(selection.shape, math.nan)
    valid = np.flatnonzero(np.isfinite(selection))
    m = len(valid)
    if not m:
        return adjusted, valid
    order = valid[np.argsort(selection[valid], kind="stable")]
    p = selection[order]
    if error_rate == "fdr":
        q = np.minimum.accumulate((p * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        q = np.maximum.accumulate(p * (m - np.arange(m)))
    adjusted[order] = np.minimum(q, 1.0)
    return adjusted, valid


def _threshold(r: int, m: int, alpha: float, error_rate: str, rejected: bool) -> float:
    """The level the step procedure ends at with ``r`` of ``m`` groups rejected, for a rejected or an open group."""
    if error_rate == "fdr":
        return max(r, 1) * alpha / m
    return alpha / (m - r + 1) if rejected else alpha / max(m - r, 1)


def _hypothesis_adjusted(p: float, own: float, adjusted: np.ndarray, m: int, error_rate: str) -> float:
    """The smallest error rate at which one hypothesis with p-value ``p`` would be claimed, given the groups' adjusted p.

    At error rate t the procedure rejects the groups whose adjusted p is ≤ t (R(t) of them) and claims a hypothesis of
    a rejected group when its p is below the end level (:func:`_threshold`); R(t) steps at the groups' adjusted
    p-values and the end level grows with t between them. ``own`` is the hypothesis's group's adjusted p: below it
    the group is not rejected.
    """
    if not math.isfinite(p) or not m:
        return math.nan
    steps = np.sort(adjusted[np.isfinite(adjusted)])
    best = 1.0
    for j, t in enumerate(steps):
        r = j + 1
        while r < len(steps) and steps[r] == t:
            r += 1
        factor = m / r if error_rate == "fdr" else m - r + 1
        candidate = max(float(t), own, p * factor)
        upper = float(steps[r]) if r < len(steps) else math.inf
        if candidate < upper or r == len(steps):
            best = min(best, candidate)
    return min(best, 1.0)


def decide(tests: list[Test], error_rate: str = "fdr", alpha: float = ALPHA) -> list[Decision]:
    """Decide every comparison of one report together: the module docstring's rule, one :class:`Decision` per test.

    >>> d = decide([Test(5.0, 1.0, 10, margin=2.0), Test(0.1, 0.5, 10, margin=2.0), Test(0.5, 3.0, 10, margin=2.0)])
    >>> [x.outcome for x in d]
    ['difference', 'equivalence', 'open']
    >>> all((x.low > 0 or x.high < 0) == x.shows_difference for x in d)
    True
    """
    if error_rate not in ERROR_RATES:
        raise ValueError(f"--error-rate must be one of {', '.join(ERROR_RATES)} but got {error_rate!r}")
    ps = [_pvalues(t) for t in tests]
    selection = np.array([np.nanmin([p, q]) if math.isfinite(p) or math.isfinite(q) else math.nan for p, q in ps])
    adjusted, valid = _adjust(selection, error_rate)
    m = len(valid)
    rejected = np.isfinite(adjusted) & (adjusted <= alpha)
    r = int(rejected.sum())
    out = []
    for t, (p, q), adj, rej in zip(tests, ps, adjusted, rejected, strict=True):
        level = _threshold(r, max(m, 1), alpha, error_rate, bool(rej))
        own = level / t.multiplicity
        low = high = math.nan
        if math.isfinite(t.se) and math.isfinite(t.df):
            half = float(scistats.t.ppf(1 - own / 2, t.df)) * t.se if t.se > 0 else 0.0
            low, high = t.diff - half, t.diff + half
        # A selected comparison claims the hypothesis that selected it (the smaller p). An equivalence's interval is
        # widened to include zero (Hsu et al. 1994: the interval that agrees with the TOST), so it claims no difference;
        # a difference whose interval lies inside the margin reads "negligible" (both flags).
        by_equivalence = bool(rej) and math.isfinite(q) and (not math.isfinite(p) or q <= p)
        if by_equivalence and math.isfinite(low):
            low, high = min(low, 0.0), max(high, 0.0)
        shows_d = bool(rej) and not by_equivalence and math.isfinite(p) and p <= level
        shows_e = bool(rej) and math.isfinite(q) and q <= level and (by_equivalence or (-t.margin < low and high < t.margin))
        outcome = EQUIVALENCE if shows_e else DIFFERENCE if shows_d else OPEN
        pa = _hypothesis_adjusted(p, adj, adjusted, m, error_rate) if math.isfinite(adj) else math.nan
        if by_equivalence and math.isfinite(pa):
            pa = 1.0  # selected by its equivalence, it claims no difference at any error rate
        qa = _hypothesis_adjusted(q, adj, adjusted, m, error_rate) if math.isfinite(adj) else math.nan
        out.append(Decision(p, q, pa, qa, own, low, high, outcome, shows_d, shows_e))
    return out


def next_level(decisions: list[Decision], error_rate: str = "fdr", alpha: float = ALPHA) -> float:
    """The level the next claim would be tested at: what an open comparison's replicates advice plans for.

    FDR: one more selection raises the end level to (R + 1) q / m; FWER: Holm's next step, α / (m − R).
    """
    m = sum(math.isfinite(d.p) or math.isfinite(d.p_equiv) for d in decisions)
    r = sum(d.outcome != OPEN for d in decisions)
    if not m:
        return alpha
    return (r + 1) * alpha / m if error_rate == "fdr" else alpha / max(m - r, 1)
