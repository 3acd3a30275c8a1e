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

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting

CURRICULA = ("batch-accuracy", "linear-schedule")


@dataclass(frozen=True)
class AGRAEConfig(GRPOConfig):
    # The paper's schedule (`--protocol paper`): 1024 prompts a step in minibatches of 256.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 1, "minibatches": 4}
    suppression_alpha: float = setting(
        1.0, "alpha of the suppression min(1, mu_B / alpha) of positive advantages: 1 for math, 0.5 for the "
        "geometry/medical MLLM tasks (released code; unconfirmed against the paper, so ours).")
    focus_scale: float = setting(
        0.5, "The 0.5 factor of both difficulty-focus terms (released code; unconfirmed against the paper, "
        "so ours).")
    curriculum: str = setting(
        "batch-accuracy", 'What moves the difficulty focus from easy to hard questions. "batch-accuracy": '
        "mu_B, the mean group accuracy of the current batch, zero-variance groups included (the released "
        'branch). "linear-schedule": min(1, step / curriculum_steps), standing in for the code\'s linearly '
        "decaying weight (ours). The suppression always uses mu_B (ours: a schedule there would zero every "
        "positive advantage at step 0).")
    curriculum_steps: int = setting(
        100, 'Steps over which "linear-schedule" goes from the easy-focused to the hard-focused term (ours).')
    std_normalised: bool = setting(
        True, "Base advantage: GRPO's std-normalised one; False takes Dr. GRPO's mean-centred one (the paper"
        " also runs A-GRAE on top of Dr. GRPO; set loss_aggregation to match). The focus terms' eps is "
        "advantage_eps.")
    difficulty_focus: bool = setting(
        True, "The difficulty focus on/off (False: the base advantage goes on to the suppression unchanged).")

    MECHANISM_OFF: ClassVar[dict[str, object]] = {"difficulty_focus": False, "suppression_alpha": 1e-12}

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
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (
        Claim("improves GRPO in pass@1", "variants.md §9 (abstract)", "pass@1", "higher"),
        Claim("improves GRPO in pass@k", "variants.md §9 (abstract)", "pass@max-k", "higher"))
    Config = AGRAEConfig
    mechanism = {"advantage_change": "mean |A - A_GRPO| over the step's samples (GRPO's advantage of the same rewards)"}
