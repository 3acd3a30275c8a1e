"""Prefix Grouper (variants.md §18): the grouped forward gives the standard forward's log-probs, entropies and
gradients, on the untrained sandbox model, for groups of several sizes, padded prompts and responses,
N-GRPO's mixed inputs and real rollouts."""

import json

import pytest
import torch
from trainer_helpers import bias_towards_eos
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from harness.budget import Budget
from harness.overrides import apply_overrides
from harness.prompts import TEMPLATES
from harness.task import TASKS
from trainers import algos
from trainers.builtin import prefix_grouper
from trainers.builtin.grpo import GRPOTrainer
from trainers.builtin.prefix_grouper import group_starts, prefix_grouped_logprobs
from trainers.builtin.rollout import RolloutBatch, left_pad, sample, token_logprobs
from trainers.protocol.runlog import TRAIN_LOG


def load(model_dir, dtype):
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)


def grouped_batch(model, group_sizes, prompt_lengths, response_lengths, seed=0, mixed=False):
    """Groups of random prompts (left-padded to the longest) and random responses (right-padded)."""
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    prompts = []
    for size, length in zip(group_sizes, prompt_lengths, strict=True):
        prompts += [torch.randint(4, vocab, (length,), generator=generator).tolist()] * size
    prompt_ids, prompt_mask = left_pad(prompts, pad_id=0)
    rows, width = len(prompts), max(response_lengths)
    response_mask = (torch.arange(width)[None] < torch.tensor(response_lengths)[:, None]).long()
    response_ids = torch.randint(4, vocab, (rows, width), generator=generator) * response_mask
    candidates = weights = None
    if mixed:  # N-GRPO: a third of the inputs are blends of 3 candidates, the rest one-hot on the token
        candidates = torch.randint(4, vocab, (rows, width, 3), generator=generator)
        candidates[..., 0] = response_ids
        blend = torch.softmax(torch.randn(rows, width, 3, generator=generator), dim=-1)
        plain = torch.tensor([1.0, 0.0, 0.0]).expand(rows, width, 3)
        weights = torch.where(torch.rand(rows, width, 1, generator=generator) < 1 / 3, blend, plain)
    return RolloutBatch(prompt_ids, prompt_mask, response_ids, response_mask, torch.zeros(rows, width),
                        torch.zeros(rows, dtype=torch.bool), candidates, weights)


def grpo_loss(logp, batch):
    """Plain GRPO's loss, with a ratio away from 1 so that clipping is active on some tokens."""
    old = (logp.detach() + 0.3 * torch.sin(torch.arange(logp.numel()).view_as(logp))) * batch.response_mask
    advantages = torch.linspace(-1.0, 1.0, logp.shape[0])
    ratio = torch.exp(algos.log_ratio(logp, old))
    per_token = -algos.clipped_objective(ratio, advantages[:, None], 0.2, 0.2, None)
    return algos.AGGREGATIONS.get("seq-mean-token-mean")(per_token, batch.response_mask.float(), max_length=8)


def outputs_and_gradients(model, batch, forward):
    model.zero_grad(set_to_none=True)
    logp, entropy = forward(model, batch, 1.0, with_entropy=True)
    grpo_loss(logp, batch).backward()
    return logp.detach(), entropy, {name: p.grad.clone() for name, p in model.named_parameters()}


def assert_same(model, batch, rtol, grad_rtol):
    logp, entropy, grads = outputs_and_gradients(model, batch, token_logprobs)
    grouped_logp, grouped_entropy, grouped_grads = outputs_and_gradients(model, batch, prefix_grouped_logprobs)
    assert grouped_logp.shape == logp.shape and (grouped_logp[batch.response_mask == 0] == 0).all()
    torch.testing.assert_close(grouped_logp, logp, rtol=rtol, atol=rtol * float(logp.abs().max()))
    torch.testing.assert_close(grouped_entropy, entropy, rtol=rtol, atol=rtol * float(entropy.abs().max()))
    assert grads.keys() == grouped_grads.keys()
    for name, grad in grads.items():
        # Relative to the parameter's whole gradient: single entries near zero carry no relative precision.
        error = float((grouped_grads[name] - grad).norm() / grad.norm())
        assert error < grad_rtol, f"{name}: relative gradient error {error:.2e}"


