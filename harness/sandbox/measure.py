"""Quick figures for the warm-start record: pass@1 sampled and greedy, under prompt-aug's templates, and the
reflection-marker rate.

A quick exact match of the last \\boxed{} against the record's answer, generated the way the hf backend does
it (batched, left-padded); the harness's own evaluation (grading, CIs) is what reports results.
"""

from __future__ import annotations

import re
from collections import defaultdict

import torch

from harness.markers import marker_count

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
SAMPLED = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}  # the policy itself
GREEDY = {"do_sample": False}


def last_boxed(text: str) -> str | None:
    matches = _BOXED.findall(text)
    return matches[-1].strip() if matches else None


@torch.no_grad()
def complete(model, tokenizer, prompts: list[str], max_new_tokens: int, decode: dict,
             batch_size: int = 512) -> list[str]:
    """One completion per prompt, in order."""
    tokenizer.padding_side = "left"
    texts = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
        output = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                **decode)
        texts += tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return texts


def _share_by(hits: list[bool], keys: list) -> dict[str, float]:
    groups = defaultdict(list)
    for hit, key in zip(hits, keys, strict=True):
        groups[str(key)].append(hit)
    return {key: sum(values) / len(values) for key, values in sorted(groups.items())}


def measure_pass_at_1(model, tokenizer, records: list[dict], max_new_tokens: int, samples: int = 4,
                      seed: int = 0, group_by: str = "level") -> dict:
    """Pass@1 on `records` ({"prompt", "answer", group_by}): sampled (`samples` each, temperature 1, no
    top-k/top-p) and greedy, overall and by `group_by`, and the share of sampled completions in which the
    reflection detector finds a self-check marker."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        jobs = [record for record in records for _ in range(samples)]
        sampled_texts = complete(model, tokenizer, [r["prompt"] for r in jobs], max_new_tokens, SAMPLED)
        greedy_texts = complete(model, tokenizer, [r["prompt"] for r in records], max_new_tokens, GREEDY)
    finally:
        torch.random.set_rng_state(generator_state)
    sampled = [last_boxed(t) == r["answer"] for t, r in zip(sampled_texts, jobs, strict=True)]
    greedy = [last_boxed(t) == r["answer"] for t, r in zip(greedy_texts, records, strict=True)]
    return {"sampled": sum(sampled) / len(sampled), "greedy": sum(greedy) / len(greedy),
            f"sampled_by_{group_by}": _share_by(sampled, [r[group_by] for r in jobs]),
            "marker_rate": float(torch.tensor([marker_count(t) > 0 for t in sampled_texts], dtype=torch.float32).mean()),
            "samples_per_problem": samples, "problems": len(records)}
