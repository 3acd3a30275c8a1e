"""verl's custom reward function for harness rows (`reward.custom_reward_function`): the task's answer extraction
and grader, the same ones the built-in trainer and evaluation use. Its score is the response's accuracy (0 or 1);
the variant's reward shaping happens in the plugin's advantage step, as in every engine."""

from __future__ import annotations

import json
import logging

from harness.backends.base import DEFAULT_STOP, cut_at_stop
from harness.extraction import extract
from harness.grading import grade

logger = logging.getLogger(__name__)


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  **_) -> float:
    """1.0 when the response's extracted answer matches a gold (ground_truth: the golds as a JSON list)."""
    info = extra_info or {}
    golds = tuple(json.loads(ground_truth))
    answer = extract(cut_at_stop(solution_str, DEFAULT_STOP)[0], info.get("answer_format", "boxed"))
    try:
        return float(grade(info.get("grader", "math"), golds, answer))
    except Exception:  # a grader bug or a sympy crash on one answer must not stop the run (graded wrong)
        logger.warning("grading raised on answer %r; graded wrong", answer, exc_info=True)
        return 0.0
