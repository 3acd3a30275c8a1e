"""The standard math-reasoning benchmarks as tasks: MATH500, AIME24/25, AMC23, Minerva, OlympiadBench,
IneqMath (bound and relation), GSM8K.

Each task reads the normalized JSONL described by ../shared/benchmarks/MANIFEST.md and, on an online
machine without a data directory, the same records from a hub copy. Hub revisions are "main" because the
build machines cannot reach the hub to look up commit hashes: PIN EACH ONE TO A COMMIT HASH WHEN IT IS
VERIFIED ONLINE (the hub field names in the normalizers below are from the dataset cards, not yet checked
against a download). A run's protocol card records the data sha256 either way.

Golds hold everything a grader needs: Minerva's hand-written alternatives ("8.7 \\times 10^{8}" for
"8.7e8"; 43 misaligned lists are dropped, see MINERVA_MISALIGNED_ALTERNATIVES), OlympiadBench's
percentage unit, both the IneqMath option letter and its symbol.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from harness.task import HubDataset, JsonlSource, Problem, Task, register_task

HUB_REVISION_UNPINNED = "main"  # TODO(online): replace each use with the verified commit hash


@dataclass(frozen=True)
class FilteredSource:
    """The records of a file whose `field` equals `value` (IneqMath keeps bound and relation in one file).

    The sha256 is the whole file's: the filter is fixed by the task name, so file + task identify the data.
    """

    inner: JsonlSource
    field: str
    value: str

    def load(self, data_dir: Path | None) -> tuple[list[dict], str, str]:
        records, sha, origin = self.inner.load(data_dir)
        kept = [r for r in records if r.get(self.field) == self.value]
        return kept, sha, f"{origin} [{self.field}={self.value}]"


def _distinct(*golds) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(g).strip() for g in golds if g is not None and str(g).strip()))


def _meta(record: dict, *fields: str) -> dict:
    return {f: record[f] for f in fields if record.get(f) is not None}


# ------------------------------------------------------------------------------------- record -> Problem
def math_problem(record: dict) -> Problem:
    return Problem(id=str(record["id"]), problem=record["problem"], golds=_distinct(record["answer"]),
                   solution=record.get("solution"), meta=_meta(record, "subject", "level", "year", "contest"))


# Rows whose deepscaler answer_alternatives are not the boxed answer re-spelt but another value: mostly a
# neighbouring row's answer (minerva-162 lists 0.822, the answer of minerva-165, whose own list holds
# 8.224e-19 ...), or a general solution where the box holds a particular one. Accepting them would grade
# wrong answers right, so these rows keep only their boxed answer. Found by grading every alternative
# against its boxed answer and reading each disagreement; tests/test_grader_on_benchmarks.py checks that
# the grader indeed rejects every dropped alternative. (minerva-173's box says 1 where the chemistry says
# 2; we keep the box, as the Qwen2.5-Math harness does.)
MINERVA_MISALIGNED_ALTERNATIVES = frozenset(f"minerva-{n:03d}" for n in (
    17, 20, 57, 61, 68, 74, 75, 76, 81, 87, 93, 101, 104, 110, 112, 114, 118, 126, 129, 134, 139, 145, 149,
    151, 154, 155, 162, 165, 167, 173, 198, 201, 211, 223, 226, 227, 240, 242, 246, 247, 251, 254, 268))


def minerva_problem(record: dict) -> Problem:
    alternatives = record.get("answer_alternatives") or []
    if isinstance(alternatives, str):  # tolerate a stringified list from other copies
        alternatives = ast.literal_eval(alternatives)
    if str(record["id"]) in MINERVA_MISALIGNED_ALTERNATIVES:
        alternatives = []
    return Problem(id=str(record["id"]), problem=record["problem"],
                   golds=_distinct(record["answer"], *alternatives), solution=record.get("solution"),
                   meta=_meta(record, "type"))


def olympiadbench_problem(record: dict) -> Problem:
    """The math grader strips OlympiadBench's inner "$" and units itself; a percentage needs its "%"
    spelled out as a second gold, because math-verify reads "4.2\\%" as 0.042."""
    answer = record["answer"]
    unit = (record.get("unit") or "").strip()
    with_unit = f"{answer}\\%" if unit in ("%", "\\%") else None
    return Problem(id=str(record["id"]), problem=record["problem"], golds=_distinct(answer, with_unit),
                   solution=record.get("solution"),
                   meta=_meta(record, "unit", "answer_type", "is_multiple_answer", "subfield", "error"))


def ineqmath_bound_problem(record: dict) -> Problem:
    return Problem(id=str(record["id"]), problem=record["problem"], golds=_distinct(record["bound_value"]),
                   solution=record.get("solution"), meta=_meta(record, "data_id", "data_split"))


def ineqmath_relation_problem(record: dict) -> Problem:
    return Problem(id=str(record["id"]), problem=record["problem"],
                   golds=_distinct(record["relation_option"], record["relation_symbol"]),
                   solution=record.get("solution"), meta=_meta(record, "choices", "data_id", "data_split"))


def gsm8k_problem(record: dict) -> Problem:
    return Problem(id=str(record["id"]), problem=record["problem"], golds=_distinct(record["answer"]),
                   solution=record.get("solution"))


# ------------------------------------------------------------------------- hub row -> normalized record
def _integer_string(value) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else str(value)


def hub_math500(row: dict, index: int) -> dict:
    return {**row, "id": row["unique_id"], "idx": index, "dataset": "math500"}


def hub_aime24(row: dict, index: int) -> dict:
    match = re.search(r"(\d{4})_AIME_(I+)_Problems/Problem_(\d+)", row.get("url", ""))
    ident = f"aime-{match[1]}-{match[2]}-{int(match[3]):02d}" if match else f"aime24-{index:02d}"
    return {"id": ident, "problem": row["problem"], "answer": _integer_string(row["answer"]),
            "solution": row.get("solution"), "orig_answer": str(row["answer"]), "dataset": "aime24"}


def hub_aime25(row: dict, index: int) -> dict:
    number = int(row.get("problem_idx", index + 1))  # MathArena numbers I-1..I-15 as 1..15, II as 16..30
    contest = "I" if number <= 15 else "II"
    return {"id": f"aime-2025-{contest}-{(number - 1) % 15 + 1:02d}", "problem": row["problem"],
            "answer": _integer_string(row["answer"]), "dataset": "aime25"}


def hub_amc23(row: dict, index: int) -> dict:
    return {"id": f"amc23-{index:02d}", "problem": row.get("problem") or row["question"],
            "answer": _integer_string(row["answer"]), "dataset": "amc23"}


def hub_olympiadbench(row: dict, index: int) -> dict:
    final = list(row["final_answer"])
    return {"id": f"olympiadbench-{row['id']}", "problem": row["question"],
            "answer": final[0].strip().strip("$"), "solution": row["solution"][0], "final_answer": final,
            "unit": row.get("unit"), "answer_type": row.get("answer_type"), "error": row.get("error"),
            "is_multiple_answer": row.get("is_multiple_answer"), "dataset": "olympiadbench"}


def hub_ineqmath(row: dict, index: int) -> dict:
    answer = row["answer"]
    bound = re.search(r"C\s*=\s*([^$]+?)\s*\$*\s*$", answer)
    option = re.match(r"\s*\(([A-F])\)\s*(.*)$", answer)
    return {**row, "id": f"ineqmath-dev-{int(row['data_id']):04d}", "dataset": "ineqmath_dev",
            "bound_value": bound[1] if row.get("type") == "bound" and bound else None,
            "relation_option": option[1] if option else None,
            "relation_symbol": option[2].strip().strip("$").strip() if option else None}


def hub_gsm8k(row: dict, index: int) -> dict:
    raw = row["answer"].split("####")[-1].strip()
    return {"id": f"gsm8k-test-{index:04d}", "problem": row["question"], "solution": row["answer"],
            "answer": raw.replace(",", ""), "answer_raw": raw, "dataset": "gsm8k_test"}


def _hub(path: str, split: str, normalize, name: str | None = None) -> HubDataset:
    return HubDataset(path=path, revision=HUB_REVISION_UNPINNED, split=split, name=name, normalize=normalize)


_INEQMATH_DEV = JsonlSource("ineqmath_dev.jsonl", _hub("AI4Math/IneqMath", "dev", hub_ineqmath))

for _task in (
    Task("math500", "MATH500: 500 MATH test problems (PRM800K split), answers in LaTeX.",
         JsonlSource("math500.jsonl", _hub("HuggingFaceH4/MATH-500", "test", hub_math500)),
         answer_format="boxed", grader="math", default_n=4, default_k=(1, 4), max_new_tokens=4096,
         to_problem=math_problem),
    Task("aime24", "AIME 2024 I and II: 30 problems, integer answers 0-999.",
         JsonlSource("aime24.jsonl", _hub("HuggingFaceH4/aime_2024", "train", hub_aime24)),
         answer_format="boxed", grader="number", default_n=32, default_k=(1, 8, 32), max_new_tokens=8192,
         to_problem=math_problem),
    Task("aime25", "AIME 2025 I and II: 30 problems, integer answers 0-999.",
         JsonlSource("aime25.jsonl", _hub("MathArena/aime_2025", "train", hub_aime25)),
         answer_format="boxed", grader="number", default_n=32, default_k=(1, 8, 32), max_new_tokens=8192,
         to_problem=math_problem),
    Task("amc23", "AMC 12 2023 (A and B), 40 problems rewritten to numeric answers (Qwen2.5-Math set).",
         JsonlSource("amc23.jsonl", _hub("math-ai/amc23", "test", hub_amc23)),
         answer_format="boxed", grader="number", default_n=16, default_k=(1, 4, 16), max_new_tokens=8192,
         to_problem=math_problem),
    # No canonical hub copy carries the answer alternatives, so Minerva is local-data only.
    Task("minerva", "Minerva Math (OCW courses): 272 science problems, numeric answers with tolerance.",
         JsonlSource("minerva_math.jsonl"),
         answer_format="boxed", grader="math", default_n=4, default_k=(1, 4), max_new_tokens=4096,
         to_problem=minerva_problem),
    Task("olympiadbench", "OlympiadBench, English text-only math competition subset (675 problems).",
         JsonlSource("olympiadbench.jsonl",
                     _hub("Hothan/OlympiadBench", "train", hub_olympiadbench, name="OE_TO_maths_en_COMP")),
         answer_format="boxed", grader="math", default_n=4, default_k=(1, 4), max_new_tokens=4096,
         to_problem=olympiadbench_problem),
    Task("ineqmath-bound", "IneqMath dev, bound problems: the optimal constant C (final answer only).",
         FilteredSource(_INEQMATH_DEV, "type", "bound"),
         answer_format="bound", grader="math", default_n=4, default_k=(1, 4), max_new_tokens=4096,
         to_problem=ineqmath_bound_problem),
    Task("ineqmath-relation", "IneqMath dev, relation problems: choose the relation (A)-(F).",
         FilteredSource(_INEQMATH_DEV, "type", "relation"),
         answer_format="relation", grader="choice", default_n=4, default_k=(1, 4), max_new_tokens=4096,
         to_problem=ineqmath_relation_problem),
    Task("gsm8k", "GSM8K test: 1319 grade-school word problems, integer answers.",
         JsonlSource("gsm8k_test.jsonl", _hub("openai/gsm8k", "test", hub_gsm8k, name="main")),
         answer_format="last_number", grader="number", default_n=1, default_k=(1,), max_new_tokens=1024,
         to_problem=gsm8k_problem),
):
    register_task(_task)
