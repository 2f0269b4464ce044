"""``python -m reports.build``: turn a study database into a markdown report with figures and CSVs.

The report answers the notebook's four questions (activation, loss, learning rate, epochs)
with numbers, intervals and sample sizes, and looks at the data: sample images, per-class
accuracy and confusions of the best and the baseline trial.
"""

import argparse
import math
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pandas as pd

from cnn import DataError, load_data
from cnn.cli import ArgumentParser
from reports import analysis, figures
from reports.frames import Frames, load_frames
from study.space import BASELINE
from study.storage import DEFAULT_STORAGE, StudyError, command_line, output_dir

SEED = 0  # every bootstrap in the report uses it, so rebuilding gives the same numbers


def pct(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}%"


def pts(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.2f}"


def interval(low: float, high: float) -> str:
    return "–" if math.isnan(low) else f"[{low:.2f}, {high:.2f}]"


def table(frame: pd.DataFrame) -> str:
    """A markdown table; numbers are already formatted as strings by the caller."""
    return frame.to_markdown(index=False, disable_numparse=True) if len(frame) else "_(no rows)_"


class Report:
    """Collects markdown and figures for one output folder."""

    def __init__(self, out: Path):
        self.out = out
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        self.lines.append("")

    def figure(self, fig: plt.Figure, name: str, caption: str) -> None:
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.add(f"![{caption}]({path.name})")

    def markdown(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


def _chance(frames: Frames) -> float:
    return 100.0 / len(frames.classes)


def _header(r: Report, frames: Frames, note: str | None = None, command: str | None = None) -> None:
    s, attrs, trials = frames.settings, frames.attrs, frames.trials
    counts = trials["state"].value_counts()
    diverged = int(trials.loc[trials["state"] == "complete", "diverged"].sum())
    selection = s.get("selection", "test")
    devices = ", ".join(sorted({f"{d} ({p})" for d, p in zip(trials["device"], trials["precision"], strict=True) if d})) or "–"
    r.add(f"# What changes the notebook's CNN? Study `{frames.study_name}`")
    if note:
        r.add(note)
    r.add(
        "The lecture notebook trains a 3-block CNN on CIFAR-10 and asks four questions. This report answers them "
        "from the trials of one Optuna study; every number below is computed from the study database."
    )
    source = {"folder": "image folder", "cifar10": "CIFAR-10 (torchvision)"}.get(s.get("data_source"), "?")
    data_line = f"{source} at `{s.get('data_path', '?')}`"
    augment = "augmentation " + ("on" if s.get("augment") else "off")
    rows = [
        ("data", data_line),
        ("images", f"{s.get('train_size', '?')} train, {s.get('val_size', 0)} validation, {s.get('test_size', '?')} test"),
        (
            "training",
            f"{s.get('epochs', '?')} epochs, batch {s.get('batch_size', '?')}, {s.get('optimizer', '?')}, {augment}",
        ),
        ("search space", _space_text(s.get("search_space", {}), trials if attrs.get("sampler") == "grid" else None)),
        ("sampler, pruner", f"{attrs.get('sampler', '?')}, {attrs.get('pruner', '?')}"),
        ("device", devices),
        ("pruning and selection on", f"{selection} accuracy"),
        (
            "trials",
            f"{counts.get('complete', 0)} complete (of which {diverged} diverged), {counts.get('pruned', 0)} pruned, "
            f"{counts.get('fail', 0)} failed, {counts.get('running', 0) + counts.get('waiting', 0)} running or waiting",
        ),
        ("reproduce", f"`{attrs.get('command', 'python -m study.run')}`"),
    ]
    if command:
        rows.append(("this report", f"`{command}`"))
    r.add(table(pd.DataFrame(rows, columns=["protocol", "value"])))
    if selection == "test":
        r.add(
            "> Pruning and the choice of the best trial used **test** accuracy, as the notebook measures it. "
            "The best accuracy is therefore optimistic: it was picked as the maximum of many noisy measurements "
            "on the same test images. Run with `--val-split 0.1` for an unbiased choice."
        )
    r.add(
        "How to read it: a trial's *accuracy* is its test accuracy after the last epoch it ran. Pruned trials count "
        "with the accuracy they had when pruned (a lower bound of what they would have reached); diverged trials with "
        "the accuracy they had when the loss became NaN or infinite. Intervals are 95% bootstrap intervals "
        f"({analysis.N_BOOT} resamples, seed {SEED}); *n* is the number of trials behind a number."
    )


def _space_text(space: dict, grid_trials: pd.DataFrame | None = None) -> str:
    if not space:
        return "?"
    if grid_trials is not None and grid_trials["lr"].notna().any():
        lrs = f"lr ∈ {{{', '.join(f'{lr:g}' for lr in sorted(grid_trials['lr'].dropna().unique()))}}} (grid)"
    else:
        lrs = f"lr log-uniform in [{space['lr_min']:g}, {space['lr_max']:g}]"
    return f"activation ∈ {{{', '.join(space['activations'])}}}, loss ∈ {{{', '.join(space['losses'])}}}, {lrs}"


def _comparison_text(result: dict, by: str) -> str:
    """The short answer of a matched comparison: scores, and which differences the data can resolve."""
    if result["best"] is None:
        return f"No learning-rate decade holds trials of every {by}, so no matched comparison is possible yet."
    t = result["table"]
    decades = ", ".join(analysis.decade_label(d) for d in result["decades"])
    if len(t) == 1:
        return f"Only one {by} was tried ({t[by].iloc[0]}): there is nothing to compare it with."
    parts = [f"**{row[by]}** {pct(row['score'])} {interval(row['ci_low'], row['ci_high'])}" for _, row in t.iterrows()]
    text = [
        f"Compared within the learning-rate decades in which every {by} was tried ({decades}; n = {result['n']} trials), "
        f"the mean over decades of the median accuracy is: {', '.join(parts)}."
    ]
    best = result["best"]
    ahead, tied, few = [], [], []
    for other, (diff, low, high, separated) in result["separated"].items():
        if separated:
            ahead.append(f"{other} by {diff:.2f} points [{low:.2f}, {high:.2f}]")
        elif math.isnan(low):
            few.append(other)
        else:
            tied.append(f"{other} (difference {diff:.2f} points, interval [{low:.2f}, {high:.2f}] includes 0)")
    if ahead:
        text.append(f"{best} is ahead of {'; '.join(ahead)}.")
    if tied:
        text.append(f"The data cannot separate {best} from {'; '.join(tied)}: more trials are needed to rank them.")
    if few:
        text.append(
            f"Fewer than {analysis.MIN_TRIALS} trials in the shared decades stand behind {best} or {', '.join(few)}: "
            "too few to rank them, whatever the medians say."
        )
    return " ".join(text)


def _group_table(summary: pd.DataFrame, by: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            by: summary[by],
            "n": summary["trials"].astype(str),
            "complete / pruned / diverged": [
                f"{c} / {p} / {d}" for c, p, d in zip(summary["complete"], summary["pruned"], summary["diverged"], strict=True)
            ],
            "median acc [95% CI]": [
                f"{pct(m)} {interval(lo, hi)}"
                for m, lo, hi in zip(summary["median_acc"], summary["ci_low"], summary["ci_high"], strict=True)
            ],
            "best acc": summary["best_acc"].map(pct),
            "median train−test gap (points)": summary["median_gap"].map(pts),
        }
    )


