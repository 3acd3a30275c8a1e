"""A-GRAE, Asymmetric Group Relative Advantage Estimation (arXiv 2602.05548; variants.md §9). Only the
advantage changes; it reads the current batch, nothing across steps.

GRPO's advantages are symmetric: correct and wrong samples of a group move the policy equally, whatever the
question's difficulty. A-GRAE breaks that twice, driven by the batch accuracy mu_B (mean over all questions
of the batch of the group accuracy p_q):
1. Difficulty focus (a curriculum): A' = (1 - mu_B) * 0.5 A / (1 - sqrt(p_q) + eps) + mu_B * 0.5 A / (sqrt(p_q)
   + eps). While the policy is weak the easy-focused term dominates (large for high-p_q questions); as the batch
   accuracy rises the mix moves to the hard-focused term (large for low-p_q questions).
2. Asymmetric suppression: positive advantages are scaled by min(1, mu_B / alpha), negative ones kept, so
   while the batch accuracy is low, correct samples do not dominate the update (the paper ties GRPO's
   symmetry to poor exploration).
The formulas are those of the released code's A-GRAE branch, which never fires there (it is guarded by a
decaying weight that is never exactly 2.0); here it runs every step. The 0.5 factors and alpha are not
confirmed against the paper's equations, so they are ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from trainers import algos
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer

CURRICULA = ("batch-accuracy", "linear-schedule")


def difficulty_focus(advantages: torch.Tensor, accuracy: torch.Tensor, progress: float | torch.Tensor,
                     scale: float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """(1 - progress) * scale A / (1 - sqrt(p) + eps) + progress * scale A / (sqrt(p) + eps).

    advantages [N, G], accuracy p [N] (each group's success rate), progress in [0, 1] (mu_B in the paper).
    """
    root = accuracy.sqrt()[:, None]
    easy_focused = scale * advantages / (1 - root + eps)
    hard_focused = scale * advantages / (root + eps)
    return (1 - progress) * easy_focused + progress * hard_focused


def suppress_correct(advantages: torch.Tensor, batch_accuracy: float | torch.Tensor,
                     alpha: float = 1.0) -> torch.Tensor:
    """Positive advantages times min(1, mu_B / alpha); negative ones untouched."""
    factor = torch.clamp(torch.as_tensor(batch_accuracy, dtype=advantages.dtype) / alpha, max=1.0)
    return torch.where(advantages > 0, advantages * factor, advantages)


@dataclass(frozen=True)
class AGRAEConfig(GRPOConfig):
    # The paper's schedule (`--protocol paper`): 1024 prompts a step in minibatches of 256.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 1, "minibatches": 4}
    # alpha of the suppression min(1, mu_B / alpha) of positive advantages: 1 for math, 0.5 for the
    # geometry/medical MLLM tasks (released code; unconfirmed against the paper, so ours).
    suppression_alpha: float = 1.0
    # The 0.5 factor of both difficulty-focus terms (released code; unconfirmed against the paper, so ours).
    focus_scale: float = 0.5
    # What moves the difficulty focus from easy to hard questions. "batch-accuracy": mu_B, the mean group
    # accuracy of the current batch, zero-variance groups included (the released branch). "linear-schedule":
    # min(1, step / curriculum_steps), standing in for the code's linearly decaying weight (ours). The
    # suppression always uses mu_B (ours: a schedule there would zero every positive advantage at step 0).
    curriculum: str = "batch-accuracy"
    # Steps over which "linear-schedule" goes from the easy-focused to the hard-focused term (ours).
    curriculum_steps: int = 100
    # Base advantage: GRPO's std-normalised one; False takes Dr. GRPO's mean-centred one (the paper also runs
    # A-GRAE on top of Dr. GRPO; set loss_aggregation to match). The focus terms' eps is advantage_eps.
    std_normalised: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.suppression_alpha <= 0 or self.focus_scale <= 0:
            raise ValueError("a-grae: suppression_alpha and focus_scale must be > 0, got "
                             f"{self.suppression_alpha} and {self.focus_scale}")
        if self.curriculum not in CURRICULA:
            raise ValueError(f"a-grae: curriculum must be one of {', '.join(CURRICULA)}, got {self.curriculum!r}")
        if self.curriculum_steps < 1:
            raise ValueError(f"a-grae: curriculum_steps must be >= 1, got {self.curriculum_steps}")
        if self.format_reward:
            # The focus divides by sqrt(p_q) and 1 - sqrt(p_q); with a format bonus an all-wrong or all-correct
            # group can still have A != 0, and those divisions would blow it up by 1/eps.
            raise ValueError(f"a-grae: format_reward must be 0 (accuracy reward only), got {self.format_reward}")


@VARIANTS.register("a-grae")
class AGRAETrainer(GRPOTrainer):
    name = "a-grae"
    paper = ("Unveiling Implicit Advantage Symmetry: Why GRPO Struggles with Exploration and Difficulty "
             "Adaptation (arXiv 2602.05548)")
    status = "[code]"
    Config = AGRAEConfig
    mechanism = {"advantage_change": "mean |A - A_GRPO| over the step's samples (GRPO's advantage of the same rewards)"}

    def advantage(self, groups: Groups) -> torch.Tensor:
        cfg = self.config
        if cfg.std_normalised:
            advantages = algos.grpo_advantages(groups.rewards, cfg.advantage_eps, cfg.unbiased_std)
        else:
            advantages = algos.mean_centred_advantages(groups.rewards)
        accuracy = groups.accuracy.mean(dim=-1)
        batch_accuracy = accuracy.mean()
        progress = batch_accuracy if cfg.curriculum == "batch-accuracy" else min(1.0, self.step / cfg.curriculum_steps)
        focused = difficulty_focus(advantages, accuracy, progress, cfg.focus_scale, cfg.advantage_eps)
        advantages = suppress_correct(focused, batch_accuracy, cfg.suppression_alpha)
        self.note_advantage_change(groups.rewards, advantages)
        return advantages
