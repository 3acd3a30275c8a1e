"""Dr. GRPO, "GRPO Done Right" (arXiv 2503.20783; variants.md §3): two deletions from GRPO.

1. No division by the group std: A = r - mean(r), so questions are not weighted by their difficulty.
2. No per-response length normalisation: token losses are summed and divided by a constant L_max (the
   generation budget), never by the padded batch length.
Responses that hit the length limit without EOS get reward 0; no format bonus; no KL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting


@dataclass(frozen=True)
class DrGRPOConfig(GRPOConfig):
    loss_aggregation: str = setting(
        "seq-mean-token-sum-norm", "Token sums over N * L_max, L_max = max_new_tokens (official code: "
        "constant_normalizer=generate_max_length).")
    kl_beta: float = 0.0
    zero_reward_if_truncated: bool = setting(
        True, "Truncated responses (no EOS within max_new_tokens) score 0 even if a boxed answer was "
        "reached.")
    std_normalised: bool = setting(
        False, "Divide advantages by the group std after all (verl's norm_adv_by_std_in_grpo): True undoes "
        "deletion 1.")

    MECHANISM_OFF: ClassVar[dict[str, object]] = {"loss_aggregation": "seq-mean-token-mean",
                                                  "zero_reward_if_truncated": False, "std_normalised": True}


@VARIANTS.register("dr-grpo")
class DrGRPOTrainer(GRPOTrainer):
    name = "dr-grpo"
    paper = "Understanding R1-Zero-Like Training (arXiv 2503.20783)"
    status = "[code+paper]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (
        Claim("wrong answers get shorter than GRPO's (no length bias)", "variants.md §3", "wrong length", "lower"),
        Claim("accuracy similar to GRPO's", "variants.md §3", "pass@1", "not lower", margin=1.0))
    Config = DrGRPOConfig
    mechanism = {"advantage_change": "mean |A - A_GRPO| over the step's samples (GRPO's advantage of the same rewards)"}
