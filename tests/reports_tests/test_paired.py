"""The paired design as data: one trial per grid point, pairs at the compare epoch, the table of means (fast)."""

import itertools
import math

import numpy as np
import pytest
from reports_tests.conftest import paired_settings, record
from reports_tests.simulate import simulate

from reports import paired
from reports.frames import frames_from_records


def test_pairs_are_compared_at_the_last_epoch_both_reached():
    records = [
        record(0, "relu", "cross_entropy", 1e-3, 0, [30.0, 40.0, 50.0]),
        record(1, "tanh", "cross_entropy", 1e-3, 0, [35.0], state="pruned"),  # pruned after epoch 1
        record(2, "relu", "cross_entropy", 1e-3, 1, [30.0, 40.0, 50.0]),
        record(3, "tanh", "cross_entropy", 1e-3, 1, [20.0, 12.0], diverged=True),  # diverged at epoch 2: keeps 12 after
    ]
    design = paired.build_design(frames_from_records("s", paired_settings(epochs=3), records))
    got = paired.pairs(design, "activation", "relu", "tanh").sort_values("replicate")
    assert got["epoch"].tolist() == [1, 3]
    assert got["diff"].tolist() == [30.0 - 35.0, 50.0 - 12.0]


def test_compare_epoch_defaults_to_the_notebooks_ten_and_can_be_chosen():
    records = [record(i, a, "mse", 1e-3, 0, [10.0 + e + (5 if a == "relu" else 0) * (e > 10) for e in range(1, 13)])
               for i, a in enumerate(("relu", "tanh"))]  # fmt: skip
    frames = frames_from_records("s", paired_settings(epochs=12), records)
    design = paired.build_design(frames)
    # Trained 12 epochs, compared at the notebook's 10: relu's lead after epoch 10 does not count.
    assert design.compare_epoch == 10 and paired.pairs(design, "activation", "relu", "tanh")["diff"].tolist() == [0.0]
    late = paired.build_design(frames, compare_epoch=12)
    assert paired.pairs(late, "activation", "relu", "tanh")["diff"].tolist() == [5.0]
    short = frames_from_records("s", paired_settings(epochs=3), [record(0, "relu", "mse", 1e-3, 0, [1.0, 2.0, 3.0])])
    assert paired.build_design(short).compare_epoch == 3  # trained fewer than 10: the last epoch
    with pytest.raises(ValueError, match="--compare-epoch must be between 1 and the study's 12 epochs but got 13"):
        paired.build_design(frames, compare_epoch=13)


def test_design_keeps_one_trial_per_point_and_ignores_failed_ones():
    records = [
        record(0, "relu", "mse", 1e-3, 0, [40.0]),
        record(1, "relu", "mse", 1e-3, 0, [60.0]),  # the same point run twice: the first counts
        record(2, "tanh", "mse", 1e-3, 0, [50.0], state="fail"),
    ]
    design = paired.build_design(frames_from_records("s", paired_settings(epochs=1), records))
    assert design.trials["number"].tolist() == [0]


def test_cell_means_show_no_interval_and_stay_inside_0_100():
    # The new user's small study: 2 activations x 3 losses x 3 lrs, one replicate, and losses far apart.
    effect = {"cross_entropy": 30.0, "mse": -35.0, "bce_with_logits": 25.0}
    frames = simulate(np.random.default_rng(0), lambda a, lo, lr: effect[lo], activations=("relu", "tanh"),
                      losses=tuple(effect), replicates=1)  # fmt: skip
    means = paired.cell_means(paired.build_design(frames), "activation")
    assert "ci_low" not in means.columns
    assert ((means[["mean_acc", "low", "high"]] >= 0) & (means[["mean_acc", "low", "high"]] <= 100)).all().all()
    # One replicate: no seed-to-seed spread to show.
    assert means["seed_sd"].isna().all()
    with_replicates = paired.cell_means(paired.build_design(simulate(np.random.default_rng(0), replicates=3)), "loss")
    assert with_replicates["seed_sd"].between(0.5, 3.0).all()  # trial noise 1 and epoch noise 0.5 between replicates


def test_epoch_text():
    assert paired.epoch_text([10, 10]) == "10" and paired.epoch_text([3, 10, 7]) == "3–10" and paired.epoch_text([]) == "–"


def _with_predictions(frames, n_images: int, seed: int = 0):
    """``frames`` with predictions that reproduce every trial's recorded test accuracies on ``n_images`` test images."""
    import dataclasses

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n_images).astype(np.uint8)
    predictions = {}
    for number, curve in frames.epochs.groupby("number"):
        rows = []
        for acc in curve.sort_values("epoch")["test_acc"]:
            right = np.zeros(n_images, dtype=bool)
            right[rng.choice(n_images, round(acc * n_images / 100), replace=False)] = True
            rows.append(np.where(right, labels, (labels + 1) % 10))
        predictions[int(number)] = np.stack(rows).astype(np.uint8)
    return dataclasses.replace(frames, predictions=predictions, labels=labels)


