"""Rollouts with the sampling policy's token log-probs, and the training forward that scores them again.

One decode loop serves every variant: it feeds `inputs_embeds` step by step with a KV cache, so N-GRPO's
neighbour mixing (a next input that is a weighted sum of embedding rows) is an option of the same loop
rather than a second one. With mixing off, GRPO and N-GRPO draw the same tokens from the same seeded
generator; the mixing mask has a generator of its own so that turning it on or off never shifts the
token stream. Every input embedding is stored as (candidate ids, weights) so the training forward can
rebuild exactly what the rollout fed the model, from the current embedding table (gradients flow into
the rows); an ordinary token is the one-hot candidate set [(token, 1.0)].
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from trainers.algos import neighbour_mixing


@dataclass(frozen=True)
class Mixing:
    """N-GRPO's rollout-time neighbour mixing (variants.md §5)."""

    rate: float  # probability that a response position is mixed (rho_mix)
    k: int  # candidate set size: the anchor plus k-1 cosine neighbours
    temperature: float  # tau of the weights over the candidate set


@dataclass
class RolloutBatch:
    """B sequences: left-padded prompts, right-padded responses, and what the sampler saw."""

    prompt_ids: torch.Tensor  # [B, P], left-padded
    prompt_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, T], right-padded; includes the EOS token when one was drawn
    response_mask: torch.Tensor  # [B, T]
    old_logp: torch.Tensor  # [B, T] log-probs of the drawn tokens under the sampling policy (0 on padding)
    truncated: torch.Tensor  # [B] bool: hit max_new_tokens without EOS
    # For N-GRPO: the input fed after each response token, as candidate ids and weights [B, T, k]; None when
    # every input was the plain token embedding.
    candidates: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    mixed: torch.Tensor | None = None  # [B, T] bool: which positions were mixed
    # [B, T] bool: mixed positions whose drawn token was not the anchor, so the text differs from what plain
    # sampling would have emitted there (N-GRPO's primary probe).
    redirected: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(dim=-1)

    def select(self, index: torch.Tensor) -> RolloutBatch:
        """The rows in `index` (a 1-D long tensor), e.g. the groups one minibatch or one filter keeps."""
        def pick(t):
            return None if t is None else t[index]
        return RolloutBatch(self.prompt_ids[index], self.prompt_mask[index], self.response_ids[index],
                            self.response_mask[index], self.old_logp[index], self.truncated[index],
                            pick(self.candidates), pick(self.weights), pick(self.mixed),
                            pick(self.redirected))


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    return ids, mask


def cache_kwarg_of(model) -> str:
    # transformers renamed `past_key_values` to `cache` (5.2x) and will drop the old name; accept both.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _scatter(values: torch.Tensor, rows: torch.Tensor, batch: int, fill, first=None) -> torch.Tensor:
    """`values` of the decode batch's `rows`, placed in a full batch; the other rows hold `fill` (and a one-hot
    `first` in column 0, for weights)."""
    full = torch.full((batch, *values.shape[1:]), fill, dtype=values.dtype, device=values.device)
    if first is not None:
        full[:, 0] = first
    full[rows] = values
    return full


