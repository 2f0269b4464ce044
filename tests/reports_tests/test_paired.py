"""The paired analysis on synthetic studies whose effects and noise are known (no training, fast)."""

import math

import numpy as np
import pytest
from reports_tests.conftest import paired_settings, record

from reports import paired
from reports.frames import frames_from_records

LRS = (1e-3, 1e-2)


def simulated_frames(rng, effect: float, repeats: int = 5, block_sd: float = 5.0, noise_sd: float = 1.0, tanh_at_chance_lr=None):
    """relu and tanh (one loss) at two learning rates and ``repeats`` seeds.

    Accuracy = 50 + (effect if relu) + a block effect shared by the trials of one seed and lr
    (the run-to-run noise that pairing cancels) + independent noise.
    """
    records, number = [], 0
    for lr in LRS:
        for rep in range(repeats):
            block = rng.normal(0, block_sd)
            for activation in ("relu", "tanh"):
                acc = 50 + (effect if activation == "relu" else 0) + block + rng.normal(0, noise_sd)
                if activation == "tanh" and lr == tanh_at_chance_lr:
                    acc = 10 + rng.normal(0, 0.5)
                records.append(record(number, activation, "cross_entropy", lr, rep, [acc - 5, acc]))
                number += 1
    return frames_from_records("sim", paired_settings(epochs=2, repeats=repeats), records)


def _pooled(frames, factor="activation"):
    design = paired.design_trials(frames.trials, frames.n_epochs)
    acc = paired.accuracy_at_epochs(frames.epochs, frames.trials, frames.n_epochs)
    result = paired.compare_options(design, acc, factor, frames.chance, factor)
    return next(r for r in result["rows"] if r["lr"] == "pooled"), result


def _relu_minus_tanh(row) -> tuple[float, float, float]:
    sign = 1 if row["a"] == "relu" else -1
    low, high = sorted((sign * row["ci_low"], sign * row["ci_high"]))
    return sign * row["diff"], low, high


@pytest.mark.parametrize("effect", [0.0, 1.5])
def test_paired_interval_covers_the_true_effect(effect):
    rng = np.random.default_rng(1234)
    covered = claimed = 0
    n_studies = 200
    for _ in range(n_studies):
        row, _ = _pooled(simulated_frames(rng, effect))
        diff, low, high = _relu_minus_tanh(row)
        covered += low <= effect <= high
        claimed += low > 0 or high < 0
    # 95% intervals: coverage between 90% and 99% of 200 studies.
    assert 0.90 <= covered / n_studies <= 0.99
    if effect == 0.0:
        # No true effect: a difference is claimed in at most 7% of the studies.
        assert claimed / n_studies <= 0.07


def test_pairing_cancels_noise_that_unpaired_comparison_cannot():
    # A 1.5-point effect under a 5-point seed-to-seed spread: pairs resolve it, group means do not.
    frames = simulated_frames(np.random.default_rng(7), 1.5, repeats=5)
    row, result = _pooled(frames)
    assert row["a"] == "relu" and row["ci_low"] > 0
    assert row["verdict"].startswith("relu is ahead of tanh by ")
    assert f"({row['n_pairs']} pairs)" in row["verdict"] and row["n_pairs"] == 10
    means = result["means"]
    relu, tanh = (means[(means["activation"] == a) & (means["lr"] == 1e-3)].iloc[0] for a in ("relu", "tanh"))
    assert relu["ci_low"] < tanh["ci_high"]  # the unpaired intervals overlap


def test_per_lr_rows_show_an_option_at_chance():
    frames = simulated_frames(np.random.default_rng(3), 0.0, tanh_at_chance_lr=1e-2)
    _, result = _pooled_or_none(frames)
    # At 1e-2 only relu learns: it is compared there, and that lr is left out of the pooled comparison.
    assert result["learning"][1e-2] == ["relu"] and result["pooled_lrs"] == [1e-3]
    at_high = next(r for r in result["rows"] if r["lr"] == 1e-2)
    assert at_high["a"] == "relu" and at_high["ci_low"] > 30
    assert not any(r["lr"] == "pooled" for r in result["rows"])  # one lr where both learn is no pooling


def _pooled_or_none(frames):
    design = paired.design_trials(frames.trials, frames.n_epochs)
    acc = paired.accuracy_at_epochs(frames.epochs, frames.trials, frames.n_epochs)
    result = paired.compare_options(design, acc, "activation", frames.chance, "activation")
    return next((r for r in result["rows"] if r["lr"] == "pooled"), None), result


def test_verdict_sentences():
    assert paired.verdict("relu", "tanh", 9, 3.2, 1.1, 5.3, 2.0) == "relu is ahead of tanh by 3.2 points [1.1, 5.3] (9 pairs)"
    assert paired.verdict("relu", "tanh", 9, -3.2, -5.3, -1.1, 2.0) == "tanh is ahead of relu by 3.2 points [1.1, 5.3] (9 pairs)"
    assert paired.verdict("relu", "tanh", 9, 0.3, -0.9, 1.5, 1.0) == "relu and tanh are within 1.5 points of each other (9 pairs)"
    text = paired.verdict("relu", "tanh", 3, 2.0, -3.0, 7.0, 2.0, pairs_per_replicate=3)
    # The smallest n with (t(0.975, n-1) + t(0.8, n-1)) * 2 / sqrt(n) <= 2 is 10: 7 more pairs, 3 more replicates of 3 pairs.
    assert paired.pairs_needed(2.0, 2.0) == 10
    expected = "cannot tell yet: relu − tanh = +2.0 points [-3.0, 7.0] (3 pairs); "
    assert text == expected + "about 3 more replicates would resolve a difference of this size"
    assert paired.verdict("relu", "tanh", 1, 2.0, math.nan, math.nan, math.nan).startswith("cannot tell yet: one pair only")
    # Two pairs that happen to agree give no zero-width interval.
    assert paired.verdict("relu", "tanh", 2, 4.75, 4.75, 4.75, 0.0).startswith("cannot tell yet: 2 pairs only (relu − tanh = +4.8 points)")


