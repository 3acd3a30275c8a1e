"""verl plugin: every registry-shaped variant's advantage and loss, registered into verl's registries as
`harness_<variant>` (`algorithm.adv_estimator` and `actor_rollout_ref.actor.policy_loss.loss_mode`).

Loaded by `import verl` in every verl process (driver and actor workers) through this package's `verl.plugins`
entry point. The variant's settings come from the JSON spec named by $HARNESS_VERL_SPEC (written next to the
launch files by `trainers.engines.verl.config`), read once per process on first use.

What verl hands an advantage estimator is the outcome score per response (our reward function's accuracy), the
response mask and each response's prompt id; so a variant whose reward or advantage reads anything else (the
response text, the sampling log-probs, the step) is refused when its launch files are written.

The loss aggregates the micro-batch it is given, and the launch files make that micro-batch the whole minibatch
(as in the built-in trainer). With several data-parallel ranks each rank aggregates its share and FSDP averages
the gradients, which equals the global aggregation only when the ranks hold equal token counts (verl's own
`global_batch_info` is not used: the variant's aggregation is the registry's).
"""

from __future__ import annotations

import functools
import json
import os
import types

import numpy as np
import torch
from verl.trainer.ppo.core_algos import register_adv_est, register_policy_loss

from trainers import algos
from trainers.algos.variants import MATH, GroupBatch, registry_shaped
from trainers.engines.verl import verl_name

SPEC_ENV = "HARNESS_VERL_SPEC"


@functools.cache
def load_spec() -> types.SimpleNamespace:
    path = os.environ.get(SPEC_ENV)
    if not path:
        raise RuntimeError(f"${SPEC_ENV} is not set: launch verl with the harness's launch.sh, which points it at "
                           "the row's verl/spec.json")
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    return types.SimpleNamespace(variant=spec["variant"], max_length=spec["max_length"],
                                 config=types.SimpleNamespace(**spec["config"]))


def _spec_for(variant: str) -> types.SimpleNamespace:
    spec = load_spec()
    if spec.variant != variant:
        raise RuntimeError(f"verl was configured with {verl_name(variant)}, but ${SPEC_ENV} describes {spec.variant}")
    return spec


def group_order(index: np.ndarray, group_size: int) -> torch.Tensor:
    """Row order that puts each prompt's responses together ([N * G], first appearance order), checking that
    every prompt has exactly `group_size` of them."""
    _, first, inverse, counts = np.unique(index, return_index=True, return_inverse=True, return_counts=True)
    if (counts != group_size).any():
        raise ValueError(f"every prompt needs {group_size} responses (rollout.n), got {sorted(set(counts.tolist()))}")
    rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")  # groups in order of first appearance
    return torch.from_numpy(np.argsort(rank[inverse], kind="stable"))


def advantages(variant: str, token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
               index: np.ndarray, **_) -> tuple[torch.Tensor, torch.Tensor]:
    """The variant's reward shaping, group filter and advantage on verl's batch. A group the filter drops keeps
    A = 0 and has its rows' response mask zeroed in place, so it weighs nothing in the loss (as in the built-in
    trainer, which drops it). That the zeroed mask reaches verl's actor rests on verl's V1 trainer writing the
    batch's response_mask back (it does with rollout log-probs, its default; not yet seen on a GPU run); where
    it does not, a dropped group's rows keep A = 0 but count in the loss's token and sequence counts."""
    spec = _spec_for(variant)
    cfg, math = spec.config, MATH.get(variant)
    group = cfg.group_size
    order = group_order(index, group).to(response_mask.device)
    shape = (len(order) // group, group)
    lengths = response_mask.sum(dim=-1)
    batch = GroupBatch(accuracy=token_level_rewards.sum(dim=-1)[order].float().cpu().view(shape),
                       lengths=lengths[order].cpu().view(shape),
                       # verl pads every response to the generation limit: a full one hit it.
                       truncated=(lengths >= spec.max_length)[order].cpu().view(shape), max_length=spec.max_length)
    _, keep, grouped, _ = math.shape(batch, cfg)
    per_row = torch.empty(len(order))
    per_row[order.cpu()] = grouped.float().reshape(-1)
    dropped = torch.empty(len(order), dtype=torch.bool)
    dropped[order.cpu()] = (~keep).repeat_interleave(group)
    response_mask.mul_((~dropped).to(response_mask.device, response_mask.dtype)[:, None])
    scores = per_row.to(response_mask.device, token_level_rewards.dtype)[:, None] * response_mask
    return scores, scores


def policy_loss(variant: str, old_log_prob: torch.Tensor, log_prob: torch.Tensor, advantages: torch.Tensor,
                response_mask: torch.Tensor, loss_agg_mode: str = "token-mean", config=None,
                rollout_is_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The variant's loss on a verl micro-batch. verl's advantages are per token (the sequence's value on every
    response token); verl's rollout-correction weights, when on, weight each token's gradient as the built-in
    trainer's truncated importance sampling does. The KL to the reference is verl's (use_kl_loss), added outside."""
    spec = _spec_for(variant)
    mask = response_mask.to(log_prob.dtype)
    per_sequence = (advantages * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
    if rollout_is_weights is not None:
        log_prob = algos.weight_token_gradients(log_prob, rollout_is_weights)
    loss, probes = MATH.get(variant).loss(log_prob, old_log_prob, per_sequence, mask, None, spec.config,
                                          spec.max_length)
    ratio = torch.exp(algos.log_ratio(log_prob.detach(), old_log_prob))
    cfg = spec.config
    clipped = algos.clipped_tokens(ratio, per_sequence, mask, cfg.eps_low, cfg.eps_high, cfg.dual_clip,
                                   per_sequence=True)
    probes = {**probes, **algos.clip_shares(clipped.sum(dim=0), float(mask.sum())),
              **algos.ratio_diagnostics(log_prob, old_log_prob, mask, clipped)}
    return loss, {f"harness/{name}": value for name, value in probes.items()}


def register_all() -> list[str]:
    """Register `harness_<variant>` for every registry-shaped variant; returns the names."""
    names = []
    for variant in MATH.names():
        if not registry_shaped(variant):
            continue
        name = verl_name(variant)
        register_adv_est(name)(functools.partial(advantages, variant))
        register_policy_loss(name)(functools.partial(policy_loss, variant))
        names.append(name)
    return names


REGISTERED = register_all()
