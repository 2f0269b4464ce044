"""Every comparison a report makes, one error rate over all of them, and the sentence each one reads as.

A :class:`Comparison` is one row of ``comparisons.csv``: a mean difference with its 95% t
interval, the p-value of its t test against zero (``p``) and of its equivalence test (TOST) at
the practical margin (``p_equiv``). The questions compute them; :func:`settle` then puts every
p-value of the report into one family, adjusts them with Holm's method (family-wise error rate
5%: the chance that the report makes any false claim at all) and writes each verdict:

============================  =========================  ===================================
difference shown (adjusted)   equivalence shown          verdict
============================  =========================  ===================================
yes                           no                         "a is ahead of b by d [lo, hi]"
yes                           yes                        "negligible: … within the margin"
no                            yes                        "within the m-point margin"
no                            no                         "cannot tell yet" + replicates advice
============================  =========================  ===================================

Intervals are per-comparison 95% t intervals; the adjusted p decides the claim. Where the trials stored their
per-image predictions, an interval counts the test images as well as the seeds (``se_images``, ``se_seeds``;
``stats.estimate``): it is about new test images drawn like these, and the replicates advice knows when the test
set, not the seeds, is what keeps a comparison open (:func:`advises_images`).
"""

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports import stats

DEFAULT_MARGIN = 2.0  # accuracy points: a smaller difference does not matter to a student
MIN_PAIRS = 3  # fewer pairs get no interval and no test: a t interval on 2 values is near useless
COLUMNS = ["question", "factor", "a", "b", "lr", "epoch", "n_pairs", "diff", "ci_low", "ci_high", "verdict", "subset",
           "p", "p_adjusted", "p_equiv", "p_equiv_adjusted", "margin", "se_seeds", "se_images", "df", "n_images"]  # fmt: skip
DATASET_NAMES = {"cifar10": "CIFAR-10"}  # data sources with a name (an image folder has none)
DATASET_TEST_IMAGES = {"cifar10": 10_000}  # test images of a data source, the most --test-size can give (an image folder: unknown)
KINDS = ("difference", "pooled", "interaction", "drop", "gain", "loss rise", "observational")


@dataclass
class Comparison:
    """One comparison: ``diff`` = mean of (a − b) over ``n_pairs`` pairs, in points (test loss for ``loss rise``)."""

    question: str  # activation, loss, learning rate, epochs
    factor: str  # what differs within a pair
    a: str
    b: str
    lr: float | str  # a learning rate, "pooled" or "interaction"
    epoch: str  # the epoch(s) the pairs were compared at
    n_pairs: int
    diff: float
    ci_low: float
    ci_high: float
    subset: str  # which trials: "lr=0.001", "loss=mse", ...
    kind: str = "difference"  # one of KINDS: how the verdict reads
    sd: float = math.nan  # spread of the pairs (for the replicates advice)
    p: float = math.nan
    p_equiv: float = math.nan
    pairs_per_replicate: int = 1  # pairs one more replicate adds
    se_seeds: float = math.nan  # standard error from the spread of the pairs (replicates shrink it)
    se_images: float = math.nan  # standard error from the shared test images (replicates do not); NaN: not measured
    df: float = math.nan  # the interval's degrees of freedom (Satterthwaite's when se_images is measured)
    n_images: int = 0  # test images behind se_images (0: seeds only)
    detail: dict = field(default_factory=dict)  # what a kind's sentence needs besides the numbers
    margin: float = DEFAULT_MARGIN
    p_adjusted: float = math.nan
    p_equiv_adjusted: float = math.nan
    plan_alpha: float = stats.ALPHA  # the level the replicates advice plans at
    max_replicates: int | None = None  # the most replicates the study may run (a sequential study's --max-repeats); None: no bound
    dataset_images: int | None = None  # test images the dataset has, the most --test-size can give; None: unknown
    gate: "Comparison | None" = None  # a pooled row's interaction test: when it shows one, the pooled row claims nothing
    withheld: str = ""  # why this comparison claims nothing whatever its p-values (a pooled row over an interaction)
    verdict: str = ""

    @property
    def claims_difference(self) -> bool:
        return not self.withheld and bool(self.p_adjusted < stats.ALPHA)

    @property
    def claims_equivalence(self) -> bool:
        return not self.withheld and bool(self.p_equiv_adjusted < stats.ALPHA)

    @property
    def claims(self) -> bool:
        return self.claims_difference or self.claims_equivalence

    @property
    def image_share(self) -> float:
        """The share of the interval's variance that comes from the test images (NaN: not measured)."""
        total = self.se_seeds**2 + self.se_images**2
        return self.se_images**2 / total if total > 0 else math.nan


