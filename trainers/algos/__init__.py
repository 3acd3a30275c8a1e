"""The variant math: advantage estimators and policy-loss pieces as pure, vectorised tensor functions
(../shared/docs/variants.md), shared by every engine.

Groups are `[num_groups, G]` tensors, per-token quantities `[num_sequences, T]` with a 0/1 mask; nothing loops
over samples in Python. This module holds the pieces every variant shares; `terms` the ones a variant adds;
`variants` each variant's reward, filter, advantage and loss, registered under its name (`MATH`), like verl's
`core_algos` registries. The package imports torch and `harness.registry` only, so an engine's workers (verl's)
load it without the built-in trainer.
"""

from __future__ import annotations

import torch

from harness.registry import Registry

AGGREGATIONS: Registry = Registry("loss aggregation")

# verl clamps the log-ratio to +-20 before exponentiating, so one wild token cannot overflow the ratio.
LOG_RATIO_CLAMP = 20.0


def group_std(rewards: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Per-group std; groups of size 1 get std 1 (verl), so their advantage is 0 rather than NaN."""
    if rewards.shape[-1] == 1:
        return torch.ones_like(rewards[..., :1])
    return rewards.std(dim=-1, keepdim=True, unbiased=unbiased)


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6, unbiased_std: bool = True) -> torch.Tensor:
    """(r - mean) / (std + eps) within each group (variants.md §1; unbiased std and eps 1e-6 as verl)."""
    mean = rewards.mean(dim=-1, keepdim=True)
    return (rewards - mean) / (group_std(rewards, unbiased_std) + eps)


def mean_centred_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Dr. GRPO (§3): no division by the std, which would weight questions by their difficulty."""
    return rewards - rewards.mean(dim=-1, keepdim=True)


def mad_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """DGPO's DGAE (§7): scale by the mean absolute deviation, so every non-degenerate binary group carries the
    same total |A| = G whatever its accuracy. Written as G*(r-mean)/(sum|r-mean| + eps), as the official code."""
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    return rewards.shape[-1] * centred / (centred.abs().sum(dim=-1, keepdim=True) + eps)


def difficulty_weights(accuracy: torch.Tensor, valid: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """DGPO's DQW (§7): lambda_q = N_v * softmax(-p_q / T) over the valid groups of the batch; 1 elsewhere.

    Harder questions (lower accuracy) get more weight; the weights average to 1 over the valid groups.
    """
    logits = torch.where(valid, -accuracy / temperature, torch.full_like(accuracy, float("-inf")))
    num_valid = valid.sum()
    if num_valid == 0:
        return torch.ones_like(accuracy)
    weights = num_valid * torch.softmax(logits, dim=0)
    return torch.where(valid, weights, torch.ones_like(accuracy))


def non_degenerate_groups(accuracy_rewards: torch.Tensor) -> torch.Tensor:
    """Groups whose samples are neither all right nor all wrong (DAPO dynamic sampling, DGPO valid groups)."""
    correct = accuracy_rewards.sum(dim=-1)
    return (correct > 0) & (correct < accuracy_rewards.shape[-1])


def log_ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    return torch.clamp(logp - old_logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


def weight_token_gradients(logp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`logp` unchanged in value, with each token's gradient multiplied by `weights` (detached): a per-token
    importance weight applied to whatever loss a variant builds from its log-probs (truncated importance
    sampling for an engine's rollouts), without changing any variant's loss."""
    weights = weights.detach()
    return logp * weights + (logp * (1 - weights)).detach()


def clipped_objective(ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float = 0.2,
                      eps_high: float = 0.2, dual_clip: float | None = None) -> torch.Tensor:
    """Per-token PPO objective to maximise: min(rho A, clip(rho, 1-eps_low, 1+eps_high) A).

    With `dual_clip` c, negative-advantage tokens are also bounded below by c*A (verl's dual clip), so a huge
    ratio on a bad token cannot dominate the batch.
    """
    objective = torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * advantages)
    if dual_clip is not None:
        objective = torch.where(advantages < 0, torch.maximum(objective, dual_clip * advantages), objective)
    return objective


def clipped_tokens(ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, eps_low: float = 0.2,
                   eps_high: float = 0.2, dual_clip: float | None = None, per_sequence: bool = False) -> torch.Tensor:
    """How many masked tokens each bound of `clipped_objective` cut off the gradient: [low, high, dual], or with
    `per_sequence` those counts for each sequence [B, 3] (the sequence-level clip fraction reads them).

    The low clip binds where A < 0 and rho < 1 - eps_low, the high clip where A > 0 and rho > 1 + eps_high,
    the dual clip where A < 0 and rho > c (its bound c*A is then above the clipped objective)."""
    advantages = advantages.reshape(-1, *([1] * (ratio.dim() - 1))).expand_as(ratio)
    on = mask > 0
    low = on & (advantages < 0) & (ratio < 1 - eps_low)
    high = on & (advantages > 0) & (ratio > 1 + eps_high)
    dual = on & (advantages < 0) & (ratio > dual_clip) if dual_clip is not None else torch.zeros_like(on)
    if per_sequence:
        return torch.stack([low.sum(dim=-1), high.sum(dim=-1), dual.sum(dim=-1)], dim=-1).float()
    return torch.stack([low.sum(), high.sum(), dual.sum()]).float()


def clip_shares(counts: torch.Tensor, tokens: float) -> dict[str, float]:
    """The clip probes from `clipped_tokens` counts summed over `tokens` trained tokens: each bound's share
    (clip_low, clip_high, dual_clip) and all of them together (clipped)."""
    tokens = max(1.0, float(tokens))
    shares = {name: count / tokens for name, count in zip(("clip_low", "clip_high", "dual_clip"), counts.tolist(),
                                                          strict=True)}
    return {**shares, "clipped": float(counts.sum()) / tokens}


def ratio_diagnostics(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, clipped: torch.Tensor
                      ) -> dict[str, float]:
    """One minibatch's move away from the policy that sampled it, as an engine that trains elsewhere logs it: k3 KL
    to the old policy (kl_old), importance ratio mean and max over trained tokens, and the share of sequences with
    a clipped token (clip_sequences; `clipped` is `clipped_tokens(..., per_sequence=True)`)."""
    on = mask > 0
    ratio = torch.exp(log_ratio(logp.detach(), old_logp))
    tokens = on.sum().clamp(min=1)
    return {"kl_old": float((k3_kl(logp.detach(), old_logp) * on).sum() / tokens),
            "ratio_mean": float(ratio[on].sum() / tokens), "ratio_max": float(ratio[on].max()) if on.any() else 0.0,
            "clip_sequences": float((clipped.sum(dim=1) > 0).sum() / max(1, int(on.any(dim=-1).sum())))}


def update_change(weights: torch.Tensor, reference: torch.Tensor) -> float:
    """How much of an update's per-token weight differs from a reference update's on the same tokens: half the L1
    distance between the two signed weight vectors (each loss's gradient with respect to the tokens' log-probs),
    each scaled to unit L1 norm. 0 when the weights are proportional (a loss rescaled by a constant, which AdamW
    and the gradient clip undo, changes nothing), 1 when they share no weight, e.g. one update is empty."""
    weights, reference = weights.detach().double(), reference.detach().double()
    size, reference_size = weights.abs().sum(), reference.abs().sum()
    if size == 0 or reference_size == 0:
        return float(size != reference_size)
    return float(0.5 * (weights / size - reference / reference_size).abs().sum())


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || pi_ref) per token: e^(l_ref - l) - (l_ref - l) - 1, clamped as verl does."""
    delta = torch.clamp(ref_logp - logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.clamp(torch.exp(delta) - delta - 1, -10.0, 10.0)


def sequences(mask: torch.Tensor) -> torch.Tensor:
    """How many rows have a trained token: the sequence means count only those (as verl's `agg_loss`), so a row
    an engine keeps in its batch with its mask zeroed (a group a filter dropped) weighs nothing; every row of the
    built-in trainer has one."""
    return (mask.sum(dim=-1) > 0).sum().clamp(min=1)


@AGGREGATIONS.register("token-mean")
def token_mean(loss: torch.Tensor, mask: torch.Tensor, **_) -> torch.Tensor:
    """DAPO: every token of the mini-batch counts once, long answers weigh more."""
    return (loss * mask).sum() / mask.sum().clamp(min=1)


@AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(loss: torch.Tensor, mask: torch.Tensor, **_) -> torch.Tensor:
    """Original GRPO: mean over each sequence's tokens, then over sequences (the length bias Dr. GRPO names)."""
    per_sequence = (loss * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
    return per_sequence.sum() / sequences(mask)


@AGGREGATIONS.register("seq-mean-token-sum")
def seq_mean_token_sum(loss: torch.Tensor, mask: torch.Tensor, **_) -> torch.Tensor:
    return (loss * mask).sum() / sequences(mask)


@AGGREGATIONS.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(loss: torch.Tensor, mask: torch.Tensor, max_length: int | None = None,
                            **_) -> torch.Tensor:
    """Dr. GRPO: token sums over N * L_max with a constant L_max (the generation budget), never the padded
    length of the current batch."""
    if max_length is None:
        raise ValueError("seq-mean-token-sum-norm needs max_length (the generation budget L_max)")
    return (loss * mask).sum() / (sequences(mask) * max_length)


def overlong_penalty(lengths: torch.Tensor, max_length: int, cache_length: int,
                     factor: float = 1.0) -> torch.Tensor:
    """DAPO soft overlong punishment: 0 up to L_max - L_cache, then linear down to -factor at L_max."""
    expected = max_length - cache_length
    penalty = (expected - lengths.to(torch.float64)) / cache_length
    return factor * torch.clamp(penalty, min=-1.0, max=0.0).to(torch.float32)


def neighbour_mixing(logits: torch.Tensor, embeddings: torch.Tensor, temperature: float,
                     k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """N-GRPO (§5): anchor = greedy token; neighbours = the k-1 rows of the input embedding table closest to the
    anchor's by cosine; weights = the temperature softmax renormalised over that set.

    logits `[B, V]`, embeddings `[V, d]` -> (candidate ids `[B, k]`, weights `[B, k]`, mixed embedding `[B, d]`).
    """
    scaled = logits / temperature
    anchor = scaled.argmax(dim=-1)
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    similarity = unit[anchor] @ unit.T  # [B, V]
    similarity.scatter_(1, anchor[:, None], float("-inf"))  # the anchor is in the set already
    neighbours = similarity.topk(k - 1, dim=-1).indices
    candidates = torch.cat([anchor[:, None], neighbours], dim=-1)
    weights = torch.softmax(scaled.gather(1, candidates), dim=-1)
    mixed = (weights[..., None] * embeddings[candidates]).sum(dim=1)
    return candidates, weights, mixed