def test_image_table_rows_are_the_pairs_differences_image_by_image():
    records = [
        record(0, "relu", "mse", 1e-3, 0, [30.0, 40.0, 50.0]),
        record(1, "tanh", "mse", 1e-3, 0, [35.0], state="pruned"),
        record(2, "relu", "mse", 1e-3, 1, [20.0, 40.0, 60.0]),
        record(3, "tanh", "mse", 1e-3, 1, [20.0, 15.0], diverged=True),
    ]
    frames = _with_predictions(frames_from_records("s", paired_settings(epochs=3), records), 20)
    design = paired.build_design(frames)
    assert sorted(design.correct) == [0, 1, 2, 3] and design.mismatched == []
    p = paired.pairs(design, "activation", "relu", "tanh").sort_values("replicate")
    table = paired.image_table(design, p["number_a"], p["epoch"], p["number_b"], p["epoch"])
    # 20 images, each ±100 or 0 points; a row averages to the pair's recorded difference (the diverged trial keeps epoch 2).
    assert table.shape == (2, 20) and set(np.unique(table)) <= {-100.0, 0.0, 100.0}
    assert table.mean(axis=1).tolist() == pytest.approx(p["diff"].tolist()) == [30.0 - 35.0, 60.0 - 15.0]


def test_predictions_that_do_not_reproduce_the_accuracies_are_left_out():
    records = [record(i, a, "mse", 1e-3, r, [40.0, 50.0]) for i, (a, r) in enumerate(itertools.product(("relu", "tanh"), range(3)))]
    frames = _with_predictions(frames_from_records("s", paired_settings(epochs=2), records), 20)
    frames.predictions[4] = frames.predictions[4].copy()
    frames.predictions[4][1] = (frames.labels + 1) % 10  # every image wrong at epoch 2, though 50% is recorded
    design = paired.build_design(frames)
    assert design.mismatched == [4] and 4 not in design.correct
    # A comparison with that trial falls back to the seeds only; one without it counts the images.
    assert math.isnan(paired.estimate_pairs(design, paired.pairs(design, "activation", "relu", "tanh"), 2.0).se_images)
    lone = frames_from_records("s", paired_settings(epochs=2), records)  # no predictions stored at all
    assert paired.build_design(lone).correct == {}


def test_every_paired_question_counts_the_test_images_where_predictions_are_stored():
    from reports import build

    frames = simulate(np.random.default_rng(0), epochs=4, replicates=3)
    # simulate's accuracies are not multiples of 1/400: round the curves to what 400 images can give, then predict them.
    frames.epochs["test_acc"] = (frames.epochs["test_acc"] * 4).round() / 4
    frames = _with_predictions(frames, 400, seed=1)
    assert paired.build_design(frames).mismatched == []
    result = build.analyse(frames, full=False)
    rows = {c.kind: c for c in result.comparisons}
    for c in result.comparisons:
        if c.kind in ("difference", "pooled", "drop", "gain") and c.p == c.p:
            assert c.n_images == 400 and c.se_images >= 0 and math.isfinite(c.df), (c.question, c.lr, c.a, c.b)
        elif c.kind == "loss rise":
            assert c.n_images == 0 and math.isnan(c.se_images)  # no per-image loss is stored: seeds only
    assert {"difference", "pooled"} <= set(rows) and ({"drop", "gain"} & set(rows))
    assert {c.question for c in result.comparisons if c.n_images} == {"activation", "loss", "learning rate", "epochs"}


def test_the_header_names_the_trials_whose_predictions_do_not_reproduce_their_accuracies():
    from reports import build, overview

    records = [record(i, a, "mse", 1e-3, r, [40.0, 50.0]) for i, (a, r) in enumerate(itertools.product(("relu", "tanh"), range(3)))]
    frames = _with_predictions(frames_from_records("s", paired_settings(epochs=2), records), 20)
    frames.predictions[4] = frames.predictions[4].copy()
    frames.predictions[4][1] = (frames.labels + 1) % 10
    del frames.predictions[5]  # and one trial that stored none
    family = build.analyse(frames, full=False).family
    assert family.mismatched == [4] and family.no_predictions == 1
    text = overview.population_text(family)
    assert "1 trial (#4) stored predictions that do not reproduce its recorded test accuracies" in text
    # Every comparison holds trial 4 or 5 here: all count the seeds only, and say why.
    assert family.seed_only and not family.two_level
    assert text.startswith("**What the claims are about: these 10,000 test images.** Every comparison holds a trial")


def test_population_text_names_the_dataset_and_its_whole_test_split():
    from reports.overview import Family, population_text

    first = population_text(Family(10, 2.0, 10, seed_only=5))  # a first-release study: no test size stored
    assert "these test images" in first and "these the" not in first
    folder = population_text(Family(10, 2.0, 10, two_level=5, n_images=2000))
    assert "new test images drawn like these 2,000" in folder and "CIFAR" not in folder
    cifar = population_text(Family(10, 2.0, 10, two_level=5, n_images=2000, dataset="CIFAR-10", dataset_images=10_000))
    assert "new CIFAR-10 test images drawn like these 2,000" in cifar
    whole = population_text(Family(10, 2.0, 10, two_level=5, n_images=10_000, dataset="CIFAR-10", dataset_images=10_000))
    assert "new images drawn like these 10,000 test images (the whole CIFAR-10 test split)" in whole
