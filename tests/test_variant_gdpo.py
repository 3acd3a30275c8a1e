"""GDPO (variants.md §11): the spec's numbers, the trainer's components and weights, the token-weighted batch
whitening, and a short training run on a random-weight model."""


import pytest
import torch
from trainer_helpers import ONE_STEP, approx, blank_batch, make_trainer, train_and_check

from harness.budget import Budget
from trainers import algos
from trainers.base import Groups, apply_overrides
from trainers.gdpo import GDPOConfig, GDPOTrainer, batch_whiten, decoupled_group_advantages, gdpo_advantages

# The spec's two groups (G = 4): correctness and format per sample.
CORRECT = [[1.0, 1, 0, 0], [1, 0, 0, 0]]
FORMAT = [[1.0, 0, 1, 1], [1, 1, 1, 1]]
SPEC_GDPO = [1.5359, -0.7128, -0.4116, -0.4116, 1.6865, -0.5622, -0.5622, -0.5622]


def crafted_groups(problems, accuracy, answers, lengths) -> Groups:
    """Groups with given correctness, extracted answers and response lengths (no model involved)."""
    accuracy = torch.tensor(accuracy)
    lengths = torch.tensor(lengths).flatten()
    rows, width = len(lengths), int(lengths.max())
    batch = blank_batch((torch.arange(width) < lengths[:, None]).long())
    flat_answers = [a for group in answers for a in group]
    return Groups(problems[: len(accuracy)], batch, ["x"] * rows, flat_answers, accuracy, accuracy)


def test_grpo_on_the_summed_reward_gives_three_different_samples_one_advantage():
    summed = torch.tensor(CORRECT[0]) + torch.tensor(FORMAT[0])
    assert algos.grpo_advantages(summed[None], eps=1e-4)[0].tolist() == approx([1.4997, -0.4999, -0.4999, -0.4999])


def test_decoupled_normalisation_keeps_them_apart():
    components = torch.tensor([CORRECT, FORMAT])
    before_batch_norm = decoupled_group_advantages(components, torch.ones(2))
    assert before_batch_norm[0].tolist() == approx([1.3658, -0.6338, -0.3660, -0.3660])
    # Format has no spread in group 2, so it adds nothing there: GRPO on correctness alone.
    assert before_batch_norm[1].tolist() == approx([1.4997, -0.4999, -0.4999, -0.4999])


def test_batch_whitening_over_both_groups():
    advantages = gdpo_advantages(torch.tensor([CORRECT, FORMAT]), torch.ones(2))
    assert advantages.flatten().tolist() == approx(SPEC_GDPO)


def test_nan_rewards_count_as_zero():
    with_nan = torch.tensor([CORRECT, [[1.0, float("nan"), 1, 1], [1, 1, 1, 1]]])
    zeroed = torch.tensor([CORRECT, [[1.0, 0, 1, 1], [1, 1, 1, 1]]])
    assert torch.equal(gdpo_advantages(with_nan, torch.ones(2)), gdpo_advantages(zeroed, torch.ones(2)))


def test_token_weighted_whitening():
    values = torch.tensor([[1.0, -1, 0.5, -0.5]])
    same_lengths = batch_whiten(values, unbiased_std=False, token_counts=torch.full_like(values, 7))
    assert torch.allclose(same_lengths, batch_whiten(values, unbiased_std=False))
    counts = torch.tensor([[10.0, 1, 1, 1]])
    weighted = batch_whiten(values, token_counts=counts)
    assert (counts * weighted).sum().item() == pytest.approx(0.0, abs=1e-5)  # zero mean per token
    assert not torch.allclose(weighted, batch_whiten(values))


def test_trainer_reproduces_the_spec_from_its_own_components(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(GDPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                           brevity_reward=0.0)
    # Format = an answer could be extracted, so None answers are the spec's format 0.
    answers = [["1", None, "2", "3"], ["1", "1", "1", "1"]]
    groups = crafted_groups(train_problems, CORRECT, answers, [[5] * 4] * 2)
    groups.rewards, groups.components = trainer.reward(groups)
    assert set(groups.components) == {"accuracy", "format"}
    assert groups.components["format"].tolist() == FORMAT
    assert trainer.advantage(groups).flatten().tolist() == approx(SPEC_GDPO)
    # The same reward through GRPO's single normalisation of the sum.
    assert not torch.allclose(algos.grpo_advantages(groups.rewards, 1e-4), trainer.advantage(groups), atol=1e-2)


def test_brevity_component_and_its_weight(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(GDPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP)
    groups = crafted_groups(train_problems, [[1.0, 1, 0, 0]], [["1", "1", "2", "2"]], [[6, 12, 3, 9]])
    total, components = trainer.reward(groups)
    assert components["brevity"].tolist() == [[0.5, 0.0, 0.75, 0.25]]  # 1 - |o| / 12
    assert total[0].tolist() == approx([2.25, 2.0, 1.375, 1.125])  # accuracy + format + 0.5 * brevity
    groups.rewards, groups.components = total, components
    expected = gdpo_advantages(torch.stack([components["accuracy"], components["format"], components["brevity"]]),
                               torch.tensor([1.0, 1.0, 0.5]), 1e-4)
    assert torch.allclose(trainer.advantage(groups), expected)
    # Correct samples 1 and 2 differ only in length, and the shorter one gets the larger advantage.
    advantages = trainer.advantage(groups)[0]
    assert advantages[0] > advantages[1] > 0


def test_batch_norm_over_tokens_switches_the_whitening(untrained_model_dir, tmp_path, train_problems):
    groups = crafted_groups(train_problems, CORRECT, [["1", None, "2", "3"], ["1"] * 4], [[2, 9, 4, 4], [7, 3, 3, 3]])
    by_samples = make_trainer(GDPOTrainer, untrained_model_dir, tmp_path / "s", train_problems, ONE_STEP)
    by_tokens = make_trainer(GDPOTrainer, untrained_model_dir, tmp_path / "t", train_problems, ONE_STEP,
                             batch_norm_over="tokens")
    groups.rewards, groups.components = by_samples.reward(groups)
    samples, tokens = by_samples.advantage(groups), by_tokens.advantage(groups)
    assert samples.sum().item() == pytest.approx(0.0, abs=1e-5)
    assert (tokens * groups.batch.lengths.view_as(tokens)).sum().item() == pytest.approx(0.0, abs=1e-4)
    assert not torch.allclose(samples, tokens, atol=1e-2)


@pytest.mark.parametrize("field, value", [("format_reward", "-1"), ("brevity_reward", "-0.5"),
                                          ("batch_norm_over", "sequences")])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        apply_overrides(GDPOConfig(), {field: value})


def test_two_steps_train_within_the_budget_and_leave_a_checkpoint(untrained_model_dir, tmp_path, train_problems):
    # 2 prompts x G=4 = 8 rollouts a step: 20 rollouts pay for 2 steps.
    trainer = make_trainer(GDPOTrainer, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=20))
    ledger, log = train_and_check(trainer, tmp_path)
    assert (ledger.steps, ledger.rollouts, trainer.stopped_by) == (2, 16, "rollouts")
    assert ledger.tokens <= 16 * 12
    assert [r["step"] for r in log] == [1, 2]
