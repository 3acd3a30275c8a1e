"""The GRPO skeleton: budgets, checkpoint and resume, NaN handling, N-GRPO's rollout and replay, DAPO's
dynamic sampling, variant registry and overrides. Small random-weight models, so every test takes seconds."""

import dataclasses
import json

import pytest
import torch
from trainer_helpers import (
    ONE_STEP,
    TINY_OVERRIDES,
    ConstantPool,
    bias_towards_eos,
    killed_after,
    make_trainer,
    read_log,
    without_time,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.budget import Budget, Ledger
from harness.overrides import apply_overrides
from harness.registry import UnknownNameError
from trainers.builtin.base import VARIANTS
from trainers.builtin.dapo import DAPOTrainer
from trainers.builtin.grpo import CHECKPOINT, GRPOTrainer
from trainers.builtin.rollout import Mixing, sample, token_logprobs
from trainers.protocol.runlog import TrainingError


def test_budget_parse_and_errors():
    assert Budget.parse("steps=3, tokens=1e4") == Budget(steps=3, tokens=10000)
    assert Budget.parse("flops=2.5e12") == Budget(flops=2_500_000_000_000)
    with pytest.raises(ValueError, match="steps, prompts, rollouts, tokens, prompt_tokens, update_tokens, flops, "
                                         "wall_s"):
        Budget.parse("epochs=3")
    with pytest.raises(ValueError, match="not a number"):
        Budget.parse("steps=many")
    with pytest.raises(ValueError, match="at least one limit"):
        Budget()
    with pytest.raises(ValueError, match="positive"):
        Budget(rollouts=0)
    assert Budget(rollouts=10).allows(Ledger(rollouts=8), Ledger(rollouts=2)) is None
    assert Budget(rollouts=10).allows(Ledger(rollouts=8), Ledger(rollouts=3)) == "rollouts"
    # The flops limit reads generation and updates together; diagnostics are charged to no limit.
    spent = Ledger(generation_flops=4, update_flops=5, diagnostic_flops=100)
    assert Budget(flops=10).allows(spent, Ledger(update_flops=1)) is None
    assert Budget(flops=10).allows(spent, Ledger(generation_flops=2)) == "flops"
    assert Ledger.from_dict(spent.to_dict()) == spent  # the derived total is dropped on the way back


def test_training_stops_at_the_first_limit_and_leaves_a_checkpoint(untrained_model_dir, tmp_path, train_problems):
    # 2 prompts x G=4 = 8 rollouts a step: 20 rollouts pay for 2 steps, not 3, and nothing is overspent. The
    # shared schedule's 4 minibatches become one per group: 2 optimizer updates a step.
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=20, steps=50))
    ledger = trainer.train()
    assert (ledger.steps, ledger.rollouts, trainer.stopped_by) == (4, 16, "rollouts")
    assert ledger.prompts == 4 and 0 < ledger.tokens <= 16 * 12
    assert (tmp_path / CHECKPOINT).is_file()
    stored = json.loads((tmp_path / "ledger.json").read_text())
    assert stored["consumed"]["rollouts"] == 16 and stored["stopped_by"] == "rollouts"
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [1, 2] and [r["rollouts"] for r in log] == [8, 16]
    assert all(r["loss"] is not None and r["accuracy"] > 0 for r in log)


def test_token_limit_counts_the_worst_case_before_a_step(untrained_model_dir, tmp_path, train_problems):
    # A step may generate 8 x 12 = 96 tokens; 150 tokens can pay for one worst case, never for a second.
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path, train_problems, Budget(tokens=150))
    ledger = trainer.train()
    assert trainer.step == 1 and ledger.tokens <= 150


def test_budget_too_small_for_one_step_says_why(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=5))
    with pytest.raises(TrainingError, match=r"cannot pay for one step.*8 rollouts"):
        trainer.train()


# The GDRO variants and R3 have their own resume tests, on pools small enough that prompts come back and their
# per-prompt state (histories, replay buffers) decides what happens next.
RESUMED_ELSEWHERE = {"prompt-gdro", "rollout-gdro", "r3"}
FITS_TWO_PROMPTS = {"disco": {"minibatches": 2}}  # a minibatch holds whole groups; the tiny step has two


