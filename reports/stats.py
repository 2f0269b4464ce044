"""The statistics behind every claim of a report, each a thin wrapper around a kept library.

- a mean with its t interval, its t test against zero and its TOST at a margin:
  ``statsmodels.stats.weightstats.DescrStatsW`` (``tconfint_mean``, ``ttest_mean``, ``ttost_mean``);
- the same for a mean of paired differences whose trials share their test images: the seeds' part of its
  variance plus the test images' part (a crossed pairs × images variance-components estimate), a t
  interval with Satterthwaite's degrees of freedom (``scipy.stats.t``): :func:`estimate` with ``images``;
- the interaction of an option pair with the learning rate: Welch's heteroscedastic one-way test of the paired
  differences grouped by learning rate (``statsmodels.stats.oneway.anova_oneway``), or, where the pairs share test
  images, its Welch–James form (Johansen 1980) whose covariance counts each learning rate's own seeds and the
  images' effects too (``scipy.stats.f``);
- one error rate per report: Holm's step-down correction (``statsmodels.stats.multitest.multipletests``), and its
  form for comparisons whose two hypotheses (no difference, a margin-sized one) cannot both be true;
- replicates advice: the power of a paired t test (``statsmodels.stats.power.TTestPower``), and whether
  replicates can decide at all when the test images set a floor (:func:`replicates_can_decide`);
- the exact variance decomposition of a complete grid: sequential sums of squares of the full
  factorial model (``statsmodels.formula.api.ols`` and ``statsmodels.stats.anova.anova_lm``),
  which on a balanced grid do not depend on the order of the terms;
- where a curve peaks: a bootstrap over trials of the argmax of the mean curve (numpy).

Nothing here knows about studies: every function takes numbers and returns numbers.
"""

import math
import warnings
from itertools import combinations
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
    """A mean of ``n`` values with its t interval (``df`` degrees of freedom); NaN where it cannot be computed.

    Its standard error is ``sqrt(se_seeds**2 + se_images**2)``: ``se_seeds`` from the spread of the values
    (pairs, replicates), ``se_images`` from the test images every value was measured on (NaN: not measured,
    the interval counts the seeds only).
    """

    n: int
    mean: float
    low: float
    high: float
    sd: float
    df: float
    p: float  # two-sided t test of mean == 0
    p_equiv: float  # TOST of |mean| >= margin (NaN without a margin)
    se_seeds: float = math.nan  # sd / sqrt(n): what more replicates shrink
    se_images: float = math.nan  # the part shared through the test images: what more replicates leave (NaN: not measured)
    n_images: int = 0  # test images behind se_images (0: not measured)


def estimate(values, margin: float | None = None, level: float = LEVEL, images=None) -> Estimate:
    """Mean of ``values``, its t interval, its t test against 0 and, with ``margin``, its TOST at ±margin.

    Args:
        values: one number per pair (a − b, in points).
        margin: the equivalence margin of the TOST (None: no TOST).
        level: the interval's coverage.
        images: optional (len(values), test images) array: each pair's difference on each test image (in points,
            row i averaging to ``values[i]``). With it, the interval is about *new test images drawn like these*
            as well as new seeds: see :func:`image_components` for the method. Without it, the interval is over
            the seeds only (the classic one-sample t interval of ``DescrStatsW``).

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
    if images is not None:
        return _two_level(values, mean, sd, np.asarray(images, dtype=float), margin, level)
    if sd == 0:  # every value equal (options all at chance, say): the tests are decided by the value itself
        return _constant(n, mean, margin)
    d = DescrStatsW(values)
    low, high = d.tconfint_mean(alpha=1 - level)
    p = float(d.ttest_mean(0.0)[1])
    p_equiv = math.nan if margin is None else float(d.ttost_mean(-margin, margin)[0])
    return Estimate(n, mean, float(low), float(high), sd, n - 1, p, p_equiv, sd / math.sqrt(n))


def _constant(n: int, mean: float, margin: float | None, **extra) -> Estimate:
    p = 0.0 if mean != 0 else 1.0
    p_equiv = math.nan if margin is None else (0.0 if abs(mean) < margin else 1.0)
    return Estimate(n, mean, mean, mean, 0.0, n - 1, p, p_equiv, 0.0, **extra)


class ImageComponents(NamedTuple):
    """Mean squares of a pairs × test images table of differences (two-way crossed, one value per cell)."""

    n_pairs: int
    n_images: int
    ms_pairs: float  # n_images × the variance of the pairs' means: E = σ²_pi + n_images σ²_p
    ms_images: float  # n_pairs × the variance of the images' means: E = σ²_pi + n_pairs σ²_i
    ms_residual: float  # E = σ²_pi

    @property
    def var_image(self) -> float:
        """σ²_i, the variance of one test image's effect on the difference, shared by every pair (never below 0)."""
        return max(0.0, (self.ms_images - self.ms_residual) / self.n_pairs)


