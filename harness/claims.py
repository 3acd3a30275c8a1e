"""Each paper's signature claims (`harness.claim.Claim`), as statements over eval metrics or training diagnostics
against a baseline, tested at the level they are made: training runs (`stats.seed_aware_test`, seed-to-seed
variance included).

A variant declares its claims (`claims` on its trainer class, listed by `harness list variants` with the paper's
section); the leaderboard's "Paper claims on this setup" gives each a verdict:

- supported: the 95% interval of (variant - baseline) lies wholly on the claimed side (for "not lower", above
  minus the margin);
- contradicted: it lies wholly on the other side;
- inconclusive: neither, with the minimum detectable effect at 80% power for these seeds, (t_0.975 + t_0.8) * SE;
- untested: fewer than two training runs a side, or the rows lack what the measure reads.

A measure is either per problem (eval scores: the test carries the variant x problem term) or one number per run
(training diagnostics, lengths and marker rates over a run's samples).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness import stats
from harness.claim import Claim
from harness.markers import marker_count
from harness.metrics import pass_at_k

# The share of training steps a "late" training diagnostic averages over: the end of the run, where a mechanism
# has had time to act.
LATE = 0.25


@dataclass(frozen=True)
class Measure:
    description: str
    unit: str
    scale: float  # displayed value = raw * scale (fractions as points)
    per_problem: Callable | None = None  # (row, task, context) -> [problems] scores
    per_run: Callable | None = None  # (row, task) -> float, or None when the row lacks it


def _samples(row, task: str) -> list[dict]:
    return _read_samples(str(row.path / "eval" / "samples.jsonl"), task)


@lru_cache(maxsize=256)
def _read_samples(path: str, task: str) -> list[dict]:
    if not Path(path).is_file():
        return []
    records = (json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
    return [r for r in records if r.get("task") == task and r.get("status", "ok") == "ok"]


def _per_problem(row, task: str) -> dict[str, dict]:
    return row.metrics["tasks"][task]["per_problem"]


def _pass_at(k_of: Callable[[object, str], int]):
    def score(row, task: str, context: dict) -> np.ndarray:
        k = k_of(row, task)
        return np.array([pass_at_k(p["n"], p["c"], k) for p in _per_problem(row, task).values()])
    return score


def _largest_k(row, task: str) -> int:
    return max(int(k) for k in row.metrics["tasks"][task]["pass@k"])


def _hard_pass1(row, task: str, context: dict) -> np.ndarray:
    scores = _pass_at(lambda *_: 1)(row, task, context)
    return scores[context["hard"]]


def _distinct_answers(row, task: str, context: dict) -> np.ndarray:
    answers: dict[str, set] = {pid: set() for pid in _per_problem(row, task)}
    for sample in _samples(row, task):
        if sample.get("answer") is not None and sample["problem_id"] in answers:
            answers[sample["problem_id"]].add(sample["answer"])
    if not any(answers.values()):
        raise LookupError("no stored samples")
    return np.array([len(found) for found in answers.values()], dtype=float)


def _sample_mean(value: Callable[[dict], float | None], keep: Callable[[dict], bool]):
    def per_run(row, task: str) -> float | None:
        values = [v for s in _samples(row, task) if keep(s) and (v := value(s)) is not None]
        return float(np.mean(values)) if values else None
    return per_run


def _has_marker(sample: dict) -> float:
    return float(marker_count(sample.get("completion") or "") > 0)


def _late(key: str):
    """A training diagnostic's mean over the last LATE of the run's steps."""
    def per_run(row, task: str) -> float | None:
        values = [v for r in row.train_log if (v := r.get(key, (r.get("probes") or {}).get(key))) is not None]
        if not values:
            return None
        return float(np.mean(values[-max(1, math.ceil(LATE * len(values))):]))
    return per_run


def _length_growth(row, task: str) -> float | None:
    values = [r["response_length"] for r in row.train_log if r.get("response_length") is not None]
    if len(values) < 4:
        return None
    part = max(1, math.ceil(LATE * len(values)))
    return float(np.mean(values[-part:]) - np.mean(values[:part]))


MEASURES: dict[str, Measure] = {
    "pass@1": Measure("held-out pass@1", "pts", 100, per_problem=_pass_at(lambda *_: 1)),
    "pass@max-k": Measure("held-out pass@k at the largest k evaluated", "pts", 100, per_problem=_pass_at(_largest_k)),
    "hard pass@1": Measure("held-out pass@1 on the hardest third of problems (by the starting model's pass@1)",
                           "pts", 100, per_problem=_hard_pass1),
    "distinct answers": Measure("distinct final answers among a problem's n samples", "answers", 1,
                                per_problem=_distinct_answers),
    "wrong length": Measure("mean tokens of wrong held-out answers", "tokens", 1,
                            per_run=_sample_mean(lambda s: s.get("num_tokens"), lambda s: not s.get("correct"))),
    "correct length": Measure("mean tokens of correct held-out answers", "tokens", 1,
                              per_run=_sample_mean(lambda s: s.get("num_tokens"), lambda s: bool(s.get("correct")))),
    "reflection in correct": Measure("share of correct held-out answers with a self-check marker", "pts", 100,
                                     per_run=_sample_mean(_has_marker, lambda s: bool(s.get("correct")))),
    "late entropy": Measure(f"policy token entropy over the last {LATE:.0%} of training steps", "nats", 1,
                            per_run=_late("entropy")),
    "late no-signal groups": Measure(f"share of trained groups with no reward spread, last {LATE:.0%} of steps",
                                     "pts", 100, per_run=_late("zero_variance_groups")),
    "length growth": Measure(f"response length over the last {LATE:.0%} of training minus the first {LATE:.0%}",
                             "tokens", 1, per_run=_length_growth),
}


@dataclass(frozen=True)
class Verdict:
    variant: str
    claim: Claim
    verdict: str  # supported, contradicted, inconclusive, untested
    difference: float | None = None  # variant - baseline, in display units
    ci: tuple[float, float] | None = None
    mde: float | None = None  # inconclusive: the smallest true difference these seeds detect with 80% power
    seeds: tuple[int, int] = (0, 0)
    why: str = ""  # untested: what is missing


def _run_matrix(rows, measure: Measure, task: str, context: dict) -> np.ndarray:
    """[runs, problems] for a per-problem measure, [runs, 1] for a per-run one."""
    if measure.per_problem is not None:
        return np.array([measure.per_problem(row, task, context) for row in rows], dtype=float)
    values = [measure.per_run(row, task) for row in rows]
    if any(v is None for v in values):
        raise LookupError("a run lacks it")
    return np.array(values, dtype=float)[:, None]


def judge(variant: str, claim: Claim, rows, base_rows, task: str, context: dict, level: float = 0.95) -> Verdict:
    """The verdict on one claim from the variant's runs and the baseline's (a fixed model when it is the warm
    start)."""
    measure = MEASURES[claim.measure]
    fixed = claim.baseline == "warm start"
    seeds = (len(rows), 0 if fixed else len(base_rows))
    if len(rows) < 2 or (len(base_rows) < 2 and not fixed) or not base_rows:
        return Verdict(variant, claim, "untested", seeds=seeds, why="needs 2+ training runs a side")
    try:
        a, b = _run_matrix(rows, measure, task, context), _run_matrix(base_rows, measure, task, context)
    except (LookupError, KeyError) as missing:
        return Verdict(variant, claim, "untested", seeds=seeds, why=f"the rows lack {measure.description} ({missing})")
    result = stats.seed_aware_test(a, b, fixed_b=fixed, level=level)
    scale = measure.scale
    low, high, difference = result.ci_low * scale, result.ci_high * scale, result.difference * scale
    if claim.direction == "higher":
        verdict = "supported" if low > 0 else "contradicted" if high < 0 else "inconclusive"
    elif claim.direction == "lower":
        verdict = "supported" if high < 0 else "contradicted" if low > 0 else "inconclusive"
    else:  # not lower
        verdict = "supported" if low > -claim.margin else "contradicted" if high < -claim.margin else "inconclusive"
    mde = None
    if verdict == "inconclusive" and math.isfinite(result.df):
        from scipy import stats as scipy_stats

        mde = float((scipy_stats.t.ppf(0.5 + level / 2, result.df) + scipy_stats.t.ppf(stats.MDE_POWER, result.df))
                    * result.standard_error * scale)
    return Verdict(variant, claim, verdict, difference, (low, high), mde, seeds)


def hard_problems(warm_start_rows, base_rows, task: str) -> np.ndarray:
    """Indices of the hardest third of problems: lowest pass@1 of the starting model (or, without a warm-start row,
    of the baseline's runs on average)."""
    source = warm_start_rows or base_rows
    scores = np.mean([_pass_at(lambda *_: 1)(row, task, {}) for row in source], axis=0)
    return np.argsort(scores, kind="stable")[: max(1, len(scores) // 3)]


def claim_verdicts(rows_by_label: dict[str, list], claims_by_variant: dict[str, tuple[Claim, ...]],
                   task: str) -> list[Verdict]:
    """Every declared claim of every variant on the page (labels are variants; A/A copies carry their base's
    claims), in page order."""
    warm = rows_by_label.get("warm start", [])
    verdicts = []
    for label, rows in rows_by_label.items():
        for claim in claims_by_variant.get(label, ()):
            base_rows = rows_by_label.get(claim.baseline, [])
            context = {"hard": hard_problems(warm, base_rows or rows, task)}
            verdicts.append(judge(label, claim, rows, base_rows, task, context))
    return verdicts


def verdict_line(v: Verdict) -> str:
    """One markdown bullet: the claim, its section, the figure and the verdict."""
    measure = MEASURES[v.claim.measure]
    side = {"higher": "higher than", "lower": "lower than", "not lower": "no lower than"}[v.claim.direction]
    margin = f" (margin {v.claim.margin:g} {measure.unit})" if v.claim.direction == "not lower" else ""
    head = (f"**{v.variant}** ({v.claim.section}): {v.claim.statement} — {measure.description} {side} "
            f"{v.claim.baseline}'s{margin}")
    if v.verdict == "untested":
        return f"- {head}: **untested** ({v.why})."
    figure = (f"Δ {v.difference:+.2f} {measure.unit} [{v.ci[0]:+.2f}, {v.ci[1]:+.2f}], "
              f"{v.seeds[0]} runs vs {f'{v.seeds[1]} runs' if v.seeds[1] else 'the fixed model'}")
    tail = f"; detectable from {v.mde:.2f} {measure.unit} at these seeds" if v.mde is not None else ""
    return f"- {head}: **{v.verdict}** ({figure}{tail})."
