"""Grading throughput: GradingPool against calling math-verify once per sample, on a MATH500-shaped workload.

A sampled model repeats itself: per problem it produces the gold, a few re-spellings of it and a few wrong
answers, with skewed frequencies, plus some completions without an answer. This script simulates that
(MATH500 x 64 samples by default, seeded), grades it through the pool (memoised, deduplicated, chunked,
in worker processes), and compares with the serial baseline: math-verify parse + verify of every
completion, one after the other, in this process. The baseline runs on the whole workload by default
(about 40 s); --baseline-problems N runs it on the first N problems only (all their samples, so the repeat
structure math-verify's own parse cache sees is kept) and extrapolates per sample, which overstates the
serial cost (the first problems are slower than the average). The verdicts must be identical.

    python perf/grading.py [--problems 500] [--samples 64] [--baseline-problems N] [--workers 2]
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
from harness.grading_pool import GradingPool  # noqa: E402
from harness.task import TASKS  # noqa: E402

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def respellings(gold: str) -> list[str]:
    """Forms a model writes for the same answer; math-verify should accept them (not all it does)."""
    forms = [gold.replace("\\frac", "\\dfrac"), re.sub(r"\s+", "", gold),
             gold.replace("\\left", "").replace("\\right", ""), f"{gold} "]
    return list(dict.fromkeys(f for f in forms if f != gold))


def wrong_answers(gold: str, others: list[str], rng: random.Random) -> list[str]:
    bumped = re.sub(r"\d", lambda m: str((int(m[0]) + 1) % 10), gold)
    bumped = bumped if bumped != gold else f"{gold}+1"
    return [bumped, f"2{gold}" if gold[:1].isdigit() else f"-{gold}", *rng.sample(others, 3)]


def simulate(problems: list, samples: int, seed: int) -> list[list[str]]:
    """Per problem, `samples` completions drawn with skewed frequencies from a small answer pool.

    A completion is the problem's reference solution (a realistic length and LaTeX density) with its
    final \\boxed{} holding the drawn answer; a completion without an answer is the solution cut off
    before its box, as a truncated generation would be.
    """
    rng = random.Random(seed)
    golds = [p.golds[0] for p in problems]
    completions = []
    for problem, gold in zip(problems, golds, strict=True):
        accuracy = rng.random()
        right = [gold, *respellings(gold)]
        wrong = wrong_answers(gold, golds, rng)
        pool = right + wrong + [None]
        # Zipf-like within the right and the wrong answers; a 3% chance of no answer at all.
        weights = [accuracy * 0.97 / (i + 1) ** 1.5 for i in range(len(right))]
        weights += [(1 - accuracy) * 0.97 / (i + 1) ** 1.5 for i in range(len(wrong))] + [0.03]
        reasoning = problem.solution[: problem.solution.rfind("\\boxed")]
        drawn = rng.choices(pool, weights=weights, k=samples)
        completions.append([reasoning if a is None else f"{reasoning}\\boxed{{{a}}}." for a in drawn])
    return completions


def math_verify_once(gold: str, completion: str) -> bool:
    """The serial baseline, as variants.md 1.1 writes it: parse the gold, parse the whole completion with
    the prediction settings, verify (gold first). math-verify's own LaTeX parse cache stays on, as it
    would for anyone calling it."""
    from math_verify import parse, verify

    return verify(parse("\\boxed{" + gold + "}"),
                  parse(completion, extraction_config=[grading.answer_extraction_config()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR", DEFAULT_DATA_DIR))
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--baseline-problems", type=int, default=None, help="default: all")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    task = TASKS.get("math500")
    problems = task.load(args.data_dir).problems[: args.problems]
    completions = simulate(problems, args.samples, args.seed)
    rows = [(p, c) for p, per_problem in zip(problems, completions, strict=True) for c in per_problem]
    unique = len({(p.golds, extract(c, task.answer_format)) for p, c in rows})
    length = sum(len(c) for _, c in rows) / len(rows)
    print(f"workload: {len(problems)} problems x {args.samples} samples = {len(rows)} samples of "
          f"{length:.0f} characters on average, {unique} unique (gold, answer) pairs; "
          f"cpu_count={os.cpu_count()}")

    started = time.perf_counter()
    with GradingPool(workers=args.workers) as pool:
        pool.start()
        startup = time.perf_counter() - started
        pids = [worker.process.pid for worker in pool._workers]  # perf only: the workers' CPU time
        workers_cpu, parent_cpu = cpu_seconds(pids), time.process_time()
        started = time.perf_counter()
        answers = [extract(c, task.answer_format) for _, c in rows]
        extract_s = time.perf_counter() - started
        pooled = pool.grade([(task.grader, p.golds, a) for (p, _), a in zip(rows, answers, strict=True)])
        pooled_s = time.perf_counter() - started
        workers_cpu, parent_cpu = cpu_seconds(pids) - workers_cpu, time.process_time() - parent_cpu
        stats = dict(pool.stats)
    print(f"pool ({pool.num_workers} workers): {len(rows) / pooled_s:,.0f} samples/s "
          f"({pooled_s:.1f} s, of which extraction {extract_s:.1f} s; worker start-up {startup:.1f} s more, "
          f"{len(rows) / (pooled_s + startup):,.0f} samples/s with it); CPU: parent {parent_cpu:.1f} s + "
          f"workers {workers_cpu:.1f} s; {stats}")

    baseline_problems = len(problems) if args.baseline_problems is None else args.baseline_problems
    baseline_rows = [(i, p, c) for i, (p, c) in enumerate(rows) if i < baseline_problems * args.samples]
    started, serial_cpu = time.perf_counter(), time.process_time()
    serial = [math_verify_once(problem.golds[0], completion) for _, problem, completion in baseline_rows]
    serial_s, serial_cpu = time.perf_counter() - started, time.process_time() - serial_cpu
    scale = len(rows) / len(baseline_rows)
    serial_rate = len(baseline_rows) / serial_s
    print(f"serial math-verify, 1 process: {serial_rate:,.0f} samples/s on the first "
          f"{baseline_problems} "
          f"problems ({len(baseline_rows)} samples, {serial_s:.1f} s, CPU {serial_cpu:.1f} s); extrapolated "
          f"to the whole workload: {serial_s * scale:.0f} s, CPU {serial_cpu * scale:.0f} s")
    mismatches = [i for (i, _, _), verdict in zip(baseline_rows, serial, strict=True) if pooled[i] != verdict]
    print(f"verdicts identical on the {len(baseline_rows)} baseline samples: {not mismatches}"
          + (f" (mismatches at {mismatches[:10]})" if mismatches else ""))
    print(f"accuracy of the simulated model: {sum(pooled) / len(pooled):.3f}")
    print(f"speed-up, wall clock on this machine as loaded now: {len(rows) / pooled_s / serial_rate:.1f}x "
          f"({len(rows) / (pooled_s + startup) / serial_rate:.1f}x counting worker start-up)")
    # Wall clock on a shared machine depends on who else runs; CPU time does not. With the parent and the
    # workers spread over min(cpu_count, workers + 1) free cores, the pool's wall time is about its CPU
    # time divided by that, never less than the busiest single process.
    cores = min(os.cpu_count() or 1, pool.num_workers + 1)
    pool_cpu = parent_cpu + workers_cpu
    idle_wall = max(pool_cpu / cores, parent_cpu, workers_cpu / pool.num_workers)
    print(f"speed-up in CPU time: {serial_cpu * scale / pool_cpu:.1f}x; estimated wall-clock speed-up on an "
          f"idle machine with {cores} cores: {serial_cpu * scale / idle_wall:.1f}x")
    if mismatches:
        sys.exit(1)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of live processes, from /proc (Linux); 0 where unavailable."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


if __name__ == "__main__":
    main()
