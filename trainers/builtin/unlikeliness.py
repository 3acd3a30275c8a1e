"""Unlikeliness reward, "Rewarding the Unlikely" (arXiv 2506.02355; variants.md §12).

GRPO reinforces the correct samples the policy already finds likely and neglects the rare correct ones. Within
each group, samples are ranked by their mean per-token log-prob under pi_old (rank 0 = least likely), and the
reward is scaled before group normalisation: r' = r * (1 - beta_rank * rank / G). Only correct samples change
(a 0 reward stays 0); the most likely correct one loses up to beta_rank * (G-1) / G. Then GRPO's advantage.
Companion finding: two PPO epochs per rollout batch, so already-likely correct samples hit the clip bound and
stop rising while rarer ones keep going. The recipe also skips groups without reward variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from trainers import algos
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer


def mean_token_logp(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's mean log-prob per response token [B] (the code's likelihood statistic, not the sum)."""
    return (logp * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)


def likelihood_ranks(likelihood: torch.Tensor) -> torch.Tensor:
    """Rank within each group [N, G], 0 = least likely; ties go to the lower index first (stable sorts)."""
    order = torch.argsort(likelihood, dim=-1, stable=True)
    return torch.argsort(order, dim=-1, stable=True)


def unlikeliness_rewards(rewards: torch.Tensor, likelihood: torch.Tensor, beta: float = 0.25) -> torch.Tensor:
    """r * (1 - beta * rank / G), the rank normalised by G (not G-1), as in the code."""
    return rewards * (1 - beta * likelihood_ranks(likelihood) / rewards.shape[-1])


@dataclass(frozen=True)
class UnlikelinessConfig(GRPOConfig):
    # The paper's schedule (`--protocol paper`): PPO epochs mu = 2, its companion fix for GRPO's rank bias
    # (examples/lean/grpo.sh), with the train batch as one minibatch.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 2, "minibatches": 1}
    # k3 KL-to-reference coefficient of the paper's recipe.
    kl_beta: float = 0.1
    # beta_rank: the most likely correct sample's reward is scaled by 1 - beta_rank * (G-1) / G.
    unlikeliness_beta: float = 0.25
    # Drop groups whose rewards are all equal, as the recipe does; judged before the rank penalty (ours). The
    # recipe then samples more until a full train batch has accumulated; that refill is not done here (ours):
    # a step trains on the groups that survive, so a step costs GRPO's rollouts.
    skip_uniform_groups: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.unlikeliness_beta <= 1:
            raise ValueError(f"unlikeliness_beta must be in [0, 1] (above 1 a correct sample's reward turns "
                             f"negative), got {self.unlikeliness_beta}")


@VARIANTS.register("unlikeliness")
class UnlikelinessTrainer(GRPOTrainer):
    name = "unlikeliness"
    paper = "Rewarding the Unlikely (arXiv 2506.02355)"
    status = "[code]"
    Config = UnlikelinessConfig
    mechanism = {"rank_penalised": "share of correct samples whose reward the likelihood-rank penalty lowered"}

    def group_filter(self, groups: Groups) -> torch.Tensor:
        if not self.config.skip_uniform_groups:
            return super().group_filter(groups)
        # On the unshaped reward: the rank penalty would give an all-correct group spurious variance.
        return (groups.rewards != groups.rewards[:, :1]).any(dim=-1)

    def advantage(self, groups: Groups) -> torch.Tensor:
        batch = groups.batch
        # The rollout's own log-probs are pi_old's, so no extra forward is needed to rank the samples.
        likelihood = mean_token_logp(batch.old_logp, batch.response_mask.float())
        shaped = unlikeliness_rewards(groups.rewards, likelihood.cpu().view_as(groups.rewards),
                                      self.config.unlikeliness_beta)
        rewarded = groups.rewards > 0
        self.note("rank_penalised", float((shaped < groups.rewards)[rewarded].float().mean()) if rewarded.any() else 0.0)
        return algos.grpo_advantages(shaped, self.config.advantage_eps, self.config.unbiased_std)
