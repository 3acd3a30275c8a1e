"""The regression gate: is a candidate worse than a baseline on the same problems by more than noise, and could
this run have told? (docs/statistics.md, "Regression gate".)

The unit is the problem: for each task and metric the statistic is the mean of the paired per-problem
differences of the per-problem estimates, tested with the exact McNemar test when each side has one sample per
problem and the paired sign-flip test otherwise, Holm across every (task, metric) tested. A verdict is a
regression only when the drop is both significant and larger than the task's margin; a drop the run is too
small to judge is "inconclusive", with the minimum detectable effect beside it. Both runs are graded again
here with the candidate's grader, so the gate compares models, not graders, and says how many verdicts the
re-grading moved (grader drift).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from harness import metrics, stats
from harness.card import card_differences
from harness.grading_pool import GradingPool
from harness.outcomes import Outcomes, RunInputError, load_outcomes
from harness.scoring import maj_at_k, problem_clusters

EXIT_PASS, EXIT_REGRESSION, EXIT_INCONCLUSIVE, EXIT_INCOMPARABLE, EXIT_ERROR = 0, 1, 2, 3, 4
# A drop smaller than this many points is not a regression however significant: below a point, a benchmark
# result is seldom worth blocking a merge for. Per task with --margin TASK=POINTS.
DEFAULT_MARGIN_POINTS = 1.0
MODES = ("gate", "noninferiority")

# Per-task settings whose difference changes a number. The model under test may differ, and so may how it is
# served (backend, dtype, batch size, the tokenizer's chat template), the eval seed and k. The problem set is
# checked id by id, so `limit` need not match as long as the problems do.
GATED_TASK_FIELDS = ("data_sha256", "num_problems", "template.name", "template.text", "template.sha256",
                     "answer_format", "extraction", "grader", "n", "sampling")
# The grading's own settings and libraries: they matter only where the stored verdicts are used, because a
# re-graded pair was graded here, by one grader, on both sides.
GRADING_FIELDS = ("grading", "versions.math-verify", "versions.sympy")


class RegressError(RunInputError):
    """A bad option or input: exit 4."""


class IncomparableError(RegressError):
    """The two runs differ in a setting that changes a number: exit 3."""


# -------------------------------------------------------------------------------------- comparability


@dataclass
class Comparability:
    allowed: list[str]  # gated differences the user accepted with --allow-diff
    regraded: list[str]  # grading differences that do not enter, because both runs were graded again here
    not_gated: list[str]  # differences in what may differ (the model, how it is served, the seed), for the record
    unused_allows: list[str]  # --allow-diff values that matched no difference (a typo, most likely)


def _matches(path: str, field_name: str) -> bool:
    return path == field_name or path.startswith(field_name + ".")


def _within_task(path: str) -> str | None:
    parts = path.split(".", 2)
    return parts[2] if len(parts) == 3 and parts[0] == "tasks" else None


def _is_task_field(path: str) -> bool:
    inner = _within_task(path)
    return inner is not None and any(_matches(inner, f) for f in GATED_TASK_FIELDS)


def _is_grading_field(path: str) -> bool:
    return any(_matches(path, f) for f in GRADING_FIELDS)


def _allowed_by(path: str, field_name: str) -> bool:
    """FIELD names a setting by its dotted path, in full (tasks.aime24.grader) or within every task (grader,
    sampling.temperature, template)."""
    inner = _within_task(path)
    return _matches(path, field_name) or (inner is not None and _matches(inner, field_name))


def check_comparable(baseline: dict, candidate: dict, tasks: Sequence[str], allow: Sequence[str] = (),
                     regraded: bool = False) -> Comparability:
    """Raise IncomparableError naming every gated setting in which the two cards differ, unless allowed. The
    grading's settings and library versions are gated only when the stored verdicts are used (`regraded`
    False): re-graded runs share one grader by construction."""
    missing = [t for t in tasks if t not in candidate.get("tasks", {})]
    if missing:
        raise IncomparableError(f"the candidate was not evaluated on {', '.join(missing)} (it has "
                                f"{', '.join(candidate.get('tasks', {})) or 'no tasks'}); evaluate it on the "
                                "baseline's tasks or pass --tasks")
    old = {**{k: v for k, v in baseline.items() if k != "tasks"}, "tasks": {t: baseline["tasks"][t] for t in tasks}}
    new = {**{k: v for k, v in candidate.items() if k != "tasks"}, "tasks": {t: candidate["tasks"][t] for t in tasks}}
    differences = [(d.split(":", 1)[0], d) for d in card_differences(old, new)]
    result = Comparability([], [], [], [f for f in allow if not any(_allowed_by(p, f) for p, _ in differences)])
    refused = []
    for path, text in differences:
        if _is_grading_field(path) and regraded:
            result.regraded.append(text)
        elif _is_task_field(path) or _is_grading_field(path):
            (result.allowed if any(_allowed_by(path, f) for f in allow) else refused).append(text)
        else:
            result.not_gated.append(text)
    if refused:
        shown = "; ".join(text if len(text) <= 160 else text[:157] + "..." for text in refused[:4])
        more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
        raise IncomparableError(f"baseline and candidate differ in settings that change the numbers: {shown}{more}; "
                                "evaluate both under one protocol, or accept a difference with --allow-diff FIELD")
    return result


# -------------------------------------------------------------------------------------------- scores


def parse_metrics(texts: Sequence[str]) -> list[tuple[str, tuple[str, int]]]:
    """[(label, (kind, k))], duplicates dropped (maj@1 is pass@1): each extra test would only widen Holm."""
    wanted, seen = [], set()
    for text in texts:
        match = re.fullmatch(r"(pass|maj)@([1-9][0-9]*)", text.strip())
        if not match:
            raise RegressError(f"metric {text!r} is not pass@K or maj@K (e.g. --metrics pass@1,maj@8)")
        kind, k = match.group(1), int(match.group(2))
        key = ("pass", 1) if k == 1 else (kind, k)
        if key not in seen:
            seen.add(key)
            wanted.append((text.strip(), key))
    if not wanted:
        raise RegressError("no metric to gate on; pass e.g. --metrics pass@1")
    return wanted


def parse_margins(text: str | None, tasks: Sequence[str]) -> dict[str, float]:
    """'2' for every task, 'aime24=3.3,math500=1' per task, or both ('1,aime24=3.3'); points, >= 0."""
    margins = dict.fromkeys(tasks, DEFAULT_MARGIN_POINTS)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, value = part.rpartition("=")
        try:
            points = float(value)
        except ValueError:
            raise RegressError(f"--margin {part!r}: the margin must be points, e.g. 1 or aime24=3.3") from None
        if not math.isfinite(points) or points < 0:
            raise RegressError(f"--margin {part!r}: the margin must be a non-negative number of points")
        name = name.strip()
        if name and name not in margins:
            raise RegressError(f"--margin names task {name!r}, which is not gated here (tasks: {', '.join(tasks)})")
        for task in [name] if name else tasks:
            margins[task] = points
    return margins


def per_problem_scores(problems: dict[str, list[dict]], ids: Sequence[str], metric: tuple[str, int], grader: str,
                       pool: GradingPool, seed: int = 0) -> np.ndarray:
    """The per-problem estimate of pass@k (unbiased) or maj@k (exact over subsets) for each id, in order."""
    kind, k = metric
    n = np.array([len(problems[i]) for i in ids])
    if kind == "pass":
        c = np.array([sum(s["correct"] for s in problems[i]) for i in ids])
        return metrics.pass_at_k_per_problem(n, c, k)
    return np.array([maj_at_k(*problem_clusters(problems[i], grader, pool), int(n[j]), k, seed)[0]
                     for j, i in enumerate(ids)])


@dataclass
class Comparison:
    task: str
    metric: str
    num_problems: int
    baseline: float  # task means, fractions
    candidate: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    margin: float  # fraction
    mde: float | None  # fraction; None where the runs agree on every problem (no spread to measure)
    p_holm: float | None = None  # set by `judge`, across the whole family
    verdict: str | None = None
    difference_as_stored: float | None = None  # from the stored verdicts, where re-grading moved any


def compare_scores(task: str, metric: str, baseline: np.ndarray, candidate: np.ndarray, binary: bool,
                   margin: float, alpha: float = 0.05, seed: int = 0) -> Comparison:
    """One (task, metric) comparison from per-problem scores in a shared problem order; `judge` then adds
    Holm's p and the verdict. `binary`: one sample per problem on each side, so the exact McNemar test;
    otherwise the paired sign-flip test. Margin and the returned numbers are fractions."""
    result = stats.paired_test(candidate, baseline, seed=seed)  # its interval serves both tests
    p_value = stats.mcnemar_exact(baseline > 0.5, candidate > 0.5) if binary else result.p_value
    d = candidate - baseline
    return Comparison(task=task, metric=metric, num_problems=int(baseline.size), baseline=float(baseline.mean()),
                      candidate=float(candidate.mean()), difference=result.difference, ci_low=result.ci_low,
                      ci_high=result.ci_high, p_value=p_value,
                      test="McNemar exact" if binary else ("sign-flip exact" if result.exact else "sign-flip"),
                      margin=margin, mde=stats.minimum_detectable_effect(d, alpha) if np.any(d) else None)


def verdict(difference: float, ci_low: float, p_holm: float, margin: float, alpha: float, mode: str) -> str:
    """statistics.md: a regression is a significant drop beyond the margin; otherwise the interval decides."""
    if p_holm < alpha and difference < -margin:
        return "regression"
    if mode == "noninferiority":
        return "pass" if ci_low > -margin else "not non-inferior"
    return "pass" if ci_low >= -margin or difference >= 0 else "inconclusive"


def judge(comparisons: Sequence[Comparison], alpha: float = 0.05, mode: str = "gate") -> None:
    """Holm across the whole family, then each comparison's verdict."""
    for comparison, p_holm in zip(comparisons, stats.holm_adjust([c.p_value for c in comparisons]), strict=True):
        comparison.p_holm = float(p_holm)
        comparison.verdict = verdict(comparison.difference, comparison.ci_low, comparison.p_holm, comparison.margin,
                                     alpha, mode)


