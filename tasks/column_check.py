"""A process reward for the sandbox: the share of a worked solution's column lines whose arithmetic is right.

The sandbox writes column arithmetic one line per column (see `tasks.synthetic`):

    347+85=?     7+5=12 :2            a digit fact, then the running answer with the new digit in front
                 4+8+1=13 :32         '+1': the carry from the line before
                 3+0+1=4 :432
    85-19=?      15-9=6 :6            a second step restates its problem from the first step's result;
                 8-1-1=6 :66          '15-9': a borrowed ten in front, '-1': the borrow paid back

Each line is judged against the lines before it, not against the problem's numbers (the accuracy reward
judges the result). A line is right when its digit fact holds, its carry or borrow follows from the line
before, and its running answer is the new digit in front of the previous one; a restated problem is right
when the value the previous step arrived at is one of its operands; a missing 'carry 1' line counts as one wrong
line. So a careless slip costs the slipped line only, and work that goes on from the slip is right, as a
teacher marking the method would have it. Because nothing here reads the problem text, it also reads MQR's
reformulations and the relation task's work.

Lines that are not column work (a self-check line, a relation's comparison, the \\boxed{} answer) are
skipped; a completion with no column line scores 0.
"""

from __future__ import annotations

import re

from harness.task import Problem

_ADDITION = re.compile(r"(\d)\+(\d)(\+1)?=(\d+) :(\d+)")
_SUBTRACTION = re.compile(r"(1?\d)(-1)?-(\d)=(\d+) :(\d+)")
_CARRY = re.compile(r"carry 1 :(\d+)")
_RESTATED = re.compile(r"(\d+)[-+](\d+)=\?")


def _is_column_work(line: str) -> bool:
    """A line that claims to be column work (so a malformed one counts as wrong rather than being skipped)."""
    return " :" in line or line.endswith("=?")


def check_column_work(completion: str) -> tuple[int, int]:
    """(right lines, counted lines) of a completion's column work."""
    right = counted = 0
    running = ""  # the current step's running answer so far
    carry = borrow = False  # what the previous line of this step passes on
    previous_value: int | None = None  # the value the previous step arrived at

    def close_step() -> None:
        nonlocal counted, previous_value
        if carry:  # an addition that ended on a carry without writing its 'carry 1' line
            counted += 1
        if running:
            previous_value = int(running)

    for line in (raw.strip() for raw in completion.split("\n")):
        if not _is_column_work(line):
            continue
        counted += 1
        if restated := _RESTATED.fullmatch(line):
            close_step()
            # The sandbox restates from the first operand; MQR's sub-problems may substitute either one.
            right += previous_value in (int(restated[1]), int(restated[2]))
            running, carry, borrow = "", False, False
            continue
        if added := _ADDITION.fullmatch(line):
            top, bottom, total = int(added[1]), int(added[2]), int(added[4])
            carried = added[3] is not None
            ok = (not borrow and carried == carry and total == top + bottom + carried
                  and added[5] == f"{total % 10}{running}")
            running, carry, borrow = added[5], total >= 10, False
        elif subtracted := _SUBTRACTION.fullmatch(line):
            top, bottom, difference = int(subtracted[1]), int(subtracted[3]), int(subtracted[4])
            paid_back = subtracted[2] is not None
            borrowed = top >= 10
            # A ten is borrowed exactly when the column's own digit (less a borrow paid back) is too small.
            needed = (top - 10 if borrowed else top) - paid_back < bottom
            ok = (not carry and paid_back == borrow and borrowed == needed
                  and difference == top - paid_back - bottom and subtracted[5] == f"{difference}{running}")
            running, carry, borrow = subtracted[5], False, borrowed
        elif carried_over := _CARRY.fullmatch(line):
            ok = carry and carried_over[1] == f"1{running}"
            running, carry, borrow = carried_over[1], False, False
        else:  # looks like column work but is not well formed
            ok = False
            running, carry, borrow = "", False, False
        right += ok
    close_step()
    return right, counted


def process_reward(problem: Problem, completion: str) -> float:
    """Share of the completion's column lines that are right, in [0, 1]; 0 without column work.

    Takes the problem for the `Task.aux_rewards` signature; the check reads the work alone (module docstring).
    """
    right, counted = check_column_work(completion)
    return right / counted if counted else 0.0
