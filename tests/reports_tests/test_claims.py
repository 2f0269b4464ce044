"""Verdict sentences from settled comparisons: multiplicity, margin, equivalence, replicates advice (fast)."""

import math

import pytest
from scipy.stats import norm

from reports import claims, stats
from reports.claims import Comparison


def _c(diff, sd=2.0, n=9, kind="difference", **more) -> Comparison:
    """A comparison of ``n`` pairs with mean ``diff`` and spread ``sd``: settle computes its tests and interval."""
    fields = dict(question="activation", factor="activation", a="relu", b="tanh", lr=1e-3, epoch="10", n_pairs=n, diff=diff,
                  ci_low=math.nan, ci_high=math.nan, subset="lr=0.001", kind=kind, sd=sd, pairs_per_replicate=3)  # fmt: skip
    return Comparison(**(fields | more))


def test_a_difference_is_claimed_exactly_when_its_interval_excludes_zero():
    # Alone, t = 2.9 on 8 df (p 0.02) is a claim, with its interval at 95%.
    (alone,) = claims.settle([_c(1.9)])
    assert alone.outcome == "difference" and alone.alpha == pytest.approx(0.05)
    assert alone.verdict == "relu is ahead of tanh by 1.9 points [0.4, 3.4] (9 pairs, adjusted p 0.02)"
    # Among 10 comparisons of nothing (Benjamini–Hochberg: 0.02 × 10 = 0.2), it is not; its interval, now at
    # 1 − 0.05/10, covers zero.
    crowd = claims.settle([_c(1.9)] + [_c(0.1, sd=20.0, lr=0.01) for _ in range(9)])[0]
    assert crowd.p_adjusted == pytest.approx(min(1.0, 10 * crowd.p)) and not crowd.claims_difference and crowd.outcome == "open"
    assert crowd.ci_low < 0 < crowd.ci_high and crowd.alpha == pytest.approx(0.005)
    assert crowd.verdict.startswith("cannot tell yet: relu − tanh = +1.9 points [-0.7, 4.5] (9 pairs, adjusted p 0.21); about ")


def test_fwer_is_holm_with_intervals_that_agree():
    rows = claims.settle([_c(1.9), _c(8.0), _c(0.1, sd=20.0)], error_rate="fwer")
    assert [c.outcome for c in rows] == ["difference", "difference", "open"]
    for c in rows:
        assert (c.ci_low > 0 or c.ci_high < 0) == c.claims_difference


def test_a_shown_difference_inside_the_margin_is_negligible():
    # Selected by its difference (p below the equivalence's), its interval also lies inside the margin.
    (c,) = claims.settle([_c(1.5, sd=0.3)], margin=2.0)
    assert c.claims_difference and c.claims_equivalence and c.outcome == "equivalence"
    assert c.verdict == "negligible: relu is ahead of tanh by only 1.5 points [1.3, 1.7], within the 2-point margin (9 pairs)"
    # Selected by its equivalence: the interval is widened to include zero (Hsu et al. 1994), no difference is claimed.
    (e,) = claims.settle([_c(0.4, sd=0.2)], margin=2.0)
    assert e.claims_equivalence and not e.claims_difference and e.ci_low <= 0 <= e.ci_high


def test_within_the_margin_needs_the_interval_inside_it():
    (tost,) = claims.settle([_c(0.3, sd=1.5)])
    assert tost.verdict == "relu and tanh are within the 2-point margin of each other: relu − tanh = +0.3 points [-0.9, 1.5] (9 pairs)"
    # An interval that covers zero is not equivalence when it reaches past the margin: "cannot tell yet".
    (wide,) = claims.settle([_c(0.3, sd=4.0)])
    assert wide.verdict.startswith("cannot tell yet: relu − tanh = +0.3 points [-2.8, 3.4]") and not wide.claims


def test_replicates_advice_is_computed_at_the_margin_not_at_the_observed_difference():
    # Same spread, very different observed differences: the same advice.
    small, large = claims.settle([_c(0.2, sd=4.0), _c(2.9, sd=4.0)])
    advice = small.verdict.split("; ")[-1]
    assert advice == large.verdict.split("; ")[-1]
    # Planned at the level the next claim would be tested at (Benjamini–Hochberg: 1 × 0.05 / 2 comparisons).
    assert small.plan_alpha == pytest.approx(0.025)
    assert advice.startswith("about ") and advice.endswith("would decide a 2-point difference with 80% probability")


