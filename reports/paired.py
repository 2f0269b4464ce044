"""Verdicts from the paired design: options compared on the same seed, as paired differences.

In a grid study (``--sampler grid``) a trial's training seed is the base seed plus its
replicate, so two trials that differ only in their activation (or only in their loss, or
only in their learning rate) start from the same weights and see the same batches: the
run-to-run noise cancels in their difference. A *block* is such a set of trials: same
values of every design factor but the one compared. Each comparison here is the mean of
the paired differences over its blocks, with a 95% t interval, and ends in a verdict.

Conventions:
- A pair is compared at the last epoch both of its trials reached: pruned trials stop early;
  a diverged trial keeps the accuracy it had when its loss stopped being finite.
- ``diff`` is the mean of (a − b) in accuracy points; each pair of options is ordered so
  that ``diff >= 0`` (a is the one ahead on average).
- Nothing here reads the database or draws: every function takes the frames.
"""

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95  # interval coverage
WITHIN_POINTS = 2.0  # an interval inside ±this many points: the options are "within x points of each other"
LEARNS_POINTS = 5.0  # a mean accuracy more than this above chance: the option learns at that learning rate
LEARNED_POINTS = 10.0  # a trial whose peak is this far above chance learned (for the epochs question)
POWER = 0.8  # the power the "more replicates" estimate aims at
MIN_PAIRS = 3  # fewer pairs get no interval: a t interval on 2 values is near useless, and ties make it zero-wide
DESIGN = ("activation", "loss", "lr", "replicate")  # the factors of the grid
COLUMNS = ["question", "factor", "a", "b", "lr", "epoch", "n_pairs", "diff", "ci_low", "ci_high", "verdict", "subset"]


def mean_interval(values, level: float = LEVEL) -> tuple[int, float, float, float, float]:
    """(n, mean, low, high, sd) of ``values`` with a t interval; low, high and sd are NaN below two values."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n < 2:
        return n, mean, math.nan, math.nan, math.nan
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return n, mean, mean - half, mean + half, sd


def pairs_needed(diff: float, sd: float, level: float = LEVEL, power: float = POWER, most: int = 10_000) -> int:
    """Pairs a paired t interval needs to exclude zero with ``power`` when the true difference is ``diff``, spread ``sd``.

    The smallest n with (t(level, n-1) + t(power, n-1)) * sd / sqrt(n) <= |diff|; ``most`` when none up to it.
    """
    if not (math.isfinite(sd) and diff):
        return most
    if sd == 0:
        return 2
    # The normal approximation is a lower bound (t quantiles exceed normal ones): search up from it.
    z = stats.norm.ppf((1 + level) / 2) + stats.norm.ppf(power)
    start = max(2, math.floor((z * sd / abs(diff)) ** 2))
    for n in range(start, most):
        if (stats.t.ppf((1 + level) / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n) <= abs(diff):
            return n
    return most


def verdict(a: str, b: str, n: int, diff: float, low: float, high: float, sd: float, pairs_per_replicate: int = 1) -> str:
    """The sentence a student acts on, from one comparison's numbers."""
    if n == 0:
        return f"cannot tell: no pair of {a} and {b} trials"
    if n < MIN_PAIRS or math.isnan(low):
        only = "one pair" if n == 1 else f"{n} pairs"
        return f"cannot tell yet: {only} only ({a} − {b} = {diff:+.1f} points); run more replicates (--repeats)"
    if low > 0:
        return f"{a} is ahead of {b} by {diff:.1f} points [{low:.1f}, {high:.1f}] ({n} pairs)"
    if high < 0:
        return f"{b} is ahead of {a} by {-diff:.1f} points [{-high:.1f}, {-low:.1f}] ({n} pairs)"
    bound = max(abs(low), abs(high))
    if bound <= WITHIN_POINTS:
        return f"{a} and {b} are within {bound:.1f} points of each other ({n} pairs)"
    replicates = math.ceil(max(pairs_needed(diff, sd) - n, 1) / max(pairs_per_replicate, 1))
    return (
        f"cannot tell yet: {a} − {b} = {diff:+.1f} points [{low:.1f}, {high:.1f}] ({n} pairs); "
        f"about {replicates} more replicate{'s' if replicates != 1 else ''} would resolve a difference of this size"
    )


