"""The report's sections: each a function of the frames (and the computed comparisons) that returns blocks."""

import math
import shlex

import pandas as pd

from cnn import DataError, load_data
from reports import analysis, figures, paired
from reports.blocks import Figure, Heading, Section, Table, Text, interval, lr_text, pct, plural, pts
from reports.frames import Frames

SEED = 0  # every bootstrap in the report uses it, so rebuilding gives the same numbers
SOURCES = {"folder": "image folder", "cifar10": "CIFAR-10 (torchvision)"}
REGIMES = {  # how the learning-rate answer names each regime of paired.lr_ranges
    "good": f"good (at most {paired.WITHIN_POINTS:g} points below the best)",
    "too low": "too low",
    "too low (at chance)": "too low, at chance",
    "too high": "too high",
    "too high (at chance)": "too high, at chance",
    "unclear": "cannot tell yet",
}


class Results:
    """Everything the question sections compute once, and the rows of ``comparisons.csv``."""

    def __init__(self, frames: Frames):
        self.paired = frames.settings.paired
        self.rows: list[dict] = []
        if self.paired:
            self.design = paired.design_trials(frames.trials, frames.n_epochs)
            self.acc = paired.accuracy_at_epochs(frames.epochs, frames.trials, frames.n_epochs)
            self.options = {
                f: paired.compare_options(self.design, self.acc, f, frames.chance, q)
                for f, q in (("activation", "activation"), ("loss", "loss"))
            }
            self.lr = paired.lr_ranges(self.design, self.acc, frames.chance)
            self.epochs = paired.epoch_verdicts(frames, self.design, self.acc)
            for result in (*self.options.values(), self.lr, self.epochs):
                self.rows.extend(result["rows"])
        else:
            self.matched = {f: analysis.matched_comparison(frames.trials, f, SEED) for f in ("activation", "loss")}
            for factor, result in self.matched.items():
                self.rows.extend(_matched_rows(result, factor))

    def comparisons(self) -> pd.DataFrame:
        return paired.comparisons_frame(self.rows)


def _matched_rows(result: dict, factor: str) -> list[dict]:
    """Rows of comparisons.csv for an observational (matched) comparison."""
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
            {
                "question": factor,
                "factor": factor,
                "a": result["best"],
                "b": other,
                "lr": f"matched decades {decades}",
                "epoch": "last run",
                "n_pairs": 0,
                "diff": diff,
                "ci_low": low,
                "ci_high": high,
                "verdict": text,
                "subset": "observational (median per decade, bootstrap)",
            }
        )
    return rows


def header(frames: Frames, note: str | None = None, command: str | None = None) -> list:
    s, trials = frames.settings, frames.trials
    counts = analysis.counts(trials)
    devices = ", ".join(sorted({f"{d} ({p})" for d, p in zip(trials["device"], trials["precision"], strict=True) if d})) or "–"
    blocks: list = []
    if note:
        blocks.append(Text(note))
    blocks.append(
        Text(
            "The lecture notebook trains a 3-block CNN on CIFAR-10 and asks four questions. This report answers them "
            "from the trials of one Optuna study; every number below is computed from the study database."
        )
    )
    rows = [
        ("data", f"{SOURCES.get(s.data_source, '?')} at `{s.data_path}`"),
        ("images", f"{s.train_size} train, {s.val_size} validation, {s.test_size} test"),
        ("training", f"{plural(s.epochs, 'epoch')}, batch {s.batch_size}, {s.optimizer}, augmentation {'on' if s.augment else 'off'}"),
        ("search space", _space_text(s.search_space, trials if s.sampler == "grid" else None)),
        ("design", _design_text(frames)),
        ("sampler, pruner", f"{s.sampler}, {s.pruner_text}"),
        ("device", devices),
        ("pruning and selection on", f"{s.selection} accuracy"),
        (
            "trials",
            f"{counts['complete']} complete (of which {counts['diverged']} diverged), {counts['pruned']} pruned, "
            f"{counts['fail']} failed, {counts['running'] + counts['waiting']} running or waiting",
        ),
        ("reproduce", f"`{s.command}`"),
    ]
    if command:
        rows.append(("this report", f"`{command}`"))
    blocks.append(Table(pd.DataFrame(rows, columns=["protocol", "value"])))
    if s.selection == "test":
        blocks.append(
            Text(
                "> Pruning and the choice of the best trial used **test** accuracy, as the notebook measures it. "
                "The best accuracy is therefore optimistic: it was picked as the maximum of many noisy measurements "
                "on the same test images. Run with `--val-split 0.1` for an unbiased choice."
            )
        )
    if s.paired:
        how = (
            "How to read it: trials of the same replicate train from the same seed (same initial weights, same batches), "
            "so two trials that differ in one option only form a *pair*, and their difference is free of run-to-run "
            "noise. Each comparison is the mean paired difference *a − b* in accuracy points with a 95% t interval and "
            "*n* pairs; a difference is claimed only when its interval excludes zero. A pair is compared at the last "
            "epoch both of its trials reached. Every verdict is a row of [comparisons.csv](comparisons.csv)."
        )
    else:
        how = (
            "How to read it: a trial's *accuracy* is its test accuracy after the last epoch it ran. Pruned trials count "
            "with the accuracy they had when pruned (a lower bound of what they would have reached); diverged trials with "
            "the accuracy they had when the loss became NaN or infinite. Intervals are 95% bootstrap intervals "
            f"({analysis.N_BOOT} resamples, seed {SEED}); *n* is the number of trials behind a number. This study has no "
            "paired design, so its comparisons are **observational**: options were tried at different learning rates and "
            "seeds, and the verdicts are weaker than a paired design's."
        )
    blocks.append(Text(how))
    return blocks


