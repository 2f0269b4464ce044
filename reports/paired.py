"""The paired design as data: one trial per grid point, its accuracy per epoch, and the pairs of a comparison.

In a grid study (``--sampler grid``) a trial's training seed is the base seed plus its
replicate, so two trials that differ only in their activation (or only in their loss, or
only in their learning rate) start from the same weights and see the same batches: the
run-to-run noise cancels in their difference. A *block* is such a set of trials: same
values of every design factor but the one compared.

Conventions:
- Questions 1-3 compare at the *compare epoch* (``--compare-epoch``; default the notebook's
  10 when the trials ran that far, else the last): a pair is compared at that epoch, or at
  the last epoch both of its trials reached when one stopped earlier (pruned). A diverged
  trial keeps the accuracy it had when its loss stopped being finite.
- Where the trials stored each test image's predicted class after each epoch (studies of format 3), the
  design holds which images each trial got right (``Design.correct``), so that a comparison's interval can
  count the test images as well as the seeds (:func:`image_table`, ``stats.estimate(..., images=...)``).
- Nothing here reads the database or draws: every function takes the frames.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports import stats
from reports.frames import Frames

DESIGN = ("activation", "loss", "lr", "replicate")  # the factors of the grid
NOTEBOOK_EPOCHS = 10  # the notebook's budget: the default compare epoch
LEARNS_POINTS = 5.0  # a mean accuracy more than this above chance: the option learns at that learning rate (descriptive)
LEARNED_POINTS = 10.0  # a trial whose peak is this far above chance learned (for the epochs question)


@dataclass
class Design:
    """The finished trials of a paired grid, one per grid point, with their curves."""

    trials: pd.DataFrame  # one row per grid point: DESIGN, number, state, diverged, reach, peak_test_acc, acc (at the compare epoch)
    curves: dict[str, pd.DataFrame]  # "test_acc", "train_acc", "test_loss", "train_loss": trial number (rows) × epoch 1..n_epochs
    n_epochs: int
    compare_epoch: int
    chance: float
    # trial number -> (epochs run, test images) bool: right or wrong on each test image after each epoch; only trials
    # whose stored predictions reproduce their recorded accuracy at every epoch (empty for studies without predictions)
    correct: dict[int, np.ndarray] = field(default_factory=dict)
    mismatched: list[int] = field(default_factory=list)  # trials whose predictions do not reproduce their accuracies


def default_compare_epoch(n_epochs: int) -> int:
    return min(NOTEBOOK_EPOCHS, n_epochs)


def _wide(epochs: pd.DataFrame, trials: pd.DataFrame, n_epochs: int, column: str) -> pd.DataFrame:
    """``column`` per trial (rows) and epoch (columns 1..n_epochs); a diverged trial keeps its last value after it stopped."""
    wide = epochs.drop_duplicates(["number", "epoch"]).pivot(index="number", columns="epoch", values=column)
    wide = wide.reindex(columns=range(1, n_epochs + 1)).astype(float)
    diverged = trials.loc[trials["diverged"], "number"]
    rows = wide.index.isin(diverged)
    if rows.any():
        wide.loc[rows] = wide.loc[rows].ffill(axis=1)
    return wide


def build_design(frames: Frames, compare_epoch: int | None = None) -> Design:
    """The design of a paired study: its first finished trial of every grid point, compared at ``compare_epoch``."""
    n_epochs = frames.n_epochs
    compare = default_compare_epoch(n_epochs) if compare_epoch is None else compare_epoch
    if not 1 <= compare <= n_epochs:
        raise ValueError(f"--compare-epoch must be between 1 and the study's {n_epochs} epochs but got {compare}")
    trials = frames.trials
    done = trials[trials["state"].isin(["complete", "pruned"]) & (trials["epochs_run"] > 0)].copy()
    done["reach"] = np.where(done["diverged"] | (done["state"] == "complete"), n_epochs, done["epochs_run"]).astype(int)
    # One trial per design point: a point run twice (a fault, or two workers on a nearly exhausted grid) keeps its first.
    done = done.sort_values("number").drop_duplicates(list(DESIGN), keep="first").reset_index(drop=True)
    curves = {c: _wide(frames.epochs, trials, n_epochs, c) for c in ("test_acc", "train_acc", "test_loss", "train_loss")}
    done["epoch"] = np.minimum(done["reach"], compare)
    done["acc"] = _at(curves["test_acc"], done["number"], done["epoch"])
    correct, mismatched = correct_images(frames, done["number"])
    return Design(done, curves, n_epochs, compare, frames.chance, correct, mismatched)


def correct_images(frames: Frames, numbers) -> tuple[dict[int, np.ndarray], list[int]]:
    """Which test images each of the trials ``numbers`` got right after each epoch, from their stored predictions.

    A trial's predictions must reproduce its recorded test accuracy at every epoch it ran (the history is what
    every other number of the report uses); one that does not is left out and listed, so that its comparisons
    fall back to the seed-only interval rather than mix two accounts of one trial.
    """
    if frames.labels is None:
        return {}, []
    labels = np.asarray(frames.labels)
    recorded = frames.epochs.drop_duplicates(["number", "epoch"]).set_index(["number", "epoch"])["test_acc"]
    correct, mismatched = {}, []
    for number in numbers:
        predicted = frames.predictions.get(int(number))
        if predicted is None:
            continue
        right = np.asarray(predicted) == labels[None, :] if predicted.shape[-1:] == labels.shape else None
        history = [recorded.get((int(number), e)) for e in range(1, 0 if right is None else len(right) + 1)]
        if right is None or any(a is None or not abs(100.0 * r.mean() - a) < 1e-6 for r, a in zip(right, history, strict=True)):
            mismatched.append(int(number))
            continue
        correct[int(number)] = right
    return correct, mismatched


def image_table(design: Design, numbers_a, epochs_a, numbers_b, epochs_b) -> np.ndarray | None:
    """Each pair's difference a − b on each test image, in points: (pairs, test images), or None.

    Pair i is trial ``numbers_a[i]`` after epoch ``epochs_a[i]`` against ``numbers_b[i]`` after ``epochs_b[i]``
    (the same trial at two epochs for the epochs question). Row i averages to the pair's difference of recorded
    accuracies. None when a trial of the comparison has no usable predictions: the comparison is then seed-only.
    An epoch past a trial's last (a diverged trial keeps its last accuracy) reads its last epoch.
    """
    rows = []
    for na, ea, nb, eb in zip(numbers_a, epochs_a, numbers_b, epochs_b, strict=True):
        a, b = design.correct.get(int(na)), design.correct.get(int(nb))
        if a is None or b is None:
            return None
        rows.append(100.0 * (a[min(int(ea), len(a)) - 1].astype(float) - b[min(int(eb), len(b)) - 1]))
    return np.stack(rows) if rows else None


def _at(wide: pd.DataFrame, numbers, epochs) -> np.ndarray:
    rows = wide.index.get_indexer(np.asarray(numbers))
    return wide.to_numpy()[rows, np.asarray(epochs, dtype=int) - 1]


def pairs(design: Design, factor: str, a, b) -> pd.DataFrame:
    """Every block holding a trial of option ``a`` and one of ``b``: their accuracies at the epoch they are compared at.

    Returns:
        DataFrame[the other design factors..., number_a, number_b, epoch, acc_a, acc_b, diff], one row per block.
    """
    blocks = [f for f in DESIGN if f != factor]
    t = design.trials
    keys = list(zip(*(t[f] for f in blocks), strict=True))
    side = {a: {}, b: {}}
    for key, option, number, epoch in zip(keys, t[factor], t["number"], t["epoch"], strict=True):
        if option in side:
            side[option][key] = (number, epoch)
    shared = [k for k in side[a] if k in side[b]]
    rows = [(*k, *side[a][k][:1], side[b][k][0], min(side[a][k][1], side[b][k][1])) for k in shared]
    return _with_accuracies(design, pd.DataFrame(rows, columns=[*blocks, "number_a", "number_b", "epoch"]))


def _with_accuracies(design: Design, merged: pd.DataFrame) -> pd.DataFrame:
    """``merged`` (number_a, number_b, epoch per pair) with both trials' test accuracies at that epoch and their difference."""
    wide = design.curves["test_acc"]
    merged["acc_a"] = _at(wide, merged["number_a"], merged["epoch"]) if len(merged) else []
    merged["acc_b"] = _at(wide, merged["number_b"], merged["epoch"]) if len(merged) else []
    merged["diff"] = merged["acc_a"] - merged["acc_b"]
    return merged