def test_a_pooled_row_whose_spread_is_lr_to_lr_says_replicates_will_not_help():
    lr_to_lr, noise = claims.settle(
        [
            _c(1.0, sd=12.0, kind="pooled", lr="pooled", detail={"lrs": 4, "between": 0.7}, n=36),
            _c(1.0, sd=12.0, kind="pooled", lr="pooled", detail={"lrs": 4, "between": 0.2}, n=36),
        ]
    )
    assert lr_to_lr.verdict == (
        "cannot tell yet: relu − tanh = +1.0 points [-3.7, 5.7] (36 pairs over 4 learning rates, adjusted p 0.62); "
        "more replicates will not help: most of its spread (70%) comes from learning rate to learning rate "
        "(the per-learning-rate verdicts answer it)"
    )
    assert noise.verdict.endswith("would decide a 2-point difference with 80% probability")


def test_a_pooled_row_claims_nothing_over_an_interaction():
    gate = _c(8.0, p=1e-6, kind="interaction", lr="interaction",
              detail={"f": 24.1, "df_between": 3, "df_within": 32, "means": [(1e-4, -3.4), (0.1, 14.4)]})  # fmt: skip
    pooled = _c(5.5, kind="pooled", lr="pooled", detail={"lrs": 2}, gate=gate)
    claims.settle([gate, pooled])
    assert (
        gate.verdict
        == "relu − tanh depends on the learning rate (F(3, 32) = 24.1, adjusted p < 0.001): -3.4 at 0.0001, +14.4 at 0.1 points"
    )
    assert pooled.p_adjusted < 0.05 and not pooled.claims_difference and not pooled.claims
    assert pooled.verdict.startswith("not pooled: the sign of the difference changes with the learning rate")
    assert "ahead" not in pooled.verdict and pooled.outcome == "open"


def test_a_pooled_row_claims_over_an_interaction_that_changes_the_size_only():
    gate = _c(8.0, p=1e-6, kind="interaction", lr="interaction",
              detail={"f": 24.1, "df_between": 3, "df_within": 32, "means": [(1e-4, 3.4), (0.1, 14.4)]})  # fmt: skip
    pooled = _c(8.9, sd=3.0, n=36, kind="pooled", lr="pooled", detail={"lrs": 2}, gate=gate)
    claims.settle([gate, pooled])
    assert pooled.claims_difference and pooled.outcome == "difference"
    assert pooled.verdict.startswith("averaged over the learning rates (its size changes with the learning rate, its sign does not)")


def test_too_few_pairs_give_no_test():
    e = stats.estimate([2.0, 7.5], margin=2.0)
    c = claims.from_estimate(e, question="activation", factor="activation", a="relu", b="tanh", lr=1e-3, epoch="10", subset="")
    claims.settle([c])
    assert math.isnan(c.p) and math.isnan(c.p_adjusted) and math.isnan(c.ci_low)
    assert c.verdict == "cannot tell yet: 2 pairs only (relu − tanh = +4.8 points); run more replicates (--repeats)"


def test_frame_has_the_documented_columns():
    frame = claims.frame(claims.settle([_c(3.2)]))
    assert list(frame.columns) == claims.COLUMNS
    assert claims.COLUMNS[:12] == [
        "question",
        "factor",
        "a",
        "b",
        "lr",
        "epoch",
        "n_pairs",
        "diff",
        "ci_low",
        "ci_high",
        "verdict",
        "subset",
    ]
    assert frame.loc[0, "p"] < 0.01 and frame.loc[0, "p_adjusted"] == pytest.approx(frame.loc[0, "p"]) and frame.loc[0, "margin"] == 2.0
    assert frame.loc[0, "outcome"] == "difference" and frame.loc[0, "error_rate"] == "fdr"