def image_components(images) -> ImageComponents:
    """The mean squares of a (pairs, images) table of per-image differences: the method of moments for crossed effects.

    The model of a pair's difference on an image is d_pi = μ + s_p + g_i + e_pi: ``s_p`` the seed (a pair's
    initial weights and batches), ``g_i`` the image (a test image that suits one option better than the other,
    for every seed), ``e_pi`` the pair's own luck on that image. The report's mean D = mean_p,i d_pi estimates μ,
    the difference over new seeds *and new test images*, with

        Var(D) = σ²_p / P + σ²_i / I + σ²_pi / (P I).

    Replicates shrink the first and the last term; only more test images shrink the second. The unbiased
    estimate from the two-way ANOVA mean squares (Searle, Casella & McCulloch, *Variance Components*, 1992,
    ch. 4; the G-study of generalizability theory) is (MS_pairs + MS_images − MS_residual) / (P I) =
    s²_pairs / P + (MS_images − MS_residual) / (P I): the seed-only variance plus the images' part.

    >>> c = image_components([[100.0, 0.0, 0.0, 100.0], [100.0, 0.0, 100.0, 0.0]])
    >>> (c.ms_pairs, round(c.ms_images, 1), round(c.ms_residual, 1), round(c.var_image, 1))
    (0.0, 3333.3, 3333.3, 0.0)
    """
    table = np.asarray(images, dtype=float)
    n_pairs, n_images = table.shape
    grand = table.mean()
    rows, cols = table.mean(axis=1), table.mean(axis=0)
    ss_pairs = n_images * float(((rows - grand) ** 2).sum())
    ss_images = n_pairs * float(((cols - grand) ** 2).sum())
    ss_residual = max(0.0, float(((table - grand) ** 2).sum()) - ss_pairs - ss_images)
    return ImageComponents(
        n_pairs, n_images, ss_pairs / max(n_pairs - 1, 1), ss_images / max(n_images - 1, 1),
        ss_residual / max((n_pairs - 1) * (n_images - 1), 1),
    )  # fmt: skip


def _two_level(values: np.ndarray, mean: float, sd: float, images: np.ndarray, margin: float | None, level: float) -> Estimate:
    """The interval over seeds and test images: the variance of :func:`image_components`, Satterthwaite's df.

    The seeds' part is the pairs' own variance (s² / P, as the seed-only interval has it); the images' part is
    σ²_i / I. The degrees of freedom of their sum are Satterthwaite's (1946) for the linear combination of mean
    squares it is, (s²/P − MS_res/(PI) + MS_img/(PI)), with P − 1, I − 1 and (P − 1)(I − 1) degrees of freedom:
    with no image part it is the seed-only t interval exactly; with a dominant one, nearly a normal interval.
    """
    n = len(values)
    if images.ndim != 2 or images.shape[0] != n:
        raise ValueError(f"images must hold one row per value ({n}) but has shape {images.shape}")
    c = image_components(images)
    var_seeds, var_images = sd**2 / n, c.var_image / c.n_images
    if var_images > 0:
        parts = [(sd**2 / n, n - 1), (c.ms_images / (n * c.n_images), c.n_images - 1),
                 (c.ms_residual / (n * c.n_images), (n - 1) * (c.n_images - 1))]  # fmt: skip
        df = (var_seeds + var_images) ** 2 / sum(v**2 / d for v, d in parts if v > 0)
    else:
        df = float(n - 1)
    se = math.sqrt(var_seeds + var_images)
    extra = {"se_images": math.sqrt(var_images), "n_images": c.n_images}
    if se == 0:
        return _constant(n, mean, margin, **extra)
    t = stats.t  # not frozen: building a frozen distribution costs milliseconds, and a report has a hundred of these
    half = float(t.ppf((1 + level) / 2, df)) * se
    p = float(2 * t.sf(abs(mean) / se, df))
    # TOST: the larger p of the two one-sided tests, H0 mean <= -margin and H0 mean >= margin (as ttost_mean).
    p_equiv = math.nan if margin is None else float(max(t.sf((mean + margin) / se, df), t.cdf((mean - margin) / se, df)))
    return Estimate(n, mean, mean - half, mean + half, sd, float(df), p, p_equiv, math.sqrt(var_seeds), **extra)


