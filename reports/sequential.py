"""The sequential paired design: replicates only where a verdict is still open, with claims that stay valid when it stops.

A study of the paired grid runs in **rounds**. Round 0 trains every grid point (activation, loss, learning
rate) once, at replicate 0. After each round :func:`plan_round` decides every comparison the report makes
and names the grid points the next round must train, at the next replicate, for the comparisons still
open. The study stops when nothing is open, at ``max_repeats`` rounds, or when its trial budget is spent.

**Why the verdicts stay valid.** A comparison looked at after every round, and left to run on while it is
undecided, would claim more often than its level if each look used the fixed-sample test: optional stopping.
Here the error is split before the first trial into ``K = max_repeats`` equal shares, one per planned look
(Bonferroni over the looks, Jennison & Turnbull, *Group Sequential Methods*, 2000, ch. 9): at every look each
comparison is settled by the report's own core (``claims.settle`` → ``reports.inference``: moderated variances, one
error rate over the report, intervals that agree with the outcomes) with its error divided by K (its
``multiplicity``), and its interval is that look's t interval at that level. Under a comparison's null hypothesis the
chance that any of the K looks claims it is at most the sum of the shares, so the verdict at the look the study stopped
at holds whatever rule chose to stop there. No share moves from look to look with what a look found (an earlier
version added a look's share to a comparison whose pairs had not changed). The t statistic counts the test images'
part of the variance and is referred to the seeds' n − 1 degrees of freedom plus the moderation's (``reports.inference``
says why not Satterthwaite's: with 3 to 6 pairs it took a lucky small spread at face value, 38 df on 3 pairs, p = 5e-7
for a null difference in the simulation); an interaction is Welch's test (Welch–James with the images) with its own df.

With ``K <= 5`` looks and the levels a report asks of a claim (about 0.05 / 60 to 0.05 × R / m), the correlation
between looks buys little: Pocock's constant for 5 looks at two-sided 0.05 / 60 is z = 3.70 against the Bonferroni
3.76. Anytime-valid confidence sequences (valid at every n, e.g. the t-mixture of Lai 1976, Wang & Ramdas 2023,
Lindon et al. 2024 as ``savvi`` has it) pay for infinitely many looks.

An open comparison that ``max_repeats`` replicates could not decide even with an optimistic spread gets no
replicates ("beyond max repeats": a futility stop, which costs the error control nothing).

**The test images.** Replicates share one test set, so a comparison's variance has a part no replicate
shrinks (``Comparison.se_images``, ``stats.image_components``; NaN for a study without stored predictions,
whose intervals are over the seeds only). A comparison that the images alone keep from deciding (more
replicates could not decide a margin-sized question at its level: ``stats.replicates_can_decide``) is closed
as "more test images", and no replicate is run for it.

Everything here is a pure function of the study's frames: several machines compute the same plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd
from scipy import stats as scistats

from reports import claims, epochs, learning_rate, options, stats
from reports.blocks import lr_text
from reports.claims import Comparison
from reports.frames import Frames
from reports.paired import LEARNS_POINTS, Design, build_design

MAX_REPEATS = 5  # rounds (replicates) a study may run by default: the K looks of the error spending
Point = tuple[str, str, float]  # a grid point: (activation, loss, lr)

# Outcomes of a comparison. Those that end its need for replicates:
DIFFERENCE = "difference"  # a difference claimed (Holm over the report, repeated p-values)
EQUIVALENCE = "equivalence"  # shown within the margin (or a claimed difference that is negligible)
NO_LEARNING = "no option learns"  # both sides within LEARNS_POINTS of chance: replicates would compare noise
IMAGES = "more test images"  # the test images alone keep it open: only a larger --test-size can decide it
BEYOND = "beyond max repeats"  # open, but even max_repeats replicates would not decide it (futility): no replicate is run
# Rows that never call for replicates on their own:
POOLED = "see pooled"  # a per-lr row of an option pair whose pooled row answers the question (no interaction)
NOT_POOLED = "not pooled"  # a pooled row withheld over an interaction: its per-lr rows answer
GATE = "gate"  # an interaction test that is not claimed, a test-loss rise not shown, a learning-rate pair not with the best
OPEN = "open"  # needs another replicate
DECIDED = (DIFFERENCE, EQUIVALENCE, NO_LEARNING, IMAGES)
OPTIMISM = 0.9  # futility plans with the lower 90% confidence bound of a comparison's spread: only a hopeless one is left


@dataclass(frozen=True)
class Outcome:
    """One comparison of the report after the latest look, as the sequential design decided it.

    ``low``/``high`` are its 95% repeated confidence interval (NaN below 3 pairs); ``p_adjusted`` and
    ``p_equiv_adjusted`` the report's Holm adjustment of its repeated p-values.
    """

    name: str  # "activation: relu vs tanh, at lr 0.001", unique within a plan (its sides sorted)
    question: str  # activation, loss, learning rate, epochs
    kind: str  # claims.KINDS
    outcome: str  # one of DECIDED, OPEN, BEYOND, POOLED, NOT_POOLED, GATE
    diff: float  # points (a − b, as the comparison is oriented at the latest look)
    low: float
    high: float
    n_pairs: int  # pairs (trials, for the epochs question) at the latest look
    replicates: int  # rounds behind its outcome: the look it was decided at + 1, else the rounds analysed
    trials: int  # trials the study had finished at that look
    p_adjusted: float
    p_equiv_adjusted: float
    se_seeds: float  # points: what more replicates shrink
    se_images: float  # points: what they do not (NaN: not measured, seed-only)
    needs: tuple[Point, ...] = ()  # grid points one more replicate of it trains (OPEN rows; BEYOND rows: what it would)
    more: float = math.nan  # OPEN and BEYOND rows: replicates more it would need (planned at the margin, 80% power)
    comparison: Comparison | None = field(default=None, compare=False, repr=False)  # the settled row, for the report

    @property
    def decided(self) -> bool:
        return self.outcome in DECIDED

    @property
    def verdict(self) -> str:
        """The report's sentence for it (with its repeated interval and p-values)."""
        return claims.verdict(self.comparison) if self.comparison is not None else ""


