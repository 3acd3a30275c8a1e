"""MC-GRPO, median-centred GRPO (arXiv 2601.22582; variants.md §10).

1. Generate G+1 rollouts per question (an odd group when G is even); the ledger charges every one.
2. Baseline = the group median; scale = the median absolute deviation about it, plus 1e-3. No std.
3. The rollout that is the median (the pivot, A = 0 by construction) is dropped before the loss, so G
   samples per question are trained and every aggregation's denominator counts G, not G+1.
With binary rewards the MAD is 0 in almost every group, so minority samples get |A| = delta_r / 1e-3 (2000
under the code's {0, 2} reward) and majority samples 0: the official behaviour, kept as the default;
`mad_floor` is the spec's std fallback for ablations. Ours: among tied medians the first index is the pivot,
and the training log reports all G+1 samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from harness.claim import Claim
from trainers.algos.terms import median_pivot, non_pivot_mask, without_pivot
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting


@dataclass
class PivotDropped(Groups):
    """The G trained samples per question. `generated` keeps all G+1: the median and MAD are taken over them,
    and the training log reports them (under a binary reward the pivot always has the majority value, so
    logging only the trained ones would bias the accuracy curve towards the minority)."""

    generated: Groups | None = None
    pivot: torch.Tensor | None = None  # [N] index of each group's pivot among its G+1 rollouts

    @classmethod
    def from_generated(cls, groups: Groups, pivot: torch.Tensor) -> PivotDropped:
        rows = torch.nonzero(non_pivot_mask(pivot, groups.group_size).flatten()).flatten()
        pick = rows.tolist()
        return cls(groups.problems, groups.batch.select(rows), [groups.texts[i] for i in pick],
                   [groups.answers[i] for i in pick], without_pivot(groups.accuracy, pivot),
                   without_pivot(groups.rewards, pivot),
                   {k: without_pivot(v, pivot) for k, v in groups.components.items()},
                   generated=groups, pivot=pivot)


@dataclass(frozen=True)
class MCGRPOConfig(GRPOConfig):
    # No setting makes the pivot rollout and median centring GRPO's mean centring.
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = None
    # The paper's schedule (`--protocol paper`): mu = 2 (TRL's num_iterations) over the batch as one minibatch.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 2, "minibatches": 1}
    kl_beta: float = setting(
        0.04, "k3 KL coefficient of the MATH recipe. With MAD = 0 the advantages (~2000) swamp it.")
    reward_correct: float = setting(
        2.0, "Reward for a correct answer; the official code's accuracy reward is {0, 2}. Set 1 for the "
        "project's {0, 1} scale in a controlled comparison (variants.md §20).")
    mad_eps: float = setting(1e-3, "eps added to the MAD (official code: 1e-3).")
    mad_floor: bool = setting(
        False, "When a group's MAD is 0, scale it by the std of its G+1 rewards (plus mad_eps) instead; the "
        "spec's `mad_floor` option for ablations (ours, unconfirmed). Off = the official behaviour.")

    def __post_init__(self):
        super().__post_init__()
        if self.mad_eps <= 0:
            raise ValueError(f"mad_eps must be > 0 (it is the whole denominator when the MAD is 0), "
                             f"got {self.mad_eps}")
        if self.reward_correct <= 0:
            raise ValueError(f"reward_correct must be > 0, got {self.reward_correct}")


@VARIANTS.register("mc-grpo")
class MCGRPOTrainer(GRPOTrainer):
    name = "mc-grpo"
    paper = "MC-GRPO, Median-Centered GRPO (arXiv 2601.22582)"
    status = "[code] + paper abstract"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (Claim("higher accuracy than GRPO at small G", "variants.md §10", "pass@1", "higher"),)
    Config = MCGRPOConfig
    mechanism = {"advantage_change": "mean |A - A_GRPO| over the trained samples, A_GRPO being GRPO's advantage "
                                     "of their rewards without the pivot (the median/MAD centring's effect)"}

    def advantage(self, groups: PivotDropped) -> torch.Tensor:
        # The registered median/MAD advantage over all G + 1 rollouts, then the pivot's dropped.
        advantages = without_pivot(super().advantage(groups.generated), groups.pivot)
        self.note_advantage_change(groups.rewards, advantages)
        return advantages

    @staticmethod
    def rollouts_per_prompt(config: MCGRPOConfig) -> int:
        return config.group_size + 1

    def collect(self) -> PivotDropped | None:
        groups = super().collect()
        return None if groups is None else PivotDropped.from_generated(groups, median_pivot(groups.rewards))

    def step_stats(self, groups: PivotDropped) -> dict:
        return super().step_stats(groups.generated)
