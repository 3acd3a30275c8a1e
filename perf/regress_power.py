"""How often `harness regress` fails a candidate that did not get worse (type-I error), and how often it catches
one that did (power), by simulation of the gate itself (`harness.regress.compare_scores`).

Each simulated pair draws every problem's samples for baseline and candidate independently at the problem's
true solve rate (rates from Beta(0.6, 0.6): the U-shaped difficulty of math benchmarks, mean 0.5); under a
drop of x points the candidate's rates are scaled so their mean is x lower. One comparison per pair, so Holm
does not enter. Prints, per benchmark shape, the share of pairs judged regression / inconclusive / pass
with a 95% Wilson interval on the regression share.

    python perf/regress_power.py [--null-pairs 1000] [--pairs 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness import stats
from harness.regress import DEFAULT_MARGIN_POINTS, compare_scores, judge

SHAPES = (  # (name, problems, samples per problem)
    ("sandbox 240 x 8", 240, 8),
    ("MATH500 greedy 500 x 1", 500, 1),
    ("GSM8K-size 1000 x 1", 1000, 1),
    ("AIME 30 x 32", 30, 32),
    ("small 25 x 4", 25, 4),
)
DROPS = (0.0, 2.0, 3.0, 5.0)  # true drop, points


def simulate(problems: int, n: int, drop: float, margin: float, pairs: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    rates = rng.beta(0.6, 0.6, size=problems)
    candidate_rates = np.clip(rates * (1 - drop / 100 / rates.mean()), 0, 1)
    counts = {"regression": 0, "inconclusive": 0, "pass": 0}
    for i in range(pairs):
        baseline = rng.binomial(n, rates) / n
        candidate = rng.binomial(n, candidate_rates) / n
        comparison = compare_scores("sim", "pass@1", baseline, candidate, n == 1, margin / 100, seed=i)
        judge([comparison])
        counts[comparison.verdict] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--null-pairs", type=int, default=1000, help="pairs per cell with no true drop")
    parser.add_argument("--pairs", type=int, default=300, help="pairs per cell with a true drop")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN_POINTS, help="points (default: the gate's)")
    args = parser.parse_args()
    started = time.time()
    print(f"alpha 0.05, margin {args.margin:g} points; {args.null_pairs} simulated pairs per cell without a drop, "
          f"{args.pairs} with one")
    print(f"{'shape':<24} {'true drop':>9}  {'regression % [95% CI]':<24} {'inconclusive %':>14} {'pass %':>7}")
    for s, (name, problems, n) in enumerate(SHAPES):
        for drop in DROPS:
            pairs = args.pairs if drop else args.null_pairs
            counts = simulate(problems, n, drop, args.margin, pairs, seed=1000 * s + int(10 * drop))
            low, high = stats.wilson_interval(counts["regression"], pairs)
            print(f"{name:<24} {drop:>8.1f}  {100 * counts['regression'] / pairs:5.1f} "
                  f"[{100 * low:4.1f}, {100 * high:4.1f}]{'':<8} {100 * counts['inconclusive'] / pairs:14.1f} "
                  f"{100 * counts['pass'] / pairs:7.1f}", flush=True)
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