@dataclass(frozen=True)
class RoundPlan:
    """What a sequential study does next: train ``points`` at replicate ``round``, or stop (``stop`` says why).

    For the runner:
    - ``round`` is the replicate the next trials use (seed = --seed + round). A new study gets round 0 and the
      whole grid. After round r is complete, the plan is round r + 1 with the points the open comparisons need.
    - ``resuming``: round ``round`` was started but some of its planned points have no finished trial; ``points``
      are those (and only those). Recompute after a restart: the plan of a round is a function of the earlier
      rounds only, so every machine and every restart gets the same one.
    - ``points`` empty means done: ``stop`` is "answered" (nothing open), "beyond max repeats" (what is open would
      need more rounds than ``max_repeats`` allows: futility), "max repeats" (the next round would be replicate
      ``max_repeats``) or "trials" (the budget is spent). ``take(budget)`` gives whole blocks of the
      next round that fit a smaller budget.
    """

    round: int
    points: tuple[Point, ...]
    outcomes: tuple[Outcome, ...]
    stop: str  # "" (go on), "answered", "beyond max repeats", "max repeats", "trials"
    looks: int  # rounds analysed (complete or not)
    trials: int  # finished trials of the design (one per grid point and replicate)
    grid_points: int
    max_repeats: int
    resuming: bool = False
    blocks: tuple[tuple[Point, ...], ...] = ()  # ``points`` grouped by the open comparison that first needs them, in report order

    @property
    def done(self) -> bool:
        return not self.points

    @property
    def asked(self) -> list[Outcome]:
        """The comparisons that call for replicates (not the rows that ride along: gates, pooled-over and not-pooled rows)."""
        return [o for o in self.outcomes if o.outcome not in (GATE, POOLED, NOT_POOLED)]

    @property
    def open(self) -> list[Outcome]:
        """The comparisons not answered: open (their points are in ``points``) or beyond max repeats."""
        return [o for o in self.outcomes if o.outcome in (OPEN, BEYOND)]

    @property
    def fixed_trials(self) -> int:
        """Trials of the fixed design this study could have run instead: every grid point ``max_repeats`` times."""
        return self.grid_points * self.max_repeats

    def take(self, budget: int | None) -> tuple[Point, ...]:
        """The points of the next round that fit ``budget`` trials: whole blocks, in report order (all with None).

        >>> plan = RoundPlan(1, (("a", "x", 0.1), ("b", "x", 0.1), ("c", "x", 0.1)), (), "", 1, 3, 3, 5,
        ...                  blocks=((("a", "x", 0.1), ("b", "x", 0.1)), (("c", "x", 0.1),)))
        >>> plan.take(1)
        (('c', 'x', 0.1),)
        """
        return fit_blocks(self.points, self.blocks, budget)

    def to_attrs(self) -> dict:
        """The plan as JSON-able data, for the study's storage (the outcomes by name and outcome)."""
        return {
            "round": self.round,
            "points": [list(p) for p in self.points],
            "stop": self.stop,
            "looks": self.looks,
            "trials": self.trials,
            "resuming": self.resuming,
            "open": [o.name for o in self.open],
            "outcomes": {o.name: o.outcome for o in self.outcomes},
        }