class Interaction(NamedTuple):
    """Test of paired differences grouped by learning rate: does the mean difference vary with it?"""

    f: float
    df_between: int
    df_within: float  # the error's degrees of freedom: N − k (seeds only), Satterthwaite's (seeds and test images)
    p: float  # NaN when it cannot be tested (fewer than two groups, or no spread within them)


def interaction_test(groups: list, images: list | None = None, priors: list | None = None) -> Interaction:
    """Test that the mean paired difference is the same in every group (learning rate).

    Args:
        groups: per group, its pairs' differences (points).
        images: optional, per group, its (pairs, test images) table of per-image differences (rows averaging to
            ``groups[g]``, every group on the same test images), as :func:`estimate` takes it. Without it: Welch's
            heteroscedastic one-way test (``statsmodels.stats.oneway.anova_oneway(use_var="unequal")``, each group's
            own spread as its error) where every group has 2 values with some spread, else the one-way F test
            (``scipy.stats.f_oneway``). With it: the Welch-type Wald test of :func:`_interaction_images`, whose
            covariance counts each group's own seeds' spread and the test images.
        priors: optional, per group, the ``inference.Prior`` of the seeds' variance of one pair's difference at its
            learning rate (the report's stratum of comparisons at that rate; None or a prior without df: none). Each
            group's variance is then moderated as its own row's is (``inference.squeeze``: on P_g − 1 + d0 df), and
            the Welch–James test of :func:`_welch_james` takes those df. Where every group has at least 2 pairs.

    The seeds-only F test is right when the pairs' differences are independent. Pairs of one learning rate scored on
    the same test images are not: they share that learning rate's per-image effects (a test image that suits one
    option at that rate), which move its mean as a whole and do not show in the spread within it. Where that effect's
    spread differs between the learning rates, the seeds-only tests take it for an interaction (9-15% rejections at a
    nominal 5% in ``tests/reports_tests/test_interaction_images.py``'s simulation, where this test rejects 5-7%). Where
    the seeds' spread differs between the learning rates (0.3 to 7 points in the example), a test that pools it takes
    the scattered rate's mean for an interaction (11.6% there at 5% with 5 pairs per rate, where this one rejects 6.7%).
    """
    keep = [i for i, g in enumerate(groups) if len(g)]
    groups = [np.asarray(groups[i], dtype=float) for i in keep]
    k, n = len(groups), sum(len(g) for g in groups)
    if k < 2 or n - k < 1:
        return Interaction(math.nan, k - 1, n - k, math.nan)
    priors = None if priors is None else [priors[i] for i in keep]
    if images is not None:
        return _interaction_images(groups, [np.asarray(images[i], dtype=float) for i in keep], priors)
    sizes = np.array([len(g) for g in groups], dtype=float)
    if priors is not None and (sizes >= 2).all():
        variances, dfs = _moderated([float(g.var(ddof=1)) for g in groups], sizes - 1, priors)
        if (variances > 0).all():
            means = np.array([g.mean() for g in groups])
            return _welch_james(means, variances / sizes, dfs, np.zeros((k, k)), math.inf)
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups)
    means = np.array([g.mean() for g in groups])
    if within == 0:
        spread = float(np.ptp(means))
        return Interaction(math.inf if spread else math.nan, k - 1, n - k, 0.0 if spread else 1.0)
    if all(len(g) >= 2 and g.var(ddof=1) > 0 for g in groups):
        # Welch's heteroscedastic one-way test (statsmodels anova_oneway, use_var="unequal"): the paired differences'
        # spread grows with the learning rate (5 to 10 times at the example's 0.1), which the pooled F test takes for an
        # interaction or hides one behind.
        from statsmodels.stats.oneway import anova_oneway

        w = anova_oneway(groups, use_var="unequal")
        return Interaction(float(w.statistic), k - 1, float(w.df[1]), float(w.pvalue))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant groups; the within spread is checked above
        result = stats.f_oneway(*groups)
    return Interaction(float(result.statistic), k - 1, n - k, float(result.pvalue))