def test_advice_is_more_test_images_when_they_are_the_floor():
    # ±1.1 points from the 2,000 shared test images: a 2-point question at the report's level needs under ±0.5.
    floor = _c(0.8, sd=1.2, se_images=1.1, n_images=2000)
    claims.settle([floor, *(_c(5.0) for _ in range(9))], dataset_images=10_000)
    assert claims.advises_images(floor) and not floor.claims
    plan = stats.plan_to_decide(floor.sd, 9, 3, 1.1, 2000, 2.0, floor.plan_alpha, dataset_images=10_000)
    assert plan.test_size == 10_000 and math.isfinite(plan.replicates)  # half the allowed variance would need more: all of it
    assert floor.verdict.endswith(
        "more test images would (±1.1 of its ±1.2-point standard error comes from which 2,000 test images were drawn, and every "
        f"replicate shares them): a study with --test-size 10,000 (up to the 10,000 the dataset has), where the images take about "
        f"half of the allowed variance, and {plan.replicates} replicates in all would decide a 2-point difference with 80% probability"
    )
    # The same comparison measured on 10,000 images with the same floor: nothing the dataset has would do.
    full = _c(0.8, sd=1.2, se_images=1.1, n_images=10_000)
    claims.settle([full], dataset_images=10_000)
    assert "even the 10,000 the dataset has would leave it open" in full.verdict
    # An image folder of unknown size: the plan's test size, as far as the folder has images.
    folder = _c(0.8, sd=1.2, se_images=1.1, n_images=2000)
    claims.settle([folder])
    assert "(up to as many as the image folder has)" in folder.verdict


def test_advice_counts_replicates_over_a_low_image_floor():
    seeds = _c(0.8, sd=6.0, se_images=0.1, n_images=2000)
    claims.settle([seeds])
    assert not claims.advises_images(seeds) and "more replicates would decide a 2-point difference" in seeds.verdict
    # The floor costs replicates: the same comparison without one needs fewer.
    assert stats.pairs_to_decide(6.0, 2.0, 0.05, se_images=0.1) > stats.pairs_to_decide(6.0, 2.0, 0.05)
    assert seeds.image_share == pytest.approx(0.01 / (0.01 + 4.0))
    unmeasured = _c(0.8)  # a study without stored predictions: no floor known
    claims.settle([unmeasured], max_replicates=5)
    assert not claims.advises_images(unmeasured) and math.isnan(unmeasured.image_share)


def test_advice_moves_smoothly_through_the_test_set_floor():
    # Replicates alone near the floor need hundreds (the seeds' share of the allowed variance goes to 0 there); the plan
    # puts the images at half of it instead, so the replicates in all stay bounded as the images' part grows.
    alpha, floor_at = 0.01, 2.0 / (norm.ppf(1 - 0.01) + norm.ppf(0.9))
    assert stats.pairs_to_decide(3.0, 2.0, alpha, se_images=0.97 * floor_at) > 100
    plans = [stats.plan_to_decide(3.0, 3, 3, f * floor_at, 2000, 2.0, alpha, max_replicates=5, dataset_images=10_000)
             for f in (0.5, 0.8, 0.9, 0.97, 0.99, 1.01, 1.1, 1.3)]  # fmt: skip
    assert all(p.replicates <= 30 for p in plans)
    assert [p.test_size is not None for p in plans] == [False, True, True, True, True, True, True, True]
    sizes = [p.test_size for p in plans[1:]]
    assert sizes == sorted(sizes) and all(s <= 10_000 for s in sizes)
    # A study that may run 5 replicates: the first is beyond them, and no larger test set helps (its images are half already).
    assert plans[0].beyond and plans[0].test_size is None
    # Without a bound on replicates, few enough replicates on these images are still the advice.
    assert stats.plan_to_decide(3.0, 3, 3, 0.5 * floor_at, 2000, 2.0, alpha).test_size is None


def test_the_header_counts_the_rows_whose_advice_is_more_test_images():
    from reports import build

    floor = _c(0.8, sd=1.2, se_images=1.1, n_images=2000)
    # A pooled row over a floor whose spread is mostly lr to lr: its advice is the per-lr rows, not more test images.
    pooled = _c(0.8, kind="pooled", sd=1.2, se_images=1.1, n_images=2000,
                detail={"between": 0.8, "lrs": 3})  # fmt: skip
    seeds = _c(0.8, sd=6.0, se_images=0.1, n_images=2000)
    rows = claims.settle([floor, pooled, seeds], dataset_images=10_000)
    family = build.Analysis(2.0, 10, rows, None).family
    assert family.floor == sum("more test images would" in c.verdict for c in rows) == 1
