"""Inference on per-problem scores, shared by the leaderboard and the regression gate (docs/statistics.md).

Intervals: `bootstrap_ci`, `two_level_bootstrap_ci`. Comparing two runs on the same problems: `paired_test`
(sign-flip permutation), `mcnemar_exact` (one binary outcome per problem), `minimum_detectable_effect`.
Comparing two training algorithms, each run with several seeds: `seed_aware_test`, `seeds_for_power`.
Several comparisons: `holm_adjust`, `rank_bands`, `bands_from_tests`. numpy, scipy's t distributions and the
standard library; every random quantity takes a seed, so a report regenerates bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

_CHUNK = 2000  # bootstrap rows per vectorised block, with `_resampled_means` keeping blocks near 1M entries
BOOTSTRAP_RESAMPLES = 2000  # statistics.md: B = 2,000 for every interval
PERMUTATIONS = 10000  # statistics.md: 10,000 seeded sign-flip permutations
MDE_POWER = 0.8


# ------------------------------------------------------------------------------- confidence intervals


def _resampled_means(scores: np.ndarray, num_resamples: int, rng: np.random.Generator) -> np.ndarray:
    means = np.empty(num_resamples)
    step = max(1, _CHUNK * 500 // max(scores.size, 1))  # keep each index block near 1M entries
    for start in range(0, num_resamples, step):
        stop = min(start + step, num_resamples)
        picks = rng.integers(0, scores.size, size=(stop - start, scores.size))
        means[start:stop] = scores[picks].mean(axis=1)
    return means


def _percentile_interval(means: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _check_level(level: float, num_resamples: int) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")


def bootstrap_ci(
    per_problem_scores: Sequence[float] | np.ndarray,
    num_resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over problems: the spread comes from which problems were drawn."""
    scores = np.asarray(per_problem_scores, dtype=float).reshape(-1)
    _check_level(level, num_resamples)
    if scores.size == 0:
        raise ValueError("bootstrap_ci needs at least one problem")
    return _percentile_interval(_resampled_means(scores, num_resamples, np.random.default_rng(seed)), level)


def two_level_bootstrap_ci(
    scores_by_seed: Sequence[Sequence[float] | np.ndarray],
    num_resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """CI of a variant's score across training seeds: each resample draws S seeds with replacement, then
    resamples problems within the drawn seeds, and averages the S means.

    Both seed-to-seed and problem-to-problem variation widen the interval. When every seed scored the same
    problems (same length, same order, as on a leaderboard) one problem resample serves all drawn seeds: the
    problems are shared, so evaluating three seeds on one test set must not shrink the problem-level
    uncertainty as three independent test sets would (three copies of one run keep its single-seed interval).
    Seeds scored on different problem sets are resampled independently. Report len(scores_by_seed) next to
    the interval: with 2-3 seeds the seed level is poorly resolved.
    """
    groups = [np.asarray(s, dtype=float).reshape(-1) for s in scores_by_seed]
    _check_level(level, num_resamples)
    if not groups or any(g.size == 0 for g in groups):
        raise ValueError("two_level_bootstrap_ci needs at least one seed, each with at least one problem")
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(groups), size=(num_resamples, len(groups)))
    if len({g.size for g in groups}) == 1:  # shared problems: one problem resample per seed resample
        seed_means = np.stack(groups)[chosen].mean(axis=1)  # [resamples, problems]: drawn seeds averaged
        picks = rng.integers(0, groups[0].size, size=seed_means.shape)
        return _percentile_interval(np.take_along_axis(seed_means, picks, axis=1).mean(axis=1), level)
    means = np.empty(chosen.shape)
    for g, scores in enumerate(groups):  # all draws of one seed at once, in a fixed order for determinism
        hit = chosen == g
        if hit.any():
            means[hit] = _resampled_means(scores, int(hit.sum()), rng)
    return _percentile_interval(means.mean(axis=1), level)


# ---------------------------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class PairedResult:
    difference: float  # mean over problems of s_A - s_B
    ci_low: float  # paired percentile bootstrap of the mean difference
    ci_high: float
    p_value: float  # two-sided sign-flip permutation test on mean(d)
    exact: bool  # True when every sign pattern was enumerated


_EXACT_MAX_NONZERO = 16


