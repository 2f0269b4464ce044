"""Seaborn figures, each a pure function of the study frames that returns a matplotlib Figure."""

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from reports.analysis import decade_label, finished, lr_decade
from reports.claims import CI

sns.set_theme(style="whitegrid", context="notebook")
STATE_MARKERS = {"complete": "o", "pruned": "v"}


def accuracy_by(trials: pd.DataFrame, by: str, decades: list[int], chance: float) -> plt.Figure:
    """Accuracy of each option of ``by`` within each learning-rate decade: every trial a dot, medians joined.

    Decades shared by all options (those the matched comparison uses) are marked with a star.
    """
    data = finished(trials).assign(decade=lambda d: lr_decade(d["lr"])).sort_values("decade")
    data["lr decade"] = [decade_label(d) + (" *" if d in decades else "") for d in data["decade"]]
    order = list(dict.fromkeys(data["lr decade"]))
    hue_order = sorted(data[by].unique())
    fig, ax = plt.subplots(figsize=(9, 4.8))
    sns.stripplot(data=data, x="lr decade", y="final_test_acc", hue=by, order=order, hue_order=hue_order, dodge=True, alpha=0.6, ax=ax)
    sns.pointplot(
        data=data,
        x="lr decade",
        y="final_test_acc",
        hue=by,
        order=order,
        hue_order=hue_order,
        estimator="median",
        errorbar=None,
        dodge=0.55 if len(hue_order) > 1 else False,
        markers="D",
        linestyles="--",
        legend=False,
        ax=ax,
    )
    ax.axhline(chance, ls=":", c="0.4", label="chance")
    ax.set(
        xlabel="learning-rate decade (* = tried with every option: used for the matched comparison)",
        ylabel="test accuracy (%)",
        title=f"Test accuracy by {by} within learning-rate decades (dots: trials, diamonds: medians)",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize="small", title=by)
    fig.tight_layout()
    return fig


def learning_curves(epochs: pd.DataFrame, by: str) -> plt.Figure:
    """Median test accuracy per epoch for each option of ``by`` (complete trials), with the middle half shaded."""
    data = epochs[epochs["state"] == "complete"].copy()
    counts = data.groupby(by)["number"].nunique()
    data[by] = data[by].map(lambda name: f"{name} (n={counts[name]})")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(
        data=data,
        x="epoch",
        y="test_acc",
        hue=by,
        hue_order=sorted(data[by].unique()),
        estimator="median",
        errorbar=("pi", 50),
        marker="o",
        ax=ax,
    )
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"Learning curves by {by} (median, band: middle 50% of trials)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def accuracy_vs_lr(trials: pd.DataFrame, chance: float) -> plt.Figure:
    """Accuracy against learning rate (log axis), colour by loss, marker by activation, diverged crossed."""
    data = finished(trials)
    fig, ax = plt.subplots(figsize=(8, 5))
    sns.scatterplot(
        data=data,
        x="lr",
        y="final_test_acc",
        hue="loss",
        hue_order=sorted(data["loss"].unique()),
        style="activation",
        style_order=sorted(data["activation"].unique()),
        s=60,
        ax=ax,
    )
    diverged = data[data["diverged"]]
    if len(diverged):
        ax.scatter(diverged["lr"], diverged["final_test_acc"], marker="x", s=140, c="red", label="diverged (NaN/inf loss)")
    ax.axhline(chance, ls=":", c="0.4", label="chance")
    ax.set_xscale("log")
    ax.set(xlabel="learning rate (log scale)", ylabel="test accuracy (%)", title="Test accuracy against learning rate")
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize="small")
    fig.tight_layout()
    return fig


def train_vs_test(epochs: pd.DataFrame, numbers: list[int]) -> plt.Figure:
    """Training and test accuracy per epoch over the given trials: median and middle half."""
    data = epochs[epochs["number"].isin(numbers)].melt(
        id_vars=["number", "epoch"], value_vars=["train_acc", "test_acc"], var_name="split", value_name="accuracy"
    )
    data["split"] = data["split"].map({"train_acc": "train (running, as the notebook)", "test_acc": "test"})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=data, x="epoch", y="accuracy", hue="split", estimator="median", errorbar=("pi", 50), marker="o", ax=ax)
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"Train vs test accuracy over epochs ({len(numbers)} full-length trials)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def peak_epochs(peaks: pd.Series, n_epochs: int) -> plt.Figure:
    """How many trials reached their best test accuracy at each epoch."""
    counts = peaks.value_counts().reindex(range(1, n_epochs + 1), fill_value=0)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(x=counts.index, y=counts.to_numpy(), color="C0", ax=ax)
    ax.set(xlabel="epoch of peak test accuracy", ylabel="trials", title="When test accuracy peaked")
    fig.tight_layout()
    return fig


