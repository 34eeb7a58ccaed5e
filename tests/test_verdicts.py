"""The verdict engine on hand-made per-seed values: every outcome of every check kind, the margins,
Holm's correction, the seeds estimate, and the verdict the outcomes add up to."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments import metrics, verdicts
from experiments.verdicts import FAILS, HOLDS, INCONCLUSIVE, Check

SPREAD = np.array([-0.002, -0.001, 0.0, 0.001, 0.002])  # five seeds, sd 0.0016


def seeds(mean: float, spread: float = 1.0) -> np.ndarray:
    return mean + spread * SPREAD


def outcome(check: Check, **means) -> verdicts.Outcome:
    values = {(variant, check.metric): value if isinstance(value, np.ndarray) else seeds(value)
              for variant, value in means.items()}
    return verdicts.run_checks([check], values)[0]


@pytest.mark.parametrize("lower,a,b,status", [
    (False, 0.90, 0.80, HOLDS),
    (False, 0.80, 0.90, FAILS),  # the other side is significantly ahead
    (False, 0.900, 0.8995, INCONCLUSIVE),  # a lead smaller than the seeds' spread
    (True, 0.05, 0.10, HOLDS),  # lower is better: a's 0.05 error beats b's 0.10
    (True, 0.10, 0.05, FAILS),
])
def test_beats(lower, a, b, status):
    assert outcome(Check("a", "m", worse="b", lower_is_better=lower), a=a, b=b).status == status


def test_beats_with_a_margin_fails_when_the_advantage_is_shown_to_be_too_small():
    check = Check("a", "m", worse="b", margin=0.05)
    assert outcome(check, a=0.96, b=0.90).status == HOLDS  # ahead by 0.06
    assert outcome(check, a=0.91, b=0.90).status == FAILS  # ahead, but shown to be ahead by less than 0.05
    tight = Check("a", "m", worse="b", margin=0.05)
    result = verdicts.run_checks([tight], {("a", "m"): seeds(0.901, 0.1), ("b", "m"): seeds(0.900, 0.1)})[0]
    assert result.status == FAILS  # ahead by 0.001 ± 0.0002: shown to be far below the margin


@pytest.mark.parametrize("a,b,status", [
    (0.899, 0.900, HOLDS),  # 0.001 behind, margin 0.02: not worse
    (0.850, 0.900, FAILS),  # 0.05 behind: worse by more than the margin
    (0.880, 0.900, INCONCLUSIVE),  # exactly at the margin
    (0.950, 0.900, HOLDS),  # ahead is not worse either
])
def test_not_worse_uses_the_stated_margin(a, b, status):
    assert outcome(Check("a", "m", worse="b", kind="not_worse", margin=0.02), a=a, b=b).status == status


def test_not_worse_with_a_large_deficit_and_wide_spread_is_inconclusive_not_a_pass():
    wide = {("a", "m"): np.array([0.2, 0.9, 0.5]), ("b", "m"): np.array([0.9, 0.91, 0.92])}
    assert verdicts.run_checks([Check("a", "m", worse="b", kind="not_worse", margin=0.02)], wide)[0].status == INCONCLUSIVE


@pytest.mark.parametrize("a,value,status", [
    (0.112, 0.11, HOLDS),  # inside ±0.05 of the lecture's 0.11
    (0.30, 0.11, FAILS),  # far outside
    (0.16, 0.11, INCONCLUSIVE),  # on the band's edge
])
def test_equivalence_with_a_fixed_number(a, value, status):
    check = Check("a", "m", value=value, kind="equivalent", margin=0.05)
    assert outcome(check, a=seeds(a, 5.0)).status == status


def test_one_sample_beats_a_fixed_number():
    check = Check("sigmoid", "log10_ratio", value=-2.0, lower_is_better=True)
    assert outcome(check, sigmoid=-5.6).status == HOLDS
    assert outcome(check, sigmoid=-1.0).status == FAILS


def test_welch_matches_scipy():
    a, b = np.array([0.91, 0.93, 0.95, 0.92]), np.array([0.88, 0.90, 0.86, 0.89, 0.91])
    diff = verdicts.welch(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert diff.p_above(0.0) == pytest.approx(reference.pvalue)
    assert diff.estimate == pytest.approx(a.mean() - b.mean())
    one = verdicts.welch(a, 0.9)
    assert one.p_above(0.0) == pytest.approx(stats.ttest_1samp(a, 0.9, alternative="greater").pvalue)


def test_seeds_that_all_agree_give_a_floored_spread():
    check = Check("a", "m", worse="b")
    same = {("a", "m"): np.full(5, 0.1135), ("b", "m"): np.full(5, 0.1135)}
    assert verdicts.run_checks([check], same)[0].status == INCONCLUSIVE
    apart = {("a", "m"): np.full(5, 0.2), ("b", "m"): np.full(5, 0.1135)}
    assert verdicts.run_checks([check], apart)[0].status == HOLDS


def test_holm_adjusted_p_values():
    assert verdicts.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert verdicts.holm([0.5]) == [0.5]


def test_multiplicity_correction_can_undo_a_nominal_pass():
    # each check alone: p about 0.03; three of them: Holm needs p < 0.0167 for the first
    a = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    values = {(v, "m"): a + shift for v, shift in (("x", 2.2), ("y", 0.0))}
    single = verdicts.run_checks([Check("x", "m", worse="y")], values)[0]
    assert single.status == HOLDS and 0.01 < single.p_holds < 0.05
    tripled = verdicts.run_checks([Check("x", "m", worse="y", note=str(i)) for i in range(3)], values)
    assert all(o.status == INCONCLUSIVE and o.p_holds_adjusted == pytest.approx(min(1, 3 * single.p_holds))
               for o in tripled)


def test_seeds_needed_is_enough_at_the_observed_effect():
    check = Check("a", "m", worse="b")
    rng = np.random.default_rng(0)
    a, b = 0.905 + 0.01 * rng.standard_normal(3), 0.900 + 0.01 * rng.standard_normal(3)
    first = verdicts.run_checks([check], {("a", "m"): a, ("b", "m"): b})[0]
    assert first.status == INCONCLUSIVE and first.seeds > 3
    n = first.seeds
    # the same means and spreads with that many seeds settle it
    grow = lambda x: x.mean() + x.std(ddof=1) * stats.norm.ppf((np.arange(n) + 0.5) / n) / 0.98
    settled = verdicts.run_checks([check], {("a", "m"): grow(a), ("b", "m"): grow(b)})[0]
    assert settled.status == HOLDS
    assert "seeds per variant would settle it" in first.describe()


def test_too_few_values_is_inconclusive_with_the_reason():
    result = verdicts.run_checks([Check("a", "m", worse="b")], {("a", "m"): np.array([0.9]), ("b", "m"): seeds(0.1)})[0]
    assert result.status == INCONCLUSIVE and "fewer than 2 finite values of m for a" in result.describe()


def test_a_check_needs_one_of_worse_and_value_and_a_sane_margin():
    with pytest.raises(ValueError):
        Check("a", "m")
    with pytest.raises(ValueError):
        Check("a", "m", worse="b", value=0.5)
    with pytest.raises(ValueError):
        Check("a", "m", worse="b", kind="not_worse", margin=-0.1)
    with pytest.raises(ValueError):
        Check("a", "m", worse="b", kind="equivalent")  # no band
    with pytest.raises(ValueError):
        Check("a", "m", worse="b", kind="beets")


CHECKS = [Check("a", "m", worse="b"), Check("c", "m", worse="d"), Check("e", "m", worse="f", key=False)]


def settled_as(checks: list[Check], statuses: list[str]) -> dict:
    """Per-seed values that make each check come out as its status."""
    values = {}
    for check, status in zip(checks, statuses):
        better, worse = {HOLDS: (0.9, 0.1), FAILS: (0.1, 0.9), INCONCLUSIVE: (0.5, 0.5)}[status]
        values[(check.better, "m")], values[(check.worse, "m")] = seeds(better), seeds(worse, 1.1)
    return values


@pytest.mark.parametrize("statuses,expected", [
    ([HOLDS, HOLDS, HOLDS], "reproduced"),
    ([FAILS, FAILS, HOLDS], "not reproduced"),  # every key check fails
    ([HOLDS, FAILS, HOLDS], "partly"),
    ([HOLDS, HOLDS, FAILS], "partly"),  # a failed side check keeps it from 'reproduced'
    ([HOLDS, INCONCLUSIVE, HOLDS], "inconclusive"),  # could still be reproduced or partly
    ([HOLDS, FAILS, INCONCLUSIVE], "partly"),  # settled whichever way the open check goes
    ([FAILS, FAILS, INCONCLUSIVE], "not reproduced"),
    ([FAILS, INCONCLUSIVE, HOLDS], "inconclusive"),  # partly or not reproduced
    ([HOLDS, HOLDS, INCONCLUSIVE], "reproduced"),  # an open side check decides nothing
])
def test_the_verdict_is_what_every_settling_of_the_open_checks_agrees_on(statuses, expected):
    result = verdicts.decide(CHECKS, settled_as(CHECKS, statuses))
    assert [o.status for o in result.outcomes] == statuses
    assert result.verdict == expected
    if expected == "inconclusive":
        assert len(result.possible) > 1 and "could make it" in result.headline()


PREMISED = [Check("a", "m", worse="b"), Check("c", "m", worse="d"), Check("e", "m", worse="f", key=False, premise=True)]


@pytest.mark.parametrize("statuses,expected,possible,says", [
    ([HOLDS, HOLDS, HOLDS], "reproduced", ["reproduced"], ""),
    ([FAILS, FAILS, FAILS], "inconclusive", [], "a premise of the claim fails: the key checks did not test it"),
    ([HOLDS, HOLDS, FAILS], "inconclusive", [], "a premise of the claim fails"),  # not 'partly': nothing was tested
    ([FAILS, FAILS, INCONCLUSIVE], "inconclusive", ["not reproduced"], "a premise of the claim is open; if it holds, the verdict is not reproduced"),
])
def test_a_failed_or_open_premise_leaves_the_verdict_inconclusive(statuses, expected, possible, says):
    result = verdicts.decide(PREMISED, settled_as(PREMISED, statuses))
    assert [o.status for o in result.outcomes] == statuses
    assert (result.verdict, result.possible) == (expected, possible)
    assert says in result.headline()
    with pytest.raises(ValueError, match="a premise is a side check"):
        Check("a", "m", worse="b", premise=True)


def test_a_premise_is_tested_alone_not_with_the_other_side_checks():
    """Holm over the side checks would let an unrelated open side check hold a premise back."""
    checks = [Check("a", "m", worse="b"), Check("c", "m", value=0.95, key=False, premise=True),
              Check("d", "m", value=0.5, kind="equivalent", margin=0.01, key=False)]
    values = {("a", "m"): seeds(0.9), ("b", "m"): seeds(0.1), ("c", "m"): np.ones(5),  # every seed at 1.0: p = 1/32
              ("d", "m"): seeds(0.509, 3.0)}  # open
    result = verdicts.decide(checks, values)
    assert [o.status for o in result.outcomes] == [HOLDS, HOLDS, INCONCLUSIVE]
    assert result.outcomes[1].p_holds_adjusted == result.outcomes[1].p_holds == pytest.approx(1 / 32)
    assert result.verdict == "reproduced"


def test_outcomes_are_reported_with_effect_interval_and_p():
    result = verdicts.decide([Check("relu", "test_acc", worse="sigmoid")], {
        ("relu", "test_acc"): seeds(0.96), ("sigmoid", "test_acc"): seeds(0.11)})
    record = result.outcomes[0].as_dict()
    assert result.verdict == "reproduced" and record["status"] == HOLDS
    assert record["difference"] == pytest.approx(0.85) and record["ci90"][0] < 0.85 < record["ci90"][1]
    assert record["p"] < 1e-6 and record["n"] == [5, 5]
    assert "relu vs sigmoid, test_acc (higher is better), n = 5/5: advantage +0.85" in record["text"]
    assert "p < 1e-04 (Holm < 1e-04)" in record["text"]


def test_an_open_check_shows_the_p_of_either_decision_so_a_lean_towards_fails_is_visible():
    leaning = outcome(Check("a", "m", worse="b"), a=0.8996, b=0.9)  # behind, not significantly
    assert leaning.status == INCONCLUSIVE and leaning.p_fails < 0.5 < leaning.p_holds
    assert leaning.p_holds + leaning.p_fails == pytest.approx(1)
    assert (f"p = {leaning.p_holds:.2g} (Holm = {leaning.p_holds_adjusted:.2g}) that it holds, "
            f"p = {leaning.p_fails:.2g} (Holm = {leaning.p_fails_adjusted:.2g}) that it fails → beats: **inconclusive** "
            f"(very roughly {leaning.seeds} seeds per variant would settle it, as fails if the observed difference "
            f"were the true one)") in leaning.describe()
    decided = outcome(Check("a", "m", worse="b"), a=0.95, b=0.9)
    assert decided.status == HOLDS and "that it" not in decided.describe()


@pytest.mark.parametrize("check,a,b,towards", [
    (Check("a", "m", worse="b", margin=0.01), 0.907, 0.9, "fails"),  # ahead, but short of the margin
    (Check("a", "m", worse="b", margin=0.01), 0.913, 0.9, "holds"),
    (Check("a", "m", worse="b", kind="not_worse", margin=0.01), 0.893, 0.9, "holds"),  # behind, within the margin
    (Check("a", "m", worse="b", kind="not_worse", margin=0.01), 0.887, 0.9, "fails"),
    (Check("a", "m", worse="b", kind="equivalent", margin=0.01), 0.907, 0.9, "holds"),
    (Check("a", "m", worse="b", kind="equivalent", margin=0.01), 0.913, 0.9, "fails"),
    (Check("a", "m", worse="b", kind="equivalent", margin=0.01), 0.887, 0.9, "fails"),
])
def test_an_open_check_says_which_way_more_seeds_would_settle_it_for_every_kind(check, a, b, towards):
    result = outcome(check, a=seeds(a, 3), b=seeds(b, 3))
    assert result.status == INCONCLUSIVE
    line = result.describe()
    assert f"(Holm = {result.p_fails_adjusted:.2g}) that it fails" in line
    assert f"would settle it, as {towards} if the observed difference were the true one" in line


def test_an_open_share_check_says_which_way_too():
    trio = [Check(v, "failed", value=0.5) for v in ("a", "b", "c")]
    held = verdicts.run_checks(trio, {(v, "failed"): np.ones(5) for v in "abc"}, binary=frozenset({"failed"}))[0]
    assert held.status == INCONCLUSIVE and "would settle it, as holds if" in held.describe()


def test_a_check_against_a_number_rounds_the_mean_as_the_table_does():
    """The table shows summary.csv's 6-digit mean to 3 decimals; the check's line must not round the
    same mean the other way (a float32 0.11349999 is 0.1135 in the CSV: 0.114, not 0.113)."""
    line = outcome(Check("a", "m", value=0.12, lower_is_better=True), a=np.full(5, 0.11349999) + SPREAD / 10).describe()
    assert line.startswith("a 0.114 vs 0.12")


def test_a_beats_margin_is_how_far_ahead_the_claim_says():
    far = Check("a", "m", worse="b", margin=0.1)
    assert outcome(far, a=0.90, b=0.11).status == HOLDS
    assert outcome(far, a=0.15, b=0.11).status == FAILS  # ahead, but not far
    assert outcome(far, a=seeds(0.22, 30.0), b=0.11).status == INCONCLUSIVE  # about 0.1 ahead, noisy


def test_identical_seeds_are_not_taken_for_certainty():
    collapsed = {("a", "m"): np.full(5, 0.1135), ("b", "m"): np.full(5, 0.1135 + 5e-5)}
    result = verdicts.run_checks([Check("b", "m", worse="a")], collapsed)[0]
    assert result.status == INCONCLUSIVE and result.diff.se > 0  # a spread below 1e-4 counts as 1e-4


def test_equal_means_read_as_no_advantage_whichever_way_is_better():
    # two nets at a training error of exactly 0 in every seed: the sign flipped for a lower-is-better
    # metric must not print as "advantage -0"
    zero = {("a", "m"): np.zeros(5), ("b", "m"): np.zeros(5)}
    line = verdicts.run_checks([Check("a", "m", worse="b", lower_is_better=True, kind="not_worse", margin=0.005)],
                               zero)[0].describe()
    assert "advantage +0 [" in line
    zero |= {("c", "m"): np.zeros(5), ("d", "m"): np.zeros(5)}
    line = verdicts.run_checks([Check("a", "m", worse="b", pairs=(("c", "d"),), lower_is_better=True)], zero)[0].describe()
    assert "advantage +0 [" in line and "the pairs' own advantages: +0, +0;" in line


def test_diverged_seeds_are_left_out_and_said_so():
    values = {("a", "m"): np.array([0.9, 0.91, np.nan, 0.92, 0.9]), ("b", "m"): seeds(0.5)}
    result = verdicts.run_checks([Check("a", "m", worse="b")], values)[0]
    assert result.status == HOLDS and result.diff.n_better == 4
    assert "n = 4/5" in result.describe() and "1 non-finite value left out: diverged runs" in result.describe()


def test_a_claim_without_key_checks_is_refused():
    with pytest.raises(ValueError, match="key check"):
        verdicts.decide([Check("a", "m", worse="b", key=False)], {("a", "m"): seeds(1), ("b", "m"): seeds(0)})


def test_a_difference_of_differences_is_welchs_contrast_over_four_samples():
    rng = np.random.default_rng(0)
    a, b, c, d = (rng.normal(m, s, n) for m, s, n in ((0.90, 0.01, 5), (0.80, 0.02, 5), (0.97, 0.005, 4), (0.96, 0.01, 5)))
    diff = verdicts.welch(a, b, further=(c, d), weights=[1, -1, -1, 1])
    variances = [x.var(ddof=1) / len(x) for x in (a, b, c, d)]
    assert diff.estimate == pytest.approx((a.mean() - b.mean()) - (c.mean() - d.mean()))
    assert diff.se == pytest.approx(np.sqrt(sum(variances)))
    assert diff.df == pytest.approx(sum(variances) ** 2 / sum(v ** 2 / (len(x) - 1) for v, x in zip(variances, (a, b, c, d))))
    assert diff.p_above(0.0) == pytest.approx(stats.t.sf(diff.estimate / diff.se, diff.df))
    # lower is better flips the sign; two samples give the plain Welch test as before
    assert verdicts.welch(a, b, lower_is_better=True, further=(c, d), weights=[1, -1, -1, 1]).estimate == pytest.approx(-diff.estimate)
    assert verdicts.welch(a, b).p_above(0.0) == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    with pytest.raises(ValueError, match="needs as many weights"):  # never a sample silently left out
        verdicts.welch(a, b, further=(c, d))


@pytest.mark.parametrize("gap_small,gap_large,status", [
    (0.10, 0.01, HOLDS),  # the deep net's lead is larger with less data
    (0.01, 0.10, FAILS),  # it is larger with more data
    (0.050, 0.0498, INCONCLUSIVE),
])
def test_versus_checks_the_difference_of_two_gaps(gap_small, gap_large, status):
    check = Check("deep_1k", "m", worse="shallow_1k", versus=("deep_55k", "shallow_55k"))
    found = outcome(check, deep_1k=0.80 + gap_small, shallow_1k=0.80, deep_55k=0.95 + gap_large, shallow_55k=0.95)
    assert found.status == status
    assert found.describe().startswith("(deep_1k − shallow_1k) vs (deep_55k − shallow_55k), m (higher is better), n = 5/5/5/5:")
    assert found.as_dict()["n"] == [5, 5, 5, 5]


def test_versus_needs_a_pair_of_other_variants_and_kind_beats():
    for bad in (dict(worse="b", versus=("c",)), dict(worse="b", versus=("a", "c")), dict(value=0.1, versus=("c", "d")),
                dict(worse="b", versus=("c", "d"), kind="not_worse", margin=0.1)):
        with pytest.raises(ValueError, match="versus"):
            Check("a", "m", **bad)


def test_pairs_test_the_mean_advantage_over_every_pair_with_welchs_contrast():
    rng = np.random.default_rng(1)
    samples = [rng.normal(m, s, n) for m, s, n in ((0.02, 0.002, 5), (0.025, 0.003, 5), (0.03, 0.001, 4),
                                                   (0.031, 0.004, 5), (0.04, 0.002, 5), (0.038, 0.002, 5))]
    check = Check("deep_2", "m", worse="fat_2", lower_is_better=True, pairs=(("deep_3", "fat_3"), ("deep_4", "fat_4")))
    assert check.variants == ["deep_2", "fat_2", "deep_3", "fat_3", "deep_4", "fat_4"]
    diff = verdicts.welch(samples[0], samples[1], True, tuple(samples[2:]), check.weights)
    pair_gaps = [samples[i + 1].mean() - samples[i].mean() for i in (0, 2, 4)]  # fat minus deep: lower is better
    variances = [x.var(ddof=1) / len(x) / 9 for x in samples]  # each weight is ±1/3
    assert diff.estimate == pytest.approx(np.mean(pair_gaps))
    assert diff.se == pytest.approx(np.sqrt(sum(variances)))
    assert diff.df == pytest.approx(sum(variances) ** 2 / sum(v ** 2 / (len(x) - 1) for v, x in zip(variances, samples)))
    assert diff.n_further == (4, 5, 5, 5)


@pytest.mark.parametrize("gaps,status", [
    ((0.0045, 0.0045, 0.0045), HOLDS),  # each pair alone too close to call (see below), all three together not
    ((-0.0045, -0.0045, -0.0045), FAILS),
    ((0.0045, -0.0045, 0.0015), INCONCLUSIVE),  # the pairs disagree: a mean advantage of 0.0005
])
def test_pairs_decide_one_statement_drawn_at_several_sizes(gaps, status):
    wide = 3.0  # each seed's spread: sd 0.0047
    pairs = (("a3", "b3"), ("a4", "b4"))
    check = Check("a2", "m", worse="b2", pairs=pairs, key=True)
    values = {(name, "m"): seeds(0.9 + (gap if name.startswith("a") else 0.0), wide)
              for (better, worse), gap in zip([("a2", "b2"), *pairs], gaps) for name in (better, worse)}
    found = verdicts.run_checks([check], values)[0]
    assert found.status == status
    assert found.describe().startswith("mean of 3 pairs: a2 − b2, a3 − b3, a4 − b4, m (higher is better), n = 5/5/5/5/5/5:")
    assert found.robust is None  # no exact randomization test for a contrast, and its line says so
    assert found.diff.components == pytest.approx(gaps)  # each pair's own advantage, shown beside the mean
    assert "rests on the normal model: no exact test backs it" in found.describe()
    if status == HOLDS:  # the same advantage tested pair by pair leaves each one open
        single = verdicts.run_checks([Check(b, "m", worse=w) for b, w in [("a2", "b2"), *pairs]], values)
        assert {o.status for o in single} == {INCONCLUSIVE}
    if status == INCONCLUSIVE:  # the seeds estimate weighs the contrast's variance: 2/3 of one pair's
        z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
        assert found.seeds == math.ceil(2 / 3 * (z * wide * SPREAD.std(ddof=1) / 0.0005) ** 2)


def test_pairs_need_another_variant_in_each_pair_and_no_versus():
    for bad in (dict(value=0.1, pairs=(("c", "d"),)), dict(worse="b", pairs=(("c",),)), dict(worse="b", pairs=(("a", "c"),)),
                dict(worse="b", pairs=()), dict(worse="b", pairs=(("c", "d"),), versus=("e", "f"))):
        with pytest.raises(ValueError, match="pairs|versus"):
            Check("a", "m", **bad)


def test_a_0_1_metric_against_a_share_is_an_exact_binomial_test():
    check = Check("lr_10", "failed", value=0.5)
    five = verdicts.run_checks([check], {("lr_10", "failed"): np.ones(5)}, binary=frozenset({"failed"}))[0]
    assert five.p_holds == pytest.approx(1 / 32)  # not the < 1e-4 a t-test with a floored spread gives
    assert five.status == HOLDS and five.diff.interval()[0] == pytest.approx(0.05 ** (1 / 5) - 0.5)
    # three such checks: Holm triples the p-values, 5 of 5 no longer decides, and the seeds needed say so
    trio = [Check(v, "failed", value=0.5) for v in ("a", "b", "c")]
    held = verdicts.run_checks(trio, {(v, "failed"): np.ones(5) for v in "abc"}, binary=frozenset({"failed"}))[0]
    assert held.status == INCONCLUSIVE and held.p_holds_adjusted == pytest.approx(3 / 32)
    assert held.seeds == 6  # 6 of 6: 1/64 < 0.05 / 3
    # 1 of 5 fails against a half; lower is better reverses the direction
    assert verdicts.run_checks([check], {("lr_10", "failed"): np.array([0, 0, 0, 0, 1.0])}, binary=frozenset({"failed"}))[0].p_fails \
        == pytest.approx(stats.binom.cdf(1, 5, 0.5))
    low = Check("lr_10", "failed", value=0.5, lower_is_better=True)
    assert verdicts.run_checks([low], {("lr_10", "failed"): np.zeros(5)}, binary=frozenset({"failed"}))[0].p_holds \
        == pytest.approx(1 / 32)
    with pytest.raises(ValueError, match="0/1"):
        verdicts.share_test(np.array([0.5, 1.0]), 0.5)


def test_a_check_against_a_number_shows_the_variants_own_mean():
    line = outcome(Check("relu", "noise_drop", value=0.2), relu=0.533).describe()
    assert line.startswith("relu 0.533 vs 0.2, noise_drop (higher is better), n = 5: advantage +0.333")
    lower = outcome(Check("sigmoid", "log10_ratio", value=-2.0, lower_is_better=True), sigmoid=-5.5).describe()
    assert lower.startswith("sigmoid -5.5 vs -2, log10_ratio (lower is better), n = 5: advantage +3.5")


def test_identical_seeds_are_decided_by_an_exact_test_not_a_floored_t():
    # five collapsed seeds against five others: the floored t says p < 1e-4; a permutation test of
    # 5 against 5 can say no less than 1/252, and one sample against a number no less than 1/32
    check = Check("a", "m", worse="b")
    apart = {("a", "m"): np.full(5, 0.2), ("b", "m"): np.full(5, 0.1135)}
    outcome = verdicts.run_checks([check], apart)[0]
    assert outcome.p_holds == pytest.approx(1 / 252)
    assert "exact randomization" in outcome.describe() and "cannot go below 1/252 with these seeds" in outcome.describe()
    against_number = verdicts.run_checks([Check("b", "m", value=0.12, kind="equivalent", margin=0.05)], apart)[0]
    assert against_number.p_holds == pytest.approx(1 / 32)
    assert "cannot go below 1/32 with these seeds" in against_number.describe()
    # a sample with a real spread leaves Welch's t alone
    spread = {("a", "m"): np.array([0.2, 0.21, 0.19, 0.2, 0.22]), ("b", "m"): np.array([0.1, 0.12, 0.11, 0.1, 0.13])}
    diff = verdicts.welch(spread[("a", "m")], spread[("b", "m")])
    assert diff.floored is None
    assert diff.p_above(0.0) == pytest.approx(stats.ttest_ind(spread[("a", "m")], spread[("b", "m")], equal_var=False,
                                                              alternative="greater").pvalue)


def test_a_decision_the_exact_test_would_leave_open_says_so_without_changing():
    # Welch's t decides a ahead of b at p = 0.046; the permutation test of the same ten seeds gives
    # 13/252 = 0.052, which would leave it open
    values = {("a", "m"): np.array([0.48, 0.5, 0.19, 0.34, 0.23]), ("b", "m"): np.array([0.2, 0.07, 0.39, 0.1, 0.17]),
              ("c", "m"): np.array([0.5, 0.51, 0.49, 0.52, 0.48])}
    borderline = verdicts.run_checks([Check("a", "m", worse="b")], values)[0]
    assert borderline.status == HOLDS and borderline.p_holds == pytest.approx(0.0458, abs=1e-4)
    assert borderline.exact_p_adjusted == pytest.approx(13 / 252)
    assert "rests on the normal model" in borderline.describe() and borderline.as_dict()["exact_p_holm"] == pytest.approx(0.0516, abs=1e-4)
    # failing the other way round is flagged alike
    fails = verdicts.run_checks([Check("b", "m", worse="a")], values)[0]
    assert fails.status == FAILS and fails.exact_p_adjusted == pytest.approx(13 / 252)
    # in a family of three Holm leaves it open under Welch's p already: an open check is not flagged
    family = verdicts.run_checks([Check("c", "m", worse="b"), Check("a", "m", worse="b"), Check("c", "m", worse="a")], values)
    assert family[1].status == INCONCLUSIVE and family[1].exact_p_adjusted is None  # Welch's Holm p too is above 0.05
    # seeds that already give the exact test its least p rest on the normal model by design where
    # Holm's step needs less (one sample of five against a number: 1/32, twice that over two checks)
    alone = verdicts.run_checks([Check("c", "m", value=0.4)], values)[0]
    assert alone.status == HOLDS and alone.exact_p_adjusted is None  # 1/32 < 0.05 decides alone
    two = verdicts.run_checks([Check("c", "m", value=0.4), Check("c", "m", value=0.3, lower_is_better=True)], values)
    assert [o.status for o in two] == [HOLDS, FAILS]
    assert [o.exact_p_adjusted for o in two] == [pytest.approx(2 / 32)] * 2 and all(o.exact_floor for o in two)
    assert "by design: an exact randomization test of these seeds cannot go below p = 1/32" in two[0].describe()
    # an equivalence fails on either side: twice the one-sided p, so its least is 2/32 even alone
    outside = verdicts.run_checks([Check("c", "m", value=0.3, kind="equivalent", margin=0.05)], values)[0]
    assert outside.status == FAILS and outside.robust.least[1] == pytest.approx(2 / 32)
    assert outside.exact_p_adjusted == pytest.approx(2 / 32) and outside.exact_floor
    assert "cannot go below p = 1/16" in outside.describe()
    # such a sibling does not get a check flagged that the exact test decides on its own: d ahead of
    # b at exact p 11/252 = 0.044, beside c's 1/32 (Holm over both exact p's would give 0.0625)
    values[("d", "m")] = np.array([0.48, 0.5, 0.21, 0.34, 0.23])
    mixed = verdicts.run_checks([Check("c", "m", value=0.4), Check("d", "m", worse="b")], values)
    assert mixed[1].status == HOLDS and mixed[1].robust.exact[0] == pytest.approx(11 / 252)
    assert mixed[1].exact_p_adjusted is None
    assert mixed[0].exact_p_adjusted == pytest.approx(2 / 32) and mixed[0].exact_floor
    # nor are decisions the exact test shares, or open checks
    apart = verdicts.run_checks([Check("a", "m", worse="b")], {("a", "m"): seeds(0.3), ("b", "m"): seeds(0.1)})[0]
    assert apart.status == HOLDS and apart.exact_p_adjusted is None
    open_ = verdicts.run_checks([Check("a", "m", worse="b")], {("a", "m"): seeds(0.1), ("b", "m"): seeds(0.1)})[0]
    assert open_.status == INCONCLUSIVE and open_.exact_p_adjusted is None


def test_a_tiny_difference_between_identical_seeds_asks_for_more_seeds_than_shown_at_once():
    # the seeds-needed estimate grows as 1 / difference²: here ~1e17 seeds, more than MAX_SEEDS_SHOWN
    # (an exact test's bound at that size was computed before the cap was checked: it never finished)
    tied = {("a", "m"): np.full(2, 0.5), ("b", "m"): np.array([0.5, 0.5 + 1e-12])}
    outcome = verdicts.run_checks([Check("a", "m", worse="b")], tied)[0]
    assert outcome.status == "inconclusive" and outcome.seeds > verdicts.MAX_SEEDS_SHOWN
    assert f"more than {verdicts.MAX_SEEDS_SHOWN} seeds" in outcome.describe()


def test_randomization_tests_match_scipy():
    a, b = np.array([0.3, 0.5, 0.4, 0.45]), np.array([0.2, 0.35, 0.1, 0.3, 0.25])
    for upper, alternative in ((True, "greater"), (False, "less")):
        reference = stats.permutation_test((a, b), lambda x, y: x.mean() - y.mean(), permutation_type="independent",
                                           alternative=alternative, n_resamples=10 ** 6).pvalue
        assert verdicts.permutation_p(a, b, upper) == pytest.approx(reference)
        d = a - 0.32
        flipped = stats.permutation_test((d,), np.mean, permutation_type="samples", alternative=alternative,
                                         n_resamples=10 ** 6).pvalue
        assert verdicts.sign_flip_p(d, upper) == pytest.approx(flipped)


def test_seeds_needed_respects_the_exact_tests_smallest_p():
    # three checks, each one sample of identical seeds against a number: Holm's strictest step needs
    # p < 0.05 / 3, and a sign-flip test of n seeds can show no less than 2^-n: 6 seeds, not 5
    checks = [Check(name, "m", value=0.5, kind="beats", margin=0.0) for name in ("a", "b", "c")]
    values = {(name, "m"): np.full(5, 0.6) for name in ("a", "b", "c")}
    outcomes = verdicts.run_checks(checks, values)
    assert all(o.status == INCONCLUSIVE and o.seeds == 6 for o in outcomes)


def test_an_open_check_at_the_metrics_best_value_says_more_seeds_are_unlikely_to_settle_it():
    # dropout: both nets fit their training set exactly in every seed, so "dropout lowers the training
    # accuracy" is open with a difference of exactly 0, and no seeds estimate applies
    ceiling = {"train_acc": 1.0}
    check = Check("no_dropout", "train_acc", worse="dropout")
    at_one = {("no_dropout", "train_acc"): np.ones(5), ("dropout", "train_acc"): np.ones(5)}
    verdict = verdicts.decide([check], at_one, best_values=ceiling)
    (open_,) = verdict.outcomes
    assert open_.status == INCONCLUSIVE and open_.saturated_at == 1.0 and open_.as_dict()["saturated_at"] == 1.0
    assert "every seed of no_dropout and dropout is at train_acc's best value, 1: the measure is saturated" in open_.describe()
    assert verdict.headline().endswith("(the open key checks could make it reproduced or not reproduced; 1 of them with "
                                       "every seed at its metric's best value, which more seeds are unlikely to settle)")
    # one seed below the ceiling, or a metric without a best value: the usual estimate or boundary note
    below = {**at_one, ("dropout", "train_acc"): np.array([1.0, 1.0, 1.0, 1.0, 0.9998])}
    assert verdicts.decide([check], below, best_values=ceiling).outcomes[0].saturated_at is None
    unbounded = verdicts.decide([check], at_one).outcomes[0]
    assert unbounded.saturated_at is None and "sits on the decision boundary" in unbounded.describe()
    assert "saturated_at" not in unbounded.as_dict() and "best value" not in verdicts.decide([check], at_one).headline()
    # with a margin the tie at the ceiling is what "not worse" predicts, and more seeds can settle it:
    # the line gives the estimate, and neither it nor the headline says otherwise
    few = {key: np.zeros(3) for key in (("a", "train_error"), ("b", "train_error"))}
    margin = verdicts.decide([Check("a", "train_error", worse="b", kind="not_worse", margin=0.001, lower_is_better=True)],
                             few, best_values={"train_error": 0.0})
    assert margin.outcomes[0].status == INCONCLUSIVE and margin.outcomes[0].seeds and margin.outcomes[0].saturated_at is None
    assert "best value" not in margin.headline() and "seeds per variant would settle it" in margin.outcomes[0].describe()


def test_a_quantity_the_architecture_fixes_is_compared_by_arithmetic_outside_holm():
    fixed = frozenset({"parameters"})
    checks = [Check("small", "parameters", worse="big", lower_is_better=True),
              Check("big", "parameters", value=1000.0, kind="equivalent", margin=0.5),
              Check("a", "m", worse="b")]
    values = {("small", "parameters"): np.full(5, 100.0), ("big", "parameters"): np.full(5, 1000.0),
              ("a", "m"): np.array([0.0, 1.0, 2.0, 3.0, 4.0]) + 2.2, ("b", "m"): np.array([0.0, 1.0, 2.0, 3.0, 4.0])}
    fewer, equal, tested = verdicts.run_checks(checks, values, fixed=fixed)
    assert fewer.status == HOLDS and fewer.p_holds == 0 and "fixed by the architecture" in fewer.describe()
    assert equal.status == HOLDS
    # the facts do not count towards the correction: the one real test keeps its own p
    assert tested.p_holds_adjusted == pytest.approx(tested.p_holds)
    wrong = verdicts.run_checks([Check("big", "parameters", worse="small", lower_is_better=True)], values, fixed=fixed)[0]
    assert wrong.status == FAILS
    varying = {("small", "parameters"): np.array([100.0, 101.0]), ("big", "parameters"): np.full(2, 1000.0)}
    assert verdicts.run_checks(checks[:1], varying, fixed=fixed)[0].status == INCONCLUSIVE


def test_side_checks_do_not_spend_the_key_checks_alpha():
    # one key check at p about 0.03 holds beside two side checks, which form a family of their own
    a = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    values = {("a", "m"): a + 2.2, ("b", "m"): a, ("c", "m"): a, ("d", "m"): a + 0.1}
    checks = [Check("a", "m", worse="b"), Check("c", "m", worse="d", key=False), Check("d", "m", worse="c", key=False)]
    key, *side = verdicts.run_checks(checks, values)
    assert 0.02 < key.p_holds < 0.05 and key.p_holds_adjusted == key.p_holds and key.status == HOLDS
    assert [o.p_holds_adjusted for o in side] == pytest.approx(verdicts.holm([o.p_holds for o in side]))


def test_a_sampled_randomization_test_never_gives_p_zero():
    # 11 seeds against 11: more arrangements than are enumerated, so they are sampled
    p = verdicts.permutation_p(np.full(11, 0.9), np.full(11, 0.1), upper=True)
    assert 0 < p <= 2 / (verdicts.EXACT_LIMIT + 1)
    assert verdicts.sign_flip_p(np.full(18, 0.5), upper=True) > 0


def test_intervals_match_scipy_stats():
    # the engine calls scipy.special directly (scipy.stats' import is slow): the same numbers
    a, b = np.array([0.91, 0.93, 0.95, 0.92]), np.array([0.88, 0.90, 0.86, 0.89, 0.91])
    diff = verdicts.welch(a, b)
    assert diff.interval() == pytest.approx(stats.t.interval(0.90, diff.df, loc=diff.estimate, scale=diff.se))
    assert diff.p_below(0.1) == pytest.approx(stats.t.cdf((diff.estimate - 0.1) / diff.se, diff.df))
    assert metrics.ci95_half_width(pd.Series(a)) == pytest.approx(stats.sem(a) * stats.t.ppf(0.975, 3))
    three_of_five = verdicts.share_test(np.array([1, 1, 1, 0, 0.0]), 0.5)
    low, high = stats.binomtest(3, 5).proportion_ci(0.90, method="exact")
    assert three_of_five.interval() == pytest.approx((low - 0.5, high - 0.5))


def test_no_command_pays_for_importing_scipy_stats():
    code = "import sys, experiments.analysis, experiments.__main__; print('scipy.stats' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"



@pytest.mark.parametrize("check,means,at_edge,flagged", [
    # on the test score that follows the tuning score, a holding check rests on its worse side's
    # shortfall: an under-tuned worse side may have made it
    (Check("a", "test_acc", worse="b"), {"a": 0.9, "b": 0.8}, ["b"], ["b"]),
    (Check("a", "test_acc", worse="b"), {"a": 0.9, "b": 0.8}, ["a"], []),
    (Check("a", "test_error", worse="b", lower_is_better=True), {"a": 0.1, "b": 0.2}, ["a", "b"], ["b"]),
    # a failing check rests on its better side's shortfall
    (Check("a", "test_acc", worse="b"), {"a": 0.8, "b": 0.9}, ["a"], ["a"]),
    (Check("a", "test_acc", worse="b"), {"a": 0.8, "b": 0.9}, ["b"], []),
    (Check("a", "test_acc", worse="b", kind="not_worse", margin=0.01), {"a": 0.9, "b": 0.9}, ["b"], ["b"]),
    (Check("a", "test_acc", value=0.5), {"a": 0.4}, ["a"], ["a"]),
    # an open check was decided by nothing
    (Check("a", "test_acc", worse="b"), {"a": 0.9, "b": 0.8995}, ["a", "b"], []),
    # an equivalence can break on either side; how the rate moves another metric (a training error,
    # a weight norm), or a test score read against its direction, is not known: every variant at an edge
    (Check("a", "test_acc", worse="b", kind="equivalent", margin=0.05), {"a": 0.9, "b": 0.9}, ["a", "b"], ["a", "b"]),
    (Check("a", "weight_norm", worse="b"), {"a": 0.9, "b": 0.8}, ["a"], ["a"]),
    (Check("a", "train_error", worse="b", lower_is_better=True), {"a": 0.1, "b": 0.2}, ["a"], ["a"]),
    (Check("a", "test_acc", worse="b", lower_is_better=True), {"a": 0.1, "b": 0.2}, ["a"], ["a"]),
    # a metric of the untrained net: every rate starts from the same weights, so no rate moves it
    (Check("a", "log10_grad_norm_init", worse="b"), {"a": 0.9, "b": 0.8}, ["a", "b"], []),
    # a difference of differences, (a - b) - (c - d): c's shortfall raises it as b's does
    (Check("a", "test_acc", worse="b", versus=("c", "d")), {"a": 0.9, "b": 0.5, "c": 0.6, "d": 0.5}, ["b", "c", "d"],
     ["b", "c"]),
    # the mean of (a - b) and (c - d): every worse side
    (Check("a", "test_acc", worse="b", pairs=(("c", "d"),)), {"a": 0.9, "b": 0.5, "c": 0.9, "d": 0.5}, ["a", "d"], ["d"]),
])
def test_a_decision_a_grid_edge_may_have_made_is_named(check, means, at_edge, flagged):
    from experiments.judge import edge_caveats

    values = {(variant, check.metric): seeds(mean) for variant, mean in means.items()}
    notes = edge_caveats(verdicts.run_checks([check], values), {v: "lr=0.1, the grid's lowest lr" for v in at_edge}, values)
    assert len(notes) == (1 if flagged else 0)
    assert [v for v in "abcd" if any(f"{v} does best at lr=0.1, the grid's lowest lr" in n["text"] for n in notes)] == flagged
    assert all(n["key"] and n["decides"] for n in notes)  # a key check: the verdict rests on it


def test_a_grid_edge_caveat_weighs_the_decision_by_its_distance_from_the_boundary():
    from experiments.judge import edge_caveats

    values = {("a", "test_acc"): seeds(0.9), ("b", "test_acc"): seeds(0.8)}
    for check, distance in ((Check("a", "test_acc", worse="b"), "0.1"), (Check("a", "test_acc", worse="b", margin=0.05), "0.05"),
                            (Check("a", "test_acc", worse="b", kind="not_worse", margin=0.01), "0.11")):
        [note] = edge_caveats(verdicts.run_checks([check], values), {"b": "lr=1"}, values)
        assert f"its advantage +0.1 lying {distance} from the decision's boundary" in note["text"]
    # the score a grid tuned on decides which test score follows it
    loss = {("a", "log10_test_loss"): seeds(-3.0), ("b", "log10_test_loss"): seeds(-1.0)}
    check = Check("a", "log10_test_loss", worse="b", lower_is_better=True)
    assert edge_caveats(verdicts.run_checks([check], loss), {"a": "lr=1"}, loss, "log10_val_loss") == []
    assert "is not known" in edge_caveats(verdicts.run_checks([check], loss), {"a": "lr=1"}, loss, "val_acc")[0]["text"]


def test_a_grid_edge_caveat_says_whether_the_verdict_rests_on_its_decision():
    from experiments.judge import edge_caveats

    values = {(v, "test_acc"): seeds(m) for v, m in {"a": 0.9, "b": 0.8, "c": 0.7}.items()}
    def decides(*checks):
        return [n["decides"] for n in edge_caveats(verdicts.run_checks(list(checks), values), {"b": "lr=1", "a": "lr=1"}, values)]

    key = Check("a", "test_acc", worse="c")
    side_fails = Check("b", "test_acc", worse="a", key=False)
    assert decides(key, Check("a", "test_acc", worse="b", key=False)) == [False]  # a side check that holds
    # a side check that fails where every key check holds makes the claim 'partly', unless another fails too
    assert decides(key, side_fails) == [True]
    assert decides(key, side_fails, Check("c", "test_acc", worse="a", key=False)) == [False]
    assert decides(Check("c", "test_acc", worse="a"), side_fails) == [False]
    assert decides(key, Check("a", "test_acc", worse="b", key=False, premise=True)) == [True]
    # where a premise fails the verdict is inconclusive whatever the key checks say
    assert decides(Check("a", "test_acc", worse="b"), Check("b", "test_acc", worse="a", key=False, premise=True)) == [False, True]


def test_no_grid_edge_caveat_for_a_side_already_at_its_metrics_best_value():
    from experiments.judge import edge_caveats

    # the side a holding non-inferiority rests on has a training error of 0 in every seed: nothing does better
    check = Check("a", "train_error", worse="b", kind="not_worse", margin=0.005, lower_is_better=True)
    for worse, named in ((np.zeros(5), False), (np.array([0.0, 0.0, 0.0, 0.0, 0.0001]), True),
                         (np.array([0.0, 0.0, 0.0, 0.0, np.nan]), True)):  # a diverged seed: not at its best
        values = {("a", "train_error"): np.zeros(5), ("b", "train_error"): worse}
        notes = edge_caveats(verdicts.run_checks([check], values), {"b": "lr=0.16, the grid's highest lr"}, values)
        assert bool(notes) == named
    # the other side at its best could still do worse at a rate that scores better on validation
    values = {("a", "train_error"): np.zeros(5), ("b", "train_error"): np.zeros(5)}
    assert edge_caveats(verdicts.run_checks([check], values), {"a": "lr=0.16"}, values)
