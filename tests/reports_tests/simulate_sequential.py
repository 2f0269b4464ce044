"""Simulated sequential studies with a known truth: the error rate, coverage and trials of ``reports.sequential``.

A simulated study is the example's grid (3 activations x 3 losses x 4 learning rates, 2 epochs; ``World(lrs=)``
takes fewer) with every grid point trained up to ``MAX_REPEATS`` times, generated up front; the sequential design then "trains" only what
``plan_round`` asks for, round by round, and the fixed design of every point ``MAX_REPEATS`` times is analysed
on the same data. Each trial answers every one of ``IMAGES`` test images, right or wrong:

    right(trial, image) = L < Φ⁻¹(p_trial),  L = √ρ u_image + √γ v_(option, image) + √(1 − ρ − γ) e_(trial, image)

``p_trial`` is the trial's accuracy on the population of images: its cell's mean (activation x loss x lr, the
truth) plus a seed effect shared by every trial of its replicate (cancels in pairs) plus the trial's own noise.
``u`` is how hard an image is for every network, ``v`` how well it suits one activation or loss (the part of
the test set that replicates share and cannot average away), ``e`` the trial's own luck on it: two trials of one
option near 55% disagree on about a quarter of the images, as real ones do. A cell at chance (10%) predicts
one class for every image, as the real diverged runs do. Epoch 1 is epoch 2 three points lower on the same images
(a curve still rising), epoch 2 is the compare epoch.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace

import numpy as np
import pandas as pd
from reports_tests.conftest import paired_settings
from scipy import stats as scistats

from reports import sequential
from reports.frames import EPOCH_COLUMNS, TRIAL_COLUMNS, Frames

ACTIVATIONS = ("leaky_relu", "relu", "tanh")
LOSSES = ("bce_with_logits", "cross_entropy", "mse")
LRS = (0.0001, 0.001, 0.01, 0.1)
MAX_REPEATS = 5
IMAGES = 2000
EPOCHS = 2
CHANCE = 10.0
RISE = 3.0  # points gained from epoch 1 to epoch 2 (every cell that learns)
BASE = {0.0001: 30.0, 0.001: 55.0, 0.01: 50.0, 0.1: CHANCE}  # mean accuracy by learning rate: too low, good, good, diverges


def flat(activation, loss, lr) -> float:
    """No effect anywhere: every cell at 45%."""
    return 45.0


def relu_ahead(activation, loss, lr) -> float:
    """One main effect: relu 3 points ahead of the other activations wherever the network learns."""
    return BASE[lr] + (3.0 if activation == "relu" and BASE[lr] > CHANCE else 0.0)


FLIP = {0.0001: -4.0, 0.001: 1.0, 0.01: 8.0, 0.1: 0.0}  # tanh − relu by learning rate: the sign flips


def tanh_flips(activation, loss, lr) -> float:
    """A sign-flipping interaction: tanh behind relu at 1e-4, ahead at 1e-2 (and leaky_relu with relu)."""
    return BASE[lr] + (FLIP[lr] if activation == "tanh" else 0.0)


def relu_small(activation, loss, lr) -> float:
    """A small effect, inside the 2-point margin: relu 1 point ahead wherever the network learns."""
    return BASE[lr] + (1.0 if activation == "relu" and BASE[lr] > CHANCE else 0.0)


# The example study's cell means at epoch 10 (docs/example: 2,000 training and 2,000 test images; activation, loss ->
# accuracy at 1e-4, 1e-3, 1e-2, 0.1) and its trials' own spread around them by learning rate (points; a replicate's
# seed effect is on top): 0.1 neither learns nor diverges cleanly, and its runs scatter.
EXAMPLE = {
    ("leaky_relu", "bce_with_logits"): (44.9, 50.0, 43.0, 30.2), ("leaky_relu", "cross_entropy"): (46.6, 51.3, 44.8, 32.7),
    ("leaky_relu", "mse"): (34.8, 41.9, 22.5, 11.0), ("relu", "bce_with_logits"): (44.8, 50.0, 43.2, 21.8),
    ("relu", "cross_entropy"): (46.6, 51.2, 44.4, 18.0), ("relu", "mse"): (34.3, 41.5, 22.1, 9.8),
    ("tanh", "bce_with_logits"): (41.3, 48.9, 41.2, 38.5), ("tanh", "cross_entropy"): (44.0, 48.9, 44.9, 37.8),
    ("tanh", "mse"): (36.0, 40.0, 24.6, 21.8),
}  # fmt: skip
EXAMPLE_SD = {0.0001: 0.5, 0.001: 1.0, 0.01: 1.1, 0.1: 4.0}


def as_example(activation, loss, lr) -> float:
    """The example study's cell means (every effect as it measured them, 0.1 erratic: ``EXAMPLE_SD``)."""
    return EXAMPLE[activation, loss][LRS.index(lr)]


