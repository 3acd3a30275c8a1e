"""NGRPO, Negative-enhanced GRPO (variants.md §8; not N-GRPO's neighbour mixing): the spec's numbers and the
std convention they pin down, the asymmetric clip and token-mean loss, the all-correct filter, and a short
training run. Small random-weight model, so every test takes seconds."""

import dataclasses

import pytest
import torch
from trainer_helpers import ONE_STEP, ConstantPool, approx, make_trainer, read_log, train_and_check

from harness.budget import Budget
from trainers import algos
from trainers.algos.terms import not_all_correct, virtual_max_advantages
from trainers.builtin.base import VARIANTS
from trainers.builtin.catalog import overridden_hooks
from trainers.builtin.n_grpo import NGRPOTrainer
from trainers.builtin.ngrpo import NegativeEnhancedGRPOConfig, NegativeEnhancedGRPOTrainer
from trainers.protocol.config import field_docs

# ------------------------------------------------------------------------------------------- spec numbers


def test_all_wrong_group_gets_a_negative_advantage():
    assert virtual_max_advantages(torch.zeros(1, 4))[0].tolist() == approx([-0.4472] * 4)


def test_one_right_of_four_against_grpo():
    rewards = torch.tensor([[1.0, 0, 0, 0]])
    assert virtual_max_advantages(rewards)[0].tolist() == approx([1.0954, -0.7303, -0.7303, -0.7303])
    grpo = [1.5, -0.5, -0.5, -0.5]
    assert virtual_max_advantages(rewards, virtual_samples=0)[0].tolist() == approx(grpo)
    assert algos.grpo_advantages(rewards)[0].tolist() == approx(grpo)


def test_published_worked_example_pins_the_unbiased_std():
    rewards = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0]])
    unbiased = virtual_max_advantages(rewards)[0]
    assert unbiased[[0, 1]].tolist() == approx([1.7638, -0.5040])
    assert algos.grpo_advantages(rewards)[0, [0, 1]].tolist() == approx([2.4749, -0.3536])
    population = virtual_max_advantages(rewards, unbiased_std=False)[0]
    assert population[0].item() != approx(1.7638, abs=0.05)


def test_all_correct_group_still_gets_zero():
    assert virtual_max_advantages(torch.ones(1, 4)).abs().max().item() < 1e-6


def test_filter_drops_only_all_correct_groups():
    accuracy = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]])
    assert not_all_correct(accuracy).tolist() == [False, True, True]


# ------------------------------------------------------------------------------------- trainer hooks


def test_defaults_and_the_virtual_reward_follows_the_format_bonus():
    config = NegativeEnhancedGRPOConfig()
    assert (config.eps_low, config.eps_high, config.loss_aggregation) == (0.16, 0.24, "token-mean")
    # The virtual sample scores the most a sample can: 1 + the format bonus, or max_reward when set, as the
    # registered advantage every engine calls reads it.
    from trainers.algos.variants import GroupBatch, ngrpo_advantage

    rewards = torch.tensor([[0.0, 0.5, 0.5, 1.5]])
    for settings, virtual in [({}, 1.0), ({"format_reward": 0.5}, 1.5), ({"format_reward": 0.5, "max_reward": 2.0}, 2.0)]:
        cfg = NegativeEnhancedGRPOConfig(**settings)
        advantages, _ = ngrpo_advantage(GroupBatch(accuracy=(rewards >= 1).float(), rewards=rewards), cfg)
        expected = virtual_max_advantages(rewards, virtual, cfg.virtual_samples, cfg.advantage_eps, cfg.unbiased_std)
        assert torch.equal(advantages, expected)
    with pytest.raises(ValueError, match="virtual_samples"):
        NegativeEnhancedGRPOConfig(virtual_samples=-1)


def test_loss_clips_asymmetrically_and_averages_over_tokens(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(NegativeEnhancedGRPOTrainer, untrained_model_dir, tmp_path, train_problems,
                           ONE_STEP)
    # Sequence 0: 2 tokens at ratio 1.3 with A = +1 (capped at 1 + eps_high); sequence 1: 4 tokens at ratio 0.7
    # with A = -1 (floored at 1 - eps_low). Token-mean weighs the longer sequence twice as much.
    old = torch.zeros(2, 4)
    logp = torch.log(torch.tensor([[1.3] * 4, [0.7] * 4]))
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    loss = trainer.loss(logp, old, torch.tensor([1.0, -1.0]), mask, None)
    expected = (2 * -(1 + 0.24) + 4 * (1 - 0.16)) / 6
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_all_wrong_groups_are_trained_and_all_correct_ones_dropped(untrained_model_dir, tmp_path, train_problems):
    wrong = make_trainer(NegativeEnhancedGRPOTrainer, untrained_model_dir, tmp_path / "wrong", train_problems,
                         ONE_STEP, pool=ConstantPool(False), max_new_tokens=4, track_kl=False)
    wrong.train()
    record = read_log(tmp_path / "wrong")[0]
    assert record["groups_trained"] == 2 and record["loss"] != 0
    right = make_trainer(NegativeEnhancedGRPOTrainer, untrained_model_dir, tmp_path / "right", train_problems,
                         ONE_STEP, pool=ConstantPool(True), max_new_tokens=4, track_kl=False)
    ledger = right.train()
    assert read_log(tmp_path / "right")[0]["groups_trained"] == 0
    assert (ledger.steps, ledger.rollouts) == (2, 8)  # dropped groups are still paid for, with the step's 2 updates


def test_registered_apart_from_n_grpo_with_documented_config():
    assert VARIANTS.get("ngrpo") is NegativeEnhancedGRPOTrainer
    assert VARIANTS.get("n-grpo") is NGRPOTrainer
    assert overridden_hooks(NegativeEnhancedGRPOTrainer) == ["group_filter", "advantage"]
    docs = field_docs(NegativeEnhancedGRPOConfig)
    shared = {f.name for f in dataclasses.fields(VARIANTS.get("grpo").Config)}
    assert all(docs[f.name] for f in dataclasses.fields(NegativeEnhancedGRPOConfig) if f.name not in shared)
    assert "(ours" in docs["max_reward"]


def test_trains_two_steps_inside_the_budget_and_leaves_a_checkpoint(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(NegativeEnhancedGRPOTrainer, untrained_model_dir, tmp_path, train_problems,
                           Budget(steps=4))
    ledger, log = train_and_check(trainer, tmp_path)
    assert (ledger.steps, ledger.rollouts, ledger.prompts, trainer.stopped_by) == (4, 16, 4, "steps")
    assert [r["step"] for r in log] == [1, 2]
