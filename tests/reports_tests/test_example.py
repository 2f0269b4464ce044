"""The shipped example: docs/example is what docs/example/study.db builds, and its verdicts hold up against the database.

The example is a real sequential study (README, "What the example study found"). Every check recomputes from the study
database with code of its own (optuna, numpy, scipy), not through the report's modules: the trials of each round
against the plan the study stored for it, each comparison's pairs, mean and standard errors (the seeds' from the pairs'
spread, the test images' from the per-image predictions), its repeated interval, and the Holm family.
"""

import base64
import math
import os
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats

from reports.build import main

REPO = Path(__file__).resolve().parents[2]
# The ladder's three rungs (docs/ladder.md): folder -> study name. All compare at epoch 10 (their --compare-epoch, or their last).
EXAMPLES = {"example": "cifar10-sequential", "example-10k": "cifar10-10k", "example-50k": "gpu-check"}
EPOCH = 10
DEVELOPMENT_DB = os.environ.get("CNN_STUDY_EXAMPLE_DB")  # another copy of the first example's study, for development


def _database(folder: str) -> Path:
    return Path(DEVELOPMENT_DB) if DEVELOPMENT_DB and folder == "example" else REPO / "docs" / folder / "study.db"


@pytest.fixture(scope="module", params=list(EXAMPLES))
def rebuilt(request, tmp_path_factory):
    """An example's report rebuilt from a copy of its shipped database (the shipped files stay untouched)."""
    db, name = _database(request.param), EXAMPLES[request.param]
    if not db.is_file():
        pytest.skip(f"no example database at {db}")
    folder = tmp_path_factory.mktemp(request.param)
    copy = folder / "study.db"
    shutil.copy(db, copy)
    out = folder / "report"
    assert main(["--storage", f"sqlite:///{copy}", "--study-name", name, "--out", str(out), "--no-samples"]) == 0
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{copy}")
    return out, study, pd.read_csv(out / "comparisons.csv"), (out / "report.md").read_text(), REPO / "docs" / request.param


def _decode(stored: dict) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(stored["zlib_base64"])), dtype=np.uint8).reshape(stored["shape"])


def _points(study) -> dict:
    """(activation, loss, lr, replicate) -> (test accuracy at EPOCH, right or wrong on each test image at EPOCH)."""
    labels = _decode(study.user_attrs["labels"]["test"])
    out = {}
    for t in sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number):
        key = (t.params["activation"], t.params["loss"], t.params["lr"], t.params["replicate"])
        predicted = _decode(t.user_attrs["predictions"]["test"])[EPOCH - 1]
        out.setdefault(key, (t.user_attrs["history"][EPOCH - 1]["test_acc"], predicted == labels))
    return out


def _pairs(points: dict, factor: str, a, b, lr=None, loss=None) -> tuple[list[float], list[np.ndarray]]:
    """The pairs of ``a`` against ``b`` (same other options, same replicate): accuracy differences and per-image rows."""
    index = {"activation": 0, "loss": 1, "lr": 2}[factor]
    diffs, rows = [], []
    for key, (acc, right) in points.items():
        if key[index] != a or (lr is not None and key[2] != lr) or (loss is not None and key[1] != loss):
            continue
        other = list(key)
        other[index] = b
        if tuple(other) in points:
            acc_b, right_b = points[tuple(other)]
            diffs.append(acc - acc_b)
            rows.append(100.0 * (right.astype(float) - right_b))
    return diffs, rows


def _se_images(rows: list[np.ndarray]) -> float:
    """The test images' standard error of the mean difference: two-way (pairs × images) mean squares, σ²_image / images."""
    table = np.vstack(rows)
    n_pairs, n_images = table.shape
    residual = table - table.mean(axis=1, keepdims=True) - table.mean(axis=0, keepdims=True) + table.mean()
    ms_images = n_pairs * table.mean(axis=0).var(ddof=1)
    ms_residual = (residual**2).sum() / ((n_pairs - 1) * (n_images - 1))
    return math.sqrt(max(0.0, (ms_images - ms_residual) / n_pairs) / n_images)