as_example.trial_sd = EXAMPLE_SD

SCENARIOS = {
    "no effect anywhere (every cell 45%)": flat,
    "one main effect (relu +3 points)": relu_ahead,
    "sign-flipping interaction (tanh − relu: −4, +1, +8 by lr)": tanh_flips,
    "a small effect (relu +1 point, inside the margin)": relu_small,
}
EXAMPLE_SCENARIO = "as the example (its cell means, lr 0.1 erratic)"
WITH_EXAMPLE = {**SCENARIOS, EXAMPLE_SCENARIO: as_example}  # the tables of the default grid's choice


class World:
    """Every grid point trained ``MAX_REPEATS`` times, with its per-image answers: the population behind one study."""

    def __init__(self, rng: np.random.Generator, cell, *, lrs=LRS, seed_sd=3.0, trial_sd=1.0, rho=0.6, gamma=0.1, images=IMAGES):
        """``lrs``: the grid's learning rates, some of ``LRS`` (log-spaced, as ``--grid-lrs`` makes them): every trial of
        ``LRS`` is drawn and those at other learning rates are dropped, so the same generator state gives the same trials
        on every grid. ``trial_sd``: a trial's own spread in points, or the cell's ``trial_sd`` by learning rate where it
        has one."""
        assert set(lrs) <= set(LRS), f"learning rates {lrs} must be some of {LRS}"
        self.cell, self.lrs = cell, tuple(lrs)
        sd = getattr(cell, "trial_sd", {})
        drawn = list(itertools.product(ACTIVATIONS, LOSSES, LRS))
        self.grid = [point for point in drawn if point[2] in self.lrs]
        self.means = np.array([cell(a, lo, lr) for a, lo, lr in self.grid])  # the truth, percent
        labels = rng.integers(0, 10, images)
        u = rng.standard_normal(images)
        v = {o: rng.standard_normal(images) for o in (*ACTIVATIONS, *LOSSES)}
        seed = rng.normal(0, seed_sd, MAX_REPEATS)
        rows, predictions = [], {}
        number = 0
        for r in range(MAX_REPEATS):  # replicate-major, as the study runs
            for a, lo, lr in drawn:
                mean = cell(a, lo, lr)
                if mean <= CHANCE:  # a run that diverged: one class for every image
                    guess = np.full(images, rng.integers(0, 10), dtype=np.uint8)
                    pred = np.stack([guess, guess])
                else:
                    p = np.clip((mean + seed[r] + rng.normal(0, sd.get(lr, trial_sd))) / 100, 0.12, 0.95)
                    own = rng.standard_normal(images)  # the trial's own luck on each image
                    latent = math.sqrt(rho) * u + math.sqrt(gamma / 2) * (v[a] + v[lo]) + math.sqrt(1 - rho - gamma) * own
                    wrong = (labels + rng.integers(1, 10, images)) % 10
                    right = np.stack([latent < scistats.norm.ppf(max(p - RISE / 100, 0.11)), latent < scistats.norm.ppf(p)])
                    pred = np.where(right, labels[None, :], wrong[None, :]).astype(np.uint8)
                if lr not in self.lrs:
                    continue
                acc = 100.0 * (pred == labels[None, :]).mean(axis=1)
                rows.append((number, a, lo, lr, r, acc))
                predictions[number] = pred
                number += 1
        self.labels = labels.astype(np.uint8)
        self.rows, self.predictions = rows, predictions

    def frames(self, trained: set[tuple[str, str, float, int]] | None = None) -> Frames:
        """The study that trained ``trained`` (activation, loss, lr, replicate); every trial when None."""
        rows = [row for row in self.rows if trained is None or (row[1], row[2], row[3], row[4]) in trained]
        n = len(rows)
        number, act, loss, lr, rep = (np.array(c, dtype=object) for c in list(zip(*rows, strict=True))[:5]) if n else [np.array([])] * 5
        acc = np.array([row[5] for row in rows]).reshape(n, EPOCHS)
        trials = pd.DataFrame(
            {
                "number": number.astype(int), "state": "complete", "activation": act, "loss": loss, "lr": lr.astype(float),
                "replicate": rep.astype(int), "seed": rep.astype(int), "value": acc[:, -1], "final_test_acc": acc[:, -1],
                "final_train_acc": acc[:, -1] + 5, "final_test_loss": 0.9, "gap": 5.0, "peak_test_acc": acc.max(axis=1),
                "epochs_run": EPOCHS, "diverged": False, "baseline": False, "seconds": 1.0, "device": "cpu", "precision": "float32",
            },
            columns=TRIAL_COLUMNS,
        )  # fmt: skip
        epochs = pd.DataFrame(
            {
                "number": np.repeat(number.astype(int), EPOCHS), "state": "complete", "activation": np.repeat(act, EPOCHS),
                "loss": np.repeat(loss, EPOCHS), "lr": np.repeat(lr.astype(float), EPOCHS), "replicate": np.repeat(rep.astype(int), EPOCHS),
                "diverged": False, "epoch": np.tile(np.arange(1, EPOCHS + 1), n), "train_loss": np.tile([1.0, 0.8], n),
                "train_acc": acc.ravel() + 5, "test_loss": np.tile([1.0, 0.9], n), "test_acc": acc.ravel(),
            },
            columns=EPOCH_COLUMNS,
        )  # fmt: skip
        lrs = self.lrs
        space = {"activations": list(ACTIVATIONS), "losses": list(LOSSES), "lr_min": min(lrs), "lr_max": max(lrs), "grid_lrs": len(lrs)}
        settings = paired_settings(epochs=EPOCHS, repeats=MAX_REPEATS, search_space=space, test_size=len(self.labels), margin=2.0)
        predictions = {int(k): self.predictions[int(k)] for k in trials["number"]}
        return Frames("sim", settings, trials, epochs, {}, predictions, self.labels)

    def truth(self, o: sequential.Outcome) -> float:
        """The population value of what outcome ``o`` estimates (its ``diff``, in its orientation)."""
        c = o.comparison
        cells = dict(zip(self.grid, self.means, strict=True))
        if c.question == "epochs":
            return RISE if c.kind in ("gain", "drop") and c.a != c.b else 0.0
        if c.question == "learning rate":
            loss = c.subset.removeprefix("loss=")
            x, y = float(c.a.removeprefix("lr ")), float(c.b.removeprefix("lr "))
            return float(np.mean([cells[a, loss, x] - cells[a, loss, y] for a in ACTIVATIONS]))

        def at(lr):
            if c.question == "activation":
                return float(np.mean([cells[c.a, lo, lr] - cells[c.b, lo, lr] for lo in LOSSES]))
            return float(np.mean([cells[a, c.a, lr] - cells[a, c.b, lr] for a in ACTIVATIONS]))

        if c.lr == "pooled":
            return float(np.mean([at(lr) for lr in self.lrs]))
        if c.lr == "interaction":
            return float(np.ptp([at(lr) for lr in self.lrs]))
        return at(float(c.lr))