# ------------------------------------------------------------------------------------------ re-grading


@dataclass
class Drift:
    """What grading one run's stored answers again here changed."""

    task: str
    side: str  # "baseline" or "candidate"
    checked: bool
    changed: int = 0
    total: int = 0
    timeouts: int = 0
    note: str = ""


def regrade(outcomes: Outcomes, side: str, task: str, grader: str, answer_format: str, golds: dict,
            pool: GradingPool, extraction: str = "strict") -> tuple[dict[str, list[dict]], Drift]:
    """One run's samples graded again with `grader`, answers extracted again under `answer_format` and the
    extraction mode where the completion texts are stored (a baseline file keeps only answers)."""
    from harness.extraction import extract

    problems = outcomes.samples[task]
    flat = [(pid, s) for pid in sorted(problems) for s in problems[pid]]
    answers = [extract(s["completion"], answer_format, extraction) if "completion" in s else s["answer"]
               for _, s in flat]
    verdicts = pool.grade([(grader, golds[pid], answer) for (pid, _), answer in zip(flat, answers, strict=True)])
    timeouts = sum(pool.is_timeout(grader, golds[pid], answer) for (pid, _), answer in zip(flat, answers, strict=True))
    regraded: dict[str, list[dict]] = {pid: [] for pid in problems}
    changed = 0
    for (pid, sample), answer, ok in zip(flat, answers, verdicts, strict=True):
        changed += bool(ok) != sample["correct"]
        regraded[pid].append({**sample, "answer": answer, "correct": bool(ok)})
    note = "" if "completion" in flat[0][1] else "answers as stored (a baseline file keeps no texts to extract from)"
    return regraded, Drift(task, side, True, changed=changed, total=len(flat), timeouts=timeouts, note=note)