def accuracy_at_epochs(epochs: pd.DataFrame, trials: pd.DataFrame, n_epochs: int, column: str = "test_acc") -> pd.DataFrame:
    """``column`` per trial (rows) and epoch (columns 1..n_epochs); a diverged trial keeps its last value after it stopped."""
    wide = epochs.pivot_table(index="number", columns="epoch", values=column, aggfunc="first")
    wide = wide.reindex(columns=range(1, n_epochs + 1))
    diverged = trials.loc[trials["diverged"], "number"]
    rows = wide.index.isin(diverged)
    wide.loc[rows] = wide.loc[rows].ffill(axis=1)
    return wide


def design_trials(trials: pd.DataFrame, n_epochs: int) -> pd.DataFrame:
    """Finished trials of the design with ``reach``: the last epoch at which each one has an accuracy."""
    done = trials[trials["state"].isin(["complete", "pruned"]) & (trials["epochs_run"] > 0)].copy()
    done["reach"] = np.where(done["diverged"] | (done["state"] == "complete"), n_epochs, done["epochs_run"])
    # One trial per design point: a point run twice (two workers on a nearly exhausted grid) keeps its first.
    return done.sort_values("number").drop_duplicates(list(DESIGN), keep="first")


def pairs(design: pd.DataFrame, acc: pd.DataFrame, factor: str, a, b) -> pd.DataFrame:
    """Every block holding a trial of option ``a`` and one of ``b``: their accuracies at the last common epoch."""
    blocks = [f for f in DESIGN if f != factor]
    left = design[design[factor] == a][[*blocks, "number", "reach"]]
    right = design[design[factor] == b][[*blocks, "number", "reach"]]
    merged = left.merge(right, on=blocks, suffixes=("_a", "_b"))
    if not len(merged):
        return merged.assign(epoch=[], acc_a=[], acc_b=[], diff=[])
    merged["epoch"] = np.minimum(merged["reach_a"], merged["reach_b"]).astype(int)
    merged["acc_a"] = [acc.at[n, e] for n, e in zip(merged["number_a"], merged["epoch"], strict=True)]
    merged["acc_b"] = [acc.at[n, e] for n, e in zip(merged["number_b"], merged["epoch"], strict=True)]
    merged["diff"] = merged["acc_a"] - merged["acc_b"]
    return merged


def _row(question, factor, a, b, lr, diffs: pd.DataFrame, subset: str, per_replicate: int) -> dict:
    n, diff, low, high, sd = mean_interval(diffs["diff"])
    if n < MIN_PAIRS:
        low = high = math.nan
    epochs = sorted(set(diffs["epoch"]))
    epoch = "–" if not epochs else epochs[0] if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"
    return {
        "question": question,
        "factor": factor,
        "a": a,
        "b": b,
        "lr": lr,
        "epoch": epoch,
        "n_pairs": n,
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "verdict": verdict(str(a), str(b), n, diff, low, high, sd, per_replicate),
        "subset": subset,
        "sd": sd,
    }


def _oriented(design, acc, factor, x, y, keep) -> tuple:
    """The pairs of x and y restricted by ``keep``, ordered so that the first option is ahead on average."""
    diffs = pairs(design, acc, factor, x, y)
    diffs = diffs[keep(diffs)] if len(diffs) else diffs
    if len(diffs) and diffs["diff"].mean() < 0:
        return y, x, diffs.assign(diff=-diffs["diff"])
    return x, y, diffs


