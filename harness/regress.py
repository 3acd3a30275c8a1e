"""The regression gate: is a candidate worse than a baseline on the same problems by more than noise, and could
this run have told? (docs/statistics.md, "Regression gate".)

A run is an eval run directory, a compare row, or a baseline file that `save_baseline` wrote (per-sample
answers and verdicts plus the card, no completion texts). The unit is the problem: for each task and metric
the statistic is the mean of the paired per-problem differences of the per-problem estimates, tested with the
exact McNemar test when each side has one sample per problem and the paired sign-flip test otherwise, Holm
across every (task, metric) tested. A verdict is a regression only when the drop is both significant and
larger than the task's margin; a drop the run is too small to judge is "inconclusive", with the minimum
detectable effect beside it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import metrics, stats
from harness.card import card_differences
from harness.grading import GradingPool
from harness.runstore import RunDir, read_json, write_json_atomic
from harness.scoring import group_by_problem, maj_at_k, problem_clusters

EXIT_PASS, EXIT_REGRESSION, EXIT_INCONCLUSIVE, EXIT_INCOMPARABLE, EXIT_ERROR = 0, 1, 2, 3, 4
# A drop smaller than this many points is not a regression however significant: below a point, a benchmark
# result is seldom worth blocking a merge for. Per task with --margin TASK=POINTS.
DEFAULT_MARGIN_POINTS = 1.0
BASELINE_KIND = "regress-baseline"
MODES = ("gate", "noninferiority")
VERDICTS = ("pass", "regression", "inconclusive", "not non-inferior")

# Per-task settings whose difference changes a number; the model under test (and how it is served: backend,
# dtype, batch size, the tokenizer's chat template) may differ, and so may the eval seed and k.
GATED_TASK_FIELDS = ("data_sha256", "num_problems", "limit", "template.name", "template.text", "template.sha256",
                     "answer_format", "grader", "n", "sampling")
GATED_FIELDS = ("grading", "versions.math-verify", "versions.sympy")  # the grader's own settings and libraries


class RegressError(ValueError):
    """Bad or missing input: exit 4."""


class IncomparableError(RegressError):
    """The two runs differ in a setting that changes a number: exit 3."""


# ----------------------------------------------------------------------------------------------- runs


@dataclass
class Outcomes:
    """What the gate needs of a run: its card, and each problem's samples (answer, verdict) in index order."""

    source: str
    card: dict
    samples: dict[str, dict[str, list[dict]]]  # task -> problem id -> [{"answer", "correct"[, "completion"]}]


def load_outcomes(path: str | Path) -> Outcomes:
    """An eval run directory, a compare row (its eval/), or a baseline file."""
    path = Path(path)
    if path.is_file():
        return _load_baseline_file(path)
    if not path.is_dir():
        raise RegressError(f"{path} does not exist; pass an eval run directory, a compare row or a baseline file")
    run_dir = path / "eval" if (path / "eval" / "card.json").is_file() else path
    card_path, samples_path = run_dir / "card.json", run_dir / "samples.jsonl"
    for needed in (card_path, samples_path):
        if not needed.is_file():
            raise RegressError(f"{path} is not an eval run: {needed} is missing; pass a directory written by "
                               "`harness eval` or `harness compare`, or a file from `harness regress --save-baseline`")
    card = _read_json(card_path)
    _check_card(card, card_path)
    try:
        # Read-only: a torn last line is skipped, never truncated, so a running eval is not disturbed.
        samples = RunDir(run_dir).read_samples(repair=False)
        grouped = {task: group_by_problem([s for s in samples if s.get("task") == task]) for task in card["tasks"]}
        outcomes = Outcomes(str(path), card, {task: {pid: [_outcome(s) for s in group]
                                                     for pid, group in problems.items()}
                                              for task, problems in grouped.items()})
    except (KeyError, TypeError, AttributeError) as e:
        raise RegressError(f"{samples_path} has a sample without {e}; the run store is damaged, re-run the "
                           "eval into a fresh --out") from None
    _check_complete(outcomes)
    return outcomes


def _outcome(sample: dict) -> dict:
    kept = {"answer": sample.get("answer"), "correct": bool(sample.get("correct"))}
    if sample.get("completion") is not None:
        kept["completion"] = sample["completion"]
    return kept


def _read_json(path: Path):
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        raise RegressError(f"{path} is not readable JSON ({e}); re-create it") from None