def false_claims(world: World, outcomes, margin: float = 2.0) -> int:
    """Claims the truth contradicts: a difference where there is none or of the other sign, "within the margin" where it is not."""
    wrong = 0
    for o in outcomes:
        c = o.comparison
        true = world.truth(o)
        if c.kind == "interaction":
            wrong += c.claims_difference and abs(true) < 1e-9
            continue
        if c.kind == "loss rise":
            continue
        wrong_sign = abs(true) < 1e-9 or math.copysign(1, true) != math.copysign(1, c.diff)
        wrong += bool((c.claims_difference and wrong_sign) or (c.claims_equivalence and abs(true) >= margin))
    return wrong


def run_study(world: World, max_repeats: int = MAX_REPEATS, spending=None, max_trials: int | None = None) -> sequential.RoundPlan:
    """Run the sequential design on ``world``: train what each plan asks, round by round, until it stops.

    ``spending``: the share of the error each look spends (default: ``plan_round``'s equal shares); (1, 1, ...) looks
    without spending anything, which is what a study that reran the fixed-sample analysis after every round would do.
    ``max_trials``: the study's --trials: a round that does not fit trains the whole blocks that do (``RoundPlan.take``),
    as the runner does.
    """
    trained: set = set()
    cache: dict = {}
    while True:
        frames = world.frames(trained)
        if spending is None:
            plan = sequential.plan_round(frames, max_repeats, max_trials, cache=cache)
        else:
            plan = sequential._Sequence(frames, max_repeats, frames.settings.margin, None, cache, spending).plan(max_trials)
        points = plan.take(None if max_trials is None else max_trials - len(trained))
        if not points:
            return plan
        trained |= {(*p, plan.round) for p in points}


