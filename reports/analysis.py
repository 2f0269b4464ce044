"""Answers to the notebook's questions as pure functions of the study frames.

Every function takes the tidy ``trials`` / ``epochs`` frames (see ``reports.frames``) and
returns numbers or frames; nothing here reads the database or draws. Uncertainty comes from
seeded bootstrap resampling, so a report is the same every time it is built.

Conventions:
- A trial's accuracy is its test accuracy after the last epoch it ran (``final_test_acc``):
  the final accuracy of a complete trial, the accuracy it had when pruned (a lower bound of
  what it would have reached), and for a diverged trial the accuracy when it diverged.
- "Finished" trials are complete or pruned ones; failed and running trials are left out.
"""

import math

import numpy as np
import pandas as pd

N_BOOT = 2000  # bootstrap resamples
MIN_TRIALS = 3  # fewer trials than this behind an option: no interval, no ranking
LEVEL = 0.95  # interval coverage
GOOD_RANGE_POINTS = 5.0  # learning rates within this many points of the best decade's median "learn well"
CHANCE_MARGIN = 2.0  # a median within this many points of chance "does not learn"


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    """Complete and pruned trials that recorded at least one epoch."""
    return trials[trials["state"].isin(["complete", "pruned"]) & trials["final_test_acc"].notna()]