CI = "95% CI"  # what the report calls a comparison's interval; a sequential report's are repeated intervals (REPEATED_CI)
REPEATED_CI = "repeated CI"  # at level 1 − 0.05/K at one look, covering at 95% however the study stopped (reports.sequential)


def plan(c: Comparison) -> stats.Plan | None:
    """What would decide open comparison ``c`` (settled): ``stats.plan_to_decide`` at its planned level; None for a pooled
    row whose spread comes mostly from learning rate to learning rate (the per-learning-rate rows answer it)."""
    if c.kind == "pooled" and c.detail.get("between", 0.0) > 0.5:
        return None
    return stats.plan_to_decide(
        c.sd, c.n_pairs, c.pairs_per_replicate, c.se_images, c.n_images, c.margin, c.plan_alpha, c.max_replicates, c.dataset_images
    )


def advises_images(c: Comparison) -> bool:
    """Whether open comparison ``c``'s advice is more test images (a larger --test-size), not more replicates: the one rule
    of the verdict (:func:`replicates_advice`) and of the header's count. False for a comparison that claims.

    >>> c = Comparison("activation", "activation", "relu", "tanh", 1e-3, "10", 4, 1.0, -2.0, 4.0, "", sd=2.0, se_images=1.1, n_images=2000)
    >>> c.plan_alpha = 0.001
    >>> advises_images(c)
    True
    """
    if c.claims or c.withheld:
        return False
    p = plan(c)
    return p is not None and p.test_size is not None


def from_estimate(e: stats.Estimate, **fields) -> Comparison:
    """A comparison from an :class:`stats.Estimate`; below ``MIN_PAIRS`` values it has no interval and no test."""
    few = e.n < MIN_PAIRS
    nan = math.nan
    return Comparison(
        n_pairs=e.n, diff=e.mean, ci_low=nan if few else e.low, ci_high=nan if few else e.high, sd=e.sd,
        p=nan if few else e.p, p_equiv=nan if few else e.p_equiv, se_seeds=nan if few else e.se_seeds,
        se_images=nan if few else e.se_images, df=nan if few else float(e.df), n_images=0 if few else e.n_images, **fields,
    )  # fmt: skip


def settle(
    comparisons: list[Comparison], margin: float = DEFAULT_MARGIN, alpha: float = stats.ALPHA, sentences: bool = True,
    max_replicates: int | None = None, dataset_images: int | None = None,
) -> list[Comparison]:  # fmt: skip
    """Adjust every p-value of the report together (Holm) and write each comparison's verdict, in place.

    ``sentences=False`` leaves the verdicts unwritten (the claims are settled all the same): simulations need no text.
    ``max_replicates`` (the most replicates the study may run) and ``dataset_images`` (its dataset's test images) bound
    the advice of the open ones (None: no bound, unknown).
    """
    family = np.array([p for c in comparisons for p in (c.p, c.p_equiv)], dtype=float)
    groups = np.repeat(np.arange(len(comparisons)), 2)  # a comparison's two hypotheses cannot both be true
    adjusted = stats.holm_grouped(family, groups, alpha)
    level = stats.next_level(adjusted, groups, alpha)
    for i, c in enumerate(comparisons):
        c.p_adjusted, c.p_equiv_adjusted = float(adjusted[2 * i]), float(adjusted[2 * i + 1])
        c.margin, c.plan_alpha = margin, level
        c.max_replicates, c.dataset_images = max_replicates, dataset_images
    for c in comparisons:
        if c.gate is not None:
            c.withheld = withheld(c.gate, c.gate.p, alpha)
        if sentences:
            c.verdict = verdict(c)
    return comparisons


def withheld(gate: Comparison, own_p: float, alpha: float = stats.ALPHA) -> str:
    """Why a pooled row claims nothing over its settled interaction test ``gate`` whose own p-value is ``own_p``; "" when
    it may pool. Pooling needs the interaction to be absent, not merely unproven: the gate is its own p, uncorrected (the
    report's correction protects claims; here it would protect a pooled number over an interaction instead)."""
    if gate.claims_difference:
        return "the difference depends on the learning rate (the interaction row above), so one number over them misleads"
    if own_p < alpha:
        return (
            f"the difference may depend on the learning rate (the interaction's own p is {p_text(own_p)}, below {alpha:g} "
            "before the report's correction), so one number over them could mislead"
        )
    return ""


