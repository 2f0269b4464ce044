"""The report's account of a sequential study: what it spent, when each question was answered, what the open ones would cost.

The numbers come from the planner (:mod:`reports.sequential`: its :class:`RoundPlan` and each comparison's
:class:`Outcome`); this module only writes them: the section *How the study spent its trials* and the header's sentence.
"""

from __future__ import annotations

import math

import pandas as pd

from reports import claims
from reports.blocks import Section, Table, plural
from reports.frames import Frames
from reports.sequential import BEYOND, DECIDED, DIFFERENCE, EQUIVALENCE, IMAGES, NO_LEARNING, OPEN, RoundPlan


def sequential_section(frames: Frames, plan: RoundPlan) -> Section:
    """The report's account of the sequential design: when each question was answered, what is open and what it would cost.

    Its first line compares the trials spent with the fixed design of ``max_repeats`` replicates of every grid point, and
    with the fixed design of as many replicates as the most any answered comparison needed.

    Args:
        frames: the study (for the trials of each round).
        plan: :func:`plan_round` of the same frames (the runner's last plan, or one computed for the report).
    """
    s = Section("How the study spent its trials (sequential design)")
    per_round = _trials_per_round(frames)
    rounds = ", ".join(f"{n}" for n in per_round)
    s.add(
        f"**{plan.trials} trials** in {plural(len(per_round), 'round')} ({rounds} trials), against {_against(plan)}. {_stopped(plan)}",
        "Round 0 trained every grid point once; each later round trained one more replicate of only the grid points that an open "
        "comparison needed. Every comparison was looked at after every round, so the error was split before the first trial "
        f"into {plan.max_repeats} equal shares, one per planned look: each comparison is tested at the look the study stopped at "
        f"with its error divided by {plan.max_repeats} (its p-value {plan.max_repeats} × that look's), and its interval is that "
        "look's t interval at the same level, on the seeds' moderated degrees of freedom. The report's error control and its "
        "intervals then hold however and whenever the study stopped: the chance that any of the looks errs is at most the sum "
        "of the shares.",
    )
    rows = []
    for question in ("activation", "loss", "learning rate", "epochs"):
        mine = [o for o in plan.asked if o.question == question]
        if not mine:
            continue
        count = {name: sum(o.outcome == name for o in mine) for name in (*DECIDED, OPEN, BEYOND)}
        answered = [o for o in mine if o.decided]
        when = "; ".join(
            f"{plural(r, 'replicate')} ({min(o.trials for o in answered if o.replicates == r)} trials): "
            f"{sum(o.replicates == r for o in answered)}"
            for r in sorted({o.replicates for o in answered})
        )  # fmt: skip
        rows.append({
            "question": question, "comparisons": str(len(mine)), "differences": str(count[DIFFERENCE]),
            "within the margin": str(count[EQUIVALENCE]), "no option learns": str(count[NO_LEARNING]),
            "more test images": str(count[IMAGES]), "open": str(count[OPEN] + count[BEYOND]), "answered after": when or "–",
        })  # fmt: skip
    if rows:
        s.add(
            "Per question, the comparisons that call for replicates (pooled rows, per-learning-rate rows where a pair is not "
            "pooled, each learning rate against the best, the epochs rows), what they ended as, and after how many replicates "
            "(and trials of the study) each was answered:",
            Table(pd.DataFrame(rows)),
        )
    still = [o for o in plan.outcomes if o.outcome in (OPEN, BEYOND)]
    if still:
        lines, more = [], []
        for o in still:
            # The advice the question sections print for the same comparison (claims.replicates_advice: one result).
            c = o.comparison
            p = claims.plan(c) if c is not None else None
            m = int(p.replicates) if p is not None and p.test_size is None and math.isfinite(p.replicates) else None
            if m is not None and o.replicates + m > 2 * plan.max_repeats:
                m = None  # beyond twice --max-repeats: the advice says in words what blocks it, and no cost is counted
            cost = claims.replicates_advice(c) if c is not None else "run more replicates (--repeats)"
            if m is not None:
                cost += f" ({m * len(o.needs)} trials)"
            interval = f"[{o.low:.1f}, {o.high:.1f}]" if math.isfinite(o.low) else "(no interval yet)"
            lines.append(f"- {o.name}: {o.diff:+.1f} points {interval} after {plural(o.replicates, 'replicate')}; {cost}")
            if m is not None:
                more.append((m, o.needs))
        total = sum(len({p for m, needs in more if m >= k for p in needs}) for k in range(1, max((m for m, _ in more), default=0) + 1))
        s.add(
            f"Still open ({len(still)}), with what would answer each (rounds of replicates where they are open would cost about "
            f"{total} trials in all; run the study again with a larger --max-repeats or --trials):",
            "\n".join(lines),
        )
    images = [o for o in plan.outcomes if o.outcome == IMAGES]
    if images:
        s.add(
            f"Closed as **more test images** ({len(images)}): the test images alone keep them from deciding (up to "
            f"±{max(o.se_images for o in images):.1f} points of standard error come from which test images were drawn, and every "
            "replicate shares them); a larger --test-size, not more replicates, can answer: " + "; ".join(o.name for o in images) + "."
        )
    return s