def budget_rows(studies: int = 100, budget: int = 50, seed: int = 0, max_repeats: int = MAX_REPEATS, lrs=LRS) -> list[str]:
    """README rows: what ``--trials budget`` buys in each scenario, against round 0 alone and the fixed design of 2 replicates.

    Per scenario, the mean over ``studies`` simulated studies of the comparisons answered and the reports with a false
    claim: the sequential design cut at ``budget`` trials (round 0 and whole blocks where verdicts are open), round 0
    alone (``len(grid)`` trials) and every grid point twice (the fixed design the budget would come closest to), on the
    grid of ``lrs`` (the example's 4 learning rates, the scenarios with lr 0.1 at chance, unless the example's cell
    means are asked for: ``lrs`` of 3 adds them).
    """
    rows = []
    rng = np.random.default_rng(seed)
    scenarios = SCENARIOS if len(lrs) == len(LRS) else WITH_EXAMPLE
    for name, cell in scenarios.items():
        out = {p + f: 0 for p in ("", "r0_", "fixed2_") for f in (*FIELDS, "n")}
        for _ in range(studies):
            world = World(rng, cell, lrs=lrs)
            _count(out, "", world, run_study(world, max_repeats, max_trials=budget))
            _count(out, "r0_", world, fixed_design(world, 1))
            _count(out, "fixed2_", world, fixed_design(world, 2))
        n = studies
        rows.append(
            f"| {name} | {max_repeats} | {n} | {out['r0_answered'] / n:.1f} ({out['r0_false_reports'] / n:.0%}) | "
            f"{out['trials'] / n:.0f} | {out['answered'] / n:.1f} ({out['false_reports'] / n:.0%}) | "
            f"{out['fixed2_answered'] / n:.1f} ({out['fixed2_false_reports'] / n:.0%}) |"
        )
    return rows


QUESTIONS = ("activation", "loss", "learning rate", "epochs")
GRIDS = {  # default grids that --trials 50 might run (grid_rows)
    "4 lrs, 1e-4 to 0.1 (36 points)": LRS,
    "3 lrs, 1e-4 to 1e-2 (27 points)": LRS[:3],
}


def grid_rows(studies: int = 100, budget: int = 50, seed: int = 0, max_repeats: int = MAX_REPEATS, grids=None) -> list[str]:
    """README rows: what ``--trials budget`` of the sequential design answers on each candidate default grid.

    Per scenario (``SCENARIOS`` and the example's cell means) and grid, on the same simulated trials: the trials used,
    the comparisons that call for replicates (asked), those answered, the claims among them (differences and
    equivalences, as ``replay`` counts them: "no option learns" and "more test images" close a comparison without
    claiming), answered of asked per question (activation, loss, learning rate, epochs) and the reports with a false
    claim. Means over ``studies`` simulated studies.
    """
    rows = []
    grids = grids or GRIDS
    for s, (name, cell) in enumerate(WITH_EXAMPLE.items()):
        for label, lrs in grids.items():
            rng = np.random.default_rng(seed + 100 * s)  # the same worlds on every grid (World draws every lr)
            out = {f: 0 for f in (*FIELDS, "n", "asked", "asked_claims")}
            by_question = {q: [0, 0] for q in QUESTIONS}
            for _ in range(studies):
                world = World(rng, cell, lrs=lrs)
                plan = run_study(world, max_repeats, max_trials=budget)
                _count(out, "", world, plan)
                out["asked"] += len(plan.asked)
                out["asked_claims"] += claimed(plan)
                for o in plan.asked:
                    by_question[o.comparison.question][0] += o.decided
                    by_question[o.comparison.question][1] += 1
            n = studies
            questions = " | ".join(f"{a / n:.1f} / {b / n:.1f}" for a, b in by_question.values())
            rows.append(
                f"| {name} | {label} | {n} | {out['trials'] / n:.0f} | {out['asked'] / n:.1f} | "
                f"{out['answered'] / n:.1f} ({out['answered'] / max(out['asked'], 1):.0%}) | {out['asked_claims'] / n:.1f} | "
                f"{questions} | {out['false_reports'] / n:.0%} |"
            )
    return rows


def claimed(plan: sequential.RoundPlan) -> int:
    """The comparisons that call for replicates and were closed with a claim: a difference or an equivalence."""
    return sum(o.outcome in (sequential.DIFFERENCE, sequential.EQUIVALENCE) for o in plan.asked)


