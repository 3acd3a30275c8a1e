"""The terms that variants add to GRPO (reward shapes, weights, baselines, objectives) as pure tensor functions,
one section per variant (../shared/docs/variants.md). `trainers.algos.variants` combines them into each variant's
registered reward, filter, advantage and loss; the built-in variant modules and the tests use them directly.

Imports torch and the shared primitives only, like the rest of `trainers.algos`, so any engine can load it.
"""

from __future__ import annotations

import torch

from harness.markers import marker_count
from trainers import algos

# ---- gdpo ----

def decoupled_group_advantages(components: torch.Tensor, weights: torch.Tensor, eps: float = 1e-4,
                               unbiased_std: bool = True) -> torch.Tensor:
    """Steps 1-2: components `[K, num_groups, G]` normalised within each group one by one, then summed with
    `weights` `[K]` -> `[num_groups, G]`. NaN rewards count as 0 (the official code's guard)."""
    normalised = algos.grpo_advantages(torch.nan_to_num(components, nan=0.0), eps, unbiased_std)
    return (weights[:, None, None] * normalised).sum(dim=0)


def batch_whiten(values: torch.Tensor, eps: float = 1e-4, unbiased_std: bool = True,
                 token_counts: torch.Tensor | None = None) -> torch.Tensor:
    """Step 3: (x - mean) / (std + eps) over every sample of the batch (any shape).

    With `token_counts` (same shape), each sample counts once per response token, as verl's whitening over
    all response tokens does; the unbiased correction is then over the token count.
    """
    weights = torch.ones_like(values) if token_counts is None else token_counts.to(values.dtype)
    total = weights.sum()
    if total <= 1:
        return torch.zeros_like(values)
    mean = (weights * values).sum() / total
    variance = (weights * (values - mean) ** 2).sum() / (total - 1 if unbiased_std else total)
    return (values - mean) / (variance.sqrt() + eps)


def gdpo_advantages(components: torch.Tensor, weights: torch.Tensor, eps: float = 1e-4, unbiased_std: bool = True,
                    token_counts: torch.Tensor | None = None) -> torch.Tensor:
    """GDPO advantages `[num_groups, G]` from reward components `[K, num_groups, G]` (variants.md §11)."""
    summed = decoupled_group_advantages(components, weights, eps, unbiased_std)
    return batch_whiten(summed, eps, unbiased_std, token_counts)


# ---- a_grae ----

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


# ---- grpo_lead ----

# The code's degenerate-output test: an n-gram (n <= 30 words) repeated >= 10 times back to back, or one
# whitespace-free run of >= 120 characters.
REPETITION_MAX_N = 30


REPETITION_MIN_REPEATS = 10


REPETITION_MAX_WORD_CHARS = 120


# The code's length gate averages this many of the group's shortest responses.
LENGTH_GATE_SHORTEST = 3


def lead_rewards(lengths: torch.Tensor, correct: torch.Tensor, alpha: float | torch.Tensor = 0.05,
                 wrong_reward: float = -1.0, eps: float = 1e-6) -> torch.Tensor:
    """exp(-alpha z) for correct responses, z = (|o| - mu_L) / (sigma_L + eps) over the group's correct ones
    (unbiased sigma_L, := 1 when only one is correct); `wrong_reward` for the rest. [N, G] -> [N, G].

    `alpha` may be a per-group [N, 1] tensor: alpha 0 gives every correct response exactly 1.
    """
    lengths = lengths.to(torch.float64)
    correct = correct.bool()
    count = correct.sum(dim=-1, keepdim=True)
    weight = correct.to(torch.float64)
    mean = (lengths * weight).sum(dim=-1, keepdim=True) / count.clamp(min=1)
    variance = ((lengths - mean) ** 2 * weight).sum(dim=-1, keepdim=True) / (count - 1).clamp(min=1)
    std = torch.where(count > 1, variance.sqrt(), torch.ones_like(variance))
    z = (lengths - mean) / (std + eps)
    length_reward = torch.exp(-torch.as_tensor(alpha, dtype=torch.float64) * z)
    return torch.where(correct, length_reward, torch.full_like(z, wrong_reward)).to(torch.float32)


