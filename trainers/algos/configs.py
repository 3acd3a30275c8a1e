"""GRPO's config, which every variant's config derives: the shared protocol (trainers.protocol.config), then GRPO's
own mechanism fields; and plain GRPO under a variant's protocol, what the `update_change` probe compares with. It
lives with the math so that every engine reads it without the built-in trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trainers import algos
from trainers.protocol.config import SharedConfig, setting, shared_settings


@dataclass(frozen=True)
class GRPOConfig(SharedConfig):
    """Plain GRPO (variants.md §2): the shared protocol (trainers.protocol.config, ours), then GRPO's own fields,
    the paper's (verl's where the paper is silent)."""

    # --- GRPO mechanism (paper / verl) ---
    eps_low: float = setting(
        0.2, "PPO clip's lower bound: the ratio is clipped at 1 - eps_low where the advantage is negative.")
    eps_high: float = setting(
        0.2, "PPO clip's upper bound: the ratio is clipped at 1 + eps_high where the advantage is positive "
        "(DAPO's clip-higher raises it).")
    dual_clip: float | None = setting(None, "verl's dual clip c for negative advantages; None = off.")
    kl_beta: float = setting(
        0.0, "k3 KL-to-reference coefficient in the loss (project baseline beta in {0, 0.001}; 0 here).")
    loss_aggregation: str = setting(
        "seq-mean-token-mean", "How token losses make the minibatch loss (trainers.algos.AGGREGATIONS): "
        "seq-mean-token-mean, token-mean or seq-mean-token-sum-norm.")
    unbiased_std: bool = setting(True, "Group std convention: unbiased (verl, TRL) and eps 1e-6 (verl).")
    advantage_eps: float = setting(1e-6, "Added to the group std before dividing (verl's 1e-6).")

    # The paper's own update schedule where it differs from the shared one, scaled to prompts_per_step
    # (e.g. 512 prompts a step in minibatches of 128 -> minibatches 4); applied by `--protocol paper`.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 1, "minibatches": 1}
    # The settings that switch the variant's mechanism off, leaving GRPO's update (its primary probe then reads
    # 0: tests/test_mechanisms.py); None where no setting does (an objective or sampler that replaces GRPO's).
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {}

    def __post_init__(self):
        super().__post_init__()
        algos.AGGREGATIONS.get(self.loss_aggregation)


def grpo_reference(config: GRPOConfig) -> GRPOConfig:
    """Plain GRPO under `config`'s shared protocol: what a variant's update is measured against (the
    `update_change` probe)."""
    return GRPOConfig(**shared_settings(config))