def _design_text(frames: Frames) -> str:
    s = frames.settings
    if not s.paired:
        return "none (observational): every trial is its own sample" if s.format >= 2 else "none (first release: seed from trial number)"
    reps = sorted(frames.trials["replicate"].dropna().unique())
    seeds = ", ".join(str(s.seed + int(r)) for r in reps)
    return f"paired: {s.repeats} replicate{'s' if s.repeats != 1 else ''} of the grid, seeds {seeds} (seed {s.seed} + replicate)"


def _space_text(space: dict, grid_trials: pd.DataFrame | None = None) -> str:
    if not space:
        return "?"
    if grid_trials is not None and grid_trials["lr"].notna().any():
        lrs = f"lr ∈ {{{', '.join(f'{lr:g}' for lr in sorted(grid_trials['lr'].dropna().unique()))}}} (grid)"
    else:
        lrs = f"lr log-uniform in [{space['lr_min']:g}, {space['lr_max']:g}]"
    return f"activation ∈ {{{', '.join(space['activations'])}}}, loss ∈ {{{', '.join(space['losses'])}}}, {lrs}"


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


def options_section(frames: Frames, results: Results, factor: str, title: str) -> Section:
    section = Section(title, numbered=True)
    if results.paired:
        _paired_options(section, frames, results.options[factor], factor)
    else:
        _observational_options(section, frames, results.matched[factor], factor)
    if factor == "loss" and (frames.epochs["state"] == "complete").any():
        section.add(
            "Raw loss values of different losses are on different scales and cannot be compared; the curves compare "
            "test accuracy per epoch instead.",
            Figure("loss_curves", "learning curves by loss", lambda: figures.learning_curves(frames.epochs, "loss")),
        )
    return section