@pytest.mark.parametrize("variant", [v for v in VARIANTS.names() if v not in RESUMED_ELSEWHERE])
def test_killed_run_resumes_to_the_same_numbers(variant, untrained_model_dir, tmp_path, train_problems):
    cls, overrides = VARIANTS.get(variant), FITS_TWO_PROMPTS.get(variant, {})
    config = apply_overrides(cls.Config(), {**TINY_OVERRIDES, **overrides})  # what make_trainer builds
    budget = Budget(steps=2 * config.ppo_epochs * config.minibatches)  # two rollout batches
    whole = make_trainer(cls, untrained_model_dir, tmp_path / "whole", train_problems, budget, **overrides)
    whole.train()

    with pytest.raises(KeyboardInterrupt):
        make_trainer(killed_after(cls, step=1), untrained_model_dir, tmp_path / "killed", train_problems,
                     budget, **overrides).train()
    assert [r["step"] for r in read_log(tmp_path / "killed")] == [1]
    resumed = make_trainer(cls, untrained_model_dir, tmp_path / "killed", train_problems, budget, **overrides)
    resumed.train()
    assert without_time(read_log(tmp_path / "killed")) == without_time(read_log(tmp_path / "whole"))
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


class NaNLossAt(GRPOTrainer):
    def loss(self, *args):
        value = super().loss(*args)
        return value * float("nan") if self.step == 1 else value


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(untrained_model_dir, tmp_path,
                                                                              train_problems):
    trainer = make_trainer(NaNLossAt, untrained_model_dir, tmp_path, train_problems, Budget(steps=5))
    with pytest.raises(TrainingError, match=r"non-finite loss at step 1.*last good checkpoint"):
        trainer.train()
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["step"] == 1