def confusion_heatmap(confusion, classes: list[str], title: str) -> plt.Figure:
    """Row-normalised confusion matrix (percent of each true class), counts annotated."""
    matrix = np.asarray(confusion, dtype=float)
    share = 100 * matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8, 6.5))
    sns.heatmap(
        share,
        annot=matrix.astype(int),
        fmt="d",
        cmap="Blues",
        xticklabels=classes,
        yticklabels=classes,
        cbar_kws={"label": "% of true class"},
        ax=ax,
    )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def sample_grid(images, labels, classes: list[str], per_class: int = 3) -> plt.Figure:
    """A grid of training images, one column per class, titled with the class name."""
    fig, axes = plt.subplots(per_class, len(classes), figsize=(1.3 * len(classes), 1.4 * per_class), squeeze=False)
    for c, name in enumerate(classes):
        members = (labels == c).nonzero().flatten()[:per_class]
        for r in range(per_class):
            ax = axes[r, c]
            ax.axis("off")
            if r < len(members):
                ax.imshow(images[members[r]].permute(1, 2, 0).numpy())
            if r == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


def image_grid(images, titles: list[str], title: str, columns: int = 8) -> plt.Figure:
    """Images (N, 3, H, W) uint8 in a grid, each with its title (true and predicted class, say)."""
    rows = max(1, -(-len(titles) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(titles):
            ax.imshow(images[k].permute(1, 2, 0).numpy())
            ax.set_title(titles[k], fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def optimization_history(trials: pd.DataFrame) -> plt.Figure:
    """Each finished trial's accuracy in the order it ran, with the best complete value so far."""
    data = finished(trials).sort_values("number")
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.scatterplot(
        data=data,
        x="number",
        y="final_test_acc",
        hue="state",
        hue_order=["complete", "pruned"],
        style="state",
        markers=STATE_MARKERS,
        ax=ax,
    )
    best = data["value"].where(data["state"] == "complete").cummax().ffill()
    ax.plot(data["number"], best, c="C3", label="best complete so far")
    ax.set(xlabel="trial", ylabel="test accuracy (%)", title="Optimisation history")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def pruning_epochs(trials: pd.DataFrame, n_epochs: int) -> plt.Figure:
    """At which epoch the pruned trials were stopped."""
    counts = trials.loc[trials["state"] == "pruned", "epochs_run"].value_counts().reindex(range(1, n_epochs + 1), fill_value=0)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(x=counts.index, y=counts.to_numpy(), color="C1", ax=ax)
    ax.set(xlabel="last epoch before pruning", ylabel="pruned trials", title="When trials were pruned")
    fig.tight_layout()
    return fig


def importances(table: pd.DataFrame) -> plt.Figure:
    """Percent of variance per term (variance decomposition or fANOVA) as bars."""
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(table) + 1.4))
    sns.barplot(x=table["percent"].to_numpy(), y=table["term"].astype(str).to_numpy(), color="C2", ax=ax)
    if {"low", "high"} <= set(table.columns):  # the decomposition's 95% intervals over seed noise
        spread = np.vstack([table["percent"] - table["low"], table["high"] - table["percent"]]).clip(min=0)
        ax.errorbar(table["percent"], np.arange(len(table)), xerr=spread, fmt="none", ecolor="0.2", capsize=3, label="95% interval")
        ax.legend(loc="lower right")
    ax.set(xlabel="percent of the variance of test accuracy", ylabel="", title="Where the variation in test accuracy comes from")
    fig.tight_layout()
    return fig


def option_means_by_lr(means: pd.DataFrame, factor: str, chance: float) -> plt.Figure:
    """Mean test accuracy of each option at each learning rate, the range over the other factor shaded: interactions show as crossings."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    options = sorted(means[factor].unique())
    for i, option in enumerate(options):
        rows = means[means[factor] == option].sort_values("lr")
        shift = 1.06 ** (i - (len(options) - 1) / 2)  # spread the markers a little on the log axis
        n = int(rows["n"].max()) if len(rows) else 0
        ax.plot(rows["lr"] * shift, rows["mean_acc"], marker="o", c=f"C{i}", label=f"{option} (n={n} per lr)")
        ax.fill_between(rows["lr"] * shift, rows["low"], rows["high"], color=f"C{i}", alpha=0.12)
    ax.axhline(chance, ls=":", c="0.4", label="chance")
    ax.set_xscale("log")
    ax.set(
        xlabel="learning rate (log scale)",
        ylabel="test accuracy (%)",
        title=f"Mean test accuracy by {factor} and learning rate (band: lowest to highest over the other factor)",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize="small")
    fig.tight_layout()
    return fig


def paired_differences(rows: pd.DataFrame, ci: str = CI) -> plt.Figure:
    """Each comparison's mean paired difference (a − b) with its interval (``ci`` names it), one row each; zero marked, claims in red."""
    data = rows[rows["lr"] != "interaction"].reset_index(drop=True)
    labels = [f"{r.a} − {r.b}  @ lr {r.lr if isinstance(r.lr, str) else f'{r.lr:g}'}  (n={r.n_pairs})" for r in data.itertuples()]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(data) + 1.4))
    y = np.arange(len(data))
    claimed = data["p_adjusted"] < 0.05
    colors = np.where(claimed, "C3", "C0")
    ax.hlines(y, data["ci_low"], data["ci_high"], colors=colors)
    ax.scatter(data["diff"], y, c=colors, zorder=3)
    ax.axvline(0, c="0.3", lw=1)
    for edge in {float(m) for m in data.get("margin", pd.Series(dtype=float)).dropna()}:
        ax.axvspan(-edge, edge, color="0.85", alpha=0.5, zorder=0)
    ax.set_yticks(y, labels, fontsize="small")
    ax.invert_yaxis()
    ax.set(
        xlabel=f"a − b (accuracy points, {ci}); red: a difference claimed; grey: the margin",
        title="Paired differences",
    )
    fig.tight_layout()
    return fig