def replay(frames: Frames, lrs, budget: int | None, max_repeats: int = MAX_REPEATS) -> tuple[sequential.RoundPlan, int]:
    """The sequential design on the grid of ``lrs``, cut at ``budget`` trials, replayed on a real study's trials.

    ``frames``' grid trials at ``lrs`` (the baseline left out) stand for what the study would have trained: each round
    "trains" the points its plan asks, at the round's replicate, from them. Returns the last plan and the trials used;
    it stops early (before ``max_repeats``) where a plan asks for a trial ``frames`` does not hold.
    """
    space = {**frames.settings.search_space, "lr_min": min(lrs), "lr_max": max(lrs), "grid_lrs": len(lrs)}
    t = frames.trials
    grid = sequential._keep(frames, t["lr"].isin(lrs) & ~t["baseline"].astype(bool))
    grid = replace(grid, settings=replace(frames.settings, search_space=space))
    keys = pd.Series(list(zip(grid.trials["activation"], grid.trials["loss"], grid.trials["lr"].astype(float),
                              grid.trials["replicate"].astype(int), strict=True)), index=grid.trials.index)  # fmt: skip
    held, trained, cache = set(keys), set(), {}
    while True:
        plan = sequential.plan_round(sequential._keep(grid, keys.isin(trained)), max_repeats, budget, cache=cache)
        wanted = {(*p, plan.round) for p in plan.take(None if budget is None else budget - len(trained))}
        if not wanted or not wanted <= held:
            return plan, len(trained)
        trained |= wanted


def fixed_design(world: World, replicates: int) -> sequential.RoundPlan:
    """The fixed design of every grid point ``replicates`` times, analysed once (95% intervals, the report's Holm)."""
    trained = {(*p, r) for p in world.grid for r in range(replicates)}
    return sequential.decide_fixed(world.frames(trained))


FIELDS = ("false", "false_reports", "fdp", "covered", "intervals", "claims", "answered", "open", "trials", "images")


def _count(out: dict, prefix: str, world: World, plan: sequential.RoundPlan) -> None:
    out[prefix + "n"] = out.get(prefix + "n", 0) + 1
    wrong = false_claims(world, plan.outcomes)
    out[prefix + "false"] += wrong
    out[prefix + "false_reports"] += wrong > 0
    # The report's own promise under --error-rate fdr (the default): the share of its claims that are false, averaged.
    out[prefix + "fdp"] += wrong / max(sum(o.comparison.claims for o in plan.outcomes), 1)
    for o in plan.outcomes:
        if o.comparison.kind in ("interaction", "loss rise") or not math.isfinite(o.low):
            continue
        out[prefix + "intervals"] += 1
        out[prefix + "covered"] += o.low - 1e-9 <= world.truth(o) <= o.high + 1e-9
    out[prefix + "claims"] += sum(o.comparison.claims for o in plan.outcomes if o.comparison.kind not in ("interaction", "loss rise"))
    out[prefix + "answered"] += sum(o.decided for o in plan.outcomes)
    out[prefix + "open"] += sum(o.outcome in (sequential.OPEN, sequential.BEYOND) for o in plan.outcomes)
    out[prefix + "trials"] += plan.trials
    out[prefix + "images"] += sum(o.outcome == sequential.IMAGES for o in plan.outcomes)


def run_scenario(
    cell,
    studies: int = 500,
    seed: int = 0,
    max_repeats: int = MAX_REPEATS,
    variants: dict | None = None,
    curve: int = 0,
    fixed: int | None = None,
) -> dict:
    """Simulate ``studies`` sequential studies, and the fixed design of ``max_repeats`` replicates on the same data; count.

    Args:
        cell: the truth, (activation, loss, lr) -> mean accuracy (percent).
        studies: simulated studies.
        seed: of the random generator.
        max_repeats: the sequential design's most rounds, and the fixed design's replicates.
        variants: other spendings to run on the same studies, name -> shares per look (``run_study``).
        curve: the first ``curve`` studies also get fixed designs of 1 .. max_repeats - 1 replicates (``fixed<R>_*``), to
            find the smallest fixed design that answers as much as the sequential one.
        fixed: the first ``fixed`` studies get the fixed design of ``max_repeats`` replicates (None: every one).

    Returns:
        Per design (prefix ``""`` sequential, ``fixed_``, ``<variant>_``, ``fixed<R>_``), means per study of: ``false``
        claims and ``false_reports`` (share of reports with one), ``fdp`` (the share of a report's claims, interactions and
        test-loss rises included, that are false: what ``--error-rate fdr`` bounds at 5%), ``claims`` (differences and
        equivalences claimed, the interaction and test-loss tests left out), ``answered`` (comparisons that call for
        replicates and got an outcome: a difference, within the margin, no option learns, more test images), ``open``
        (those left open or beyond max repeats), ``trials``, ``images`` (closed as more test images); ``covered``: the
        share of the intervals shown (per-lr, pooled, learning-rate and epochs rows) that cover the truth, of
        ``intervals``; ``n``: the studies behind them. And ``studies``, ``seconds``.
    """
    rng = np.random.default_rng(seed)
    variants = variants or {}
    prefixes = ["", "fixed_", *(f"{v}_" for v in variants)]
    curve_prefixes = [f"fixed{r}_" for r in range(1, max_repeats)]
    out = {p + f: 0 for p in (*prefixes, *curve_prefixes) for f in (*FIELDS, "n")}
    start = time.perf_counter()
    _run(out, cell, rng, studies, max_repeats, variants, curve, studies if fixed is None else fixed)
    for p in (*prefixes, *curve_prefixes):
        n = max(out[p + "n"], 1)
        out[p + "covered"] = out[p + "covered"] / max(out[p + "intervals"], 1)
        for f in ("false", "false_reports", "fdp", "claims", "answered", "open", "trials", "images"):
            out[p + f] /= n
        out[p + "false_per_report"] = out[p + "false"]
    out["studies"], out["curve"] = studies, min(curve, studies)
    out["seconds"] = time.perf_counter() - start
    out["fixed_trials"] = len(ACTIVATIONS) * len(LOSSES) * len(LRS) * max_repeats
    out["max_repeats"] = max_repeats
    return out


