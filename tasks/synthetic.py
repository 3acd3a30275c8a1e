"""Seeded synthetic math tasks for the sandbox: arithmetic with worked solutions, and a relation task.

Why this format. The sandbox model is a ~1M-parameter character-level Llama trained for a few CPU minutes,
so the worked solution is the column algorithm written out the way a tiny transformer can learn it: each
line needs two digits found next to a delimiter, one single-digit fact (plus a carry or borrow) written out
in full, and a copy of the running answer with the new digit in front:

    347+85=?     7+5=12 :2
                 4+8+1=13 :32
                 3+0+1=4 :432
                 \\boxed{432}

Measured alternatives, all worse within the warm-start budget (same model and steps): the bare answer, the
answer reversed, the place-value chain "347+80+5 = 427+5 = 432", and a state trace that leaves the digit
fact implicit ("34+8+1 :2") were all near 0% after 500-1000 steps; this format was the first to learn
carries. Every line has the same shape (a missing digit is a written 0) because rare shapes are where the
tiny model miscopies.

Levels, so that some problems are mostly solved and some mostly not at temperature 1, which is what
group-relative RL needs: 1 = a one- or two-digit number plus or minus a digit, 2 = two-digit plus or minus
two-digit, 3 = three-digit plus or minus two- or three-digit, 4 = two steps on two-digit numbers
("37+48-19=?"), where the second step restates its own problem ("85-19=?"). Nothing goes negative.

Train and test never overlap: a problem's split is a function of the hash of its text, so no seed, count or
level mix can put the same problem in both. The train split serves twice, without overlap: a large set the
warm start learns the format from (`warm_start_train`), and a small pool RL trains on (`sandbox-train`,
`POOL_SIZE_PER_LEVEL` per level, none of them in the warm start's set), small enough that the default
budget draws each of its problems several times, so variants that act on repeats (GDRO's scores, R3's
replays) have repeats to act on.

Two more things ride on the format. A worked solution may end with a self-check line that restates the
problem with the value the work arrived at ("let me check: 37+48=85"), which the reflection detector
recognises; and `process_reward` checks each column line's arithmetic, the sandbox's verifiable second
reward (`Task.aux_rewards["process"]`).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from functools import lru_cache

from harness.task import GeneratedSource, Problem, Task, register_task
from tasks.column_check import process_reward

LEVELS = (1, 2, 3, 4)
# One problem text in TEST_BUCKETS belongs to the test split (by hash), the rest to train.
TEST_BUCKETS = 8

# Seeds of the registered tasks; changing one changes the task's data sha256, i.e. is a new protocol.
TEST_SEED = 1234
TRAIN_SEED = 5678
POOL_SEED = 2468
TEST_SIZE_PER_LEVEL = 60  # 240 test problems: enough for a pass@1 error bar of about +-3 points
# Level 1 has only ~1,900 distinct problems (7/8 of them train), so its share is what exists; its moves are
# all practised inside the other levels anyway.
TRAIN_SIZE_PER_LEVEL = {1: 1500, 2: 6000, 3: 6000, 4: 6000}
# The RL train pool: 160 problems, so the default budget (GRPO: 25 steps x 16 prompts = 400 draws) draws each
# one 2-3 times, a new seeded order every pass (ours). Level 1 has 199 train problems left outside the warm
# start's set, enough for 40.
POOL_SIZE_PER_LEVEL = 40
RELATION_TEST_SIZE = 200
RELATION_TRAIN_SIZE = 5000
RELATION_LEVEL = 2  # the left side of a relation problem is a level-2 expression ("37+48 () 86")

# IneqMath's relation options, with the symbol each letter stands for; the text mirrors the benchmark's
# "(A) $\leq$ ..." choices without the dollar signs, to keep the tiny model's prompt short.
RELATION_OPTIONS = (("A", "\\leq"), ("B", "\\geq"), ("C", "="), ("D", "<"), ("E", ">"),
                    ("F", "None of the above"))
RELATION_CHOICES = " ".join(f"({letter}) {symbol}" for letter, symbol in RELATION_OPTIONS)


def split_of(problem: str) -> str:
    """'test' or 'train', fixed by the problem text alone."""
    bucket = int(hashlib.sha256(problem.encode()).hexdigest()[:8], 16) % TEST_BUCKETS
    return "test" if bucket == 0 else "train"


def _digits(n: int, width: int) -> list[int]:
    """Decimal digits, least significant first, padded with zeros to `width`."""
    return [int(c) for c in reversed(str(n).zfill(width))]


def _slipped(value: int, low: int, high: int, slip) -> int:
    """`value`, or one off it (staying in [low, high]) when `slip()` says this line is a careless slip."""
    if slip is None or not slip():
        return value
    return value - 1 if value == high or (value > low and slip.coin()) else value + 1


def addition_steps(a: int, b: int, slip=None) -> list[str]:
    """Column addition, one line per column: 'da+db[+1]=sum :running answer'.

    A missing digit is written as 0, so every line has the same shape: an early version wrote a lone
    '3=3' line for one-digit operands, and the model, seeing that shape rarely, miscopied right there.
    With `slip` (a `Slips`), a line's sum may be off by one and the work goes on from the wrong sum.
    """
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    lines, carry, running = [], 0, ""
    for top, bottom in zip(da, db, strict=True):
        total = _slipped(top + bottom + carry, 0, 19, slip)
        shown = f"{top}+{bottom}" + ("+1" if carry else "")
        carry, running = total // 10, str(total % 10) + running
        lines.append(f"{shown}={total} :{running}")
    if carry:
        lines.append(f"carry 1 :1{running}")
    return lines


def subtraction_steps(a: int, b: int, slip=None) -> list[str]:
    """Column subtraction (a >= b): 'da[-1]-db=diff', a borrowed ten written in front ('13-1-8=4')."""
    width = len(str(a))
    da, db = _digits(a, width), _digits(b, width)
    lines, borrow, running = [], 0, ""
    for top, bottom in zip(da, db, strict=True):
        borrow_in = borrow
        borrow = 1 if top - borrow_in < bottom else 0
        difference = _slipped(top + 10 * borrow - borrow_in - bottom, 0, 9, slip)
        shown = f"{10 * borrow + top}" + ("-1" if borrow_in else "") + f"-{bottom}"
        running = str(difference) + running
        lines.append(f"{shown}={difference} :{running}")
    return lines


_TERM = re.compile(r"(\d+)([-+])(\d+)")


def evaluate(expression: str) -> int:
    """Value of a sandbox expression ('37+48-19'), left to right as written."""
    numbers, operators = re.split(r"[-+]", expression), re.findall(r"[-+]", expression)
    value = int(numbers[0])
    for op, number in zip(operators, numbers[1:], strict=True):
        value = value + int(number) if op == "+" else value - int(number)
    return value


class Slips:
    """A careless teacher: each column line's result is off by one with probability `rate` (seeded)."""

    def __init__(self, rate: float, rng: random.Random):
        self.rate, self.rng = rate, rng

    def __call__(self) -> bool:
        return self.rng.random() < self.rate

    def coin(self) -> bool:
        return self.rng.random() < 0.5


