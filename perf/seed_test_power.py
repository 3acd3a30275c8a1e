"""How often the leaderboard's variant test calls two variants different when they are the same algorithm (type-I
error, an A/A test) and how often it detects a real difference (power), by simulation of the test itself
(`harness.leaderboard.compare_lines` on simulated rows, i.e. `harness.stats.seed_aware_test`), with training-seed
variance drawn at the level measured on the sandbox.

Each training run draws every problem's solve rate as
    logit p_js = logit b_j + delta_v + u_s + e_js,    u_s ~ N(0, tau^2),  e_js ~ N(0, sigma_e^2),
b_j from Beta(0.6, 0.6) (the U-shaped difficulty of math benchmarks), u_s the run's overall luck, e_js how the run
did on problem j beyond it; then n samples per problem are drawn at p_js, as the evaluation draws them. tau is set
so that one run's pass@1 has the seed-to-seed SD given (`--seed-sd`, points: the sandbox's measured SD, which
already holds the evaluation noise). delta_v moves variant A's mean pass@1 by the effect asked for (B's is 0).

Beside it, the test the leaderboard used before (a paired sign-flip test over problems of the seed-averaged
scores, `stats.paired_test`) on the same simulated runs: it leaves seed variance out, and its type-I error shows
what that costs.

    python perf/seed_test_power.py [--seed-sd 1.8] [--sims 2000] [--problems 240] [--n 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness import stats
from harness.leaderboard import LabelLine, Row, compare_lines

SEEDS = (3, 5, 10)
EFFECTS = (0.0, 2.0, 3.0)  # true difference A - B, points of pass@1
INTERACTION_SD = 0.3  # sigma_e, logits: runs differ per problem too, not only by a common shift (ours)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def run_scores(rng, base_logits: np.ndarray, shift: float, tau: float, runs: int, n: int) -> np.ndarray:
    """[runs, problems] per-problem pass@1 of `runs` simulated training runs."""
    luck = rng.normal(0, tau, size=(runs, 1))
    detail = rng.normal(0, INTERACTION_SD, size=(runs, base_logits.size))
    return rng.binomial(n, _expit(base_logits + shift + luck + detail)) / n


def calibrate_tau(base_logits: np.ndarray, seed_sd: float, n: int, rng) -> float:
    """tau whose runs' pass@1 SD is `seed_sd` (a fraction), by bisection on 4,000 simulated runs."""
    low, high = 0.0, 2.0
    for _ in range(30):
        tau = (low + high) / 2
        sd = run_scores(np.random.default_rng(7), base_logits, 0.0, tau, 4000, n).mean(axis=1).std()
        low, high = (tau, high) if sd < seed_sd else (low, tau)
    return (low + high) / 2


def shift_for(base_logits: np.ndarray, effect: float) -> float:
    """The logit shift that raises the mean solve rate by `effect` (a fraction), by bisection."""
    target = _expit(base_logits).mean() + effect
    low, high = -3.0, 3.0
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if _expit(base_logits + mid).mean() < target else (low, mid)
    return (low + high) / 2


def line(label: str, scores: np.ndarray) -> LabelLine:
    rows = [Row(label, label, s, None, {}, {}, None, []) for s in range(scores.shape[0])]
    return LabelLine(label, rows, scores, {})


def simulate(seeds: int, effect: float, tau: float, base_logits: np.ndarray, n: int, sims: int, old: bool,
             seed: int) -> tuple[int, int]:
    """(share called different by the seed-aware test, by the old checkpoint test) out of `sims` pairs."""
    rng = np.random.default_rng(seed)
    shift = shift_for(base_logits, effect / 100)
    hits = old_hits = 0
    for _ in range(sims):
        a = run_scores(rng, base_logits, shift, tau, seeds, n)
        b = run_scores(rng, base_logits, 0.0, tau, seeds, n)
        hits += compare_lines(line("a", a), line("b", b)).p_value < 0.05
        if old:
            old_hits += stats.paired_test(a.mean(axis=0), b.mean(axis=0), num_permutations=2000,
                                          num_resamples=1).p_value < 0.05
    return hits, old_hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed-sd", type=float, default=1.8, help="SD of one run's pass@1 across seeds, points")
    parser.add_argument("--sims", type=int, default=2000, help="simulated pairs of variants per cell")
    parser.add_argument("--problems", type=int, default=240)
    parser.add_argument("--n", type=int, default=8, help="eval samples per problem")
    args = parser.parse_args()
    started = time.time()
    rng = np.random.default_rng(0)
    base_logits = _logit(rng.beta(0.6, 0.6, size=args.problems))
    tau = calibrate_tau(base_logits, args.seed_sd / 100, args.n, rng)
    print(f"{args.problems} problems x {args.n} samples, seed-to-seed SD of a run's pass@1 {args.seed_sd:g} points "
          f"(tau {tau:.3f} logits, problem x seed SD {INTERACTION_SD} logits); alpha 0.05; {args.sims} simulated "
          "pairs of variants per cell")
    print(f"{'seeds a side':>12} {'true Δ':>7}  {'called different, seed-aware % [95% CI]':<42} "
          f"{'old checkpoint test %':>21}")
    for seeds in SEEDS:
        for effect in EFFECTS:
            old = effect == 0  # the old test's power is moot where its type-I error is off
            hits, old_hits = simulate(seeds, effect, tau, base_logits, args.n, args.sims, old,
                                      seed=100 * seeds + int(effect))
            low, high = stats.wilson_interval(hits, args.sims)
            old_cell = f"{100 * old_hits / args.sims:.1f}" if old else "-"
            print(f"{seeds:>12} {effect:>+7.1f}  {100 * hits / args.sims:5.1f} [{100 * low:4.1f}, {100 * high:4.1f}]"
                  f"{'':<26} {old_cell:>21}", flush=True)
    print("Seeds per variant for power 0.8 at this SD (stats.seeds_for_power): "
          + ", ".join(f"Δ {e:g}: {stats.seeds_for_power(args.seed_sd / 100, e / 100)}" for e in (1.0, 2.0, 3.0)))
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
