"""Scores and statistics, exactly as docs/statistics.md defines them; pure numpy, no harness state.

Per problem: `pass_at_k`, `pass_at_k_per_problem`, `maj_at_k` (exact expectation over all size-k subsets,
never "the first k samples"), `maj_at_k_monte_carlo`, `maj_at_k_auto`. Across problems: `mean_at_n`,
`bootstrap_ci`, `two_level_bootstrap_ci`. Comparing runs: `paired_test`, `holm_adjust`, `rank_bands`.
Every random quantity takes a seed, so a report regenerates bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

EXACT_MAJ_MAX_N = 256  # above this `maj_at_k_auto` switches to Monte Carlo (statistics.md)
_FLOAT_SAFE_N = 1000  # C(n, k) <= 2**n must stay below float64's ~1.8e308
_CHUNK = 2000  # rows per vectorised chunk: bounds memory at a few tens of MB for n ~ 1000


# ---------------------------------------------------------------------------------------------- pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021) in the stable product form, so no huge binomials are formed."""
    _check_nck(n, c, k)
    if n - c < k:  # every size-k subset holds a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_per_problem(
    n: int | Sequence[int] | np.ndarray, c: Sequence[int] | np.ndarray, k: int
) -> np.ndarray:
    """pass@k for every problem at once; `n` may be one int or differ per problem.

    log prod_{i=n-c+1}^{n} (1 - k/i) is a difference of one cumulative sum of log1p(-k/i), so the cost is
    O(max n + problems) per k with no Python loop over problems or over i.
    """
    c = np.asarray(c, dtype=np.int64)
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), c.shape)
    if c.ndim != 1:
        raise ValueError(f"c must be 1-D (one count per problem), got shape {c.shape}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if c.size == 0:
        return np.zeros(0)
    if (c < 0).any() or (c > n).any():
        j = int(np.flatnonzero((c < 0) | (c > n))[0])
        raise ValueError(f"need 0 <= c <= n for every problem; problem {j} has c={c[j]}, n={n[j]}")
    if (n < k).any():
        j = int(np.flatnonzero(n < k)[0])
        raise ValueError(f"pass@{k} needs n >= k samples; problem {j} has n={n[j]}")
    # cum[i] = sum_{j=k+1}^{i} log1p(-k/j); terms j <= k are never used because n - c >= k there.
    i = np.arange(k + 1, int(n.max()) + 1)
    cum = np.concatenate([np.zeros(k + 1), np.cumsum(np.log1p(-k / i))])
    safe = n - c >= k
    log_prod = cum[n] - cum[np.where(safe, n - c, k)]
    return np.where(safe, -np.expm1(log_prod), 1.0)  # -expm1 keeps precision when pass@k is tiny


def mean_at_n(correct: np.ndarray | Sequence[Sequence[bool]]) -> float:
    """Task score mean@n: the mean over problems of each problem's fraction correct (rows may differ in n).

    Averaging per problem first means a problem with more samples does not weigh more; mean@n == pass@1.
    """
    rows = [np.asarray(r, dtype=float) for r in correct]
    if not rows or any(r.size == 0 for r in rows):
        raise ValueError("mean@n needs at least one problem and at least one sample per problem")
    return float(np.mean([r.mean() for r in rows]))


def _check_nck(n: int, c: int, k: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")


# ---------------------------------------------------------------------------------------------- maj@k


def _check_clusters(cluster_sizes, cluster_correct, n: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.asarray(cluster_sizes, dtype=np.int64).reshape(-1)
    correct = np.asarray(cluster_correct, dtype=bool).reshape(-1)
    if sizes.shape != correct.shape:
        raise ValueError(f"{sizes.size} cluster sizes but {correct.size} correctness flags")
    if (sizes < 1).any():
        raise ValueError(f"cluster sizes must be >= 1, got {sizes.tolist()}")
    if sizes.sum() > n:
        raise ValueError(f"clusters hold {int(sizes.sum())} samples but n={n}")
    return sizes, correct


@lru_cache(maxsize=8)
def _binomial_table(n: int) -> np.ndarray:
    """table[s, a] = C(s, a) as float64 for 0 <= s, a <= n; Pascal's rule only adds positives, so rounding
    grows by at most ~n ulp and never cancels."""
    table = np.zeros((n + 1, n + 1))
    table[:, 0] = 1.0
    for s in range(1, n + 1):
        table[s, 1:] = table[s - 1, 1:] + table[s - 1, :-1]
    table.setflags(write=False)
    return table


def maj_at_k_curve(
    cluster_sizes: Sequence[int], cluster_correct: Sequence[bool], n: int, ks: Sequence[int]
) -> np.ndarray:
    """Exact maj@k for several k in one pass (statistics.md): sum over correct clusters t and x of
    C(c_t, x) W(x, k - x) / C(n, k).

    W(x, m) is a product-of-polynomials DP over the other clusters that could reach x votes, with a second
    axis for the number of them that tie at exactly x (weight 1/(1 + ties) = uniform tie-breaking). Clusters
    smaller than x and the non-voting samples are unconstrained, so they fold into one binomial row by
    Vandermonde's identity instead of entering the DP. Every term is positive, so float64 loses nothing to
    cancellation (tests hold it to 1e-11 relative against exact rationals at n = 256).
    """
    sizes, correct = _check_clusters(cluster_sizes, cluster_correct, n)
    ks = np.asarray(ks, dtype=np.int64).reshape(-1)
    if ks.size == 0:
        return np.zeros(0)
    if (ks < 1).any() or (ks > n).any():
        raise ValueError(f"need 1 <= k <= n={n}, got ks={ks.tolist()}")
    if n > _FLOAT_SAFE_N:
        raise ValueError(f"exact maj@k is limited to n <= {_FLOAT_SAFE_N}; use maj_at_k_monte_carlo")
    table = _binomial_table(n)
    k_max = int(ks.max())
    non_voting = n - int(sizes.sum())
    out = np.zeros(ks.size)
    for t in np.flatnonzero(correct):
        others = np.delete(sizes, t)
        for x in range(1, min(int(sizes[t]), k_max) + 1):
            deg = k_max - x  # the others never need more than k_max - x samples
            rivals = others[others >= x]
            free = non_voting + int(others[others < x].sum())
            v = _tie_weighted_counts(rivals, x, deg, table)
            w = np.convolve(v, table[free, : deg + 1])[: deg + 1]  # add the unconstrained samples
            use = ks >= x
            out[use] += table[sizes[t], x] * w[ks[use] - x] / table[n, ks[use]]
    return out


def _tie_weighted_counts(rivals: np.ndarray, x: int, deg: int, table: np.ndarray) -> np.ndarray:
    """v[d] = sum over ways to take d samples from `rivals`, each rival <= x, of 1/(1 + rivals at x)."""
    max_ties = min(rivals.size, deg // x)
    state = np.zeros((max_ties + 1, deg + 1))  # state[j, d]: ways with j rivals tied at x, d samples used
    state[0, 0] = 1.0
    for s in rivals:
        new = np.zeros_like(state)
        for a in range(min(int(s), x - 1, deg) + 1):  # strictly fewer votes than x: no tie
            new[:, a:] += table[s, a] * state[:, : deg + 1 - a]
        if x <= deg and max_ties:  # exactly x votes: one more tie
            new[1:, x:] += table[s, x] * state[:-1, : deg + 1 - x]
        state = new
    return (state / np.arange(1, max_ties + 2)[:, None]).sum(axis=0)


def maj_at_k(cluster_sizes: Sequence[int], cluster_correct: Sequence[bool], n: int, k: int) -> float:
    """Exact maj@k: probability that a uniform size-k subset's majority answer (ties split uniformly,
    no votes scores 0) is correct. Samples outside every cluster (n - sum(sizes)) never vote."""
    return float(maj_at_k_curve(cluster_sizes, cluster_correct, n, [k])[0])


def maj_at_k_monte_carlo(
    cluster_sizes: Sequence[int],
    cluster_correct: Sequence[bool],
    n: int,
    k: int,
    num_subsets: int = 20000,
    seed: int = 0,
) -> tuple[float, float]:
    """Seeded Monte Carlo maj@k for large n: returns (estimate, standard error).

    A subset's vote counts are one multivariate hypergeometric draw, so no subset is materialised. A tie is
    scored by its expected outcome (correct clusters at the top / clusters at the top) rather than a coin
    flip: same expectation, smaller variance.
    """
    sizes, correct = _check_clusters(cluster_sizes, cluster_correct, n)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if num_subsets < 2:
        raise ValueError(f"num_subsets must be >= 2 to give a standard error, got {num_subsets}")
    if sizes.size == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    colors = np.append(sizes, n - sizes.sum())  # last colour: the non-voting samples
    scores = np.empty(num_subsets)
    for start in range(0, num_subsets, _CHUNK):
        stop = min(start + _CHUNK, num_subsets)
        votes = rng.multivariate_hypergeometric(colors, k, size=stop - start)[:, :-1]
        top = votes.max(axis=1)
        at_top = votes == top[:, None]
        share = (at_top & correct).sum(axis=1) / at_top.sum(axis=1)
        scores[start:stop] = np.where(top > 0, share, 0.0)
    return float(scores.mean()), float(scores.std(ddof=1) / math.sqrt(num_subsets))


def maj_at_k_auto(
    cluster_sizes: Sequence[int],
    cluster_correct: Sequence[bool],
    n: int,
    k: int,
    exact_max_n: int = EXACT_MAJ_MAX_N,
    num_subsets: int = 20000,
    seed: int = 0,
) -> tuple[float, float]:
    """(maj@k, standard error): exact with se 0.0 for n <= exact_max_n, otherwise seeded Monte Carlo."""
    if n <= exact_max_n:
        return maj_at_k(cluster_sizes, cluster_correct, n, k), 0.0
    return maj_at_k_monte_carlo(cluster_sizes, cluster_correct, n, k, num_subsets=num_subsets, seed=seed)


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
    num_resamples: int = 2000,
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
    num_resamples: int = 2000,
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
    num_permutations: int = 10000,
    num_resamples: int = 2000,
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
