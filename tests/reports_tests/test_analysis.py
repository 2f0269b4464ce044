import math

import numpy as np
import pandas as pd
import pytest
from reports_tests.conftest import trials_frame

from reports import analysis


def test_bootstrap_median_is_seeded_and_brackets_the_median():
    values = [50.0, 52.0, 55.0, 61.0, 70.0]
    median, low, high = analysis.bootstrap_median(values, seed=0)
    assert median == 55.0
    assert low <= median <= high and low >= 50.0 and high <= 70.0
    assert analysis.bootstrap_median(values, seed=0) == (median, low, high)


def test_bootstrap_median_of_one_value_and_of_none():
    assert analysis.bootstrap_median([42.0]) == (42.0, 42.0, 42.0)
    assert all(math.isnan(v) for v in analysis.bootstrap_median([]))


def test_lr_decade_and_labels():
    assert analysis.lr_decade(pd.Series([3e-4, 1e-3, 0.999, 1.0, 1e-5])).tolist() == [-4, -3, -1, 0, -5]
    assert analysis.decade_label(-3) == "1e-3–1e-2"
    assert analysis.decade_label(-1) == "1e-1–1"


def test_group_summary_counts_and_medians():
    trials = trials_frame(
        [
            ("relu", "mse", 1e-3, 60.0, "complete", False, 4.0),
            ("relu", "mse", 1e-3, 50.0, "pruned", False, 1.0),
            ("relu", "mse", 1e-3, 10.0, "complete", True, 0.0),
            ("tanh", "mse", 1e-3, 40.0, "complete", False, 2.0),
            ("tanh", "mse", 1e-3, 30.0, "fail"),
        ]
    )
    summary = analysis.group_summary(trials, "activation").set_index("activation")
    assert summary.loc["relu", ["trials", "complete", "pruned", "diverged"]].tolist() == [3, 2, 1, 1]
    assert summary.loc["relu", "median_acc"] == 50.0 and summary.loc["relu", "best_acc"] == 60.0
    # The gap comes from complete trials that did not diverge only.
    assert summary.loc["relu", "median_gap"] == 4.0
    # The failed trial is left out.
    assert summary.loc["tanh", "trials"] == 1 and summary.loc["tanh", "median_acc"] == 40.0


def test_matched_comparison_uses_only_shared_decades():
    # relu was tried at 1e-4 and 1e-3, tanh at 1e-3 and 1e-2: only the 1e-3 decade is shared.
    trials = trials_frame(
        [
            *[("relu", "mse", 2e-4, 20.0), ("relu", "mse", 2e-3, 60.0), ("relu", "mse", 3e-3, 64.0), ("relu", "mse", 4e-3, 62.0)],
            *[("tanh", "mse", 2e-3, 50.0), ("tanh", "mse", 5e-3, 52.0), ("tanh", "mse", 6e-3, 54.0), ("tanh", "mse", 0.05, 70.0)],
        ]
    )
    result = analysis.matched_comparison(trials, "activation")
    assert result["decades"] == [-3] and result["n"] == 6
    table = result["table"].set_index("activation")
    assert table.loc["relu", "score"] == 62.0 and table.loc["tanh", "score"] == 52.0
    assert result["best"] == "relu"
    diff, low, high, separated = result["separated"]["tanh"]
    assert diff == 10.0 and separated and low > 0


def test_matched_comparison_undoes_a_sampler_bias():
    # Raw medians favour A, which happened to be sampled at good learning rates; decade by decade B is better.
    rows = [("A", "mse", 2e-3, 60.0)] * 6 + [("A", "mse", 2e-5, 10.0)] * 2
    rows += [("B", "mse", 2e-3, 65.0)] * 2 + [("B", "mse", 2e-5, 15.0)] * 6
    trials = trials_frame(rows)
    summary = analysis.group_summary(trials, "activation").set_index("activation")
    assert summary.loc["A", "median_acc"] > summary.loc["B", "median_acc"]
    result = analysis.matched_comparison(trials, "activation")
    assert result["best"] == "B"
    assert result["table"].set_index("activation").loc["B", "score"] == 40.0


def test_matched_comparison_does_not_rank_indistinguishable_options():
    rows = [(a, "mse", lr, acc) for a in ("relu", "tanh") for lr, acc in ((2e-4, 40.0), (2e-3, 60.0), (3e-3, 58.0), (2e-2, 50.0))]
    result = analysis.matched_comparison(trials_frame(rows), "activation")
    diff, low, high, separated = result["separated"][next(iter(result["separated"]))]
    assert diff == 0.0 and low <= 0 <= high and not separated


