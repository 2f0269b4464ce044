"""Simulated paired studies with a known truth: frames built straight from arrays (no database), fast enough for hundreds.

Test accuracy of a trial at an epoch = 50 + effect(activation, loss, lr) + curve(epoch, lr)
                                      + a seed effect shared by the trials of one replicate
                                      + the trial's own noise + noise per epoch.
The seed effect is the run-to-run noise that pairing cancels; the rest is what the paired verdicts must see through.
"""

import itertools
import math

import numpy as np
import pandas as pd
from reports_tests.conftest import paired_settings

from reports.frames import EPOCH_COLUMNS, TRIAL_COLUMNS, Frames

ACTIVATIONS = ("relu", "leaky_relu", "tanh")
LOSSES = ("cross_entropy", "mse")
LRS = (1e-4, 1e-3, 1e-2)


def no_effect(activation, loss, lr) -> float:
    return 0.0


def flat(epoch, lr) -> float:
    return 0.0


def simulate(
    rng: np.random.Generator,
    effect=no_effect,
    curve=flat,
    *,
    activations=ACTIVATIONS,
    losses=LOSSES,
    lrs=LRS,
    replicates: int = 3,
    epochs: int = 6,
    seed_sd: float = 3.0,
    trial_sd: float = 1.0,
    epoch_sd: float = 0.5,
    test_loss=None,
    seed_lr_sd: float = 0.0,
    trial_sd_by_lr: dict | None = None,
) -> Frames:
    """A paired grid of every activation x loss x lr x replicate; ``test_loss(epoch)`` shapes the mean test loss (flat: 1).

    ``trial_sd_by_lr`` (lr -> sd) replaces ``trial_sd`` per learning rate: unequal spread, as the example's lr 0.1 runs.
    """
    grid = list(itertools.product(activations, losses, lrs, range(replicates)))
    n = len(grid)
    act, loss, lr, rep = (np.array(column, dtype=object) for column in zip(*grid, strict=True))
    lr, rep = lr.astype(float), rep.astype(int)
    seed = rng.normal(0, seed_sd, replicates)  # shared by every trial of a replicate: the noise pairing cancels
    # A seed's luck at one learning rate (shared by its options there): cancels in option pairs, not in lr pairs.
    seed_lr = {key: rng.normal(0, seed_lr_sd) if seed_lr_sd else 0.0 for key in itertools.product(lrs, range(replicates))}
    mean = np.array([50 + effect(a, lo, r) + seed[p] + seed_lr[r, p] for a, lo, r, p in grid])
    spread = np.array([trial_sd_by_lr[r] for r in lr]) if trial_sd_by_lr else trial_sd
    trial = rng.normal(0, 1.0, n) * spread
    shape = np.array([[curve(e, r) for e in range(1, epochs + 1)] for r in lr])  # (n, epochs)
    acc = np.clip(mean[:, None] + trial[:, None] + shape + rng.normal(0, epoch_sd, (n, epochs)), 0, 100)
    loss_shape = np.array([test_loss(e) if test_loss else 1.0 for e in range(1, epochs + 1)])  # flat by default: no overfitting
    test_loss = loss_shape[None, :] + rng.normal(0, 0.02, (n, epochs))
    train_loss = 1.0 - 0.05 * np.arange(epochs)[None, :] + np.zeros((n, 1))
    numbers = np.arange(n)
    trials = pd.DataFrame(
        {
            "number": numbers, "state": "complete", "activation": act, "loss": loss, "lr": lr, "replicate": rep, "seed": rep,
            "value": acc[:, -1], "final_test_acc": acc[:, -1], "final_train_acc": acc[:, -1] + 5, "final_test_loss": test_loss[:, -1],
            "gap": 5.0, "peak_test_acc": acc.max(axis=1), "epochs_run": epochs, "diverged": False, "baseline": False,
            "seconds": 1.0, "device": "cpu", "precision": "float32",
        },
        columns=TRIAL_COLUMNS,
    )  # fmt: skip
    long = pd.DataFrame(
        {
            "number": np.repeat(numbers, epochs), "state": "complete", "activation": np.repeat(act, epochs),
            "loss": np.repeat(loss, epochs), "lr": np.repeat(lr, epochs), "replicate": np.repeat(rep, epochs), "diverged": False,
            "epoch": np.tile(np.arange(1, epochs + 1), n), "train_loss": train_loss.ravel(), "train_acc": acc.ravel() + 5,
            "test_loss": test_loss.ravel(), "test_acc": acc.ravel(),
        },
        columns=EPOCH_COLUMNS,
    )  # fmt: skip
    space = {"activations": list(activations), "losses": list(losses), "lr_min": min(lrs), "lr_max": max(lrs), "grid_lrs": len(lrs)}
    settings = paired_settings(epochs=epochs, repeats=replicates, search_space=space)
    return Frames("sim", settings, trials, long, {})