def _interaction_images(groups: list[np.ndarray], tables: list[np.ndarray], priors: list | None = None) -> Interaction:
    """Welch-type Wald test of equal group means whose covariance counts each group's own seeds and the test images.

    Group g's mean over its P_g pairs and the I shared images is D_g = μ_g + s̄_g + ḡ_g + ē_g (:func:`image_components`'
    model within each group), so

        Cov(D) = diag(σ²_s,g / P_g) + Σ / I,   Σ_gh = Cov over images of g_g(i), g_h(i),

    where g_g(i) is image i's effect on the difference at learning rate g (shared between learning rates as far as an
    image suits an option at both). Each group keeps its own seeds' variance, as its row in the report has it
    (:func:`estimate` with ``images``): s²_g / P_g, s²_g the variance of its pairs' means on P_g − 1 df (it holds the
    pairs' own luck σ²_e,g / I too), moderated with ``priors`` where given (on P_g − 1 + d0 df, as the row's); Σ / I is
    the sample covariance of the groups' per-image column means, less each group's luck MS_residual,g / (P_g I) on its
    diagonal, with negative eigenvalues set to 0 (the crossed-effects estimate of :func:`image_components`, never
    below 0). A learning rate whose seeds scatter then weighs little and no longer makes the others' small differences
    look like an interaction, as Welch's one-way test does without images. The statistic is :func:`_welch_james`'.
    Where a group has one pair (no spread of its own) or its seeds show no spread, :func:`_interaction_images_pooled`
    pools the seeds' variance instead.
    """
    k = len(groups)
    n_images = tables[0].shape[1]
    if any(t.ndim != 2 or t.shape != (len(g), n_images) for g, t in zip(groups, tables, strict=True)):
        raise ValueError("images must hold, per group, one row per pair and the same test images")
    sizes = np.array([len(g) for g in groups], dtype=float)
    parts = [image_components(t) for t in tables]
    rows = np.array([c.ms_pairs for c in parts]) / n_images  # s²_g, the variance of group g's pairs' means
    dfs = sizes - 1
    if priors is not None and (sizes >= 2).all():
        rows, dfs = _moderated(rows, dfs, priors)
    if (sizes < 2).any() or not (rows > 0).all():
        return _interaction_images_pooled(groups, tables)
    means = np.array([t.mean() for t in tables])
    luck = np.array([c.ms_residual for c in parts]) / (sizes * n_images)  # σ²_e,g / (P_g I), in the columns' diagonal
    columns = np.cov(np.stack([t.mean(axis=0) for t in tables]), ddof=1).reshape(k, k) / n_images - np.diag(luck)
    eigenvalues, vectors = np.linalg.eigh(columns)
    columns = (vectors * np.clip(eigenvalues, 0.0, None)) @ vectors.T  # Σ / I, positive semi-definite
    return _welch_james(means, rows / sizes, dfs, columns, n_images - 1)


def _moderated(variances, dfs, priors: list) -> tuple[np.ndarray, np.ndarray]:
    """Each group's variance and df squeezed toward its prior (``inference.squeeze``; None: left as it is)."""
    from reports import inference

    out = [
        inference.squeeze(float(v), float(d), p if p is not None else inference.NO_PRIOR)
        for v, d, p in zip(variances, dfs, priors, strict=True)
    ]
    return np.array([v for v, _ in out]), np.array([d for _, d in out])


