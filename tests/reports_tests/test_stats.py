"""Each statistical rule of the report on numbers whose answer is known (fast)."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from reports import stats


def test_estimate_is_a_t_interval_with_its_t_test():
    e = stats.estimate([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.303: 2 +- 4.303 * 1 / sqrt(3)
    assert (e.n, e.mean, e.sd, e.df) == (3, 2.0, 1.0, 2)
    assert e.low == pytest.approx(2 - 2.4843, abs=1e-3) and e.high == pytest.approx(2 + 2.4843, abs=1e-3)
    assert e.p == pytest.approx(scipy_stats.ttest_1samp([1.0, 2.0, 3.0], 0.0).pvalue)
    assert math.isnan(stats.estimate([5.0]).low) and stats.estimate([]).n == 0


def test_tost_is_the_larger_of_two_one_sided_t_tests():
    values = np.array([0.3, -0.2, 0.5, 0.1, 0.0, 0.4])
    e = stats.estimate(values, margin=2.0)
    upper = scipy_stats.ttest_1samp(values, 2.0, alternative="less").pvalue
    lower = scipy_stats.ttest_1samp(values, -2.0, alternative="greater").pvalue
    assert e.p_equiv == pytest.approx(max(upper, lower))
    assert e.p_equiv < 0.001  # well inside ±2
    # A mean of 1.9 with a wide spread: equivalence at 2 points cannot be shown.
    assert stats.estimate([1.9 + d for d in (-3, 3, -2, 2)], margin=2.0).p_equiv > 0.3


def test_estimate_of_equal_values_is_decided_by_the_value():
    at_chance = stats.estimate([0.0, 0.0, 0.0], margin=2.0)
    assert (at_chance.p, at_chance.p_equiv, at_chance.low, at_chance.high) == (1.0, 0.0, 0.0, 0.0)
    assert stats.estimate([3.0, 3.0, 3.0], margin=2.0)[6:8] == (0.0, 1.0)


def test_interaction_test_is_welchs_one_way_test_of_the_differences_by_lr():
    from statsmodels.stats.oneway import anova_oneway

    rng = np.random.default_rng(0)
    same = [np.roll(np.linspace(-1.0, 3.0, 9), k) for k in range(4)]  # the same differences at every lr, in another order
    flips = [rng.normal(m, 1.0, 9) for m in (-4.0, -1.0, 1.0, 6.0)]
    f = stats.interaction_test(flips)
    welch = anova_oneway(flips, use_var="unequal")
    assert f.p == pytest.approx(welch.pvalue) and (f.df_between, f.df_within) == (3, pytest.approx(welch.df[1]))
    assert f.p < 1e-6 and stats.interaction_test(same).p == pytest.approx(1.0)
    # One difference per learning rate: no spread within them, nothing to test against.
    assert math.isnan(stats.interaction_test([[1.0], [2.0], [3.0]]).p)


def test_holm_grouped_is_holm_with_one_hypothesis_per_group():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.2, 30)
    assert stats.holm_grouped(p, np.arange(30)) == pytest.approx(multipletests(p, method="holm")[1])
    assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_holm_grouped_counts_groups_not_hypotheses():
    # Two comparisons, each with a difference and an equivalence test: the divisor starts at 2 groups, not 4 hypotheses.
    adjusted = stats.holm_grouped([0.01, 0.5, 0.02, float("nan")], [0, 0, 1, 1])
    # 0.01 x 2 groups; 0.02 x 2 (the first group still holds its 0.5); 0.5 x 1. Holm over 3 hypotheses gives 0.03 first.
    assert adjusted[:3] == pytest.approx([0.02, 0.5, 0.04]) and math.isnan(adjusted[3])
    assert multipletests([0.01, 0.5, 0.02], method="holm")[1][0] == pytest.approx(0.03)


def test_holm_grouped_keeps_the_family_wise_rate_when_one_hypothesis_per_group_is_true():
    # 20 comparisons with no difference: their "no difference" nulls are true, their equivalence nulls false.
    rng = np.random.default_rng(2)
    any_false = 0
    for _ in range(2000):
        p_diff = rng.uniform(size=20)
        p_equiv = rng.uniform(0, 1e-4, size=20)  # equivalence shown everywhere (correctly)
        adjusted = stats.holm_grouped(np.column_stack([p_diff, p_equiv]).ravel(), np.repeat(np.arange(20), 2))
        any_false += bool((adjusted[0::2] < 0.05).any())
    assert any_false / 2000 <= 0.06


def test_pairs_to_decide_plans_at_the_margin():
    # A 2-point margin with a 2-point spread (effect size 1), two-sided at 5%: 10 pairs give 80% power
    # (the smallest n with noncentral-t power >= 0.8); the equivalence side needs 90% one-sided power: 11.
    assert stats._smallest_n(1.0, 0.05, 0.8, "two-sided") == 10
    assert stats.pairs_to_decide(2.0, 2.0, 0.05) == 11
    # Effect size 0.1: the equivalence side rules, (z(0.95) + z(0.9))^2 / 0.1^2 = 856.5 by the normal approximation.
    assert 857 <= stats.pairs_to_decide(20.0, 2.0, 0.05) <= 860
    assert stats.pairs_to_decide(2.0, 2.0, 0.001) > stats.pairs_to_decide(2.0, 2.0, 0.05)
    assert stats.pairs_to_decide(math.nan, 2.0, 0.05) == math.inf


def _grid(effects, replicates=2, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for a, lo, lr, _ in itertools.product(range(2), range(3), range(4), range(replicates)):
        rows.append({"activation": f"a{a}", "loss": f"l{lo}", "lr": 10.0 ** -(lr + 1), "acc": effects(a, lo, lr) + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_variance_decomposition_of_a_pure_main_effect():
    # Only the loss matters: 100% loss.
    table = stats.variance_decomposition(_grid(lambda a, lo, lr: 10.0 * lo), ["activation", "loss", "lr"]).set_index("term")
    assert table.loc["loss", "percent"] == pytest.approx(100.0)
    assert table["percent"].drop("loss").abs().max() < 1e-9


def test_variance_decomposition_adds_up_and_matches_sums_of_squares():
    cells = _grid(lambda a, lo, lr: 5.0 * lr + 3.0 * lo + (2.0 if a == 1 and lr == 3 else 0.0), noise=1.0)
    table = stats.variance_decomposition(cells, ["activation", "loss", "lr"]).set_index("term")
    assert table["percent"].sum() == pytest.approx(100.0)
    # The lr main effect by hand: replicates x activations x losses per lr, squared deviations of the lr means.
    lr_means = cells.groupby("lr")["acc"].mean()
    by_hand = (len(cells) / 4) * ((lr_means - cells["acc"].mean()) ** 2).sum()
    assert table.loc["lr", "sum_sq"] == pytest.approx(by_hand)
    assert table.loc["replicates (seed-to-seed noise)", "df"] == 24  # 48 rows - 24 grid points
    assert table.loc["activation × lr", "percent"] > table.loc["activation × loss", "percent"]


def test_variance_decomposition_refuses_an_incomplete_grid():
    with pytest.raises(ValueError, match="complete"):
        stats.variance_decomposition(_grid(lambda a, lo, lr: 0.0).iloc[1:], ["activation", "loss", "lr"])


def test_peak_location_and_its_bootstrap_range():
    rng = np.random.default_rng(3)
    curve = np.array([40.0, 50.0, 55.0, 53.0, 50.0])  # a clear peak at epoch 3
    curves = curve + rng.normal(0, 0.5, (20, 5))
    peak = stats.peak_location(curves, seed=0)
    assert (peak.epoch, peak.low, peak.high, peak.at_end) == (3, 3, 3, 0.0)
    # A flat top between epochs 3 and 4: the range says so.
    flat = np.array([40.0, 50.0, 55.0, 55.0, 50.0]) + rng.normal(0, 1.0, (10, 5))
    wide = stats.peak_location(flat, seed=0)
    assert wide.low == 3 and wide.high == 4
    assert stats.peak_location(flat, seed=0) == wide  # seeded


def _image_table(rng, pairs: int, images: int, image_sd: float, own_sd: float, seed_sd: float = 0.0) -> np.ndarray:
    """A (pairs, images) table of per-image differences: a shared effect per image, one per pair, and each cell's own."""
    shared = rng.normal(0, image_sd, images)[None, :]
    return 2.0 + shared + rng.normal(0, seed_sd, (pairs, 1)) + rng.normal(0, own_sd, (pairs, images))


