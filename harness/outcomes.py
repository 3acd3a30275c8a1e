"""A stored run as the regression gate reads it: the card, and each problem's samples (answer, verdict) in index
order, from an eval run directory, a compare row, or a baseline file (`save_baseline`: the card plus every
sample's answer and verdict, no completion texts, small enough to commit)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.runstore import RunDir, read_json, write_json_atomic
from harness.scoring import group_by_problem

BASELINE_KIND = "regress-baseline"
CARD_TASK_KEYS = ("num_problems", "n", "grader", "answer_format", "data_sha256")


class RunInputError(ValueError):
    """A run that is missing, damaged or unfinished."""


@dataclass
class Outcomes:
    source: str
    card: dict
    samples: dict[str, dict[str, list[dict]]]  # task -> problem id -> [{"answer", "correct"[, "completion"]}]

    @property
    def model(self) -> str:
        model = self.card.get("model")
        return str(model.get("name", "?")) if isinstance(model, dict) else "?"


def load_outcomes(path: str | Path) -> Outcomes:
    """An eval run directory, a compare row (its eval/), or a baseline file."""
    path = Path(path)
    if path.is_file():
        return _load_baseline_file(path)
    if not path.is_dir():
        raise RunInputError(f"{path} does not exist; pass an eval run directory, a compare row or a baseline file")
    run_dir = path / "eval" if (path / "eval" / "card.json").is_file() else path
    card_path, samples_path = run_dir / "card.json", run_dir / "samples.jsonl"
    for needed in (card_path, samples_path):
        if not needed.is_file():
            raise RunInputError(f"{path} is not an eval run: {needed} is missing; pass a directory written by "
                                "`harness eval` or `harness compare`, or a file from `harness regress --save-baseline`")
    card = _read_json(card_path)
    _check_card(card, card_path)
    try:
        # Read-only: a torn last line is skipped, never truncated, so a running eval is not disturbed.
        samples = RunDir(run_dir).read_samples(repair=False)
        grouped = {task: group_by_problem([s for s in samples if s.get("task") == task]) for task in card["tasks"]}
        kept = {task: {pid: [_outcome(s) for s in group] for pid, group in problems.items()}
                for task, problems in grouped.items()}
        indices = {task: {pid: [s["sample_index"] for s in group] for pid, group in problems.items()}
                   for task, problems in grouped.items()}
    except (KeyError, TypeError, AttributeError) as e:
        raise RunInputError(f"{samples_path} has a sample without {e}; the run store is damaged, re-run the "
                            "eval into a fresh --out") from None
    outcomes = Outcomes(str(path), card, kept)
    _check_complete(outcomes, indices)
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
        raise RunInputError(f"{path} is not readable JSON ({e}); re-create it") from None


def _load_baseline_file(path: Path) -> Outcomes:
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND or not isinstance(data.get("tasks"), dict):
        raise RunInputError(f"{path} is not a regress baseline file; write one with `harness regress --baseline RUN "
                            "--save-baseline FILE`")
    _check_card(data.get("card"), path)
    try:
        samples = {task: {pid: [{"answer": a, "correct": bool(c)} for a, c in zip(p["answers"], p["correct"], strict=True)]
                          for pid, p in problems.items()} for task, problems in data["tasks"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise RunInputError(f"{path} is damaged ({type(e).__name__}: {e}); write it again with --save-baseline") from None
    outcomes = Outcomes(str(path), data["card"], samples)
    _check_complete(outcomes, {task: {pid: list(range(len(group))) for pid, group in problems.items()}
                               for task, problems in samples.items()})
    return outcomes


def _check_card(card, where: Path) -> None:
    tasks = card.get("tasks") if isinstance(card, dict) else None
    good = isinstance(tasks, dict) and tasks and all(
        isinstance(entry, dict) and all(key in entry for key in CARD_TASK_KEYS)
        and all(isinstance(entry[key], int) and entry[key] > 0 for key in ("n", "num_problems"))
        for entry in tasks.values())
    if not good:
        raise RunInputError(f"{where} holds no eval card with tasks ({', '.join(CARD_TASK_KEYS)} per task); point at "
                            "a run written by `harness eval`, or a file from --save-baseline")


def _check_complete(outcomes: Outcomes, indices: dict[str, dict[str, list]]) -> None:
    """Every problem the card promises, each with sample indexes exactly 0..n-1: no gap, no duplicate."""
    for task, entry in outcomes.card["tasks"].items():
        problems = outcomes.samples.get(task, {})
        expected, n = entry["num_problems"], entry["n"]
        held = sum(len(group) for group in problems.values())
        if any(sorted(i) != sorted(set(i)) for i in indices.get(task, {}).values()):
            raise RunInputError(f"{outcomes.source} holds duplicate samples of {task} (one sample index twice); "
                                "re-run the eval into a fresh --out")
        if len(problems) != expected or any(sorted(i) != list(range(n)) for i in indices.get(task, {}).values()):
            raise RunInputError(f"{outcomes.source} holds {held} of the {expected} x {n} samples its card promises for "
                                f"{task}: the eval did not finish; run the same `harness eval` again to complete it")


def save_baseline(outcomes: Outcomes, path: str | Path) -> Path:
    """A small file a repository can commit: the card and each sample's answer and verdict, no texts."""
    data = {"kind": BASELINE_KIND, "format": 1, "source": outcomes.source, "card": outcomes.card,
            "tasks": {task: {pid: {"answers": [s["answer"] for s in group], "correct": [s["correct"] for s in group]}
                             for pid, group in sorted(problems.items())}
                      for task, problems in outcomes.samples.items()}}
    write_json_atomic(Path(path), data)
    return Path(path)
