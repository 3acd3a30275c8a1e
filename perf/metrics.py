"""Timing figures for harness.metrics at evaluation scale; prints numbers, asserts nothing.

    python -m perf.metrics    # from the repository root

pass@k is computed for every problem and every k in a report, and exact maj@k for every problem, so both
must stay well under a second per task. Figures are single-threaded wall-clock medians of a few repeats.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from harness.metrics import (
    maj_at_k,
    maj_at_k_curve,
    maj_at_k_monte_carlo,
    pass_at_k,
    pass_at_k_per_problem,
)


def timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def realistic_clusters(n: int, rng: np.random.Generator) -> tuple[list[int], list[bool]]:
    """A mid-difficulty problem: ~10% no answer, a dominant correct answer, a heavy tail of wrong ones."""
    voting = n - int(rng.binomial(n, 0.1))
    weights = 1.0 / np.arange(1, 40) ** 1.3  # Zipf-like answer popularity
    counts = rng.multinomial(voting, weights / weights.sum())
    sizes = [int(s) for s in counts if s > 0]
    correct = [i == 0 for i in range(len(sizes))]
    return sizes, correct


def main() -> None:
    rng = np.random.default_rng(0)
    problems, n = 500, 1024
    c = rng.integers(0, n + 1, size=problems)

    every_k = timed(lambda: [pass_at_k_per_problem(n, c, k) for k in range(1, n + 1)])
    powers = [2**i for i in range(11)]
    power_k = timed(lambda: [pass_at_k_per_problem(n, c, k) for k in powers])
    scalar = timed(lambda: [pass_at_k(n, int(ci), 512) for ci in c], repeats=1)
    print(f"pass@k, {problems} problems x n={n}:")
    print(f"  vectorised, every k=1..{n}:         {every_k * 1e3:8.1f} ms")
    print(f"  vectorised, k in 1,2,4,...,1024:    {power_k * 1e3:8.1f} ms")
    print(f"  scalar pass_at_k loop, k=512 only:  {scalar * 1e3:8.1f} ms")

    for n in (64, 256):
        cases = [realistic_clusters(n, rng) for _ in range(10)]
        clusters = np.mean([len(s) for s, _ in cases])
        share = np.mean([s[0] / n for s, _ in cases])
        single = timed(lambda cases=cases, n=n: [maj_at_k(s, f, n, n // 4) for s, f in cases])
        curve = timed(lambda cases=cases, n=n: [maj_at_k_curve(s, f, n, range(1, n + 1)) for s, f in cases])
        print(f"exact maj@k, n={n} ({clusters:.0f} clusters, correct share {share:.2f}), per problem:")
        print(f"  one k (k=n/4):                      {single / len(cases) * 1e3:8.1f} ms")
        print(f"  every k=1..n in one call:           {curve / len(cases) * 1e3:8.1f} ms")

    worst = ([1] * 256, [True] + [False] * 255)  # all answers distinct: the tie axis is as long as it gets
    worst_time = timed(lambda: maj_at_k_curve(*worst, 256, range(1, 257)))
    print(f"exact maj@k, n=256 all singletons, every k: {worst_time * 1e3:8.1f} ms")
    sizes, correct = realistic_clusters(1024, rng)
    mc = timed(lambda: maj_at_k_monte_carlo(sizes, correct, 1024, 4))
    value, se = maj_at_k_monte_carlo(sizes, correct, 1024, 4)
    print(f"Monte Carlo maj@4, n=1024, 20000 subsets: {mc * 1e3:8.1f} ms (estimate {value:.4f} +- {se:.4f})")


if __name__ == "__main__":
    main()
