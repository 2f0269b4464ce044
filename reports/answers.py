"""The report's first section, ``## Answers``: the notebook's four questions answered in plain words with their numbers.

Each answer is written from the settled comparisons alone (``claims.settle``: one error rate, intervals that agree with
the outcomes), at most ``MOST_WORDS`` words: the claims by size, what stays open and why. The methods follow in the
report; a student who reads only this section reads nothing the report's error control does not cover.
"""

from __future__ import annotations

import math
from collections import Counter

from reports import claims
from reports.blocks import Section, Text
from reports.claims import Comparison

TITLE = "Answers"  # the exact heading: another tool copies this section into the Optuna dashboard's study note
MOST_WORDS = 120  # per answer
LISTED = 3  # claims named per answer, largest first; the rest are counted
QUESTIONS = {
    "activation": "What changes with the activation function?",
    "loss": "What changes with the loss?",
    "learning rate": "What happens when the learning rate is too high or too low?",
    "epochs": "What do more epochs change?",
}


def section(comparisons: list[Comparison], margin: float, paired: bool = True, lr=None, chance: float = 10.0) -> Section:
    """The ``## Answers`` section: one short paragraph per question (``lr``: the learning-rate question's
    ``learning_rate.LrResult``, whose regimes open its answer; ``chance``: the accuracy of guessing, in %)."""
    s = Section(TITLE)
    if not paired:
        return s.add(
            "This study has no paired design, so it claims nothing: the sections below give observational leads for a paired "
            "study to test (`--sampler grid`)."
        )
    for question, title in QUESTIONS.items():
        mine = [c for c in comparisons if c.question == question]
        lead = regimes(lr, chance) if question == "learning rate" and lr is not None else ""
        s.add(Text(f"**{title}** {_limit((lead + ' ' + answer(mine, question, margin)).strip())}"))
    return s


def regimes(lr, chance: float) -> str:
    """Per loss, its best learning rate and what the others are (too low, too high, good, unclear), in one sentence."""
    parts = []
    for loss in lr.losses:
        others = {}
        for value in sorted(loss.versus_best):
            others.setdefault(loss.regime(value, chance), []).append(f"{value:g}")
        said = ", ".join(f"{name} {'/'.join(v)}" for name, v in others.items())
        parts.append(f"{loss.loss}: best {loss.best:g}" + (f" ({said})" if said else ""))
    return ("Best learning rate per loss: " + "; ".join(parts) + ".") if parts else ""


def answer(comparisons: list[Comparison], question: str, margin: float) -> str:
    """One question's answer, at most ``MOST_WORDS`` words: its claims by size, its equivalences, what is open and why."""
    if not comparisons:
        return "Nothing to compare yet: no pair of trials answers it."
    parts: list[str] = []
    interactions = [c for c in comparisons if c.kind == "interaction" and not math.isnan(c.p)]
    depends = [c for c in interactions if c.claims_difference]
    if interactions:
        flips = [c for c in depends if not claims._size_only(c)]
        sized = len(depends) - len(flips)
        text = f"The difference depends on the learning rate for {len(depends)} of {len(interactions)} pairs of options"
        if flips:
            text += f"; for {len(flips)} its sign changes, so no overall winner is given for those"
        if sized:
            text += f"; for {sized} only its size changes, so their average over the learning rates is tested"
        parts.append(text + ".")
    # A pooled claim (over every learning rate) answers the question most generally: first, then by size.
    shown = sorted((c for c in comparisons if _claims_size(c)), key=lambda c: (c.kind != "pooled", -abs(c.diff)))
    if shown:
        listed = "; ".join(_claim(c) for c in shown[:LISTED])
        more = f" (and {len(shown) - LISTED} more)" if len(shown) > LISTED else ""
        parts.append(f"Shown{', pooled first' if shown[0].kind == 'pooled' else ''}, largest first: {listed}{more}.")
    if question == "learning rate" and len(shown) > LISTED:
        parts[-1] = f"{len(shown)} differences between learning rates are shown, the largest {_claim(shown[0])}."
    same = [c for c in comparisons if c.claims_equivalence and c.kind not in ("interaction", "loss rise")]
    if same:
        are = "s are" if len(same) != 1 else " is"
        parts.append(f"{len(same)} comparison{are} shown within the {margin:g}-point margin{_where(same)}.")
    open_ = [c for c in comparisons if c.kind not in ("interaction", "observational") and not c.claims and c.outcome == "open"
             and not c.withheld and c.question == question]  # fmt: skip
    if open_:
        parts.append(f"Open: {len(open_)}, {_why(open_)}.")
    text = " ".join(parts) or "Nothing is shown yet."
    return _limit(text)


def _claims_size(c: Comparison) -> bool:
    if c.kind == "interaction" or c.withheld or not c.claims_difference:
        return False
    return not c.claims_equivalence  # a negligible difference is counted with the equivalences


def _claim(c: Comparison) -> str:
    if c.kind == "loss rise":
        return f"the test loss rose {c.diff:+.3f} after its lowest epoch ({c.detail.get('loss', '')}, lr {_lr(c.lr)})"
    a, b, sign = (c.a, c.b, 1) if c.diff > 0 else (c.b, c.a, -1)
    low, high = sorted((sign * c.ci_low, sign * c.ci_high))
    if c.kind in ("gain", "drop"):
        what = "still rising" if c.diff > 0 else "more epochs hurt"
        return f"{what} at lr {_lr(c.lr)}: {c.a} − {c.b} = {c.diff:+.1f} points [{c.ci_low:.1f}, {c.ci_high:.1f}]"
    where = f"at lr {_lr(c.lr)}" if c.kind != "pooled" else "over the learning rates"
    if c.question == "learning rate":
        where = c.subset.replace("loss=", "with ")
    return f"{a} ahead of {b} by {abs(c.diff):.1f} points [{low:.1f}, {high:.1f}] {where}"


def _where(rows: list[Comparison]) -> str:
    lrs = sorted({_lr(c.lr) for c in rows if c.kind != "pooled" and not isinstance(c.lr, str)}, key=float)
    return f" (at lr {', '.join(lrs)})" if lrs else ""


def _why(rows: list[Comparison]) -> str:
    """The most common reason the open comparisons stay open, in words."""
    reasons = Counter()
    for c in rows:
        if c.n_pairs < claims.MIN_PAIRS or math.isnan(c.p):
            reasons["too few pairs"] += 1
        elif claims.advises_images(c):
            reasons["the test images are the floor (a larger --test-size would help)"] += 1
        elif c.max_replicates and "will not decide" in claims.replicates_advice(c):
            reasons["their seeds scatter too much for the replicates the study may run"] += 1
        else:
            reasons["more replicates would decide them"] += 1
    top = reasons.most_common(2)
    return " and ".join(f"{n} because {why}" if len(top) > 1 else f"mostly because {why}" for why, n in top)


def _lr(lr) -> str:
    return f"{lr:g}" if isinstance(lr, float | int) else str(lr)


def _limit(text: str) -> str:
    """At most ``MOST_WORDS`` words: whole sentences are dropped from the end (the claims come first)."""
    words = text.split()
    if len(words) <= MOST_WORDS:
        return text
    sentences = text.split(". ")
    while len(" ".join(sentences).split()) > MOST_WORDS - 1 and len(sentences) > 1:
        sentences.pop()
    kept = ". ".join(sentences).rstrip(".") + "."
    return kept if len(kept.split()) <= MOST_WORDS else " ".join(kept.split()[: MOST_WORDS - 1]) + " …"
