"""Self-check markers: the phrases by which a response reflects on its own work ("wait", "let me check", ...).

The reflection variant rewards them, its claims and the sandbox's warm-start check count them. Standard library
only, so the variant math can use them inside an engine's workers.
"""

from __future__ import annotations

import re

# Self-check markers (ours; variants.md §15's list). "wait" is a whole word so "await" or "waiting" are no
# reflection.
REFLECTION_MARKERS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\bwait\b", r"let me (re)?check", r"let me verify", r"double-check", r"re-examine", r"hold on",
    r"actually,", r"that's (wrong|incorrect)",
))


def reasoning_segment(text: str) -> str:
    """The part of a response that reasons: before the last </think> in R1 style, else all of it."""
    end = text.rfind("</think>")
    return text if end == -1 else text[:end]


def marker_count(text: str) -> int:
    """How many different self-check markers occur in the reasoning segment of `text`."""
    segment = reasoning_segment(text)
    return sum(bool(marker.search(segment)) for marker in REFLECTION_MARKERS)
