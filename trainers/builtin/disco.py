"""DisCO, Discriminative Constrained Optimization (arXiv 2505.12366; variants.md §13).

The clipped group-relative objective is replaced by a per-question discriminative one on a length-normalised
score s(o) (log-L: mean token log-prob; L-ratio: mean token ratio to pi_old). Correct samples are the
positives O+, wrong ones the negatives O-:
- DisCO-b: J_q = mean_{O+} s - mean_{O-} s;
- DisCO (DRO over negatives): J_q = mean_{O+} s - tau * log mean_{O-} exp(s / tau), so the gradient weights
  negatives by softmax(s / tau) and hard negatives count more.
Questions with no positive or no negative give J_q = 0 but still count in the 1/|Q| mean. Instead of clipping,
a squared-hinge trust region: loss = -J + beta/2 * [KL - delta]_+^2, KL the k1 token-mean of
log pi_old - log pi_theta over the minibatch. No clipping (eps_low, eps_high, dual_clip and loss_aggregation
are unused), no reference model.

The advantage hook gives each sample its label (+1 correct, -1 wrong); the loss hook regroups its minibatch
rows by G, which holds because the skeleton's minibatches are whole groups in group order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting

SCORES = ("log-l", "l-ratio")
OBJECTIVES = ("disco", "disco-b")


@dataclass(frozen=True)
class DisCOConfig(GRPOConfig):
    # No setting makes the discriminative objective GRPO's clipped surrogate.
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = None
    # The paper's schedule (`--protocol paper`): 128 questions a step in minibatches of 32, kept as a ratio
    # (ours), one PPO epoch. With a single update pi_old = pi_theta throughout, the trust region never binds
    # and L-ratio scores are all 1; the shared schedule also updates several times per batch.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 1, "minibatches": 4}
    score: str = setting(
        "log-l", 'The score s(o): "log-l" (mean token log-prob) or "l-ratio" (mean token ratio to pi_old). '
        "The spec names no default; log-L, the first it gives, is ours.")
    objective: str = setting(
        "disco", '"disco" (log-mean-exp over negatives, hard negatives weigh more) or "disco-b" (plain '
        "mean).")
    tau: float | None = setting(
        None, "tau of DisCO's log-mean-exp; None takes the score's own: 10 for log-L, 1 for L-ratio.")
    constraint_beta: float = setting(
        1000.0, "beta of the squared-hinge trust region beta/2 * [KL - delta]_+^2.")
    constraint_delta: float = setting(
        1e-4, "delta: the KL (k1, token mean over the minibatch) allowed before the penalty starts.")

    def __post_init__(self):
        super().__post_init__()
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.tau is not None and self.tau <= 0:
            raise ValueError(f"tau must be > 0 (or None for the score's default), got {self.tau}")
        if self.constraint_beta < 0 or self.constraint_delta < 0:
            raise ValueError(f"constraint_beta and constraint_delta must be >= 0, got {self.constraint_beta} "
                             f"and {self.constraint_delta}")


@VARIANTS.register("disco")
class DisCOTrainer(GRPOTrainer):
    name = "disco"
    paper = "DisCO, Discriminative Constrained Optimization (arXiv 2505.12366)"
    status = "[code]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (
        Claim("no length growth: responses grow less than under GRPO", "variants.md §13", "length growth", "lower"),
        Claim("higher accuracy than GRPO", "variants.md §13 (+7% relative)", "pass@1", "higher"))
    Config = DisCOConfig
    mechanism = {
        "discriminated": "share of trained groups with both a correct and a wrong answer (what the "
                         "discriminative objective scores against each other)",
        "hinge_active": "minibatch updates a step whose KL to pi_old passed delta (the trust-region penalty on)",
    }