def load_golds(task: str, card_task: dict, data_dir: str | None) -> tuple[dict | None, str]:
    """{problem id: gold answers} of a task, if its data here is the data the run was evaluated on; else
    (None, why not)."""
    from harness.task import TASKS

    try:
        data = TASKS.get(task).load(data_dir)
    except Exception as e:  # a task from a missing plugin, or data not on this machine: the gate still runs
        return None, f"not re-graded: the gold answers of {task} are not loadable here ({e})"
    if data.sha256 != card_task.get("data_sha256"):
        return None, (f"not re-graded: {task}'s data here (sha256 {data.sha256[:12]}) is not the data the runs were "
                      "evaluated on")
    return {p.id: p.golds for p in data.problems}, ""


# -------------------------------------------------------------------------------------------- the gate


@dataclass
class RegressConfig:
    baseline: str
    candidate: str
    metrics: tuple[str, ...] = ("pass@1",)
    tasks: tuple[str, ...] | None = None  # default: every task of the baseline
    alpha: float = 0.05
    margin: str | None = None  # parse_margins' syntax; None: DEFAULT_MARGIN_POINTS everywhere
    mode: str = "gate"
    allow_diff: tuple[str, ...] = ()
    regrade: bool = True
    data_dir: str | None = None
    seed: int = 0


