"""The paired fidelity estimator: order-statistic intervals, noise cancellation, coverage, the stopping rule."""

import math
import random
import statistics

import pytest

from mambaprof.paired import PairedDifference, median_interval_ranks, paired_difference
from mambaprof.run.measure import FIDELITY_PRECISION_PCT, MAX_FIDELITY_PAIRS, more_fidelity_pairs


@pytest.mark.parametrize(("n", "ranks"), [(6, (0, 5)), (10, (1, 8)), (20, (5, 14)), (30, (9, 20)), (50, (17, 32))])
def test_interval_ranks_match_the_sign_test_table(n, ranks):
    # 1-based ranks of the 95% interval of a median from standard tables: n=10 (2, 9), n=20 (6, 15),
    # n=30 (10, 21), n=50 (18, 33)
    lo, hi, coverage = median_interval_ranks(n)
    assert (lo, hi) == ranks
    assert coverage >= 0.95
    # one rank narrower would fall short of 95%
    narrower = 1 - 2 * sum(math.comb(n, i) for i in range(lo + 2)) / 2**n
    assert narrower < 0.95


def test_too_few_values_give_min_max_with_their_true_coverage():
    for n in range(1, 6):
        lo, hi, coverage = median_interval_ranks(n)
        assert (lo, hi) == (0, n - 1)
        assert coverage == pytest.approx(1 - 2.0 ** (1 - n))
    with pytest.raises(ValueError):
        median_interval_ranks(0)


def test_pairing_cancels_noise_both_forwards_share():
    rng = random.Random(7)
    # a launch-bound forward: the host's state makes each pair 15 ms or 27 ms; B costs 2% more than A
    host = [rng.choice([15.0, 27.0]) * (1 + rng.uniform(-0.002, 0.002)) for _ in range(20)]
    diff = paired_difference(host, [t * 1.02 for t in host])
    assert diff is not None and diff.pairs == 20
    assert diff.median_pct == pytest.approx(2.0, abs=1e-9)
    assert diff.half_width_pct == pytest.approx(0.0, abs=1e-9)
    assert diff.inside(5.0) and not diff.outside(5.0)
    # the two series' own spreads are 80%: their medians alone could not tell 2% from noise
    assert (max(host) - min(host)) / statistics.median(host) > 0.5


def test_interval_covers_the_true_median_at_least_as_often_as_promised():
    rng = random.Random(3)
    trials, hits = 2000, 0
    for _ in range(trials):
        # per-pair differences around a true median of +1%: heavy-tailed host noise
        a = [rng.lognormvariate(3.0, 0.3) for _ in range(12)]
        b = [x * (1.01 + rng.gauss(0, 0.03) + (rng.random() < 0.1) * rng.uniform(-0.4, 0.4)) for x in a]
        diff = paired_difference(a, b)
        assert diff is not None
        hits += diff.ci_low_pct <= 1.0 <= diff.ci_high_pct
    _, _, promised = median_interval_ranks(12)
    assert hits / trials >= promised - 0.02  # binomial error of 2000 trials: ~0.004


def test_pairs_with_a_non_positive_reference_are_dropped():
    diff = paired_difference([0.0, 10.0, 10.0], [1.0, 11.0, 9.0])
    assert diff is not None and diff.pairs == 2
    assert diff.median_pct == pytest.approx(statistics.median([10.0, -10.0]))
    assert paired_difference([], []) is None
    assert paired_difference([0.0], [1.0]) is None


def test_verdict_helpers():
    d = PairedDifference(pairs=10, median_pct=4.0, ci_low_pct=3.0, ci_high_pct=6.0, coverage=0.98)
    assert not d.inside(5.0) and not d.outside(5.0)  # straddles +5: undecided
    assert PairedDifference(10, 7.0, 6.0, 8.0, 0.98).outside(5.0)
    assert PairedDifference(10, -7.0, -8.0, -6.0, 0.98).outside(5.0)
    assert PairedDifference(10, 0.0, -5.0, 5.0, 0.98).inside(5.0)


def test_more_pairs_only_while_imprecise_and_time_is_left():
    wide = PairedDifference(10, 0.0, -3.0, 3.0, 0.98)
    tight = PairedDifference(10, 0.0, -FIDELITY_PRECISION_PCT / 2, FIDELITY_PRECISION_PCT / 2, 0.98)
    assert more_fidelity_pairs(wide, 10, elapsed_s=1.0, budget_s=3.0)
    assert not more_fidelity_pairs(tight, 10, elapsed_s=1.0, budget_s=3.0)
    assert not more_fidelity_pairs(wide, 10, elapsed_s=3.0, budget_s=3.0)
    assert not more_fidelity_pairs(wide, MAX_FIDELITY_PAIRS, elapsed_s=1.0, budget_s=3.0)
    assert not more_fidelity_pairs(None, 0, elapsed_s=0.0, budget_s=3.0)