def fit_blocks(points, blocks, budget: int | None) -> tuple[Point, ...]:
    """The ``points`` of a round that ``budget`` trials buy: whole ``blocks`` in order (every point when they fit or
    ``budget`` is None; each point its own block when there are no blocks). Points come back as tuples, stored or not.

    >>> fit_blocks([["a", "x", 0.1], ["b", "x", 0.1], ["c", "x", 0.1]], [[["a", "x", 0.1], ["b", "x", 0.1]], [["c", "x", 0.1]]], 2)
    (('a', 'x', 0.1), ('b', 'x', 0.1))
    """
    if budget is None or budget >= len(points):
        return tuple(tuple(p) for p in points)
    chosen: list[Point] = []
    for block in blocks or [[p] for p in points]:
        if len(chosen) + len(block) <= budget:
            chosen.extend(tuple(p) for p in block)  # type: ignore[misc]
    return tuple(chosen)


def plan_round(
    frames: Frames,
    max_repeats: int = MAX_REPEATS,
    max_trials: int | None = None,
    margin: float | None = None,
    compare_epoch: int | None = None,
    *,
    cache: dict | None = None,
    error_rate: str = "fdr",
) -> RoundPlan:
    """Decide every comparison of a sequential paired study and plan its next round.

    Args:
        frames: the study (``reports.frames``); its finished trials of replicate r are round r.
        max_repeats: the most rounds (replicates) any grid point gets; also the number of looks the error is
            spent over, so it must not change during a study.
        max_trials: the study's trial budget (None: none); the plan stops when the finished trials reach it.
        margin: the practical margin in points (default: the study's setting).
        compare_epoch: the epoch questions 1-3 compare at (default: the study's).
        cache: an empty dict the caller keeps between calls on one study (same arguments): each round's look is
            kept there and reused while the trials behind it are unchanged. Optional: without it every call
            analyses every round again (a second or two); simulations of hundreds of studies use it.
        error_rate: the report's error rate, "fdr" (Benjamini–Hochberg) or "fwer" (Holm): ``reports.inference``.

    Returns:
        The :class:`RoundPlan`. Deterministic: a function of the finished trials only.

    Example (a runner, after each round)::

        plan = plan_round(load_frames(storage, name), max_repeats=args.max_repeats, max_trials=args.trials)
        for activation, loss, lr in plan.take(trials_left):
            enqueue(activation, loss, lr, replicate=plan.round)
    """
    if max_repeats < 1:
        raise ValueError(f"max repeats must be at least 1 but got {max_repeats}")
    margin = frames.settings.margin if margin is None else margin
    if margin <= 0:
        raise ValueError(f"--margin must be a positive number of accuracy points but got {margin}")
    return _Sequence(frames, max_repeats, margin, compare_epoch, cache, error_rate=error_rate).plan(max_trials)


def decide_fixed(frames: Frames, margin: float | None = None, compare_epoch: int | None = None, error_rate: str = "fdr") -> RoundPlan:
    """The outcomes a fixed design reaches with one look at all its trials (no error spent on earlier looks).

    The same rules as :func:`plan_round` with one look: 95% t intervals, the report's Holm family. For comparing what the
    sequential design decided with what a fixed design of the same grid decides (the simulations, the report's header).
    """
    margin = frames.settings.margin if margin is None else margin
    seq = _Sequence(frames, 1, margin, compare_epoch, spending=(1.0,), error_rate=error_rate)
    last = max(seq.trained, default=0)
    look = seq.look(last)
    return RoundPlan(last + 1, (), tuple(look.outcomes), "fixed", 1, seq.trials_upto(last), len(seq.grid), last + 1)