@dataclass
class Report:
    config: RegressConfig
    baseline_model: str
    candidate_model: str
    comparability: Comparability
    comparisons: list[Comparison] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)

    @property
    def overall(self) -> str:
        verdicts = {c.verdict for c in self.comparisons}
        for worst in ("regression", "not non-inferior", "inconclusive"):
            if worst in verdicts:
                return worst
        return "pass"

    def exit_code(self, fail_on_inconclusive: bool = False) -> int:
        overall = self.overall
        if overall in ("regression", "not non-inferior"):
            return EXIT_REGRESSION
        if overall == "inconclusive" and fail_on_inconclusive:
            return EXIT_INCONCLUSIVE
        return EXIT_PASS

    def to_dict(self) -> dict:
        return {"verdict": self.overall, "baseline": {"source": self.config.baseline, "model": self.baseline_model},
                "candidate": {"source": self.config.candidate, "model": self.candidate_model},
                "settings": {**dataclasses.asdict(self.config), "permutations": stats.PERMUTATIONS,
                             "bootstrap_resamples": stats.BOOTSTRAP_RESAMPLES, "mde_power": stats.MDE_POWER,
                             "default_margin_points": DEFAULT_MARGIN_POINTS},
                "comparability": dataclasses.asdict(self.comparability),
                "comparisons": [dataclasses.asdict(c) for c in self.comparisons],
                "grader_drift": [dataclasses.asdict(d) for d in self.drift]}