def _paired_options(section: Section, frames: Frames, result: dict, factor: str) -> None:
    rows = pd.DataFrame(result["rows"], columns=[*paired.COLUMNS, "sd"])
    means = result["means"]
    if not len(rows):
        section.add(f"No block holds trials of two {factor}s yet, so there is no pair to compare.")
        return
    pooled = rows[rows["lr"] == "pooled"]
    if len(pooled):
        lrs = ", ".join(lr_text(lr) for lr in result["pooled_lrs"])
        section.add(
            f"**Pooled over the learning rates where every {factor} learns ({lrs}):**",
            "\n".join(f"- {v}." for v in pooled["verdict"]),
        )
    else:
        section.add(f"No two learning rates let every {factor} learn, so there is no pooled comparison; see each learning rate below.")
    section.add(
        f"**At each learning rate** (where at least one {factor} learns, i.e. is more than {paired.LEARNS_POINTS:g} points above chance):"
    )
    lines = []
    for lr, group in rows[rows["lr"] != "pooled"].groupby("lr", sort=True):
        learners = result["learning"][lr]
        at_chance = sorted(set(means.loc[means["lr"] == lr, factor]) - set(learners))
        note = ""
        if at_chance:
            live = ", ".join(f"{o} {pct(_mean(means, factor, lr, o), 1)}" for o in learners)
            dead = ", ".join(f"{o} {pct(_mean(means, factor, lr, o), 1)}" for o in at_chance)
            note = f": {live} still learn{'s' if len(learners) == 1 else ''}, {dead} at chance"
        lines.append(f"- lr {lr_text(lr)}{note}")
        lines.extend(f"  - {v}" for v in group["verdict"])
    if result["silent_lrs"]:
        lines.append(f"- lr {', '.join(lr_text(lr) for lr in result['silent_lrs'])}: no {factor} learns, nothing to compare")
    section.add("\n".join(lines))
    shown = pd.DataFrame(
        {
            "lr": means["lr"].map(lr_text),
            factor: means[factor],
            "n": means["n"].astype(str),
            "mean test acc [95% CI]": [
                f"{pct(m)} {interval(lo, hi)}" for m, lo, hi in zip(means["mean_acc"], means["ci_low"], means["ci_high"], strict=True)
            ],
        }
    )
    section.add(Table(shown))
    section.add(
        Figure(
            f"{factor}_by_lr",
            f"mean test accuracy by {factor} and learning rate",
            lambda: figures.option_means_by_lr(means, factor, frames.chance),
        ),
        Figure(f"{factor}_differences", f"paired differences between {factor} options", lambda: figures.paired_differences(rows)),
    )
    gaps = analysis.group_summary(frames.trials, factor, SEED)
    if len(gaps) > 1 and gaps["median_gap"].notna().any():
        listed = ", ".join(f"{row[factor]} {pts(row['median_gap'])}" for _, row in gaps.iterrows())
        section.add(f"Median gap between training and test accuracy at the last epoch (points, complete trials): {listed}.")


def _mean(means: pd.DataFrame, factor: str, lr: float, option: str) -> float:
    return float(means.loc[(means["lr"] == lr) & (means[factor] == option), "mean_acc"].iloc[0])


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


def lr_section(frames: Frames, results: Results) -> Section:
    section = Section("What happens when the learning rate is too high or too low?", numbered=True)
    if results.paired:
        _paired_lr(section, frames, results.lr)
    else:
        _observational_lr(section, frames)
    section.add(Figure("lr_accuracy", "test accuracy against learning rate", lambda: figures.accuracy_vs_lr(frames.trials, frames.chance)))
    return section


