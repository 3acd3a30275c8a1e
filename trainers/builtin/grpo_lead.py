"""GRPO-LEAD (arXiv 2504.09696; variants.md §6): three changes to GRPO's reward and advantage.

1. Length-dependent accuracy reward: a correct response scores exp(-alpha z), z its length z-score among the
   group's *correct* responses, so concise correct answers earn more.
2. Explicit penalty: an incorrect response scores -1 (not 0).
3. Difficulty-aware reweighting: the GRPO advantage is scaled by a logistic weight of the group's success rate
   rho (share of rewards > 0), w(rho) for positive advantages and w(1 - rho) for the others, so correct answers
   to hard questions and wrong answers to easy ones move the policy most.
Rejection sampling (the stage-1 script): groups whose rewards are all <= 0, or all exactly 1, are dropped.
The official code's extra reward rules (0 without an answer, -2 for degenerate repetition, the length term only
for long responses) are not confirmed by the paper; they sit behind `code_reward_rules`, off by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting


@dataclass(frozen=True)
class GRPOLeadConfig(GRPOConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"length_alpha": 0.0, "wrong_reward": 0.0, "difficulty_weight_low": 1.0,
                                                         "difficulty_weight_high": 1.0, "rejection_sampling": False}
    length_alpha: float = setting(
        0.05, "alpha of the length reward exp(-alpha z) for correct responses (code: 0.05); 0 turns it off.")
    wrong_reward: float = setting(-1.0, "The explicit penalty: reward of an incorrect response (code: -1).")
    difficulty_weight_low: float = setting(
        0.4, "A_min of the logistic difficulty weight w(x) = A_min + (B_max - A_min) / (1 + exp(k (x - x0)))"
        " (code: 0.4). Equal A_min and B_max turn the reweighting into a constant scale.")
    difficulty_weight_high: float = setting(1.5, "B_max of the logistic difficulty weight (code: 1.5).")
    difficulty_midpoint: float = setting(
        0.75, "x0, the success rate where the weight is halfway between A_min and B_max (code: 0.75).")
    difficulty_steepness: float = setting(10.0, "k, the steepness of the logistic weight (code: 10).")
    rejection_sampling: bool = setting(
        True, "The stage-1 script's rejection sampling: drop groups whose rewards are all <= 0, or all "
        "exactly 1 (an all-correct group that the length term differentiated is kept). Dropped groups are "
        "still charged.")
    code_reward_rules: bool = setting(
        False, "The official code's reward map, unconfirmed by the paper (off by default; on for "
        "faithful-to-code runs): no extractable answer (or, with a thinking template, no </think>) -> 0 "
        "instead of the penalty; degenerate repetition -> repetition_reward, whatever the answer (that "
        "precedence is ours); and the length term only for groups whose 3 shortest responses average more "
        "than length_term_min_tokens.")
    repetition_reward: float = setting(
        -2.0, "With code_reward_rules: the reward of a degenerate, repetitive response (code: -2).")
    length_term_min_tokens: float = setting(
        4000.0, "With code_reward_rules: the length gate in tokens (code: 4000). On the sandbox's short "
        "generation limit it keeps the length term off; lower it to scale the rule down (ours).")

    def __post_init__(self):
        super().__post_init__()
        if self.length_alpha < 0:
            raise ValueError(f"grpo-lead: length_alpha must be >= 0, got {self.length_alpha}")
        if self.wrong_reward > 0 or self.repetition_reward > 0:
            raise ValueError("grpo-lead: wrong_reward and repetition_reward must be <= 0 (the success rate counts "
                             f"rewards > 0), got {self.wrong_reward} and {self.repetition_reward}")
        if not 0 <= self.difficulty_weight_low <= self.difficulty_weight_high:
            raise ValueError("grpo-lead: needs 0 <= difficulty_weight_low <= difficulty_weight_high, got "
                             f"{self.difficulty_weight_low} and {self.difficulty_weight_high}")
        if self.difficulty_steepness < 0:
            raise ValueError(f"grpo-lead: difficulty_steepness must be >= 0, got {self.difficulty_steepness}")
        if self.format_reward:
            raise ValueError("grpo-lead: its reward replaces the accuracy + format reward, so format_reward must "
                             f"be 0, got {self.format_reward}")


@VARIANTS.register("grpo-lead")
class GRPOLeadTrainer(GRPOTrainer):
    name = "grpo-lead"
    paper = "GRPO-LEAD (arXiv 2504.09696)"
    status = "[code]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (
        Claim("shorter correct answers (length-dependent reward)", "variants.md §6", "correct length", "lower"),
        Claim("more hard problems solved (difficulty-aware advantages)", "variants.md §6", "hard pass@1", "higher"))
    Config = GRPOLeadConfig
    mechanism = {
        "length_term": "mean |r - 1| over correct samples: what the length-dependent reward changed",
        "advantage_change": "mean |A - A_GRPO|, A_GRPO being GRPO's advantage of plain accuracy (length reward, "
                            "penalties and difficulty weights together)",
    }
