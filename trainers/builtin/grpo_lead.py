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

import torch

from trainers import algos
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer

# The code's degenerate-output test: an n-gram (n <= 30 words) repeated >= 10 times back to back, or one
# whitespace-free run of >= 120 characters.
REPETITION_MAX_N = 30
REPETITION_MIN_REPEATS = 10
REPETITION_MAX_WORD_CHARS = 120
# The code's length gate averages this many of the group's shortest responses.
LENGTH_GATE_SHORTEST = 3


def lead_rewards(lengths: torch.Tensor, correct: torch.Tensor, alpha: float | torch.Tensor = 0.05,
                 wrong_reward: float = -1.0, eps: float = 1e-6) -> torch.Tensor:
    """exp(-alpha z) for correct responses, z = (|o| - mu_L) / (sigma_L + eps) over the group's correct ones
    (unbiased sigma_L, := 1 when only one is correct); `wrong_reward` for the rest. [N, G] -> [N, G].

    `alpha` may be a per-group [N, 1] tensor: alpha 0 gives every correct response exactly 1.
    """
    lengths = lengths.to(torch.float64)
    correct = correct.bool()
    count = correct.sum(dim=-1, keepdim=True)
    weight = correct.to(torch.float64)
    mean = (lengths * weight).sum(dim=-1, keepdim=True) / count.clamp(min=1)
    variance = ((lengths - mean) ** 2 * weight).sum(dim=-1, keepdim=True) / (count - 1).clamp(min=1)
    std = torch.where(count > 1, variance.sqrt(), torch.ones_like(variance))
    z = (lengths - mean) / (std + eps)
    length_reward = torch.exp(-torch.as_tensor(alpha, dtype=torch.float64) * z)
    return torch.where(correct, length_reward, torch.full_like(z, wrong_reward)).to(torch.float32)


def logistic_weight(x: torch.Tensor, low: float = 0.4, high: float = 1.5, midpoint: float = 0.75,
                    steepness: float = 10.0) -> torch.Tensor:
    """w(x) = low + (high - low) / (1 + exp(steepness (x - midpoint))): near `high` for small x, `low` for large."""
    return low + (high - low) * torch.sigmoid(-steepness * (x - midpoint))


def difficulty_reweighted(advantages: torch.Tensor, rewards: torch.Tensor, **weight) -> torch.Tensor:
    """A * w(rho) where A > 0, A * w(1 - rho) elsewhere; rho = each group's share of rewards > 0. [N, G]."""
    rho = (rewards > 0).to(advantages.dtype).mean(dim=-1, keepdim=True)
    return torch.where(advantages > 0, advantages * logistic_weight(rho, **weight),
                       advantages * logistic_weight(1 - rho, **weight))


def is_degenerate(text: str) -> bool:
    """The official reward code's repetition test (see the constants above)."""
    words = text.split()
    if any(len(word) >= REPETITION_MAX_WORD_CHARS for word in words):
        return True
    for n in range(1, REPETITION_MAX_N + 1):
        # An n-gram repeated r times back to back is a run of (r - 1) n positions where word j equals word j + n.
        needed, run = (REPETITION_MIN_REPEATS - 1) * n, 0
        for a, b in zip(words, words[n:], strict=False):
            run = run + 1 if a == b else 0
            if run >= needed:
                return True
    return False


