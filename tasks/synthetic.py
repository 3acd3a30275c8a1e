"""Seeded synthetic math tasks for the sandbox: arithmetic with worked solutions, and a relation task.

Why this format. The sandbox model is a ~1M-parameter character-level Llama trained for a few CPU minutes,
so the worked solution is the algorithm written out one column at a time, the way a tiny transformer can
learn it: each line needs one digit fact (a+b, a-b or a*b on single digits, plus a carry or borrow) and a
copy of the running answer with one new digit in front, e.g.

    347+85=?     7+5=12 :2
                 4+8+1=13 :32
                 3+1=4 :432
                 \\boxed{432}

Every line is local (look up two digits, apply one fact, copy), so short problems are learnt within the
warm start, while three-digit columns and multiplication carries stay error-prone at temperature 1: the
levels give a spread of per-problem success rates, which is what group-relative RL needs.

Levels: 1 = one-or-two-digit addition/subtraction, 2 = two-or-three-digit addition/subtraction (at least
one three-digit operand), 3 = a two-or-three-digit number times one digit. Subtraction never goes negative.

Train and test never overlap: a problem's split is a function of the hash of its text, so no seed, count or
level mix can put the same problem in both.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

from harness.task import GeneratedSource, Problem, Task, register_task

LEVELS = (1, 2, 3)
# One problem text in TEST_BUCKETS belongs to the test split (by hash), the rest to train.
TEST_BUCKETS = 8

# Seeds of the registered tasks; changing one changes the task's data sha256, i.e. is a new protocol.
TEST_SEED = 1234
TRAIN_SEED = 5678
TEST_SIZE_PER_LEVEL = 80  # 240 test problems: enough for a pass@1 error bar of about +-3 points
TRAIN_SIZE = 20000
RELATION_TEST_SIZE = 200
RELATION_TRAIN_SIZE = 5000

# IneqMath's relation options, with the symbol each letter stands for; the text mirrors the benchmark's
# "(A) $\leq$ ..." choices without the dollar signs, to keep the tiny model's prompt short.
RELATION_OPTIONS = (("A", "\\leq"), ("B", "\\geq"), ("C", "="), ("D", "<"), ("E", ">"),
                    ("F", "None of the above"))
RELATION_CHOICES = " ".join(f"({letter}) {symbol}" for letter, symbol in RELATION_OPTIONS)


def split_of(problem: str) -> str:
    """'test' or 'train', fixed by the problem text alone."""
    bucket = int(hashlib.sha256(problem.encode()).hexdigest()[:8], 16) % TEST_BUCKETS
    return "test" if bucket == 0 else "train"


def _digits(n: int) -> list[int]:
    """Decimal digits, least significant first."""
    return [int(c) for c in reversed(str(n))]


def addition_steps(a: int, b: int) -> list[str]:
    """Column addition, one line per column: 'da+db[+carry]=sum :running answer'."""
    da, db = _digits(a), _digits(b)
    lines, carry, running = [], 0, ""
    for i in range(max(len(da), len(db))):
        terms = [d[i] for d in (da, db) if i < len(d)] + ([carry] if carry else [])
        total = sum(terms)
        carry, running = total // 10, str(total % 10) + running
        lines.append(f"{'+'.join(map(str, terms))}={total} :{running}")
    if carry:
        lines.append(f"carry 1 :1{running}")
    return lines


def subtraction_steps(a: int, b: int) -> list[str]:
    """Column subtraction (a >= b): 'da[-borrow]-db=diff', with a borrowed 10 written as '1da'."""
    da, db = _digits(a), _digits(b)
    lines, borrow, running = [], 0, ""
    for i in range(len(da)):
        top = da[i] - borrow
        bottom = db[i] if i < len(db) else 0
        borrow = 1 if top < bottom else 0
        shown_top = f"1{da[i]}" if borrow else str(da[i])
        terms = [shown_top] + (["1"] if top != da[i] else []) + ([str(bottom)] if i < len(db) else [])
        running = str(top + 10 * borrow - bottom) + running
        lines.append(f"{'-'.join(terms)}={top + 10 * borrow - bottom} :{running}")
    return lines


def multiplication_steps(a: int, b: int) -> list[str]:
    """a times a single digit b: 'da*b[+carry]=product :running answer'."""
    lines, carry, running = [], 0, ""
    for digit in _digits(a):
        total = digit * b + carry
        shown = f"{digit}*{b}" + (f"+{carry}" if carry else "")
        carry, running = total // 10, str(total % 10) + running
        lines.append(f"{shown}={total} :{running}")
    if carry:
        lines.append(f"carry {carry} :{carry}{running}")
    return lines


def solve(a: int, op: str, b: int) -> tuple[str, str]:
    """(answer, worked solution ending in \\boxed{answer}) for `a op b`."""
    if op == "+":
        answer, lines = a + b, addition_steps(a, b)
    elif op == "-":
        answer, lines = a - b, subtraction_steps(a, b)
    elif op == "*":
        answer, lines = a * b, multiplication_steps(a, b)
    else:
        raise ValueError(f"unknown operator {op!r}")
    # The running answer can carry leading zeros (105-98 -> '007'); the boxed answer drops them.
    return str(answer), "\n".join(lines) + f"\n\\boxed{{{answer}}}"


def draw_operation(rng: random.Random, level: int) -> tuple[int, str, int]:
    """Operands and operator of one problem of the given level."""
    if level == 1:
        a, b, op = rng.randint(0, 99), rng.randint(0, 99), rng.choice("+-")
    elif level == 2:
        while True:
            a, b, op = rng.randint(10, 999), rng.randint(10, 999), rng.choice("+-")
            if max(a, b) >= 100:
                break
    elif level == 3:
        a, b, op = rng.randint(10, 999), rng.randint(2, 9), "*"
    else:
        raise ValueError(f"unknown level {level}; levels are {LEVELS}")
    if op == "-" and a < b:
        a, b = b, a
    return a, op, b


def _draw_unique(split: str, count: int, seed: int, draw) -> list[tuple]:
    """`count` distinct problems of `split` from draw(rng) -> (problem, ...), in a seeded order."""
    rng = random.Random(seed)
    seen, out = set(), []
    for _ in range(count * 50 + 10000):
        item = draw(rng)
        if item[0] in seen or split_of(item[0]) != split:
            continue
        seen.add(item[0])
        out.append(item)
        if len(out) == count:
            return out
    raise ValueError(f"could not draw {count} distinct {split} problems; the problem space is too small")


@lru_cache(maxsize=16)
def _arithmetic(split: str, count_per_level: int, seed: int, levels: tuple[int, ...]) -> tuple[dict, ...]:
    records = []
    for level in levels:
        def draw(rng, level=level):
            a, op, b = draw_operation(rng, level)
            return (f"{a}{op}{b}=?", a, op, b)

        for problem, a, op, b in _draw_unique(split, count_per_level, seed * 31 + level, draw):
            answer, solution = solve(a, op, b)
            records.append({"problem": problem, "answer": answer, "solution": solution, "level": level})
    # Interleave the levels in a seeded order, so any prefix of the records is a fair mix.
    random.Random(seed).shuffle(records)
    return tuple({"id": f"sandbox-{split}-{i:05d}", **record} for i, record in enumerate(records))


def generate_arithmetic(split: str, count_per_level: int, seed: int, levels=LEVELS) -> list[dict]:
    """Records {"id", "problem", "answer", "solution", "level"}: same arguments, same records."""
    return [dict(record) for record in _arithmetic(split, count_per_level, seed, tuple(levels))]


def relation_of(left: int, right: int) -> tuple[str, str]:
    """The IneqMath option (letter, symbol) for `left () right`: the strict or equal relation that holds."""
    letter = "C" if left == right else ("D" if left < right else "E")
    return letter, dict(RELATION_OPTIONS)[letter]


@lru_cache(maxsize=8)
def _relation(split: str, count: int, seed: int) -> tuple[dict, ...]:
    def draw(rng):
        a, op, b = draw_operation(rng, 1)
        value = eval(f"{a}{op}{b}")  # noqa: S307 (our own two-integer expression)
        # The right side sits close to the value (and equals it a fifth of the time), so the relation
        # cannot be read off the sizes of the numbers: the model has to do the arithmetic.
        right = value if rng.random() < 0.2 else max(0, value + rng.choice([-1, 1]) * rng.randint(1, 10))
        return (f"{a}{op}{b} () {right}\n{RELATION_CHOICES}", a, op, b, value, right)

    records = []
    for i, (problem, a, op, b, value, right) in enumerate(_draw_unique(split, count, seed, draw)):
        letter, symbol = relation_of(value, right)
        _, worked = solve(a, op, b)
        steps = worked.rsplit("\n", 1)[0]  # the column work without its boxed value
        relation = {"C": "=", "D": "<", "E": ">"}[letter]
        records.append({
            "id": f"sandbox-relation-{split}-{i:05d}", "problem": problem, "answer": letter, "symbol": symbol,
            "solution": f"{steps}\n{value}{relation}{right}\n\\boxed{{{letter}}}", "level": 1,
        })
    return tuple(records)


def generate_relation(split: str, count: int, seed: int) -> list[dict]:
    """Records {"id", "problem", "answer" (option letter), "symbol", "solution", "level"}."""
    return [dict(record) for record in _relation(split, count, seed)]


def arithmetic_problem(record: dict) -> Problem:
    return Problem(id=record["id"], problem=record["problem"], golds=(record["answer"],),
                   solution=record["solution"], meta={"level": record["level"]})


def relation_problem(record: dict) -> Problem:
    return Problem(id=record["id"], problem=record["problem"], golds=(record["answer"], record["symbol"]),
                   solution=record["solution"],
                   meta={"level": record["level"], "choices": [f"({a}) {s}" for a, s in RELATION_OPTIONS]})


def sandbox_test() -> list[dict]:
    return generate_arithmetic("test", TEST_SIZE_PER_LEVEL, TEST_SEED)


def sandbox_train() -> list[dict]:
    return generate_arithmetic("train", TRAIN_SIZE // len(LEVELS) + 1, TRAIN_SEED)[:TRAIN_SIZE]


def sandbox_relation_test() -> list[dict]:
    return generate_relation("test", RELATION_TEST_SIZE, TEST_SEED)


def sandbox_relation_train() -> list[dict]:
    return generate_relation("train", RELATION_TRAIN_SIZE, TRAIN_SEED)


# Longest solutions: 999+999 / 999*9 style problems run to ~60 characters, relation ones to ~50; the
# budget sits a little above so truncation means "rambling", not "cut off mid-answer".
ARITHMETIC_MAX_NEW_TOKENS = 80
RELATION_MAX_NEW_TOKENS = 72

for _name, _generate, _description in (
    ("sandbox", sandbox_test, f"arithmetic test split, seed {TEST_SEED}"),
    ("sandbox-train", sandbox_train, f"arithmetic train split, seed {TRAIN_SEED}"),
):
    register_task(Task(
        name=_name,
        description=f"Synthetic column arithmetic, levels 1-3 ({_description}); the sandbox default.",
        source=GeneratedSource(_generate, _description),
        answer_format="boxed", grader="math", template="plain",
        default_n=4, default_k=(1, 4), max_new_tokens=ARITHMETIC_MAX_NEW_TOKENS,
        to_problem=arithmetic_problem,
    ))

for _name, _generate, _description in (
    ("sandbox-relation", sandbox_relation_test, f"relation test split, seed {TEST_SEED}"),
    ("sandbox-relation-train", sandbox_relation_train, f"relation train split, seed {TRAIN_SEED}"),
):
    register_task(Task(
        name=_name,
        description=f"Synthetic IneqMath-style relation choice: compare a sum or difference with a number "
                    f"({_description}).",
        source=GeneratedSource(_generate, _description),
        answer_format="relation", grader="choice", template="plain",
        default_n=4, default_k=(1, 4), max_new_tokens=RELATION_MAX_NEW_TOKENS,
        to_problem=relation_problem,
    ))