def _max_repeats(study) -> int:
    return int(study.user_attrs["settings"]["repeats"])


def test_the_shipped_report_is_what_the_database_builds(rebuilt):
    _, _, rows, _, shipped_folder = rebuilt
    if DEVELOPMENT_DB and shipped_folder.name == "example":
        pytest.skip("another database than the shipped one")
    shipped = pd.read_csv(shipped_folder / "comparisons.csv")
    assert shipped["verdict"].tolist() == rows["verdict"].tolist()
    numbers = ["diff", "ci_low", "ci_high", "p_adjusted"]
    assert np.allclose(shipped[numbers], rows[numbers], equal_nan=True)


def test_each_round_trained_what_its_stored_plan_named_and_nothing_twice(rebuilt):
    _, study, _, markdown, _ = rebuilt
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    by_round: dict[int, list] = {}
    for t in finished:
        by_round.setdefault(t.params["replicate"], []).append((t.params["activation"], t.params["loss"], t.params["lr"]))
    space = study.user_attrs["settings"]["search_space"]
    grid = len(space["activations"]) * len(space["losses"]) * space["grid_lrs"]
    assert len(set(by_round[0])) == len(by_round[0]) == grid  # round 0: the whole grid, once
    for r in sorted(by_round)[1:]:
        planned = {tuple(p) for p in study.user_attrs[f"round {r}"]["points"]}
        assert len(set(by_round[r])) == len(by_round[r]) and set(by_round[r]) <= planned, r
        if set(by_round[r]) != planned:  # only the last round of a stopped study is short, and the report says so
            assert r == max(by_round)
            left = len(planned) - len(by_round[r])
            assert f"round {r} has begun, with {left} trial{'s' if left > 1 else ''} of it still to train" in markdown
    assert max(by_round) < _max_repeats(study)
    counts = ", ".join(str(len(by_round[r])) for r in sorted(by_round))
    assert f"**{len(finished)} trials** in {len(by_round)} rounds ({counts} trials)" in markdown


def test_every_verdict_is_a_row_recomputed_from_the_database(rebuilt):
    _, study, rows, markdown, _ = rebuilt
    points, k = _points(study), _max_repeats(study)
    expected = rows[rows["question"].isin(["activation", "loss", "learning rate"]) & (rows["lr"] != "interaction")]
    assert len(expected)
    for row in expected.itertuples():
        if row.question == "learning rate":
            x, y = float(row.a.removeprefix("lr ")), float(row.b.removeprefix("lr "))
            diffs, images = _pairs(points, "lr", x, y, loss=row.subset.removeprefix("loss="))
        else:
            diffs, images = _pairs(points, row.factor, row.a, row.b, lr=None if row.lr == "pooled" else float(row.lr))
        assert row.n_pairs == len(diffs), row.verdict
        assert row.diff == pytest.approx(np.mean(diffs)), row.verdict
        if len(diffs) < 3:
            assert np.isnan(row.p) and "cannot tell yet" in row.verdict
            continue
        sd, se_images = np.std(diffs, ddof=1), _se_images(images)
        assert row.se_images == pytest.approx(se_images, rel=1e-6, abs=1e-9), row.verdict
        # The pairs' own spread, then moderated toward its stratum's prior: the prior adds df_prior degrees of freedom.
        assert (row.sd_raw if math.isfinite(row.sd_raw) else row.se_seeds * math.sqrt(len(diffs))) == pytest.approx(sd, rel=1e-9)
        assert row.df == pytest.approx(len(diffs) - 1 + row.df_prior)
        # The interval: the t interval at 1 − alpha on those df, alpha the report's end level over the K planned looks.
        se = math.hypot(row.se_seeds, se_images)
        half = se * stats.t.ppf(1 - row.alpha / 2, row.df)
        low, high = row.diff - half, row.diff + half
        if row.outcome == "equivalence":  # widened to include zero: the interval that agrees with the TOST (Hsu et al. 1994)
            low, high = min(low, 0.0), max(high, 0.0)
        assert (row.ci_low, row.ci_high) == pytest.approx((low, high), abs=1e-6) and row.multiplicity == k, row.verdict
        assert row.ci_low < row.diff < row.ci_high or se == 0
        assert row.p == pytest.approx(min(1.0, k * 2 * stats.t.sf(abs(row.diff) / se, row.df)), rel=1e-6, abs=1e-12), row.verdict
        # The interval excludes zero exactly when a difference is claimed.
        assert (row.ci_low > 0 or row.ci_high < 0) == (row.p_adjusted <= 0.05), row.verdict
    # Every "ahead of" sentence of the report is (part of) a row's verdict, and claims only what its adjusted p allows.
    sentences = re.findall(r"\S+ is ahead of \S+ by [0-9.]+ points \[[^\]]+\] \([^)]*\)", markdown)
    assert sentences
    for sentence in sentences:
        matching = rows[rows["verdict"].str.contains(sentence, regex=False)]
        assert len(matching), sentence
        assert (matching["p_adjusted"] < 0.05).all(), sentence