def carry_over(plan: RoundPlan, comparisons: list[Comparison]) -> bool:
    """Give the report's settled ``comparisons`` the sequential numbers of ``plan``'s last look, in place.

    Each gets its repeated p-values, their Holm adjustment over the report, its repeated confidence interval (on the
    seeds' n − 1 degrees of freedom), whether it is withheld from pooling, and the level its replicates advice plans at
    (Holm's next step at the next look's share): the question sections then say what the section *How the study spent
    its trials* says, and the verdicts hold however the study stopped. Nothing changes, and False is returned, when
    the two are not the same family (a comparison of one without its twin in the other, or another difference): the
    report then shows fixed-sample numbers and says so.
    """
    settled = {_key(o.comparison): o.comparison for o in plan.outcomes if o.comparison is not None}
    twins = [settled.get(_key(c)) for c in comparisons]
    if len(settled) != len(comparisons) or any(
        s is None or (s.a, s.b, s.n_pairs) != (c.a, c.b, c.n_pairs) or not math.isclose(s.diff, c.diff, abs_tol=1e-9, rel_tol=0)
        for c, s in zip(comparisons, twins, strict=True)
    ):
        return False
    copied = ("p", "p_equiv", "p_adjusted", "p_equiv_adjusted", "ci_low", "ci_high", "withheld", "outcome", "selected",
              "shows_difference", "shows_equivalence", "alpha", "multiplicity", "plan_alpha", "sd", "sd_raw", "se_seeds", "df",
              "df_prior", "own_p")  # fmt: skip
    for c, s in zip(comparisons, twins, strict=True):
        for name in copied:
            setattr(c, name, getattr(s, name))
        if c.kind == "interaction" and s.detail.get("moderated"):  # tested again with the strata's priors
            c.detail = {**c.detail, **{k: s.detail[k] for k in ("f", "df_within", "welch", "moderated")}}
        elif c.kind == "interaction" and "df_between" in c.detail and not c.detail.get("welch"):  # the F on the seeds' N − k df
            c.detail = {**c.detail, "df_within": c.n_pairs - c.detail["df_between"] - 1}
    return True


# ---------------------------------------------------------------------------------------------------------------------
# The looks


@dataclass
class _Row:
    """One comparison at one look, before it is settled (``claims.settle`` tests it, at the look's share of the error)."""

    key: tuple
    comparison: Comparison
    se_seeds: float  # its pairs' own spread over √n (before moderation): the report's account of what replicates shrink
    se_images: float  # the test images' part (NaN: not measured)
    p: float = math.nan  # an interaction's own test at this look (``_interaction_p``); NaN for every other kind


@dataclass
class _Look:
    round: int
    trials: int
    design: Design
    rows: list[_Row]
    outcomes: list[Outcome] = field(default_factory=list)
    needs: set = field(default_factory=set)
    blocks: list[tuple[Point, ...]] = field(default_factory=list)