def _matched_table(result: dict, by: str) -> pd.DataFrame:
    t = result["table"]
    if not len(t):
        return t
    return pd.DataFrame(
        {
            by: t[by],
            "n (shared decades)": t["trials"].astype(str),
            "score: mean of decade medians": t["score"].map(pct),
            "95% CI": [interval(lo, hi) for lo, hi in zip(t["ci_low"], t["ci_high"], strict=True)],
        }
    )


def _question_group(r: Report, frames: Frames, by: str, number: int, title: str) -> None:
    r.add(f"## {number}. {title}")
    result = analysis.matched_comparison(frames.trials, by, SEED)
    summary = analysis.group_summary(frames.trials, by, SEED)
    r.add(_comparison_text(result, by))
    if len(summary) > 1 and summary["median_gap"].notna().any():
        gaps = ", ".join(f"{row[by]} {pts(row['median_gap'])}" for _, row in summary.iterrows())
        r.add(f"Median gap between training and test accuracy at the last epoch (points, complete trials): {gaps}.")
    r.add("Matched comparison (the fair one):", "", table(_matched_table(result, by)))
    r.add(
        "All finished trials (raw; the sampler may have tried some options at better learning rates):", "", table(_group_table(summary, by))
    )
    r.figure(figures.accuracy_by(frames.trials, by, result["decades"], _chance(frames)), f"{by}_accuracy", f"test accuracy by {by}")