def _column_lines(a: int, op: str, b: int, slip=None) -> list[str]:
    if op == "+":
        return addition_steps(a, b, slip)
    if op == "-":
        return subtraction_steps(a, b, slip)
    raise ValueError(f"unknown operator {op!r}")


def _running_value(lines: list[str]) -> int:
    """The number a block of column lines ends on (its last running answer)."""
    return int(lines[-1].rsplit(":", 1)[1])


def solve(expression: str, slip: Slips | None = None) -> tuple[str, str]:
    """(answer, worked solution ending in \\boxed{answer}) for a one- or two-operation expression.

    A second operation restates its own problem ('85-19=?') from the first result, so it is solved with
    exactly the same column moves as a fresh problem. With `slip`, the solution is a careless teacher's:
    its answer is the one its (possibly slipped) work arrives at.
    """
    first = _TERM.match(expression)
    if first is None:
        raise ValueError(f"not a sandbox expression: {expression!r}")
    a, op, b = int(first[1]), first[2], int(first[3])
    lines = _column_lines(a, op, b, slip)
    value = _running_value(lines)
    rest = expression[first.end():]
    if rest:
        op2, c = rest[0], int(rest[1:])
        if op2 == "-" and value < c:  # a slip made the second step negative: this one is written carefully
            return solve(expression)
        second = _column_lines(value, op2, c, slip)
        lines += [f"{value}{op2}{c}=?"] + second
        value = _running_value(second)
    # The running answer can carry leading zeros (105-98 -> '007'); the boxed answer drops them.
    return str(value), "\n".join(lines) + f"\n\\boxed{{{value}}}"


