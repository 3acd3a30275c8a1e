"""An out-of-tree variant: GRPO whose advantages are scaled by `advantage_scale`.

Everything the harness needs is on the trainer class the entry point names: its config (every field documented
with `setting`), its math (`variant_math`: here only the advantage differs from GRPO's), its probes and claims.
`harness list variants` then lists it, `harness compare --variants grpo,scaled-grpo` trains it, and the TRL and
verl engines call the same math.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.claim import Claim
from trainers import algos
from trainers.algos.configs import GRPOConfig
from trainers.algos.variants import VariantMath, advantage_change
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting


@dataclass(frozen=True)
class ScaledGRPOConfig(GRPOConfig):
    advantage_scale: float = setting(0.5, "Factor on GRPO's advantages (1: plain GRPO).")


def scaled_advantage(batch, cfg):
    """GRPO's advantages times `advantage_scale`; the probe says how far they are from GRPO's."""
    advantages = cfg.advantage_scale * algos.grpo_advantages(batch.rewards, cfg.advantage_eps, cfg.unbiased_std)
    return advantages, advantage_change(batch.rewards, advantages, cfg)


class ScaledGRPOTrainer(GRPOTrainer):
    name = "scaled-grpo"
    paper = "an example plugin (examples/variant-plugin)"
    status = "[example]"
    Config = ScaledGRPOConfig
    variant_math = VariantMath(advantage=scaled_advantage)
    mechanism = {"advantage_change": "mean |A - A_GRPO| over the step's samples"}
    primary_probe = "advantage_change"
    claims = (Claim("smaller steps do not cost accuracy", "examples/variant-plugin", "pass@1", "not lower",
                    margin=1.0),)