def _run(out: dict, cell, rng, studies: int, max_repeats: int, variants: dict, curve: int, fixed: int) -> None:
    for i in range(studies):
        world = World(rng, cell)
        _count(out, "", world, run_study(world, max_repeats))
        if i < fixed:
            _count(out, "fixed_", world, fixed_design(world, max_repeats))
        for name, spending in variants.items():
            _count(out, f"{name}_", world, run_study(world, max_repeats, spending))
        if i < curve:
            for r in range(1, max_repeats):
                _count(out, f"fixed{r}_", world, fixed_design(world, r))


def matching_fixed(r: dict, max_repeats: int = MAX_REPEATS) -> tuple[int, float]:
    """The smallest fixed design (replicates, its trials) that answers on average at least as many comparisons as the sequential one."""
    grid = len(ACTIVATIONS) * len(LOSSES) * len(LRS)
    for reps in range(1, max_repeats):
        if r.get(f"fixed{reps}_answered", -1) >= r["answered"]:
            return reps, grid * reps
    return max_repeats, grid * max_repeats


def table_row(name: str, r: dict) -> str:
    most = r.get("max_repeats", MAX_REPEATS)
    reps, trials = matching_fixed(r, most) if r.get("curve") else (most, r["fixed_trials"])
    curve = " / ".join(f"{r[f'fixed{k}_answered']:.1f}" for k in range(1, most) if f"fixed{k}_answered" in r)
    return (
        f"| {name} | {most} | {r['studies']} | {r['false_reports']:.1%} | {r['false_per_report']:.3f} | {r['covered']:.1%} | "
        f"{r['trials']:.0f} | {r['answered']:.1f} | {r['open']:.1f} | {r['images']:.1f} | {r['claims']:.1f} | "
        f"{r['fixed_false_reports']:.1%} | {r['fixed_false_per_report']:.3f} | {r['fixed_covered']:.1%} | {r['fixed_answered']:.1f} | "
        f"{r['fixed_claims']:.1f} | {curve} | {reps} × {trials / reps:.0f} = {trials:.0f} |"
    )


def variant_row(name: str, variant: str, r: dict) -> str:
    v = f"{variant}_"
    return (
        f"| {name} | {variant} | {r.get(v + 'n', r['studies'])} | {r[v + 'false_reports']:.1%} | {r[v + 'false']:.3f} | "
        f"{r[v + 'covered']:.1%} | "
        f"{r[v + 'trials']:.0f} | {r[v + 'answered']:.1f} | {r[v + 'claims']:.1f} |"
    )


VARIANTS = {  # other ways to spend the error over the looks, run on the same studies for the README
    "no spending (fixed-sample tests after every round)": (1.0,) * MAX_REPEATS,
    "late spending (0.1, 0.1, 0.1, 0.1, 0.6)": (0.1, 0.1, 0.1, 0.1, 0.6),
}
CHUNK = 25  # studies per saved chunk of the full run, so that a run cut short still counts what it did


