"""GDPO (variants.md §11): the spec's numbers, the trainer's components and weights (the task's process reward
among them), the token-weighted batch whitening, and a short training run on a random-weight model."""


import pytest
import torch
from trainer_helpers import ONE_STEP, approx, blank_batch, make_trainer, train_and_check

from harness.budget import Budget
from harness.overrides import apply_overrides
from harness.task import TASKS
from trainers import algos
from trainers.algos.terms import batch_whiten, decoupled_group_advantages, gdpo_advantages
from trainers.builtin.base import Groups
from trainers.builtin.gdpo import GDPOConfig, GDPOTrainer

# The spec's two groups (G = 4): correctness and format per sample.
CORRECT = [[1.0, 1, 0, 0], [1, 0, 0, 0]]
FORMAT = [[1.0, 0, 1, 1], [1, 1, 1, 1]]
SPEC_GDPO = [1.5359, -0.7128, -0.4116, -0.4116, 1.6865, -0.5622, -0.5622, -0.5622]


def crafted_groups(problems, accuracy, answers, lengths, texts=None) -> Groups:
    """Groups with given correctness, extracted answers, response lengths and texts (no model involved)."""
    accuracy = torch.tensor(accuracy)
    lengths = torch.tensor(lengths).flatten()
    rows, width = len(lengths), int(lengths.max())
    batch = blank_batch((torch.arange(width) < lengths[:, None]).long())
    flat_answers = [a for group in answers for a in group]
    return Groups(problems[: len(accuracy)], batch, texts or ["x"] * rows, flat_answers, accuracy, accuracy)


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
    trainer = make_trainer(GDPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP)
    # Format = an answer could be extracted, so None answers are the spec's format 0.
    answers = [["1", None, "2", "3"], ["1", "1", "1", "1"]]
    groups = crafted_groups(train_problems, CORRECT, answers, [[5] * 4] * 2)
    groups.rewards, groups.components = trainer.reward(groups)
    assert set(groups.components) == {"accuracy", "format"}
    assert groups.components["format"].tolist() == FORMAT
    assert trainer.advantage(groups).flatten().tolist() == approx(SPEC_GDPO)
    # The same reward through GRPO's single normalisation of the sum.
    assert not torch.allclose(algos.grpo_advantages(groups.rewards, 1e-4), trainer.advantage(groups), atol=1e-2)


# 347+85: clean work; the right answer boxed after work that does not support it (2 of 3 lines wrong); one
# slip (wrong answer, the slipped line wrong, the work after it right); no column work at all.
PROCESS_TEXTS = ["7+5=12 :2\n4+8+1=13 :32\n3+0+1=4 :432\n\\boxed{432}",
                 "7+5=13 :3\n4+8+1=12 :23\n3+0+1=4 :423\n\\boxed{432}",
                 "7+5=11 :1\n4+8+1=13 :31\n3+0+1=4 :431\n\\boxed{431}",
                 "\\boxed{431}"]


class SandboxGDPO(GDPOTrainer):
    """GDPO given the sandbox train task's auxiliary rewards, as the compare builds it."""

    def __init__(self, config, **kwargs):
        super().__init__(config, aux_rewards=TASKS.get("sandbox-train").aux_rewards, **kwargs)


def test_the_tasks_process_reward_is_a_component_with_its_weight(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(SandboxGDPO, untrained_model_dir, tmp_path, train_problems, ONE_STEP)
    groups = crafted_groups(train_problems, [[1.0, 1, 0, 0]], [["432", "432", "431", "431"]], [[9] * 4],
                            texts=PROCESS_TEXTS)
    total, components = trainer.reward(groups)
    assert components["process"][0].tolist() == approx([1.0, 1 / 3, 2 / 3, 0.0])
    assert total[0].tolist() == approx([2.5, 2 + 1 / 6, 1 + 1 / 3, 1.0])  # accuracy + format + 0.5 * process
    groups.rewards, groups.components = total, components
    expected = gdpo_advantages(torch.stack([components["accuracy"], components["format"], components["process"]]),
                               torch.tensor([1.0, 1.0, 0.5]), 1e-4)
    assert torch.allclose(trainer.advantage(groups), expected)
    # Clean work beats unsupported work among the right answers, and one slip beats no work among the wrong ones.
    advantages = trainer.advantage(groups)[0]
    assert advantages[0] > advantages[1] > advantages[2] > advantages[3]


def test_no_process_component_without_the_tasks_rewards_or_at_weight_zero(untrained_model_dir, tmp_path,
                                                                          train_problems):
    groups = crafted_groups(train_problems, [[1.0, 1, 0, 0]], [["432", "432", "431", "431"]], [[9] * 4],
                            texts=PROCESS_TEXTS)
    plain = make_trainer(GDPOTrainer, untrained_model_dir, tmp_path / "plain", train_problems, ONE_STEP)
    off = make_trainer(SandboxGDPO, untrained_model_dir, tmp_path / "off", train_problems, ONE_STEP,
                       aux_reward_weight=0.0)
    for trainer in (plain, off):
        assert set(trainer.reward(groups)[1]) == {"accuracy", "format"}


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


@pytest.mark.parametrize("field, value", [("format_reward", "-1"), ("aux_reward_weight", "-0.5"),
                                          ("batch_norm_over", "sequences")])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        apply_overrides(GDPOConfig(), {field: value})


def test_two_steps_train_within_the_budget_and_leave_a_checkpoint(untrained_model_dir, tmp_path, train_problems):
    # 2 prompts x G=4 = 8 rollouts a step: 20 rollouts pay for 2 steps, each 2 minibatch updates (one per group).
    trainer = make_trainer(GDPOTrainer, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=20))
    ledger, log = train_and_check(trainer, tmp_path)
    assert (ledger.steps, ledger.rollouts, trainer.stopped_by) == (4, 16, "rollouts")
    assert ledger.tokens <= 16 * 12
    assert [r["step"] for r in log] == [1, 2]
