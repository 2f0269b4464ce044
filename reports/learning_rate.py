"""Question 3 on a paired grid: what happens when the learning rate is too high or too low?

Per loss, every two learning rates are compared on the same seeds (blocks: activation and
replicate). All of these pairs enter the report's family of tests, so naming the best learning rate
from the data and then comparing it with the others claims nothing the family does not control.
The answer names, per loss, the best learning rate and each other one's paired difference from it:
*too low* or *too high* when the best is shown ahead by more than a negligible amount, *good* when
the two are shown within the margin, *cannot tell yet* otherwise; *at chance* marks a mean within
``LEARNS_POINTS`` of chance (descriptive).

:func:`compute` returns an :class:`LrResult`; :func:`section` draws it.
"""

import dataclasses
import itertools
from dataclasses import dataclass

import pandas as pd

from reports import claims, figures
from reports.blocks import Figure, Section, Table, interval, lr_text, pct, pts
from reports.claims import Comparison
from reports.paired import LEARNS_POINTS, Design, epoch_text, estimate_pairs, pairs


@dataclass
class LossLrs:
    """One loss: its mean accuracy per learning rate, the best one, and every pair of learning rates compared."""

    loss: str
    means: pd.DataFrame  # lr, n, mean_acc
    best: float
    rows: list[Comparison]  # every pair of learning rates
    versus_best: dict[float, Comparison]  # lr -> its comparison with the best

    def regime(self, lr: float, chance: float) -> str:
        if lr == self.best:
            return "best"
        c = self.versus_best[lr]
        side = "too low" if lr < self.best else "too high"
        mean = float(self.means.loc[self.means["lr"] == lr, "mean_acc"].iloc[0])
        if c.claims_equivalence:
            return "good"  # within the margin of the best (or below it by a negligible amount)
        if c.claims_difference and c.a == f"lr {self.best:g}":
            return f"{side} (at chance)" if mean <= chance + LEARNS_POINTS else side
        return "unclear"


@dataclass
class LrResult:
    losses: list[LossLrs]
    compare_epoch: int

    def comparisons(self) -> list[Comparison]:
        return [c for loss in self.losses for c in loss.rows]


def compute(design: Design, margin: float = claims.DEFAULT_MARGIN) -> LrResult:
    replicates = max(design.trials["replicate"].nunique(), 1)
    losses = []
    for loss, group in design.trials.groupby("loss", sort=True):
        means = group.groupby("lr")["acc"].agg(n="size", mean_acc="mean").reset_index()
        best = float(means.loc[means["mean_acc"].idxmax(), "lr"])
        sub = dataclasses.replace(design, trials=group)
        rows, versus = [], {}
        for x, y in itertools.combinations(sorted(means["lr"]), 2):
            d = pairs(sub, "lr", x, y)  # diff: x − y
            if not len(d):
                continue  # no block holds both (a grid not yet complete)
            if best in (x, y):  # compared with the best, the best comes first
                a, b = (x, y) if x == best else (y, x)
            else:  # the one ahead on average first
                a, b = (x, y) if d["diff"].mean() >= 0 else (y, x)
            e = estimate_pairs(sub, d, margin, sign=1 if a == x else -1)
            c = claims.from_estimate(
                e, question="learning rate", factor="lr", a=f"lr {a:g}", b=f"lr {b:g}", lr=b if a == best else a,
                epoch=epoch_text(d["epoch"]), subset=f"loss={loss}", pairs_per_replicate=max(len(d) // replicates, 1),
            )  # fmt: skip
            rows.append(c)
            if best in (x, y):
                versus[b] = c
        losses.append(LossLrs(loss, means, best, rows, versus))
    return LrResult(losses, design.compare_epoch)


REGIMES = {
    "good": "good (within the margin of the best)",
    "too low": "too low",
    "too low (at chance)": "too low, at chance",
    "too high": "too high",
    "too high (at chance)": "too high, at chance",
    "unclear": "cannot tell yet",
}


def section(result: LrResult, frames_trials: pd.DataFrame, chance: float, margin: float, ci: str = claims.CI) -> Section:
    s = Section("What happens when the learning rate is too high or too low?", numbered=True)
    if not result.losses:
        return s.add("No finished trial yet.")
    lines, table = [], []
    for loss in result.losses:
        best = loss.means.loc[loss.means["lr"] == loss.best].iloc[0]
        if best["mean_acc"] <= chance + LEARNS_POINTS:
            lines.append(
                f"- **{loss.loss}** learns at no learning rate tried: the best mean is {pct(best['mean_acc'])}, chance is {chance:.0f}%."
            )
            continue
        parts = [f"best lr {lr_text(loss.best)} ({pct(best['mean_acc'])}, n={int(best['n'])})"]
        regimes = {lr: loss.regime(lr, chance) for lr in loss.versus_best}
        for regime, name in REGIMES.items():
            listed = [lr for lr, r in regimes.items() if r == regime]
            if listed:
                parts.append(f"{name}: " + ", ".join(f"{lr_text(lr)} ({pts(-loss.versus_best[lr].diff, 1)})" for lr in listed))
        lines.append(f"- **{loss.loss}**: " + "; ".join(parts) + ".")
        lines.extend(f"  - {loss.versus_best[lr].verdict}" for lr in sorted(loss.versus_best))
        for _, m in loss.means.iterrows():
            c = loss.versus_best.get(m["lr"])
            table.append({
                "loss": loss.loss, "lr": lr_text(m["lr"]), "n": str(int(m["n"])), "mean test acc": pct(m["mean_acc"]),
                f"vs best (points) [{ci}]": "–" if c is None else f"{pts(-c.diff)} {interval(-c.ci_high, -c.ci_low)}",
                "regime": "best" if c is None else regimes[m["lr"]],
            })  # fmt: skip
    s.add(
        f"Compared at epoch {result.compare_epoch}. For each loss, every learning rate is compared with the best one on the same seeds "
        "(pairs: same activation and replicate); the number in brackets is its paired difference from the best, in points.",
        "\n".join(lines),
        f"A learning rate is *good* when it is shown within the {margin:g}-point margin of the best; *too low* or *too high* when the best "
        f"is shown ahead of it, on the side below or above the best; *at chance* when its mean is within {LEARNS_POINTS:g} points of "
        f"chance ({chance:.0f}%). Every other pair of learning rates is tested too (rows of comparisons.csv), so that picking the best "
        f"from the data claims nothing the report's error control does not cover. Diverged trials (NaN or infinite loss): "
        f"{int(frames_trials['diverged'].sum())}.",
        Table(pd.DataFrame(table, columns=["loss", "lr", "n", "mean test acc", f"vs best (points) [{ci}]", "regime"])),
        Figure("lr_accuracy", "test accuracy against learning rate", lambda: figures.accuracy_vs_lr(frames_trials, chance)),
    )
    return s
