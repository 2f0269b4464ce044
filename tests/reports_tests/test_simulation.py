"""Simulated studies with a known truth, 200 reports per scenario: the report's error rate, coverage and pooling rule.

Each report is the real analysis (``reports.build.analyse``) of a simulated paired grid (3 activations x 2 losses x
3 learning rates x 3 replicates, 6 epochs; ``simulate.py``), its claims settled as one family (Benjamini–Hochberg at
5%, or Holm with --error-rate fwer). A claim is false when the truth contradicts it: a difference where there is none
or of the other sign, "within the margin" where the truth is not, an interaction where the difference is the same at
every learning rate. The README's table holds
these figures (``PYTHONPATH=tests python -m reports_tests.simulate`` prints them).
"""

from reports_tests.simulate import drop_after_peak, flat, no_effect, relu_ahead, run_scenario, tanh_flips

REPORTS = 200
# The report's stated rate (--error-rate fdr, the default) is at most 5% of its claims false on average (the false
# discovery rate); with 200 reports the estimate's own noise is about 1.5 points, so 8% bounds it with room. With
# --error-rate fwer it is 5% of reports with any false claim. Intervals are at the report's end level (1 − R q / m,
# about 97-99% here): the real differences' intervals cover at least 92%.
MOST_FALSE = 0.08


def test_no_effect_anywhere_makes_a_false_claim_in_at_most_5_percent_of_reports():
    r = run_scenario(no_effect, flat, REPORTS, seed=1)
    assert r["fdp"] <= MOST_FALSE
    # What it does claim is true: options within the margin of each other, flat curves a plateau.
    assert r["claims"] > 1


def test_fwer_makes_a_false_claim_in_at_most_5_percent_of_reports():
    r = run_scenario(no_effect, flat, REPORTS // 2, seed=1, error_rate="fwer")
    assert r["false_reports"] <= MOST_FALSE + 0.02  # 100 reports: noise about 2 points


def test_one_main_effect_is_found_and_covered_without_false_claims():
    r = run_scenario(relu_ahead, flat, REPORTS, seed=2)
    assert r["fdp"] <= MOST_FALSE
    assert 0.92 <= r["covered"] <= 1.0
    assert r["found"] >= 0.4  # per-lr rows have 6 pairs each; the pooled rows find it nearly always


def test_a_sign_flipping_interaction_never_gives_a_pooled_ahead():
    r = run_scenario(tanh_flips, flat, REPORTS, seed=3)
    assert r["pooled_ahead"] == 0
    assert r["interaction_found"] >= 0.9
    assert r["fdp"] <= MOST_FALSE
    assert 0.92 <= r["covered"] <= 1.0


def test_a_real_drop_after_the_peak_is_found_and_covered():
    r = run_scenario(no_effect, drop_after_peak, REPORTS, seed=4)
    assert r["found"] >= 0.95
    assert 0.92 <= r["covered"] <= 1.0
    assert r["fdp"] <= MOST_FALSE


def test_the_engines_comparison_runs_on_a_seeded_slice():
    # A slice of docs/statistics.md's old-against-new table (compare_engines, 40 reports per row there): 4 reports at 5 replicates.
    from reports_tests.compare_engines import row

    r = row(relu_ahead, flat, reports=4, seed=101, replicates=5)
    assert r["fdp"] <= 0.1 and r["power"] >= 0.8 and r["covered"] >= 0.85