@dataclass(frozen=True)
class GRPOLeadConfig(GRPOConfig):
    # alpha of the length reward exp(-alpha z) for correct responses (code: 0.05); 0 turns it off.
    length_alpha: float = 0.05
    # The explicit penalty: reward of an incorrect response (code: -1).
    wrong_reward: float = -1.0
    # A_min of the logistic difficulty weight w(x) = A_min + (B_max - A_min) / (1 + exp(k (x - x0))) (code: 0.4).
    # Equal A_min and B_max turn the reweighting into a constant scale.
    difficulty_weight_low: float = 0.4
    # B_max of the logistic difficulty weight (code: 1.5).
    difficulty_weight_high: float = 1.5
    # x0, the success rate where the weight is halfway between A_min and B_max (code: 0.75).
    difficulty_midpoint: float = 0.75
    # k, the steepness of the logistic weight (code: 10).
    difficulty_steepness: float = 10.0
    # The stage-1 script's rejection sampling: drop groups whose rewards are all <= 0, or all exactly 1 (an
    # all-correct group that the length term differentiated is kept). Dropped groups are still charged.
    rejection_sampling: bool = True
    # The official code's reward map, unconfirmed by the paper (off by default; on for faithful-to-code runs):
    # no extractable answer (or, with a thinking template, no </think>) -> 0 instead of the penalty;
    # degenerate repetition -> repetition_reward, whatever the answer (that precedence is ours); and the
    # length term only for groups whose 3 shortest responses average more than length_term_min_tokens.
    code_reward_rules: bool = False
    # With code_reward_rules: the reward of a degenerate, repetitive response (code: -2).
    repetition_reward: float = -2.0
    # With code_reward_rules: the length gate in tokens (code: 4000). On the sandbox's short generation limit
    # it keeps the length term off; lower it to scale the rule down (ours).
    length_term_min_tokens: float = 4000.0

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
    Config = GRPOLeadConfig
    mechanism = {
        "length_term": "mean |r - 1| over correct samples: what the length-dependent reward changed",
        "advantage_change": "mean |A - A_GRPO|, A_GRPO being GRPO's advantage of plain accuracy (length reward, "
                            "penalties and difficulty weights together)",
    }

    def reward(self, groups: Groups):
        cfg = self.config
        lengths = groups.batch.lengths.cpu().view_as(groups.accuracy)
        alpha = torch.full((len(groups.problems), 1), cfg.length_alpha)
        if cfg.code_reward_rules:
            shortest = lengths.sort(dim=-1).values[:, :LENGTH_GATE_SHORTEST].float().mean(dim=-1, keepdim=True)
            alpha = alpha * (shortest > cfg.length_term_min_tokens)
        rewards = lead_rewards(lengths, groups.accuracy > 0, alpha, cfg.wrong_reward)
        if cfg.code_reward_rules:
            rewards = self._code_reward_map(groups, rewards)
        correct = groups.accuracy > 0
        self.note("length_term", float((rewards[correct] - 1).abs().mean()) if correct.any() else 0.0)
        return rewards, {"accuracy": groups.accuracy}

    def _code_reward_map(self, groups: Groups, rewards: torch.Tensor) -> torch.Tensor:
        unanswered = torch.tensor([answer is None or (self.template.thinks and "</think>" not in text)
                                   for answer, text in zip(groups.answers, groups.texts, strict=True)])
        degenerate = torch.tensor([is_degenerate(text) for text in groups.texts])
        rewards = torch.where(unanswered.view_as(rewards), torch.zeros_like(rewards), rewards)
        return torch.where(degenerate.view_as(rewards), torch.full_like(rewards, self.config.repetition_reward),
                           rewards)

    def group_filter(self, groups: Groups) -> torch.Tensor:
        if not self.config.rejection_sampling:
            return super().group_filter(groups)
        rewards = groups.rewards
        return ~((rewards <= 0).all(dim=-1) | (rewards == 1).all(dim=-1))

    def advantage(self, groups: Groups) -> torch.Tensor:
        cfg = self.config
        advantages = algos.grpo_advantages(groups.rewards, cfg.advantage_eps, cfg.unbiased_std)
        advantages = difficulty_reweighted(advantages, groups.rewards, low=cfg.difficulty_weight_low,
                                           high=cfg.difficulty_weight_high, midpoint=cfg.difficulty_midpoint,
                                           steepness=cfg.difficulty_steepness)
        self.note_advantage_change(groups.accuracy, advantages)
        return advantages
