"""Grading throughput on adversarial answers: what a hostile or broken model can make the grader spend.

Seeded answers of each kind that once cost seconds to minutes each (exponent towers, huge exponents, 100k
characters, deep \\frac chains, unbalanced braces, huge factorials, nested radicals) against MATH500 golds,
graded through the pool with its default limits. Prints seconds per answer overall and per kind, and how
many answers were screened out, retried and timed out.

    python perf/grading_adversarial.py [--per-kind 100]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.grading_pool import GradingPool  # noqa: E402
from harness.task import TASKS  # noqa: E402

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def adversarial(kind: str, rng: random.Random) -> str:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    if kind == "tower":
        return f"{a}^{{{b}^{{{a}^{{{b}}}}}}}"
    if kind == "huge exponent":
        return f"(x+{a})^{{{rng.randint(10_000, 10_000_000)}}}"
    if kind == "100k characters":
        return "1+" * 50_000 + "1"
    if kind == "deep fractions":
        text = str(a)
        for _ in range(rng.randint(30, 60)):
            text = f"\\frac{{1}}{{{b}+{text}}}"
        return text
    if kind == "unbalanced braces":
        return f"\\frac{{{a}}}{{{b}" + "{" * rng.randint(1, 5)
    if kind == "factorial":
        return f"{rng.randint(10_000, 100_000)}!"
    if kind == "nested radicals":
        text = str(a)
        for _ in range(rng.randint(10, 25)):
            text = f"\\sqrt{{{b}+{text}}}"
        return text
    raise ValueError(kind)


KINDS = ("tower", "huge exponent", "100k characters", "deep fractions", "unbalanced braces", "factorial",
         "nested radicals")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR", DEFAULT_DATA_DIR))
    parser.add_argument("--per-kind", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    golds = [p.golds for p in TASKS.get("math500").load(args.data_dir).problems]
    print(f"{args.per_kind} answers per kind, against MATH500 golds; pool defaults (limit 5 s, retry 20 s)")
    total_time, total = 0.0, 0
    with GradingPool() as pool:
        pool.start()  # workers started outside the timings
        for kind in KINDS:
            requests = [("math", rng.choice(golds), adversarial(kind, rng)) for _ in range(args.per_kind)]
            before = dict(pool.stats)
            started = time.perf_counter()
            verdicts = pool.grade(requests)
            elapsed = time.perf_counter() - started
            total_time, total = total_time + elapsed, total + len(requests)
            moved = {key: pool.stats[key] - before[key] for key in ("screened", "retried", "timeouts")}
            print(f"{kind:<18} {elapsed / len(requests):8.4f} s/answer   right {sum(verdicts):3d}   screened "
                  f"{moved['screened']:3d}   retried {moved['retried']:3d}   timed out {moved['timeouts']:3d}",
                  flush=True)
    print(f"all {total} answers: {total_time / total:.4f} s/answer ({total_time:.0f} s)")


if __name__ == "__main__":
    main()
