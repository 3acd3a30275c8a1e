"""A paper's headline claim as a record a variant declares (`harness.claims` tests it against training runs).

Standard library only: the variant records hold their claims, and the variant math loads inside an engine's
workers (verl's) with nothing of the harness's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("higher", "lower", "not lower")


@dataclass(frozen=True)
class Claim:
    """One headline claim of a paper against its baseline, as a statement this harness can test."""

    statement: str  # what the paper says, in short
    section: str  # where it is recorded (variants.md section, the paper's own where known)
    measure: str  # a MEASURES key
    direction: str  # "higher", "lower" or "not lower" (no loss beyond `margin`)
    margin: float = 0.0  # for "not lower": the loss that still counts as none, in the measure's units
    baseline: str = "grpo"  # the label it is tested against ("warm start" for the starting model)

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"claim direction must be one of {DIRECTIONS}, got {self.direction!r}")
