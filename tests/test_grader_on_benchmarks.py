"""The graders against the real benchmark data: golds, reference solutions, and corrupted solutions.

A grader that is too strict scores correct answers wrong (the gold itself, or a reference solution); one
that is too lenient scores wrong answers right (a solution whose final answer was changed). Both must
hold on >= 99% of every benchmark, through the task's own extractor and grader and the worker pool.
"""

import re

import pytest

from harness.extraction import RELATION_OPTIONS, extract, last_boxed
from harness.grading_pool import GradingPool
from harness.task import TASKS, read_jsonl
from tasks.benchmarks import MINERVA_MISALIGNED_ALTERNATIVES

BENCHMARKS = ["math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench", "ineqmath-bound",
              "ineqmath-relation", "gsm8k"]

# Where reference solutions that state a final answer live. aime25 and amc23 have none; OlympiadBench's
# solutions are proofs that never restate the final answer in a box (0 of 675), so only its golds are
# checked. IneqMath's dev split has no solutions; its train sample does (same answer format).
SOLUTION_FILES = {"math500": None, "aime24": None, "minerva": None, "gsm8k": None,
                  "ineqmath-bound": "ineqmath_train_sample200.jsonl",
                  "ineqmath-relation": "ineqmath_train_sample200.jsonl"}

# Reference solutions that do not state their answer in the task's format (and why).
EXCLUDED = {"aime-2024-I-01": "the AoPS solution ends '$180 + 24 = 204$. -sepehr2010' without \\boxed"}

THRESHOLD = 0.99


@pytest.fixture(scope="module")
def pool():
    with GradingPool() as p:
        yield p


def bump_digits(text: str) -> str:
    """A value that is not equivalent: every digit +1 (mod 10); a digit-free answer becomes 7/13."""
    if not re.search(r"\d", text):
        return "\\frac{7}{13}"
    return re.sub(r"\d", lambda m: str((int(m[0]) + 1) % 10), text)


def corrupt_solution(text: str, answer_format: str) -> str:
    """The same solution with its final answer (as the extractor finds it) replaced by a wrong one."""
    if answer_format == "relation":
        option = list(re.finditer(r"\(([A-F])\)", text))[-1]
        letters = list(RELATION_OPTIONS)
        other = letters[(letters.index(option[1]) + 1) % len(letters)]
        return text[:option.start()] + f"({other}) ${RELATION_OPTIONS[other]}$."
    if answer_format == "last_number":
        number = list(re.finditer(r"\d[\d,]*(?:\.\d+)?", text))[-1]
        return text[:number.start()] + bump_digits(number[0]) + text[number.end():]
    box = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    content = last_boxed(text) if box != -1 else extract(text, answer_format)
    start = text.find(content, max(box, 0)) if box != -1 else text.rfind(content)
    return text[:start] + bump_digits(content) + text[start + len(content):]


def gold_completion(gold: str, answer_format: str) -> str:
    return f"#### {gold}" if answer_format == "last_number" else f"The final answer is \\boxed{{{gold}}}."


def solution_problems(task, benchmarks_dir):
    filename = SOLUTION_FILES[task.name]
    if filename is None:
        return [p for p in task.load(benchmarks_dir).problems if p.solution and p.id not in EXCLUDED]
    kind = task.name.split("-")[1]
    records = [r for r in read_jsonl(benchmarks_dir / filename) if r["type"] == kind]
    return [task.to_problem(r) for r in records if r.get("solution")]


def rate(verdicts) -> float:
    return sum(verdicts) / len(verdicts)


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_gold_grades_right_and_its_corruption_wrong(name, benchmarks_dir, pool):
    task = TASKS.get(name)
    problems = task.load(benchmarks_dir).problems
    # Every accepted gold (Minerva's alternatives, the IneqMath letter and its symbol) is checked.
    pairs = [(p, gold) for p in problems for gold in p.golds]
    right = pool.grade([(task.grader, p.golds, extract(gold_completion(g, task.answer_format),
                                                       task.answer_format)) for p, g in pairs])
    other_option = {p.id: next(x for x in RELATION_OPTIONS if x not in p.golds) for p in problems}
    wrong_golds = [other_option[p.id] if task.grader == "choice" else bump_digits(g) for p, g in pairs]
    wrong_answers = [extract(gold_completion(g, task.answer_format), task.answer_format) for g in wrong_golds]
    wrong = pool.grade([(task.grader, p.golds, a) for (p, _), a in zip(pairs, wrong_answers, strict=True)])
    print(f"\n{name}: gold {sum(right)}/{len(right)} graded right; corrupted gold {len(wrong) - sum(wrong)}/"
          f"{len(wrong)} graded wrong")
    failures = [(p.id, g) for (p, g), ok in zip(pairs, right, strict=True) if not ok]
    assert rate(right) >= THRESHOLD, f"golds graded wrong: {failures[:10]}"
    lenient = [(p.id, g) for (p, g), bad in zip(pairs, wrong, strict=True) if bad]
    assert 1 - rate(wrong) >= THRESHOLD, f"corrupted golds graded right: {lenient[:10]}"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["strict", "lenient"])
@pytest.mark.parametrize("name", sorted(SOLUTION_FILES))
def test_reference_solutions_grade_right_and_corrupted_ones_wrong(name, mode, benchmarks_dir, pool):
    """Real worked solutions, through both extraction modes: lenient must not lose what strict reads."""
    task = TASKS.get(name)
    problems = solution_problems(task, benchmarks_dir)
    answers = [extract(p.solution, task.answer_format, mode) for p in problems]
    right = pool.grade([(task.grader, p.golds, a) for p, a in zip(problems, answers, strict=True)])
    corrupted = [extract(corrupt_solution(p.solution, task.answer_format), task.answer_format, mode)
                 for p in problems]
    assert all(c != a for c, a in zip(corrupted, answers, strict=True)), "corruption left an answer unchanged"
    wrong = pool.grade([(task.grader, p.golds, c) for p, c in zip(problems, corrupted, strict=True)])
    print(f"\n{name} ({mode}): reference solutions {sum(right)}/{len(right)} graded right; corrupted "
          f"{len(wrong) - sum(wrong)}/{len(wrong)} graded wrong")
    failures = [(p.id, p.golds, a) for p, a, ok in zip(problems, answers, right, strict=True) if not ok]
    assert rate(right) >= THRESHOLD, f"reference solutions graded wrong: {failures[:10]}"
    lenient = [(p.id, p.golds, c) for p, c, bad in zip(problems, corrupted, wrong, strict=True) if bad]
    assert 1 - rate(wrong) >= THRESHOLD, f"corrupted solutions graded right: {lenient[:10]}"


@pytest.mark.slow
def test_dropped_minerva_alternatives_are_really_different(benchmarks_dir, pool):
    """Every alternative that tasks/benchmarks.py drops is one the grader calls different from the box."""
    records = read_jsonl(benchmarks_dir / "minerva_math.jsonl")
    dropped = [(r["id"], r["answer"], alternative) for r in records
               if r["id"] in MINERVA_MISALIGNED_ALTERNATIVES
               for alternative in r["answer_alternatives"] if alternative.strip() != r["answer"].strip()]
    assert {row for row, _, _ in dropped} == MINERVA_MISALIGNED_ALTERNATIVES
    verdicts = pool.grade([("math", (answer,), alternative) for _, answer, alternative in dropped])
    assert not any(verdicts), [d for d, same in zip(dropped, verdicts, strict=True) if same]