def _load_baseline_file(path: Path) -> Outcomes:
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND or not isinstance(data.get("tasks"), dict):
        raise RegressError(f"{path} is not a regress baseline file; write one with `harness regress --baseline RUN "
                           "--save-baseline FILE`")
    _check_card(data.get("card"), path)
    try:
        samples = {task: {pid: [{"answer": a, "correct": bool(c)} for a, c in zip(p["answers"], p["correct"], strict=True)]
                          for pid, p in problems.items()} for task, problems in data["tasks"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise RegressError(f"{path} is damaged ({type(e).__name__}: {e}); write it again with --save-baseline") from None
    outcomes = Outcomes(str(path), data["card"], samples)
    _check_complete(outcomes)
    return outcomes


CARD_TASK_KEYS = ("num_problems", "n", "grader", "answer_format", "data_sha256")


def _check_card(card, where: Path) -> None:
    tasks = card.get("tasks") if isinstance(card, dict) else None
    if not isinstance(tasks, dict) or not tasks or not all(
            isinstance(entry, dict) and all(key in entry for key in CARD_TASK_KEYS) for entry in tasks.values()):
        raise RegressError(f"{where} holds no eval card with tasks ({', '.join(CARD_TASK_KEYS)} per task); point at "
                           "a run written by `harness eval`, or a file from --save-baseline")


def _check_complete(outcomes: Outcomes) -> None:
    for task, entry in outcomes.card.get("tasks", {}).items():
        problems = outcomes.samples.get(task, {})
        expected, n = entry.get("num_problems"), entry.get("n")
        held = sum(len(group) for group in problems.values())
        if any(len(group) > n for group in problems.values()):
            raise RegressError(f"{outcomes.source} holds {held} samples of {task} where its card promises {expected} x "
                               f"{n}: some are duplicates; re-run the eval into a fresh --out")
        if len(problems) != expected or any(len(group) != n for group in problems.values()):
            raise RegressError(f"{outcomes.source} holds {held} of the {expected} x {n} samples its card promises for "
                               f"{task}: the eval did not finish; run the same `harness eval` again to complete it")


def save_baseline(outcomes: Outcomes, path: str | Path) -> Path:
    """A small file a repository can commit: the card and each sample's answer and verdict, no texts."""
    data = {"kind": BASELINE_KIND, "format": 1, "source": outcomes.source, "card": outcomes.card,
            "tasks": {task: {pid: {"answers": [s["answer"] for s in group], "correct": [s["correct"] for s in group]}
                             for pid, group in sorted(problems.items())}
                      for task, problems in outcomes.samples.items()}}
    write_json_atomic(Path(path), data)
    return Path(path)


# -------------------------------------------------------------------------------------- comparability


@dataclass
class Comparability:
    allowed: list[str]  # gated differences the user accepted with --allow-diff
    not_gated: list[str]  # differences in what may differ (the model, its backend, the seed), for the record


def _gated(path: str) -> bool:
    if any(path == f or path.startswith(f + ".") for f in GATED_FIELDS):
        return True
    parts = path.split(".", 2)
    return (len(parts) == 3 and parts[0] == "tasks"
            and any(parts[2] == f or parts[2].startswith(f + ".") for f in GATED_TASK_FIELDS))


def _allowed(path: str, allow: Sequence[str]) -> bool:
    """FIELD names a setting by its dotted path, either in full (tasks.aime24.grader) or within every task
    (grader, sampling.temperature, template)."""
    parts = path.split(".", 2)
    within_task = parts[2] if len(parts) == 3 and parts[0] == "tasks" else None
    return any(path == f or path.startswith(f + ".") or (within_task is not None and (
        within_task == f or within_task.startswith(f + "."))) for f in allow)


def check_comparable(baseline: dict, candidate: dict, tasks: Sequence[str], allow: Sequence[str] = ()) -> Comparability:
    """Raise IncomparableError naming every gated setting in which the two cards differ (unless allowed)."""
    missing = [t for t in tasks if t not in candidate.get("tasks", {})]
    if missing:
        raise IncomparableError(f"the candidate was not evaluated on {', '.join(missing)} (it has "
                                f"{', '.join(candidate.get('tasks', {})) or 'no tasks'}); evaluate it on the "
                                "baseline's tasks or pass --tasks")
    keep = {key: value for key, value in baseline.items() if key != "tasks"}
    old = {**keep, "tasks": {t: baseline["tasks"][t] for t in tasks}}
    new = {**{key: value for key, value in candidate.items() if key != "tasks"},
           "tasks": {t: candidate["tasks"][t] for t in tasks}}
    differences = [(d.split(":", 1)[0], d) for d in card_differences(old, new)]
    gated = [(path, text) for path, text in differences if _gated(path)]
    refused = [text for path, text in gated if not _allowed(path, allow)]
    if refused:
        shown = "; ".join(text if len(text) <= 160 else text[:157] + "..." for text in refused[:4])
        more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
        raise IncomparableError(f"baseline and candidate differ in settings that change the numbers: {shown}{more}; "
                                "evaluate both under one protocol, or accept a difference with --allow-diff FIELD")
    return Comparability(allowed=[text for path, text in gated if _allowed(path, allow)],
                         not_gated=[text for path, text in differences if not _gated(path)])


# -------------------------------------------------------------------------------------------- scores


def parse_metric(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"(pass|maj)@([1-9][0-9]*)", text.strip())
    if not match:
        raise RegressError(f"metric {text!r} is not pass@K or maj@K (e.g. --metrics pass@1,maj@8)")
    return match.group(1), int(match.group(2))


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


def compare_scores(task: str, metric: str, baseline: np.ndarray, candidate: np.ndarray, binary: bool,
                   margin: float, alpha: float = 0.05, seed: int = 0) -> Comparison:
    """One (task, metric) comparison from per-problem scores in a shared problem order, before Holm (which
    `run_regress` applies across all of them). `binary`: one sample per problem on each side, so the exact
    McNemar test; otherwise the paired sign-flip test. Margin and the returned numbers are fractions."""
    result = stats.paired_test(candidate, baseline, seed=seed)
    p_value = stats.mcnemar_exact(baseline > 0.5, candidate > 0.5) if binary else result.p_value
    return Comparison(task=task, metric=metric, num_problems=int(baseline.size), baseline=float(baseline.mean()),
                      candidate=float(candidate.mean()), difference=result.difference, ci_low=result.ci_low,
                      ci_high=result.ci_high, p_value=p_value,
                      test="McNemar exact" if binary else ("sign-flip exact" if result.exact else "sign-flip"),
                      margin=margin, mde=stats.minimum_detectable_effect(candidate - baseline, alpha),
                      p_holm=p_value, verdict=verdict(result.difference, result.ci_low, p_value, margin, alpha, "gate"))


def verdict(difference: float, ci_low: float, p_holm: float, margin: float, alpha: float, mode: str) -> str:
    """statistics.md: a regression is a significant drop beyond the margin; otherwise the interval decides."""
    if p_holm < alpha and difference < -margin:
        return "regression"
    if mode == "noninferiority":
        return "pass" if ci_low > -margin else "not non-inferior"
    return "pass" if ci_low >= -margin or difference >= 0 else "inconclusive"


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
    mde: float  # fraction
    p_holm: float = 1.0
    verdict: str = "pass"
    difference_as_stored: float | None = None  # before the baseline was re-graded, where re-grading changed it


@dataclass
class Drift:
    task: str
    checked: bool
    changed: int = 0
    total: int = 0
    note: str = ""


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
        import dataclasses

        return {"verdict": self.overall, "baseline": {"source": self.config.baseline, "model": self.baseline_model},
                "candidate": {"source": self.config.candidate, "model": self.candidate_model},
                "settings": {"metrics": list(self.config.metrics), "alpha": self.config.alpha,
                             "mode": self.config.mode, "allow_diff": list(self.config.allow_diff),
                             "regrade": self.config.regrade, "seed": self.config.seed,
                             "permutations": 10000, "bootstrap_resamples": 2000, "power_for_mde": 0.8},
                "allowed_differences": self.comparability.allowed, "not_gated": self.comparability.not_gated,
                "comparisons": [dataclasses.asdict(c) for c in self.comparisons],
                "grader_drift": [dataclasses.asdict(d) for d in self.drift]}


def _model_name(card: dict) -> str:
    model = card.get("model", {})
    return str(model.get("name", "?"))


def regrade(outcomes: Outcomes, task: str, candidate_task: dict, data_dir: str | None,
            pool: GradingPool) -> tuple[dict[str, list[dict]] | None, Drift]:
    """The baseline's samples graded again with the candidate's grader (and answer format, where the texts
    are stored): how many verdicts a grader change alone moves. Needs the task's gold answers."""
    from harness.extraction import extract
    from harness.task import TASKS

    try:
        data = TASKS.get(task).load(data_dir)
    except Exception as e:  # a task from a missing plugin, or data not on this machine: the gate still runs
        return None, Drift(task, False, note=f"not checked: the gold answers of {task} are not loadable here ({e})")
    if data.sha256 != outcomes.card["tasks"][task].get("data_sha256"):
        return None, Drift(task, False, note=f"not checked: {task}'s data here (sha256 {data.sha256[:12]}) is not "
                                             "the data the baseline was evaluated on")
    golds = {p.id: p.golds for p in data.problems}
    grader, answer_format = candidate_task["grader"], candidate_task["answer_format"]
    reformat = answer_format != outcomes.card["tasks"][task].get("answer_format")
    problems = outcomes.samples[task]
    flat = [(pid, s) for pid in sorted(problems) for s in problems[pid]]
    answers = [extract(s["completion"], answer_format) if reformat and "completion" in s else s["answer"]
               for _, s in flat]
    verdicts = pool.grade([(grader, golds[pid], answer) for (pid, _), answer in zip(flat, answers, strict=True)])
    regraded: dict[str, list[dict]] = {pid: [] for pid in problems}
    changed = 0
    for (pid, sample), answer, ok in zip(flat, answers, verdicts, strict=True):
        changed += bool(ok) != sample["correct"]
        regraded[pid].append({**sample, "answer": answer, "correct": bool(ok)})
    return regraded, Drift(task, True, changed=changed, total=len(flat))


def run_regress(config: RegressConfig, baseline: Outcomes | None = None, candidate: Outcomes | None = None) -> Report:
    if config.mode not in MODES:
        raise RegressError(f"--mode {config.mode!r} is not one of {', '.join(MODES)}")
    if not 0 < config.alpha < 1:
        raise RegressError(f"--alpha {config.alpha} must lie in (0, 1)")
    baseline = baseline or load_outcomes(config.baseline)
    candidate = candidate or load_outcomes(config.candidate)
    tasks = list(config.tasks or baseline.card["tasks"])
    unknown = [t for t in tasks if t not in baseline.card["tasks"]]
    if unknown:
        raise RegressError(f"--tasks {', '.join(unknown)}: the baseline has no such task (it has "
                           f"{', '.join(baseline.card['tasks'])})")
    comparability = check_comparable(baseline.card, candidate.card, tasks, config.allow_diff)
    wanted = [(text, parse_metric(text)) for text in config.metrics]
    margins = parse_margins(config.margin, tasks)
    report = Report(config, _model_name(baseline.card), _model_name(candidate.card), comparability)

    with GradingPool() as pool:
        for task in tasks:
            base_task, cand_task = baseline.card["tasks"][task], candidate.card["tasks"][task]
            ids = sorted(baseline.samples[task])
            if sorted(candidate.samples[task]) != ids:
                raise IncomparableError(f"baseline and candidate scored different problems of {task}; the gate "
                                        "pairs problems, so both must be evaluated on the same ones")
            n_base, n_cand = base_task["n"], cand_task["n"]
            for text, (_, k) in wanted:
                if k > min(n_base, n_cand):
                    raise RegressError(f"{text} needs k <= n, and {task} has n = {min(n_base, n_cand)} samples per "
                                       "problem; ask for a smaller k or evaluate with more samples")
            base_samples = baseline.samples[task]
            as_stored = None
            if config.regrade:
                regraded, drift = regrade(baseline, task, cand_task, config.data_dir, pool)
                report.drift.append(drift)
                if regraded is not None and drift.changed:
                    as_stored, base_samples = base_samples, regraded
            else:
                report.drift.append(Drift(task, False, note="not checked (--no-regrade)"))
            grader = cand_task["grader"]
            for text, metric in wanted:
                b = per_problem_scores(base_samples, ids, metric, grader, pool, config.seed)
                c = per_problem_scores(candidate.samples[task], ids, metric, grader, pool, config.seed)
                comparison = compare_scores(task, text, b, c, n_base == 1 and n_cand == 1, margins[task] / 100,
                                            config.alpha, config.seed)
                if as_stored is not None:
                    stored = per_problem_scores(as_stored, ids, metric, grader, pool, config.seed)
                    comparison.difference_as_stored = float(c.mean() - stored.mean())
                report.comparisons.append(comparison)
    adjusted = stats.holm_adjust([c.p_value for c in report.comparisons])
    for comparison, p_holm in zip(report.comparisons, adjusted, strict=True):
        comparison.p_holm = float(p_holm)
        comparison.verdict = verdict(comparison.difference, comparison.ci_low, comparison.p_holm, comparison.margin,
                                     config.alpha, config.mode)
    return report

