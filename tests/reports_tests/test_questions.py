"""Each question's rule on simulated studies whose answer is known: interaction before pooling, learning-rate regimes,
epochs (drop, plateau, still rising, overfitting), importance (fast)."""

import re

import numpy as np
import pytest
from reports_tests.simulate import relu_ahead, simulate, tanh_flips

from reports import claims, epochs, importance, learning_rate, options
from reports.blocks import write
from reports.paired import build_design


def _settled(part, margin=2.0):
    claims.settle(part.comparisons(), margin)
    return part


def test_an_interaction_is_answered_per_learning_rate_and_not_pooled(tmp_path):
    design = build_design(simulate(np.random.default_rng(0), tanh_flips))
    result = _settled(options.compute(design, "activation"))
    flip = next(p for p in result.pairs if {p.interaction.a, p.interaction.b} == {"relu", "tanh"})
    assert flip.depends_on_lr and not flip.pooled.claims
    assert flip.pooled.verdict.startswith("not pooled: the sign of the difference changes with the learning rate")
    # relu and leaky_relu do not interact with the learning rate: pooled, and equal within the margin.
    same = next(p for p in result.pairs if {p.interaction.a, p.interaction.b} == {"leaky_relu", "relu"})
    assert not same.depends_on_lr and same.pooled.claims_equivalence
    markdown = write("t", [], [options.section(result, "activation?", 10.0)], tmp_path)
    assert "**relu vs tanh: it depends on the learning rate.**" in markdown
    for c in flip.per_lr:
        assert f"lr {c.lr:g}: {c.verdict}" in markdown
    # tanh − relu per lr points opposite ways at 1e-4 and 1e-2; the 8-point lead at 1e-2 is claimed.
    tanh_minus_relu = {c.lr: c.diff if c.a == "tanh" else -c.diff for c in flip.per_lr}
    assert tanh_minus_relu[1e-4] < 0 < tanh_minus_relu[1e-2]
    assert next(c for c in flip.per_lr if c.lr == 1e-2).verdict.startswith("tanh is ahead of relu by ")


def test_learning_rate_regimes():
    truth = {1e-4: -8.0, 1e-3: 0.0, 1e-2: -0.3}  # too low, best, good

    def effect(activation, loss, lr):
        return -40.0 if lr == 1e-1 else truth[lr]  # 0.1: at chance

    frames = simulate(np.random.default_rng(1), effect, lrs=(1e-4, 1e-3, 1e-2, 1e-1), trial_sd=0.3, epoch_sd=0.2)
    result = _settled(learning_rate.compute(build_design(frames)))
    for loss in result.losses:
        assert loss.best == 1e-3
        regimes = {lr: loss.regime(lr, frames.chance) for lr in loss.versus_best}
        assert regimes == {1e-4: "too low", 1e-2: "good", 1e-1: "too high (at chance)"}
    # Every pair of learning rates is tested (6 per loss), not only those with the best.
    assert all(len(loss.rows) == 6 for loss in result.losses)


def _epochs(curve, seed=2, test_loss=None, margin=2.0):
    frames = simulate(np.random.default_rng(seed), curve=lambda e, lr: curve[e - 1], epochs=len(curve), test_loss=test_loss)
    return _settled(epochs.compute(build_design(frames), margin), margin)


def test_a_drop_after_the_peak_is_claimed_with_where_the_peak_lies():
    result = _epochs([-6.0, -2.0, 0.0, -1.0, -2.0, -3.0])
    for r in result.per_lr:
        assert (r.peak.epoch, r.peak.low, r.peak.high) == (3, 3, 3)
        assert r.row.kind == "drop" and r.row.verdict.startswith("more epochs hurt: epoch 6 is 3.")
        assert r.row.ci_low < -3.0 + 0.6 and r.row.ci_high > -3.0 - 0.6


def test_a_rising_curve_cannot_tell_within_its_epochs():
    result = _epochs([-5.0, -4.0, -3.0, -2.0, -1.0, 0.0])  # a point per epoch to the end
    for r in result.per_lr:
        assert r.row.kind == "gain" and r.row.b == "epoch 4"  # the last third of 6 epochs
        assert "cannot tell within 6 epochs where it stops improving (try --epochs 12)" in r.row.verdict