def _paired_lr(section: Section, frames: Frames, result: dict) -> None:
    ranges = result["ranges"]
    rows_by_loss: dict[str, list[dict]] = {}
    for row in result["rows"]:
        rows_by_loss.setdefault(row["subset"].removeprefix("loss="), []).append(row)
    if not len(ranges):
        section.add("No finished trial yet.")
        return
    sentences = []
    for loss, group in ranges.groupby("loss", sort=True):
        best = group[group["regime"] == "best"].iloc[0]
        if best["mean_acc"] <= frames.chance + paired.LEARNS_POINTS:
            sentences.append(
                f"- **{loss}** learns at no learning rate tried: the best mean is {pct(best['mean_acc'])}, chance is {frames.chance:.0f}%."
            )
            continue
        parts = [f"best lr {lr_text(best['lr'])} ({pct(best['mean_acc'])} {interval(best['ci_low'], best['ci_high'])}, n={best['n']})"]
        for regime in ("good", "too low", "too low (at chance)", "too high", "too high (at chance)", "unclear"):
            rows = group[group["regime"] == regime]
            if len(rows):
                listed = ", ".join(
                    f"{lr_text(r['lr'])} ({pts(r['diff'], 1)} {interval(r['d_low'], r['d_high'], 1)})" for _, r in rows.iterrows()
                )
                parts.append(f"{REGIMES[regime]}: {listed}")
        sentences.append(f"- **{loss}**: " + "; ".join(parts) + ".")
        sentences.extend(f"  - {row['verdict']}" for row in rows_by_loss.get(loss, []))
    section.add(
        "For each loss, every learning rate is compared with the best one on the same seeds (pairs: same activation and "
        "replicate); the numbers in brackets are its paired difference from the best, in points, with a 95% interval.",
        "\n".join(sentences),
        f"A learning rate is *good* when its interval shows it at most {paired.WITHIN_POINTS:g} points below the best; *too low* or "
        f"*too high* when it is clearly worse (interval below 0, by more than {paired.WITHIN_POINTS:g} points on average), on the side "
        f"below or above the best; *at chance* when its mean is within {paired.LEARNS_POINTS:g} points of chance "
        f"({frames.chance:.0f}%). Diverged trials (NaN or infinite loss): {int(frames.trials['diverged'].sum())}.",
    )
    shown = pd.DataFrame(
        {
            "loss": ranges["loss"],
            "lr": ranges["lr"].map(lr_text),
            "n": ranges["n"].astype(str),
            "mean test acc [95% CI]": [
                f"{pct(m)} {interval(lo, hi)}" for m, lo, hi in zip(ranges["mean_acc"], ranges["ci_low"], ranges["ci_high"], strict=True)
            ],
            "vs best (points) [95% CI]": [
                "–" if r == "best" else f"{pts(d)} {interval(lo, hi)}"
                for d, lo, hi, r in zip(ranges["diff"], ranges["d_low"], ranges["d_high"], ranges["regime"], strict=True)
            ],
            "regime": ranges["regime"],
        }
    )
    section.add(Table(shown))


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


def epochs_section(frames: Frames, results: Results) -> Section:
    section = Section("Does performance always improve with more epochs?", numbered=True)
    if results.paired:
        _paired_epochs(section, frames, results.epochs)
    else:
        _observational_epochs(section, frames)
    return section


def _paired_epochs(section: Section, frames: Frames, result: dict) -> None:
    n_epochs = frames.n_epochs
    fell = result["fell"]
    if not len(fell):
        section.add(
            f"No trial ran all {n_epochs} epochs and learned (peak test accuracy more than {paired.LEARNED_POINTS:g} points above chance)."
        )
        return
    rows = {r["lr"]: r for r in result["rows"]}
    lines = []
    for _, f in fell.iterrows():
        lr = f["lr"]
        row = rows.get(lr)
        head = f"- lr {lr_text(lr)} ({int(f['n'])} trials that learned): the mean curve peaks at epoch {int(f['best_epoch'])}"
        if row is None:
            lines.append(head + ".")
            continue
        best, ci = int(f["best_epoch"]), interval(row["ci_low"], row["ci_high"], 1)
        bound = max(abs(row["ci_low"]), abs(row["ci_high"]))
        if best == n_epochs and row["ci_low"] > 0:
            what = f"more epochs still helped: epoch {n_epochs} adds {pts(row['diff'], 1)} points over epoch {n_epochs - 1} {ci}"
        elif best == n_epochs:
            what = f"the last epoch added {pts(row['diff'], 1)} points {ci} over the one before: a plateau"
        elif row["ci_high"] < 0:
            drop = interval(-row["ci_high"], -row["ci_low"], 1)
            what = f"**more epochs hurt**: epoch {n_epochs} is {-row['diff']:.1f} points below epoch {best} {drop}"
        elif bound <= paired.WITHIN_POINTS:
            what = f"a plateau: epoch {n_epochs} is within {bound:.1f} points of epoch {best}"
        else:
            what = f"cannot tell yet whether the last epochs hurt ({pts(row['diff'], 1)} points {ci})"
        lines.append(
            f"{head}; {what} ({row['n_pairs']} trials). {int(f['fell'])} of {int(f['n'])} trials ended more than "
            f"{f['threshold']:.1f} points (two standard errors of the test set) below their own peak."
        )
    section.add("\n".join(lines))
    turns = result["loss_turns"]
    # A rise of at least 2% of the lowest test loss while the training loss fell: smaller wiggles are noise.
    rising = turns[(turns["min_epoch"] < n_epochs) & (turns["train_change"] < 0) & (turns["rise"] >= 0.02 * turns["low"])]
    if len(rising):
        listed = "; ".join(
            f"{r['loss']} at lr {lr_text(r['lr'])}: lowest at epoch {int(r['min_epoch'])}, "
            f"then {pts(r['rise'], 3)} while the training loss moved {pts(r['train_change'], 3)}"
            for _, r in rising.iterrows()
        )
        section.add(
            f"Test loss against training loss (mean over the trials that learned): {listed}. A test loss that rises while "
            "the training loss falls is overfitting: the network grows more confident on the training images and less "
            "right on new ones."
        )
    else:
        section.add("Within these epochs the mean test loss did not turn upward while the training loss fell.")
    section.add(
        "How the verdict is drawn: per learning rate, the epoch at which the mean test-accuracy curve peaks is compared "
        "with the last epoch, trial by trial (a paired difference with a 95% t interval); a drop counts only when that "
        "interval lies below zero. Complete trials that ran every epoch, did not diverge and learned are used.",
        Figure(
            "epochs_train_test", "train and test accuracy per epoch by learning rate", lambda: figures.epoch_curves_by_lr(result["curves"])
        ),
        Figure(
            "epochs_loss",
            "test and training loss per epoch",
            lambda: figures.loss_curves_by_lr(
                frames.epochs, frames.epochs["number"][frames.epochs["lr"].isin(fell["lr"])].unique().tolist()
            ),
        ),
    )


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