def run_chunks(
    path: str,
    scenario: int,
    studies: int = 500,
    curve: int = 100,
    variants: int = 0,
    fixed: int = 500,
    part: int = 0,
    parts: int = 1,
    max_repeats: int = MAX_REPEATS,
) -> None:
    """Append chunks of ``CHUNK`` studies of scenario ``scenario`` (1-based) to the JSON-lines file ``path``, seeded per chunk.

    The first ``fixed`` studies also get the fixed design of ``max_repeats`` replicates, the first ``curve`` those of 1
    .. max_repeats - 1, the first ``variants`` the other spendings (``VARIANTS``, 5 looks only). Chunks already in
    ``path`` are skipped: a rerun resumes. ``parts`` processes may share a scenario, each taking the chunks
    ``chunk % parts == part``. The seeds depend on the scenario and chunk only: runs of different ``max_repeats``
    simulate the same studies.
    """
    import json
    from pathlib import Path

    name, cell = list(SCENARIOS.items())[scenario - 1]
    lines = Path(path).read_text().splitlines() if Path(path).exists() else []
    done = {(r["scenario"], r["chunk"], r.get("max_repeats", MAX_REPEATS)) for r in map(json.loads, lines)}
    for chunk in range(math.ceil(studies / CHUNK)):
        if (scenario, chunk, max_repeats) in done or chunk % parts != part:
            continue
        first = chunk * CHUNK
        n = min(CHUNK, studies - first)
        spendings = VARIANTS if first < variants and max_repeats == MAX_REPEATS else None
        r = run_scenario(cell, n, seed=1000 * scenario + chunk, max_repeats=max_repeats, curve=max(0, min(n, curve - first)),
                         variants=spendings, fixed=max(0, min(n, fixed - first)))  # fmt: skip
        r.update(scenario=scenario, name=name, chunk=chunk, max_repeats=max_repeats)
        with open(path, "a") as f:
            f.write(json.dumps(r) + "\n")


def combine(path: str) -> dict[tuple[str, int], dict]:
    """The chunks of ``path`` per scenario and most repeats: means weighted by studies (coverage by intervals), as
    ``run_scenario`` returns."""
    import json
    from pathlib import Path

    chunks: dict[tuple[str, int], list] = {}
    for r in map(json.loads, Path(path).read_text().splitlines()):
        chunks.setdefault((r["name"], r.get("max_repeats", MAX_REPEATS)), []).append(r)
    out = {}
    for (name, most), rs in chunks.items():
        total: dict = {key: sum(r[key] for r in rs) for key in ("studies", "curve", "seconds")}
        prefixes = {k[: -len("answered")] for r in rs for k in r if k.endswith("answered")}
        for p in prefixes:
            counted = [r for r in rs if p + "answered" in r and (not p.startswith("fixed") or p == "fixed_" or r["curve"])]
            old = {id(r): r["curve"] if p.startswith("fixed") and p != "fixed_" else r["studies"] for r in counted}
            weight = {id(r): r.get(p + "n", old[id(r)]) for r in counted}  # studies behind the prefix (older chunks: implied)
            n = sum(weight.values())
            if not n:
                continue
            for f in ("false", "false_reports", "claims", "answered", "open", "trials", "images"):
                total[p + f] = sum(r[p + f] * weight[id(r)] for r in counted) / n
            intervals = sum(r[p + "intervals"] for r in counted)
            total[p + "covered"] = sum(r[p + "covered"] * r[p + "intervals"] for r in counted) / max(intervals, 1)
            total[p + "intervals"], total[p + "false_per_report"], total[p + "n"] = intervals, total[p + "false"], n
        total["fixed_trials"], total["max_repeats"] = rs[0]["fixed_trials"], most
        out[name, most] = total
    return out