def full_runs(trials: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """Complete trials that ran every epoch without diverging."""
    return trials[(trials["state"] == "complete") & (trials["epochs_run"] == epochs) & ~trials["diverged"]]


def bootstrap_median(values, seed: int = 0, n_boot: int = N_BOOT) -> tuple[float, float, float]:
    """Median of ``values`` with a percentile-bootstrap interval: (median, low, high).

    With one value the interval is that value; with none, all three are NaN.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(n_boot, len(values)), replace=True), axis=1)
    low, high = np.quantile(medians, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(np.median(values)), float(low), float(high)


def lr_decade(lr: pd.Series) -> pd.Series:
    """The power of ten below each learning rate: 3e-4 -> -4, so a decade is [1e-4, 1e-3)."""
    return np.floor(np.log10(lr) + 1e-9).astype(int)


def power_label(power: int) -> str:
    """10**power as text: 1e-3, 1, 1e1."""
    return "1" if power == 0 else f"1e{power}"


def decade_label(decade: int) -> str:
    """The decade [1e-3, 1e-2) as "1e-3–1e-2"."""
    return f"{power_label(decade)}–{power_label(decade + 1)}"


def group_summary(trials: pd.DataFrame, by: str, seed: int = 0) -> pd.DataFrame:
    """Per value of ``by`` over all finished trials: counts, median accuracy with its interval, best, gap.

    ``median_gap`` is the median of train minus test accuracy at the last epoch, over complete
    trials that did not diverge.
    """
    rows = []
    for name, group in finished(trials).groupby(by, sort=True):
        median, low, high = bootstrap_median(group["final_test_acc"], seed)
        clean = group[(group["state"] == "complete") & ~group["diverged"]]
        rows.append(
            {
                by: name,
                "trials": len(group),
                "complete": int((group["state"] == "complete").sum()),
                "pruned": int((group["state"] == "pruned").sum()),
                "diverged": int(group["diverged"].sum()),
                "median_acc": median,
                "ci_low": low,
                "ci_high": high,
                "best_acc": float(group["final_test_acc"].max()),
                "median_gap": float(clean["gap"].median()) if len(clean) else math.nan,
            }
        )
    return pd.DataFrame(
        rows, columns=[by, "trials", "complete", "pruned", "diverged", "median_acc", "ci_low", "ci_high", "best_acc", "median_gap"]
    )


def matched_comparison(trials: pd.DataFrame, by: str, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """Compare the values of ``by`` within learning-rate decades that all of them were tried in.

    A sampler such as TPE tries good learning rates more often, and not equally for every
    option; comparing raw medians would then reward the option sampled at better learning
    rates. Here each option's score is the mean, over the shared decades, of its median
    accuracy in that decade. The interval resamples decades and, within each, trials.

    Returns:
        ``{"decades": [...], "n": trials used, "table": DataFrame[by, trials, score, ci_low, ci_high],
        "best": option, "separated": {other: (diff, low, high, bool)}}``, or with ``decades``
        empty when no decade holds every option. An option with fewer than ``MIN_TRIALS``
        trials in the shared decades gets no interval (NaN) and is never called separated:
        resampling one or two values says nothing about their spread.
    """
    data = finished(trials).assign(decade=lambda d: lr_decade(d["lr"]))
    options = sorted(data[by].dropna().unique())
    if len(options) == 0:
        return {"decades": [], "n": 0, "table": pd.DataFrame(), "best": None, "separated": {}}
    present = data.groupby("decade")[by].nunique()
    decades = sorted(present[present == len(options)].index.tolist())
    data = data[data["decade"].isin(decades)]
    if not decades:
        return {"decades": [], "n": 0, "table": pd.DataFrame(), "best": None, "separated": {}}
    cells = {(o, d): data.loc[(data[by] == o) & (data["decade"] == d), "final_test_acc"].to_numpy() for o in options for d in decades}
    score = {o: float(np.mean([np.median(cells[o, d]) for d in decades])) for o in options}
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, len(options)))
    for b in range(n_boot):
        chosen = rng.choice(decades, size=len(decades), replace=True)
        for i, o in enumerate(options):
            boot[b, i] = np.mean([np.median(rng.choice(cells[o, d], size=len(cells[o, d]))) for d in chosen])
    q = [(1 - LEVEL) / 2, (1 + LEVEL) / 2]
    counts = [sum(len(cells[o, d]) for d in decades) for o in options]
    enough = np.array(counts) >= MIN_TRIALS
    table = pd.DataFrame(
        {
            by: options,
            "trials": counts,
            "score": [score[o] for o in options],
            "ci_low": np.where(enough, np.quantile(boot, q[0], axis=0), np.nan),
            "ci_high": np.where(enough, np.quantile(boot, q[1], axis=0), np.nan),
        }
    ).sort_values("score", ascending=False, kind="stable")
    best = table[by].iloc[0]
    b = options.index(best)
    separated = {}
    for i, o in enumerate(options):
        if o != best:
            low, high = np.quantile(boot[:, b] - boot[:, i], q)
            if not (enough[b] and enough[i]):
                low = high = math.nan
            separated[o] = (score[best] - score[o], float(low), float(high), bool(low > 0))
    return {"decades": decades, "n": len(data), "table": table.reset_index(drop=True), "best": best, "separated": separated}


def lr_table(trials: pd.DataFrame, by: str, chance: float) -> pd.DataFrame:
    """Per value of ``by`` and learning-rate decade: trials, median and best accuracy, diverged, at chance."""
    data = finished(trials).assign(decade=lambda d: lr_decade(d["lr"]))
    table = (
        data.groupby([by, "decade"])
        .agg(
            trials=("final_test_acc", "size"),
            median_acc=("final_test_acc", "median"),
            best_acc=("final_test_acc", "max"),
            diverged=("diverged", "sum"),
            at_chance=("final_test_acc", lambda a: int((a <= chance + CHANCE_MARGIN).sum())),
        )
        .reset_index()
    )
    table["diverged"] = table["diverged"].astype(int)
    return table


def lr_ranges(table: pd.DataFrame, by: str, chance: float) -> pd.DataFrame:
    """Name, per value of ``by``, the decades that learn well, too slowly, and too fast.

    Rule: the decade with the highest median accuracy is the best; decades whose median is
    within ``GOOD_RANGE_POINTS`` of it learn well; below the good range (smaller learning
    rates) is "too slow", above it "too high". A decade is "unstable" when a trial diverged or
    its median is within ``CHANCE_MARGIN`` of chance.
    """
    rows = []
    for name, group in table.groupby(by, sort=True):
        group = group.sort_values("decade")
        best = group.loc[group["median_acc"].idxmax()]
        good = group[group["median_acc"] >= best["median_acc"] - GOOD_RANGE_POINTS]
        low_edge, high_edge = good["decade"].min(), good["decade"].max()
        slow = group[group["decade"] < low_edge]
        high = group[group["decade"] > high_edge]
        unstable = group[(group["diverged"] > 0) | (group["median_acc"] <= chance + CHANCE_MARGIN)]
        unstable = unstable[unstable["decade"] > best["decade"]]
        rows.append(
            {
                by: name,
                "best_decade": int(best["decade"]),
                "best_median": float(best["median_acc"]),
                "good_low": int(low_edge),
                "good_high": int(high_edge),
                "slow_decades": slow["decade"].astype(int).tolist(),
                "slow_median": float(slow["median_acc"].median()) if len(slow) else math.nan,
                "high_decades": high["decade"].astype(int).tolist(),
                "high_median": float(high["median_acc"].median()) if len(high) else math.nan,
                "unstable_from": int(unstable["decade"].min()) if len(unstable) else None,
                "diverged": int(group["diverged"].sum()),
            }
        )
    return pd.DataFrame(rows)


def epoch_curves(epochs: pd.DataFrame, trials: pd.DataFrame, n_epochs: int, chance: float, seed: int = 0) -> dict:
    """How test accuracy evolves over the epochs of trials that ran them all and learned.

    Only complete, non-diverged trials that ran every epoch and whose peak test accuracy is
    at least 10 points above chance are used: pruned trials have cut-off curves, and trials
    that never learned have flat ones.

    Returns:
        ``{"n": trials used, "peak_epochs": Series (trial -> epoch of peak test accuracy),
        "fell": trials whose last test accuracy is below their peak while train accuracy
        rose after the peak, "gains": DataFrame[epoch, median_gain, ci_low, ci_high, n]}``.
    """
    runs = full_runs(trials, n_epochs)
    runs = runs[runs["peak_test_acc"] >= chance + 10]
    curves = epochs[epochs["number"].isin(runs["number"])].sort_values(["number", "epoch"])
    peak_epochs, fell = {}, 0
    for number, curve in curves.groupby("number"):
        peak = curve.loc[curve["test_acc"].idxmax()]
        peak_epochs[number] = int(peak["epoch"])
        last = curve.iloc[-1]
        if last["test_acc"] < peak["test_acc"] and last["train_acc"] > peak["train_acc"]:
            fell += 1
    wide = curves.pivot(index="number", columns="epoch", values="test_acc")
    gains = []
    for epoch in range(2, n_epochs + 1):
        if epoch in wide and epoch - 1 in wide:
            diff = (wide[epoch] - wide[epoch - 1]).dropna()
            median, low, high = bootstrap_median(diff, seed)
            gains.append({"epoch": epoch, "median_gain": median, "ci_low": low, "ci_high": high, "n": len(diff)})
    return {
        "n": len(runs),
        "peak_epochs": pd.Series(peak_epochs, dtype=int),
        "fell": fell,
        "gains": pd.DataFrame(gains, columns=["epoch", "median_gain", "ci_low", "ci_high", "n"]),
    }


def per_class_accuracy(confusion, classes: list[str]) -> pd.DataFrame:
    """Accuracy (percent) and test images per class, from a [true][predicted] count matrix."""
    matrix = np.asarray(confusion, dtype=float)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = 100 * np.diag(matrix) / totals
    return pd.DataFrame({"class": classes, "images": totals.astype(int), "accuracy": acc})


def confused_pairs(confusion, classes: list[str], top: int = 5) -> pd.DataFrame:
    """The class pairs mistaken for each other most often, both directions added."""
    matrix = np.asarray(confusion, dtype=int)
    rows = [
        {
            "pair": f"{classes[i]} ↔ {classes[j]}",
            "a_as_b": int(matrix[i, j]),
            "b_as_a": int(matrix[j, i]),
            "total": int(matrix[i, j] + matrix[j, i]),
        }
        for i in range(len(classes))
        for j in range(i + 1, len(classes))
    ]
    return pd.DataFrame(rows).sort_values("total", ascending=False, kind="stable").head(top).reset_index(drop=True)


def accuracy_interval(acc: float, n: int) -> tuple[float, float]:
    """Wilson 95% interval (percent) of an accuracy measured on ``n`` test images."""
    p, z = acc / 100, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * (centre - half), 100 * (centre + half)


def difference_interval(acc_a: float, acc_b: float, n: int) -> tuple[float, float, float]:
    """Difference of two accuracies on the same ``n`` test images, with a 95% normal interval.

    The two models are treated as independent, which overstates the spread when they err on
    the same images (the usual case), so the interval is conservative.
    """
    p, q = acc_a / 100, acc_b / 100
    se = math.sqrt(p * (1 - p) / n + q * (1 - q) / n)
    diff = acc_a - acc_b
    return diff, diff - 100 * 1.959963984540054 * se, diff + 100 * 1.959963984540054 * se


def counts(trials: pd.DataFrame) -> dict[str, int]:
    """Trials per state, and the complete trials that diverged."""
    states = trials["state"].value_counts()
    result = {state: int(states.get(state, 0)) for state in ("complete", "pruned", "fail", "running", "waiting", "surplus")}
    result["diverged"] = int(trials.loc[trials["state"] == "complete", "diverged"].sum())
    result["finished"] = result["complete"] + result["pruned"]
    return result


def best_and_baseline(trials: pd.DataFrame, baseline: dict | None) -> tuple[pd.Series | None, pd.Series | None]:
    """The best complete trial, and the first finished trial of the notebook's configuration (None when absent)."""
    complete = trials[trials["state"] == "complete"]
    best = complete.loc[complete["value"].idxmax()] if len(complete) and complete["value"].notna().any() else None
    marked = trials[trials["baseline"]]
    if not len(marked) and baseline:
        same = (trials["activation"] == baseline["activation"]) & (trials["loss"] == baseline["loss"])
        same &= (trials["lr"] - baseline["lr"]).abs().lt(1e-12 * baseline["lr"] + 1e-15)
        marked = trials[same].sort_values(["replicate", "number"])
    marked = marked[marked["state"].isin(["complete", "pruned"])]
    return best, (marked.iloc[0] if len(marked) else None)
