"""Simulated paired studies whose test set is drawn from a larger pool: the population difference is known.

A pool of ``POOL`` images stands for CIFAR-10's population. On image j, option o at learning rate l is right with
probability p_ol(j) (every trial of it, whatever its seed), and a trial of seed r adds a shift of its own:

    P(trial o, l, r right on j) = p_ol(j) + c_r + t_olr,   c_r, t_olr uniform around 0 (the seed's and the trial's luck)

so the population difference of tanh − relu at l, over new seeds and new images, is exactly
Δ_l = 100 × mean over the pool of (p_tanh,l − p_relu,l). Where the two options' p differ from image to image
(``contested``), the test images drawn move every pair the same way: the test-set floor. Two trials of one seed share
their uniform draw on an image with probability ``agreement`` (as two nets from the same initial weights make many
of the same mistakes), which keeps a pair's own image-by-image noise small. Each study draws ``n_images`` test images
from the pool (without replacement), runs every grid point (2 activations x 1 loss x 2 learning rates x replicates,
one epoch), and is analysed by the real report (``reports.build.analyse``); its activation rows (per learning rate and
pooled) are checked against Δ.

``PYTHONPATH=tests .venv/bin/python -m reports_tests.simulate_images [studies]`` prints the README's table.
"""

import math
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
from reports_tests.conftest import paired_settings
from scipy import stats

from reports.frames import EPOCH_COLUMNS, TRIAL_COLUMNS, Frames

POOL = 100_000  # images of the population
A, B = "tanh", "relu"  # the compared activations: Δ is A − B
LRS = (1e-3, 1e-2)
BASE_SHIFT = {1e-3: -0.03, 1e-2: 0.03}  # the learning rates differ in accuracy (not in Δ's sign)


@dataclass(frozen=True)
class Scenario:
    name: str
    shift: float  # p_A − p_B on every image (a share, not points)
    contested: float  # share of images on which the options differ besides: p_A − p_B = shift ± spread there
    spread: float
    trial_half_width: float  # t_olr uniform on [−w, w]: the seed noise that pairing leaves
    agreement: float  # probability that two trials of one seed share their draw on an image
    n_images: int = 2000
    replicates: int = 5


SCENARIOS = (
    Scenario("test-set floor dominant", shift=0.01, contested=0.3, spread=0.6, trial_half_width=0.003, agreement=1.0),
    Scenario("seed noise dominant", shift=0.02, contested=0.0, spread=0.0, trial_half_width=0.06, agreement=0.5),
    Scenario("both", shift=0.01, contested=0.3, spread=0.6, trial_half_width=0.02, agreement=0.9),
)


@dataclass
class Population:
    labels: np.ndarray  # (POOL,) true classes
    p: dict[tuple[str, float], np.ndarray]  # (activation, lr) -> (POOL,) probability of being right

    def truth(self, lr: float) -> float:
        """Δ at ``lr``, A − B in points, over new seeds (their shifts average to 0) and new images (the pool)."""
        return 100.0 * float((self.p[A, lr] - self.p[B, lr]).mean())


def population(rng: np.random.Generator, s: Scenario) -> Population:
    base = rng.uniform(0.3, 0.8, POOL)  # how easy each image is: about 55% right on average, as the notebook's CNN
    contested = rng.random(POOL) < s.contested
    h = s.shift + np.where(contested, s.spread * rng.choice([-1.0, 1.0], POOL), 0.0)
    p = {}
    for lr in LRS:
        p[A, lr] = np.clip(base + BASE_SHIFT[lr] + h / 2, 0.15, 0.85)  # room for the seed's and trial's shifts
        p[B, lr] = np.clip(base + BASE_SHIFT[lr] - h / 2, 0.15, 0.85)
    return Population(rng.integers(0, 10, POOL).astype(np.uint8), p)


def simulate(rng: np.random.Generator, pop: Population, s: Scenario) -> Frames:
    """One study: a test set drawn from the pool, every grid point trained (simulated) on it, as report frames."""
    test = rng.choice(POOL, s.n_images, replace=False)
    labels = pop.labels[test]
    rows, epochs, predictions = [], [], {}
    number = 0
    for r in range(s.replicates):
        seed = rng.uniform(-0.05, 0.05)  # shared by every trial of the replicate: pairing cancels it
        shared = rng.random(s.n_images)  # the seed's draw on each image
        for lr in LRS:
            for activation in (A, B):
                own = np.where(rng.random(s.n_images) < s.agreement, shared, rng.random(s.n_images))
                trial = rng.uniform(-s.trial_half_width, s.trial_half_width)
                right = own < pop.p[activation, lr][test] + seed + trial
                wrong = (labels + 1 + rng.integers(0, 9, s.n_images)) % 10
                predictions[number] = np.where(right, labels, wrong).astype(np.uint8)[None, :]  # (1 epoch, images)
                acc = 100.0 * right.sum() / s.n_images
                rows.append({
                    "number": number, "state": "complete", "activation": activation, "loss": "cross_entropy", "lr": lr,
                    "replicate": r, "seed": r, "value": acc, "final_test_acc": acc, "final_train_acc": acc + 5,
                    "final_test_loss": 1.0, "gap": 5.0, "peak_test_acc": acc, "epochs_run": 1, "diverged": False,
                    "baseline": False, "seconds": 1.0, "device": "cpu", "precision": "float32",
                })  # fmt: skip
                epochs.append({
                    "number": number, "state": "complete", "activation": activation, "loss": "cross_entropy", "lr": lr,
                    "replicate": r, "diverged": False, "epoch": 1, "train_loss": 1.0, "train_acc": acc + 5,
                    "test_loss": 1.0, "test_acc": acc,
                })  # fmt: skip
                number += 1
    space = {"activations": [A, B], "losses": ["cross_entropy"], "lr_min": min(LRS), "lr_max": max(LRS), "grid_lrs": len(LRS)}
    settings = paired_settings(epochs=1, repeats=s.replicates, test_size=s.n_images, search_space=space)
    trials = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    return Frames("sim", settings, trials, pd.DataFrame(epochs, columns=EPOCH_COLUMNS), {}, predictions, labels)