def truth(c, effect, curve, activations=ACTIVATIONS, losses=LOSSES, lrs=LRS) -> float:
    """The true value of what comparison ``c`` estimates (its ``diff``), from the simulation's effect and curve."""
    if c.question in ("activation", "loss"):
        others = losses if c.factor == "activation" else activations

        def at(lr, a, b):
            if c.factor == "activation":
                return float(np.mean([effect(a, o, lr) - effect(b, o, lr) for o in others]))
            return float(np.mean([effect(o, a, lr) - effect(o, b, lr) for o in others]))

        if c.lr == "pooled":
            return float(np.mean([at(lr, c.a, c.b) for lr in lrs]))
        if c.lr == "interaction":
            return float(np.ptp([at(lr, c.a, c.b) for lr in lrs]))  # zero: no interaction
        return at(c.lr, c.a, c.b)
    if c.question == "learning rate":
        loss = c.subset.removeprefix("loss=")
        x, y = float(c.a.removeprefix("lr ")), float(c.b.removeprefix("lr "))
        return float(np.mean([effect(a, loss, x) - effect(a, loss, y) for a in activations]))
    if c.factor == "test loss":
        return 0.0
    last, other = int(c.a.removeprefix("epoch ")), int(c.b.removeprefix("epoch "))
    return curve(last, c.lr) - curve(other, c.lr)


def false_claims(comparisons, effect, curve, margin: float) -> list:
    """The comparisons whose claim the truth contradicts."""
    wrong = []
    for c in comparisons:
        true = truth(c, effect, curve)
        if c.kind == "interaction":
            if c.claims_difference and abs(true) < 1e-9:
                wrong.append(c)
            continue
        wrong_sign = abs(true) < 1e-9 or math.copysign(1, true) != math.copysign(1, c.diff)
        if (c.claims_difference and wrong_sign) or (c.claims_equivalence and abs(true) >= margin):
            wrong.append(c)
    return wrong


# The scenarios of the README's table: (effect, curve), each a known truth.
def relu_ahead(activation, loss, lr) -> float:
    """One main effect: relu 3 points ahead of the other activations at every learning rate and loss."""
    return 3.0 if activation == "relu" else 0.0


FLIP = {1e-4: -4.0, 1e-3: 1.0, 1e-2: 8.0}  # tanh − relu per learning rate: the sign flips


def tanh_flips(activation, loss, lr) -> float:
    """An interaction whose sign flips across learning rates: tanh behind relu at 1e-4, ahead at 1e-2."""
    return FLIP[lr] if activation == "tanh" else 0.0


DROP = (-6.0, -2.0, 0.0, -1.0, -2.0, -3.0)  # a peak at epoch 3, then 3 points lost by epoch 6


def drop_after_peak(epoch, lr) -> float:
    return DROP[epoch - 1]


SCENARIOS = {
    "no effect anywhere": (no_effect, flat),
    "one main effect (relu +3 points)": (relu_ahead, flat),
    "sign-flipping interaction (tanh − relu: −4, +1, +8 by lr)": (tanh_flips, flat),
    "a real drop after a peak (epoch 3, −3 points by epoch 6)": (no_effect, drop_after_peak),
}


