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

import pandas as pd

from reports import inference, stats

DEFAULT_MARGIN = 2.0  # accuracy points: a smaller difference does not matter to a student
MIN_PAIRS = 3  # fewer pairs get no interval and no test: a t interval on 2 values is near useless
COLUMNS = ["question", "factor", "a", "b", "lr", "epoch", "n_pairs", "diff", "ci_low", "ci_high", "verdict", "subset",
           "p", "p_adjusted", "p_equiv", "p_equiv_adjusted", "margin", "se_seeds", "se_images", "df", "n_images",
           "outcome", "alpha", "error_rate", "sd_raw", "df_prior", "multiplicity"]  # fmt: skip
DATASET_NAMES = {"cifar10": "CIFAR-10"}  # data sources with a name (an image folder has none)
DATASET_TEST_IMAGES = {"cifar10": 10_000}  # test images of a data source, the most --test-size can give (an image folder: unknown)
KINDS = ("difference", "pooled", "interaction", "drop", "gain", "loss rise", "observational")


@dataclass(frozen=True)
class InteractionData:
    """What an interaction's test needs: per learning rate ``lrs[g]``, the pairs' differences and their image table."""

    lrs: tuple
    groups: tuple  # per learning rate, an array of its pairs' differences (points)
    tables: tuple | None  # per learning rate, a (pairs, test images) array; None where a trial stored no predictions


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
    multiplicity: float = 1.0  # Bonferroni factor inside the comparison, fixed before the data: planned looks × epochs picked from
    outcome: str = ""  # inference.DIFFERENCE, EQUIVALENCE or OPEN once settled
    shows_difference: bool | None = None  # its interval excludes zero (None: not settled by inference.decide)
    shows_equivalence: bool | None = None  # its interval lies inside ±margin
    alpha: float = math.nan  # its interval is the (1 − alpha) t interval
    error_rate: str = "fdr"  # the report's error rate: fdr (Benjamini–Hochberg) or fwer (Holm)
    sd_raw: float = math.nan  # the pairs' own spread before moderation (sd is the moderated one once settled)
    df_prior: float = 0.0  # degrees of freedom the moderation's prior added
    own_p: float = math.nan  # an interaction's own p before any adjustment (the pooling gate)
    selected: bool = False  # selected by the report's error control (R counts these; a withheld pooled row among them)
    gate: "Comparison | None" = None  # a pooled row's interaction test: when it shows one, the pooled row claims nothing
    withheld: str = ""  # why this comparison claims nothing whatever its p-values (a pooled row over an interaction)
    verdict: str = ""
    # An interaction's data, to test it again with the settled strata's priors: per learning rate, its pairs' differences
    # and (where every trial stored predictions) their (pairs, images) table; None for every other kind.
    interaction_data: "InteractionData | None" = field(default=None, repr=False, compare=False)

    @property
    def claims_difference(self) -> bool:
        if self.shows_difference is not None:
            return not self.withheld and self.shows_difference
        return not self.withheld and bool(self.p_adjusted < stats.ALPHA)

    @property
    def claims_equivalence(self) -> bool:
        if self.shows_equivalence is not None:
            return not self.withheld and self.shows_equivalence
        return not self.withheld and bool(self.p_equiv_adjusted < stats.ALPHA)

    @property
    def claims(self) -> bool:
        return self.claims_difference or self.claims_equivalence

    @property
    def image_share(self) -> float:
        """The share of the interval's variance that comes from the test images (NaN: not measured)."""
        total = self.se_seeds**2 + self.se_images**2
        return self.se_images**2 / total if total > 0 else math.nan


