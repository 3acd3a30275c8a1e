"""What the engine parity checks share (tests/test_trl_engine.py, perf/engines.py): one built-in step taken
apart, and TRL's rollout hook giving its responses back, so an engine runs on exactly the responses the built-in
trainer trained on."""

from __future__ import annotations

import torch

from trainers import algos


def builtin_step(trainer):
    """One step of a built-in `trainer`, taken apart: (generated groups, kept-group mask [N], advantages of the kept
    rows, loss over them on the trainer's own forward at ratio 1, with the reference KL when the variant has one)."""
    generated = trainer.generate_groups(trainer.draw_prompts())
    keep = trainer.group_filter(generated)
    groups = generated.select(keep)
    advantages = trainer.step_advantages(groups)
    logp, _ = trainer.forward(groups.batch)
    kl = None
    if trainer.reference is not None:
        with torch.no_grad():
            ref_logp, _ = trainer.score(trainer.reference, groups.batch)
        kl = algos.k3_kl(logp, ref_logp)
    loss = trainer.loss(logp, logp.detach(), advantages, groups.batch.response_mask.float(), kl)
    return generated, keep, advantages, loss


def replay(batch):
    """TRL's `rollout_func` returning `batch`'s prompts, responses and sampling log-probs row by row."""
    def rollout(prompts, trainer):
        lengths = batch.lengths.tolist()
        if len(prompts) != len(lengths):
            raise ValueError(f"replay has {len(lengths)} responses for {len(prompts)} prompts")
        rows = range(len(lengths))
        return {"prompt_ids": [batch.prompt_ids[r][batch.prompt_mask[r].bool()].tolist() for r in rows],
                "completion_ids": [batch.response_ids[r, : lengths[r]].tolist() for r in rows],
                "logprobs": [batch.old_logp[r, : lengths[r]].tolist() for r in rows]}
    return rollout