class _Sequence:
    """The looks of one study, round by round, each settled with the repeated p-values of every earlier look."""

    def __init__(
        self, frames: Frames, max_repeats: int, margin: float, compare_epoch: int | None, cache: dict | None = None, spending=None,
        error_rate: str = "fdr",
    ):  # fmt: skip
        if not frames.settings.paired:
            raise ValueError("the sequential design needs a paired grid study (--sampler grid)")
        self.k, self.margin, self.error_rate = max_repeats, margin, error_rate
        # The share of the error each look spends (look j of max_repeats): equal shares. A sum above 1 gives up the
        # guarantee; simulations use (1, 1, ...) to show what looking without spending does.
        self.spending = tuple(spending) if spending is not None else (1.0 / max_repeats,) * max_repeats
        self.compare_epoch = frames.settings.compare_epoch if compare_epoch is None else compare_epoch
        self.grid = grid_points(frames)
        # The design's trials only: the notebook's baseline, run as an extra trial where the grid lacks it, pairs with nothing.
        self.frames = frames = _keep(frames, _on_grid(frames.trials, set(self.grid)))
        self.levels = {
            "activation": sorted({p[0] for p in self.grid}),
            "loss": sorted({p[1] for p in self.grid}),
            "lr": sorted({p[2] for p in self.grid}),
        }
        t = frames.trials
        done = t[t["state"].isin(["complete", "pruned"]) & (t["epochs_run"] > 0) & t["replicate"].notna()]
        self.trained: dict[int, set[Point]] = {}
        for a, lo, lr, r in zip(done["activation"], done["loss"], done["lr"], done["replicate"], strict=True):
            self.trained.setdefault(int(r), set()).add((a, lo, float(lr)))
        # key -> (repeated p, repeated p_equiv, sign of the difference, its data at the last look, the share that look spent)
        self.best: dict[tuple, tuple] = {}
        self.first: dict[tuple, tuple[str, int]] = {}  # key -> (its outcome, the first look it had it)
        self.cache = {} if cache is None else cache

    def trials_upto(self, r: int) -> int:
        return sum(len(self.trained.get(j, ())) for j in range(r + 1))

    def plan(self, max_trials: int | None) -> RoundPlan:
        planned: set[Point] = set(self.grid)
        looks: list[_Look] = []
        r = 0
        while True:
            have = self.trained.get(r, set())
            complete = planned <= have
            budget_spent = max_trials is not None and self.trials_upto(r) >= max_trials
            if have or r == 0:
                looks.append(self._cached_look(r))
            if not complete and not budget_spent:
                return self._plan(looks, r, tuple(sorted(planned - have)), "", resuming=bool(have))
            if budget_spent:
                return self._plan(looks, r + 1, (), "trials")
            last = looks[-1]
            # Trials of the next round exist (a study run by another rule, or an earlier version of this one): they are
            # looked at all the same; the spending over the planned looks covers any such rule.
            went_on = bool(self.trained.get(r + 1)) and r + 1 < self.k
            if not went_on and not any(o.outcome in (OPEN, BEYOND) for o in last.outcomes):
                return self._plan(looks, r + 1, (), "answered")
            if r + 1 >= self.k:
                return self._plan(looks, r + 1, (), "max repeats")
            if not went_on and not last.needs:
                return self._plan(looks, r + 1, (), "beyond max repeats")
            finished = bool(self.trained.get(r + 2))  # a later round has trials: this one is over, whatever it holds
            planned = self.trained[r + 1] if went_on and finished else last.needs | self.trained.get(r + 1, set())
            r += 1

    def _plan(self, looks: list[_Look], round_: int, points: tuple, stop: str, resuming: bool = False) -> RoundPlan:
        last = looks[-1] if looks else None
        ordered = not stop and not resuming and last is not None  # a fresh round: the blocks of its open comparisons
        blocks = tuple(last.blocks) if ordered else (points,) if points else ()
        return RoundPlan(
            round=round_,
            points=tuple(sorted(points)),
            outcomes=tuple(last.outcomes) if last else (),
            stop=stop,
            looks=len(looks),
            trials=self.trials_upto(max(self.trained, default=0)),
            grid_points=len(self.grid),
            max_repeats=self.k,
            resuming=resuming,
            blocks=blocks,
        )

    def _cached_look(self, r: int) -> _Look:
        """:meth:`look` at round ``r``, from the cache while the trials of rounds 0..r and the arguments are unchanged."""
        trials = frozenset((j, p) for j in range(r + 1) for p in self.trained.get(j, ()))
        signature = (self.k, self.spending, self.margin, self.error_rate, self.compare_epoch, trials)
        hit = self.cache.get(r)
        if hit is not None and hit[0] == signature:
            _, look, best, first = hit
            self.best, self.first = dict(best), dict(first)
            return look
        look = self.look(r)
        self.cache[r] = (signature, look, dict(self.best), dict(self.first))
        return look

    def look(self, r: int) -> _Look:
        """Analyse the trials of replicates 0..r and settle them with the repeated p-values of looks 0..r."""
        frames = _upto(self.frames, r)
        trials = self.trials_upto(r)
        if not len(frames.trials):
            return _Look(r, 0, None, [])  # type: ignore[arg-type]
        design = build_design(frames, self.compare_epoch)
        parts = [options.compute(design, f, self.margin) for f in ("activation", "loss")]
        lr_result = learning_rate.compute(design, self.margin)
        epochs_result = epochs.compute(design, self.margin)
        comparisons = [c for part in (*parts, lr_result, epochs_result) for c in part.comparisons()]
        rows = [self._row(c) for c in comparisons]
        look = _Look(r, trials, design, rows)
        self._settle(look, lr_result)
        return look

    # -- one comparison at one look ------------------------------------------------------------------------------

    def _row(self, c: Comparison) -> _Row:
        n = c.n_pairs
        se_seeds = c.sd / math.sqrt(n) if n >= 2 and math.isfinite(c.sd) else math.nan
        # se_images: NaN where a trial of the comparison stored no (usable) predictions (seeds only)
        p = _interaction_p(c) if c.kind == "interaction" else math.nan
        return _Row(_key(c), c, se_seeds, c.se_images, p)

    # -- settling one look ------------------------------------------------------------------------------------

    def _share(self, r: int) -> float:
        return self.spending[min(r, len(self.spending) - 1)]

    def _settle(self, look: _Look, lr_result) -> None:
        """Settle one look with the report's own core (``claims.settle``): each comparison's test at this look, its
        error divided by the planned looks (Bonferroni with equal shares fixed before the data, ``spending``), so the
        interval and the verdict at the look the study stops at hold whatever rule chose to stop there."""
        share = self._share(look.round)
        settled: list[Comparison] = []
        for row in look.rows:
            c = row.comparison
            own = row.p if c.kind == "interaction" else math.nan  # the F test on the seeds' N − k df (``_interaction_p``)
            settled.append(
                replace(c, p=own if c.kind == "interaction" else c.p, own_p=own, multiplicity=c.multiplicity / share,
                        verdict="", withheld="", outcome="", shows_difference=None, shows_equivalence=None)
            )  # fmt: skip
        by_id = {id(row.comparison): s for row, s in zip(look.rows, settled, strict=True)}
        for row, s in zip(look.rows, settled, strict=True):
            if row.comparison.gate is not None:
                s.gate = by_id.get(id(row.comparison.gate))
        images = claims.DATASET_TEST_IMAGES.get(self.frames.settings.data_source)
        claims.settle(settled, self.margin, sentences=False, error_rate=self.error_rate, max_replicates=self.k, dataset_images=images)
        look.outcomes, look.needs, look.blocks = self._outcomes(look, settled, lr_result)

    def _outcomes(self, look: _Look, settled: list[Comparison], lr_result) -> tuple[list[Outcome], set, list]:
        versus_best = {(f"loss={loss.loss}", tuple(sorted((c.a, c.b)))) for loss in lr_result.losses for c in loss.versus_best.values()}
        pooled_answers = {}
        for s in settled:
            if s.kind == "pooled":
                pooled_answers[(s.question, tuple(sorted((s.a, s.b))))] = not s.withheld
        means = _cell_means(look.design)
        # The level the next claim is tested at: Holm's next step, at the next look's share of the error.
        level = (settled[0].plan_alpha * settled[0].multiplicity if settled else stats.ALPHA) * self._share(look.round + 1)
        outcomes, needs, blocks, seen = [], set(), [], set()
        for row, s in zip(look.rows, settled, strict=True):
            outcome = self._outcome(row, s, versus_best, pooled_answers, means, level)
            more = self._more(row, s, level) if outcome == OPEN else math.nan
            if outcome == OPEN and look.round + 1 + more > self.k:
                outcome = BEYOND
            need: tuple[Point, ...] = ()
            if outcome == BEYOND:
                need = tuple(sorted(self._needs(s)))  # for the report's "what it would cost"; not trained
            if outcome == OPEN:
                need = tuple(sorted(self._needs(s)))
                new = tuple(p for p in need if p not in seen)
                if new:
                    blocks.append(new)
                    seen.update(new)
                needs.update(need)
            first = self._decided_at(row.key, outcome, look.round)
            decided_at = first if outcome in DECIDED else look.round
            outcomes.append(
                Outcome(
                    name=_name(s), question=s.question, kind=s.kind, outcome=outcome, diff=s.diff, low=s.ci_low, high=s.ci_high,
                    n_pairs=s.n_pairs, replicates=decided_at + 1, trials=self.trials_upto(decided_at), p_adjusted=s.p_adjusted,
                    p_equiv_adjusted=s.p_equiv_adjusted, se_seeds=row.se_seeds, se_images=row.se_images, needs=need, more=more,
                    comparison=s,
                )
            )  # fmt: skip
        return outcomes, needs, blocks

    def _decided_at(self, key: tuple, outcome: str, round_: int) -> int:
        """The first look of the run of looks at which ``key`` has had the outcome it has now."""
        kept = self.first.get(key)
        if kept is None or kept[0] != outcome:
            self.first[key] = (outcome, round_)
            return round_
        return kept[1]

    def _outcome(self, row: _Row, c: Comparison, versus_best, pooled_answers, means, level: float) -> str:
        if c.kind == "interaction":
            return DIFFERENCE if c.claims_difference else GATE
        if c.kind == "loss rise":
            return DIFFERENCE if c.claims_difference else GATE
        if c.kind == "pooled" and c.withheld:
            return NOT_POOLED
        if c.question == "learning rate" and (c.subset, tuple(sorted((c.a, c.b)))) not in versus_best:
            return GATE
        if c.claims_equivalence:
            return EQUIVALENCE
        if c.claims_difference:
            return DIFFERENCE
        if c.question in ("activation", "loss") and c.kind == "difference" and pooled_answers.get((c.question, tuple(sorted((c.a, c.b))))):
            return POOLED
        if self._no_learning(c, means):
            return NO_LEARNING
        if math.isfinite(row.se_images) and not stats.replicates_can_decide(row.se_images, self.margin, level):
            return IMAGES
        return OPEN

    def _more(self, row: _Row, c: Comparison, level: float) -> float:
        """Replicates more that would decide ``c`` (a margin-sized question, 80% power, at ``level``); 0 below 3 pairs.

        The report's own count (``stats.pairs_to_decide``, which its replicates advice plans with through
        ``claims.plan``: both tests' power, the test images' part a floor), planned with the lower 90% bound of the
        comparison's spread (``OPTIMISM``, on the moderated spread's n − 1 + d0 df) instead of its estimate, so that a
        spread guessed too high from a few pairs does not give up on a comparison more replicates would decide; at least
        1; ``inf`` when the test images alone are too wide.
        """
        n = c.n_pairs
        if n < claims.MIN_PAIRS or not math.isfinite(c.sd):
            return 0.0
        df = n - 1 + (c.df_prior if math.isfinite(c.df_prior) else 0.0)
        sd = c.sd * math.sqrt(df / scistats.chi2.ppf(OPTIMISM, df))
        floor = row.se_images if math.isfinite(row.se_images) else 0.0
        need = stats.pairs_to_decide(sd, self.margin, level, stats.POWER, se_images=floor)
        if not math.isfinite(need):
            return math.inf
        return float(max(math.ceil((need - n) / self._pairs_per_replicate(c)), 1))

    def _pairs_per_replicate(self, c: Comparison) -> int:
        """Pairs (trials, for the epochs question) one more replicate of ``c``'s grid points adds."""
        acts, losses, lrs = (len(self.levels[f]) for f in ("activation", "loss", "lr"))
        if c.question in ("activation", "loss"):
            other = losses if c.question == "activation" else acts
            return other * (lrs if c.kind == "pooled" else 1)
        if c.question == "learning rate":
            return acts
        return acts * losses

    def _no_learning(self, c: Comparison, means: dict) -> bool:
        chance = self.frames.chance + LEARNS_POINTS
        if c.question in ("activation", "loss") and c.kind == "difference":
            sides = [means[c.question].get((o, float(c.lr))) for o in (c.a, c.b)]
        elif c.question == "learning rate":
            loss = c.subset.removeprefix("loss=")
            sides = [means["lr"].get((loss, float(side.removeprefix("lr ")))) for side in (c.a, c.b)]
        else:
            return False
        return all(v is not None and v <= chance for v in sides)

    def _needs(self, c: Comparison) -> set[Point]:
        """The grid points one more replicate of comparison ``c`` trains."""
        acts, losses, lrs = self.levels["activation"], self.levels["loss"], self.levels["lr"]
        if c.question == "activation":
            at = lrs if c.kind == "pooled" else [float(c.lr)]
            return {(a, lo, lr) for a in (c.a, c.b) for lo in losses for lr in at}
        if c.question == "loss":
            at = lrs if c.kind == "pooled" else [float(c.lr)]
            return {(a, lo, lr) for a in acts for lo in (c.a, c.b) for lr in at}
        if c.question == "learning rate":
            loss = c.subset.removeprefix("loss=")
            return {(a, loss, float(side.removeprefix("lr "))) for a in acts for side in (c.a, c.b)}
        lr = float(c.lr)
        return {(a, lo, lr) for a in acts for lo in losses}


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def grid_points(frames: Frames) -> list[Point]:
    """Every (activation, loss, lr) of the study's grid, sorted: its search space's, and those of its trials but the baseline."""
    space = frames.settings.search_space or {}
    acts, losses = list(space.get("activations", [])), list(space.get("losses", []))
    lrs: list[float] = []
    if {"lr_min", "lr_max"} <= set(space):
        from study.space import SearchSpace

        lrs = SearchSpace(**{k: space[k] for k in ("lr_min", "lr_max", "grid_lrs") if k in space}).grid_lr_values()
    points = {(a, lo, float(lr)) for a in acts for lo in losses for lr in lrs}
    t = frames.trials[~frames.trials["baseline"].astype(bool)]
    points |= {(a, lo, float(lr)) for a, lo, lr in zip(t["activation"], t["loss"], t["lr"], strict=True) if isinstance(a, str)}
    return sorted(points)