CI = "adjusted CI"  # what the report calls a comparison's interval: at the report's end level (reports.inference)
REPEATED_CI = "repeated CI"  # a sequential report's: that level over the K planned looks, valid however the study stopped


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
    max_replicates: int | None = None, dataset_images: int | None = None, error_rate: str = "fdr",
) -> list[Comparison]:  # fmt: skip
    """Estimate and decide every comparison of the report together (``reports.inference``) and write each verdict, in place.

    The seeds' variances are moderated within strata of like spread (:func:`stratum`); every comparison's p-values,
    adjusted p-values, interval and outcome come from one :func:`inference.decide` over the report's family at
    ``error_rate`` (``"fdr"``: Benjamini–Hochberg with false-coverage-rate intervals; ``"fwer"``: Holm), so a printed
    interval excludes zero exactly when a difference is claimed. ``sentences=False`` leaves the verdicts unwritten (the
    claims are settled all the same): simulations need no text. ``max_replicates`` (the most replicates the study may
    run) and ``dataset_images`` (its dataset's test images) bound the advice of the open ones (None: no bound, unknown).
    """
    tests = estimate(comparisons, margin)
    decisions = inference.decide(tests, error_rate, alpha)
    level = inference.next_level(decisions, error_rate, alpha)
    for c, t, d in zip(comparisons, tests, decisions, strict=True):
        if math.isfinite(t.se):
            c.ci_low, c.ci_high = d.low, d.high
        c.p, c.p_equiv, c.p_adjusted, c.p_equiv_adjusted = d.p, d.p_equiv, d.p_adjusted, d.p_equiv_adjusted
        c.outcome, c.shows_difference, c.shows_equivalence, c.alpha = d.outcome, d.shows_difference, d.shows_equivalence, d.alpha
        c.selected = d.outcome != inference.OPEN  # selected by the error control (a pooled row may still be withheld below)
        c.margin, c.plan_alpha, c.error_rate = margin, level / c.multiplicity, error_rate
        c.max_replicates, c.dataset_images = max_replicates, dataset_images
    for c in comparisons:
        if c.gate is not None:
            c.withheld = withheld(c.gate, c.gate.own_p, alpha)
            c.detail = {**c.detail, "size_only": not c.withheld and _size_only(c.gate) and c.gate.own_p < alpha}
        if c.withheld:
            c.outcome = inference.OPEN
        if sentences:
            c.verdict = verdict(c)
    return comparisons


def stratum(c: Comparison) -> tuple | None:
    """The comparisons whose seeds' variances share a prior: one kind at one learning rate (the spread of paired
    differences grows with the learning rate: at the example's lr 0.1 it is 5 to 10 times that at 0.001). A pooled row
    (its spread is mostly learning rate to learning rate) and a row without pairs are moderated with nothing."""
    if c.kind in ("pooled", "interaction", "observational") or c.n_pairs < MIN_PAIRS or not math.isfinite(c.sd):
        return None
    group = "learning rate" if c.question == "learning rate" else "options" if c.kind == "difference" else c.kind
    return (group, str(c.lr))


def estimate(comparisons: list[Comparison], margin: float) -> list[inference.Test]:
    """Each comparison as ``inference.Test``: its seeds' variance moderated within its :func:`stratum` (written back to
    ``sd``, ``se_seeds``, ``df`` and ``df_prior``), the test images' part added, on the seeds' n − 1 + d0 df."""
    strata = [stratum(c) for c in comparisons]
    raw = [c.sd**2 if s is not None else math.nan for c, s in zip(comparisons, strata, strict=True)]
    dfs = [float(c.n_pairs - 1) for c in comparisons]
    posterior, post_df, priors = inference.moderate(raw, dfs, strata)
    tests = []
    for c, s, v, d in zip(comparisons, strata, posterior, post_df, strict=True):
        if c.kind == "interaction" and c.interaction_data is not None:
            _moderate_interaction(c, priors)
        if c.kind == "interaction" and math.isnan(c.own_p):
            c.own_p = c.p  # its own test, before any adjustment: the pooling gate
        if c.kind in ("interaction", "observational") or c.n_pairs < MIN_PAIRS or not math.isfinite(c.sd):
            tests.append(inference.Test(p=c.p, multiplicity=c.multiplicity))
            continue
        if s is not None:
            c.sd_raw, c.sd, c.df_prior = c.sd, math.sqrt(v), d - (c.n_pairs - 1)
        c.se_seeds = c.sd / math.sqrt(c.n_pairs)
        c.df = d if s is not None else float(c.n_pairs - 1)
        images = c.se_images if math.isfinite(c.se_images) else 0.0
        own_margin = None if c.kind == "loss rise" else margin
        tests.append(inference.Test(c.diff, math.hypot(c.se_seeds, images), c.df, own_margin, c.multiplicity))
    return tests


def _moderate_interaction(c: Comparison, priors: dict) -> None:
    """Test interaction ``c`` again with each learning rate's seeds' variance moderated by the prior of its stratum (the
    per-learning-rate rows of the options at that rate: ``stratum``), as those rows are, in place: its p (and own p),
    F and df. Left as it is where no learning rate's stratum has a prior, or the test cannot use one (a learning rate
    with one pair). Welch's test on each rate's own 2 to 5 df rejected 8.7% at a nominal 5% with 3 pairs per rate."""
    data = c.interaction_data
    found = [priors.get(("options", str(lr))) for lr in data.lrs]
    if not any(p is not None and p.d0 > 0 for p in found) or min(len(g) for g in data.groups) < 2:
        return
    f = stats.interaction_test(list(data.groups), None if data.tables is None else list(data.tables), found)
    if math.isnan(f.p):
        return
    c.p = c.own_p = f.p
    c.detail = {**c.detail, "f": f.f, "df_within": f.df_within, "welch": True, "moderated": True}