def test_matched_comparison_gives_no_interval_below_three_trials():
    rows = [("relu", "mse", 2e-3, 60.0), ("tanh", "mse", 2e-3, 20.0)]
    result = analysis.matched_comparison(trials_frame(rows), "activation")
    assert result["table"]["ci_low"].isna().all()
    diff, low, high, separated = result["separated"]["tanh"]
    assert diff == 40.0 and math.isnan(low) and not separated


def test_matched_comparison_without_shared_decade():
    rows = [("relu", "mse", 2e-3, 60.0), ("tanh", "mse", 2e-1, 20.0)]
    assert analysis.matched_comparison(trials_frame(rows), "activation")["best"] is None


def test_lr_ranges_name_slow_good_and_unstable_decades():
    medians = {-5: 12.0, -4: 40.0, -3: 60.0, -2: 57.0, -1: 10.0, 0: 10.0}
    rows = [("relu", "cross_entropy", 2 * 10.0**d, acc) for d, acc in medians.items()]
    rows += [("relu", "cross_entropy", 3e-1, 10.0, "complete", True)]  # one diverged trial at 0.3
    table = analysis.lr_table(trials_frame(rows), "loss", chance=10.0)
    assert table.set_index("decade").loc[-1, ["trials", "diverged", "at_chance"]].tolist() == [2, 1, 2]
    ranges = analysis.lr_ranges(table, "loss", chance=10.0).iloc[0]
    assert ranges["best_decade"] == -3 and ranges["best_median"] == 60.0
    assert (ranges["good_low"], ranges["good_high"]) == (-3, -2)
    assert ranges["slow_decades"] == [-5, -4] and ranges["slow_median"] == 26.0
    assert ranges["high_decades"] == [-1, 0] and ranges["unstable_from"] == -1 and ranges["diverged"] == 1


def _epochs_frame(curves):
    rows = []
    for number, (train, test) in enumerate(curves):
        for e, (tr, te) in enumerate(zip(train, test, strict=True), 1):
            rows.append({"number": number, "epoch": e, "train_acc": tr, "test_acc": te, "state": "complete"})
    return pd.DataFrame(rows)


def test_epoch_curves_peaks_falls_and_gains():
    curves = [
        ([40, 60, 70, 80], [38, 50, 55, 58]),  # still rising at the end
        ([40, 60, 70, 80], [40, 52, 56, 54]),  # peaks at 3, falls while train rises
        ([40, 60, 70, 80], [35, 48, 55, 55]),  # peaks at 3 (first max), flat after
        ([10, 10, 10, 10], [10, 10, 10, 10]),  # never learned: left out
    ]
    trials = trials_frame([("relu", "mse", 1e-3, c[1][-1]) for c in curves])
    trials["epochs_run"] = 4
    trials["peak_test_acc"] = [max(c[1]) for c in curves]
    result = analysis.epoch_curves(_epochs_frame(curves), trials, n_epochs=4, chance=10.0)
    assert result["n"] == 3
    assert result["peak_epochs"].to_dict() == {0: 4, 1: 3, 2: 3}
    assert result["fell"] == 1
    gains = result["gains"].set_index("epoch")
    assert gains["median_gain"].tolist() == [12.0, 5.0, 0.0] and gains["n"].tolist() == [3, 3, 3]


def test_per_class_accuracy_and_confused_pairs():
    confusion = [[8, 2, 0], [1, 9, 0], [0, 4, 6]]
    per_class = analysis.per_class_accuracy(confusion, ["a", "b", "c"])
    assert per_class["accuracy"].tolist() == [80.0, 90.0, 60.0] and per_class["images"].tolist() == [10, 10, 10]
    pairs = analysis.confused_pairs(confusion, ["a", "b", "c"], top=2)
    assert pairs.to_dict("records") == [
        {"pair": "b ↔ c", "a_as_b": 0, "b_as_a": 4, "total": 4},
        {"pair": "a ↔ b", "a_as_b": 2, "b_as_a": 1, "total": 3},
    ]


def test_accuracy_interval_is_wilson():
    low, high = analysis.accuracy_interval(50.0, 100)
    assert low == pytest.approx(40.383, abs=1e-3) and high == pytest.approx(59.617, abs=1e-3)


def test_difference_interval():
    diff, low, high = analysis.difference_interval(70.0, 60.0, 1000)
    se = np.sqrt(0.7 * 0.3 / 1000 + 0.6 * 0.4 / 1000)
    assert diff == 10.0 and low == pytest.approx(10 - 100 * 1.96 * se, abs=1e-2) and high == pytest.approx(10 + 100 * 1.96 * se, abs=1e-2)