def _welch_james(means: np.ndarray, seeds: np.ndarray, seed_dfs: np.ndarray, columns: np.ndarray, columns_df: float) -> Interaction:
    """Johansen's (1980) general Welch–James test of equal ``means``, Cov = diag(``seeds``) + ``columns``.

    ``seeds[g]`` is group g's variance of its mean from its own seeds on ``seed_dfs[g]`` df; ``columns`` the images'
    covariance (a Wishart on ``columns_df`` df; zeros without images). T = D'C'(C V C')⁻¹CD, C the k − 1 orthonormal
    contrasts (``scipy.linalg.helmert``), and T / c referred to F(k − 1, ν) with c = (k − 1) + 2A − 6A / (k + 1),
    ν = (k − 1)(k + 1) / (3A), A = ½ Σ_j [tr((M V_j)²) + (tr M V_j)²] / ν_j over V's independently estimated parts
    V_j (each group's seeds, the images' covariance), M = C'(C V C')⁻¹C. Without images A is
    Σ_g (1 − w_g / Σ w)² / ν_g, w_g = 1 / V_gg: Welch's (1951) test exactly (``anova_oneway(use_var="unequal")``)
    when ν_g = P_g − 1. When the images dominate, A ≈ k(k − 1) / (2(I − 1)): ν is large and the test is nearly
    χ²(k − 1) / (k − 1), as it should be for a covariance measured on thousands of images.
    """
    from scipy.linalg import helmert

    k = len(means)
    v = np.diag(seeds) + columns
    c = helmert(k)  # (k − 1, k), orthonormal rows orthogonal to the ones
    contrast = c @ means
    cvc = c @ v @ c.T
    t_stat = float(contrast @ np.linalg.solve(cvc, contrast))
    m = c.T @ np.linalg.solve(cvc, c)  # M = C'(C V C')⁻¹C, (k, k)
    q = k - 1
    # Johansen's A: each group's seeds' part a scalar on its own df, the images' covariance a Wishart.
    a = float(((np.diag(m) * seeds) ** 2 / seed_dfs).sum())
    if math.isfinite(columns_df) and columns.any():
        mv = m @ columns
        a += 0.5 * (float(np.trace(mv @ mv)) + float(np.trace(mv)) ** 2) / columns_df
    scale = q + 2 * a - 6 * a / (q + 2)
    f = t_stat / scale
    df = q * (q + 2) / (3 * a) if a > 0 else math.inf
    return Interaction(f, q, float(df), float(stats.f.sf(f, q, df)))


def _interaction_images_pooled(groups: list[np.ndarray], tables: list[np.ndarray]) -> Interaction:
    """Wald test of equal group means whose covariance counts the seeds, pooled over the groups, and the test images.

    :func:`_interaction_images` falls back to it where a group has no spread of its own (one pair, or pairs that agree);
    it was the report's test before (it rejects too often where the seeds' spread differs between the groups).

    Group g's mean over its P_g pairs and the I shared images is D_g = μ_g + s̄_g + ḡ_g + ē_g (:func:`image_components`'
    model within each group), so

        Cov(D) = diag(σ²_s / P_g) + Σ / I,   Σ_gh = Cov over images of c_g(i), c_h(i),

    where c_g(i) is image i's mean over group g's pairs: its covariance holds the groups' image effects (shared between
    learning rates as far as an image suits an option at both) and, on the diagonal, the pairs' own luck σ²_e,g / P_g.
    Σ is estimated by the sample covariance of the columns' means, σ²_s (the seeds, pooled over the groups as the F
    test pools them) by the pooled MS_pairs − MS_residual of each group's table, over I (never below 0). The
    statistic is W / (k − 1), W = D'C'(C V C')⁻¹CD with C the k − 1 orthonormal contrasts (``scipy.linalg.helmert``),
    referred to F(k − 1, ν), ν Satterthwaite's for tr(C V C') from its parts (seeds: N − k df; images: I − 1; the
    residual subtracted: Σ (P_g − 1)(I − 1)). With no image effect and I large it is the F test with the seeds'
    variance; with two groups it is the t test of :func:`estimate` for a difference of two independent means.
    """
    from scipy.linalg import helmert

    k, n = len(groups), sum(len(g) for g in groups)
    n_images = tables[0].shape[1]
    if any(t.ndim != 2 or t.shape != (len(g), n_images) for g, t in zip(groups, tables, strict=True)):
        raise ValueError("images must hold, per group, one row per pair and the same test images")
    sizes = np.array([len(g) for g in groups], dtype=float)
    means = np.array([t.mean() for t in tables])
    parts = [image_components(t) for t in tables]
    df_rows = sizes - 1
    rows = float(sum(d * c.ms_pairs for d, c in zip(df_rows, parts, strict=True)) / df_rows.sum()) / n_images  # s² of row means
    residual = float(sum(d * c.ms_residual for d, c in zip(df_rows, parts, strict=True)) / df_rows.sum()) / n_images
    # σ²_s, pooled, never below 0 (left unclamped, the test rejected 6-9% at a nominal 5% in the simulation; clamped 3-5%)
    seeds = max(rows - residual, 0.0)
    columns = np.cov(np.stack([t.mean(axis=0) for t in tables]), ddof=1).reshape(k, k) / n_images  # Σ / I
    c = helmert(k)  # (k − 1, k), orthonormal rows orthogonal to the ones
    v = c @ (np.diag(seeds / sizes) + columns) @ c.T
    contrast = c @ means
    weights = float((np.diag(c.T @ c) / sizes).sum())  # tr(C diag(1 / P_g) C')
    trace = float(np.trace(v))
    if trace <= 0:
        spread = float(np.ptp(means))
        return Interaction(math.inf if spread else math.nan, k - 1, n - k, 0.0 if spread else 1.0)
    f = float(contrast @ np.linalg.solve(v, contrast)) / (k - 1)
    image_part = float(np.trace(c @ columns @ c.T))
    pieces = [(image_part, n_images - 1)]
    if seeds > 0:  # the seeds' part, a difference of two mean squares
        pieces += [(weights * rows, n - k), (weights * residual, float(df_rows.sum() * (n_images - 1)))]
    df = trace**2 / sum(v_**2 / d for v_, d in pieces if v_ > 0 and d > 0)
    return Interaction(f, k - 1, float(df), float(stats.f.sf(f, k - 1, df)))


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