def run_scenario(effect, curve, reports: int = 200, seed: int = 0, margin: float = 2.0, error_rate: str = "fdr") -> dict:
    """Simulate ``reports`` studies, settle each report's claims, and count against the truth.

    Returns:
        ``{"reports", "claims": claims per report, "false_reports": share of reports with a false claim,
        "false_per_report", "fdp": mean share of a report's claims that are false (its false discovery proportion),
        "found": share of comparisons with a real difference (>= margin) that claim it,
        "covered": share of those whose 95% interval covers the truth, "pooled_ahead": pooled rows that claim
        a difference over a true interaction, "interaction_found": share of true interactions claimed}``.
    """
    from reports import build

    rng = np.random.default_rng(seed)
    n_claims = n_false = false_reports = found = real = covered = pooled_ahead = inter_true = inter_found = 0
    fdp = 0.0
    for _ in range(reports):
        result = build.analyse(simulate(rng, effect, curve), margin=margin, full=False, error_rate=error_rate)
        wrong = false_claims(result.comparisons, effect, curve, margin)
        n_false += len(wrong)
        false_reports += bool(wrong)
        made = sum(c.claims or (c.kind == "interaction" and c.claims_difference) for c in result.comparisons)
        n_claims += sum(c.claims for c in result.comparisons)
        fdp += len(wrong) / max(made, 1)
        gates = {}
        for c in result.comparisons:
            true = truth(c, effect, curve)
            if c.kind == "interaction":
                gates[id(c)] = abs(true) > 1e-9
                inter_true += abs(true) > 1e-9
                inter_found += abs(true) > 1e-9 and c.claims_difference
                continue
            if c.kind == "pooled" and c.gate is not None and gates.get(id(c.gate)):
                pooled_ahead += c.claims_difference
                continue
            if c.factor == "test loss" or abs(true) < margin or math.isnan(c.ci_low):
                continue
            real += 1
            found += c.claims_difference and math.copysign(1, c.diff) == math.copysign(1, true)
            covered += c.ci_low <= true <= c.ci_high
    return {
        "reports": reports,
        "claims": n_claims / reports,
        "false_reports": false_reports / reports,
        "false_per_report": n_false / reports,
        "fdp": fdp / reports,
        "found": found / real if real else math.nan,
        "covered": covered / real if real else math.nan,
        "real": real,
        "pooled_ahead": pooled_ahead,
        "interaction_found": inter_found / inter_true if inter_true else math.nan,
    }


if __name__ == "__main__":  # the README's figures: PYTHONPATH=tests python -m reports_tests.simulate (from the repository root)
    for seed, (name, (effect, curve)) in enumerate(SCENARIOS.items(), 1):  # the seeds of test_simulation.py
        r = run_scenario(effect, curve, seed=seed)
        print(
            f"| {name} | {r['claims']:.1f} | {r['false_reports']:.1%} | {r['false_per_report']:.3f} | "
            f"{r['found']:.0%} of {r['real']} | {r['covered']:.1%} | {r['interaction_found']:.0%} | {r['pooled_ahead']} |"
        )


def relu_one_point(activation, loss, lr) -> float:
    """A main effect below the margin: relu 1 point ahead everywhere (true, but not practically relevant)."""
    return 1.0 if activation == "relu" else 0.0


# The example's spread by learning rate, scaled to this grid: pairs within 1e-4 and 1e-3 scatter by about 0.5-1.5 points,
# those at 1e-2 (the grid's top, as lr 0.1 in the example) by about 10 (seed sd 7 points per trial).
UNEQUAL_SPREAD = {1e-4: 0.4, 1e-3: 1.0, 1e-2: 7.0}

# Scenarios of the engines' comparison (compare_engines.py) beyond SCENARIOS: name -> (effect, curve, simulate's options).
MORE_SCENARIOS = {
    "unequal spread by lr (trial sd 0.4, 1, 7 points), relu +3 points": (relu_ahead, flat, {"trial_sd_by_lr": UNEQUAL_SPREAD}),
    "1-point effects (relu +1 point)": (relu_one_point, flat, {}),
}
