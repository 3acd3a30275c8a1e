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

from dataclasses import dataclass
from typing import ClassVar

from harness.claim import Claim
from trainers.algos.terms import distinct_markers
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting


@dataclass(frozen=True)
class ReflectionConfig(GRPOConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"format_reward": 0.0, "reflection_reward": 0.0}
    format_reward: float = setting(
        0.5, "Weight of the format reward, 1 when an answer can be extracted (0.5 and the rule are ours; the"
        " paper's format rule is not published).")
    reflection_reward: float = setting(0.1, "Reward per distinct self-check marker (ours).")
    reflection_cap: int = setting(3, "At most this many distinct markers are rewarded (ours).")
    reflection_only_if_correct: bool = setting(
        True, "Pay the reflection term only on correct answers (ours), so reflecting on a wrong answer earns"
        " nothing.")
    reflection_start_step: int = setting(
        0, "Steps of the paper's stage 2 (accuracy + format only) before the reflection term joins (stage "
        "3). 0 adds it from the first step, i.e. stage 2 is whatever run produced the starting model (ours).")

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
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (Claim("more self-reflection in correct answers", "variants.md §15", "reflection in correct",
                   "higher"),)
    Config = ReflectionConfig
    mechanism = {
        "marker_rate": "share of responses with at least one self-check marker, right or wrong",
        "reflection_paid": "share of responses the reflection term rewarded (a marker in a correct answer)",
    }

    def step_stats(self, groups: Groups) -> dict:
        stats = super().step_stats(groups)
        if len(groups.problems):
            # Responses that reflect at all, right or wrong: whether the reward is teaching reflection or filler.
            stats["reflection_rate"] = float((distinct_markers(groups.texts) > 0).float().mean())
        return stats