def _upto(frames: Frames, r: int) -> Frames:
    """The frames of replicates 0..r (round r's look)."""
    return _keep(frames, frames.trials["replicate"].notna() & (frames.trials["replicate"] <= r))


def _on_grid(trials: pd.DataFrame, grid: set[Point]) -> pd.Series:
    points = zip(trials["activation"], trials["loss"], trials["lr"], strict=True)
    return pd.Series([(a, lo, float(lr)) in grid for a, lo, lr in points], index=trials.index, dtype=bool)


def _keep(frames: Frames, rows: pd.Series) -> Frames:
    """``frames`` with the trials of ``rows`` only (and their epochs)."""
    trials = frames.trials[rows]
    return replace(frames, trials=trials, epochs=frames.epochs[frames.epochs["number"].isin(trials["number"])])


def _key(c: Comparison) -> tuple:
    """What makes a comparison the same one from look to look: its sides unordered (the orientation follows the data)."""
    if c.question == "epochs":
        return (c.question, c.factor, str(c.lr), c.subset, c.kind)  # the peak's epoch may move; the question per lr does not
    return (c.question, c.factor, tuple(sorted((c.a, c.b))), str(c.lr), c.subset, c.kind)


def _name(c: Comparison) -> str:
    """A comparison's name in a plan: "activation: relu vs tanh at lr 0.001", "learning rate: 0.001 vs 0.1, loss mse"."""
    x, y = sorted((c.a, c.b))
    if c.question == "learning rate":
        return f"learning rate: {x.removeprefix('lr ')} vs {y.removeprefix('lr ')}, {c.subset.replace('=', ' ')}"
    if c.question == "epochs":
        what = "test-loss rise" if c.kind == "loss rise" else "last epoch against the peak" if c.kind == "drop" else "gain at the end"
        return f"epochs: {what}, {c.subset.replace('=', ' ').replace(',', ',')}"
    where = {"pooled": "pooled over learning rates", "interaction": "interaction with the learning rate"}.get(str(c.lr))
    return f"{c.question}: {x} vs {y}, {where or 'at lr ' + lr_text(float(c.lr))}"


