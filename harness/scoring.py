"""From stored samples to a task's numbers, exactly as ../shared/docs/statistics.md defines them."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from harness import diversity, metrics, stats
from harness.grading import GradingPool, cluster_answers

# Above this many samples per problem, maj@k is a seeded Monte Carlo estimate (statistics.md allows it).
EXACT_MAJ_MAX_N = 256


def group_by_problem(samples: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for sample in samples:
        grouped[sample["problem_id"]].append(sample)
    for group in grouped.values():
        group.sort(key=lambda s: s["sample_index"])
    return dict(grouped)


def problem_clusters(group: list[dict], grader: str, pool: GradingPool) -> tuple[list[int], list[bool]]:
    """Sizes and correctness of the answer clusters of one problem's samples (non-voting samples excluded)."""
    ids = cluster_answers(grader, [s["answer"] for s in group], pool)
    sizes: dict[int, int] = defaultdict(int)
    correct: dict[int, bool] = {}
    for cluster, sample in zip(ids, group, strict=True):
        if cluster is None:
            continue
        sizes[cluster] += 1
        correct[cluster] = correct.get(cluster, False) or sample["correct"]
    order = sorted(sizes)
    return [sizes[c] for c in order], [correct[c] for c in order]


def maj_at_k(sizes: list[int], correct: list[bool], n: int, k: int, seed: int) -> tuple[float, float]:
    if n <= EXACT_MAJ_MAX_N:
        return metrics.maj_at_k(sizes, correct, n, k), 0.0
    return metrics.maj_at_k_monte_carlo(sizes, correct, n, k, seed=seed)


def _mean_ci(per_problem: np.ndarray, seed: int) -> dict:
    low, high = stats.bootstrap_ci(per_problem, seed=seed)
    return {"mean": float(per_problem.mean()), "ci": [float(low), float(high)]}


def score_task(samples: list[dict], plan, pool: GradingPool, embeddings: bool = False, seed: int = 0) -> dict:
    groups = group_by_problem(samples)
    if not groups:
        raise ValueError(f"no samples stored for task {plan.task.name}")
    ids = sorted(groups)
    n = np.array([len(groups[i]) for i in ids])
    c = np.array([sum(s["correct"] for s in groups[i]) for i in ids])
    too_big = [k for k in plan.k if k > n.min()]
    if too_big:
        raise ValueError(f"k={too_big} exceeds the {n.min()} samples of some problem of {plan.task.name}")

    clusters = {i: problem_clusters(groups[i], plan.task.grader, pool) for i in ids}
    result: dict = {"num_problems": len(ids), "n": int(n.max()) if n.min() == n.max() else [int(n.min()), int(n.max())]}
    result["mean@n"] = _mean_ci(c / n, seed)
    result["pass@k"] = {str(k): _mean_ci(metrics.pass_at_k_per_problem(n, c, k), seed) for k in plan.k}
    result["maj@k"] = {}
    for k in plan.k:
        values = [maj_at_k(*clusters[i], int(n[j]), k, seed) for j, i in enumerate(ids)]
        entry = _mean_ci(np.array([v for v, _ in values]), seed)
        if any(se for _, se in values):  # Monte Carlo: the standard error of the task mean
            entry["monte_carlo_se"] = float(np.sqrt(sum(se**2 for _, se in values)) / len(values))
        result["maj@k"][str(k)] = entry

    texts = {i: [s["completion"] for s in groups[i]] for i in ids}
    result["diversity"] = {
        **{f"distinct_{m}": float(np.mean([diversity.distinct_n(texts[i], m) for i in ids])) for m in range(1, 5)},
        "distinct_answers": float(np.mean([diversity.distinct_answers(clusters[i][0]) for i in ids])),
        "answer_entropy": float(np.mean([diversity.answer_entropy(clusters[i][0]) for i in ids])),
    }
    if embeddings:
        encoder = diversity.load_default_encoder()
        result["diversity"]["embedding_spread"] = float(
            np.mean([diversity.embedding_spread(texts[i], encoder) for i in ids]))
    tokens = [s["num_tokens"] for s in samples if s.get("num_tokens") is not None]
    # None where no sample says how many tokens it had (completions from another system): no number to show
    result["length"] = {"mean_tokens": float(np.mean(tokens)) if tokens else None,
                        "median_tokens": float(np.median(tokens)) if tokens else None}
    result["truncation_rate"] = float(np.mean([s.get("finish_reason") == "length" for s in samples]))
    result["no_answer_rate"] = float(np.mean([s["answer"] is None for s in samples]))
    # graded wrong because grading hit its time limit twice (harness.grading_pool): not the grader's verdict
    result["grading_timeouts"] = sum(s.get("grading") == "timeout" for s in samples)
    result["grading_errors"] = sum(s.get("grading") == "error" for s in samples)
    # Kept so that paired tests between runs need only metrics.json.
    result["per_problem"] = {i: {"n": int(n[j]), "c": int(c[j])} for j, i in enumerate(ids)}
    return result