def paired_test(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    num_permutations: int = PERMUTATIONS,
    num_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> PairedResult:
    """Paired comparison of two runs on the same problems (statistics.md).

    Under H0 each d_j = s_A(j) - s_B(j) is symmetric about 0, so flipping its sign is as likely as not.
    Zero differences are unchanged by a flip and are left out of the enumeration. The p-value counts
    patterns with |sum| >= |observed sum| (tolerance 1e-9 relative, so float round-off in the sum cannot
    drop the observed pattern itself). With <= 16 non-zero d_j all 2^m patterns are enumerated (d=[1,1,1,1]
    gives 2/16); otherwise p = (1 + hits) / (1 + num_permutations), which counts the observed labelling and
    is never 0.
    """
    a = np.asarray(scores_a, dtype=float).reshape(-1)
    b = np.asarray(scores_b, dtype=float).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"paired_test needs two equal-length, non-empty score arrays, got {a.size} and {b.size}"
        )
    d = a - b
    ci_low, ci_high = bootstrap_ci(d, num_resamples=num_resamples, level=level, seed=seed)
    nonzero = d[d != 0]
    observed = abs(nonzero.sum())
    threshold = observed - 1e-9 * max(np.abs(nonzero).sum(), 1e-300)
    if nonzero.size <= _EXACT_MAX_NONZERO:
        m = nonzero.size
        bits = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
        sums = np.abs((1 - 2 * bits) @ nonzero)
        p_value, exact = float(np.mean(sums >= threshold)), True
    else:
        rng = np.random.default_rng(seed)
        hits = 0
        step = max(1, 1_000_000 // nonzero.size)
        for start in range(0, num_permutations, step):
            signs = rng.choice(
                np.array([-1.0, 1.0]), size=(min(step, num_permutations - start), nonzero.size)
            )
            hits += int((np.abs(signs @ nonzero) >= threshold).sum())
        p_value, exact = (1 + hits) / (1 + num_permutations), False
    return PairedResult(float(d.mean()), ci_low, ci_high, p_value, exact)


# ------------------------------------------------------------- comparing algorithms (several seeds)


@dataclass(frozen=True)
class SeedAwareResult:
    """Δ between two variants' mean scores over their training runs, with an interval and a test whose
    null distribution includes seed-to-seed variance (docs/statistics.md, "an algorithm claim")."""

    difference: float  # mean over A's seeds of its score minus the same for B
    ci_low: float  # difference -/+ t_{df, 0.975} * standard_error
    ci_high: float
    p_value: float  # two-sided Welch t-test on the per-seed scores, the variant x problem variance added
    standard_error: float
    seed_standard_error: float  # the seed level alone: sqrt(sd_A^2 / m_A + sd_B^2 / m_B)
    df: float  # Welch-Satterthwaite degrees of freedom
    seeds_a: int
    seeds_b: int


def seed_aware_test(scores_a: np.ndarray, scores_b: np.ndarray, fixed_b: bool = False,
                    level: float = 0.95) -> SeedAwareResult:
    """Is variant A better than B, as training algorithms? `scores_a` [seeds_A, problems] and `scores_b`
    [seeds_B, problems] hold each training run's per-problem score on the same problems, in the same order.

    The unit is the training run. Each run's score S_s is its mean over problems, and
      Δ = mean_s S_A,s - mean_s S_B,s,
      Var(Δ) = sd_A^2 / m_A + sd_B^2 / m_B + V_g / P,
    where sd is the seed-to-seed SD of the run scores (training-seed variance, with each run's own evaluation
    noise in it) and V_g the variance over problems of the variant x problem interaction: how much Δ would move
    on another draw of P problems. V_g is the variance of the per-problem differences d_j of the seed-averaged
    scores less what the seeds put into it, the per-problem spread across a variant's runs that is not shared by
    all its problems (sigma_e^2 = (mean_j var_s x_sj - sd^2) P / (P - 1), divided by the seed count), and is
    floored at 0. (Adding the whole variance of d_j instead counts each run's evaluation noise twice, which
    widens the interval for nothing: in simulation it lost 3-4 points of power at 5 seeds.) Δ / SE is referred to Student's t
    with Welch-Satterthwaite degrees of freedom (the problem term's are P - 1), for both the p-value and the
    interval Δ -/+ t * SE, so the two always agree. With 3 seeds a side the t quantile is ~2.8, not 1.96: few
    seeds buy a wide interval. perf/seed_test_power.py shows by simulation that the test's type-I error stays
    at or below alpha with 3, 5 and 10 seeds (an A/A pair is not called different more often than alpha), and
    its power.

    `fixed_b`: B is one fixed model, not a training run (the warm start): it has no seed variance, and A is
    tested against it as against a constant. Otherwise each side needs at least two seeds: with one, the seed
    variance is unknown and no algorithm-level test exists (compare checkpoints with `paired_test`).
    """
    a, b = np.atleast_2d(np.asarray(scores_a, dtype=float)), np.atleast_2d(np.asarray(scores_b, dtype=float))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"seed_aware_test needs both sides scored on the same problems, got {a.shape[1]} and "
                         f"{b.shape[1]}")
    if a.shape[0] < 2 or (b.shape[0] < 2 and not fixed_b):
        raise ValueError(f"seed_aware_test needs at least 2 training seeds a side (got {a.shape[0]} and "
                         f"{b.shape[0]}): with one seed the seed-to-seed variance is unknown")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    from scipy import stats as scipy_stats

    run_a, run_b = a.mean(axis=1), b.mean(axis=1)
    difference = float(run_a.mean() - run_b.mean())
    sides = [a] if fixed_b else [a, b]
    # (variance of the side's mean, its degrees of freedom) for each term of Var(Δ)
    terms = [(side.mean(axis=1).var(ddof=1) / side.shape[0], side.shape[0] - 1) for side in sides]
    seed_variance = sum(v for v, _ in terms)
    problems = a.shape[1]
    if problems > 1:
        # A fixed B's evaluation noise has no seeds to be measured by: it stays in, as part of the problem term.
        per_run = sum(_per_problem_noise(side) / side.shape[0] for side in sides)
        interaction = max(0.0, float((a.mean(axis=0) - b.mean(axis=0)).var(ddof=1)) - per_run)
        terms.append((interaction / problems, problems - 1))
    variance = sum(v for v, _ in terms)
    if variance <= 0:  # identical runs everywhere: no spread to test against
        p, half, df = (1.0 if difference == 0 else 0.0), 0.0, float("inf")
    else:
        df = variance**2 / sum(v**2 / dof for v, dof in terms if v > 0)
        p = float(2 * scipy_stats.t.sf(abs(difference) / math.sqrt(variance), df))
        half = float(scipy_stats.t.ppf(0.5 + level / 2, df) * math.sqrt(variance))
    return SeedAwareResult(difference, difference - half, difference + half, p, math.sqrt(variance),
                           math.sqrt(seed_variance), float(df), a.shape[0], 0 if fixed_b else b.shape[0])