def _interaction_p(c: Comparison) -> float:
    """An interaction's p on the seeds' degrees of freedom: its F (or Wald) statistic referred to F(k − 1, N − k).

    The reason the t tests use the seeds' df (module docstring), and a stronger one here: at round 0 a learning rate holds
    3 pairs, and the Wald test that counts the test images pools the seeds' variance from a difference of mean squares
    that is often clamped at 0 there, leaving a near-normal test on Satterthwaite's ~2,000 df. In 80 simulated
    sequential studies without any effect (seed 5), that made 5 false interaction claims (p down to 2·10⁻⁶ at round 0)
    beside 3 false learning-rate claims; with N − k df, 1 false interaction claim was left.
    """
    d = c.detail
    if not {"f", "df_between"} <= set(d) or not math.isfinite(d["f"]) or math.isnan(c.p) or d.get("welch"):
        return c.p  # Welch's test (seeds only) has its own df
    within = c.n_pairs - d["df_between"] - 1
    return float(scistats.f.sf(d["f"], d["df_between"], within)) if within >= 1 else math.nan


def _cell_means(design: Design) -> dict:
    """Mean accuracy of each option at each lr (over the other factor), and of each lr per loss (over activations)."""
    t = design.trials
    out = {
        "activation": t.groupby(["activation", "lr"])["acc"].mean().to_dict(),
        "loss": t.groupby(["loss", "lr"])["acc"].mean().to_dict(),
        "lr": t.groupby(["loss", "lr"])["acc"].mean().to_dict(),
    }
    return {k: {(a, float(b)): float(v) for (a, b), v in d.items()} for k, d in out.items()}