def configuration_pairs(design: Design, a: dict, b: dict) -> pd.DataFrame:
    """The trials of configuration ``a`` against those of ``b`` (each a dict of activation, loss, lr) trained from the
    same replicate's seed: one row per replicate both have, in the columns of :func:`pairs`."""
    t = design.trials

    def side(config: dict) -> pd.DataFrame:
        same = (t["activation"] == config["activation"]) & (t["loss"] == config["loss"])
        same &= (t["lr"] - config["lr"]).abs().lt(1e-12 * config["lr"] + 1e-15)
        return t[same].set_index("replicate")[["number", "epoch"]]

    side_a, side_b = side(a), side(b)
    shared = sorted(side_a.index.intersection(side_b.index))
    merged = pd.DataFrame(
        {
            "replicate": shared,
            "number_a": side_a.loc[shared, "number"].to_numpy(),
            "number_b": side_b.loc[shared, "number"].to_numpy(),
            "epoch": np.minimum(side_a.loc[shared, "epoch"].to_numpy(), side_b.loc[shared, "epoch"].to_numpy()),
        }
    )
    return _with_accuracies(design, merged)


def estimate_pairs(design: Design, pairs_frame: pd.DataFrame, margin: float | None, sign: int = 1) -> stats.Estimate:
    """The estimate of ``sign`` × the pairs' differences (a frame of :func:`pairs`): over seeds and test images where every
    trial of the pairs stored its predictions (:func:`image_table`), over the seeds only otherwise."""
    p = pairs_frame
    table = image_table(design, p["number_a"], p["epoch"], p["number_b"], p["epoch"]) if len(p) else None
    return stats.estimate(sign * p["diff"], margin, images=None if table is None else sign * table)