def duplicated_prompt_logprobs(model, batch, temperature, with_entropy=False):
    """The spec's reference (a): one plain forward over [prompt; response] per row, in the model's own
    precision, written independently of both forwards under test."""
    inputs = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)
    attention = torch.cat([batch.prompt_mask, batch.response_mask], dim=1)
    positions = (attention.cumsum(dim=-1) - 1).clamp(min=0)
    logits = model(input_ids=inputs, attention_mask=attention, position_ids=positions).logits
    logp_all = torch.log_softmax(logits[:, batch.prompt_ids.shape[1] - 1: -1] / temperature, dim=-1)
    logp = logp_all.gather(-1, batch.response_ids[..., None]).squeeze(-1) * batch.response_mask
    return logp, (-(logp_all.exp() * logp_all).sum(dim=-1) * batch.response_mask).detach()


def full_precision_rms_norm(self, hidden_states):
    return self.weight * hidden_states * torch.rsqrt(hidden_states.pow(2).mean(-1, keepdim=True)
                                                     + self.variance_epsilon)


def test_spec_case_in_float64(untrained_model_dir, monkeypatch):
    """variants.md §18's unit test: prompt length 5, G = 3 completions of lengths 2/4/3, fp64; log-probs equal
    to 1e-10 and parameter gradients of a GRPO loss to 1e-8."""
    # Llama's RMSNorm computes in float32 whatever the model's dtype; its backward then rounds the shared
    # prompt's summed gradient differently from G separate ones (~4e-8). The spec's model is float64 throughout.
    monkeypatch.setattr(LlamaRMSNorm, "forward", full_precision_rms_norm)
    model = load(untrained_model_dir, torch.float64)
    batch = grouped_batch(model, [3], [5], [2, 4, 3])
    logp, _, grads = outputs_and_gradients(model, batch, duplicated_prompt_logprobs)
    grouped_logp, _, grouped_grads = outputs_and_gradients(model, batch, prefix_grouped_logprobs)
    assert grouped_logp.dtype == torch.float64
    torch.testing.assert_close(grouped_logp, logp, rtol=0, atol=1e-10)
    for name, grad in grads.items():
        torch.testing.assert_close(grouped_grads[name], grad, rtol=0, atol=1e-8, msg=name)


def test_a_response_does_not_see_the_other_responses_of_its_group(untrained_model_dir):
    model = load(untrained_model_dir, torch.float64)
    batch = grouped_batch(model, [3], [5], [2, 4, 3])
    with torch.no_grad():
        before, _ = prefix_grouped_logprobs(model, batch, 1.0)
        batch.response_ids[1] = (batch.response_ids[1] + 7) % model.config.vocab_size * batch.response_mask[1]
        after, _ = prefix_grouped_logprobs(model, batch, 1.0)
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]], rtol=0, atol=1e-12)
    assert not torch.allclose(after[1], before[1])


@pytest.mark.parametrize("group_sizes", [[1, 3, 5], [8, 8], [2, 1, 4, 1]])
def test_groups_of_several_sizes_match_the_standard_forward_in_float32(untrained_model_dir, group_sizes):
    model = load(untrained_model_dir, torch.float32)
    rows = sum(group_sizes)
    prompt_lengths = [7 + 5 * i for i in range(len(group_sizes))]  # unequal: left padding in every group but one
    response_lengths = [1 + (3 * row) % 9 for row in range(rows)]  # 1..9 tokens, right-padded
    batch = grouped_batch(model, group_sizes, prompt_lengths, response_lengths, seed=len(group_sizes))
    assert_same(model, batch, rtol=1e-5, grad_rtol=1e-5)


def test_mixed_inputs_of_n_grpo_are_replayed(untrained_model_dir):
    model = load(untrained_model_dir, torch.float32)
    batch = grouped_batch(model, [4, 2], [9, 6], [5, 3, 6, 2, 4, 6], mixed=True)
    assert_same(model, batch, rtol=1e-5, grad_rtol=1e-5)
    plain = grouped_batch(model, [4, 2], [9, 6], [5, 3, 6, 2, 4, 6])
    with torch.no_grad():
        assert not torch.allclose(prefix_grouped_logprobs(model, batch, 1.0)[0],
                                  prefix_grouped_logprobs(model, plain, 1.0)[0])


def test_batches_larger_than_one_forward_are_split_between_groups(untrained_model_dir, monkeypatch):
    # Chunks of at most 4 rows: [2, 1] | [3] | [6] (a group larger than a chunk goes alone) | [1].
    monkeypatch.setattr(prefix_grouper, "ROWS_PER_FORWARD", 4)
    model = load(untrained_model_dir, torch.float32)
    assert prefix_grouper._chunks([0, 2, 3, 6, 12, 13]) == [(0, 3), (3, 6), (6, 12), (12, 13)]
    batch = grouped_batch(model, [2, 1, 3, 6, 1], [4, 9, 6, 11, 3], [(2 * row) % 7 + 1 for row in range(13)])
    assert_same(model, batch, rtol=1e-5, grad_rtol=1e-5)