def option_means(design: pd.DataFrame, acc: pd.DataFrame, factor: str) -> pd.DataFrame:
    """Mean accuracy at the last reached epoch of each option of ``factor`` at each learning rate, with its interval."""
    final = design.assign(acc=[acc.at[n, e] for n, e in zip(design["number"], design["reach"], strict=True)])
    rows = []
    for (lr, option), group in final.groupby(["lr", factor], sort=True):
        n, mean, low, high, _ = mean_interval(group["acc"])
        rows.append({"lr": lr, factor: option, "n": n, "mean_acc": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["lr", factor, "n", "mean_acc", "ci_low", "ci_high"])


def compare_options(design: pd.DataFrame, acc: pd.DataFrame, factor: str, chance: float, question: str) -> dict:
    """Paired comparisons of every two options of ``factor``: per learning rate and pooled.

    Per learning rate, where at least one option learns (its mean is more than ``LEARNS_POINTS``
    above chance); pooled over the learning rates where every option learns.

    Returns:
        ``{"rows": comparison rows (COLUMNS), "means": option_means, "learning": {lr: [options that learn]},
        "pooled_lrs": [...], "silent_lrs": [lrs where no option learns]}``.
    """
    means = option_means(design, acc, factor)
    options = sorted(design[factor].dropna().unique())
    replicates = max(design["replicate"].nunique(), 1)
    learning = {lr: sorted(g.loc[g["mean_acc"] > chance + LEARNS_POINTS, factor]) for lr, g in means.groupby("lr")}
    pooled = [lr for lr, learners in learning.items() if len(learners) == len(options)]
    silent = [lr for lr, learners in learning.items() if not learners]
    rows = []
    for x, y in itertools.combinations(options, 2):
        for lr in sorted(learning):
            if not learning[lr]:
                continue
            a, b, diffs = _oriented(design, acc, factor, x, y, lambda d, lr=lr: d["lr"] == lr)
            if len(diffs):
                rows.append(_row(question, factor, a, b, lr, diffs, f"lr={lr:g}", max(len(diffs) // replicates, 1)))
        if len(pooled) > 1:
            a, b, diffs = _oriented(design, acc, factor, x, y, lambda d: d["lr"].isin(pooled))
            if len(diffs):
                rows.append(_row(question, factor, a, b, "pooled", diffs, "lrs where all learn", max(len(diffs) // replicates, 1)))
    return {"rows": rows, "means": means, "learning": learning, "pooled_lrs": pooled, "silent_lrs": silent}


def lr_ranges(design: pd.DataFrame, acc: pd.DataFrame, chance: float) -> dict:
    """Per loss: the best learning rate and every other one compared with it on the same seeds.

    Blocks are (activation, replicate): trials that differ only in the learning rate. A learning
    rate is *good* when its interval shows it at most ``WITHIN_POINTS`` below the best; *too low*
    or *too high* when it is clearly below the best (interval above 0, mean more than
    ``WITHIN_POINTS``), on that side; *at chance* when its mean is within ``LEARNS_POINTS`` of
    chance; *unclear* otherwise (more replicates would tell).

    Returns:
        ``{"rows": comparison rows, "ranges": DataFrame[loss, lr, n, mean_acc, ci_low, ci_high, diff, d_low, d_high, regime]}``.
    """
    rows, ranges = [], []
    replicates = max(design["replicate"].nunique(), 1)
    for loss, group in design.groupby("loss", sort=True):
        means = option_means(group, acc, "loss").sort_values("lr")
        if not len(means):
            continue
        best = means.loc[means["mean_acc"].idxmax(), "lr"]
        for _, m in means.iterrows():
            entry = {"loss": loss, **{k: m[k] for k in ("lr", "n", "mean_acc", "ci_low", "ci_high")}}
            if m["lr"] == best:
                entry.update(diff=0.0, d_low=math.nan, d_high=math.nan, regime="best")
            else:
                diffs = pairs(group, acc, "lr", best, m["lr"])
                per_replicate = max(len(diffs) // replicates, 1)
                row = _row("learning rate", "lr", f"lr {best:g}", f"lr {m['lr']:g}", m["lr"], diffs, f"loss={loss}", per_replicate)
                rows.append(row)
                side = "too low" if m["lr"] < best else "too high"
                if m["mean_acc"] <= chance + LEARNS_POINTS:
                    regime = f"{side} (at chance)"
                elif row["ci_low"] > 0 and row["diff"] > WITHIN_POINTS:
                    regime = side  # clearly worse than the best
                elif row["ci_high"] <= WITHIN_POINTS:
                    regime = "good"  # at most WITHIN_POINTS below the best
                else:
                    regime = "unclear"
                entry.update(diff=-row["diff"], d_low=-row["ci_high"], d_high=-row["ci_low"], regime=regime)
            ranges.append(entry)
    columns = ["loss", "lr", "n", "mean_acc", "ci_low", "ci_high", "diff", "d_low", "d_high", "regime"]
    return {"rows": rows, "ranges": pd.DataFrame(ranges, columns=columns)}


def binomial_se(acc: float, n_test: int) -> float:
    """Standard error (points) of an accuracy measured on ``n_test`` images."""
    p = min(max(acc / 100, 0.0), 1.0)
    return 100 * math.sqrt(p * (1 - p) / n_test) if n_test else math.nan


def epoch_verdicts(frames, design: pd.DataFrame, acc: pd.DataFrame) -> dict:
    """Per learning rate: does the last epoch beat the best epoch of the mean curve, beyond the noise?

    Uses complete trials that ran every epoch, did not diverge and learned (peak more than
    ``LEARNED_POINTS`` above chance). The best epoch is the peak of their mean test accuracy
    curve; each trial gives one paired difference, last epoch minus that epoch. When the
    curve peaks at the last epoch, the last epoch is compared with the one before it.

    A trial "fell" when its last accuracy is more than two standard errors of a difference of
    two accuracies on the test set (``2 * sqrt(2) * binomial_se``) below its own peak.

    Returns:
        ``{"rows": comparison rows, "curves": DataFrame[lr, epoch, n, test_acc, train_acc, test_loss, train_loss],
        "fell": DataFrame[lr, n, fell, threshold, best_epoch],
        "loss_turns": DataFrame[lr, loss, n, min_epoch, low, rise, train_change]}``; ``low`` is the lowest mean
        test loss, ``rise`` how far the last epoch's is above it.
    """
    n_epochs, chance, n_test = frames.n_epochs, frames.chance, frames.settings.test_size
    runs = design[(design["state"] == "complete") & ~design["diverged"] & (design["epochs_run"] == n_epochs)]
    runs = runs[runs["peak_test_acc"] > chance + LEARNED_POINTS]
    epochs = frames.epochs[frames.epochs["number"].isin(runs["number"])]
    rows, fell, turns = [], [], []
    curves = (
        epochs.groupby(["lr", "epoch"])
        .agg(
            n=("number", "nunique"),
            test_acc=("test_acc", "mean"),
            train_acc=("train_acc", "mean"),
            test_loss=("test_loss", "mean"),
            train_loss=("train_loss", "mean"),
        )
        .reset_index()
    )
    for lr, group in runs.groupby("lr", sort=True):
        numbers = group["number"].to_numpy()
        mean_curve = acc.loc[numbers].mean(axis=0)
        best = int(mean_curve.idxmax())
        other = best if best < n_epochs else max(n_epochs - 1, 1)
        diffs = pd.DataFrame({"diff": acc.loc[numbers, n_epochs].to_numpy() - acc.loc[numbers, other].to_numpy(), "epoch": n_epochs})
        if n_epochs > 1:
            per_replicate = max(len(diffs) // design["replicate"].nunique(), 1)
            rows.append(_row("epochs", "epoch", f"epoch {n_epochs}", f"epoch {other}", lr, diffs, f"lr={lr:g}", per_replicate))
        threshold = [2 * math.sqrt(2) * binomial_se(p, n_test) for p in group["peak_test_acc"]]
        dropped = int(((group["peak_test_acc"] - group["final_test_acc"]).to_numpy() > np.array(threshold)).sum())
        fell.append({"lr": lr, "n": len(group), "fell": dropped, "threshold": float(np.mean(threshold)), "best_epoch": best})
        for loss, sub in epochs[epochs["lr"] == lr].groupby("loss", sort=True):
            curve = sub.groupby("epoch")[["test_loss", "train_loss"]].mean()
            low = int(curve["test_loss"].idxmin())
            turns.append(
                {
                    "lr": lr,
                    "loss": loss,
                    "n": sub["number"].nunique(),
                    "min_epoch": low,
                    "low": float(curve["test_loss"].loc[low]),
                    "rise": float(curve["test_loss"].iloc[-1] - curve["test_loss"].loc[low]),
                    "train_change": float(curve["train_loss"].iloc[-1] - curve["train_loss"].loc[low]),
                }
            )
    return {
        "rows": rows,
        "curves": curves,
        "fell": pd.DataFrame(fell, columns=["lr", "n", "fell", "threshold", "best_epoch"]),
        "loss_turns": pd.DataFrame(turns, columns=["lr", "loss", "n", "min_epoch", "low", "rise", "train_change"]),
    }


def comparisons_frame(rows: list[dict]) -> pd.DataFrame:
    """The tidy ``comparisons.csv``: one row per comparison, in COLUMNS order."""
    return pd.DataFrame(rows, columns=[*COLUMNS, "sd"])[COLUMNS]
