"""The sequential paired design: rounds of replicates, each only where a comparison is still open.

Round 0 trains every grid point once (replicate 0). When a round is complete, the report's own
analysis (``reports.sequential.plan_round``: the same code that writes the verdicts, so the
study stops exactly when the report can answer) decides every comparison, and names the grid
points that the next replicate must train: those an open comparison needs. Round r trains
replicate r of those points only. The study ends when no comparison is open, when
``--max-repeats`` replicates are spent, or at ``--trials`` / ``--timeout``.

Each plan is stored as the study attribute ``"round R"`` (R = 1, 2, ...) the moment round R - 1
is complete. The plan is a deterministic function of the finished trials, so when several
processes or machines find the round complete at the same moment they compute and write the
same plan; the others take its trials. A resumed study continues from its stored rounds.

This is the one place where ``study`` calls into ``reports`` while a study runs (the command
also builds the report at its end).
"""

from dataclasses import dataclass

import optuna

from study.record import FINISHED
from study.samplers import DesignGridSampler

PREFIX = "round "  # study attribute "round R": the plan that round R trains


@dataclass(frozen=True)
class Step:
    """What a process of a sequential study does next."""

    action: str  # "run": free points of the current round; "wait": other processes hold its last trials; "done"
    free: int = 0  # trials this process may ask for now ("run"): free points nobody is taking, and queued ones


def stored_rounds(attrs: dict) -> list[dict]:
    """The plans stored in a study's user attributes, round 1 first (round 0, every point once, is implicit)."""
    rounds = []
    while f"{PREFIX}{len(rounds) + 1}" in attrs:
        rounds.append(attrs[f"{PREFIX}{len(rounds) + 1}"])
    return rounds


def allowed(sampler: DesignGridSampler, rounds: list[dict], budget: int | None = None) -> set[int]:
    """Grid ids the stored rounds let trials run: replicate 0 of every point, replicate r of round r's points.

    ``budget``: trials the latest round may still use (None: no limit): it gets the whole blocks of its plan
    that fit, in the plan's order (the comparisons the report makes first), not a random part of each.
    """
    from reports.sequential import fit_blocks  # the plan's own rule (RoundPlan.take), on the stored plan

    points = [{tuple(p) for p in plan["points"]} for plan in rounds]
    if rounds and budget is not None:
        points[-1] = set(fit_blocks(rounds[-1]["points"], rounds[-1].get("blocks"), budget))
    ids = set()
    for grid_id, point in enumerate(sampler.points()):
        replicate = point["replicate"]
        if replicate == 0 or (replicate <= len(points) and (point["activation"], point["loss"], point["lr"]) in points[replicate - 1]):
            ids.add(grid_id)
    return ids


def round_budget(study: optuna.Study, target: int, rounds: list[dict]) -> int:
    """Trials the latest round may use: the target less the finished trials of the earlier rounds."""
    current = len(rounds)
    earlier = sum(t.params.get("replicate", 0) < current for t in study.get_trials(deepcopy=False, states=FINISHED))
    return target - earlier


def next_step(study: optuna.Study, sampler: DesignGridSampler, max_repeats: int, target: int | None = None) -> Step:
    """Decide what this process does now; plan (and store) the next round when the current one is complete.

    Args:
        study: the study.
        sampler: its grid sampler (knows the grid's points and which of them trials hold).
        max_repeats: the most replicates any point gets.
        target: the study's trial budget (--trials), which the latest round's blocks must fit.
    """
    stored = stored_rounds(study.user_attrs)
    current = len(stored)
    if stored and not stored[-1]["points"]:
        return Step("done")
    budget = round_budget(study, target, stored) if target is not None else None
    mine = allowed(sampler, stored, budget)
    taken, choosing, queued = sampler._holders(study)
    # Trials of other processes asked this instant with no point yet take free points first; queued trials (a crashed
    # or interrupted run's points, queued again) wait for the next study.ask() of any process: they are this round's too.
    free = max(len(mine - taken) - len(choosing), 0) + len(queued)
    if free:
        return Step("run", free=free)
    finished = sampler.finished_ids(study)
    if mine - finished:
        return Step("wait")  # the round's last trials run in other processes
    if allowed(sampler, stored) - mine - finished:
        # --trials cut the latest round: the trials left fit none of its other blocks. Planning the next round now would
        # look at a round with holes, and free the rest of this one without the budget's cut; a rerun with more goes on.
        return Step("done")
    if current + 1 >= max_repeats:
        return Step("done")
    key = f"{PREFIX}{current + 1}"
    if key not in study.user_attrs:  # another process may have stored the same plan a moment ago
        study.set_user_attr(key, _plan(study, max_repeats))
    return next_step(study, sampler, max_repeats, target)


def _plan(study: optuna.Study, max_repeats: int) -> dict:
    """The next round's plan, as the report's analysis makes it (``reports.sequential.plan_round``), JSON-able."""
    from reports.frames import frames_from_study
    from reports.sequential import DECIDED, plan_round

    plan = plan_round(frames_from_study(study), max_repeats)
    stored = plan.to_attrs()
    stored["blocks"] = [[list(p) for p in block] for block in plan.blocks]
    stored["decided"] = sum(outcome in DECIDED for outcome in stored["outcomes"].values())
    return stored


def describe(number: int, plan: dict) -> str:
    """One line for a stored plan: what round ``number - 1`` decided and what round ``number`` trains."""
    open_text = f"{len(plan['open'])} comparison(s) open" if plan["open"] else "no comparison open"
    done = f"round {number - 1} complete: {plan['decided']} comparison(s) decided, {open_text}"
    if not plan["points"]:
        return f"{done}: {STOPS.get(plan['stop'], plan['stop'])}"
    return f"{done}; round {number} trains replicate {number} of {len(plan['points'])} grid point(s)"


STOPS = {
    "answered": "every question is answered",
    "max repeats": "the open comparisons have their --max-repeats replicates",
    "beyond max repeats": "the open comparisons could not be decided within --max-repeats replicates",
    "trials": "the --trials budget is spent",
}


def summary(study: optuna.Study, max_repeats: int) -> str:
    """One line on where the sequential design stands: answered, at its replicates' limit, or cut by the budget."""
    stored = stored_rounds(study.user_attrs)
    if stored and not stored[-1]["points"]:
        return f"sequential design: stopped after round {len(stored) - 1}: {STOPS.get(stored[-1]['stop'], stored[-1]['stop'])}"
    if len(stored) + 1 >= max_repeats:
        return (
            f"sequential design: the points of open comparisons have their {max_repeats} replicates (--max-repeats); "
            "the report says what is still open"
        )
    open_text = f"; {len(stored[-1]['open'])} comparison(s) were open after round {len(stored) - 1}" if stored else ""
    return f"sequential design: round {len(stored)} is not complete (--trials or --timeout){open_text}; rerun with more to go on"