def test_real_rollouts_at_a_temperature(untrained_model_dir):
    """Groups as the trainer builds them: each prompt repeated G times, sampled responses ending in EOS or cut."""
    model = load(untrained_model_dir, torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(untrained_model_dir)
    bias_towards_eos(model, tokenizer.eos_token_id, 2.0)
    prompts = [tokenizer(text).input_ids for text in ("37+48=?", "7+5=?", "347+85-19=?")]
    batch = sample(model, [p for p in prompts for _ in range(4)], max_new_tokens=10, temperature=0.7,
                   eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id, seed=5)
    assert len(batch.lengths.unique()) > 3 and batch.truncated.any() and not batch.truncated.all()
    logp, _ = prefix_grouped_logprobs(model, batch, 0.7)
    torch.testing.assert_close(logp.detach(), batch.old_logp, rtol=1e-5, atol=1e-5)
    assert_same(model, batch, rtol=1e-5, grad_rtol=1e-5)


def test_groups_are_runs_of_identical_prompts():
    ids, mask = left_pad([[5, 6], [5, 6], [7], [7], [7], [5, 6], [6]], pad_id=0)
    assert group_starts(ids, mask).tolist() == [0, 2, 5, 6]
    # A prompt that differs only by its padding is another group (its positions differ).
    assert group_starts(torch.tensor([[0, 7], [0, 7]]), torch.tensor([[0, 1], [1, 1]])).tolist() == [0, 1]


class AlternatingPool:
    """Grades every third request right, so that groups carry signal even from a random-weight model."""

    def grade(self, requests):
        return [i % 3 == 0 for i in range(len(requests))]


class PrefixGroupedGRPO(GRPOTrainer):
    """GRPO with the grouped forward in its `forward` hook, as a skeleton-wide config switch would select it."""

    def forward(self, batch, with_entropy=False):
        return prefix_grouped_logprobs(self.model, batch, self.config.temperature, with_entropy)


def make_trainer(cls, model_dir, run_dir, problems, budget, **overrides):
    overrides = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 12, "checkpoint_every": 1,
                 "lr": 1e-3, "warmup_steps": 1, **overrides}
    config = apply_overrides(cls.Config(), overrides)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return cls(config, model=model, tokenizer=tokenizer, problems=problems, template=TEMPLATES.get("plain"),
               answer_format="boxed", grader="math", max_new_tokens=100, budget=budget, seed=3, run_dir=run_dir,
               pool=AlternatingPool())


def test_a_trainer_with_the_grouped_forward_trains_as_grpo(untrained_model_dir, tmp_path):
    """Through the whole update (old log-probs, two epochs of two minibatches of groups) the trainers agree."""
    problems = TASKS.get("sandbox-train").load(None).problems[:20]
    runs = {}
    for cls in (GRPOTrainer, PrefixGroupedGRPO):
        trainer = make_trainer(cls, untrained_model_dir, tmp_path / cls.__name__, problems, Budget(steps=8),
                               ppo_epochs=2, minibatches=2)
        trainer.train()
        runs[cls] = trainer
    standard, grouped = (runs[cls] for cls in (GRPOTrainer, PrefixGroupedGRPO))
    # The same compute but the forwards: Prefix Grouper encodes each group's prompt once.
    same = dict.fromkeys(("wall_s", "update_tokens", "update_flops", "flops", "diagnostic_tokens",
                          "diagnostic_flops"), 0)
    assert {**grouped.ledger.to_dict(), **same} == {**standard.ledger.to_dict(), **same}
    assert grouped.ledger.update_tokens < standard.ledger.update_tokens
    assert grouped.ledger.update_flops < standard.ledger.update_flops
    assert grouped.ledger.generation_flops == standard.ledger.generation_flops  # generation reads every prompt
    assert grouped.step == 2
    logs = [[json.loads(line) for line in (tmp_path / name / TRAIN_LOG).read_text().splitlines()]
            for name in ("GRPOTrainer", "PrefixGroupedGRPO")]
    for standard_step, grouped_step in zip(*logs, strict=True):
        assert grouped_step["loss"] == pytest.approx(standard_step["loss"], rel=1e-4, abs=1e-6)
        assert grouped_step["entropy"] == pytest.approx(standard_step["entropy"], rel=1e-5)
    # Eight Adam updates of lr 1e-3 each; float noise in near-zero gradients moves a weight by ~1e-5 at most.
    grouped_weights = grouped.model.state_dict()
    for name, weight in standard.model.state_dict().items():
        assert float((grouped_weights[name] - weight).abs().max()) < 1e-4, name
