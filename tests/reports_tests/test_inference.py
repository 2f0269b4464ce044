"""The estimate-and-decide core (reports.inference): moderation, one error rate, intervals that agree with outcomes (fast)."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from reports import inference


def test_fit_prior_recovers_a_known_prior_from_many_variances():
    rng = np.random.default_rng(0)
    s0_sq, d0, d = 4.0, 8.0, 3
    true = s0_sq * d0 / rng.chisquare(d0, 4000)  # scaled inverse chi-square: the prior of limma's model
    sample = true * rng.chisquare(d, 4000) / d
    prior = inference.fit_prior(sample, np.full(4000, d))
    assert prior.s0_sq == pytest.approx(s0_sq, rel=0.1) and prior.d0 == pytest.approx(d0, rel=0.3)


def test_fit_prior_needs_three_variances_and_respects_its_cap():
    assert inference.fit_prior([1.0, 2.0], [4, 4]) == inference.NO_PRIOR
    # Variances that spread no more than sampling alone: d0 is infinite, capped.
    assert inference.fit_prior([1.0, 1.0, 1.0], [4, 4, 4], max_d0=4).d0 == 4


def test_squeeze_is_the_weighted_mean_with_the_prior_and_adds_its_df():
    v, df = inference.squeeze(9.0, 2, inference.Prior(1.0, 6.0))
    assert v == pytest.approx((6 * 1 + 2 * 9) / 8) and df == 8


def test_moderate_leaves_a_stratum_of_none_alone():
    v, d, priors = inference.moderate([1.0, 2.0, 3.0, 50.0], [2, 2, 2, 2], ["a", "a", "a", None])
    assert v[3] == 50.0 and d[3] == 2 and d[0] > 2 and set(priors) == {"a"}


@pytest.mark.parametrize("error_rate", ["fdr", "fwer"])
def test_every_interval_agrees_with_its_outcome(error_rate):
    rng = np.random.default_rng(1)
    tests = [inference.Test(float(rng.normal(0, 3)), float(rng.uniform(0.3, 2)), float(rng.integers(2, 30)), 2.0) for _ in range(200)]
    for d in inference.decide(tests, error_rate):
        excludes_zero = d.low > 0 or d.high < 0
        inside = d.low > -2.0 and d.high < 2.0
        assert excludes_zero == d.shows_difference and inside == d.shows_equivalence
        assert d.outcome == ("equivalence" if inside else "difference" if excludes_zero else "open")
        # The adjusted p is below the error rate exactly when the claim is made.
        assert (d.p_adjusted <= 0.05) == d.shows_difference
        assert d.shows_equivalence <= (d.p_equiv_adjusted <= 0.05)


def test_fdr_selects_what_benjamini_hochberg_selects_with_one_hypothesis_each():
    rng = np.random.default_rng(2)
    tests = [inference.Test(float(rng.normal(0, 3)), 1.0, 10.0, None) for _ in range(50)]
    decisions = inference.decide(tests, "fdr")
    p = np.array([d.p for d in decisions])
    rejected, adjusted, *_ = multipletests(p, alpha=0.05, method="fdr_bh")
    assert [d.outcome == "difference" for d in decisions] == rejected.tolist()
    assert np.allclose([d.p_adjusted for d in decisions], adjusted)


def test_fwer_selects_what_holm_selects_with_one_hypothesis_each():
    rng = np.random.default_rng(3)
    tests = [inference.Test(float(rng.normal(0, 3)), 1.0, 10.0, None) for _ in range(50)]
    decisions = inference.decide(tests, "fwer")
    rejected, adjusted, *_ = multipletests([d.p for d in decisions], alpha=0.05, method="holm")
    assert [d.outcome == "difference" for d in decisions] == rejected.tolist()
    assert np.allclose([d.p_adjusted for d in decisions], adjusted)


def test_multiplicity_widens_the_interval_and_multiplies_the_p():
    one, five = (
        inference.decide([inference.Test(3.0, 1.0, 10, 2.0)])[0],
        inference.decide([inference.Test(3.0, 1.0, 10, 2.0, multiplicity=5)])[0],
    )
    assert five.p == pytest.approx(min(1.0, 5 * one.p)) and five.high - five.low > one.high - one.low
    assert five.alpha == pytest.approx(one.alpha / 5)


def test_an_unknown_error_rate_names_the_valid_ones():
    with pytest.raises(ValueError, match="fdr, fwer"):
        inference.decide([inference.Test(1.0, 1.0, 5, 2.0)], "bonferroni")


def _simulated_family(rng, n_pairs: int = 4, m: int = 30):
    """m paired comparisons of ``n_pairs`` pairs in 3 strata of spread (sd 1, 2, 4), a third with true difference 0,
    a third 1 point (inside the 2-point margin) and a third 4 points."""
    truth = np.tile([0.0, 1.0, 4.0], m // 3)
    sds = np.repeat([1.0, 2.0, 4.0], m // 3)
    rng.shuffle(sds)
    tests, strata = [], []
    variances = []
    for mu, sd in zip(truth, sds, strict=True):
        x = rng.normal(mu, sd, n_pairs)
        variances.append(float(x.var(ddof=1)))
        tests.append(float(x.mean()))
        strata.append(sd)
    post, dfs, _ = inference.moderate(variances, [n_pairs - 1] * m, strata)
    return truth, [inference.Test(mean, math.sqrt(v / n_pairs), d, 2.0) for mean, v, d in zip(tests, post, dfs, strict=True)]


@pytest.mark.parametrize("error_rate", ["fdr", "fwer"])
def test_simulated_error_rate_and_coverage_hold(error_rate):
    # 300 simulated families of 30 comparisons with known truth (9,000 comparisons): the false-claim rate stays at or
    # below 5% (false discovery proportion for fdr, any false claim for fwer) and the claimed intervals cover.
    rng = np.random.default_rng(24)
    fdp, any_false, miss, claimed = [], [], 0, 0
    for _ in range(300):
        truth, tests = _simulated_family(rng)
        decisions = inference.decide(tests, error_rate)
        false = sum(
            (d.shows_difference and mu == 0)
            or (d.shows_equivalence and abs(mu) >= 2)
            or (d.shows_difference and d.low * mu < 0 and d.high * mu < 0)
            for mu, d in zip(truth, decisions, strict=True)
        )  # fmt: skip
        r = sum(d.outcome != "open" for d in decisions)
        fdp.append(false / max(r, 1))
        any_false.append(false > 0)
        for mu, d in zip(truth, decisions, strict=True):
            if d.outcome != "open":
                claimed += 1
                miss += not (d.low <= mu <= d.high)
    if error_rate == "fdr":
        assert np.mean(fdp) <= 0.05 + 2 * np.std(fdp) / math.sqrt(len(fdp))
        assert miss / claimed <= 0.05 + 0.01  # Benjamini–Yekutieli: false coverage among the selected
    else:
        assert np.mean(any_false) <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / len(any_false))
    assert claimed > 0.1 * 300 * 30  # and it has power: the 4-point differences and many equivalences are claimed


def test_moderation_keeps_the_t_level_on_few_pairs():
    # Null comparisons of 3 pairs in one stratum of equal spread: the moderated t test rejects at its nominal level.
    rng = np.random.default_rng(5)
    rejections, total = 0, 0
    for _ in range(400):
        x = rng.normal(0, 2.0, (12, 3))
        post, dfs, _ = inference.moderate(x.var(axis=1, ddof=1), [2] * 12, ["s"] * 12)
        t = x.mean(axis=1) / np.sqrt(np.array(post) / 3)
        rejections += int((2 * stats.t.sf(np.abs(t), dfs) < 0.05).sum())
        total += 12
    assert rejections / total <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / total)
