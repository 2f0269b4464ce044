"""The shipped example: docs/example is what docs/example/study.db builds, and its verdicts hold up against the database.

Every check recomputes from the study database with code of its own (optuna, scipy), not through the report's modules.
"""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats

from reports.build import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "example"
DB = Path(os.environ.get("CNN_STUDY_EXAMPLE_DB", EXAMPLE / "study.db"))  # another copy of the study, for development
NAME = "cifar10-paired"
pytestmark = pytest.mark.skipif(not DB.is_file(), reason=f"no example database at {DB}")


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """The report rebuilt from a copy of the shipped database (the shipped files stay untouched)."""
    folder = tmp_path_factory.mktemp("example")
    copy = folder / "study.db"
    shutil.copy(DB, copy)
    out = folder / "report"
    assert main(["--storage", f"sqlite:///{copy}", "--study-name", NAME, "--out", str(out), "--no-samples"]) == 0
    study = optuna.load_study(study_name=NAME, storage=f"sqlite:///{copy}")
    return out, study, pd.read_csv(out / "comparisons.csv"), (out / "report.md").read_text()


def _accuracies(study) -> dict:
    """(activation, loss, lr, replicate) -> test accuracy at epoch 10 of the first finished trial of that grid point."""
    acc = {}
    for t in sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number):
        key = (t.params["activation"], t.params["loss"], t.params["lr"], t.params["replicate"])
        history = t.user_attrs["history"]
        acc.setdefault(key, history[min(10, len(history)) - 1]["test_acc"])
    return acc


def _pair_diffs(acc: dict, factor: str, a: str, b: str, lr=None, loss=None) -> list[float]:
    index = {"activation": 0, "loss": 1, "lr": 2}[factor]
    diffs = []
    for key, value in acc.items():
        if key[index] != a or (lr is not None and key[2] != lr) or (loss is not None and key[1] != loss):
            continue
        other = list(key)
        other[index] = b
        if tuple(other) in acc:
            diffs.append(value - acc[tuple(other)])
    return diffs


@pytest.mark.skipif("CNN_STUDY_EXAMPLE_DB" in os.environ, reason="another database than the shipped one")
def test_the_shipped_report_is_what_the_database_builds(rebuilt):
    _, _, rows, _ = rebuilt
    shipped = pd.read_csv(EXAMPLE / "comparisons.csv")
    assert shipped["verdict"].tolist() == rows["verdict"].tolist()
    assert np.allclose(shipped["diff"], rows["diff"], equal_nan=True)


def test_every_verdict_is_a_row_recomputed_from_the_database(rebuilt):
    _, study, rows, markdown = rebuilt
    acc = _accuracies(study)
    checked = expected = 0
    for row in rows.itertuples():
        if row.question in ("activation", "loss") and row.lr not in ("pooled", "interaction"):
            diffs = _pair_diffs(acc, row.factor, row.a, row.b, lr=float(row.lr))
        elif row.question in ("activation", "loss") and row.lr == "pooled":
            diffs = _pair_diffs(acc, row.factor, row.a, row.b)
        elif row.question == "learning rate":
            x, y = float(row.a.removeprefix("lr ")), float(row.b.removeprefix("lr "))
            diffs = [d for d in _pair_diffs(acc, "lr", x, y, loss=row.subset.removeprefix("loss="))]
        else:
            continue
        expected += 1
        assert row.n_pairs == len(diffs), row.verdict
        assert row.diff == pytest.approx(np.mean(diffs)), row.verdict
        if len(diffs) >= 3:
            assert row.p == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue, rel=1e-6, abs=1e-12), row.verdict
        checked += 1
    assert checked == expected > 0 and expected == len(rows[rows["question"].isin(["activation", "loss", "learning rate"])]) - len(
        rows[rows["lr"] == "interaction"]
    )
    # Every "ahead of" sentence of the report is (part of) a row's verdict, and claims only what its adjusted p allows.
    for sentence in re.findall(r"\S+ is ahead of \S+ by [0-9.]+ points \[[^\]]+\] \([^)]*\)", markdown):
        matching = rows[rows["verdict"].str.contains(sentence, regex=False)]
        assert len(matching), sentence
        assert (matching["p_adjusted"] < 0.05).all(), sentence


