"""MC-GRPO (variants.md §10): the spec's numbers, G+1 rollouts charged to the budget, the pivot left out of the
loss and its denominators, and a short training run on a random-weight model."""


import pytest
import torch
from trainer_helpers import make_trainer, read_log

from harness.budget import Budget, Ledger
from trainers.algos.terms import median_advantages, median_pivot, without_pivot
from trainers.builtin.grpo import CHECKPOINT, GRPOTrainer
from trainers.builtin.mc_grpo import MCGRPOConfig, MCGRPOTrainer, PivotDropped
from trainers.protocol.runlog import TrainingError


def test_spec_numbers():
    rewards = torch.tensor([[2.0, 0, 0], [0.2, 0.9, 0.5]])
    advantages = median_advantages(rewards)
    assert advantages[0].tolist() == pytest.approx([2000.0, 0.0, 0.0], rel=1e-5)
    # median 0.5, MAD + eps = 0.301
    assert advantages[1].tolist() == pytest.approx([-0.9967, 1.3289, 0.0], abs=1e-4)
    # [2, 0, 0]: the pivot is one of the zeros (the first, by our tie rule); [0.2, 0.9, 0.5]: index 2.
    assert median_pivot(rewards).tolist() == [1, 2]
    assert without_pivot(advantages, median_pivot(rewards)).flatten().tolist() == pytest.approx(
        [2000.0, 0.0, -0.9967, 1.3289], abs=1e-3)


def test_mad_floor_switches_only_groups_whose_mad_is_zero():
    rewards = torch.tensor([[2.0, 0, 0], [0.2, 0.9, 0.5]])
    floored = median_advantages(rewards, mad_floor=True)
    assert floored[0].tolist() == pytest.approx([2 / (rewards[0].std().item() + 1e-3), 0.0, 0.0])
    assert torch.equal(floored[1], median_advantages(rewards)[1])


def test_config_validates_and_keeps_the_code_defaults():
    config = MCGRPOConfig()
    assert (config.mad_eps, config.reward_correct, config.kl_beta, config.mad_floor) == (1e-3, 2.0, 0.04, False)
    with pytest.raises(ValueError, match="mad_eps must be > 0"):
        MCGRPOConfig(mad_eps=0.0)
    with pytest.raises(ValueError, match="reward_correct must be > 0"):
        MCGRPOConfig(reward_correct=-1.0)


def test_round_cost_charges_g_plus_one_rollouts():
    config = MCGRPOConfig(prompts_per_step=2, group_size=4, max_new_tokens=12)  # 2 epochs x 2 minibatch updates
    assert MCGRPOTrainer.round_cost(config, 100, 2) == Ledger(steps=4, prompts=2, rollouts=10, tokens=120)
    assert GRPOTrainer.round_cost(config, 100, 2).rollouts == 8
    # 9 rollouts pay for a GRPO step but not for an MC-GRPO one.
    with pytest.raises(TrainingError, match="10 rollouts"):
        MCGRPOTrainer.check_budget(config, 100, Budget(rollouts=9))


def test_collect_generates_g_plus_one_charges_them_all_and_drops_the_pivot(untrained_model_dir, tmp_path,
                                                                         train_problems):
    trainer = make_trainer(MCGRPOTrainer, untrained_model_dir, tmp_path, train_problems, Budget(steps=5))
    groups = trainer.collect()
    generated = groups.generated
    assert isinstance(groups, PivotDropped)
    assert generated.batch.response_ids.shape[0] == 10 and groups.batch.response_ids.shape[0] == 8
    assert (trainer.ledger.prompts, trainer.ledger.rollouts) == (2, 10)
    assert trainer.ledger.tokens == int(generated.batch.lengths.sum())
    # AlternatingPool over the 10 requests: [1,0,0,1,0 | 0,1,0,0,1]; the {0, 2} reward; pivots = first zeros.
    assert generated.rewards.tolist() == [[2, 0, 0, 2, 0], [0, 2, 0, 0, 2]]
    assert groups.pivot.tolist() == [1, 0]
    kept = [0, 2, 3, 4, 6, 7, 8, 9]
    assert torch.equal(groups.batch.response_ids, generated.batch.response_ids[kept])
    assert groups.texts == [generated.texts[i] for i in kept]
    assert groups.rewards.tolist() == [[2, 0, 2, 0], [2, 0, 0, 2]]
    assert trainer.advantage(groups).flatten().tolist() == pytest.approx([2000, 0, 2000, 0, 2000, 0, 0, 2000])
    # The log reports all G+1 generated samples: 4 of 10 right, not 4 of the 8 trained.
    assert trainer.step_stats(groups)["accuracy"] == pytest.approx(0.4)


class LossSpy(MCGRPOTrainer):
    def loss(self, logp, old_logp, advantages, mask, kl):
        self.rows_seen = advantages.shape[0]
        return super().loss(logp, old_logp, advantages, mask, kl)


def test_the_pivot_is_not_in_the_loss_nor_in_its_denominator(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(LossSpy, untrained_model_dir, tmp_path, train_problems, Budget(steps=5), minibatches=1)
    groups = trainer.collect()
    stats = trainer.update(groups)
    assert trainer.rows_seen == 8
    # One epoch, one minibatch: ratio 1 and the policy still equals the reference (KL 0), so seq-mean-token-mean
    # is -mean(A) over the G trained samples: -(4 x 2000) / 8. Counting the pivot would give -8000 / 10.
    assert stats["loss"] == pytest.approx(-1000.0, rel=1e-4)


def test_trains_within_its_rollout_budget_and_leaves_a_checkpoint(untrained_model_dir, tmp_path, train_problems):
    # 2 prompts x (G+1 = 5) = 10 rollouts a step: 25 pay for 2 steps (GRPO's 8 a step would afford 3).
    trainer = make_trainer(MCGRPOTrainer, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=25))
    ledger = trainer.train()
    assert (ledger.steps, ledger.prompts, ledger.rollouts, trainer.stopped_by) == (4, 4, 20, "rollouts")
    assert 0 < ledger.tokens <= 20 * 12
    assert (tmp_path / CHECKPOINT).is_file()
    log = read_log(tmp_path)
    assert [r["rollouts"] for r in log] == [10, 20]
    assert all(r["loss"] is not None and r["groups_trained"] == 2 for r in log)
