"""Questions 1 and 2 on a paired grid: what changes when the activation (or the loss) changes?

For every two options of the factor: the paired differences at each learning rate of the grid,
the test of their interaction with the learning rate (Welch's one-way test of the paired differences
grouped by learning rate, each with its own spread; where the trials stored their per-image predictions, its Welch–James
form whose covariance also counts the test-image effects, ``stats.interaction_test``), and a pooled difference over the
learning rates. Where the interaction
is shown, the answer is "it depends on the learning rate" followed by the per-rate verdicts, and
the pooled row claims nothing. Where it is not, the pooled row is the mean of every pair at every
learning rate with a t interval over them (the two-way model with the untested interaction pooled
into the error: the lr-to-lr spread of the differences is part of its spread). It estimates the
difference averaged over the grid's learning rates and the other factor's options.

Every learning rate of the grid enters every comparison, whether the options learn there or not:
no threshold on the accuracies decides which enter.

:func:`compute` returns an :class:`OptionsResult`; :func:`section` draws it.
"""

import itertools
from dataclasses import dataclass

import pandas as pd

from reports import claims, figures, stats
from reports.blocks import Figure, Section, Table, lr_text, pct, pts
from reports.claims import Comparison
from reports.paired import LEARNS_POINTS, Design, cell_means, epoch_text, estimate_pairs, image_table, pairs


@dataclass
class PairResult:
    """Two options of a factor compared: the interaction test, each learning rate, and the pooled row."""

    interaction: Comparison
    per_lr: list[Comparison]
    pooled: Comparison | None

    @property
    def depends_on_lr(self) -> bool:
        return self.interaction.claims_difference


@dataclass
class OptionsResult:
    factor: str
    options: list[str]
    lrs: list[float]
    pairs: list[PairResult]
    compare_epoch: int
    design: Design  # for the table and figure of mean accuracies (paired.cell_means), drawn only in the section

    @property
    def means(self) -> pd.DataFrame:
        return cell_means(self.design, self.factor)

    def comparisons(self) -> list[Comparison]:
        rows = []
        for p in self.pairs:
            rows.append(p.interaction)
            rows.extend(p.per_lr)
            if p.pooled is not None:
                rows.append(p.pooled)
        return rows


def _oriented(x: str, y: str, diffs: pd.Series) -> tuple[str, str, int]:
    """Order the pair so that the first option is ahead on average: (first, second, the sign that turns x − y into it)."""
    return (y, x, -1) if len(diffs) and diffs.mean() < 0 else (x, y, 1)


