"""Question 4 on a paired grid: does performance always improve with more epochs?

Per learning rate, over the complete trials that ran every epoch, did not diverge and learned
(peak more than ``LEARNED_POINTS`` above chance):

- where the mean test-accuracy curve peaks, with the bootstrap range of that epoch (trials resampled);
- when it peaks before the last epoch: the drop from the peak to the last epoch, trial by trial, with
  its t interval. Its p-value is multiplied by the number of epochs the peak could have been at
  (Bonferroni over the candidates), because the peak was picked from the same data. "More epochs
  hurt" needs that drop shown; "a plateau" needs the last epoch shown within the margin of the peak
  (TOST); anything else is "cannot tell";
- when it peaks at the last epoch: the gain over the last third of the epochs (``gain_span``). The
  curve may still be rising, so the answer is "cannot tell within E epochs" with how many epochs to
  try, unless that gain is shown within the margin (a plateau);
- per loss, the rise of the test loss from its lowest epoch to the last (same Bonferroni factor):
  overfitting is claimed only when that rise is shown while the training loss fell.

The drop and the gain count the test images as well as the seeds where the trials stored their predictions
(``paired.image_table`` of each trial against itself); the rise of the test loss counts the seeds only (no
per-image loss is stored).

:func:`compute` returns an :class:`EpochsResult`; :func:`section` draws it.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports import claims, figures, stats
from reports.blocks import Figure, Section, lr_text
from reports.claims import Comparison
from reports.paired import LEARNED_POINTS, Design, image_table

SEED = 0  # the bootstrap of the peak's location


@dataclass
class LrEpochs:
    lr: float
    n: int  # trials used
    peak: stats.Peak
    row: Comparison  # "drop" (peak before the last epoch) or "gain" (peak at the last epoch)
    loss_rows: list[Comparison]  # one per loss whose mean test loss is lowest before the last epoch


@dataclass
class EpochsResult:
    n_epochs: int
    per_lr: list[LrEpochs]
    numbers: list[int]  # the trials used
    compare_epoch: int
    design: Design

    @property
    def curves(self) -> pd.DataFrame:
        """lr, epoch, n, test_acc, train_acc: the mean curves of the trials used (for the figure)."""
        return _mean_curves(self.design, self.design.trials[self.design.trials["number"].isin(self.numbers)])

    def comparisons(self) -> list[Comparison]:
        return [c for r in self.per_lr for c in (r.row, *r.loss_rows)]


def epochs_to_try(n_epochs: int) -> int:
    """A longer run that would show whether the curve turns: twice the epochs, at least five more."""
    return max(2 * n_epochs, n_epochs + 5)


def gain_span(n_epochs: int) -> int:
    """Epochs over which a curve that peaks at its end is judged: the last third (one epoch at least).

    One epoch's gain can sit inside the margin while the curve still climbs a point per epoch; the gain over the
    last third of the run is what a plateau must keep inside the margin.
    """
    return max(1, round(n_epochs / 3))


def runs(design: Design) -> pd.DataFrame:
    """The trials the epochs question uses: complete, every epoch run, not diverged, learned."""
    t = design.trials
    keep = (t["state"] == "complete") & ~t["diverged"] & (t["epochs_run"] == design.n_epochs)
    return t[keep & (t["peak_test_acc"] > design.chance + LEARNED_POINTS)]


def _across_epochs(design: Design, numbers: np.ndarray, acc: np.ndarray, last: int, other: int, margin: float) -> stats.Estimate:
    """Each trial against itself, epoch ``last`` − epoch ``other``: over seeds and test images where the trials stored
    their predictions (the same images at both epochs), over the seeds only otherwise."""
    n = len(numbers)
    table = image_table(design, numbers, [last] * n, numbers, [other] * n)
    return stats.estimate(acc[:, last - 1] - acc[:, other - 1], margin, images=table)


def _loss_rows(design: Design, numbers: np.ndarray, group: pd.DataFrame, lr: float) -> list[Comparison]:
    n_epochs, rows = design.n_epochs, []
    for loss, sub in group.groupby("loss", sort=True):
        test = design.curves["test_loss"].loc[sub["number"]].to_numpy()
        train = design.curves["train_loss"].loc[sub["number"]].to_numpy()
        ok = np.isfinite(test).all(axis=1) & np.isfinite(train).all(axis=1)
        test, train = test[ok], train[ok]
        if not len(test):
            continue
        low = int(np.argmin(test.mean(axis=0))) + 1
        if low == n_epochs:
            continue  # still falling at the last epoch: nothing rose
        e = stats.estimate(test[:, -1] - test[:, low - 1])
        rows.append(
            claims.from_estimate(
                e, question="epochs", factor="test loss", a=f"test loss, epoch {n_epochs}", b=f"test loss, epoch {low}", lr=lr,
                epoch=f"{low}–{n_epochs}", subset=f"lr={lr:g}, loss={loss}", kind="loss rise", multiplicity=n_epochs - 1,
                detail={"loss": loss, "lr": lr, "train_change": float((train[:, -1] - train[:, low - 1]).mean())},
            )
        )  # fmt: skip
    return rows


def compute(design: Design, margin: float = claims.DEFAULT_MARGIN, seed: int = SEED) -> EpochsResult:
    n_epochs = design.n_epochs
    used = runs(design)
    acc_wide = design.curves["test_acc"]
    per_lr = []
    for lr, group in used.groupby("lr", sort=True):
        numbers = group["number"].to_numpy()
        acc = acc_wide.loc[numbers].to_numpy()
        if n_epochs < 2:
            continue
        peak = stats.peak_location(acc, seed)
        fields = {"question": "epochs", "factor": "epoch", "lr": lr, "subset": f"lr={lr:g}", "a": f"epoch {n_epochs}"}
        if peak.epoch < n_epochs:
            e = _across_epochs(design, numbers, acc, n_epochs, peak.epoch, margin)
            row = claims.from_estimate(
                e, b=f"epoch {peak.epoch}", epoch=f"{peak.epoch}–{n_epochs}", kind="drop", multiplicity=n_epochs - 1, **fields
            )
        else:
            back = n_epochs - gain_span(n_epochs)
            e = _across_epochs(design, numbers, acc, n_epochs, back, margin)
            row = claims.from_estimate(
                e, b=f"epoch {back}", epoch=f"{back}–{n_epochs}", kind="gain",
                detail={"epochs": n_epochs, "try": epochs_to_try(n_epochs)}, **fields,
            )  # fmt: skip
        per_lr.append(LrEpochs(lr, len(numbers), peak, row, _loss_rows(design, numbers, group, lr)))
    return EpochsResult(n_epochs, per_lr, used["number"].tolist(), design.compare_epoch, design)


def _mean_curves(design: Design, used: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for lr, group in used.groupby("lr", sort=True):
        for name in ("test_acc", "train_acc"):
            wide = design.curves.get(name)
            if wide is None:
                continue
            mean = wide.loc[group["number"]].mean(axis=0)
            rows.extend({"lr": lr, "epoch": int(ep), "n": len(group), "curve": name, "value": float(v)} for ep, v in mean.items())
    long = pd.DataFrame(rows, columns=["lr", "epoch", "n", "curve", "value"])
    if not len(long):
        return pd.DataFrame(columns=["lr", "epoch", "n", "test_acc", "train_acc"])
    return long.pivot_table(index=["lr", "epoch", "n"], columns="curve", values="value").reset_index()


def section(result: EpochsResult, epochs_frame: pd.DataFrame, margin: float, ci: str = claims.CI) -> Section:
    s = Section("Does performance always improve with more epochs?", numbered=True)
    n_epochs = result.n_epochs
    if not result.per_lr:
        return s.add(
            f"No trial ran all {n_epochs} epochs and learned (peak test accuracy more than {LEARNED_POINTS:g} points above chance)."
        )
    lines = []
    for r in result.per_lr:
        p = r.peak
        where = f"epoch {p.epoch}" + (f" (between epochs {p.low} and {p.high} in 95% of bootstrap resamples)" if p.low != p.high else "")
        learned = f"{r.n} trial{'s' if r.n != 1 else ''} that learned"
        lines.append(f"- lr {lr_text(r.lr)} ({learned}): the mean test accuracy peaks at {where}; {r.row.verdict}.")
    s.add(
        f"All {n_epochs} epochs are used here (questions 1–3 compare at epoch {result.compare_epoch}).",
        "\n".join(lines),
    )
    loss_rows = [c for r in result.per_lr for c in r.loss_rows]
    if loss_rows:
        s.add(
            "Test loss against training loss, per loss and learning rate where the mean test loss is lowest before the last epoch "
            "(a test loss that rises while the training loss falls is overfitting: the network grows more confident on the training "
            "images and less right on new ones; it is claimed only where the rise is shown):",
            "\n".join(f"- {c.verdict}" for c in loss_rows),
        )
    else:
        s.add("Within these epochs the mean test loss fell to the last epoch for every loss and learning rate: no overfitting to test.")
    s.add(
        "How the verdict is drawn: per learning rate, trials are compared with themselves across epochs (each trial gives one "
        f"difference, with a {ci.removesuffix(' CI')} t interval). A drop from the peak is tested with its p-value multiplied by "
        "the number of epochs the "
        f"peak could have been at, since the peak was picked from the same trials; a plateau is the last epoch shown within the "
        f"{margin:g}-point margin (TOST); a curve that peaks at its last epoch cannot say whether more epochs keep helping. Complete "
        "trials that ran every epoch, did not diverge and learned are used.",
        Figure(
            "epochs_train_test", "train and test accuracy per epoch by learning rate", lambda: figures.epoch_curves_by_lr(result.curves)
        ),
        Figure("epochs_loss", "test and training loss per epoch", lambda: figures.loss_curves_by_lr(epochs_frame, result.numbers)),
    )
    return s