def logistic_weight(x: torch.Tensor, low: float = 0.4, high: float = 1.5, midpoint: float = 0.75,
                    steepness: float = 10.0) -> torch.Tensor:
    """w(x) = low + (high - low) / (1 + exp(steepness (x - midpoint))): near `high` for small x, `low` for large."""
    return low + (high - low) * torch.sigmoid(-steepness * (x - midpoint))


def difficulty_reweighted(advantages: torch.Tensor, rewards: torch.Tensor, **weight) -> torch.Tensor:
    """A * w(rho) where A > 0, A * w(1 - rho) elsewhere; rho = each group's share of rewards > 0. [N, G]."""
    rho = (rewards > 0).to(advantages.dtype).mean(dim=-1, keepdim=True)
    return torch.where(advantages > 0, advantages * logistic_weight(rho, **weight),
                       advantages * logistic_weight(1 - rho, **weight))


def is_degenerate(text: str) -> bool:
    """The official reward code's repetition test (see the constants above)."""
    words = text.split()
    if any(len(word) >= REPETITION_MAX_WORD_CHARS for word in words):
        return True
    for n in range(1, REPETITION_MAX_N + 1):
        # An n-gram repeated r times back to back is a run of (r - 1) n positions where word j equals word j + n.
        needed, run = (REPETITION_MIN_REPEATS - 1) * n, 0
        for a, b in zip(words, words[n:], strict=False):
            run = run + 1 if a == b else 0
            if run >= needed:
                return True
    return False


# ---- unlikeliness ----

def mean_token_logp(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's mean log-prob per response token [B] (the code's likelihood statistic, not the sum)."""
    return (logp * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)


def likelihood_ranks(likelihood: torch.Tensor) -> torch.Tensor:
    """Rank within each group [N, G], 0 = least likely; ties go to the lower index first (stable sorts)."""
    order = torch.argsort(likelihood, dim=-1, stable=True)
    return torch.argsort(order, dim=-1, stable=True)


def unlikeliness_rewards(rewards: torch.Tensor, likelihood: torch.Tensor, beta: float = 0.25) -> torch.Tensor:
    """r * (1 - beta * rank / G), the rank normalised by G (not G-1), as in the code."""
    return rewards * (1 - beta * likelihood_ranks(likelihood) / rewards.shape[-1])


# ---- disco ----

def sequence_scores(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
                    score: str) -> torch.Tensor:
    """s(o) [B]: the token mean of log pi_theta (log-L) or of the ratio pi_theta / pi_old (L-ratio)."""
    per_token = logp if score == "log-l" else torch.exp(algos.log_ratio(logp, old_logp))
    return (per_token * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)


def discriminative_objective(scores: torch.Tensor, labels: torch.Tensor,
                             tau: float | None = None) -> torch.Tensor:
    """J_q [N] from scores and labels [N, G] (> 0 positive, < 0 negative): DisCO-b when `tau` is None, else
    DisCO's log-mean-exp over the negatives at temperature tau. 0 for a group lacking either side."""
    positive, negative = labels > 0, labels < 0
    num_positive = positive.sum(dim=-1).clamp(min=1).to(scores.dtype)
    num_negative = negative.sum(dim=-1).clamp(min=1).to(scores.dtype)
    valid = positive.any(dim=-1) & negative.any(dim=-1)
    positive_term = (scores * positive).sum(dim=-1) / num_positive
    if tau is None:
        negative_term = (scores * negative).sum(dim=-1) / num_negative
    else:
        logits = torch.where(negative, scores / tau, torch.full_like(scores, float("-inf")))
        # A group without negatives would take the log-sum-exp of nothing (-inf, and a NaN gradient through
        # the masked branch); it is zeroed below, so any finite logits do.
        logits = torch.where(valid[:, None], logits, torch.zeros_like(scores))
        negative_term = tau * (torch.logsumexp(logits, dim=-1) - torch.log(num_negative))
    return torch.where(valid, positive_term - negative_term, torch.zeros_like(positive_term))