def frame(comparisons: list[Comparison]) -> pd.DataFrame:
    """The tidy ``comparisons.csv``: one row per comparison, in COLUMNS order."""
    return pd.DataFrame([[getattr(c, name) for name in COLUMNS] for c in comparisons], columns=COLUMNS)


def p_text(p: float) -> str:
    return "–" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def _ci(c: Comparison, sign: int = 1, digits: int = 1) -> str:
    low, high = sorted((sign * c.ci_low, sign * c.ci_high))
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def replicates_advice(c: Comparison) -> str:
    """How many more replicates would decide a margin-sized difference, or which test size (and replicates) would.

    Replicates and test images are planned together (:func:`plan`, ``stats.plan_to_decide``): more replicates on these
    test images where the study allows enough of them, else a test size whose images use about half of the variance a
    margin-sized question allows, with the replicates that the seeds' half then needs.
    """
    p = plan(c)
    if p is None:
        return (
            f"more replicates will not help: most of its spread ({c.detail['between']:.0%}) comes from learning rate to learning "
            "rate (the per-learning-rate verdicts answer it)"
        )
    if p.test_size is not None:
        return _images_advice(c, p)
    if not math.isfinite(p.replicates):
        return "run more replicates (--repeats)"
    more = int(p.replicates)
    beyond = f", more than the {c.max_replicates} the study may run (--max-repeats)" if p.beyond and c.max_replicates else ""
    return (
        f"about {more} more replicate{'s' if more != 1 else ''} would decide a {c.margin:g}-point difference "
        f"with {stats.POWER:.0%} probability{beyond}"
    )


def _images_advice(c: Comparison, p: stats.Plan) -> str:
    """More test images: the test size of the plan and its replicates, or nothing the dataset has."""
    total = math.hypot(c.se_seeds, c.se_images)
    share = (
        f"±{c.se_images:.1f} of its ±{total:.1f}-point standard error comes from which {c.n_images:,} test images were drawn, "
        "and every replicate shares them"
    )
    has = f"the {c.dataset_images:,} the dataset has" if c.dataset_images else "as many as the image folder has"
    if not math.isfinite(p.replicates):
        return f"more replicates cannot decide it ({share}); even {has} would leave it open at a {c.margin:g}-point margin"
    reps = int(p.replicates)
    return (
        f"more test images would ({share}): a study with --test-size {p.test_size:,} (up to {has}), where the images take about "
        f"half of the allowed variance, and {reps} replicate{'s' if reps != 1 else ''} in all would decide a "
        f"{c.margin:g}-point difference with {stats.POWER:.0%} probability"
    )


def verdict(c: Comparison) -> str:
    """The sentence a student acts on, from one settled comparison."""
    if c.kind == "observational":
        return c.detail["text"]
    if c.kind == "interaction":
        return _interaction(c)
    if c.kind == "loss rise":
        return _loss_rise(c)
    if c.withheld:
        return f"not pooled: {c.withheld}; the mean over the learning rates, {c.a} − {c.b} = {c.diff:+.1f} points {_ci(c)}, is no claim"
    if c.n_pairs == 0:
        return f"cannot tell: no pair of {c.a} and {c.b} trials"
    unit = "trials" if c.kind in ("drop", "gain") else "pairs"
    count = f"{c.n_pairs} {unit}" if c.kind != "pooled" else f"{c.n_pairs} pairs over {c.detail.get('lrs', '?')} learning rates"
    if math.isnan(c.p):
        only = f"one {unit[:-1]}" if c.n_pairs == 1 else f"{c.n_pairs} {unit}"
        return f"cannot tell yet: {only} only ({c.a} − {c.b} = {c.diff:+.1f} points); run more replicates (--repeats)"
    if c.kind == "drop":
        return _drop(c, count)
    if c.kind == "gain":
        return _gain(c, count)
    m = f"{c.margin:g}-point margin"
    if c.claims_difference:
        a, b, sign = (c.a, c.b, 1) if c.diff > 0 else (c.b, c.a, -1)
        if c.claims_equivalence:
            return f"negligible: {a} is ahead of {b} by only {sign * c.diff:.1f} points {_ci(c, sign)}, within the {m} ({count})"
        return f"{a} is ahead of {b} by {sign * c.diff:.1f} points {_ci(c, sign)} ({count}, adjusted p {p_text(c.p_adjusted)})"
    if c.claims_equivalence:
        return f"{c.a} and {c.b} are within the {m} of each other: {c.a} − {c.b} = {c.diff:+.1f} points {_ci(c)} ({count})"
    return (
        f"cannot tell yet: {c.a} − {c.b} = {c.diff:+.1f} points {_ci(c)} ({count}, adjusted p {p_text(c.p_adjusted)}); "
        + replicates_advice(c)
    )