def data_section(frames: Frames, samples: bool) -> Section:
    section = Section("The data and the mistakes")
    if samples:
        _samples(section, frames)
    else:
        section.add("Sample images are left out of this report (built with `--no-samples`).")
    baseline_params = frames.settings.baseline
    best, baseline = analysis.best_and_baseline(frames.trials, baseline_params)
    n_test = frames.settings.test_size
    if best is None:
        return section.add("No complete trial yet: no per-class results.")
    described = (
        f"{baseline_params['activation']}, {baseline_params['loss']}, lr {baseline_params['lr']:g}"
        if baseline_params
        else "relu, cross_entropy, lr 0.001"
    )
    same_config = baseline is not None and all(best[k] == baseline[k] for k in ("activation", "loss", "lr"))
    if baseline is not None and baseline["number"] == best["number"]:
        section.add(f"The best trial is the notebook's own configuration (trial #{int(best['number'])}: {described}).")
    elif same_config:
        section.add(
            f"The best trial (#{int(best['number'])}, replicate {int(best['replicate'])}) is the notebook's own configuration "
            f"({described}) trained from another seed: {pct(best['final_test_acc'])} against {pct(baseline['final_test_acc'])} for "
            f"trial #{int(baseline['number'])} (replicate {int(baseline['replicate'])}). "
            f"The {pts(best['final_test_acc'] - baseline['final_test_acc'])} points between them are run-to-run noise of one "
            "configuration (initial weights and batch order): the reason this study compares options on the same seeds."
        )
    elif baseline is not None and n_test:
        diff, low, high = analysis.difference_interval(best["final_test_acc"], baseline["final_test_acc"], n_test)
        section.add(
            f"The best trial (#{int(best['number'])}: {best['activation']}, {best['loss']}, lr {best['lr']:.3g}) reaches "
            f"{pct(best['final_test_acc'])} test accuracy; the notebook's configuration (trial #{int(baseline['number'])}, "
            f"{described}) reaches {pct(baseline['final_test_acc'])}. Difference {pts(diff)} points, 95% interval "
            f"[{low:.2f}, {high:.2f}] from test-set sampling alone ({n_test} images); it leaves out the run-to-run variation "
            "of training and the optimism of picking the best of many trials."
        )
    elif baseline is None:
        section.add(f"The study holds no finished trial of the notebook's configuration ({described}) to compare with.")
    shown = [("best", best)] + ([("baseline", baseline)] if baseline is not None and baseline["number"] != best["number"] else [])
    for label, trial in shown:
        confusion = frames.confusion.get(int(trial["number"]))
        if confusion is None:
            continue
        per_class = analysis.per_class_accuracy(confusion, frames.classes).sort_values("accuracy", kind="stable")
        pairs = analysis.confused_pairs(confusion, frames.classes)
        lo, hi = analysis.accuracy_interval(trial["final_test_acc"], n_test) if n_test else (math.nan, math.nan)
        hardest = ", ".join(f"{row['class']} {pct(row['accuracy'], 1)}" for _, row in per_class.head(3).iterrows())
        easiest = ", ".join(f"{row['class']} {pct(row['accuracy'], 1)}" for _, row in per_class.tail(2).iloc[::-1].iterrows())
        top = pairs.iloc[0]
        number = int(trial["number"])
        section.add(
            Heading(f"{label.capitalize()} trial #{number}: {pct(trial['final_test_acc'])} {interval(lo, hi)}"),
            f"Hardest classes: {hardest}; easiest: {easiest}. Most confused pair: {top['pair']} ({top['total']} test images).",
            Table(
                pd.DataFrame(
                    {
                        "class": per_class["class"],
                        "test images": per_class["images"].astype(str),
                        "accuracy": per_class["accuracy"].map(lambda a: pct(a, 1)),
                    }
                )
            ),
            Table(
                pd.DataFrame({"confused pair": pairs["pair"], "a as b": pairs["a_as_b"].astype(str), "b as a": pairs["b_as_a"].astype(str)})
            ),
            Figure(
                f"confusion_{label}",
                f"confusion matrix of the {label} trial",
                lambda confusion=confusion, label=label, number=number: figures.confusion_heatmap(
                    confusion, frames.classes, f"{label} trial #{number}: confusion on the test set"
                ),
            ),
        )
    return section