SELF_CHECK_PREFIX = "let me check: "


def with_self_check(solution: str, expression: str) -> str:
    """`solution` with a self-check line before its \\boxed{}: 'let me check: 37+48=85'.

    The line restates the problem with the value the work arrived at, right or wrong, so it is a function of
    what the model can see (the prompt and its own last line) and a tiny model can learn to write it. Its
    words are one of `harness.markers.REFLECTION_MARKERS`, so the reflection detector counts it.
    """
    work, boxed = solution.rsplit("\n", 1)
    value = boxed.removeprefix("\\boxed{").removesuffix("}")
    return f"{work}\n{SELF_CHECK_PREFIX}{expression}={value}\n{boxed}"


def draw_expression(rng: random.Random, level: int) -> str:
    """One problem of the given level, as an expression without '=?'."""
    if level == 1:  # one column of real work: a one- or two-digit number and a digit
        a, op, b = rng.randint(0, 99), rng.choice("+-"), rng.randint(0, 9)
    elif level == 2:  # two columns, carries and borrows
        a, op, b = rng.randint(10, 99), rng.choice("+-"), rng.randint(10, 99)
    elif level == 3:  # three columns
        a, op, b = rng.randint(100, 999), rng.choice("+-"), rng.randint(10, 999)
    elif level == 4:  # two steps on two-digit numbers, never negative on the way
        while True:
            a, b, c = rng.randint(10, 99), rng.randint(10, 99), rng.randint(10, 99)
            op1, op2 = rng.choice("+-"), rng.choice("+-")
            if evaluate(f"{a}{op1}{b}") >= 0 and evaluate(f"{a}{op1}{b}{op2}{c}") >= 0:
                return f"{a}{op1}{b}{op2}{c}"
    else:
        raise ValueError(f"unknown level {level}; levels are {LEVELS}")
    if op == "-" and a < b:
        a, b = b, a
    return f"{a}{op}{b}"


def _draw_unique(split: str, count: int, seed: int, draw, exclude: frozenset[str] = frozenset()) -> list[tuple]:
    """`count` distinct problems of `split`, none in `exclude`, from draw(rng) -> (problem, ...), in a seeded
    order."""
    rng = random.Random(seed)
    seen, out = set(exclude), []
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
def _arithmetic(split: str, counts: tuple[tuple[int, int], ...], seed: int, exclude: frozenset[str] = frozenset(),
                name: str | None = None) -> tuple[dict, ...]:
    records = []
    for level, count in counts:
        def draw(rng, level=level):
            expression = draw_expression(rng, level)
            return (f"{expression}=?", expression)

        for problem, expression in _draw_unique(split, count, seed * 31 + level, draw, exclude):
            answer, solution = solve(expression)
            records.append({"problem": problem, "answer": answer, "solution": solution, "level": level})
    # Interleave the levels in a seeded order, so any prefix of the records is a fair mix.
    random.Random(seed).shuffle(records)
    return tuple({"id": f"sandbox-{name or split}-{i:05d}", **record} for i, record in enumerate(records))


def generate_arithmetic(split: str, count_per_level: int | Mapping[int, int], seed: int,
                        exclude: frozenset[str] = frozenset(), name: str | None = None) -> list[dict]:
    """Records {"id", "problem", "answer", "solution", "level"}: same arguments, same records.

    `count_per_level` is one count for every level or a {level: count} mapping; no problem text in `exclude`
    is drawn; ids read "sandbox-<name>-<index>" (name defaults to the split).
    """
    counts = count_per_level if isinstance(count_per_level, Mapping) else dict.fromkeys(LEVELS, count_per_level)
    return [dict(record) for record in _arithmetic(split, tuple(sorted(counts.items())), seed, exclude, name)]