def _size_only(gate: Comparison) -> bool:
    """Whether interaction ``gate`` changes the size of the difference only: its mean is of one sign at every learning rate."""
    means = [m for _, m in gate.detail.get("means", [])]
    return len(means) >= 2 and (all(m > 0 for m in means) or all(m < 0 for m in means))


def withheld(gate: Comparison, own_p: float, alpha: float = stats.ALPHA) -> str:
    """Why a pooled row claims nothing over its settled interaction test ``gate`` whose own p-value is ``own_p``; "" when
    it may pool. Pooling needs the interaction to be absent, not merely unproven (the gate is its own p, uncorrected:
    the report's correction protects claims; here it would protect a pooled number over an interaction instead), or
    to change the difference's size only: where its mean has one sign at every learning rate, the pooled row may claim
    the average over the grid's learning rates (its interval counts the lr-to-lr spread) and says that the size varies."""
    if _size_only(gate):
        return ""
    if gate.claims_difference:
        return "the sign of the difference changes with the learning rate (the interaction row above), so one number over them misleads"
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
    if c.max_replicates and more + _replicates_run(c) > 2 * c.max_replicates:
        return (
            f"more replicates will not decide it within twice the {c.max_replicates} the study may run (--max-repeats): its "
            f"pairs spread by {c.sd:.1f} points (sd), too wide for a {c.margin:g}-point margin at the report's level"
        )
    beyond = f", more than the {c.max_replicates} the study may run (--max-repeats)" if p.beyond and c.max_replicates else ""
    return (
        f"about {more} more replicate{'s' if more != 1 else ''} would decide a {c.margin:g}-point difference "
        f"with {stats.POWER:.0%} probability{beyond}"
    )


def _replicates_run(c: Comparison) -> int:
    """Replicates behind comparison ``c`` (its pairs over the pairs one replicate adds)."""
    return max(c.n_pairs // max(c.pairs_per_replicate, 1), 1)


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
    if c.max_replicates and reps > 2 * c.max_replicates:
        return (
            f"neither more replicates nor more test images decide it within twice the {c.max_replicates} replicates the study "
            f"may run (--max-repeats): {share}, and its pairs spread by {c.sd:.1f} points (sd)"
        )
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
        size = (
            "averaged over the learning rates (its size changes with the learning rate, its sign does not), "
            if c.detail.get("size_only")
            else ""
        )
        return f"{size}{a} is ahead of {b} by {sign * c.diff:.1f} points {_ci(c, sign)} ({count}, adjusted p {p_text(c.p_adjusted)})"
    if c.claims_equivalence:
        return f"{c.a} and {c.b} are within the {m} of each other: {c.a} − {c.b} = {c.diff:+.1f} points {_ci(c)} ({count})"
    return (
        f"cannot tell yet: {c.a} − {c.b} = {c.diff:+.1f} points {_ci(c)} ({count}, adjusted p {p_text(c.p_adjusted)}); "
        + replicates_advice(c)
    )


def _interaction(c: Comparison) -> str:
    d = c.detail
    own = c.own_p if math.isfinite(c.own_p) else c.p  # the test's own p, before the looks' and the report's adjustment
    test = f"F({d['df_between']}, {d['df_within']:.0f}) = {d['f']:.1f}, adjusted p {p_text(c.p_adjusted)}"
    means = ", ".join(f"{m:+.1f} at {lr:g}" for lr, m in d["means"])
    if math.isnan(own):
        return (
            f"{c.a} − {c.b} by learning rate: {means} points; whether it changes with the learning rate cannot be tested "
            "(that needs two learning rates and more than one pair at one of them)"
        )
    if c.claims_difference:
        return f"{c.a} − {c.b} depends on the learning rate ({test}): {means} points"
    if own < stats.ALPHA:  # pooled or not as withheld() decides: one sign everywhere, so the average over them is tested
        same_sign = "; its sign is the same at every learning rate, so their average is tested"
        pooling = same_sign if _size_only(c) else ", but too strong to pool over"
        return f"{c.a} − {c.b} may depend on the learning rate ({test}; its own p {p_text(own)}): not a claim{pooling}: {means} points"
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
