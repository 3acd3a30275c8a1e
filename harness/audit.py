"""`harness audit`: grade a run's stored samples a second way (another grader, or the other extraction mode)
and list where the verdicts disagree, so a user sees which grading decisions move their numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.grading_pool import GradingPool
from harness.outcomes import Outcomes, RunInputError
from harness.regress import load_golds, regrade


@dataclass
class Disagreement:
    task: str
    problem_id: str
    sample_index: int
    golds: tuple[str, ...]
    stored_answer: str | None
    stored_correct: bool
    audit_answer: str | None
    audit_correct: bool


@dataclass
class TaskAudit:
    task: str
    grader: str
    extraction: str
    total: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    note: str = ""

    @property
    def now_right(self) -> int:
        return sum(d.audit_correct for d in self.disagreements)

    @property
    def now_wrong(self) -> int:
        return len(self.disagreements) - self.now_right


def audit(outcomes: Outcomes, grader: str | None = None, extraction: str | None = None,
          data_dir: str | None = None) -> list[TaskAudit]:
    """Per task: every sample whose verdict changes under `grader` (default: the run's own) and `extraction`
    (default: the other mode from the run's). Needs the completion texts where the extraction changes."""
    if grader is None and extraction is None:
        raise RunInputError("an audit needs something to compare with: --grader NAME or --extraction MODE")
    audits = []
    with GradingPool(timeout_s=float(outcomes.card.get("grading", {}).get("timeout_s", 5.0))) as pool:
        for task, entry in outcomes.card["tasks"].items():
            mode = extraction or entry.get("extraction", "strict")
            result = TaskAudit(task, grader or entry["grader"], mode)
            audits.append(result)
            problems = outcomes.samples[task]
            if mode != entry.get("extraction", "strict") and not all("completion" in s for g in problems.values()
                                                                      for s in g):
                result.note = "not audited: changing the extraction needs the completion texts (a run directory)"
                continue
            golds, why = load_golds(task, entry, data_dir)
            if golds is None:
                result.note = why
                continue
            regraded, drift = regrade(outcomes, "run", task, result.grader, entry["answer_format"], golds, pool, mode)
            result.total = drift.total
            for pid in sorted(problems):
                for index, (old, new) in enumerate(zip(problems[pid], regraded[pid], strict=True)):
                    if old["correct"] != new["correct"]:
                        result.disagreements.append(Disagreement(task, pid, index, tuple(golds[pid]), old["answer"],
                                                                 old["correct"], new["answer"], new["correct"]))
    return audits