def epoch_text(epochs) -> str:
    """The epoch(s) a comparison used: "10", or "3–10" when pruned trials stopped earlier."""
    epochs = sorted(set(int(e) for e in epochs))
    return "–" if not epochs else str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"


def cell_means(design: Design, factor: str) -> pd.DataFrame:
    """Mean accuracy (compare epoch) of each option of ``factor`` at each learning rate, over the other factor and the replicates.

    No interval: the spread behind this mean is mostly the other factor's effect, not noise. ``low`` and ``high`` are the
    lowest and highest mean over the other factor's options (descriptive); ``seed_sd`` the spread between replicates of
    the same grid point (pooled), the noise.
    """
    other = "loss" if factor == "activation" else "activation"
    t = design.trials
    by_cell = t.groupby(["lr", factor, other])["acc"]
    cells = by_cell.mean().rename("mean").to_frame().join(by_cell.var(ddof=1).rename("var")).reset_index()
    rows = []
    for (lr, option), g in cells.groupby(["lr", factor], sort=True):
        n = int(((t["lr"] == lr) & (t[factor] == option)).sum())
        var = g["var"].dropna()
        rows.append({"lr": lr, factor: option, "n": n, "mean_acc": float(t.loc[(t["lr"] == lr) & (t[factor] == option), "acc"].mean()),
                     "low": float(g["mean"].min()), "high": float(g["mean"].max()),
                     "seed_sd": float(np.sqrt(var.mean())) if len(var) else float("nan")})  # fmt: skip
    return pd.DataFrame(rows, columns=["lr", factor, "n", "mean_acc", "low", "high", "seed_sd"])