def test_a_plateau_is_an_equivalence_and_a_noisy_gain_is_not():
    flat = _epochs([-5.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert all(r.row.claims_equivalence and "a plateau" in r.row.verdict for r in flat.per_lr)
    # The same curve with a margin of 0.1 points: nothing can be shown inside it, "cannot tell".
    strict = _epochs([-5.0, 0.0, 0.0, 0.0, 0.0, 0.0], margin=0.1)
    assert not any("plateau" in r.row.verdict for r in strict.per_lr)
    assert all(r.row.verdict.startswith(("cannot tell", "a negligible", "still rising")) for r in strict.per_lr)


def test_overfitting_is_claimed_only_when_the_rise_of_the_test_loss_is_shown():
    curve = [-6.0, -2.0, 0.0, 0.0, 0.0, 0.0]
    rising = _epochs(curve, test_loss=lambda e: 1.0 if e <= 3 else 1.0 + 0.1 * (e - 3))
    rows = [c for r in rising.per_lr for c in r.loss_rows]
    assert rows and all(c.verdict.startswith("overfitting: ") and c.claims_difference for c in rows)
    assert all("while the training loss fell" in c.verdict for c in rows)
    wiggle = _epochs(curve, test_loss=lambda e: 1.0 + 0.005 * (e == 4))  # noise 0.02 hides a 0.005 bump
    rows = [c for r in wiggle.per_lr for c in r.loss_rows]
    assert all(not c.claims and c.verdict.startswith("no overfitting shown: ") for c in rows)


def test_importance_of_a_complete_grid_is_the_exact_decomposition():
    effect = {"cross_entropy": 10.0, "mse": -10.0}
    frames = simulate(np.random.default_rng(3), lambda a, lo, lr: effect[lo])
    design = build_design(frames)
    shares = importance.compute(frames.trials, frames.settings.search_space, design.trials, design.compare_epoch)
    table = shares.table.set_index("term")
    assert shares.method == "decomposition" and table["percent"].sum() == pytest.approx(100.0)
    # The seed effect (sd 3 against a 20-point loss effect) is the rest, under "replicates".
    assert table.loc["loss", "percent"] > 60 and table.loc["activation", "percent"] < 2
    # A replicate with a point missing (a study cut short): the decomposition of the whole replicates.
    missing = design.trials.index[0]
    cut = design.trials.drop(index=missing)
    whole = cut[cut["replicate"] != design.trials.loc[missing, "replicate"]]
    partial = importance.compute(frames.trials, frames.settings.search_space, cut, 6)
    assert partial.method == "decomposition" and partial.n == len(whole) and len(whole) > 0
    # No whole replicate: fANOVA instead, still finding the loss.
    broken = design.trials.drop(index=design.trials.groupby("replicate").head(1).index)
    partial = importance.compute(frames.trials.iloc[1:], frames.settings.search_space, broken, 6)
    assert partial.method == "fanova" and partial.table.set_index("term").loc["loss", "percent"] > 50


def test_a_new_users_small_study_prints_no_accuracy_interval_outside_0_100(tmp_path):
    # 2 activations x 3 losses x 3 lrs, one replicate, losses far apart: the study that printed 27.23% [-3.37, 57.84].
    from reports.build import build_report

    effect = {"cross_entropy": 20.0, "mse": -38.0, "bce_with_logits": 15.0}
    frames = simulate(np.random.default_rng(4), lambda a, lo, lr: effect[lo], activations=("relu", "tanh"), losses=tuple(effect),
                      replicates=1, epochs=3)  # fmt: skip
    markdown = build_report(frames, tmp_path, samples=False).read_text()
    intervals = re.findall(r"(-?\d+\.\d+)% \[(-?\d+\.\d+), (-?\d+\.\d+)\]", markdown)
    for _, low, high in intervals:
        assert 0 <= float(low) <= float(high) <= 100
    # The means per option and lr are printed bare (the old tables printed them with an interval over the losses).
    assert len(re.findall(r"\| \d+\.\d+% +\|", markdown)) >= 2 * 3 * 2


def test_margin_and_compare_epoch_come_from_the_study_settings_unless_overridden():
    from dataclasses import replace

    from reports.build import analyse

    frames = simulate(np.random.default_rng(5), relu_ahead, epochs=4)
    frames.settings = replace(frames.settings, margin=5.0, compare_epoch=2)
    result = analyse(frames, full=False)
    assert (result.margin, result.compare_epoch) == (5.0, 2)
    assert {c.margin for c in result.comparisons} == {5.0}
    assert set(build_design(frames, 2).trials["epoch"]) == {2}
    overridden = analyse(frames, margin=1.0, compare_epoch=4, full=False)
    assert (overridden.margin, overridden.compare_epoch) == (1.0, 4)