def _question_loss_curves(r: Report, frames: Frames) -> None:
    if (frames.epochs["state"] == "complete").any():
        r.add(
            "Raw loss values of different losses are on different scales and cannot be compared; the curves compare "
            "test accuracy per epoch instead."
        )
        r.figure(figures.learning_curves(frames.epochs, "loss"), "loss_curves", "learning curves by loss")


def _question_lr(r: Report, frames: Frames) -> None:
    r.add("## 3. What happens when the learning rate is too high or too low?")
    chance = _chance(frames)
    lr_by = analysis.lr_table(frames.trials, "loss", chance)
    if not len(lr_by):
        r.add("No finished trial yet.")
        return
    ranges = analysis.lr_ranges(lr_by, "loss", chance)
    sentences = []
    for _, row in ranges.iterrows():
        if row["best_median"] <= chance + analysis.CHANCE_MARGIN:
            sentences.append(
                f"**{row['loss']}** did not learn at any learning rate tried: every decade's median is within "
                f"{analysis.CHANCE_MARGIN:g} points of chance. Diverged trials: {row['diverged']}."
            )
            continue
        low, high = analysis.power_label(row["good_low"]), analysis.power_label(row["good_high"] + 1)
        text = (
            f"**{row['loss']}** learns best at lr {analysis.decade_label(row['best_decade'])} (median {pct(row['best_median'])}); "
            f"within {analysis.GOOD_RANGE_POINTS:g} points of that from {low} to {high}."
        )
        if row["slow_decades"]:
            text += f" Below {low} learning is too slow (median {pct(row['slow_median'])})."
        if row["high_decades"]:
            text += f" From {high} up accuracy drops (median {pct(row['high_median'])})"
            if pd.notna(row["unstable_from"]):
                text += f", and from lr {analysis.power_label(int(row['unstable_from']))} on trials end at chance level or diverge"
            text += "."
        text += f" Diverged trials: {row['diverged']}."
        sentences.append(text)
    r.add(*sentences)
    r.add(
        f"Rule used: the decade with the highest median accuracy is the best; decades within {analysis.GOOD_RANGE_POINTS:g} points of it "
        f"learn well; smaller learning rates are too slow, larger ones too high. Chance is {chance:.0f}%; a median within "
        f"{analysis.CHANCE_MARGIN:g} points of it counts as no learning. With few trials per decade these ranges are rough: check n below."
    )
    shown = pd.DataFrame(
        {
            "loss": lr_by["loss"],
            "lr decade": lr_by["decade"].map(analysis.decade_label),
            "n": lr_by["trials"].astype(str),
            "median acc": lr_by["median_acc"].map(pct),
            "best acc": lr_by["best_acc"].map(pct),
            "diverged": lr_by["diverged"].astype(str),
            "at chance": lr_by["at_chance"].astype(str),
        }
    )
    r.add(table(shown))
    r.figure(figures.accuracy_vs_lr(frames.trials, chance), "lr_accuracy", "test accuracy against learning rate")