def _interaction(c: Comparison) -> str:
    d = c.detail
    own = d.get("own_p", c.p)  # the test's own p; a sequential report's ``p`` is the repeated one over its looks
    test = f"F({d['df_between']}, {d['df_within']:.0f}) = {d['f']:.1f}, adjusted p {p_text(c.p_adjusted)}"
    means = ", ".join(f"{m:+.1f} at {lr:g}" for lr, m in d["means"])
    if math.isnan(own):
        return (
            f"{c.a} − {c.b} by learning rate: {means} points; whether it changes with the learning rate cannot be tested "
            "(that needs two learning rates and more than one pair at one of them)"
        )
    if c.claims_difference:
        return f"{c.a} − {c.b} depends on the learning rate ({test}): {means} points"
    if own < stats.ALPHA:
        return (
            f"{c.a} − {c.b} may depend on the learning rate ({test}; its own p {p_text(own)}): not a claim, but too strong "
            f"to pool over: {means} points"
        )
    return f"no interaction shown ({test}; its own p {p_text(own)}): {c.a} − {c.b} is {means} points"


def _drop(c: Comparison, count: str) -> str:
    last, peak = c.a, c.b
    m = f"{c.margin:g}-point margin"
    if c.claims_difference and c.diff < 0 and not c.claims_equivalence:
        return f"more epochs hurt: {last} is {-c.diff:.1f} points below the peak at {peak} {_ci(c, -1)} ({count})"
    if c.claims_difference and c.diff < 0:
        return f"a negligible drop: {last} is {-c.diff:.1f} points below the peak at {peak} {_ci(c, -1)}, within the {m} ({count})"
    if c.claims_equivalence:
        return f"a plateau: {last} is within the {m} of the peak at {peak} ({c.diff:+.1f} points {_ci(c)}, {count})"
    return (
        f"cannot tell whether the last epochs hurt: {last} − {peak} = {c.diff:+.1f} points {_ci(c)} "
        f"({count}, adjusted p {p_text(c.p_adjusted)})"
    )


def _gain(c: Comparison, count: str) -> str:
    n_epochs = c.detail["epochs"]
    more = f"try --epochs {c.detail['try']}"
    m = f"{c.margin:g}-point margin"
    if c.claims_difference and c.diff > 0:
        size = f" by less than the {m}" if c.claims_equivalence else ""
        return (
            f"still rising at the last epochs{size}: {c.a} adds {c.diff:+.1f} points over {c.b} {_ci(c)} ({count}); "
            f"cannot tell within {n_epochs} epochs where it stops improving ({more})"
        )
    if c.claims_equivalence:
        return f"a plateau: {c.a} is within the {m} of {c.b} ({c.diff:+.1f} points {_ci(c)}, {count})"
    return (
        f"cannot tell within {n_epochs} epochs: {c.a} − {c.b} = {c.diff:+.1f} points {_ci(c)} "
        f"({count}, adjusted p {p_text(c.p_adjusted)}); {more}"
    )


def _loss_rise(c: Comparison) -> str:
    d = c.detail
    where = f"{d['loss']} at lr {d['lr']:g}"
    rise = f"{c.diff:+.3f} {_ci(c, digits=3)}"
    if math.isnan(c.p):
        return f"{where}: too few trials ({c.n_pairs}) to test the test loss's rise"
    if c.claims_difference and c.diff > 0:
        train = "fell" if d["train_change"] < 0 else "did not fall"
        what = "overfitting" if d["train_change"] < 0 else "the test loss rose"
        low, last = c.b.removeprefix("test loss, "), c.a.removeprefix("test loss, ")
        return (
            f"{what}: {where}, the test loss rose from its lowest at {low} by {rise} to {last} "
            f"while the training loss {train} ({d['train_change']:+.3f}; {c.n_pairs} trials, adjusted p {p_text(c.p_adjusted)})"
        )
    return (
        f"no overfitting shown: {where}, the test loss ended {rise} above its lowest at {c.b.removeprefix('test loss, ')} "
        f"({c.n_pairs} trials, adjusted p {p_text(c.p_adjusted)}: the rise is within the noise)"
    )
