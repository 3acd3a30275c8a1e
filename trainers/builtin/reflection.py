"""Reflection reward, "GRPO and Reflection Reward for Mathematical Reasoning in LLMs" (arXiv 2603.14041;
variants.md §15). Only the reward changes.

Confirmed (abstract only): GRPO with a reflection reward added to the usual accuracy and format rewards, in a
four-stage framework (full-parameter SFT on chain-of-thought data, GRPO with accuracy + format, GRPO adding
the reflection reward, evaluation); the reflection reward matters in the ablations. How reflection is
detected and what it is worth are not published, so everything below is ours (the spec's proposal):

    r = r_acc + 0.5 r_fmt + 0.1 min(#distinct self-check markers, 3), the last term only when r_acc = 1,

with the markers found by a case-insensitive regex over the reasoning segment (before </think> when there is
one, the whole response otherwise). Gating on correctness keeps filler "wait"s on wrong answers from paying,
and counting distinct markers keeps one marker repeated from paying more than once. Stages 2 and 3 run as
one training run: the reflection term joins at `reflection_start_step`.

On the sandbox the warm start's careless teacher ends some solutions with a self-check line ("let me check:
37+48=85", issue 9), so about 10% of its samples carry a marker before RL and the term has something to
reward (the `marker_rate` and `reflection_paid` probes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer

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


def distinct_markers(texts: list[str]) -> torch.Tensor:
    """How many different self-check markers occur in each text's reasoning segment `[len(texts)]`."""
    return torch.tensor([sum(bool(m.search(reasoning_segment(t))) for m in REFLECTION_MARKERS) for t in texts],
                        dtype=torch.float32)


def rewarded_markers(accuracy: torch.Tensor, markers: torch.Tensor, cap: int = 3,
                     only_if_correct: bool = True) -> torch.Tensor:
    """min(markers, cap), and 0 on wrong answers when gated; any shape."""
    counted = torch.clamp(markers, max=cap)
    return counted * accuracy if only_if_correct else counted


def reflection_reward(accuracy: torch.Tensor, answer_format: torch.Tensor, markers: torch.Tensor,
                      format_weight: float = 0.5, per_marker: float = 0.1, cap: int = 3,
                      only_if_correct: bool = True) -> torch.Tensor:
    """r_acc + format_weight * r_fmt + per_marker * rewarded_markers; any shape."""
    return accuracy + format_weight * answer_format + per_marker * rewarded_markers(accuracy, markers, cap,
                                                                                    only_if_correct)


@dataclass(frozen=True)
class ReflectionConfig(GRPOConfig):
    # Weight of the format reward, 1 when an answer can be extracted (0.5 and the rule are ours; the paper's
    # format rule is not published).
    format_reward: float = 0.5
    # Reward per distinct self-check marker (ours).
    reflection_reward: float = 0.1
    # At most this many distinct markers are rewarded (ours).
    reflection_cap: int = 3
    # Pay the reflection term only on correct answers (ours), so reflecting on a wrong answer earns nothing.
    reflection_only_if_correct: bool = True
    # Steps of the paper's stage 2 (accuracy + format only) before the reflection term joins (stage 3). 0 adds
    # it from the first step, i.e. stage 2 is whatever run produced the starting model (ours).
    reflection_start_step: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.format_reward < 0 or self.reflection_reward < 0:
            raise ValueError(f"reflection's format_reward and reflection_reward must be >= 0, got "
                             f"{self.format_reward} and {self.reflection_reward}")
        if self.reflection_cap < 1:
            raise ValueError(f"reflection_cap must be >= 1, got {self.reflection_cap}")
        if self.reflection_start_step < 0:
            raise ValueError(f"reflection_start_step must be >= 0, got {self.reflection_start_step}")


@VARIANTS.register("reflection")
class ReflectionTrainer(GRPOTrainer):
    name = "reflection"
    paper = "GRPO and Reflection Reward for Mathematical Reasoning in LLMs (arXiv 2603.14041)"
    status = "[secondary]"
    Config = ReflectionConfig
    mechanism = {
        "marker_rate": "share of responses with at least one self-check marker, right or wrong",
        "reflection_paid": "share of responses the reflection term rewarded (a marker in a correct answer)",
    }

    def reward(self, groups: Groups):
        cfg = self.config
        accuracy = groups.accuracy
        answer_format = torch.tensor([a is not None for a in groups.answers], dtype=torch.float32).view_as(accuracy)
        markers = distinct_markers(groups.texts).view_as(accuracy)
        per_marker = cfg.reflection_reward if self.step >= cfg.reflection_start_step else 0.0
        total = reflection_reward(accuracy, answer_format, markers, cfg.format_reward, per_marker,
                                  cfg.reflection_cap, cfg.reflection_only_if_correct)
        reflection = rewarded_markers(accuracy, markers, cfg.reflection_cap, cfg.reflection_only_if_correct)
        self.note("marker_rate", float((markers > 0).float().mean()))
        self.note("reflection_paid", float((reflection * per_marker > 0).float().mean()))
        return total, {"accuracy": accuracy, "format": answer_format, "reflection": reflection}

    def step_stats(self, groups: Groups) -> dict:
        stats = super().step_stats(groups)
        if len(groups.problems):
            # Responses that reflect at all, right or wrong: whether the reward is teaching reflection or filler.
            stats["reflection_rate"] = float((distinct_markers(groups.texts) > 0).float().mean())
        return stats