def seed_only_interval(c, level: float = 0.95) -> tuple[float, float]:
    """The interval a study without stored predictions would show: the t interval over the pairs alone."""
    half = stats.t.ppf((1 + level) / 2, c.df) * c.se_seeds
    return c.diff - half, c.diff + half


def both_interval(c, level: float = 0.95) -> tuple[float, float]:
    """The report's estimate at a fixed 95%: its (moderated) seeds' and its images' parts on its df. The report prints it
    at its own end level (``reports.inference``); what is checked here is the estimate's variance, at the nominal level."""
    half = stats.t.ppf((1 + level) / 2, c.df) * math.hypot(c.se_seeds, c.se_images if math.isfinite(c.se_images) else 0.0)
    return c.diff - half, c.diff + half


def run_scenario(s: Scenario, studies: int = 200, seed: int = 0) -> dict:
    """Simulate ``studies`` studies of scenario ``s`` on one population; count how often each interval covers Δ.

    Returns:
        ``{"studies", "intervals": activation rows checked (per lr and pooled), "covered": share covered by the report's
        intervals, "seed_only": share covered by the seed-only interval of the same rows, "pooled_covered",
        "pooled_seed_only", "se_seeds", "se_images": their mean, "image_share": mean share of the variance from the
        images, "floor": share of rows whose advice is more test images, "true": Δ per lr}``.
    """
    from reports import build
    from reports import stats as stats_

    rng = np.random.default_rng(seed)
    pop = population(rng, s)
    truth = {lr: pop.truth(lr) for lr in LRS}
    truth["pooled"] = float(np.mean([truth[lr] for lr in LRS]))
    counts = {"rows": 0, "covered": 0, "seed_only": 0, "pooled": 0, "pooled_covered": 0, "pooled_seed_only": 0, "floor": 0}
    se_seeds, se_images, share = [], [], []
    for _ in range(studies):
        result = build.analyse(simulate(rng, pop, s), margin=2.0, full=False)
        for c in result.comparisons:
            if c.question != "activation" or c.lr == "interaction":
                continue
            true = truth[c.lr] * (1 if c.a == A else -1)
            low, high = seed_only_interval(c)
            b_low, b_high = both_interval(c)
            covered, seed_covered = b_low <= true <= b_high, low <= true <= high
            counts["rows"] += 1
            counts["covered"] += covered
            counts["seed_only"] += seed_covered
            if c.lr == "pooled":
                counts["pooled"] += 1
                counts["pooled_covered"] += covered
                counts["pooled_seed_only"] += seed_covered
            counts["floor"] += not stats_.replicates_can_decide(c.se_images, c.margin, c.plan_alpha)
            se_seeds.append(c.se_seeds)
            se_images.append(c.se_images)
            share.append(c.image_share)
    rows, pooled = counts["rows"], counts["pooled"]
    return {
        "studies": studies,
        "intervals": rows,
        "covered": counts["covered"] / rows,
        "seed_only": counts["seed_only"] / rows,
        "pooled_covered": counts["pooled_covered"] / pooled if pooled else math.nan,
        "pooled_seed_only": counts["pooled_seed_only"] / pooled if pooled else math.nan,
        "se_seeds": float(np.mean(se_seeds)),
        "se_images": float(np.mean(se_images)),
        "image_share": float(np.mean(share)),
        "floor": counts["floor"] / rows,
        "true": truth,
    }


if __name__ == "__main__":  # the README's figures (the seeds of test_simulation_images.py)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    print("| scenario | studies | intervals | seeds and images: coverage | seeds only: coverage | pooled rows: both / seeds only "
          "| mean se: seeds / images (points) | variance from images | advice: more test images |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, s in enumerate(SCENARIOS, 1):
        r = run_scenario(s, n, seed=seed)
        print(
            f"| {s.name} | {r['studies']} | {r['intervals']} | {r['covered']:.1%} | {r['seed_only']:.1%} | "
            f"{r['pooled_covered']:.1%} / {r['pooled_seed_only']:.1%} | {r['se_seeds']:.2f} / {r['se_images']:.2f} | "
            f"{r['image_share']:.0%} | {r['floor']:.0%} |",
            flush=True,
        )