def _question_epochs(r: Report, frames: Frames) -> None:
    r.add("## 4. Does performance always improve with more epochs?")
    n_epochs = int(frames.settings.get("epochs", frames.epochs["epoch"].max() if len(frames.epochs) else 1))
    result = analysis.epoch_curves(frames.epochs, frames.trials, n_epochs, _chance(frames), SEED)
    pruned = int((frames.trials["state"] == "pruned").sum())
    if result["n"] == 0:
        r.add(
            f"No trial ran all {n_epochs} epochs and learned (peak test accuracy at least 10 points above chance), so this "
            f"question cannot be answered from this study yet. {pruned} trials were pruned."
        )
        return
    peaks = result["peak_epochs"]
    last_peak = int((peaks == n_epochs).sum())
    gains = result["gains"]
    text = (
        f"Of the {result['n']} trials that ran all {n_epochs} epochs and learned, {last_peak} reached their best test accuracy in the "
        f"last epoch and {result['n'] - last_peak} earlier (median peak epoch {peaks.median():g})."
    )
    if result["fell"]:
        text += (
            f" In {result['fell']} of them test accuracy at the last epoch was below its peak while training accuracy kept rising: "
            "more epochs did not always help, the extra ones fitted the training images at the expense of the test images."
        )
    else:
        text += " In none of them did test accuracy end below its peak while training accuracy rose: within these epochs, more helped."
    if len(gains):
        first, last = gains.iloc[0], gains.iloc[-1]
        text += (
            f" The median gain from one more epoch is {pts(first['median_gain'])} points at epoch {int(first['epoch'])} "
            f"and {pts(last['median_gain'])} points at epoch {int(last['epoch'])} (95% CI {interval(last['ci_low'], last['ci_high'])})."
        )
    r.add(text)
    r.add(
        f"Pruned trials ({pruned}) have cut-off curves and are left out here, as are diverged trials and trials that never learned; "
        "the pruning section below shows when trials were stopped. The trials that ran all epochs are the ones the pruner kept, "
        "the better ones, so these curves describe settings that learn well."
    )
    shown = pd.DataFrame(
        {
            "epoch": gains["epoch"].astype(str),
            "n": gains["n"].astype(str),
            "median gain in test acc (points)": gains["median_gain"].map(pts),
            "95% CI": [interval(lo, hi) for lo, hi in zip(gains["ci_low"], gains["ci_high"], strict=True)],
        }
    )
    r.add(table(shown))
    r.figure(figures.train_vs_test(frames.epochs, peaks.index.tolist()), "epochs_train_test", "train and test accuracy per epoch")
    r.figure(figures.peak_epochs(peaks, n_epochs), "epochs_peak", "epoch of peak test accuracy")


def _best_and_baseline(frames: Frames) -> tuple[pd.Series | None, pd.Series | None]:
    complete = frames.trials[frames.trials["state"] == "complete"]
    best = complete.loc[complete["value"].idxmax()] if len(complete) else None
    marked = frames.trials[frames.trials["baseline"]]
    if not len(marked):
        same = (frames.trials["activation"] == BASELINE["activation"]) & (frames.trials["loss"] == BASELINE["loss"])
        marked = frames.trials[same & (frames.trials["lr"] - BASELINE["lr"]).abs().lt(1e-12)]
    marked = marked[marked["state"].isin(["complete", "pruned"])]
    baseline = marked.iloc[0] if len(marked) else None
    return best, baseline


