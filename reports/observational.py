"""The observational path: a study of another sampler (tpe, random, qmc) has no pairs.

Options were tried at different learning rates and seeds, so each question is answered
observationally: options compared *within learning-rate decades in which all of them were
tried*, with seeded bootstrap intervals, and the exact command of the paired design that would
answer what it leaves open. Each function returns or fills blocks; the numbers come from
``reports.analysis``.
"""

import math
import shlex

import pandas as pd

from reports import analysis, figures
from reports.blocks import Figure, Section, Table, interval, pct, pts
from reports.claims import Comparison
from reports.frames import Frames

SEED = 0  # every bootstrap in the report uses it, so rebuilding gives the same numbers


def matched(frames: Frames) -> dict[str, dict]:
    """The matched comparison of every factor."""
    return {f: analysis.matched_comparison(frames.trials, f, SEED) for f in ("activation", "loss")}


def comparisons(result: dict, factor: str) -> list[Comparison]:
    """Rows of comparisons.csv for an observational (matched) comparison: bootstrap intervals, no p-value, no claim control."""
    rows = []
    decades = ", ".join(analysis.decade_label(d) for d in result["decades"])
    for other, (diff, low, high, separated) in result["separated"].items():
        if math.isnan(low):
            text = "cannot tell: too few trials in the shared decades"
        elif separated:
            text = f"observational: {result['best']} is ahead of {other} by {diff:.1f} points [{low:.1f}, {high:.1f}]"
        else:
            text = f"observational, cannot tell: {result['best']} − {other} = {diff:+.1f} points [{low:.1f}, {high:.1f}]"
        rows.append(
            Comparison(
                question=factor, factor=factor, a=result["best"], b=other, lr=f"matched decades {decades}", epoch="last run",
                n_pairs=0, diff=diff, ci_low=low, ci_high=high, subset="observational (median per decade, bootstrap)",
                kind="observational", detail={"text": text},
            )
        )  # fmt: skip
    return rows


def design_command(frames: Frames) -> str:
    """The exact command of a paired design over this study's options and data that would answer the open questions."""
    s = frames.settings
    space = s.search_space
    lrs = sorted(frames.trials["lr"].dropna().unique())
    lr_min, lr_max = (space.get("lr_min", 1e-5), space.get("lr_max", 1.0)) if space else (lrs[0], lrs[-1])
    args = ["python", "-m", "study.run", "--sampler", "grid", "--repeats", "3"]
    if space:
        args += ["--activations", ",".join(space["activations"]), "--losses", ",".join(space["losses"])]
    args += ["--lr-min", f"{lr_min:g}", "--lr-max", f"{lr_max:g}", "--grid-lrs", str(max(3, round(math.log10(lr_max / lr_min)) + 1))]
    args += ["--epochs", str(s.epochs), "--data-dir", s.data_path]
    if s.train_size and s.train_size != 50_000:
        args += ["--train-size", str(s.train_size)]
    if s.test_size and s.test_size != 10_000:
        args += ["--test-size", str(s.test_size)]
    args += ["--study-name", f"{frames.study_name}-paired"]
    return shlex.join(args)


def options_section(frames: Frames, result: dict, factor: str, title: str, extra: list | None = None) -> Section:
    section = Section(title, numbered=True)
    _observational_options(section, frames, result, factor)
    for block in extra or []:
        section.add(block)
    return section


def _observational_options(section: Section, frames: Frames, result: dict, factor: str) -> None:
    section.add(_comparison_text(result, factor))
    summary = analysis.group_summary(frames.trials, factor, SEED)
    if len(summary) > 1 and summary["median_gap"].notna().any():
        gaps = ", ".join(f"{row[factor]} {pts(row['median_gap'])}" for _, row in summary.iterrows())
        section.add(f"Median gap between training and test accuracy at the last epoch (points, complete trials): {gaps}.")
    section.add("Matched comparison (observational):", Table(_matched_table(result, factor)))
    section.add(
        "All finished trials (raw; the sampler may have tried some options at better learning rates):", Table(_group_table(summary, factor))
    )
    if any(not sep for *_, sep in result["separated"].values()) or result["best"] is None:
        section.add(f"To answer this with pairs on the same seeds, run the paired design:\n\n```\n{design_command(frames)}\n```")
    section.add(
        Figure(
            f"{factor}_accuracy",
            f"test accuracy by {factor}",
            lambda: figures.accuracy_by(frames.trials, factor, result["decades"], frames.chance),
        )
    )


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
        f"Observational: compared within the learning-rate decades in which every {by} was tried ({decades}; n = {result['n']} "
        f"trials), the mean over decades of the median accuracy is: {', '.join(parts)}."
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
        text.append(f"Cannot tell {best} from {'; '.join(tied)}.")
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


def lr_section(frames: Frames) -> Section:
    section = Section("What happens when the learning rate is too high or too low?", numbered=True)
    _observational_lr(section, frames)
    section.add(Figure("lr_accuracy", "test accuracy against learning rate", lambda: figures.accuracy_vs_lr(frames.trials, frames.chance)))
    return section


def epochs_section(frames: Frames) -> Section:
    section = Section("Does performance always improve with more epochs?", numbered=True)
    _observational_epochs(section, frames)
    return section


def _observational_lr(section: Section, frames: Frames) -> None:
    chance = frames.chance
    lr_by = analysis.lr_table(frames.trials, "loss", chance)
    if not len(lr_by):
        section.add("No finished trial yet.")
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
    section.add(*sentences)
    section.add(
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
    section.add(Table(shown))


def _observational_epochs(section: Section, frames: Frames) -> None:
    n_epochs = frames.n_epochs
    result = analysis.epoch_curves(frames.epochs, frames.trials, n_epochs, frames.chance, SEED)
    pruned = int((frames.trials["state"] == "pruned").sum())
    if result["n"] == 0:
        section.add(
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
            f" In {result['fell']} of them test accuracy at the last epoch was below its peak while training accuracy kept rising "
            "(each drop not tested against the test set's noise: run the paired design for a verdict)."
        )
    else:
        text += " In none of them did test accuracy end below its peak while training accuracy rose: within these epochs, more helped."
    if len(gains):
        first, last = gains.iloc[0], gains.iloc[-1]
        text += (
            f" The median gain from one more epoch is {pts(first['median_gain'])} points at epoch {int(first['epoch'])} "
            f"and {pts(last['median_gain'])} points at epoch {int(last['epoch'])} (95% CI {interval(last['ci_low'], last['ci_high'])})."
        )
    section.add(text)
    section.add(
        f"Pruned trials ({pruned}) have cut-off curves and are left out here, as are diverged trials and trials that never learned. "
        "The trials that ran all epochs are the ones the pruner kept, the better ones, so these curves describe settings that learn well."
    )
    section.add(
        Table(
            pd.DataFrame(
                {
                    "epoch": gains["epoch"].astype(str),
                    "n": gains["n"].astype(str),
                    "median gain in test acc (points)": gains["median_gain"].map(pts),
                    "95% CI": [interval(lo, hi) for lo, hi in zip(gains["ci_low"], gains["ci_high"], strict=True)],
                }
            )
        ),
        Figure(
            "epochs_train_test", "train and test accuracy per epoch", lambda: figures.train_vs_test(frames.epochs, peaks.index.tolist())
        ),
        Figure("epochs_peak", "epoch of peak test accuracy", lambda: figures.peak_epochs(peaks, n_epochs)),
    )
