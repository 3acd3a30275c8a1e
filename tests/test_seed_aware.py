"""The seed-aware variant test (statistics.md, "an algorithm claim"): its arithmetic, its refusals, its calibration
on simulated A/A pairs against the checkpoint test it replaces, and seed planning against textbook values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import stats

# The engines' own environments (.venv-verl) install the harness without its dependencies and collect every test
# module; there this module has nothing to run.
scipy_stats = pytest.importorskip("scipy.stats")


def runs(rng, seeds: int, problems: int = 120, shift: float = 0.0, seed_sd: float = 0.02) -> np.ndarray:
    """[seeds, problems] per-problem pass@1 (8 samples) of simulated training runs: each run moves every problem's
    solve rate by its own luck (SD `seed_sd`), plus the variant's `shift`."""
    base = np.linspace(0.05, 0.95, problems)
    luck = rng.normal(0, seed_sd, size=(seeds, 1))
    return rng.binomial(8, np.clip(base + shift + luck, 0, 1)) / 8


def test_the_difference_its_interval_and_p_follow_welch_with_the_problem_term():
    rng = np.random.default_rng(0)
    a, b = runs(rng, 3, shift=0.03), runs(rng, 4)
    r = stats.seed_aware_test(a, b)
    run_a, run_b = a.mean(axis=1), b.mean(axis=1)
    assert r.difference == pytest.approx(run_a.mean() - run_b.mean())
    seed_terms = [run_a.var(ddof=1) / 3, run_b.var(ddof=1) / 4]
    d = a.mean(axis=0) - b.mean(axis=0)
    # the per-problem spread across runs not shared by all problems, which the seed terms already hold
    noise = [(x.var(axis=0, ddof=1).mean() - x.mean(axis=1).var(ddof=1)) * d.size / (d.size - 1) for x in (a, b)]
    problem_term = max(0.0, d.var(ddof=1) - noise[0] / 3 - noise[1] / 4) / d.size
    variance = sum(seed_terms) + problem_term
    df = variance**2 / (seed_terms[0] ** 2 / 2 + seed_terms[1] ** 2 / 3 + problem_term**2 / (d.size - 1))
    assert r.standard_error == pytest.approx(math.sqrt(variance))
    assert r.seed_standard_error == pytest.approx(math.sqrt(sum(seed_terms)))
    assert r.df == pytest.approx(df)
    assert r.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(r.difference) / math.sqrt(variance), df))
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(variance)
    assert (r.ci_low, r.ci_high) == pytest.approx((r.difference - half, r.difference + half))
    # The interval is never narrower than the seed level alone allows (the leaderboard's promise).
    assert r.ci_high - r.difference >= 1.6 * r.seed_standard_error
    assert (r.seeds_a, r.seeds_b) == (3, 4)


def test_identical_variants_differ_by_nothing_and_p_is_one():
    a = runs(np.random.default_rng(1), 3)
    r = stats.seed_aware_test(a, a.copy())
    assert r.difference == 0 and r.p_value == pytest.approx(1.0)


def test_a_fixed_baseline_has_no_seed_variance():
    rng = np.random.default_rng(2)
    a, fixed = runs(rng, 3), runs(rng, 1)
    r = stats.seed_aware_test(a, fixed, fixed_b=True)
    d = a.mean(axis=0) - fixed[0]
    seed_term = a.mean(axis=1).var(ddof=1) / 3
    noise = (a.var(axis=0, ddof=1).mean() - a.mean(axis=1).var(ddof=1)) * d.size / (d.size - 1)
    assert r.seed_standard_error == pytest.approx(math.sqrt(seed_term))
    # the fixed model's own evaluation noise has no seeds to measure it: it stays in the problem term
    assert r.standard_error == pytest.approx(math.sqrt(seed_term + max(0, d.var(ddof=1) - noise / 3) / d.size))
    assert r.seeds_b == 0


def test_one_seed_has_no_seed_variance_to_test_and_is_refused():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="at least 2 training seeds"):
        stats.seed_aware_test(runs(rng, 1), runs(rng, 3))
    with pytest.raises(ValueError, match="same problems"):
        stats.seed_aware_test(runs(rng, 2, problems=10), runs(rng, 2, problems=11))


def test_aa_pairs_are_called_different_at_most_alpha_where_the_checkpoint_test_is_not():
    """A/A: the same algorithm under disjoint seeds, 300 simulated pairs with 3 seeds a side."""
    rng = np.random.default_rng(4)
    seed_aware = checkpoint = 0
    for _ in range(300):
        a, b = runs(rng, 3), runs(rng, 3)
        seed_aware += stats.seed_aware_test(a, b).p_value < 0.05
        checkpoint += stats.paired_test(a.mean(axis=0), b.mean(axis=0), num_permutations=400,
                                        num_resamples=1).p_value < 0.05
    assert seed_aware / 300 <= 0.07  # alpha, within simulation error
    assert checkpoint / 300 > 0.2  # seed variance left out: A/A pairs "differ" far more often than alpha
    # and a real difference of three seed SDs is seen most of the time with 5 seeds
    found = sum(stats.seed_aware_test(runs(rng, 5, shift=0.06), runs(rng, 5)).p_value < 0.05 for _ in range(100))
    assert found >= 80


def test_seeds_for_power_gives_the_textbook_two_sample_sizes():
    # Two-sided t-test, alpha 0.05, power 0.8: 17 a group for d = 1, 64 for d = 0.5 (Cohen's tables).
    assert stats.seeds_for_power(1.0, 1.0) == 17
    assert stats.seeds_for_power(2.0, 1.0) == 64
    assert stats.seeds_for_power(0.018, 0.03) < stats.seeds_for_power(0.018, 0.02) < stats.seeds_for_power(0.018, 0.01)
    assert stats.seeds_for_power(float("nan"), 0.01) is None
    assert stats.seeds_for_power(1.0, 0.001) is None  # more than 1,000 seeds
    with pytest.raises(ValueError):
        stats.seeds_for_power(1.0, 0.0)


def test_the_pooled_seed_sd_ignores_single_seed_variants():
    sd, df = stats.pooled_seed_sd([[0.40, 0.44], [0.50, 0.52, 0.54], [0.9]])
    assert df == 3
    assert sd == pytest.approx(math.sqrt((0.0008 + 0.0008) / 3))
    assert stats.pooled_seed_sd([[0.5]]) == (pytest.approx(float("nan"), nan_ok=True), 0)