def test_the_family_is_adjusted_as_one(rebuilt):
    _, _, rows, _, _ = rebuilt
    # Benjamini–Hochberg over the comparisons' selection p-values (the smaller of the difference's and the equivalence's).
    selection = np.fmin(rows["p"], rows["p_equiv"]).to_numpy()
    valid = np.isfinite(selection)
    m = int(valid.sum())
    order = np.argsort(np.where(valid, selection, np.inf), kind="stable")[:m]
    passing = [k + 1 for k in range(m) if selection[order[k]] <= 0.05 * (k + 1) / m]
    r = max(passing, default=0)
    selected = set(order[:r].tolist())
    pooled_over_interaction = rows["verdict"].str.startswith("not pooled")
    for i, row in enumerate(rows.itertuples()):
        claimed = row.outcome != "open"
        assert claimed == (i in selected and not pooled_over_interaction.iloc[i]), row.verdict
        if math.isfinite(row.ci_low) and row.factor != "test loss":  # every interval at the end level 1 − R q / m, over K looks
            assert row.alpha * row.multiplicity == pytest.approx(max(r, 1) * 0.05 / m)


def test_pooled_verdicts_say_what_the_interaction_shows(rebuilt):
    _, _, rows, markdown, _ = rebuilt
    for question in ("activation", "loss"):
        mine = rows[rows["question"] == question]
        for row in mine[mine["lr"] == "interaction"].itertuples():
            pooled = mine[(mine["lr"] == "pooled") & mine["a"].isin([row.a, row.b]) & mine["b"].isin([row.a, row.b])]
            if not len(pooled):  # a pair compared at one learning rate only: nothing to pool or to test
                continue
            (verdict,) = pooled["verdict"]
            own = re.search(r"its own p ([<0-9. ]+)\)", row.verdict)
            if row.p_adjusted < 0.05:
                # A change of sign: nothing pooled; a change of size only: the average over the learning rates, said so.
                means = [float(m) for m in re.findall(r"([+-][0-9.]+) at ", row.verdict)]
                if all(m > 0 for m in means) or all(m < 0 for m in means):  # one sign everywhere: pooled, said so if claimed
                    assert "ahead" not in verdict or "its size changes with the learning rate, its sign does not" in verdict
                else:
                    assert verdict.startswith("not pooled: the sign of the difference changes") and "ahead" not in verdict
                assert f"**{row.a} vs {row.b}: it depends on the learning rate.**" in markdown
            elif verdict.startswith("not pooled"):  # not claimed, but its own p (the same in both sentences) is below 0.05
                assert own and f"the interaction's own p is {own.group(1).strip()}," in verdict and "may depend" in row.verdict
            elif "may depend" in row.verdict:  # its own p below 0.05, its sign the same everywhere: the average is tested
                means = [float(m) for m in re.findall(r"([+-][0-9.]+) at ", row.verdict)]
                assert all(m > 0 for m in means) or all(m < 0 for m in means)
                assert "its sign is the same at every learning rate" in row.verdict and "too strong" not in row.verdict
                assert "ahead" not in verdict or "its size changes with the learning rate, its sign does not" in verdict
            else:
                assert row.verdict.startswith("no interaction shown") and own and (own.group(1) == "1.00" or float(own.group(1)) >= 0.05)
            assert verdict in markdown and row.verdict in markdown