def test_image_components_are_the_two_way_anova_mean_squares():
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    table = _image_table(np.random.default_rng(0), 4, 30, image_sd=2.0, own_sd=1.0, seed_sd=0.5)
    long = pd.DataFrame({"y": table.ravel(), "pair": np.repeat(np.arange(4), 30), "image": np.tile(np.arange(30), 4)})
    anova = anova_lm(ols("y ~ C(pair) + C(image)", long).fit(), typ=1)["mean_sq"]
    c = stats.image_components(table)
    assert (c.ms_pairs, c.ms_images, c.ms_residual) == pytest.approx((anova["C(pair)"], anova["C(image)"], anova["Residual"]))
    assert c.var_image == pytest.approx((anova["C(image)"] - anova["Residual"]) / 4)


def test_estimate_without_an_image_effect_is_the_seed_only_t_interval():
    values = np.array([1.0, 2.5, 3.0, 0.5])
    table = np.repeat(values[:, None], 50, axis=1)  # every image tells the same: nothing shared by the images
    both, seeds = stats.estimate(values, 2.0, images=table), stats.estimate(values, 2.0)
    assert both.se_images == 0.0 and both.n_images == 50 and math.isnan(seeds.se_images) and seeds.n_images == 0
    assert (both.low, both.high, both.p, both.p_equiv, both.df) == pytest.approx((seeds.low, seeds.high, seeds.p, seeds.p_equiv, 3))