def test_mean_interval_is_a_t_interval():
    n, mean, low, high, sd = paired.mean_interval([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.303: 2 +- 4.303 * 1 / sqrt(3)
    assert (n, mean, sd) == (3, 2.0, 1.0) and low == pytest.approx(2 - 2.4843, abs=1e-3) and high == pytest.approx(2 + 2.4843, abs=1e-3)
    assert math.isnan(paired.mean_interval([5.0])[2])


def test_pairs_are_compared_at_the_last_epoch_both_reached():
    records = [
        record(0, "relu", "cross_entropy", 1e-3, 0, [30.0, 40.0, 50.0]),
        record(1, "tanh", "cross_entropy", 1e-3, 0, [35.0], state="pruned"),  # pruned after epoch 1
        record(2, "relu", "cross_entropy", 1e-3, 1, [30.0, 40.0, 50.0]),
        record(3, "tanh", "cross_entropy", 1e-3, 1, [20.0, 12.0], diverged=True),  # diverged at epoch 2: keeps 12 after
    ]
    frames = frames_from_records("s", paired_settings(epochs=3), records)
    design = paired.design_trials(frames.trials, frames.n_epochs)
    acc = paired.accuracy_at_epochs(frames.epochs, frames.trials, frames.n_epochs)
    got = paired.pairs(design, acc, "activation", "relu", "tanh").sort_values("replicate")
    assert got["epoch"].tolist() == [1, 3]
    assert got["diff"].tolist() == [30.0 - 35.0, 50.0 - 12.0]


def test_design_keeps_one_trial_per_point_and_ignores_failed_ones():
    records = [
        record(0, "relu", "mse", 1e-3, 0, [40.0]),
        record(1, "relu", "mse", 1e-3, 0, [60.0]),  # the same point run twice: the first counts
        record(2, "tanh", "mse", 1e-3, 0, [50.0], state="fail"),
    ]
    frames = frames_from_records("s", paired_settings(epochs=1), records)
    design = paired.design_trials(frames.trials, 1)
    assert design["number"].tolist() == [0]


def test_lr_ranges_name_too_low_good_and_too_high():
    rng = np.random.default_rng(0)
    records, number = [], 0
    truth = {1e-4: 35.0, 1e-3: 60.0, 1e-2: 58.8, 1e-1: 10.0}
    for lr, mean in truth.items():
        for rep in range(4):
            for activation in ("relu", "tanh"):
                acc = mean + (rng.normal(0, 0.2) if mean > 10 else 0.0)
                records.append(record(number, activation, "mse", lr, rep, [acc]))
                number += 1
    frames = frames_from_records("s", paired_settings(epochs=1, repeats=4), records)
    design = paired.design_trials(frames.trials, 1)
    acc = paired.accuracy_at_epochs(frames.epochs, frames.trials, 1)
    ranges = paired.lr_ranges(design, acc, frames.chance)["ranges"].set_index("lr")["regime"].to_dict()
    assert ranges == {1e-4: "too low", 1e-3: "best", 1e-2: "good", 1e-1: "too high (at chance)"}


def test_epoch_verdict_finds_a_drop_beyond_the_noise():
    records, number = [], 0
    for rep in range(4):
        for activation in ("relu", "tanh"):
            # Peaks at epoch 2, ends 3-4 points lower while the training loss keeps falling and the test loss rises.
            curve = [40.0, 50.0 + rep * 0.1, 47.0 - rep * 0.2]
            records.append(
                record(number, activation, "cross_entropy", 1e-3, rep, curve, test_losses=[1.5, 1.2, 1.4], train_losses=[1.6, 1.0, 0.6])
            )
            number += 1
    frames = frames_from_records("s", paired_settings(epochs=3, repeats=4, test_size=10_000), records)
    design = paired.design_trials(frames.trials, 3)
    acc = paired.accuracy_at_epochs(frames.epochs, frames.trials, 3)
    result = paired.epoch_verdicts(frames, design, acc)
    row = result["rows"][0]
    assert (row["a"], row["b"], row["n_pairs"]) == ("epoch 3", "epoch 2", 8) and row["ci_high"] < 0
    fell = result["fell"].iloc[0]
    # Two standard errors of a difference at 50% on 10,000 images: 2 * sqrt(2) * 0.5 = 1.41 points; every drop exceeds it.
    assert fell["fell"] == 8 and fell["best_epoch"] == 2 and fell["threshold"] == pytest.approx(1.41, abs=0.01)
    turn = result["loss_turns"].iloc[0]
    assert turn["min_epoch"] == 2 and turn["rise"] == pytest.approx(0.2) and turn["train_change"] == pytest.approx(-0.4)


def test_comparisons_frame_has_the_documented_columns():
    frame = paired.comparisons_frame([])
    assert list(frame.columns) == [*paired.COLUMNS]
    assert paired.COLUMNS[:11] == ["question", "factor", "a", "b", "lr", "epoch", "n_pairs", "diff", "ci_low", "ci_high", "verdict"]
