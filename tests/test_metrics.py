"""Each definition in docs/statistics.md against a brute-force or hand-computed reference."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from harness.metrics import (
    maj_at_k,
    maj_at_k_auto,
    maj_at_k_curve,
    maj_at_k_monte_carlo,
    mean_at_n,
    pass_at_k,
    pass_at_k_per_problem,
)
from harness.stats import (
    PairedResult,
    bootstrap_ci,
    holm_adjust,
    paired_test,
    rank_bands,
    two_level_bootstrap_ci,
)

# ---------------------------------------------------------------------------------------------- pass@k


def test_pass_at_k_matches_combinatorial_definition():
    for n in range(1, 25):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_large_n_against_exact_fractions():
    for n, c, k in [(1024, 1, 1), (1024, 3, 512), (1024, 100, 64), (512, 0, 256), (1024, 1000, 1000)]:
        expected = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(expected), rel=1e-10)


def test_pass_at_1_is_fraction_correct_and_saturates_when_n_minus_c_below_k():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 8, 3) == 1.0  # only 2 wrong samples: any 3 include a correct one
    assert pass_at_k(10, 0, 10) == 0.0


@pytest.mark.parametrize("n,c,k", [(5, 1, 0), (5, 1, 6), (5, -1, 1), (5, 6, 1)])
def test_pass_at_k_rejects_invalid_arguments(n, c, k):
    with pytest.raises(ValueError, match="need"):
        pass_at_k(n, c, k)


def test_pass_at_k_per_problem_matches_scalar_with_mixed_n():
    rng = np.random.default_rng(1)
    n = rng.integers(8, 300, size=200)
    c = rng.integers(0, n + 1)
    for k in (1, 2, 5, 8):
        expected = [pass_at_k(int(ni), int(ci), k) for ni, ci in zip(n, c, strict=True)]
        np.testing.assert_allclose(pass_at_k_per_problem(n, c, k), expected, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(pass_at_k_per_problem(n, c, 1), c / n, rtol=1e-12)


def test_pass_at_k_per_problem_scalar_n_and_validation():
    c = np.array([0, 1, 1023, 1024])
    out = pass_at_k_per_problem(1024, c, 1000)
    np.testing.assert_allclose(out, [pass_at_k(1024, int(ci), 1000) for ci in c], rtol=1e-10)
    with pytest.raises(ValueError, match="n >= k"):
        pass_at_k_per_problem([4, 16], [1, 1], 8)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k_per_problem([4, 16], [5, 1], 1)


def test_mean_at_n_averages_per_problem_then_over_problems():
    assert mean_at_n([[1, 0], [1, 1, 1, 0]]) == pytest.approx((0.5 + 0.75) / 2)
    correct = np.random.default_rng(0).random((30, 16)) < 0.4
    assert mean_at_n(correct) == pytest.approx(pass_at_k_per_problem(16, correct.sum(1), 1).mean())


# ---------------------------------------------------------------------------------------------- maj@k


def brute_force_maj(sizes, correct, n, k) -> Fraction:
    """Every size-k subset, majority with the exact tie-break probability."""
    labels = [i for i, s in enumerate(sizes) for _ in range(s)] + [-1] * (n - sum(sizes))
    total = Fraction(0)
    subsets = 0
    for subset in itertools.combinations(range(n), k):
        counts = [0] * len(sizes)
        for j in subset:
            if labels[j] >= 0:
                counts[labels[j]] += 1
        subsets += 1
        top = max(counts, default=0)
        if top == 0:
            continue
        tied = [i for i, cnt in enumerate(counts) if cnt == top]
        total += Fraction(sum(correct[i] for i in tied), len(tied))
    return total / subsets


MAJ_CASES = [
    ([3, 2, 1], [True, False, False], 8),  # two non-voting samples
    ([2, 2, 2], [False, True, False], 6),  # three-way ties
    ([4], [True], 6),
    ([1, 1, 1, 1, 1], [True, False, False, False, False], 7),  # all singletons
    ([3, 3, 2], [True, True, False], 10),  # two correct clusters (non-transitive equivalence)
    ([3, 2, 2, 1], [False, True, False, True], 9),
    ([2, 3], [False, False], 7),  # nothing correct
    ([], [], 5),  # nothing voted
]


@pytest.mark.parametrize("sizes,correct,n", MAJ_CASES)
def test_maj_at_k_exact_matches_brute_force_enumeration(sizes, correct, n):
    curve = maj_at_k_curve(sizes, correct, n, range(1, n + 1))
    for k in range(1, n + 1):
        expected = float(brute_force_maj(sizes, correct, n, k))
        assert maj_at_k(sizes, correct, n, k) == pytest.approx(expected, abs=1e-12), k
        assert curve[k - 1] == pytest.approx(expected, abs=1e-12), k


def test_maj_at_k_exact_matches_brute_force_on_random_configurations():
    rng = np.random.default_rng(7)
    for _ in range(12):
        n = int(rng.integers(2, 10))
        labels = rng.integers(-1, 4, size=n)  # -1: no extracted answer
        sizes = [int(s) for s in np.bincount(labels[labels >= 0]) if s > 0]
        correct = [bool(f) for f in rng.random(len(sizes)) < 0.4]
        for k in range(1, n + 1):
            expected = float(brute_force_maj(sizes, correct, n, k))
            got = maj_at_k(sizes, correct, n, k)
            assert got == pytest.approx(expected, abs=1e-12), (sizes, correct, n, k)


def test_maj_at_1_equals_pass_at_1():
    for sizes, correct, n in MAJ_CASES:
        c = sum(s for s, f in zip(sizes, correct, strict=True) if f)
        assert maj_at_k(sizes, correct, n, 1) == pytest.approx(c / n, abs=1e-14)


@pytest.mark.parametrize(
    "sizes,correct,n,expected",
    [
        ([5, 3, 3], [True, False, False], 12, 1.0),
        ([3, 3, 1], [True, False, False], 10, 0.5),  # two-way tie at the top
        ([3, 3, 3], [False, True, True], 9, 2 / 3),
        ([2, 5], [True, False], 7, 0.0),
        ([], [], 4, 0.0),
    ],
)
def test_maj_at_n_is_plain_majority_vote(sizes, correct, n, expected):
    assert maj_at_k(sizes, correct, n, n) == pytest.approx(expected, abs=1e-14)


def closed_form_two_clusters(a: int, b: int, n: int, k: int) -> float:
    """Correct cluster of a, wrong cluster of b, n - a - b non-voting: exact rational via math.comb."""
    r = n - a - b
    wins = Fraction(0)
    for x in range(0, min(a, k) + 1):
        for y in range(0, min(b, k - x) + 1):
            if k - x - y > r:
                continue
            ways = math.comb(a, x) * math.comb(b, y) * math.comb(r, k - x - y)
            if x > y:
                wins += ways
            elif x == y > 0:
                wins += Fraction(ways, 2)
    return float(wins / math.comb(n, k))


@pytest.mark.parametrize(
    "a,b,n,k", [(150, 106, 256, 101), (100, 80, 256, 64), (100, 80, 256, 200), (90, 90, 256, 128)]
)
def test_maj_at_k_exact_is_accurate_at_n_256(a, b, n, k):
    assert maj_at_k([a, b], [True, False], n, k) == pytest.approx(
        closed_form_two_clusters(a, b, n, k), rel=1e-11
    )


def test_maj_at_k_exact_and_monte_carlo_agree_within_three_standard_errors():
    sizes, correct, n = [12, 10, 6, 3, 2, 1, 1], [False, True, False, False, False, False, False], 40
    for k in (3, 8, 15, 30):
        exact = maj_at_k(sizes, correct, n, k)
        estimate, se = maj_at_k_monte_carlo(sizes, correct, n, k, num_subsets=20000, seed=3)
        assert se > 0
        assert abs(estimate - exact) <= 3 * se, (k, exact, estimate, se)


def test_maj_at_k_monte_carlo_is_seeded():
    args = ([5, 4, 2], [True, False, False], 20, 7)
    assert maj_at_k_monte_carlo(*args, seed=11) == maj_at_k_monte_carlo(*args, seed=11)
    assert maj_at_k_monte_carlo(*args, seed=11) != maj_at_k_monte_carlo(*args, seed=12)


def test_maj_at_k_auto_switches_to_monte_carlo_above_256():
    value, se = maj_at_k_auto([30, 10, 5], [True, False, False], 64, 9)
    assert se == 0.0 and value == maj_at_k([30, 10, 5], [True, False, False], 64, 9)
    value, se = maj_at_k_auto([300, 150, 20], [True, False, False], 512, 9, num_subsets=4000)
    assert se > 0 and 0.0 < value < 1.0


@pytest.mark.parametrize(
    "sizes,correct,n,k,match",
    [
        ([3, 2], [True], 6, 2, "flags"),
        ([0, 2], [True, False], 6, 2, ">= 1"),
        ([4, 4], [True, False], 6, 2, "n=6"),
        ([2], [True], 6, 7, "k"),
    ],
)
def test_maj_at_k_rejects_invalid_clusters(sizes, correct, n, k, match):
    with pytest.raises(ValueError, match=match):
        maj_at_k(sizes, correct, n, k)


# -------------------------------------------------------------------------------- confidence intervals


def test_bootstrap_ci_contains_mean_is_seeded_and_shrinks_with_more_problems():
    rng = np.random.default_rng(0)
    small, large = rng.random(100), rng.random(2000)
    low, high = bootstrap_ci(small)
    assert low < small.mean() < high
    assert bootstrap_ci(small, seed=0) == (low, high)
    assert bootstrap_ci(small, seed=1) != (low, high)
    low_l, high_l = bootstrap_ci(large)
    assert high_l - low_l < (high - low) / 2  # width ~ 1/sqrt(problems): 20x problems, ~4.5x narrower
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(small, level=1.5)


def test_bootstrap_ci_width_matches_normal_theory():
    scores = np.random.default_rng(5).random(400)
    low, high = bootstrap_ci(scores)
    normal_width = 2 * 1.96 * scores.std() / math.sqrt(scores.size)
    assert (high - low) == pytest.approx(normal_width, rel=0.1)


def test_two_level_bootstrap_includes_seed_variation():
    rng = np.random.default_rng(2)
    by_seed = [np.clip(rng.normal(mu, 0.2, 300), 0, 1) for mu in (0.3, 0.5, 0.7)]
    low, high = two_level_bootstrap_ci(by_seed)
    grand = np.mean([s.mean() for s in by_seed])
    assert low < grand < high
    assert two_level_bootstrap_ci(by_seed) == (low, high)
    pooled_low, pooled_high = bootstrap_ci(np.concatenate(by_seed))
    assert high - low > 3 * (pooled_high - pooled_low)  # the seed effect dominates
    one_low, one_high = two_level_bootstrap_ci(by_seed[:1])
    ref_low, ref_high = bootstrap_ci(by_seed[0])
    assert (one_high - one_low) == pytest.approx(ref_high - ref_low, rel=0.15)


def test_two_level_bootstrap_does_not_narrow_for_repeated_seeds_on_shared_problems():
    # Three identical runs scored on one test set carry no more information about the problems than one:
    # resampling problems independently per seed would shrink the interval by about 1/sqrt(3).
    scores = np.clip(np.random.default_rng(5).normal(0.4, 0.3, 240), 0, 1)
    ref_low, ref_high = bootstrap_ci(scores)
    low, high = two_level_bootstrap_ci([scores, scores, scores])
    assert (high - low) == pytest.approx(ref_high - ref_low, rel=0.1)


# ---------------------------------------------------------------------------------- paired comparison


def test_paired_test_exact_enumeration_hand_examples():
    result = paired_test([1, 1, 1, 1], [0, 0, 0, 0])
    assert isinstance(result, PairedResult) and result.exact
    assert result.p_value == pytest.approx(2 / 16)
    assert result.difference == 1.0
    zeros_drop_out = paired_test([1, 1, 1, 1, 0, 1], [0, 0, 0, 0, 0, 1])
    assert zeros_drop_out.p_value == pytest.approx(2 / 16)
    # d = [2, -1, 1]: the 8 sign patterns give |sums| 2,0,4,2,2,4,0,2; six are >= 2.
    assert paired_test([2, 0, 1], [0, 1, 0]).p_value == pytest.approx(6 / 8)


def test_paired_test_identical_runs_give_p_one():
    scores = np.random.default_rng(0).random(50)
    result = paired_test(scores, scores)
    assert result.p_value == 1.0 and result.difference == 0.0 and result.ci_low == result.ci_high == 0.0


def test_paired_test_float_round_off_keeps_the_observed_pattern():
    rng = np.random.default_rng(4)
    a, b = rng.random(12).round(1), rng.random(12).round(1)
    nonzero = int(np.count_nonzero(a - b))
    assert paired_test(a, b).p_value >= 2 / 2**nonzero


def test_paired_test_strong_difference_uses_monte_carlo_and_is_small():
    rng = np.random.default_rng(1)
    b = rng.random(200)
    a = b + 0.3 + rng.normal(0, 0.1, 200)
    result = paired_test(a, b)
    assert not result.exact
    assert result.p_value == pytest.approx(1 / 10001)  # never 0: the observed labelling counts
    assert result.ci_low < result.difference < result.ci_high
    assert result.ci_low > 0.25
    assert paired_test(a, b) == result


def test_paired_test_no_difference_monte_carlo_is_not_significant():
    rng = np.random.default_rng(2)
    a, b = rng.random(100), rng.random(100)
    result = paired_test(a, b, num_permutations=4000)
    assert result.p_value > 0.05
    assert result.ci_low < 0 < result.ci_high


def test_holm_adjust_hand_example_and_properties():
    # sorted 0.01, 0.03, 0.04, 0.2 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08, 0.2 -> running max 0.04, 0.09, 0.09, 0.2
    np.testing.assert_allclose(holm_adjust([0.01, 0.04, 0.03, 0.2]), [0.04, 0.09, 0.09, 0.2])
    np.testing.assert_allclose(holm_adjust([0.5, 0.6]), [1.0, 1.0])
    p = np.random.default_rng(0).random(20) ** 3
    adjusted = holm_adjust(p)
    assert (adjusted >= p).all() and (adjusted <= 1).all()
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all()
    with pytest.raises(ValueError):
        holm_adjust([0.1, 1.2])


def test_rank_bands():
    scores = [0.58, 0.60, 0.40, 0.57]
    low, high = [0.53, 0.55, 0.35, 0.52], [0.63, 0.65, 0.45, 0.62]
    p = np.ones((4, 4))
    p[1, 2] = p[2, 1] = 0.001  # clearly worse than the leader
    p[1, 3] = p[3, 1] = 0.01  # CIs overlap, but the adjusted test separates it from the leader
    assert rank_bands(scores, low, high, p).tolist() == [1, 1, 3, 2]
