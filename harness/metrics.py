"""Per-problem estimators, exactly as docs/statistics.md defines them; pure numpy, no harness state.

`pass_at_k`, `pass_at_k_per_problem`, `maj_at_k` (exact expectation over all size-k subsets, never "the first
k samples"), `maj_at_k_monte_carlo`, `maj_at_k_auto`, and `mean_at_n` across problems. What is inferred from
them (intervals, tests, multiplicity, bands) is in `harness.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