def _samples(section: Section, frames: Frames) -> None:
    path = frames.settings.data_path
    try:
        data = load_data(path, download=False)
    except (DataError, TypeError):
        section.add(f"Sample images are left out: the data folder `{path}` is not readable on this machine.")
        return
    section.add(
        "Training images with their class names (the notebook's own cell for this failed with `Numpy is not available`):",
        Figure("samples", "sample training images", lambda: figures.sample_grid(data.train.images, data.train.labels, list(data.classes))),
    )


def study_section(frames: Frames) -> Section:
    section = Section("The study itself")
    done = analysis.finished(frames.trials)
    top = done.sort_values("final_test_acc", ascending=False).head(10)
    section.add(
        "Best trials:",
        Table(
            pd.DataFrame(
                {
                    "trial": top["number"].astype(str),
                    "state": top["state"],
                    "activation": top["activation"],
                    "loss": top["loss"],
                    "lr": top["lr"].map(lambda v: f"{v:.3g}"),
                    "replicate": top["replicate"].astype(str),
                    "test acc": top["final_test_acc"].map(pct),
                    "epochs": top["epochs_run"].astype(str),
                }
            )
        ),
    )
    complete = int((frames.trials["state"] == "complete").sum())
    if complete >= 2:
        try:
            values = analysis.importances(frames.trials, frames.settings.search_space)
        except (RuntimeError, ValueError) as error:
            section.add(f"Parameter importances could not be computed: {error}.")
        else:
            listed = ", ".join(f"{k} {v:.2f}" for k, v in values.items())
            section.add(
                f"Parameter importance (Optuna's PED-ANOVA, deterministic; {complete} complete trials): {listed}.",
                Figure("importances", "parameter importances", lambda: figures.importances(values)),
            )
    section.add(Figure("history", "optimisation history", lambda: figures.optimization_history(frames.trials)))
    pruned = frames.trials[frames.trials["state"] == "pruned"]
    if len(pruned):
        median = pruned["epochs_run"].median()
        section.add(
            f"{len(pruned)} trials were pruned, after a median of {median:g} epoch{'s' if median != 1 else ''}.",
            Figure("pruning", "when trials were pruned", lambda: figures.pruning_epochs(frames.trials, frames.n_epochs)),
        )
    section.add(
        "Data behind this report: [trials.csv](trials.csv) (one row per trial), [epochs.csv](epochs.csv) (one row per trial "
        "and epoch) and [comparisons.csv](comparisons.csv) (one row per comparison, with its verdict)."
    )
    return section