def compare_pair(design: Design, factor: str, x: str, y: str, question: str, margin: float) -> PairResult | None:
    """Every comparison of options ``x`` and ``y``: per learning rate, their interaction with it, pooled (None without a pair)."""
    replicates = max(design.trials["replicate"].nunique(), 1)
    both = pairs(design, factor, x, y)
    if not len(both):
        return None
    per_lr, groups, tables, lr_means = [], [], [], []
    for lr, g in both.groupby("lr", sort=True):
        a, b, sign = _oriented(x, y, g["diff"])
        e = estimate_pairs(design, g, margin, sign)
        per_lr.append(
            claims.from_estimate(
                e, question=question, factor=factor, a=a, b=b, lr=lr, epoch=epoch_text(g["epoch"]), subset=f"lr={lr:g}",
                pairs_per_replicate=max(len(g) // replicates, 1),
            )
        )  # fmt: skip
        groups.append(g["diff"].to_numpy())
        tables.append(image_table(design, g["number_a"], g["epoch"], g["number_b"], g["epoch"]))
        lr_means.append((lr, float(g["diff"].mean())))
    # Pairs of one learning rate share its per-image effects: the test counts the images where every trial stored them.
    f = stats.interaction_test(groups, None if any(t is None for t in tables) else tables)
    interaction = Comparison(
        question=question, factor=factor, a=x, b=y, lr="interaction", epoch=epoch_text(both["epoch"]), n_pairs=len(both),
        diff=float(max(m for _, m in lr_means) - min(m for _, m in lr_means)) if lr_means else float("nan"),
        ci_low=float("nan"), ci_high=float("nan"), subset="F test of the paired differences by lr", kind="interaction", p=f.p,
        detail={"f": f.f, "df_between": f.df_between, "df_within": f.df_within, "means": lr_means,
                # Welch's test, with or without the images: every lr's own seeds' spread, and the test's own df.
                "welch": all(len(g) >= 2 and g.var() > 0 for g in groups)},
        interaction_data=claims.InteractionData(tuple(lr for lr, _ in lr_means), tuple(groups),
                                                None if any(t is None for t in tables) else tuple(tables)),
    )  # fmt: skip
    pooled = None
    if len(lr_means) >= 2:
        a, b, sign = _oriented(x, y, both["diff"])
        e = estimate_pairs(design, both, margin, sign)
        total = float(((both["diff"] - both["diff"].mean()) ** 2).sum())
        between = float(sum(len(g) * (g.mean() - both["diff"].mean()) ** 2 for g in groups))
        pooled = claims.from_estimate(
            e, question=question, factor=factor, a=a, b=b, lr="pooled", epoch=epoch_text(both["epoch"]),
            subset="every pair at every lr, pooled where no interaction is shown", kind="pooled",
            detail={"lrs": len(lr_means), "between": between / total if total else 0.0}, gate=interaction,
            pairs_per_replicate=max(len(both) // replicates, 1),
        )  # fmt: skip
    return PairResult(interaction, per_lr, pooled)


def compute(design: Design, factor: str, margin: float = claims.DEFAULT_MARGIN) -> OptionsResult:
    """Compare every two options of ``factor`` (activation or loss) on the paired grid."""
    options = sorted(design.trials[factor].dropna().unique())
    compared = (compare_pair(design, factor, x, y, factor, margin) for x, y in itertools.combinations(options, 2))
    results = [p for p in compared if p is not None]
    lrs = sorted(design.trials["lr"].unique())
    return OptionsResult(factor, options, lrs, results, design.compare_epoch, design)


def section(result: OptionsResult, title: str, chance: float, extra: list | None = None, ci: str = claims.CI) -> Section:
    """The question's section: per pair a headline (pooled, or "it depends on the learning rate"), the per-lr verdicts."""
    factor = result.factor
    s = Section(title, numbered=True)
    if not any(p.per_lr for p in result.pairs):
        return s.add(f"No block holds trials of two {_plural(factor)} yet, so there is no pair to compare.")
    s.add(
        f"Compared at epoch {result.compare_epoch}, at every learning rate of the grid ({', '.join(lr_text(lr) for lr in result.lrs)}): "
        f"no threshold on the accuracies decides which learning rates enter. For each two {_plural(factor)} the interaction with the "
        "learning rate is tested first (F test of the paired differences grouped by learning rate); a pooled difference is given "
        "only where the interaction's own p-value, before the report's correction, is above 0.05: the mean of every pair, an "
        "average over the grid's learning rates and the other factor's options."
    )
    m = result.means
    learning = {lr: sorted(g.loc[g["mean_acc"] > chance + LEARNS_POINTS, factor]) for lr, g in m.groupby("lr")}
    lines = []
    for p in result.pairs:
        x, y = p.interaction.a, p.interaction.b
        if p.depends_on_lr:
            lines.append(f"- **{x} vs {y}: it depends on the learning rate.** {p.interaction.verdict}.")
        elif p.pooled is not None:
            lines.append(f"- **{x} vs {y}:** {p.pooled.verdict}.")
            lines.append(f"  - {p.interaction.verdict}")
        else:
            lines.append(f"- **{x} vs {y}** (one learning rate):")
        if p.depends_on_lr and p.pooled is not None:
            lines.append(f"  - {p.pooled.verdict}")
        for c in p.per_lr:
            lines.append(f"  - lr {lr_text(c.lr)}{_learners(m, factor, learning.get(c.lr, []), c.lr)}: {c.verdict}")
    s.add("\n".join(lines))
    s.add(
        f"Mean test accuracy at epoch {result.compare_epoch} by {factor} and learning rate, over the other factor's options and the "
        f"replicates. It carries no interval: most of the spread behind it is the other factor's effect, not noise; the "
        f"columns give that range and the seed-to-seed spread of one grid point (the noise the paired verdicts cancel).",
        Table(
            pd.DataFrame(
                {
                    "lr": m["lr"].map(lr_text),
                    factor: m[factor],
                    "n": m["n"].astype(str),
                    "mean test acc": m["mean_acc"].map(pct),
                    "lowest – highest over the other factor": [
                        f"{pct(lo, 1)} – {pct(hi, 1)}" for lo, hi in zip(m["low"], m["high"], strict=True)
                    ],
                    "seed-to-seed sd (points)": m["seed_sd"].map(lambda v: pts(v, 1).lstrip("+")),
                }
            )
        ),
        Figure(
            f"{factor}_by_lr", f"mean test accuracy by {factor} and learning rate", lambda: figures.option_means_by_lr(m, factor, chance)
        ),
        Figure(
            f"{factor}_differences",
            f"paired differences between {factor} options",
            lambda: figures.paired_differences(claims.frame(_drawn(result)), ci),
        ),
    )
    for block in extra or []:
        s.add(block)
    return s


def _drawn(result: OptionsResult) -> list[Comparison]:
    """The comparisons the differences figure shows: every per-lr row, and the pooled rows that were pooled."""
    return [c for p in result.pairs for c in (*p.per_lr, p.pooled) if c is not None and not c.withheld]


def _plural(factor: str) -> str:
    return factor + ("es" if factor.endswith("s") else "s")


def _learners(means: pd.DataFrame, factor: str, learners: list[str], lr: float) -> str:
    """ " (tanh 36.0% learns; relu 10.2% within 5 points of chance)" where some option is at chance at this learning rate."""
    m = means[means["lr"] == lr]
    if len(learners) == len(m):
        return ""
    at_chance = [f"{o} {pct(a, 1)}" for o, a in zip(m[factor], m["mean_acc"], strict=True) if o not in learners]
    if not learners:
        return f" (no {factor} learns: {', '.join(at_chance)})"
    live = [f"{o} {pct(a, 1)}" for o, a in zip(m[factor], m["mean_acc"], strict=True) if o in learners]
    return f" ({', '.join(live)} learn{'s' if len(live) == 1 else ''}; {', '.join(at_chance)} within {LEARNS_POINTS:g} points of chance)"
