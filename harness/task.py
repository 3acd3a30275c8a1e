"""What a task is: a data source, a prompt template, an answer extractor, a grader, default n and k, and any
verifiable rewards beyond accuracy (`aux_rewards`).

Tasks are data, not code: a benchmark is one `Task(...)` call in `tasks/`, and third-party packages add
more through the `harness.tasks` entry-point group.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.registry import Registry

TASKS: Registry[Task] = Registry("task", "harness.tasks", builtins_module="tasks")

DATA_DIR_ENV = "HARNESS_DATA_DIR"


class DataError(ValueError):
    """Task data that is missing or malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    golds: tuple[str, ...]  # every accepted reference answer; the first is the canonical one
    solution: str | None = None  # a worked reference solution, when the benchmark has one
    meta: Mapping = field(default_factory=dict, compare=False, hash=False)  # unit, choices, level, ...


@dataclass(frozen=True)
class TaskData:
    problems: list[Problem]
    sha256: str  # of the exact bytes (or generated records) used, for the protocol card
    origin: str  # a file path, a hub id@revision, or "generated:<seed>"

    @property
    def size(self) -> int:
        """Number of problems, for the card: with a train task, how often a budget revisits each one."""
        return len(self.problems)


class DataSource(Protocol):
    def load(self, data_dir: Path | None) -> tuple[list[dict], str, str]:
        """Return (records, sha256, origin)."""


def iter_jsonl(path: Path):
    """("file:line", JSON object) for every non-blank line; a malformed line is named, not skipped."""
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno}); fix or remove that "
                                "line") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield where, record


def read_jsonl(path: Path) -> list[dict]:
    return [record for _, record in iter_jsonl(path)]


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_records(records: Sequence[dict]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def resolve_data_dir(explicit: str | Path | None) -> Path | None:
    """--data-dir wins, then $HARNESS_DATA_DIR; None means "try the hub"."""
    chosen = explicit or os.environ.get(DATA_DIR_ENV)
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist; pass --data-dir or set {DATA_DIR_ENV} "
                        "to a folder of normalized JSONL (for example ../shared/benchmarks)")
    return path


def _offline() -> bool:
    return os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


@dataclass(frozen=True)
class HubDataset:
    """Where the same records live on the hub, pinned, for machines that are online."""

    path: str
    revision: str
    split: str
    name: str | None = None
    # Maps a hub row to our normalized record (id, problem, answer, ...).
    normalize: Callable[[dict, int], dict] | None = None


@dataclass(frozen=True)
class JsonlSource:
    filename: str
    hub: HubDataset | None = None

    def load(self, data_dir: Path | None) -> tuple[list[dict], str, str]:
        if data_dir is not None:
            path = data_dir / self.filename
            if not path.is_file():
                raise DataError(f"{self.filename} not found in {data_dir}; point --data-dir or "
                                f"{DATA_DIR_ENV} at the folder that holds it")
            return read_jsonl(path), sha256_of_file(path), str(path)
        if self.hub is None or _offline():
            why = "the machine is offline" if self.hub else "this task has no hub source"
            raise DataError(f"no data for {self.filename}: {why}. Pass --data-dir or set {DATA_DIR_ENV} to a "
                            "folder of normalized JSONL (for example ../shared/benchmarks)")
        try:
            return self._load_from_hub()
        except Exception as e:  # no network, a moved dataset, a hub outage: say what to do instead
            raise DataError(f"{self.filename} could not be fetched from the hub ({type(e).__name__}: "
                            f"{str(e)[:160]}); pass --data-dir or set {DATA_DIR_ENV} to a folder of normalized "
                            "JSONL (for example ../shared/benchmarks)") from None

    def _load_from_hub(self) -> tuple[list[dict], str, str]:
        import datasets  # heavy, and only needed online

        rows = datasets.load_dataset(self.hub.path, self.hub.name, split=self.hub.split, revision=self.hub.revision)
        normalize = self.hub.normalize or (lambda row, i: dict(row))
        records = [normalize(dict(row), i) for i, row in enumerate(rows)]
        return records, sha256_of_records(records), f"hub:{self.hub.path}@{self.hub.revision}"


@dataclass(frozen=True)
class GeneratedSource:
    """Records made by a seeded generator (the sandbox tasks): same seed, same records, same sha256."""

    generate: Callable[[], list[dict]]
    description: str

    def load(self, data_dir: Path | None) -> tuple[list[dict], str, str]:
        records = self.generate()
        return records, sha256_of_records(records), f"generated:{self.description}"


def default_to_problem(record: dict) -> Problem:
    return Problem(id=str(record["id"]), problem=record["problem"], golds=(str(record["answer"]),),
                   solution=record.get("solution"))


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    source: DataSource
    answer_format: str  # extractor name, see harness.extraction
    grader: str  # grader name, see harness.grading
    template: str = "boxed_cot"  # prompt template name, see harness.prompts
    default_n: int = 1
    default_k: tuple[int, ...] = (1,)
    max_new_tokens: int = 1024
    to_problem: Callable[[dict], Problem] = default_to_problem
    # Verifiable rewards beyond accuracy, by name: fn(problem, completion) -> float in [0, 1]. A variant that
    # combines reward components (GDPO) adds each as one; the sandbox's is "process" (each column line's
    # arithmetic, tasks.column_check); empty for the benchmarks, which have no checkable process.
    aux_rewards: Mapping[str, Callable[[Problem, str], float]] = field(default_factory=dict, compare=False)

    def load(self, data_dir: str | Path | None = None) -> TaskData:
        records, sha, origin = self.source.load(resolve_data_dir(data_dir))
        problems: list[Problem] = []
        first: dict[str, int] = {}  # id -> the record that first used it
        for index, record in enumerate(records):
            try:
                problems.append(self.to_problem(record))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{origin}: record {index + 1} (id {record.get('id')!r}) cannot be read as a "
                                f"{self.name} problem: {e!r}") from None
            if problems[-1].id in first:  # two problems under one id would be scored as one problem's samples
                raise DataError(f"{origin}: records {first[problems[-1].id]} and {index + 1} share the id "
                                f"{problems[-1].id!r}; give every problem its own id")
            first[problems[-1].id] = index + 1
        return TaskData(problems=problems, sha256=sha, origin=origin)


def register_task(task: Task) -> Task:
    return TASKS.register(task.name, task)
