"""Prompt-GDRO (arXiv 2601.19280; variants.md §14): a data adversary that reweights advantages by difficulty.

Each prompt is binned by the shared online pass@k classifier (`trainers.builtin.gdro`), after this step's rollouts
are recorded (ours: the spec defers classification to after generation only for Rollout-GDRO, which must
allocate before it). Each bin keeps an EMA score S(b) of the mean loss of its prompts this step, divided by
the bin's share of the batch; a prompt's GRPO advantages, clipped to [-5, 5], are multiplied by
min(omega(b), omega_max) with omega = exp(eta_q clip(S, -C, C)), so bins with the higher loss weigh more. No
resampling: every prompt still gets G rollouts. The weights use the scores before this step's losses update
them. A prompt's loss is the mean over its rollouts of each one's part of the token-mean loss, with the
advantage before the weight; why that and not the mean of sequence means (which a group-normalised advantage
pins at beta KL), and why the clip comes before the weight: `trainers.builtin.gdro`'s docstring, 2 and 3.

Logged per step (lists over bins 0..B-1, None where the bin had no prompt): gdro_bin_prompts,
gdro_bin_weight (the advantage weight applied), gdro_bin_score (S after the step; None before a bin's first
observation). Probes (`mechanism`): weight_spread and revisited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, Groups
from trainers.builtin.gdro import (
    GDROConfig,
    GDROTrainer,
    RaggedGroups,
    ema_scores,
    exp3_mixture,
    exponential_weights,
    per_bin,
    segment_means,
)
from trainers.protocol.config import setting


@dataclass(frozen=True)
class PromptGDROConfig(GDROConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"eps_high": 0.2, "kl_beta": 0.0, "loss_aggregation": "seq-mean-token-mean",
                                                         "advantage_clip": None, "weight_eta": 0.0}
    weight_eta: float = setting(0.65, "eta_q in omega = exp(eta_q * clip(S, -C, C)) (launch script 0.65).")
    mixture_gamma: float = setting(
        0.01, "gamma in the bin mixture q = (1 - gamma) omega / sum(omega) + gamma / B (launch script 0.01);"
        " it weighs advantages only with normalised_weights.")
    ema_beta: float = setting(0.12, "beta of the per-bin EMA score S (launch script 0.12).")
    max_weight: float = setting(15.0, "Cap omega_max on an advantage weight (launch script 15).")
    score_clip: float = setting(
        10.0, "Clip C on the scores: unconfirmed (the code clips only under an optional z-scoring, at +-3); "
        "ours: 10, effectively inactive.")
    loss_norm_by_share: bool = setting(
        True, "Divide a bin's mean prompt loss by the bin's share of the batch before the EMA (scripts: "
        "loss_norm_by_class=True).")
    normalised_weights: bool = setting(
        False, "Code/paper mismatch. False: the paper's unnormalised omega. True: the released controller's "
        "normalised mixture q over the bins present in the batch, capped at omega_max (shrinks advantages by"
        " about 1/B).")

    def __post_init__(self):
        super().__post_init__()
        if self.weight_eta < 0:
            raise ValueError(f"weight_eta must be >= 0, got {self.weight_eta}")
        if not 0 <= self.mixture_gamma <= 1:
            raise ValueError(f"mixture_gamma must be in [0, 1], got {self.mixture_gamma}")
        if not 0 < self.ema_beta <= 1:
            raise ValueError(f"ema_beta must be in (0, 1], got {self.ema_beta}")
        if self.max_weight <= 0 or self.score_clip <= 0:
            raise ValueError(f"max_weight and score_clip must be > 0, got {self.max_weight} and {self.score_clip}")


@VARIANTS.register("prompt-gdro")
class PromptGDROTrainer(GDROTrainer):
    name = "prompt-gdro"
    paper = "GDRO: Prompt-GDRO (arXiv 2601.19280)"
    status = "[code+paper]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (
        Claim("higher accuracy on the hardest problems", "variants.md §14", "hard pass@1", "higher"),
        Claim("higher pass@8 than GRPO", "variants.md §14 (Table 1)", "pass@max-k", "higher"))
    Config = PromptGDROConfig
    mechanism = {
        "weight_spread": "largest over smallest advantage weight applied to the step's bins, minus 1 (0: every "
                         "bin weighed alike)",
        "revisited": "share of the step's prompts seen on an earlier step (0: no history to bin them by)",
    }

    def __init__(self, config: PromptGDROConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.scores = torch.zeros(self.num_bins, dtype=torch.float64)
        self.observed = torch.zeros(self.num_bins, dtype=torch.bool)

    def bin_weights(self, present: torch.Tensor) -> torch.Tensor:
        """Each bin's advantage weight [B] under the current scores; with normalised_weights the mixture is
        over the `present` bins only and the others are NaN."""
        cfg = self.config
        if cfg.normalised_weights:
            weights = torch.full_like(self.scores, float("nan"))
            weights[present] = exp3_mixture(self.scores[present].clamp(-cfg.score_clip, cfg.score_clip),
                                            cfg.weight_eta, cfg.mixture_gamma)
        else:
            weights = exponential_weights(self.scores, cfg.weight_eta, cfg.score_clip)
        return weights.clamp(max=cfg.max_weight)

    def group_weights(self, groups: Groups) -> torch.Tensor:
        bins = self.classifier.bins(groups.problems)
        return self.bin_weights(torch.bincount(bins, minlength=self.num_bins) > 0)[bins]

    def adversary_step(self, step: RaggedGroups, losses: torch.Tensor) -> dict:
        cfg = self.config
        bins = self.classifier.bins(step.problems)
        counts = torch.bincount(bins, minlength=self.num_bins)
        present = counts > 0
        applied = self.bin_weights(present)
        self.note("weight_spread", float(applied[present].max() / applied[present].min() - 1))
        group_of_row = torch.repeat_interleave(torch.arange(len(bins)), step.sizes)
        prompt_losses, _ = segment_means(losses, group_of_row, len(bins))
        bin_losses, _ = segment_means(prompt_losses, bins, self.num_bins)
        if cfg.loss_norm_by_share:
            bin_losses = bin_losses * len(bins) / counts.clamp(min=1)
        self.scores, self.observed = ema_scores(self.scores, self.observed, bin_losses, present, cfg.ema_beta)
        return {"gdro_bin_prompts": counts.tolist(), "gdro_bin_weight": per_bin(applied, present),
                "gdro_bin_score": per_bin(self.scores, self.observed)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "scores": self.scores.clone(), "observed": self.observed.clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.scores, self.observed = state["scores"].clone(), state["observed"].clone()