def relation_of(left: int, right: int) -> tuple[str, str]:
    """The IneqMath option (letter, symbol) for `left () right`: the strict or equal relation that holds."""
    letter = "C" if left == right else ("D" if left < right else "E")
    return letter, dict(RELATION_OPTIONS)[letter]


@lru_cache(maxsize=8)
def _relation(split: str, count: int, seed: int) -> tuple[dict, ...]:
    def draw(rng):
        expression = draw_expression(rng, RELATION_LEVEL)
        value = evaluate(expression)
        # The right side sits close to the value (and equals it a fifth of the time), so the relation
        # cannot be read off the sizes of the numbers: the model has to do the arithmetic.
        right = value if rng.random() < 0.2 else max(0, value + rng.choice([-1, 1]) * rng.randint(1, 10))
        return (f"{expression} () {right}\n{RELATION_CHOICES}", expression, value, right)

    records = []
    for i, (problem, expression, value, right) in enumerate(_draw_unique(split, count, seed, draw)):
        letter, symbol = relation_of(value, right)
        _, worked = solve(expression)
        steps = worked.rsplit("\n", 1)[0]  # the column work without its boxed value
        relation = {"C": "=", "D": "<", "E": ">"}[letter]
        records.append({
            "id": f"sandbox-relation-{split}-{i:05d}", "problem": problem, "answer": letter, "symbol": symbol,
            "solution": f"{steps}\n{value}{relation}{right}\n\\boxed{{{letter}}}", "level": RELATION_LEVEL,
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


def warm_start_train() -> list[dict]:
    """The warm start's supervised set: 19,500 train-split problems with worked solutions."""
    return generate_arithmetic("train", TRAIN_SIZE_PER_LEVEL, TRAIN_SEED)


def sandbox_train_pool() -> list[dict]:
    """The RL train pool (`sandbox-train`): train-split problems the warm start never saw, 40 per level."""
    warm_start_problems = frozenset(record["problem"] for record in warm_start_train())
    return generate_arithmetic("train", POOL_SIZE_PER_LEVEL, POOL_SEED, exclude=warm_start_problems, name="pool")


def sandbox_relation_test() -> list[dict]:
    return generate_relation("test", RELATION_TEST_SIZE, TEST_SEED)


def sandbox_relation_train() -> list[dict]:
    return generate_relation("train", RELATION_TRAIN_SIZE, TRAIN_SEED)


# Longest solutions (one token per character): 92 for level 4, 119 with a self-check line, ~50 for relation
# problems; the budget sits a little above, so truncation means "rambling", not "cut off mid-answer".
ARITHMETIC_MAX_NEW_TOKENS = 128
RELATION_MAX_NEW_TOKENS = 72
# Every sandbox task's verifiable second reward (see tasks.column_check); GDPO adds it as a component.
SANDBOX_AUX_REWARDS = {"process": process_reward}

for _name, _generate, _description in (
    ("sandbox", sandbox_test, f"arithmetic test split, seed {TEST_SEED}"),
    ("sandbox-train", sandbox_train_pool,
     f"RL train pool, {POOL_SIZE_PER_LEVEL * len(LEVELS)} train-split problems outside the warm start's set, "
     f"seed {POOL_SEED}"),
):
    register_task(Task(
        name=_name,
        description=f"Synthetic column arithmetic, levels 1-4 ({_description}); the sandbox default.",
        source=GeneratedSource(_generate, _description),
        answer_format="boxed", grader="math", template="plain",
        default_n=4, default_k=(1, 4), max_new_tokens=ARITHMETIC_MAX_NEW_TOKENS,
        to_problem=arithmetic_problem, aux_rewards=SANDBOX_AUX_REWARDS,
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
        to_problem=relation_problem, aux_rewards=SANDBOX_AUX_REWARDS,
    ))