def test_estimate_with_shared_images_adds_their_variance_with_satterthwaites_df():
    table = _image_table(np.random.default_rng(1), 5, 400, image_sd=30.0, own_sd=20.0, seed_sd=1.0)
    values = table.mean(axis=1)
    e, seeds = stats.estimate(values, 2.0, images=table), stats.estimate(values, 2.0)
    c = stats.image_components(table)
    assert e.se_seeds == pytest.approx(seeds.se_seeds) and e.se_images == pytest.approx(math.sqrt(c.var_image / 400))
    # About 30 / sqrt(400) = 1.5 points from the images, which five pairs cannot average away.
    assert 1.2 < e.se_images < 1.8 and e.se_images > e.se_seeds
    se = math.hypot(e.se_seeds, e.se_images)
    assert e.high - e.mean == pytest.approx(scipy_stats.t.ppf(0.975, e.df) * se)
    assert 4 < e.df < 400 and e.high - e.low > seeds.high - seeds.low
    assert e.p == pytest.approx(2 * scipy_stats.t.sf(abs(e.mean) / se, e.df)) and e.p > seeds.p
    with pytest.raises(ValueError, match=r"images must hold one row per value \(4\) but has shape \(5, 400\)"):
        stats.estimate(values[:4], images=table)


def test_replicates_cannot_decide_below_the_test_set_floor():
    # At the 5% level a 2-point question needs a standard error near 0.68 points at most.
    assert stats.replicates_can_decide(0.6, 2.0, 0.05) and not stats.replicates_can_decide(0.7, 2.0, 0.05)
    assert stats.replicates_can_decide(math.nan, 2.0, 0.05) and stats.replicates_can_decide(0.0, 2.0, 0.001)
    assert stats.pairs_to_decide(1.0, 2.0, 0.05, se_images=0.7) == math.inf
    # A floor below the limit still costs pairs: the seeds must bring their part down to what the images leave.
    assert stats.pairs_to_decide(1.0, 2.0, 0.05, se_images=0.5) > stats.pairs_to_decide(1.0, 2.0, 0.05) >= 2
    n = stats.images_to_decide(0.7, 2000, 2.0, 0.05)
    assert not stats.replicates_can_decide(0.7 * math.sqrt(2000 / (n - 1)), 2.0, 0.05)
    assert stats.replicates_can_decide(0.7 * math.sqrt(2000 / n), 2.0, 0.05)
    with pytest.raises(ValueError, match="margin must be a positive number of accuracy points but got 0"):
        stats.replicates_can_decide(0.1, 0)