def _data_section(r: Report, frames: Frames, samples: bool) -> None:
    r.add("## The data and the mistakes")
    if samples:
        _samples(r, frames)
    else:
        r.add("Sample images are left out of this report (built with `--no-samples`).")
    best, baseline = _best_and_baseline(frames)
    n_test = int(frames.settings.get("test_size", 0))
    if best is None:
        r.add("No complete trial yet: no per-class results.")
        return
    shown = [("best", best)] + ([("baseline", baseline)] if baseline is not None and baseline["number"] != best["number"] else [])
    if baseline is not None and baseline["number"] == best["number"]:
        r.add(f"The best trial is the notebook's own configuration (trial #{int(best['number'])}: relu, cross_entropy, lr 0.001).")
    elif baseline is not None and n_test:
        diff, low, high = analysis.difference_interval(best["final_test_acc"], baseline["final_test_acc"], n_test)
        r.add(
            f"The best trial (#{int(best['number'])}: {best['activation']}, {best['loss']}, lr {best['lr']:.3g}) reaches "
            f"{pct(best['final_test_acc'])} test accuracy; the notebook's configuration (trial #{int(baseline['number'])}, "
            f"relu, cross_entropy, lr 0.001) reaches {pct(baseline['final_test_acc'])}. Difference {pts(diff)} points, 95% interval "
            f"[{low:.2f}, {high:.2f}] from test-set sampling alone ({n_test} images); it leaves out the run-to-run variation "
            "of training and the optimism of picking the best of many trials."
        )
    elif baseline is None:
        r.add("The study holds no trial of the notebook's configuration (relu, cross_entropy, lr 0.001) to compare with.")
    for label, trial in shown:
        confusion = frames.confusion.get(int(trial["number"]))
        if confusion is None:
            continue
        per_class = analysis.per_class_accuracy(confusion, frames.classes).sort_values("accuracy", kind="stable")
        pairs = analysis.confused_pairs(confusion, frames.classes)
        lo, hi = analysis.accuracy_interval(trial["final_test_acc"], n_test) if n_test else (math.nan, math.nan)
        r.add(f"### {label.capitalize()} trial #{int(trial['number'])}: {pct(trial['final_test_acc'])} {interval(lo, hi)}")
        hardest = ", ".join(f"{row['class']} {pct(row['accuracy'], 1)}" for _, row in per_class.head(3).iterrows())
        easiest = ", ".join(f"{row['class']} {pct(row['accuracy'], 1)}" for _, row in per_class.tail(2).iloc[::-1].iterrows())
        top = pairs.iloc[0]
        r.add(f"Hardest classes: {hardest}; easiest: {easiest}. Most confused pair: {top['pair']} ({top['total']} test images).")
        r.add(
            table(
                pd.DataFrame(
                    {
                        "class": per_class["class"],
                        "test images": per_class["images"].astype(str),
                        "accuracy": per_class["accuracy"].map(lambda a: pct(a, 1)),
                    }
                )
            )
        )
        r.add(
            table(
                pd.DataFrame({"confused pair": pairs["pair"], "a as b": pairs["a_as_b"].astype(str), "b as a": pairs["b_as_a"].astype(str)})
            )
        )
        r.figure(
            figures.confusion_heatmap(confusion, frames.classes, f"{label} trial #{int(trial['number'])}: confusion on the test set"),
            f"confusion_{label}",
            f"confusion matrix of the {label} trial",
        )


def _samples(r: Report, frames: Frames) -> None:
    path = frames.settings.get("data_path")
    try:
        data = load_data(path, download=False)
    except (DataError, TypeError):
        r.add(f"Sample images are left out: the data folder `{path}` is not readable on this machine.")
        return
    r.add("Training images with their class names (the notebook's own cell for this failed with `Numpy is not available`):")
    r.figure(figures.sample_grid(data.train.images, data.train.labels, list(data.classes)), "samples", "sample training images")


