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

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting


@dataclass(frozen=True)
class UnlikelinessConfig(GRPOConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"kl_beta": 0.0, "unlikeliness_beta": 0.0, "skip_uniform_groups": False}
    # The paper's schedule (`--protocol paper`): PPO epochs mu = 2, its companion fix for GRPO's rank bias
    # (examples/lean/grpo.sh), with the train batch as one minibatch.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 2, "minibatches": 1}
    kl_beta: float = setting(0.1, "k3 KL-to-reference coefficient of the paper's recipe.")
    unlikeliness_beta: float = setting(
        0.25, "beta_rank: the most likely correct sample's reward is scaled by 1 - beta_rank * (G-1) / G.")
    skip_uniform_groups: bool = setting(
        True, "Drop groups whose rewards are all equal, as the recipe does; judged before the rank penalty "
        "(ours). The recipe then samples more until a full train batch has accumulated; that refill is not "
        "done here (ours): a step trains on the groups that survive, so a step costs GRPO's rollouts.")

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
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (
        Claim("improves pass@N over GRPO", "variants.md §12", "pass@max-k", "higher"),
        Claim("more distinct answers than GRPO", "variants.md §12", "distinct answers", "higher"))
    Config = UnlikelinessConfig
    mechanism = {"rank_penalised": "share of correct samples whose reward the likelihood-rank penalty lowered"}
