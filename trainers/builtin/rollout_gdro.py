"""Rollout-GDRO (arXiv 2601.19280; variants.md §14): a compute adversary that moves rollouts between
difficulty bins at the same mean budget.

Before generation, each drawn prompt is in the bin the shared classifier gave it on earlier steps; prompts
never seen form one more bin of their own (ours: the spec does not say where they go). Each bin plays one arm
n_b in {n_min..n_max} of its own EXP3P bandit, p_b = (1 - gamma) softmax(eta score_b) + gamma / #arms: the
arms maximise sum_b log p_b(n_b) subject to sum_b count_b n_b = G x #prompts exactly (dynamic programming;
G is n_bar, and since n_bar is an arm the exact total always exists, so a step costs exactly what GRPO's
does). Ties go to the arm nearest n_bar, so before any feedback every prompt gets G (ours). Each prompt is
rolled out n_b times and GRPO's advantages are taken per group of its own size. After training, only the
arm each bin played is scored, with the bin's utility J_b = -mean(loss) over its samples. A sample's loss is its
part of the token-mean loss (`trainers.builtin.gdro`'s docstring, 2): a mean of sequence means would add about
-beta KL to every played arm alike. The paper also prices a rollout, scoring J_b - mu (n_b - n_bar) with a dual
variable mu that ascends on (realised mean - n_bar) (Eq. 20). Here the allocation is exact, so the realised mean
is always n_bar and mu would stay 0 for ever: the price is left out rather than carried as a dead part (ours).

Logged per step (lists over bins 0..B-1 plus the never-seen bin last; None where the bin had no prompt):
gdro_bin_prompts, gdro_bin_rollouts_per_prompt (n_b), gdro_bin_rollouts (count x n_b), and
gdro_bin_sqrt_law_rollouts: the square-root (Neyman) law n_b* = n_bar sqrt(v_b) / sum_j q_j sqrt(v_j), with
v_b = p_b (1 - p_b) of the bin's accuracy this step (ours), as a reference for the bandit's allocation;
Probes (`mechanism`): rollout_spread and revisited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from harness.claim import Claim
from trainers.builtin.base import VARIANTS
from trainers.builtin.gdro import (
    GDROConfig,
    GDROTrainer,
    RaggedGroups,
    allocate_arms,
    exp3_mixture,
    per_bin,
    segment_means,
    square_root_allocation,
)
from trainers.protocol.config import setting


@dataclass(frozen=True)
class RolloutGDROConfig(GDROConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"eps_high": 0.2, "kl_beta": 0.0, "loss_aggregation": "seq-mean-token-mean",
                                                         "advantage_clip": None, "min_rollouts": 8, "max_rollouts": 8}
    min_rollouts: int = setting(
        2, "Smallest arm n_min (paper 2). The arms are every n from min_rollouts to max_rollouts; group_size"
        " is n_bar, the mean rollouts per prompt that every step spends exactly.")
    max_rollouts: int | None = setting(
        None, "Largest arm n_max; None = 2 x group_size (paper: n_max = 2 n_bar).")
    arm_eta: float = setting(
        0.65, "eta of the EXP3P arm probabilities: unconfirmed; ours: Prompt-GDRO's eta_q, 0.65.")
    arm_gamma: float = setting(
        0.01, "gamma of the EXP3P arm probabilities: unconfirmed; ours: Prompt-GDRO's 0.01. It must be > 0: "
        "every arm then stays possible, so the exact-budget allocation always exists.")
    adversarial_arm_scores: bool = setting(
        False, "Code/paper sign mismatch. False: the paper's score += J_b, favouring arms whose bins gain "
        "utility. True: the released controller's score += -J_b, favouring arms whose bins show higher loss "
        "(adversarial reading).")

    def __post_init__(self):
        super().__post_init__()
        largest = self.max_rollouts if self.max_rollouts is not None else 2 * self.group_size
        if not 1 <= self.min_rollouts <= self.group_size <= largest:
            raise ValueError(f"rollout-gdro needs 1 <= min_rollouts <= group_size <= max_rollouts, got "
                             f"min_rollouts={self.min_rollouts}, group_size={self.group_size}, max_rollouts={largest}")
        if self.arm_eta < 0 or not 0 < self.arm_gamma <= 1:
            raise ValueError(f"arm_eta must be >= 0 and arm_gamma in (0, 1], got {self.arm_eta} and {self.arm_gamma}")


@VARIANTS.register("rollout-gdro")
class RolloutGDROTrainer(GDROTrainer):
    name = "rollout-gdro"
    paper = "GDRO: Rollout-GDRO (arXiv 2601.19280)"
    status = "[code+paper]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (
        Claim("higher accuracy on the hardest problems", "variants.md §14", "hard pass@1", "higher"),
        Claim("higher pass@8 than GRPO", "variants.md §14 (Table 1)", "pass@max-k", "higher"))
    Config = RolloutGDROConfig
    mechanism = {
        "rollouts_moved": "share of the step's rollouts the allocation moved away from G per prompt (sum |n_i - G| "
                          "over 2 N G; 0: every prompt got G, as GRPO's)",
        "rollout_spread": "most minus fewest rollouts given to one prompt this step (0: every prompt got G)",
        "revisited": "share of the step's prompts seen on an earlier step (0: no history to bin them by)",
    }

    # Each ragged group's advantage is GRPO's of that group, so the update on the batch as trained is close to
    # GRPO's there; the mechanism is the allocation itself.
    primary_probe = "rollouts_moved"

    def __init__(self, config: RolloutGDROConfig, **kwargs):
        super().__init__(config, **kwargs)
        largest = config.max_rollouts if config.max_rollouts is not None else 2 * config.group_size
        self.arms = torch.arange(config.min_rollouts, largest + 1)
        self.preference = torch.argsort((self.arms - config.group_size).abs(), stable=True)
        slots = self.num_bins + 1  # the difficulty bins, then the prompts never seen
        self.arm_scores = torch.zeros(slots, len(self.arms), dtype=torch.float64)
        self.arm_plays = torch.zeros(slots, len(self.arms), dtype=torch.long)

    def arm_probabilities(self) -> torch.Tensor:
        return exp3_mixture(self.arm_scores, self.config.arm_eta, self.config.arm_gamma)

    def allocate(self, bins: torch.Tensor) -> torch.Tensor:
        active, counts = torch.unique(bins, return_counts=True)
        arms = self.arms[self.preference]
        log_probs = self.arm_probabilities()[active][:, self.preference].log()
        picks = allocate_arms(log_probs, counts, arms, len(bins) * self.config.group_size)
        rollouts = torch.zeros(self.num_bins + 1, dtype=torch.long)
        rollouts[active] = arms[picks]
        sizes = rollouts[bins]
        self.note("rollout_spread", float(sizes.max() - sizes.min()))
        group = self.config.group_size
        self.note("rollouts_moved", float((sizes - group).abs().sum()) / (2 * len(sizes) * group))
        return sizes

    def adversary_step(self, step: RaggedGroups, losses: torch.Tensor) -> dict:
        cfg = self.config
        slots = self.num_bins + 1
        counts = torch.bincount(step.allocation_bins, minlength=slots)
        played = torch.zeros(slots, dtype=torch.long)
        played[step.allocation_bins] = step.allocation_sizes
        row_bins = torch.repeat_interleave(step.bins, step.sizes)
        bin_losses, trained_rows = segment_means(losses, row_bins, slots)
        utility = -bin_losses
        gain = -utility if cfg.adversarial_arm_scores else utility
        learned = torch.nonzero(trained_rows > 0).flatten()
        arm = played[learned] - cfg.min_rollouts
        self.arm_scores[learned, arm] += gain[learned]
        self.arm_plays[learned, arm] += 1
        accuracy, _ = segment_means(step.flat("accuracy"), row_bins, slots)
        reference = square_root_allocation(accuracy * (1 - accuracy), counts / counts.sum(), cfg.group_size)
        present = counts > 0
        return {"gdro_bin_prompts": counts.tolist(), "gdro_bin_rollouts_per_prompt": per_bin(played, present),
                "gdro_bin_rollouts": (counts * played).tolist(),
                "gdro_bin_sqrt_law_rollouts": per_bin(reference, present)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "arm_scores": self.arm_scores.clone(), "arm_plays": self.arm_plays.clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.arm_scores, self.arm_plays = state["arm_scores"].clone(), state["arm_plays"].clone()