def test_share_intervals_cover_the_expected_shares_of_a_known_grid():
    # A grid like the example's (3 activations x 3 losses x 4 lrs, one replicate): the lr and the loss large, the activation
    # and the interactions small, seeds spreading 0.75 to 4.4 points by lr. The truth is each term's expected share over
    # new seeds: (its noise-free sum of squares + df x the mean seed variance) / the same for the total.
    rng = np.random.default_rng(7)
    sd_by_lr = {1e-4: 0.75, 1e-3: 1.7, 1e-2: 1.7, 1e-1: 4.4}
    acts, losses, lrs = ["relu", "tanh", "leaky_relu"], ["ce", "bce", "mse"], list(sd_by_lr)
    shift = {"relu": 0.0, "tanh": -1.0, "leaky_relu": 0.5}
    loss_shift = {"ce": 0.0, "bce": -2.0, "mse": -14.0}
    lr_shift = {1e-4: -8.0, 1e-3: 0.0, 1e-2: -2.0, 1e-1: -20.0}
    interaction = {("tanh", 1e-1): 3.0}
    means = pd.DataFrame(
        [{"activation": a, "loss": lo, "lr": lr, "acc": 60 + shift[a] + loss_shift[lo] + lr_shift[lr] + interaction.get((a, lr), 0.0)}
         for a in acts for lo in losses for lr in lrs]
    )  # fmt: skip
    variances = means["lr"].map(sd_by_lr).to_numpy() ** 2
    factors = ["activation", "loss", "lr"]
    noise_free = stats.variance_decomposition(means, factors).set_index("term")
    grand = noise_free["sum_sq"].sum() + (len(means) - 1) * variances.mean()
    truth = 100 * (noise_free["sum_sq"] + noise_free["df"] * variances.mean()) / grand
    covered, grids = pd.Series(0, index=truth.index), 60
    for _ in range(grids):
        cells = means.assign(acc=means["acc"] + rng.normal(0, np.sqrt(variances)))
        got = stats.share_intervals(cells, factors, variances, draws=400, seed=int(rng.integers(1 << 31)))
        got = got.set_index("term").reindex(truth.index)
        covered += (got["low"] <= truth) & (truth <= got["high"])
    # 91-97% over 400 grids like the example's; with the seed variance taken 4 times too small, every term falls to 58-80% here.
    assert (covered / grids).min() >= 0.83, (covered / grids).to_dict()
    assert (covered / grids).mean() >= 0.9, (covered / grids).to_dict()


def test_share_intervals_hold_their_point_estimates_and_the_decomposition_terms():
    cells = _grid(lambda a, lo, lr: 5.0 * lr + 3.0 * lo, noise=1.0)
    table = stats.variance_decomposition(cells, ["activation", "loss", "lr"])
    got = stats.share_intervals(cells, ["activation", "loss", "lr"], np.ones(len(cells)))
    merged = table.merge(got, on="term", validate="one_to_one")
    assert len(merged) == len(table) and (merged["low"] <= merged["high"]).all()
    assert merged.set_index("term").loc["lr"].pipe(lambda r: r["low"] <= r["percent"] <= r["high"])
