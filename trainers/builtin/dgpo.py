"""DGPO from MathForge, "Harder Is Better" (arXiv 2601.20614; variants.md §7).

1. DGAE: scale group advantages by the mean absolute deviation instead of the std, so every non-degenerate
   binary group carries the same total |A| = G whatever its accuracy.
2. DQW: weight each valid group's advantages by lambda_q = N_v * softmax(-p_q / T) over the valid groups
   of the batch (harder questions weigh more; weights average to 1).
3. Loss normaliser: token-mean over the tokens of valid groups only.
MQR (question rewriting) is a data augmentation and lives apart from the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainers import algos
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer


@dataclass(frozen=True)
class DGPOConfig(GRPOConfig):
    loss_aggregation: str = "token-mean"
    # DGAE's epsilon in G*(r-mean)/(sum|r-mean| + eps) (official code).
    mad_eps: float = 1e-4
    # DQW on/off (--enable_dgpo_dqw) and its softmax temperature T (--dgpo_dqw_temp 2.0).
    question_weighting: bool = True
    dqw_temperature: float = 2.0


@VARIANTS.register("dgpo")
class DGPOTrainer(GRPOTrainer):
    name = "dgpo"
    paper = "MathForge: Harder Is Better (arXiv 2601.20614)"
    status = "[code]"
    Config = DGPOConfig
    mechanism = {"advantage_change": "mean |A - A_GRPO| over the step's samples (GRPO's advantage of the same rewards)",
                 "weight_spread": "max / min - 1 of the question weights over the step's valid groups"}

    def advantage(self, groups: Groups) -> torch.Tensor:
        advantages = algos.mad_advantages(groups.rewards, self.config.mad_eps)
        if self.config.question_weighting:
            accuracy = groups.accuracy.mean(dim=-1)  # p_q from the accuracy component, not a shaped reward
            valid = algos.non_degenerate_groups(groups.accuracy)
            weights = algos.difficulty_weights(accuracy, valid, self.config.dqw_temperature)
            advantages = advantages * weights[:, None]
            if valid.any():
                self.note("weight_spread", float(weights[valid].max() / weights[valid].min() - 1))
        self.note_advantage_change(groups.rewards, advantages)
        return advantages

    def loss(self, logp, old_logp, advantages, mask, kl):
        # Only valid-group tokens count in the normaliser, so degenerate groups (A = 0) do not dilute the batch.
        # A sample of a valid group never has A = 0 exactly under a binary reward (r - mean != 0), so A != 0
        # marks the valid groups' rows within any minibatch.
        valid = (advantages != 0).float()[:, None]
        return super().loss(logp, old_logp, advantages, mask * valid, kl)