def _per_problem_noise(runs: np.ndarray) -> float:
    """sigma_e^2 of `seed_aware_test`: the variance of one run's per-problem score about its problem's mean and its
    run's shift, the spread across runs that is not common to every problem (evaluation noise and per-problem
    luck), from [seeds, problems] scores."""
    problems = runs.shape[1]
    within = float(runs.var(axis=0, ddof=1).mean())  # seed shift and per-problem spread
    shift = float(runs.mean(axis=1).var(ddof=1))  # seed shift and 1/P of the per-problem spread
    return max(0.0, (within - shift) * problems / (problems - 1))


def seeds_for_power(seed_sd: float, effect: float, alpha: float = 0.05, power: float = MDE_POWER,
                    most: int = 1000) -> int | None:
    """Training seeds per variant that detect a true difference `effect` between two variants with the given
    power, by the two-sided Welch test above with equal seeds and SDs (degrees of freedom 2m - 2), from the
    noncentral t distribution. `seed_sd` is the SD of one run's score, in the units of `effect`. None when more
    than `most` seeds would be needed (or the SD is unknown)."""
    if effect <= 0:
        raise ValueError(f"effect must be positive, got {effect}")
    if not (seed_sd > 0 and math.isfinite(seed_sd)):
        return None
    from scipy import stats as scipy_stats

    for m in range(2, most + 1):
        df = 2 * m - 2
        critical = scipy_stats.t.ppf(1 - alpha / 2, df)
        shift = effect / (seed_sd * math.sqrt(2 / m))
        reached = scipy_stats.nct.sf(critical, df, shift) + scipy_stats.nct.cdf(-critical, df, shift)
        if reached >= power:
            return m
    return None


def pooled_seed_sd(run_scores: Sequence[Sequence[float]]) -> tuple[float, int]:
    """(pooled SD of run scores within each variant, its degrees of freedom) over the variants with 2+ seeds:
    the seed-to-seed spread a planner can assume for every variant. (nan, 0) when no variant has two seeds."""
    groups = [np.asarray(g, dtype=float) for g in run_scores if len(g) >= 2]
    df = sum(g.size - 1 for g in groups)
    if not df:
        return float("nan"), 0
    return float(math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / df)), df