def pairs_to_decide(sd: float, margin: float, alpha: float, power: float = POWER, se_images: float = 0.0) -> float:
    """Pairs a paired comparison needs to decide a margin-sized question with probability ``power``.

    Deciding means: a true difference of ``margin`` is claimed (two-sided t test at ``alpha``), and a true
    difference of 0 is shown within the margin (TOST at ``alpha``: each one-sided test needs power
    (1 + power) / 2). The larger of the two sample sizes; ``inf`` when the spread is unknown.

    ``se_images`` is the standard error the test images add whatever the number of pairs (a floor): the pairs
    must then bring the seeds' part down to what is left, sd² / n <= se_needed² − se_images², so the pairs' spread
    counts as sd / sqrt(1 − (se_images / se_needed)²); ``inf`` when the floor alone is too wide
    (:func:`replicates_can_decide` is False).
    """
    if not (math.isfinite(sd) and margin > 0):
        return math.inf
    floor = se_images if math.isfinite(se_images) else 0.0
    if not replicates_can_decide(floor, margin, alpha, power):
        return math.inf
    if sd == 0:
        return 2.0
    needs = []
    for level, alternative in ((power, "two-sided"), ((1 + power) / 2, "larger")):
        left = 1 - (floor / _se_needed(margin, alpha, level, alternative)) ** 2
        needs.append(_smallest_n(margin * math.sqrt(left) / sd, alpha, level, alternative))
    return float(max(*needs, 2))


def _se_needed(margin: float, alpha: float, power: float, alternative: str) -> float:
    """The standard error at which a test at ``alpha`` finds a margin-sized difference with ``power`` (normal)."""
    return margin / (stats.norm.ppf(1 - alpha / (2 if alternative == "two-sided" else 1)) + stats.norm.ppf(power))


def replicates_can_decide(se_images: float, margin: float, alpha: float = ALPHA, power: float = POWER) -> bool:
    """Whether more replicates alone can still decide a margin-sized comparison whose test images add ``se_images``.

    Replicates shrink the seeds' part of a comparison's standard error towards zero but leave the part of the
    test images all its trials share (:func:`image_components`). Deciding needs both a margin-sized difference
    claimed (two-sided test at ``alpha`` with probability ``power``) and no difference shown within the margin
    (TOST, each side with probability (1 + power) / 2): with infinitely many replicates the standard error is
    ``se_images`` and the interval's df is large, so this is True when ``se_images`` is below the normal-theory
    standard error both need. False means the test set is the floor: only more test images (or a wider margin)
    can decide it. NaN (not measured, a study without stored predictions) and 0 count as no floor: True.

    Args:
        se_images: the comparison's ``se_images`` (points), e.g. ``Comparison.se_images``.
        margin: the practical margin (points), > 0.
        alpha: the level the claim will be tested at (the report plans at ``Comparison.plan_alpha``).
        power: the probability of deciding to aim at.

    >>> replicates_can_decide(0.3, margin=2.0, alpha=0.05), replicates_can_decide(1.1, margin=2.0, alpha=0.001)
    (True, False)
    """
    if not margin > 0:
        raise ValueError(f"margin must be a positive number of accuracy points but got {margin}")
    if not (math.isfinite(se_images) and se_images > 0):
        return True
    need = min(_se_needed(margin, alpha, power, "two-sided"), _se_needed(margin, alpha, (1 + power) / 2, "larger"))
    return bool(se_images < need)


