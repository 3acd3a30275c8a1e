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
from typing import ClassVar

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting


@dataclass(frozen=True)
class DGPOConfig(GRPOConfig):
    loss_aggregation: str = "token-mean"
    mad_scaling: bool = setting(True, "DGAE on/off: False scales by the group std as GRPO does.")
    mad_eps: float = setting(1e-4, "DGAE's epsilon in G*(r-mean)/(sum|r-mean| + eps) (official code).")
    question_weighting: bool = setting(
        True, "DQW on/off (--enable_dgpo_dqw) and its softmax temperature T (--dgpo_dqw_temp 2.0).")
    dqw_temperature: float = setting(
        2.0, "Temperature of the question-level weighting's softmax over difficulties (DQW).")

    MECHANISM_OFF: ClassVar[dict[str, object]] = {"loss_aggregation": "seq-mean-token-mean", "mad_scaling": False,
                                                  "question_weighting": False}


@VARIANTS.register("dgpo")
class DGPOTrainer(GRPOTrainer):
    name = "dgpo"
    paper = "MathForge: Harder Is Better (arXiv 2601.20614)"
    status = "[code]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (
        Claim("harder is better: the gain is on hard problems", "variants.md §7", "hard pass@1", "higher"),
        Claim("higher accuracy than GRPO (+2.18 on six benchmarks)", "variants.md §7", "pass@1", "higher"))
    Config = DGPOConfig
    mechanism = {"advantage_change": "mean |A - A_GRPO| over the step's samples (GRPO's advantage of the same rewards)",
                 "weight_spread": "max / min - 1 of the question weights over the step's valid groups"}
