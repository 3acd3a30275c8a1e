"""Prefix Grouper (arXiv 2506.05433; variants.md §18): the training forward with each group's prompt encoded once.

In GRPO the G rows of a group repeat one prompt, and the standard forward (`trainers.builtin.rollout.token_logprobs`)
encodes it G times. Here each run of consecutive rows with the same (left-padded) prompt is a group: its prompt
goes through the model once with a KV cache, the cache is repeated to the group's G rows, and the responses go
through a second forward against it. Attention, positions and masks are those of the standard forward, so
log-probs, entropies and gradients are the same up to floating-point reassociation; the gradient into a shared
prompt's keys/values is the sum of its G rows' contributions, as the paper states. The paper packs
[prefix, suffix_1..suffix_G] into one sequence with a split attention kernel; the KV-cache route (ours) gives
the same numbers with the model's own attention, so it needs no kernel of its own: any transformers causal LM
with a dynamic KV cache will do.

Groups are found from the prompts themselves, not from a group size, so groups of unequal sizes (Rollout-GDRO
gives prompts different rollout counts) or single rows are handled. N-GRPO's mixed response inputs are
rebuilt from the stored candidates and weights exactly as the standard forward does. A trainer switches it
on by scoring with it in its `forward` hook.
"""

from __future__ import annotations

import torch

from trainers.builtin.rollout import (
    ROWS_PER_FORWARD,
    RolloutBatch,
    cache_kwarg_of,
    embed,
    position_ids_of,
    response_logprobs,
    trimmed,
)


def group_starts(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    """Row indices where a run of identical prompts begins (row 0 always does).

    Two adjacent groups that drew the same question merge into one larger group, which is still exact.
    """
    same_ids = (prompt_ids[1:] == prompt_ids[:-1]).all(dim=-1)
    same_mask = (prompt_mask[1:] == prompt_mask[:-1]).all(dim=-1)
    changes = torch.nonzero(~(same_ids & same_mask)).flatten() + 1
    return torch.cat([changes.new_zeros(1), changes])


def forward_tokens(batch: RolloutBatch, prefix_grouped: bool) -> int:
    """Tokens a training forward over `batch` passes through the model: every row's prompt and response, or
    under Prefix Grouper each group's prompt once."""
    prompts = batch.prompt_mask
    if prefix_grouped and len(prompts):
        prompts = prompts[group_starts(batch.prompt_ids, batch.prompt_mask)]
    return int(prompts.sum()) + int(batch.response_mask.sum())


def prefix_grouped_logprobs(model, batch: RolloutBatch, temperature: float,
                            with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same contract and numbers as `trainers.builtin.rollout.token_logprobs`: log-probs [B, T] of the response tokens
    (0 on padding) at the sampling temperature, and with `with_entropy` the detached per-token entropy."""
    rows, width = batch.response_ids.shape
    starts = group_starts(batch.prompt_ids, batch.prompt_mask).tolist() + [rows]
    logps, entropies = [], []
    for first, last in _chunks(starts):
        part = trimmed(batch.select(torch.arange(first, last, device=batch.response_ids.device)))
        sizes = torch.diff(torch.tensor([s for s in starts if first <= s <= last], device=part.prompt_ids.device))
        logp, entropy = _score_grouped(model, part, sizes, temperature, with_entropy)
        logps.append(torch.nn.functional.pad(logp, (0, width - logp.shape[1])))
        if with_entropy:
            entropies.append(torch.nn.functional.pad(entropy, (0, width - entropy.shape[1])))
    return torch.cat(logps), torch.cat(entropies) if with_entropy else None


def _chunks(starts: list[int]) -> list[tuple[int, int]]:
    """Row ranges of whole groups, each up to ROWS_PER_FORWARD rows (a larger group is a chunk of its own),
    so that one forward's memory stays that of the standard path."""
    chunks, first = [], 0
    for start, end in zip(starts, starts[1:], strict=False):
        if end - first > ROWS_PER_FORWARD and start > first:
            chunks.append((first, start))
            first = start
    chunks.append((first, starts[-1]))
    return chunks


def _score_grouped(model, batch: RolloutBatch, sizes: torch.Tensor, temperature: float, with_entropy: bool):
    table = model.get_input_embeddings().weight
    prompt_len, response_len = batch.prompt_ids.shape[1], batch.response_ids.shape[1]
    firsts = torch.cumsum(sizes, dim=0) - sizes
    owner = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes)  # row -> its group
    prompt_mask = batch.prompt_mask[firsts]
    cache_kwarg = cache_kwarg_of(model)
    # Only the last prompt position's logits are needed: they predict every row's first response token.
    prefix = model(inputs_embeds=embed(batch.prompt_ids[firsts], table), attention_mask=prompt_mask,
                   position_ids=position_ids_of(prompt_mask), use_cache=True, logits_to_keep=1)
    logits = prefix.logits[:, -1:][owner]
    if response_len > 1:
        cache = prefix[cache_kwarg]
        cache.batch_select_indices(owner)  # indexing, so the gradient of the G copies sums into the prompt
        if batch.candidates is not None:
            # The input after response token t is the stored blend, rebuilt from the current table.
            inputs = (batch.weights[..., None].to(table.dtype) * embed(batch.candidates, table)).sum(dim=-2)
        else:
            inputs = embed(batch.response_ids, table)
        attention = torch.cat([batch.prompt_mask, batch.response_mask], dim=1)
        # The last response input predicts nothing that is scored, so it is not fed.
        suffix = model(inputs_embeds=inputs[:, :-1], attention_mask=attention[:, :-1],
                       position_ids=position_ids_of(attention)[:, prompt_len:-1], use_cache=True,
                       **{cache_kwarg: cache})
        logits = torch.cat([logits, suffix.logits], dim=1)
    return response_logprobs(logits[:, :response_len], batch, temperature, with_entropy)
