"""N-GRPO, semantic neighbour mixing (arXiv 2606.10768; variants.md §5). Only the rollout changes.

At each decoding step, with probability rho_mix the next input is not the drawn token's embedding but a
blend: the anchor (the greedy token) and its k-1 cosine neighbours in the input embedding table, weighted by
the temperature softmax renormalised over that set. The text records the anchor. The training forward
rebuilds the same blended inputs from the current table (`trainers.builtin.rollout.token_logprobs`), so the ratio is
taken on exactly the history the sampler saw. Advantages and loss are GRPO's. Evaluation never mixes (it
goes through the ordinary generation backend). The official code mixes only inside the <think> segment;
this implementation mixes the whole response (ours: sandbox responses have no think block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.builtin.rollout import Mixing, RolloutBatch
from trainers.protocol.config import setting


@dataclass(frozen=True)
class NGRPOConfig(GRPOConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"mix_rate": 0.0, "kl_beta": 0.0}
    mix_rate: float = setting(
        0.1, "Paper Table 6: rho_mix 0.1, k 3, tau 0.7 (official config: mix_top_k 2, weights at the rollout"
        " temperature).")
    mix_top_k: int = setting(
        3, "Candidates mixed into the embedding: the top k tokens of the policy's distribution.")
    mix_temperature: float = setting(0.7, "Temperature of the mixture's weights over the top k candidates.")
    kl_beta: float = setting(0.001, "Paper: KL beta 0.001 (k3); the official config uses 0.01.")

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.mix_rate <= 1 or self.mix_top_k < 1 or self.mix_temperature <= 0:
            raise ValueError("n-grpo needs 0 <= mix_rate <= 1, mix_top_k >= 1 and mix_temperature > 0")


@VARIANTS.register("n-grpo")
class NGRPOTrainer(GRPOTrainer):
    name = "n-grpo"
    paper = "N-GRPO: Embedding-Level Neighbor Mixing (arXiv 2606.10768)"
    status = "[code+paper]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (
        Claim("the gain is in pass@k", "variants.md §5 (Table 1)", "pass@max-k", "higher"),
        Claim("more diverse answers than GRPO", "variants.md §5", "distinct answers", "higher"))
    Config = NGRPOConfig
    mechanism = {
        "rollouts_changed": "share of rollouts in which the mixing changed at least one emitted token from what plain "
                            "sampling would have emitted: the rollouts, and so the rewards, that differ from GRPO's",
        "token_changed": "share of generated response tokens that differ from what plain sampling would have "
                         "emitted (a mixed position keeps the greedy anchor where the draw was another token)",
        "mixed_share": "share of generated response positions whose next input was a neighbour mixture",
        "neighbour_weight": "mean weight the mixed inputs put on neighbours rather than the drawn token",
    }

    def rollout(self, prompts: list[str], seed: int) -> RolloutBatch:
        batch = super().rollout(prompts, seed)
        on = batch.response_mask.bool()
        mixed = batch.mixed & on if batch.mixed is not None else torch.zeros_like(on)
        self.note("mixed_share", float(mixed.sum() / on.sum().clamp(min=1)))
        changed = batch.redirected & on if batch.redirected is not None else torch.zeros_like(on)
        self.note("token_changed", float(changed.sum() / on.sum().clamp(min=1)))
        self.note("rollouts_changed", float(changed.any(dim=1).float().mean()))
        neighbours = 1 - batch.weights[..., 0][mixed] if batch.weights is not None else torch.zeros(0)
        self.note("neighbour_weight", float(neighbours.mean()) if neighbours.numel() else 0.0)
        return batch

    # The rollout is the unit the mechanism changes for training (a reward, and so an advantage, is a rollout's):
    # at the sandbox's low entropy a draw rarely differs from the greedy anchor, so the per-token share is small
    # (about 0.2%) while one redirected token in a 50-token response still makes a different rollout.
    primary_probe = "rollouts_changed"

    engine_rollouts = False  # the mixing happens inside the decode loop, which vLLM cannot run

    def mixing(self) -> Mixing:
        # Passed even at rate 0, so the mixed-input path (stored candidates, rebuilt inputs) is what runs.
        return Mixing(self.config.mix_rate, self.config.mix_top_k, self.config.mix_temperature)
