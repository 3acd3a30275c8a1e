"""Unlikeliness reward (variants.md §12): the spec's numbers, the hook ranking by the rollout's per-token mean
log-prob, the uniform-group filter, and a short training run with the paper's two PPO epochs."""


import pytest
import torch
from trainer_helpers import make_trainer, read_log

from harness.budget import Budget
from trainers import algos
from trainers.algos.terms import likelihood_ranks, mean_token_logp, unlikeliness_rewards
from trainers.builtin.base import Groups
from trainers.builtin.grpo import CHECKPOINT
from trainers.builtin.rollout import RolloutBatch
from trainers.builtin.unlikeliness import UnlikelinessConfig, UnlikelinessTrainer

SPEC_REWARDS = torch.tensor([[1.0, 1, 0, 1]])
SPEC_LOGP = torch.tensor([[-0.2, -0.9, -0.5, -0.4]])
SPEC_ADVANTAGES = [0.3093, 0.7217, -1.4778, 0.4468]


def test_spec_numbers():
    assert likelihood_ranks(SPEC_LOGP).tolist() == [[3, 0, 1, 2]]
    shaped = unlikeliness_rewards(SPEC_REWARDS, SPEC_LOGP, beta=0.25)
    assert shaped[0].tolist() == pytest.approx([0.8125, 1.0, 0.0, 0.875])
    assert algos.grpo_advantages(shaped)[0].tolist() == pytest.approx(SPEC_ADVANTAGES, abs=1e-4)
    # beta 0 is plain GRPO: [0.5, 0.5, -1.5, 0.5]
    plain = algos.grpo_advantages(unlikeliness_rewards(SPEC_REWARDS, SPEC_LOGP, beta=0.0))
    assert plain[0].tolist() == pytest.approx([0.5, 0.5, -1.5, 0.5], abs=1e-4)


def test_ties_are_broken_by_index_and_padding_is_not_averaged():
    assert likelihood_ranks(torch.tensor([[-0.5, -0.5, -0.7, -0.5]])).tolist() == [[1, 2, 0, 3]]
    logp = torch.tensor([[-1.0, -3.0, 0.0], [-2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0]])
    assert mean_token_logp(logp, mask).tolist() == [-2.0, -2.0]


def test_advantage_hook_ranks_by_the_rollouts_mean_token_logp(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(UnlikelinessTrainer, untrained_model_dir, tmp_path, train_problems, Budget(steps=1))
    # Responses of 1, 3, 2 and 4 tokens whose per-token means are the spec's; a mean over the padded width
    # would rank the first one (-0.05) differently.
    old_logp = torch.tensor([[-0.2, 0, 0, 0], [-0.9, -0.9, -0.9, 0], [-0.3, -0.7, 0, 0], [-0.4, -0.1, -0.7, -0.4]])
    mask = (old_logp != 0).long()
    batch = RolloutBatch(torch.ones(4, 2, dtype=torch.long), torch.ones(4, 2, dtype=torch.long), mask.clone(), mask,
                         old_logp, torch.zeros(4, dtype=torch.bool))
    groups = Groups(train_problems[:1], batch, [""] * 4, [None] * 4, SPEC_REWARDS, SPEC_REWARDS)
    assert trainer.advantage(groups)[0].tolist() == pytest.approx(SPEC_ADVANTAGES, abs=1e-4)


def test_uniform_groups_are_skipped_only_with_the_flag(untrained_model_dir, tmp_path, train_problems):
    rewards = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    groups = Groups(train_problems[:3], None, [], [], rewards, rewards)
    trainer = make_trainer(UnlikelinessTrainer, untrained_model_dir, tmp_path, train_problems, Budget(steps=1))
    assert trainer.group_filter(groups).tolist() == [False, False, True]
    trainer.config = UnlikelinessConfig(skip_uniform_groups=False)
    assert trainer.group_filter(groups).tolist() == [True, True, True]


def test_config_defaults_and_validation():
    config = UnlikelinessConfig()
    assert (config.unlikeliness_beta, config.kl_beta) == (0.25, 0.1)
    assert UnlikelinessConfig.PAPER_SCHEDULE == {"ppo_epochs": 2, "minibatches": 1}
    with pytest.raises(ValueError, match=r"unlikeliness_beta must be in \[0, 1\]"):
        UnlikelinessConfig(unlikeliness_beta=1.5)


def test_trains_two_epochs_per_step_within_budget_and_leaves_a_checkpoint(untrained_model_dir, tmp_path,
                                                                         train_problems):
    # Two PPO epochs: each rollout batch costs 2 optimizer steps, so 4 steps pay for 2 rollout batches.
    trainer = make_trainer(UnlikelinessTrainer, untrained_model_dir, tmp_path, train_problems, Budget(steps=4))
    ledger = trainer.train()
    assert (ledger.steps, ledger.rollouts, trainer.stopped_by) == (4, 16, "steps")
    assert (tmp_path / CHECKPOINT).is_file()
    log = read_log(tmp_path)
    assert [r["steps"] for r in log] == [2, 4]
    assert all(r["loss"] is not None and r["groups_trained"] == 2 for r in log)