def test_the_test_loss_sentences_claim_nothing_their_interval_does_not_support(rebuilt):
    _, _, rows, markdown, _ = rebuilt
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
    shown = rows.loc[rows["p_adjusted"] < 0.05, "verdict"].tolist()
    for line in markdown.splitlines():
        if line.startswith("- overfitting:"):
            assert line[2:] in shown


def test_importance_puts_the_loss_far_above_zero(rebuilt):
    _, _, _, markdown, _ = rebuilt
    (sentence,) = [line for line in markdown.splitlines() if "percent of its variance" in line or "fANOVA" in line]
    share = float(re.search(r"\bloss (\d+)%", sentence).group(1))
    assert share >= 10, sentence


def test_the_header_says_the_verdicts_hold_however_the_study_stopped(rebuilt):
    _, study, rows, markdown, _ = rebuilt
    k = _max_repeats(study)
    assert "**A sequential study: every verdict below holds however the study stopped.**" in markdown
    assert f"{k} equal shares, one per planned look (`--max-repeats` = {k}" in markdown
    assert "No share moves from look to look with what a look found." in markdown
    assert "**a difference is claimed exactly when its printed interval excludes zero**" in markdown
    assert "vs best (points) [repeated CI]" in markdown and "[95% CI]" not in markdown
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    rounds = len({t.params["replicate"] for t in finished})
    grid = len({(t.params["activation"], t.params["loss"], t.params["lr"]) for t in finished})
    assert f"It spent {len(finished)} trials in {rounds} rounds, against {grid * k} for the fixed design of {k} replicates" in markdown
    images = len(_decode(study.user_attrs["labels"]["test"]))
    assert f"**What the claims are about: new test images drawn like these {images:,}, and new seeds.**" in markdown
    tested = rows.dropna(subset=["ci_low"])
    tested = tested[~tested["factor"].isin(["test loss"])]
    assert len(tested) and (tested["n_images"] == images).all() and (tested["df"] == tested["n_pairs"] - 1 + tested["df_prior"]).all()


def test_the_report_opens_with_its_answers(rebuilt):
    _, _, _, markdown, _ = rebuilt
    before, heading, after = markdown.partition("\n## Answers\n")
    assert heading and "\n## " not in before and len(before.split()) <= 150
    answers_text = after.split("\n## ")[0]
    paragraphs = [p for p in answers_text.split("\n\n") if p.strip()]
    assert len(paragraphs) == 4
    for paragraph in paragraphs:
        question_words = len(paragraph.split("**")[1].split())
        assert len(paragraph.split()) - question_words <= 120 and any(ch.isdigit() for ch in paragraph)
    assert after.split("\n## ")[1].startswith("Protocol and method")


def test_the_best_configuration_is_set_against_the_notebooks_on_the_same_seeds(rebuilt):
    _, study, _, markdown, _ = rebuilt
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    best = max(complete, key=lambda t: t.value)
    config = (best.params["activation"], best.params["loss"], best.params["lr"])
    notebook = ("relu", "cross_entropy", 0.001)
    sentence = r"Paired by seed over the (\d+) replicates both ran, at epoch 10 .*? = ([+-]?[0-9.]+) points, 95% interval"
    match = re.search(sentence + r" \[([-0-9.]+), ([-0-9.]+)\]", markdown)
    if config == notebook:
        assert match is None
        return
    points = _points(study)
    diffs = [acc - points[(*notebook, r)][0] for (*c, r), (acc, _) in points.items() if tuple(c) == config and (*notebook, r) in points]
    assert match, markdown
    n, mean, low, high = int(match.group(1)), float(match.group(2)), float(match.group(3)), float(match.group(4))
    assert n == len(diffs) and mean == pytest.approx(np.mean(diffs), abs=0.006) and low < mean < high
    assert f"{config[0]}, {config[1]}, lr {config[2]:.3g} − the notebook's configuration" in markdown