def test_the_family_is_adjusted_as_one(rebuilt):
    _, _, rows, _ = rebuilt
    p = np.column_stack([rows["p"], rows["p_equiv"]]).ravel()
    groups = np.repeat(np.arange(len(rows)), 2)
    # Holm's step-down over the report, counting comparisons that still hold an unrejected hypothesis.
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    expected, running = np.full(len(p), np.nan), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, len(set(groups[order[k:]])) * p[i]))
        expected[i] = running
    got = np.column_stack([rows["p_adjusted"], rows["p_equiv_adjusted"]]).ravel()
    assert np.allclose(got, expected, equal_nan=True)


def test_pooled_activation_verdicts_say_what_the_interaction_shows(rebuilt):
    _, _, rows, markdown = rebuilt
    activation = rows[rows["question"] == "activation"]
    for row in activation[activation["lr"] == "interaction"].itertuples():
        pooled = activation[(activation["lr"] == "pooled") & activation["a"].isin([row.a, row.b]) & activation["b"].isin([row.a, row.b])]
        if not len(pooled):  # a pair compared at one learning rate only: nothing to pool or to test
            assert np.isnan(row.p)
            continue
        (verdict,) = pooled["verdict"]
        if row.p_adjusted < 0.05:
            assert verdict.startswith("not pooled: the difference depends on the learning rate") and "ahead" not in verdict
            assert f"**{row.a} vs {row.b}: it depends on the learning rate.**" in markdown
        elif row.p < 0.05:  # not claimed, but not absent either: nothing is pooled over it
            assert verdict.startswith("not pooled: the difference may depend on the learning rate") and "ahead" not in verdict
            assert "may depend on the learning rate" in row.verdict
        else:
            assert not verdict.startswith("not pooled") and row.verdict.startswith("no interaction shown")
        assert verdict in markdown and row.verdict in markdown


def test_the_test_loss_sentences_claim_nothing_their_interval_does_not_support(rebuilt):
    _, _, rows, markdown = rebuilt
    loss = rows[rows["factor"] == "test loss"]
    assert len(loss)
    for row in loss.itertuples():
        assert row.verdict in markdown
        if row.verdict.startswith("overfitting"):
            assert row.p_adjusted < 0.05 and row.ci_low > 0
        elif np.isnan(row.p):
            assert "too few trials" in row.verdict
        else:
            assert row.verdict.startswith("no overfitting shown") and f"[{row.ci_low:.3f}, {row.ci_high:.3f}]" in row.verdict
    # Every overfitting finding of the report is one of these rows, and a shown one.
    shown = rows.loc[rows["p_adjusted"] < 0.05, "verdict"].tolist()
    for line in markdown.splitlines():
        if line.startswith("- overfitting:"):
            assert line[2:] in shown


def test_importance_puts_the_loss_far_above_zero(rebuilt):
    _, _, _, markdown = rebuilt
    (sentence,) = [line for line in markdown.splitlines() if "percent of its variance" in line or "fANOVA" in line]
    share = float(re.search(r"\bloss (\d+)%", sentence).group(1))
    assert share >= 10, sentence


def test_a_study_without_stored_predictions_says_its_intervals_are_seed_only(rebuilt):
    _, _, rows, markdown = rebuilt
    assert "**What the claims are about: these 2,000 test images.**" in markdown
    # Seeds only: no row measured the test images, and each interval is its pairs' t interval.
    assert (rows["n_images"] == 0).all() and rows["se_images"].isna().all()
    tested = rows.dropna(subset=["df"])
    assert len(tested) and (tested["df"] == tested["n_pairs"] - 1).all()