def run_regress(config: RegressConfig, baseline: Outcomes | None = None, candidate: Outcomes | None = None) -> Report:
    """Everything checkable (options, runs, comparability) is checked before any grading starts."""
    if config.mode not in MODES:
        raise RegressError(f"--mode {config.mode!r} is not one of {', '.join(MODES)}")
    if not 0 < config.alpha < 1:
        raise RegressError(f"--alpha {config.alpha} must lie in (0, 1)")
    wanted = parse_metrics(config.metrics)
    baseline = baseline or load_outcomes(config.baseline)
    candidate = candidate or load_outcomes(config.candidate)
    tasks = list(config.tasks or baseline.card["tasks"])
    unknown = [t for t in tasks if t not in baseline.card["tasks"]]
    if unknown:
        raise RegressError(f"--tasks {', '.join(unknown)}: the baseline has no such task (it has "
                           f"{', '.join(baseline.card['tasks'])})")
    margins = parse_margins(config.margin, tasks)
    check_comparable(baseline.card, candidate.card, tasks, config.allow_diff, regraded=True)
    for task in tasks:
        n = min(baseline.card["tasks"][task]["n"], candidate.card["tasks"][task]["n"])
        too_big = [text for text, (_, k) in wanted if k > n]
        if too_big:
            raise RegressError(f"{', '.join(too_big)} needs k <= n, and {task} has n = {n} samples per problem; ask "
                               "for a smaller k or evaluate with more samples")
        if sorted(baseline.samples[task]) != sorted(candidate.samples[task]):
            raise IncomparableError(f"baseline and candidate scored different problems of {task}; the gate pairs "
                                    "problems, so both must be evaluated on the same ones")

    report = Report(config, baseline.model, candidate.model, Comparability([], [], [], []))
    timeout = float(candidate.card.get("grading", {}).get("timeout_s", 5.0))
    with GradingPool(timeout_s=timeout) as pool:
        sides: dict[str, tuple[dict, dict, bool]] = {}  # task -> (baseline samples, candidate samples, regraded)
        for task in tasks:
            cand_task = candidate.card["tasks"][task]
            golds, why = load_golds(task, cand_task, config.data_dir) if config.regrade else (None, "not re-graded "
                                                                                                 "(--no-regrade)")
            if golds is None:
                report.drift += [Drift(task, side, False, note=why) for side in ("baseline", "candidate")]
                sides[task] = (baseline.samples[task], candidate.samples[task], False)
                continue
            how = (cand_task["grader"], cand_task["answer_format"], golds, pool, cand_task.get("extraction", "strict"))
            base_new, base_drift = regrade(baseline, "baseline", task, *how)
            cand_new, cand_drift = regrade(candidate, "candidate", task, *how)
            report.drift += [base_drift, cand_drift]
            if base_drift.timeouts or cand_drift.timeouts:  # a verdict that depends on load does not gate
                for drift in (base_drift, cand_drift):
                    drift.note = (f"{base_drift.timeouts + cand_drift.timeouts} gradings hit the {timeout:g} s limit; "
                                  "the stored verdicts are used")
                sides[task] = (baseline.samples[task], candidate.samples[task], False)
            else:
                sides[task] = (base_new, cand_new, True)
        # Grading settings and versions gate only the tasks compared on their stored verdicts.
        report.comparability = check_comparable(baseline.card, candidate.card, tasks, config.allow_diff,
                                                regraded=all(regraded for _, _, regraded in sides.values()))
        for task in tasks:
            base_samples, cand_samples, regraded = sides[task]
            ids = sorted(base_samples)
            binary = baseline.card["tasks"][task]["n"] == 1 and candidate.card["tasks"][task]["n"] == 1
            grader = candidate.card["tasks"][task]["grader"]
            moved = regraded and any(d.changed for d in report.drift if d.task == task)
            for text, metric in wanted:
                b = per_problem_scores(base_samples, ids, metric, grader, pool, config.seed)
                c = per_problem_scores(cand_samples, ids, metric, grader, pool, config.seed)
                comparison = compare_scores(task, text, b, c, binary, margins[task] / 100, config.alpha, config.seed)
                if moved:
                    stored_b = per_problem_scores(baseline.samples[task], ids, metric, grader, pool, config.seed)
                    stored_c = per_problem_scores(candidate.samples[task], ids, metric, grader, pool, config.seed)
                    comparison.difference_as_stored = float(stored_c.mean() - stored_b.mean())
                report.comparisons.append(comparison)
    judge(report.comparisons, config.alpha, config.mode)
    return report