def images_to_decide(se_images: float, n_images: int, margin: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Test images at which the images' part falls below what unlimited replicates could decide against.

    The images' part of the variance falls as 1 / images (``σ²_i / I``): this is ``n_images`` scaled by
    (se_images / se_needed)², the least test set with which :func:`replicates_can_decide` is True (replicates
    still have to bring the seeds' part down on top of it).
    """
    need = min(_se_needed(margin, alpha, power, "two-sided"), _se_needed(margin, alpha, (1 + power) / 2, "larger"))
    return math.floor(n_images * (se_images / need) ** 2) + 1


class Plan(NamedTuple):
    """What would decide a comparison: more replicates on these test images, or a new test size and its replicates."""

    replicates: float  # test_size None: more replicates on these images; else replicates in all at the new size; inf: none would
    test_size: int | None = None  # None: keep the test images; else the --test-size to run instead
    beyond: bool = False  # the replicates exceed the study's most (max_replicates) and more test images would not help


def plan_to_decide(
    sd: float, n_pairs: int, pairs_per_replicate: int, se_images: float, n_images: int, margin: float, alpha: float,
    max_replicates: int | None = None, dataset_images: int | None = None, power: float = POWER,
) -> Plan:  # fmt: skip
    """Replicates and test images planned together to decide a margin-sized comparison with probability ``power``.

    Replicates on the same test images first (:func:`pairs_to_decide` with the images' part as a floor), when they can
    decide it within ``max_replicates`` replicates in all (None: no bound). Otherwise, where the images' part was measured
    (``se_images`` over ``n_images``), a larger test set: the size whose images' part is about half of the variance the
    question allows (the images' variance falls as 1 / images), at most ``dataset_images`` (None: unknown), and the
    replicates in all that the seeds' half then needs; the larger test set also wins where it needs fewer replicates in
    all than the same images need more. So the advice moves smoothly through the point where the images become the
    floor: near it, replicates alone would need very many, and half the variance to the images needs few.

    >>> plan_to_decide(2.0, 3, 3, 0.3, 2000, margin=2.0, alpha=0.05)
    Plan(replicates=4, test_size=None, beyond=False)
    >>> plan_to_decide(2.0, 3, 3, 1.1, 2000, margin=2.0, alpha=0.05, dataset_images=10_000)
    Plan(replicates=7, test_size=10000, beyond=False)
    """
    ppr = max(pairs_per_replicate, 1)
    measured = math.isfinite(se_images) and se_images > 0 and n_images > 0
    floor = se_images if measured else 0.0
    need = pairs_to_decide(sd, margin, alpha, power, se_images=floor)
    more = Plan(max(math.ceil((math.ceil(need) - n_pairs) / ppr), 1) if math.isfinite(need) else math.inf)
    within = math.isfinite(need) and (max_replicates is None or math.ceil(need / ppr) <= max_replicates)
    if not measured:
        return more
    allowed = min(_se_needed(margin, alpha, power, "two-sided"), _se_needed(margin, alpha, (1 + power) / 2, "larger"))
    half = math.ceil(n_images * 2 * (floor / allowed) ** 2)  # the test size whose images' variance is half of allowed²
    size = min(half, dataset_images) if dataset_images else half
    if size <= n_images:  # no larger test set helps: the images' part is small already, or the dataset has no more
        if within or math.isfinite(need):
            return more if within else more._replace(beyond=True)
        return Plan(math.inf, n_images)  # even these, all the dataset has, leave it open
    then = pairs_to_decide(sd, margin, alpha, power, se_images=floor * math.sqrt(n_images / size))
    images = Plan(math.ceil(then / ppr) if math.isfinite(then) else math.inf, size)
    # Replicates on these images where the study allows them and they cost no more trials than the new test set's plan.
    return more if within and more.replicates <= images.replicates else images


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


def share_intervals(
    cells: pd.DataFrame, factors: list[str], variances: np.ndarray, value: str = "acc", level: float = LEVEL, seed: int = 0,
    draws: int = N_BOOT,
) -> pd.DataFrame:  # fmt: skip
    """Intervals for the shares of :func:`variance_decomposition` (same grid, same terms) under seed noise.

    What they cover is the share a term takes on average over new draws of the seeds: (its sum of squares without noise +
    df × the mean seed variance) / (the same for the total). A parametric bootstrap: each term's effect shrunk by
    sqrt(1 − df σ̄² / SS) (the part of its sum of squares the noise is expected to make), the grid rebuilt from the shrunk
    effects, and ``draws`` new grids drawn around it with each row's seed variance (``variances``, aligned with ``cells``:
    the seed spread differs by learning rate); the percentile interval of each term's share. The raw grid already holds one
    draw of the noise, so the draws start from the shrunk one. Simulated grids with a known truth (the example's cell means,
    seed sd 0.75 to 4.4 points by learning rate, or 2 everywhere) were covered 91-97% of the time at 95%
    (tests/reports_tests/test_stats.py keeps a slice of that check).

    Returns:
        DataFrame[term, low, high] in percent, one row per term of ``variance_decomposition``.
    """
    factors = [f for f in factors if cells[f].nunique() > 1]
    levels = [sorted(cells[f].unique()) for f in factors]
    k = len(factors)
    ordered = cells.assign(_r=cells.groupby(factors).cumcount()).sort_values([*factors, "_r"])
    n = int(ordered["_r"].max()) + 1
    shape = (*[len(lv) for lv in levels], n)
    y = ordered[value].to_numpy(float).reshape(shape)
    sd = np.sqrt(np.asarray(variances, float)[cells.index.get_indexer(ordered.index)]).reshape(shape)
    labels = _share_labels(factors, n)
    mean_variance = float(np.mean(sd**2))

    effects, cell = _effects(y, k)
    sums = {S: n * float(np.sum(np.broadcast_to(e, cell.shape) ** 2)) for S, e in effects.items()}
    dfs = {S: math.prod(len(levels[i]) - 1 for i in S) for S in effects}
    shrink = {S: math.sqrt(max(0.0, 1 - dfs[S] * mean_variance / sums[S])) if sums[S] > 0 else 0.0 for S in effects}
    centre = cell.mean() + sum(shrink[S] * e for S, e in effects.items())
    rng = np.random.default_rng(seed)
    grids = np.broadcast_to(centre, shape) + rng.standard_normal((draws, *shape)) * sd
    drawn_effects, drawn_cells = _effects(grids, k)
    parts: dict[str, np.ndarray] = {}
    for S, e in drawn_effects.items():
        ss = n * (np.broadcast_to(e, drawn_cells.shape) ** 2).reshape(draws, -1).sum(1)
        parts[labels[S]] = parts.get(labels[S], 0) + ss
    if n > 1:
        parts[labels[None]] = ((grids - drawn_cells) ** 2).reshape(draws, -1).sum(1)
    total = sum(parts.values())
    tail = (1 - level) / 2
    rows = [(term, *(100 * np.quantile(ss / total, [tail, 1 - tail]))) for term, ss in parts.items()]
    return pd.DataFrame(rows, columns=["term", "low", "high"])


def _effects(y: np.ndarray, k: int) -> tuple[dict[tuple, np.ndarray], np.ndarray]:
    """The effects of every non-empty subset of the ``k`` factor axes of ``y`` (..., L1, ..., Lk, n) by inclusion–exclusion
    of the cell means' margins (broadcastable to the cells), and the cell means (..., L1, ..., Lk, 1)."""
    cell = y.mean(-1, keepdims=True)
    axes = [-k - 1 + i for i in range(k)]
    subsets = [S for size in range(k + 1) for S in combinations(range(k), size)]
    margins = {T: cell.mean(axis=tuple(axes[i] for i in range(k) if i not in T), keepdims=True) for T in subsets}
    effects = {S: sum((-1) ** (len(S) - len(T)) * margins[T] for T in subsets if set(T) <= set(S)) for S in subsets if S}
    return effects, cell


def _share_labels(factors: list[str], n: int) -> dict:
    """The term of ``variance_decomposition`` each factor subset (None: the residual) adds to."""
    labels: dict = {None: "replicates (seed-to-seed noise)"}
    for size in range(1, len(factors) + 1):
        for S in combinations(range(len(factors)), size):
            if n == 1 and size == len(factors):
                labels[S] = "highest interaction and noise"
            else:
                labels[S] = " × ".join(factors[i] for i in S) if size <= 2 else "higher interactions"
    return labels


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