def main(argv: list[str] | None = None) -> None:
    """The README's figures (from the repository root; ``make simulate-sequential ARGS=...`` runs the same)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="PYTHONPATH=tests python -m reports_tests.simulate_sequential",
        description="Simulated sequential studies with a known truth (the README's table). Runs in saved chunks of "
        f"{CHUNK} studies: a rerun with the same --out resumes.",
    )
    parser.add_argument("--out", default="simulate-sequential.jsonl", help="JSON-lines file of the chunks (default: %(default)s)")
    parser.add_argument("--scenario", type=int, action="append", choices=range(1, len(SCENARIOS) + 1),
                        help="scenario to run, 1-based (repeatable; default: every one)")  # fmt: skip
    parser.add_argument("--studies", type=int, default=500, help="studies per scenario (default: %(default)s)")
    parser.add_argument("--max-repeats", type=int, default=MAX_REPEATS, help="the sequential design's most rounds (default: %(default)s)")
    parser.add_argument("--fixed", type=int, default=500, help="studies that also get the fixed design of --max-repeats replicates")
    parser.add_argument("--curve", type=int, default=100, help="studies that also get the fixed designs of 1 .. max-repeats - 1")
    parser.add_argument("--variants", type=int, default=25, help="studies that also get the other spendings (5 looks only)")
    parser.add_argument("--part", type=int, default=0, help="this process's share of the chunks, with --parts")
    parser.add_argument("--parts", type=int, default=1, help="processes sharing the chunks")
    parser.add_argument("--table", action="store_true", help="print the README's rows from --out and run nothing")
    parser.add_argument("--grids", action="store_true", help="print what --trials 50 answers on each candidate default grid "
                        "(grid_rows: --studies per scenario and grid, --seed) and run nothing else")  # fmt: skip
    parser.add_argument("--budget", type=int, help="print what --trials BUDGET buys against round 0 alone and two replicates "
                        "(budget_rows: --studies per scenario, --seed, --max-repeats, --grid-lrs) and run nothing else")  # fmt: skip
    parser.add_argument("--grid-lrs", type=int, choices=(3, 4), default=3, help="with --budget: the default grid (3) or the example's (4)")
    parser.add_argument("--seed", type=int, default=77, help="with --grids or --budget (default: %(default)s, the README's)")
    args = parser.parse_args(argv)
    if args.grids or args.budget:
        rows = (grid_rows(args.studies, seed=args.seed) if args.grids
                else budget_rows(args.studies, args.budget, args.seed, args.max_repeats, LRS[: args.grid_lrs]))  # fmt: skip
        print("\n".join(rows))
        return
    if not args.table:
        for scenario in args.scenario or range(1, len(SCENARIOS) + 1):
            run_chunks(args.out, scenario, studies=args.studies, curve=args.curve, variants=args.variants, fixed=args.fixed,
                       part=args.part, parts=args.parts, max_repeats=args.max_repeats)  # fmt: skip
    for (name, _), r in sorted(combine(args.out).items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(table_row(name, r), f"<!-- {r['seconds']:.0f} s -->")
        for variant in VARIANTS:
            if f"{variant}_answered" in r:
                print(variant_row(name, variant, r), f"<!-- {r[variant + '_n']} studies -->")


if __name__ == "__main__":
    main()


def t_mixture_radius(n: int, alpha: float, phi: float = 1.0) -> float:
    """Half-width, in standard errors, of the anytime-valid t confidence sequence for a mean after ``n`` values.

    The Gaussian-mixture t test of Lindon, Ham, Tingley & Bojinov (2024, "Anytime-valid linear models"), as ``savvi``
    0.3.1's ``LinearRegression.calculate_conf_int`` computes it for an intercept-only model (nu = n - 2, z^2 = n); the
    same family as Lai (1976) and Wang & Ramdas (2023). Infinite when ``n`` values cannot exclude anything at ``alpha``.
    """
    nu = n - 2
    if nu <= 0:
        return math.inf
    r = phi / (phi + n)
    q = (r * alpha**2) ** (1 / (nu + 1))
    return math.sqrt(nu * (1 - q) / (q - r)) if q > r else math.inf


def pocock_z(alpha: float, looks: int = MAX_REPEATS, draws: int = 2_000_000, seed: int = 0) -> float:
    """Pocock's constant: the z every one of ``looks`` equally spaced looks uses so that any crossing has chance ``alpha``."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.standard_normal((draws, looks)), axis=1) / np.sqrt(np.arange(1, looks + 1))
    return float(np.quantile(np.abs(walk).max(axis=1), 1 - alpha))


def interval_widths(pairs=(3, 6, 9, 12, 15, 30), alphas=(0.05, 0.05 / 60), looks: int = MAX_REPEATS) -> list[str]:
    """README rows: half-widths (in standard errors) of the fixed t interval, the repeated one, and the t-mixture sequence."""
    rows = []
    for alpha in alphas:
        z_pocock, z_bonferroni = pocock_z(alpha, looks), scistats.norm.ppf(1 - alpha / (2 * looks))
        for n in pairs:
            best = min(t_mixture_radius(n, alpha, phi) for phi in (0.1, 0.3, 1.0, 3.0, 10.0))
            fixed, repeated = scistats.t.ppf(1 - alpha / 2, n - 1), scistats.t.ppf(1 - alpha / (2 * looks), n - 1)
            rows.append(
                f"| {alpha:.2g} | {n} | {fixed:.2f} | {repeated:.2f} | {t_mixture_radius(n, alpha):.2f} | {best:.2f} | "
                f"{z_pocock:.2f} vs {z_bonferroni:.2f} |"
            )
    return rows
