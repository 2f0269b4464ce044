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
) -> Frames:
    grid = list(itertools.product(activations, losses, lrs, range(replicates)))
    n = len(grid)
    act, loss, lr, rep = (np.array(column, dtype=object) for column in zip(*grid, strict=True))
    lr, rep = lr.astype(float), rep.astype(int)
    seed = rng.normal(0, seed_sd, replicates)  # shared by every trial of a replicate: the noise pairing cancels
    mean = np.array([50 + effect(a, lo, r) + seed[p] for a, lo, r, p in grid])
    trial = rng.normal(0, trial_sd, n)
    shape = np.array([[curve(e, r) for e in range(1, epochs + 1)] for r in lr])  # (n, epochs)
    acc = np.clip(mean[:, None] + trial[:, None] + shape + rng.normal(0, epoch_sd, (n, epochs)), 0, 100)
    test_loss = 1.0 + rng.normal(0, 0.02, (n, epochs))  # no overfitting anywhere: the test loss is flat
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