def _prompt_ids(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = [tokenizer(p).input_ids for p in ("12+5=?", "347+85=?", "9-3=?") for _ in range(4)]
    return tokenizer, ids


def test_n_grpo_with_mixing_off_rolls_out_exactly_as_grpo(untrained_model_dir):
    model = AutoModelForCausalLM.from_pretrained(untrained_model_dir).eval()
    tokenizer, ids = _prompt_ids(untrained_model_dir)
    kwargs = dict(max_new_tokens=30, temperature=1.0, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                  seed=7)
    plain = sample(model, ids, **kwargs)
    unmixed = sample(model, ids, mixing=Mixing(rate=0.0, k=3, temperature=0.7), **kwargs)
    assert torch.equal(plain.response_ids, unmixed.response_ids)
    assert torch.equal(plain.old_logp, unmixed.old_logp)
    assert not unmixed.mixed.any()


def test_training_forward_replays_the_mixed_inputs(untrained_model_dir):
    model = AutoModelForCausalLM.from_pretrained(untrained_model_dir).eval()
    tokenizer, ids = _prompt_ids(untrained_model_dir)
    batch = sample(model, ids, max_new_tokens=30, temperature=1.0, eos_id=tokenizer.eos_token_id,
                   pad_id=tokenizer.pad_token_id, seed=7, mixing=Mixing(rate=0.5, k=3, temperature=0.7))
    assert batch.mixed.sum() > 20
    logp, _ = token_logprobs(model, batch, temperature=1.0)
    ratio = torch.exp(logp - batch.old_logp)[batch.response_mask.bool()]
    assert (ratio - 1).abs().max() < 1e-5
    # The replay is what makes it so: fed the plain anchor embeddings instead, the log-probs are different.
    batch.candidates = None
    plain_logp, _ = token_logprobs(model, batch, temperature=1.0)
    assert (plain_logp - batch.old_logp).abs().max() > 1e-2


def test_rows_that_end_early_are_dropped_from_decoding_and_still_replay_exactly(untrained_model_dir, monkeypatch):
    import trainers.builtin.rollout as rollout

    model = AutoModelForCausalLM.from_pretrained(untrained_model_dir).eval()
    tokenizer, ids = _prompt_ids(untrained_model_dir)
    bias_towards_eos(model, tokenizer.eos_token_id, 1.0)
    batch = sample(model, ids * 4, max_new_tokens=30, temperature=1.0, eos_id=tokenizer.eos_token_id,
                   pad_id=tokenizer.pad_token_id, seed=7, mixing=Mixing(rate=0.3, k=3, temperature=0.7))
    lengths = batch.lengths
    assert len(lengths.unique()) >= 10 and (lengths < 10).sum() >= 10 and (lengths == 30).any(), lengths
    assert (batch.response_ids[batch.response_mask == 0] == tokenizer.pad_token_id).all()
    logp, _ = token_logprobs(model, batch, temperature=1.0)
    assert ((logp - batch.old_logp).abs() * batch.response_mask).max() < 1e-5
    # Scoring in length-sorted chunks gives what one forward over the whole padded batch gives.
    monkeypatch.setattr(rollout, "ROWS_PER_FORWARD", len(ids) * 4)
    whole, _ = token_logprobs(model, batch, temperature=1.0)
    assert (whole - logp).abs().max() < 1e-5


def test_dapo_dynamic_sampling_charges_every_generated_rollout(untrained_model_dir, tmp_path, train_problems):
    # Every group is all-wrong, so every round is thrown away: 2 rounds x (3 x 2 prompts) x G=4 = 48 rollouts.
    trainer = make_trainer(DAPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                           pool=ConstantPool(False), max_generation_rounds=2)
    ledger = trainer.train()
    assert (ledger.rollouts, ledger.prompts, ledger.steps) == (48, 12, 2)  # the step's 2 updates, spent
    assert read_log(tmp_path)[0]["groups_trained"] == 0


def test_dapo_keeps_exactly_the_wanted_number_of_valid_groups(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(DAPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP)
    trainer.train()
    record = read_log(tmp_path)[0]
    assert record["groups_trained"] == 2 and record["rollouts"] == 24  # one round of 3 x 2 prompts sufficed


def test_unknown_variant_and_unknown_field_list_the_known_ones():
    with pytest.raises(UnknownNameError, match=r"known variants: .*dgpo.*grpo.*n-grpo"):
        VARIANTS.get("ppo")
    with pytest.raises(ValueError, match=r"no field 'temprature'.*temperature"):
        apply_overrides(VARIANTS.get("dgpo").Config(), {"temprature": "1.0"})
    config = apply_overrides(VARIANTS.get("dgpo").Config(), {"lr": "1e-5", "question_weighting": "false"})
    assert config.lr == 1e-5 and config.question_weighting is False


def test_every_variant_documents_its_config_and_hooks():
    from trainers.builtin.catalog import overridden_hooks
    from trainers.protocol.config import field_docs

    expected = {"grpo": ["advantage", "loss"], "dr-grpo": ["reward", "advantage"], "dgpo": ["advantage", "loss"],
                "dapo": ["sampler", "reward", "group_filter"], "n-grpo": ["rollout"]}
    for name, hooks in expected.items():
        trainer = VARIANTS.get(name)
        assert overridden_hooks(trainer) == hooks, name
        docs = field_docs(trainer.Config)
        assert {f.name for f in dataclasses.fields(trainer.Config)} <= set(docs), name  # every field is read
        assert docs["lr"].startswith("AdamW peak learning rate")
    for name in VARIANTS.names():  # documented where declared (dataclass metadata), inherited where redeclared
        undocumented = [f for f, doc in field_docs(VARIANTS.get(name).Config).items() if not doc]
        assert not undocumented, f"{name}: fields without documentation: {undocumented}"


@pytest.mark.parametrize("tied", [True, False])
def test_the_flops_parameter_count_leaves_out_the_embedding_lookup(tied):
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.budget import parameter_count

    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())  # a tied matrix is one parameter
    # Untied, the input table is a lookup and only the output layer's product counts; tied, the one matrix
    # is counted once, as the output layer.
    assert parameter_count(model) == (total if tied else total - 50 * 16)
