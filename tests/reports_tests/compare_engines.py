"""Old engine against new on the same simulated studies: error rate, coverage and power at 3 and 5 replicates.

``PYTHONPATH=<engine root>:tests python -m reports_tests.compare_engines REPORTS SEED [fdr|fwer|-] [--only-more]`` prints one row per
scenario and replicate count for the engine on the path (``reports.build.analyse``); run it once with this checkout
and once with an older one (``git archive <commit> | tar -x -C /tmp/old``) on the same seeds: the simulated studies
are the same (``simulate.py`` draws them from the seed alone). Run it from the engine's own folder: ``python -m`` puts
the working directory first on the path, so run from this checkout it imports this checkout's ``reports`` whatever
PYTHONPATH says. Rows: claims per report, the mean false discovery
proportion (false claims / claims), the share of reports with any false claim, power (real differences of at least
the margin claimed with the right sign) and the coverage of those differences by the printed intervals.
"""

import math
import sys

import numpy as np
from reports_tests.simulate import MORE_SCENARIOS, SCENARIOS, false_claims, simulate, truth


def row(
    effect, curve, reports: int, seed: int, replicates: int, margin: float = 2.0, error_rate: str | None = None, options=None
) -> dict:
    """One scenario at ``replicates`` replicates over ``reports`` simulated reports (``error_rate``: the new engine's
    --error-rate; None for an engine without one; ``options``: more of ``simulate``'s keywords)."""
    from reports import build

    engine = {} if error_rate is None else {"error_rate": error_rate}
    rng = np.random.default_rng(seed)
    claims = fdp = any_false = found = real = covered = 0.0
    for _ in range(reports):
        study = simulate(rng, effect, curve, replicates=replicates, **(options or {}))
        result = build.analyse(study, margin=margin, full=False, **engine)
        wrong = false_claims(result.comparisons, effect, curve, margin)
        made = sum(c.claims or (c.kind == "interaction" and c.claims_difference) for c in result.comparisons)
        claims += made
        fdp += len(wrong) / max(made, 1)
        any_false += bool(wrong)
        for c in result.comparisons:
            true = truth(c, effect, curve)
            if c.kind in ("interaction", "pooled") or c.factor == "test loss" or abs(true) < margin or math.isnan(c.ci_low):
                continue
            real += 1
            found += c.claims_difference and math.copysign(1, c.diff) == math.copysign(1, true)
            covered += c.ci_low <= true <= c.ci_high
    return {"claims": claims / reports, "fdp": fdp / reports, "any_false": any_false / reports,
            "power": found / real if real else math.nan, "covered": covered / real if real else math.nan}  # fmt: skip


def main(reports: int, seed: int, error_rate: str | None = None, only_more: bool = False) -> None:
    scenarios = {name: (effect, curve, {}) for name, (effect, curve) in SCENARIOS.items()} | MORE_SCENARIOS
    for i, (name, (effect, curve, options)) in enumerate(scenarios.items()):
        if only_more and name not in MORE_SCENARIOS:
            continue
        for replicates in (3, 5):
            r = row(effect, curve, reports, seed + i, replicates, error_rate=error_rate, options=options)
            print(
                f"| {name} | {replicates} | {reports} | {r['claims']:.1f} | {r['fdp']:.1%} | {r['any_false']:.0%} | "
                f"{r['power']:.0%} | {r['covered']:.1%} |",
                flush=True,
            )


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rate = args[2] if len(args) > 2 and args[2] != "-" else None
    main(int(args[0]) if args else 40, int(args[1]) if len(args) > 1 else 100, rate, only_more="--only-more" in flags)
