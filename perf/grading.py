"""Grading throughput: GradingPool against calling math-verify once per sample, on a MATH500-shaped workload.

A sampled model repeats itself: per problem it produces the gold, a few re-spellings of it and a few wrong
answers, with skewed frequencies, plus some completions without an answer. This script simulates that
(MATH500 x 64 samples by default, seeded), grades it through the pool (memoised, deduplicated, chunked,
in worker processes), and compares with the serial baseline: extract, then math-verify parse + verify
in this process for every sample. The baseline runs on the first --baseline-problems problems only (all
their samples, so the repeat structure math-verify's own parse cache sees is kept) and is extrapolated
per sample; the verdicts on those samples must be identical.

    python perf/grading.py [--problems 500] [--samples 64] [--baseline-problems 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import grading  # noqa: E402
from harness.extraction import extract  # noqa: E402
from harness.task import TASKS  # noqa: E402

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def respellings(gold: str) -> list[str]:
    """Forms a model writes for the same answer; math-verify should accept them (not all it does)."""
    forms = [gold.replace("\\frac", "\\dfrac"), re.sub(r"\s+", "", gold),
             gold.replace("\\left", "").replace("\\right", ""), f"{gold} "]
    return list(dict.fromkeys(f for f in forms if f != gold))


def wrong_answers(gold: str, others: list[str], rng: random.Random) -> list[str]:
    bumped = re.sub(r"\d", lambda m: str((int(m[0]) + 1) % 10), gold) if re.search(r"\d", gold) else gold + "+1"
    return [bumped, f"2{gold}" if gold[:1].isdigit() else f"-{gold}", *rng.sample(others, 3)]


def simulate(golds: list[str], samples: int, seed: int) -> list[list[str]]:
    """Per problem, `samples` completions drawn with skewed frequencies from a small answer pool."""
    rng = random.Random(seed)
    completions = []
    for gold in golds:
        accuracy = rng.random()
        right = [gold, *respellings(gold)]
        wrong = wrong_answers(gold, golds, rng)
        pool = right + wrong + [None]
        # Zipf-like within the right and the wrong answers; a 3% chance of no answer at all.
        weights = [accuracy * 0.97 / (i + 1) ** 1.5 for i in range(len(right))]
        weights += [(1 - accuracy) * 0.97 / (i + 1) ** 1.5 for i in range(len(wrong))] + [0.03]
        drawn = rng.choices(pool, weights=weights, k=samples)
        completions.append([f"Let me think step by step... so the answer is \\boxed{{{a}}}." if a is not None
                            else "Let me think step by step... and I ran out of tokens" for a in drawn])
    return completions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR", DEFAULT_DATA_DIR))
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--baseline-problems", type=int, default=40)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    task = TASKS.get("math500")
    problems = task.load(args.data_dir).problems[: args.problems]
    completions = simulate([p.golds[0] for p in problems], args.samples, args.seed)
    rows = [(p, c) for p, per_problem in zip(problems, completions, strict=True) for c in per_problem]
    unique = len({(p.golds, extract(c, task.answer_format)) for p, c in rows})
    print(f"workload: {len(problems)} problems x {args.samples} samples = {len(rows)} samples, "
          f"{unique} unique (gold, answer) pairs; cpu_count={os.cpu_count()}")

    started = time.perf_counter()
    with grading.GradingPool(workers=args.workers) as pool:
        pool.grade([("math", ("1",), "1")])
        startup = time.perf_counter() - started
        started = time.perf_counter()
        answers = [extract(c, task.answer_format) for _, c in rows]
        pooled = pool.grade([(task.grader, p.golds, a) for (p, _), a in zip(rows, answers, strict=True)])
        pooled_s = time.perf_counter() - started
        stats = dict(pool.stats)
    print(f"pool ({pool.num_workers} workers): {len(rows) / pooled_s:,.0f} samples/s "
          f"({pooled_s:.1f} s; worker start-up {startup:.1f} s more, "
          f"{len(rows) / (pooled_s + startup):,.0f} samples/s with it); stats {stats}")

    baseline_rows = [(i, p, c) for i, (p, c) in enumerate(rows) if i < args.baseline_problems * args.samples]
    started = time.perf_counter()
    serial = []
    for _, problem, completion in baseline_rows:
        grading.clear_caches()  # our parse memo off: one math-verify parse + verify per sample
        serial.append(grading.grade(task.grader, problem.golds, extract(completion, task.answer_format)))
    serial_s = time.perf_counter() - started
    serial_rate = len(baseline_rows) / serial_s
    print(f"serial math-verify, 1 process: {serial_rate:,.0f} samples/s on the first {args.baseline_problems} "
          f"problems ({len(baseline_rows)} samples, {serial_s:.1f} s); extrapolated to the whole workload: "
          f"{len(rows) / serial_rate:.0f} s")
    mismatches = [i for (i, _, _), verdict in zip(baseline_rows, serial, strict=True) if pooled[i] != verdict]
    print(f"verdicts identical on the {len(baseline_rows)} baseline samples: {not mismatches}"
          + (f" (mismatches at {mismatches[:10]})" if mismatches else ""))
    print(f"accuracy of the simulated model: {sum(pooled) / len(pooled):.3f}")
    print(f"speed-up: {len(rows) / pooled_s / serial_rate:.1f}x "
          f"({len(rows) / (pooled_s + startup) / serial_rate:.1f}x counting worker start-up)")
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