def embed(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rows of the embedding table for a training forward. F.embedding, not table[ids]: its backward on CPU
    is deterministic, while advanced indexing accumulates the rows' gradients from several threads in any
    order (measured: a resumed run drifted from an uninterrupted one by ~1e-8)."""
    return torch.nn.functional.embedding(ids, table)


def position_ids_of(mask: torch.Tensor) -> torch.Tensor:
    # With left padding the first real token sits at position 0, as it would unpadded.
    return (mask.cumsum(dim=-1) - 1).clamp(min=0)


@torch.no_grad()
def sample(model, prompt_ids: list[list[int]], *, max_new_tokens: int, temperature: float, eos_id: int,
           pad_id: int, seed: int, mixing: Mixing | None = None) -> RolloutBatch:
    """Sample one response per prompt (repeat a prompt G times for a group) with a KV cache."""
    if temperature <= 0:
        raise ValueError("training rollouts need temperature > 0: the policy's log-probs are those of a sampler")
    device = next(model.parameters()).device
    prompts, prompt_mask = (t.to(device) for t in left_pad(prompt_ids, pad_id))
    batch = prompts.shape[0]
    table = model.get_input_embeddings().weight
    tokens = torch.Generator(device=device).manual_seed(seed)
    mix_draws = torch.Generator(device=device).manual_seed(seed + 1) if mixing else None

    attention = prompt_mask
    positions = position_ids_of(prompt_mask)
    cache_kwarg = cache_kwarg_of(model)
    out = model(inputs_embeds=table[prompts], attention_mask=attention, position_ids=positions, use_cache=True)
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    # Rows still in the decode batch. Finished rows are dropped from it (and from the KV cache) once a quarter
    # of it has finished: responses end at very different lengths, and decoding pad for them cost about half
    # of every rollout. Outputs are written back to each row's place in the full batch.
    active = torch.arange(batch, device=device)
    ids, logps, masks, cands, wts, mixed_flags, redirected = [], [], [], [], [], [], []
    for _ in range(max_new_tokens):
        live = alive[active]
        logits = out.logits[:, -1].float() / temperature
        logp_all = torch.log_softmax(logits, dim=-1)
        token = torch.multinomial(logp_all.exp(), 1, generator=tokens).squeeze(-1)
        next_input = table[token]
        if mixing is not None:
            mix = (torch.rand(len(active), generator=mix_draws, device=device) < mixing.rate) & live
            candidates, weights, blended = neighbour_mixing(out.logits[:, -1].float(), table, mixing.temperature,
                                                            mixing.k)
            # The text keeps the anchor (the greedy token), as the paper states; its log-prob is the target.
            redirected.append(_scatter(mix & (token != candidates[:, 0]), active, batch, False))
            token = torch.where(mix, candidates[:, 0], token)
            next_input = torch.where(mix[:, None], blended.to(table.dtype), table[token])
            one_hot = torch.zeros_like(weights)
            one_hot[:, 0] = 1.0
            plain = torch.cat([token[:, None], candidates[:, 1:]], dim=-1)
            cands.append(_scatter(torch.where(mix[:, None], candidates, plain), active, batch, pad_id))
            wts.append(_scatter(torch.where(mix[:, None], weights, one_hot), active, batch, 0.0, first=1.0))
            mixed_flags.append(_scatter(mix, active, batch, False))
        token = torch.where(live, token, torch.full_like(token, pad_id))
        ids.append(_scatter(token, active, batch, pad_id))
        logps.append(_scatter(torch.where(live, logp_all.gather(1, token[:, None]).squeeze(-1), torch.zeros(())),
                              active, batch, 0.0))
        masks.append(alive.long())
        alive = alive.clone()
        alive[active] = live & (token != eos_id)
        if not alive.any():
            break
        keep = alive[active]
        if keep.sum() <= 0.75 * len(active):
            kept = keep.nonzero().squeeze(-1)
            out[cache_kwarg].batch_select_indices(kept)
            active, attention, positions, next_input = active[kept], attention[kept], positions[kept], next_input[kept]
        attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=-1)
        positions = positions[:, -1:] + 1
        out = model(inputs_embeds=next_input[:, None], attention_mask=attention, position_ids=positions,
                    use_cache=True, **{cache_kwarg: out[cache_kwarg]})
    return RolloutBatch(
        prompt_ids=prompts, prompt_mask=prompt_mask,
        response_ids=torch.stack(ids, dim=1), response_mask=torch.stack(masks, dim=1),
        old_logp=torch.stack(logps, dim=1), truncated=alive.clone(),
        candidates=torch.stack(cands, dim=1) if mixing else None,
        weights=torch.stack(wts, dim=1) if mixing else None,
        mixed=torch.stack(mixed_flags, dim=1) if mixing else None,
        redirected=torch.stack(redirected, dim=1) if mixing else None,
    )


# Rows scored per forward in `token_logprobs`. Rows go in order of response length, so each chunk is cut to
# its own longest prompt and response: a batch padded to its longest response was about half padding.
ROWS_PER_FORWARD = 32


def token_logprobs(model, batch: RolloutBatch, temperature: float,
                   with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [B, T] of the response tokens under `model`, fed exactly the inputs the rollout fed.

    Logits are divided by the sampling temperature, as the sampler did, so that at the rollout's own weights
    the ratio is 1. With `with_entropy`, also the per-token entropy of that distribution (detached).
    """
    rows, width = batch.response_ids.shape
    order = torch.argsort(batch.lengths, stable=True)
    logps, entropies = [], []
    for chunk in torch.split(order, ROWS_PER_FORWARD):
        part = trimmed(batch.select(chunk))
        logp, entropy = _score(model, part, temperature, with_entropy)
        logps.append(torch.nn.functional.pad(logp, (0, width - logp.shape[1])))
        if with_entropy:
            entropies.append(torch.nn.functional.pad(entropy, (0, width - entropy.shape[1])))
    back = torch.empty_like(order)
    back[order] = torch.arange(rows, device=order.device)
    return torch.cat(logps)[back], torch.cat(entropies)[back] if with_entropy else None


def trimmed(batch: RolloutBatch) -> RolloutBatch:
    """`batch` without the padding columns none of its rows needs (prompts are left-, responses right-padded)."""
    prompt = int(batch.prompt_mask.sum(dim=-1).max())
    response = int(batch.lengths.max())

    def cut(t):
        return None if t is None else t[:, :response]
    return RolloutBatch(batch.prompt_ids[:, -prompt:], batch.prompt_mask[:, -prompt:], cut(batch.response_ids),
                        cut(batch.response_mask), cut(batch.old_logp), batch.truncated, cut(batch.candidates),
                        cut(batch.weights), cut(batch.mixed), cut(batch.redirected))


def _score(model, batch: RolloutBatch, temperature: float, with_entropy: bool):
    table = model.get_input_embeddings().weight
    prompt_len = batch.prompt_ids.shape[1]
    inputs = embed(torch.cat([batch.prompt_ids, batch.response_ids], dim=1), table)
    if batch.candidates is not None:
        # The input after response token t is the stored blend, rebuilt from the current table.
        blended = (batch.weights[..., None].to(table.dtype) * embed(batch.candidates, table)).sum(dim=-2)
        inputs = torch.cat([inputs[:, :prompt_len], blended], dim=1)
    attention = torch.cat([batch.prompt_mask, batch.response_mask], dim=1)
    out = model(inputs_embeds=inputs, attention_mask=attention, position_ids=position_ids_of(attention))
    # Position p predicts token p+1: the response is predicted from prompt_len-1 to the second-last input.
    return response_logprobs(out.logits[:, prompt_len - 1: -1], batch, temperature, with_entropy)


def response_logprobs(logits: torch.Tensor, batch: RolloutBatch, temperature: float, with_entropy: bool):
    """Log-probs [B, T] of the response tokens from the logits [B, T, V] that predict them, at the sampling
    temperature (0 on padding), and with `with_entropy` the detached per-token entropy. Computed in at least
    float32, so a float64 model keeps float64."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, batch.response_ids[..., None]).squeeze(-1) * batch.response_mask
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(dim=-1) * batch.response_mask
    return logp, entropy