def wilson_interval(hits: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion hits / total (for simulated error rates: good near 0 and 1)."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order: the i-th smallest is
    max_{j<=i} min(1, (m - j + 1) p_(j)); the running max keeps them monotone in the raw p."""
    p = np.asarray(p_values, dtype=float).reshape(-1)
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (p.size - np.arange(p.size)) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def rank_bands(
    scores: Sequence[float],
    ci_low: Sequence[float],
    ci_high: Sequence[float],
    adjusted_p: np.ndarray,
    alpha: float = 0.05,
) -> np.ndarray:
    """Rank band per variant (1 = the leader's band): greedily, the best unassigned variant opens a band
    and every unassigned variant whose CI overlaps its CI and whose adjusted p against it is >= alpha joins.

    adjusted_p[i, j] is the (already Holm-adjusted) p-value of comparing variant i with variant j; only
    pairs with a band leader are read, so the caller may fill just those. Sharing a band means "not
    distinguishable from the band's leader", not "equal".
    """
    s = np.asarray(scores, dtype=float)
    low, high = np.asarray(ci_low, dtype=float), np.asarray(ci_high, dtype=float)
    p = np.asarray(adjusted_p, dtype=float)
    if not (s.shape == low.shape == high.shape) or p.shape != (s.size, s.size):
        raise ValueError("rank_bands needs equal-length scores and CIs and an (n, n) adjusted_p matrix")
    bands = np.zeros(s.size, dtype=int)
    band = 0
    for leader in np.argsort(-s, kind="stable"):
        if bands[leader]:
            continue
        band += 1
        bands[leader] = band
        for other in np.flatnonzero(bands == 0):
            overlaps = low[other] <= high[leader] and low[leader] <= high[other]
            if overlaps and p[leader, other] >= alpha:
                bands[other] = band
    return bands


def mcnemar_exact(baseline_correct: Sequence[bool], candidate_correct: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value for one binary outcome per problem in each run.

    Only discordant problems carry information: b solved by the baseline alone, c by the candidate alone.
    Under H0 each discordant problem goes either way with probability 1/2, so p = 2 P(Bin(b + c, 1/2) <=
    min(b, c)), capped at 1 (as statsmodels' `mcnemar(exact=True)`). This is the exact sign-flip test on
    d in {-1, 0, 1}, computed in integers so no permutation count bounds it.
    """
    a = np.asarray(baseline_correct, dtype=bool).reshape(-1)
    b = np.asarray(candidate_correct, dtype=bool).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"mcnemar_exact needs two equal-length, non-empty outcome arrays, got {a.size} and {b.size}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    m = only_a + only_b
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**m)


def minimum_detectable_effect(differences: Sequence[float] | np.ndarray, alpha: float = 0.05,
                              power: float = MDE_POWER) -> float:
    """The smallest true mean difference a two-sided level-alpha test on these N paired differences detects
    with the given power: (z_{1-alpha/2} + z_power) sd(d) / sqrt(N) (normal approximation, statistics.md).

    It uses the observed spread, so it says what size of change this run's size and noise could have seen.
    """
    d = np.asarray(differences, dtype=float).reshape(-1)
    if d.size < 2:
        return float("inf")
    z = NormalDist()
    return float((z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * d.std(ddof=1) / math.sqrt(d.size))


def mean_with_ci(per_seed: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """(mean, CI low, CI high) of a score over problems: one seed bootstraps problems; several use the
    two-level bootstrap (seeds, then problems)."""
    mean = float(np.mean([np.mean(s) for s in per_seed]))
    low, high = bootstrap_ci(per_seed[0]) if len(per_seed) == 1 else two_level_bootstrap_ci(per_seed)
    return mean, low, high


def bands_from_tests(p_value, summaries: Sequence[tuple[float, float, float]], alpha: float = 0.05) -> np.ndarray:
    """Rank bands of several runs from `p_value(i, j)`, a two-sided test of runs i and j (symmetric, so it is asked
    once per unordered pair), and their (mean, CI low, CI high): each potential leader's comparisons with all
    others form one Holm family. `rank_bands` reads only a leader's row, but which runs lead is decided inside
    it, so every row is filled."""
    size = len(summaries)
    raw = np.ones((size, size))
    for i in range(size):
        for j in range(i + 1, size):
            raw[i, j] = raw[j, i] = p_value(i, j)
    adjusted = np.ones((size, size))
    for i in range(size):
        others = [j for j in range(size) if j != i]
        if others:
            adjusted[i, others] = holm_adjust(raw[i, others])
    return rank_bands([m for m, _, _ in summaries], [lo for _, lo, _ in summaries], [hi for _, _, hi in summaries],
                      adjusted, alpha=alpha)