def _study_section(r: Report, frames: Frames) -> None:
    r.add("## The study itself")
    done = analysis.finished(frames.trials)
    top = done.sort_values("final_test_acc", ascending=False).head(10)
    r.add("Best trials:")
    r.add(
        table(
            pd.DataFrame(
                {
                    "trial": top["number"].astype(str),
                    "state": top["state"],
                    "activation": top["activation"],
                    "loss": top["loss"],
                    "lr": top["lr"].map(lambda v: f"{v:.3g}"),
                    "test acc": top["final_test_acc"].map(pct),
                    "epochs": top["epochs_run"].astype(str),
                }
            )
        )
    )
    study = frames.study
    complete = (frames.trials["state"] == "complete").sum()
    if study is not None and complete >= 2:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        except (RuntimeError, ValueError) as error:
            r.add(f"Parameter importances could not be computed: {error}.")
        else:
            listed = ", ".join(f"{k} {v:.2f}" for k, v in values.items())
            r.add(f"Parameter importance (Optuna's PED-ANOVA, deterministic; {complete} complete trials): {listed}.")
            r.figure(figures.importances(values), "importances", "parameter importances")
    r.figure(figures.optimization_history(frames.trials), "history", "optimisation history")
    pruned = frames.trials[frames.trials["state"] == "pruned"]
    if len(pruned):
        n_epochs = int(frames.settings.get("epochs", pruned["epochs_run"].max()))
        median = pruned["epochs_run"].median()
        r.add(f"{len(pruned)} trials were pruned, after a median of {median:g} epoch{'s' if median != 1 else ''}.")
        r.figure(figures.pruning_epochs(frames.trials, n_epochs), "pruning", "when trials were pruned")
    r.add(
        "Data behind this report: [trials.csv](trials.csv) (one row per trial) and [epochs.csv](epochs.csv) (one row per trial and epoch)."
    )


def build_report(frames: Frames, out: str | Path, samples: bool = True, note: str | None = None, command: str | None = None) -> Path:
    """Write ``report.md``, its PNG figures and the CSVs of ``frames`` into ``out``.

    Args:
        frames: the study, read by ``reports.frames``.
        out: the output folder, created when missing.
        samples: include a grid of sample training images (needs the data folder).
        note: a paragraph placed under the title, for example what the data is.
        command: the command that built the report, shown in the header.

    Returns:
        The path of ``report.md``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames.trials.to_csv(out / "trials.csv", index=False)
    frames.epochs.to_csv(out / "epochs.csv", index=False)
    r = Report(out)
    _header(r, frames, note, command)
    if not len(analysis.finished(frames.trials)):
        r.add("## No finished trials yet", "The study holds no complete or pruned trial, so none of the questions can be answered yet.")
        r.add(f"Run trials with `{frames.attrs.get('command', 'python -m study.run')}` and build the report again.")
    else:
        _question_group(r, frames, "activation", 1, "What changes when the activation function changes?")
        _question_group(r, frames, "loss", 2, "What changes when the loss changes?")
        _question_loss_curves(r, frames)
        _question_lr(r, frames)
        _question_epochs(r, frames)
        _data_section(r, frames, samples)
        _study_section(r, frames)
    path = out / "report.md"
    path.write_text(r.markdown())
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m reports.build",
        description="Build a markdown report (figures as PNG, data as CSV) that answers the notebook's questions from a study database.",
    )
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna storage URL (default: {DEFAULT_STORAGE})")
    parser.add_argument("--study-name", default="cnn-study", help="study to report on (default: cnn-study)")
    parser.add_argument("--out", help="output folder (default: <study-name>-report beside a SQLite database, else under runs/)")
    parser.add_argument("--no-samples", action="store_true", help="leave the grid of sample training images out (for a published report)")
    parser.add_argument("--note", help="a paragraph to put under the report's title, for example what the data is")
    parser.add_argument("--dashboard-note", action="store_true", help="also save the report's text as the study's note in optuna-dashboard")
    return parser


def save_dashboard_note(frames: Frames, markdown: str) -> None:
    """Store the report text as the study's note, shown by optuna-dashboard (figures are not embedded)."""
    from optuna_dashboard import save_note

    save_note(frames.study, markdown)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out) if args.out else output_dir(args.storage, args.study_name, "report")
    try:
        frames = load_frames(args.storage, args.study_name)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else argv
    command = command_line("reports.build", ["…" if a == args.note else a for a in argv])  # the note itself is printed above
    path = build_report(frames, out, samples=not args.no_samples, note=args.note, command=command)
    if args.dashboard_note:
        save_dashboard_note(frames, path.read_text())
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