def epoch_curves_by_lr(curves: pd.DataFrame) -> plt.Figure:
    """Mean train (dashed) and test (solid) accuracy per epoch at each learning rate."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, (lr, rows) in enumerate(curves.groupby("lr", sort=True)):
        n = int(rows["n"].max())
        ax.plot(rows["epoch"], rows["test_acc"], marker="o", c=f"C{i}", label=f"lr {lr:g} test (n={n})")
        ax.plot(rows["epoch"], rows["train_acc"], ls="--", c=f"C{i}", label=f"lr {lr:g} train")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Train (dashed) and test (solid) accuracy over epochs, mean of trials that learned")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize="small")
    fig.tight_layout()
    return fig


def loss_curves_by_lr(epochs: pd.DataFrame, numbers: list[int]) -> plt.Figure:
    """Mean test (solid) and train (dashed) loss per epoch, one panel per loss function (their scales differ)."""
    data = epochs[epochs["number"].isin(numbers)]
    losses = sorted(data["loss"].unique())
    fig, axes = plt.subplots(1, len(losses), figsize=(4.2 * len(losses) + 1.5, 4), squeeze=False)
    for ax, loss in zip(axes[0], losses, strict=True):
        sub = data[data["loss"] == loss].groupby(["lr", "epoch"])[["test_loss", "train_loss"]].mean().reset_index()
        for i, (lr, rows) in enumerate(sub.groupby("lr", sort=True)):
            ax.plot(rows["epoch"], rows["test_loss"], marker="o", c=f"C{i}", label=f"lr {lr:g}")
            ax.plot(rows["epoch"], rows["train_loss"], ls="--", c=f"C{i}")
        ax.set(xlabel="epoch", ylabel=f"{loss} loss", title=loss)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize="small")
    fig.suptitle("Test loss (solid) against training loss (dashed): a rising test loss is overfitting")
    fig.tight_layout()
    return fig
