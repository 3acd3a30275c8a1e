"""NGRPO, Negative-enhanced GRPO (arXiv 2509.18851; variants.md §8). Not N-GRPO (`trainers/builtin/n_grpo.py`,
semantic neighbour mixing in the rollout): this one changes only the advantage, the clip and the filter.

1. Advantage calibration: each group's mean and (unbiased) std are taken over its G real rewards plus one
   virtual sample with the maximum reward; only the real samples get advantages. An all-wrong group now
   carries a negative signal instead of A = 0, and every group's mean sits higher, so wrong answers are
   pushed down harder. The unbiased std is the convention that reproduces the paper's worked example.
2. Asymmetric clipping: eps_low 0.16, eps_high 0.24.
3. Only all-correct groups are dropped (all-wrong ones now carry signal); token-mean loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting


@dataclass(frozen=True)
class NegativeEnhancedGRPOConfig(GRPOConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"eps_low": 0.2, "eps_high": 0.2, "loss_aggregation": "seq-mean-token-mean",
                                                         "virtual_samples": 0, "drop_all_correct": False}
    # The paper's schedule (`--protocol paper`): 1024 prompts a step in minibatches of 256.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 1, "minibatches": 4}
    eps_low: float = setting(
        0.16, "Asymmetric clip (official script): the lower bound 1 - 0.16, which binds for negative "
        "advantages, is tighter than GRPO's...")
    eps_high: float = setting(
        0.24, "...and the upper bound 1 + 0.24, which binds for positive advantages, looser.")
    loss_aggregation: str = setting("token-mean", "verl masked_mean over the tokens of the minibatch.")
    max_reward: float | None = setting(
        None, "r_max of the virtual sample. None: the reward's own maximum, 1 + format_reward (ours; the "
        "paper uses 1, the maximum of its {0, 1} reward).")
    virtual_samples: int = setting(
        1, "How many virtual maximum-reward samples enter each group's mean and std (add_max_reward_num; "
        "paper: 1). 0 gives plain GRPO advantages.")
    drop_all_correct: bool = setting(
        True, "Drop all-correct groups (A = 0 even with the virtual sample); all-wrong groups are kept. "
        "Dropped groups are not replaced by new generations (ours: whether the official run regenerates them"
        " is unconfirmed).")

    def __post_init__(self):
        super().__post_init__()
        if self.virtual_samples < 0:
            raise ValueError(f"ngrpo: virtual_samples must be >= 0, got {self.virtual_samples}")


@VARIANTS.register("ngrpo")
class NegativeEnhancedGRPOTrainer(GRPOTrainer):
    name = "ngrpo"
    paper = "NGRPO: Negative-enhanced GRPO (arXiv 2509.18851)"
    status = "[code+paper(abstract)]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (Claim("outperforms GRPO", "variants.md §8 (abstract)", "pass@1", "higher"),)
    Config = NegativeEnhancedGRPOConfig
    mechanism = {
        "virtual_signal": "share of trained groups with no reward spread that the virtual sample gave advantages",
        "clipped": "share of trained response tokens the asymmetric clip cut (tighter lower, looser upper bound)",
    }
