import math
import re

import optuna
import pandas as pd
import pytest
from reports_tests.conftest import make_study, make_trial, paired_settings
from scipy import stats

from reports import overview
from reports.build import build_report, main
from reports.frames import load_frames
from study.run import main as run_study
from study.space import SearchSpace
from study.storage import output_dir

PNG = b"\x89PNG\r\n\x1a\n"


def _links(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table_rows(markdown: str, header: list[str]) -> list[list[str]]:
    """The rows of the markdown table whose header cells begin with ``header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and _cells(line)[: len(header)] == header)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    return rows


@pytest.fixture(scope="module")
def real_study(tmp_path_factory, cifar_dir):
    """A small real paired design: 2 activations x 2 losses x 2 learning rates x 2 replicates, 2 epochs, 500 images."""
    folder = tmp_path_factory.mktemp("real")
    storage = f"sqlite:///{folder / 'study.db'}"
    args = ["--data-dir", str(cifar_dir), "--train-size", "500", "--test-size", "200", "--storage", storage, "--epochs", "2"]
    design = ["--activations", "relu,tanh", "--losses", "cross_entropy,bce_with_logits", "--lr-min", "1e-3", "--lr-max", "1e-2"]
    assert run_study([*args, *design, "--grid-lrs", "2", "--repeats", "2", "--seed", "3", "--margin", "2.5"]) == 0
    return storage, folder


@pytest.mark.slow  # a real study
def test_study_run_builds_the_report_beside_the_database(real_study):
    storage, folder = real_study
    reports = output_dir(storage, "cnn-study", "report")  # beside the database, named after it and the study
    assert reports.parent == folder and reports.name == "study-cnn-study-report"
    report = reports / "report.md"
    assert report.is_file()
    for name in ("trials.csv", "epochs.csv", "comparisons.csv"):
        assert (reports / name).is_file()


@pytest.mark.slow  # a real study
def test_every_linked_figure_exists_and_is_a_png(real_study, tmp_path):
    storage, _ = real_study
    assert main(["--storage", storage, "--study-name", "cnn-study", "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    links = _links(markdown)
    assert {"activation_by_lr.png", "activation_differences.png", "loss_by_lr.png", "lr_accuracy.png", "samples.png"} <= set(links)
    for link in links:
        assert (tmp_path / link).read_bytes()[:8] == PNG, link
    # The test images drawn again from the data folder are the study's, and some are wrong for every trial that learned.
    assert "The test images drawn again from the data folder match the labels the study stored (200 images)." in markdown
    assert "hard_images.png" in links
    for heading in ("## 1. ", "## 2. ", "## 3. ", "## 4. "):
        assert heading in markdown


@pytest.mark.slow  # a real study
def test_blocks_share_their_seed_and_their_first_batch_order(real_study):
    storage, _ = real_study
    study = optuna.load_study(study_name="cnn-study", storage=storage)
    by_replicate = {}
    for trial in study.trials:
        by_replicate.setdefault(trial.params["replicate"], set()).add((trial.user_attrs["seed"], trial.user_attrs["batch_order"]))
    # Every trial of a replicate trains from seed 3 + replicate and draws the same first-epoch batches.
    assert {r: len(v) for r, v in by_replicate.items()} == {0: 1, 1: 1}
    assert {r: next(iter(v))[0] for r, v in by_replicate.items()} == {0: 3, 1: 4}
    assert by_replicate[0] != by_replicate[1]


def _accuracy(study, **params) -> float:
    """The last recorded test accuracy of the one trial with these parameters."""
    (trial,) = [t for t in study.trials if all(t.params[k] == v for k, v in params.items())]
    return trial.user_attrs["history"][-1]["test_acc"]


def _number(study, **params) -> int:
    """The number of the one trial with these parameters."""
    (trial,) = [t for t in study.trials if all(t.params[k] == v for k, v in params.items())]
    return trial.number


@pytest.mark.slow  # a real study
def test_comparisons_recompute_from_the_database(real_study, tmp_path):
    storage, _ = real_study
    main(["--storage", storage, "--study-name", "cnn-study", "--out", str(tmp_path), "--no-samples"])
    study = optuna.load_study(study_name="cnn-study", storage=storage)
    rows = pd.read_csv(tmp_path / "comparisons.csv")
    first = ["question", "factor", "a", "b", "lr", "epoch", "n_pairs", "diff", "ci_low", "ci_high", "verdict", "subset"]
    assert list(rows.columns[:12]) == first
    assert {"p", "p_adjusted", "p_equiv", "p_equiv_adjusted", "margin"} <= set(rows.columns)
    assert set(rows["margin"]) == {2.5}  # study.run --margin, kept in the study's settings
    assert set(rows["question"]) >= {"activation", "loss", "learning rate"}
    others = {"activation": ("loss", ("cross_entropy", "bce_with_logits")), "loss": ("activation", ("relu", "tanh"))}
    lrs = sorted({t.params["lr"] for t in study.trials})

    def diffs(row, lr):
        other, values = others[row.factor]
        return [
            _accuracy(study, **{row.factor: row.a, other: v, "lr": lr, "replicate": r})
            - _accuracy(study, **{row.factor: row.b, other: v, "lr": lr, "replicate": r})
            for v in values
            for r in (0, 1)
        ]

    options = rows[rows["question"].isin(["activation", "loss"])]
    for row in options[~options["lr"].isin(["pooled", "interaction"])].itertuples():
        mine = diffs(row, float(row.lr))
        # The mean paired difference, a minus b, over the blocks at this lr: 2 other options x 2 replicates.
        assert row.n_pairs == len(mine) == 4 and row.diff == pytest.approx(sum(mine) / 4)
        # Its t test: the seeds' part is the pairs' own spread; the images' part is checked in the test below.
        se = (row.se_seeds**2 + row.se_images**2) ** 0.5
        assert row.se_seeds == pytest.approx(stats.tstd(mine) / 2)
        assert row.p == pytest.approx(2 * stats.t.sf(abs(row.diff) / se, row.df))
        assert row.ci_low <= row.diff <= row.ci_high and f"({row.n_pairs} pairs" in row.verdict
    for row in options[options["lr"] == "pooled"].itertuples():
        # Pooled: every pair at both learning rates, with a t test over them (the interaction pooled into the error).
        every = [d for lr in lrs for d in diffs(row, lr)]
        assert row.n_pairs == 8 and row.diff == pytest.approx(sum(every) / 8)
        assert row.se_seeds == pytest.approx(stats.tstd(every) / 8**0.5)
        assert row.p == pytest.approx(2 * stats.t.sf(abs(row.diff) / (row.se_seeds**2 + row.se_images**2) ** 0.5, row.df))
    # One family for the report: every p-value adjusted together, never below its raw value.
    tested = rows[rows["p"].notna()]
    assert (tested["p_adjusted"] >= tested["p"] - 1e-12).all()
    # Every verdict sentence of the report is a row of comparisons.csv.
    markdown = (tmp_path / "report.md").read_text()
    shown = rows[rows["question"] != "learning rate"]
    assert all(verdict in markdown for verdict in shown["verdict"])


@pytest.mark.slow  # a real study
def test_table_numbers_equal_the_database(real_study, tmp_path):
    storage, _ = real_study
    main(["--storage", storage, "--study-name", "cnn-study", "--out", str(tmp_path), "--no-samples"])
    markdown = (tmp_path / "report.md").read_text()
    study = optuna.load_study(study_name="cnn-study", storage=storage)
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    # Best trials table: each row's accuracy is that trial's last recorded test accuracy.
    best_rows = _table_rows(markdown, ["trial", "state"])
    assert len(best_rows) == min(10, len(finished))
    for row in best_rows:
        trial = study.trials[int(row[0])]
        assert row[6] == f"{trial.user_attrs['history'][-1]['test_acc']:.2f}%"
        assert row[7] == str(len(trial.user_attrs["history"]))
    # Mean accuracy per activation and learning rate, recomputed from the trials.
    for lr, activation, n, cell, *_ in _table_rows(markdown, ["lr", "activation", "n"]):
        same = [t for t in finished if t.params["activation"] == activation and f"{t.params['lr']:g}" == lr]
        mine = [t.user_attrs["history"][-1]["test_acc"] for t in same]
        assert int(n) == len(mine) == 4
        # A mean over the losses and replicates carries no interval.
        assert cell == f"{sum(mine) / len(mine):.2f}%"
    assert "samples.png" not in markdown


@pytest.mark.slow  # a real study
def test_csvs_hold_one_row_per_trial_and_per_epoch(real_study, tmp_path):
    storage, _ = real_study
    main(["--storage", storage, "--study-name", "cnn-study", "--out", str(tmp_path), "--no-samples"])
    study = optuna.load_study(study_name="cnn-study", storage=storage)
    assert len(pd.read_csv(tmp_path / "trials.csv")) == len(study.trials)
    assert len(pd.read_csv(tmp_path / "epochs.csv")) == sum(len(t.user_attrs.get("history", [])) for t in study.trials)


def test_an_observational_study_prints_the_paired_command(db, tmp_path):
    trials = [make_trial(a, "mse", lr, [acc]) for a, lr, acc in (("relu", 2e-3, 50.0), ("tanh", 3e-3, 51.0), ("relu", 4e-3, 49.0))]
    markdown = _report(db, tmp_path, trials)
    assert "comparisons are **observational**" in markdown
    assert "python -m study.run --sampler grid --repeats 3 --activations relu,leaky_relu,tanh" in markdown


@pytest.mark.slow  # a real study
def test_unknown_study_lists_the_studies(real_study, capsys):
    storage, _ = real_study
    assert main(["--storage", storage, "--study-name", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no study 'nope' in" in err and "studies there: 'cnn-study'" in err


def test_missing_database_is_not_created(tmp_path, capsys):
    assert main(["--storage", f"sqlite:///{tmp_path / 'none.db'}", "--out", str(tmp_path / "out")]) == 2
    assert "there is no study database at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "out").exists()


def test_dashboard_note_holds_the_report(db, tmp_path):
    from optuna_dashboard._note import get_note

    make_study(db, [make_trial("relu", "cross_entropy", 1e-3, [30.0, 40.0, 50.0])])
    assert main(["--storage", db, "--study-name", "synthetic", "--out", str(tmp_path), "--dashboard-note", "--no-samples"]) == 0
    note = get_note(optuna.load_study(study_name="synthetic", storage=db))
    assert note == (tmp_path / "report.md").read_text()


def _report(db, tmp_path, trials) -> str:
    make_study(db, trials)
    return build_report(load_frames(db, "synthetic"), tmp_path, samples=False).read_text()


def test_empty_study_says_nothing_can_be_answered(db, tmp_path):
    markdown = _report(db, tmp_path, [])
    assert "No finished trials yet" in markdown and "## 1." not in markdown


def test_single_trial_report(db, tmp_path):
    markdown = _report(db, tmp_path, [make_trial("relu", "cross_entropy", 1e-3, [30.0, 40.0, 50.0], baseline=True)])
    assert "Only one activation was tried (relu)" in markdown
    assert "The best trial is the notebook's own configuration" in markdown
    assert "Hardest classes: cat 74.1%" in markdown  # 20 of 27 cat images right
    for link in _links(markdown):
        assert (tmp_path / link).read_bytes()[:8] == PNG


def test_only_diverged_trials(db, tmp_path):
    trials = [make_trial(a, "mse", lr, [10.0], diverged=True) for a, lr in (("relu", 0.5), ("tanh", 0.8), ("relu", 0.9))]
    markdown = _report(db, tmp_path, trials)
    assert "**mse** did not learn at any learning rate tried" in markdown and "Diverged trials: 3" in markdown
    assert "No trial ran all 3 epochs and learned" in markdown


def test_only_pruned_trials(db, tmp_path):
    trials = [make_trial(a, "cross_entropy", lr, [20.0], state="pruned") for a, lr in (("relu", 1e-3), ("tanh", 2e-3), ("relu", 3e-4))]
    markdown = _report(db, tmp_path, trials)
    assert "No complete trial yet: no per-class results." in markdown
    assert "3 trials were pruned, after a median of 1 epoch." in markdown
    assert "No trial ran all 3 epochs" in markdown


def test_margin_and_compare_epoch_flags(db, tmp_path, capsys):
    from reports_tests.conftest import paired_settings, record

    study = optuna.create_study(study_name="paired", storage=db, direction="maximize")
    study.set_user_attr("settings", paired_settings(epochs=3).to_attrs())
    for trial in (record(0, "relu", "mse", 1e-3, 0, [30.0, 40.0, 50.0]), record(1, "tanh", "mse", 1e-3, 0, [30.0, 45.0, 46.0])):
        study.add_trial(
            optuna.create_trial(
                params={"activation": trial.activation, "loss": trial.loss, "lr": trial.lr, "replicate": 0},
                distributions={
                    "activation": optuna.distributions.CategoricalDistribution(("relu", "tanh")),
                    "loss": optuna.distributions.CategoricalDistribution(("mse",)),
                    "lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
                    "replicate": optuna.distributions.IntDistribution(0, 1),
                },
                value=trial.history[-1]["test_acc"],
                user_attrs={"history": trial.history, "diverged": False, "seed": 0},
            )
        )
    out = tmp_path / "out"
    flags = ["--no-samples", "--compare-epoch", "2", "--margin", "3"]
    assert main(["--storage", db, "--study-name", "paired", "--out", str(out), *flags]) == 0
    rows = pd.read_csv(out / "comparisons.csv")
    # At epoch 2 tanh leads by 5 (at the last epoch relu would lead by 4); the margin comes from the flag.
    row = rows[(rows["question"] == "activation") & (rows["lr"] == "0.001")].iloc[0]
    assert (row["a"], row["b"], row["diff"], row["margin"]) == ("tanh", "relu", 5.0, 3.0)
    assert "Questions 1–3 compare at epoch 2" in (out / "report.md").read_text()
    assert main(["--storage", db, "--study-name", "paired", "--out", str(tmp_path / "bad"), "--margin", "-1"]) == 2
    assert "--margin must be a positive number of accuracy points but got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # a real study
def test_intervals_count_the_seeds_and_the_stored_test_images(real_study, tmp_path):
    import numpy as np
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    from study.record import decode_classes

    storage, _ = real_study
    assert main(["--storage", storage, "--study-name", "cnn-study", "--out", str(tmp_path), "--no-samples"]) == 0
    study = optuna.load_study(study_name="cnn-study", storage=storage)
    labels = decode_classes(study.user_attrs["labels"]["test"])
    right = {}
    for t in study.trials:
        predicted = decode_classes(t.user_attrs["predictions"]["test"])
        right[t.number] = predicted == labels[None, :]
        # The stored predictions reproduce the trial's recorded accuracy at every epoch and its last confusion matrix.
        assert [100.0 * r.sum() / len(labels) for r in right[t.number]] == [h["test_acc"] for h in t.user_attrs["history"]]
        confusion = np.zeros((10, 10), dtype=int)
        np.add.at(confusion, (labels, predicted[-1]), 1)
        assert confusion.tolist() == t.user_attrs["confusion"]
    rows = pd.read_csv(tmp_path / "comparisons.csv")
    assert {"se_seeds", "se_images", "df", "n_images"} <= set(rows.columns)
    others = {"activation": ("loss", ("cross_entropy", "bce_with_logits")), "loss": ("activation", ("relu", "tanh"))}
    options = rows[rows["question"].isin(["activation", "loss"]) & ~rows["lr"].isin(["pooled", "interaction"])]
    for row in options.itertuples():
        other, values = others[row.factor]
        blocks = [{other: v, "lr": float(row.lr), "replicate": r} for v in values for r in (0, 1)]
        # Each pair's difference on each of the 200 test images at epoch 2, in points: a 4 x 200 table.
        table = np.array([100.0 * (right[_number(study, **{row.factor: row.a}, **k)][1].astype(float)
                                   - right[_number(study, **{row.factor: row.b}, **k)][1]) for k in blocks])  # fmt: skip
        long = pd.DataFrame({"y": table.ravel(), "pair": np.repeat(np.arange(4), 200), "image": np.tile(np.arange(200), 4)})
        ms = anova_lm(ols("y ~ C(pair) + C(image)", long).fit(), typ=1)["mean_sq"]
        var_seeds = table.mean(axis=1).var(ddof=1) / 4
        var_images = max(0.0, (ms["C(image)"] - ms["Residual"]) / 4) / 200
        assert row.n_images == 200 and row.diff == pytest.approx(table.mean())
        # The pairs' own spread (sd_raw), then moderated within its stratum (se_seeds, on 3 + df_prior df).
        own = row.sd_raw / 2 if math.isfinite(row.sd_raw) else row.se_seeds
        assert own == pytest.approx(var_seeds**0.5) and row.se_images == pytest.approx(var_images**0.5, abs=1e-9)
        assert row.df == pytest.approx(3 + row.df_prior)
        # The printed interval: the t interval at the report's end level (1 − alpha) on those df.
        half = stats.t.ppf(1 - row.alpha / 2, row.df) * (row.se_seeds**2 + var_images) ** 0.5
        assert (row.ci_low, row.ci_high) == pytest.approx((row.diff - half, row.diff + half))
    assert (options["se_images"] > 0).any()  # 200 test images: the images' part is there, and counted
    markdown = (tmp_path / "report.md").read_text()
    # An image folder has no dataset name: the population is new test images drawn like these.
    assert "What the claims are about: new test images drawn like these 200, and new seeds." in markdown


def test_the_reproduce_line_names_the_grid_a_study_left_at_older_defaults():
    # The example ran when the default grid went to lr 0.1 (4 learning rates); its stored command does not say so.
    space = {"activations": ["relu", "leaky_relu", "tanh"], "losses": ["cross_entropy", "mse", "bce_with_logits"],
             "lr_min": 1e-4, "lr_max": 0.1, "grid_lrs": 4}  # fmt: skip
    old = paired_settings(search_space=space, command="python -m study.run --epochs 20")
    assert overview.reproduce(old) == "python -m study.run --epochs 20 --lr-max 0.1 --grid-lrs 4"
    typed = paired_settings(search_space=space, command="python -m study.run --lr-max=0.1 --grid-lrs 4")
    assert overview.reproduce(typed) == typed.command
    default = paired_settings(search_space=SearchSpace().as_dict(), command="python -m study.run --trials 50")
    assert overview.reproduce(default) == default.command
    fewer = paired_settings(search_space={**space, "activations": ["relu", "tanh"]}, sampler="tpe", command="python -m study.run")
    assert overview.reproduce(fewer) == "python -m study.run --activations relu,tanh --lr-max 0.1"
    # A value the command line gives back exactly, so that the command resumes the study it names.
    odd = paired_settings(search_space={**space, "lr_min": 10**-4.5}, command="python -m study.run")
    assert float(overview.reproduce(odd).split("--lr-min ")[1].split()[0]) == 10**-4.5