def _against(plan: RoundPlan) -> str:
    """The fixed designs a plan's trials compare with: ``max_repeats`` replicates, and the replicates the deepest answer took."""
    deepest = max((o.replicates for o in plan.outcomes if o.decided), default=1)
    return (
        f"{plan.fixed_trials} for the fixed design of {plan.max_repeats} replicates of each of the {plan.grid_points} grid points "
        f"({_saving(plan.trials, plan.fixed_trials)}) and {plan.grid_points * deepest} for a fixed design of "
        f"{plural(deepest, 'replicate')}, the most any answered comparison needed ({_saving(plan.trials, plan.grid_points * deepest)})"
    )


def spent_text(plan: RoundPlan) -> str:
    """The report header's sentence on what a sequential study spent, and what it answered."""
    return (
        f"It spent {plural(plan.trials, 'trial')} in {plural(plan.looks, 'round')}, against {_against(plan)}, and answered "
        f"{sum(o.decided for o in plan.asked)} of the {len(plan.asked)} comparisons that call for replicates."
    )


def _trials_per_round(frames: Frames) -> list[int]:
    t = frames.trials
    done = t[t["state"].isin(["complete", "pruned"]) & (t["epochs_run"] > 0) & t["replicate"].notna()]
    points = done.drop_duplicates(["activation", "loss", "lr", "replicate"])
    counts = points.groupby("replicate").size()
    return [int(counts.get(r, 0)) for r in range(int(counts.index.max()) + 1)] if len(counts) else []


def _saving(spent: int, fixed: int) -> str:
    if fixed <= 0:
        return "–"
    change = 1 - spent / fixed
    return f"{change:.0%} fewer" if change >= 0 else f"{-change:.0%} more"


def _stopped(plan: RoundPlan) -> str:
    beyond = sum(o.outcome == BEYOND for o in plan.outcomes)
    left = f" ({beyond} open would need more replicates than --max-repeats allows)" if beyond else ""
    return {
        "answered": "It stopped because every comparison had an outcome.",
        "beyond max repeats": f"It stopped because nothing was left open that its rounds could decide{left}.",
        "max repeats": f"It stopped at the most rounds allowed (--max-repeats {plan.max_repeats}) with {len(plan.open)} comparisons open.",
        "trials": f"It stopped when its trial budget was spent, with {len(plan.open)} comparisons open{left}.",
        # The report cannot tell a live run from one that was stopped: say what is next and how to get there.
        "": (
            f"It has not finished: round {plan.round} has begun, with {plural(len(plan.points), 'trial')} of it still to train "
            "(or training, if the study is still running); the same command resumes a stopped one."
            if plan.resuming
            else f"It has not finished: round {plan.round} ({plural(len(plan.points), 'trial')}) is next, or under way if the study "
            "is still running; the same command resumes a stopped one."
        ),
    }.get(plan.stop, "")
