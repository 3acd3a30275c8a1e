"""From stored samples to a task's numbers, exactly as ../shared/docs/statistics.md defines them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from harness import diversity, metrics, stats
from harness.grading import grade
from harness.grading_pool import GradingPool

# Above this many samples per problem, maj@k is a seeded Monte Carlo estimate (statistics.md allows it).
EXACT_MAJ_MAX_N = 256


def group_by_problem(samples: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for sample in samples:
        grouped[sample["problem_id"]].append(sample)
    for group in grouped.values():
        group.sort(key=lambda s: s["sample_index"])
    return dict(grouped)


def cluster_answers(grader: str, answers: Sequence[str | None], pool: GradingPool | None = None,
                    ) -> list[int | None]:
    """Cluster ids (0, 1, ... by first appearance) such that equivalent answers share one; None stays None.

    Identical strings (after stripping) are merged for free; every pair of distinct strings is then asked
    of the grader in one batch (the earlier string as gold), and "equivalent" is closed transitively.
    An answer that exceeds the time limit on its own (graded against "0") is a cluster of its own rather
    than the cause of one timeout per pair. Without a pool the comparisons run in-process (tests only).
    """
    keys = [a.strip() if a is not None and a.strip() else None for a in answers]
    distinct = list(dict.fromkeys(k for k in keys if k is not None))
    comparable = range(len(distinct))
    if pool is not None and len(distinct) > 1:
        pool.grade([(grader, ("0",), text) for text in distinct if text not in pool.unusable_answers], retry=False)
        comparable = [k for k, text in enumerate(distinct) if text not in pool.unusable_answers]
    pairs = [(i, j) for n, j in enumerate(comparable) for i in comparable[:n]]
    requests = [(grader, (distinct[i],), distinct[j]) for i, j in pairs]
    verdicts = pool.grade(requests, retry=False) if pool is not None else [grade(*request) for request in requests]
    parent = list(range(len(distinct)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (i, j), same in zip(pairs, verdicts, strict=True):
        if same:
            a, b = root(i), root(j)
            parent[max(a, b)] = min(a, b)
    labels: dict[int, int] = {}
    cluster_of = {text: labels.setdefault(root(k), len(labels)) for k, text in enumerate(distinct)}
    return [None if k is None else cluster_of[k] for k in keys]


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