def squared_hinge_penalty(kl: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """beta/2 * [KL - delta]_+^2. The code writes it as max(beta (KL - delta), 0).detach() * KL: the same
    gradient, beta [KL - delta]_+ on KL; this form also has the penalty's value."""
    return beta / 2 * torch.relu(kl - delta) ** 2


# ---- mc_grpo ----

def median_pivot(rewards: torch.Tensor) -> torch.Tensor:
    """Index [N] of each group's median rollout. torch.median may return any of several tied indices; the
    first one is taken (ours) so the choice is reproducible. torch's median of an even count is the lower
    middle value, as in the official code."""
    median = rewards.median(dim=-1, keepdim=True).values
    return (rewards == median).int().argmax(dim=-1)


def median_advantages(rewards: torch.Tensor, mad_eps: float = 1e-3, mad_floor: bool = False,
                      unbiased_std: bool = True) -> torch.Tensor:
    """(r - median) / (MAD + eps) within each group of G+1; with `mad_floor`, a group whose MAD is 0 is
    scaled by its std instead (the spec's unconfirmed option)."""
    centred = rewards - rewards.median(dim=-1, keepdim=True).values
    scale = centred.abs().median(dim=-1, keepdim=True).values
    if mad_floor:
        scale = torch.where(scale == 0, algos.group_std(rewards, unbiased_std), scale)
    return centred / (scale + mad_eps)


def non_pivot_mask(pivot: torch.Tensor, generated: int) -> torch.Tensor:
    """[N, G+1] bool: True everywhere except at each group's pivot."""
    keep = torch.ones(len(pivot), generated, dtype=torch.bool, device=pivot.device)
    return keep.scatter_(1, pivot[:, None], False)


def without_pivot(values: torch.Tensor, pivot: torch.Tensor) -> torch.Tensor:
    """[N, G+1] -> [N, G]: each group's value at `pivot` removed, the others kept in order."""
    keep = non_pivot_mask(pivot.to(values.device), values.shape[1])
    return values[keep].view(values.shape[0], values.shape[1] - 1)


# ---- ngrpo ----

def virtual_max_advantages(rewards: torch.Tensor, max_reward: float = 1.0, virtual_samples: int = 1,
                           eps: float = 1e-6, unbiased_std: bool = True) -> torch.Tensor:
    """(r - mean) / (std + eps) with mean and std over the G rewards plus `virtual_samples` copies of
    `max_reward`; advantages for the G real samples only. [N, G] -> [N, G]."""
    virtual = rewards.new_full((rewards.shape[0], virtual_samples), max_reward)
    augmented = torch.cat([rewards, virtual], dim=-1)
    mean = augmented.mean(dim=-1, keepdim=True)
    return (rewards - mean) / (algos.group_std(augmented, unbiased_std) + eps)


def not_all_correct(accuracy: torch.Tensor) -> torch.Tensor:
    """Groups [N] with at least one wrong sample (verl's filter_groups strategy `all_correct`)."""
    return (accuracy < 1).any(dim=-1)


# ---- reflection ----

def distinct_markers(texts: list[str]) -> torch.Tensor:
    """How many different self-check markers occur in each text's reasoning segment `[len(texts)]`."""
    return torch.tensor([marker_count(t) for t in texts], dtype=torch.float32)


def rewarded_markers(accuracy: torch.Tensor, markers: torch.Tensor, cap: int = 3,
                     only_if_correct: bool = True) -> torch.Tensor:
    """min(markers, cap), and 0 on wrong answers when gated; any shape."""
    counted = torch.clamp(markers, max=cap)
    return counted * accuracy if only_if_correct else counted


def reflection_reward(accuracy: torch.Tensor, answer_format: torch.Tensor, markers: torch.Tensor,
                      format_weight: float = 0.5, per_marker: float = 0.1, cap: int = 3,
                      only_if_correct: bool = True) -> torch.Tensor:
    """r_acc + format_weight * r_fmt + per_marker * rewarded_markers; any shape."""
    return accuracy + format_weight * answer_format + per_marker * rewarded_markers(accuracy, markers, cap,
                                                                                    only_if_correct)
