"""GRPO-LEAD (variants.md §6): the spec's numbers, the rejection filter, the code-only reward rules behind their
flag, and a short training run. Small random-weight model, so every test takes seconds."""

import dataclasses

import pytest
import torch
from trainer_helpers import ONE_STEP, approx, make_trainer, train_and_check

from harness.budget import Budget
from trainers import algos
from trainers.algos.terms import difficulty_reweighted, is_degenerate, lead_rewards, logistic_weight
from trainers.builtin.base import VARIANTS, Groups
from trainers.builtin.catalog import overridden_hooks
from trainers.builtin.grpo_lead import GRPOLeadConfig, GRPOLeadTrainer
from trainers.builtin.rollout import RolloutBatch
from trainers.protocol.config import field_docs


def make_groups(accuracy, lengths, texts=None, answers=None) -> Groups:
    """Graded groups without a model: only the response lengths of the batch matter to GRPO-LEAD."""
    accuracy = torch.tensor(accuracy, dtype=torch.float32)
    rows = accuracy.numel()
    lengths = torch.tensor(lengths).reshape(-1)
    mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()
    batch = RolloutBatch(torch.zeros(rows, 1, dtype=torch.long), torch.ones(rows, 1, dtype=torch.long), mask,
                         mask, torch.zeros(mask.shape), torch.zeros(rows, dtype=torch.bool))
    return Groups([None] * accuracy.shape[0], batch, texts or ["\\boxed{1}"] * rows, answers or ["1"] * rows,
                  accuracy, accuracy)


# ------------------------------------------------------------------------------------------- spec numbers


SPEC_CORRECT = torch.tensor([[1, 1, 1, 0, 0, 0]])
SPEC_LENGTHS = torch.tensor([[1000, 2000, 3000, 500, 500, 500]])


def test_length_reward_and_penalty_match_the_spec():
    rewards = lead_rewards(SPEC_LENGTHS, SPEC_CORRECT)
    assert rewards[0].tolist() == approx([1.0513, 1.0, 0.9512, -1, -1, -1])


def test_reweighted_advantages_match_the_spec():
    rewards = lead_rewards(SPEC_LENGTHS, SPEC_CORRECT)
    advantages = algos.grpo_advantages(rewards)
    assert advantages[0].tolist() == approx([0.9585, 0.9117, 0.8672, -0.9125, -0.9125, -0.9125])
    assert difficulty_reweighted(advantages, rewards)[0].tolist() == approx(
        [1.3578, 1.2915, 1.2285, -1.2926, -1.2926, -1.2926])


def test_logistic_weight_spot_values():
    weights = logistic_weight(torch.tensor([0.5, 0.25, 0.75, 0.9]))
    assert weights.tolist() == approx([1.41656, 1.4926, 0.95, 0.6007], abs=1e-4)


def test_positive_advantages_use_w_rho_and_negative_ones_w_one_minus_rho():
    # rho = 0.25 (a hard question): the correct sample is scaled by w(0.25), the wrong ones by w(0.75).
    rewards = torch.tensor([[1.0, -1, -1, -1]])
    advantages = algos.grpo_advantages(rewards)
    reweighted = difficulty_reweighted(advantages, rewards)
    assert (reweighted / advantages)[0].tolist() == approx([1.4926, 0.95, 0.95, 0.95])


def test_a_single_correct_response_and_equal_lengths_score_exactly_one():
    rewards = lead_rewards(torch.tensor([[700, 10, 20, 30], [50, 50, 50, 9]]),
                           torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]]))
    assert rewards.tolist() == [[1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, -1.0]]


def test_length_z_score_uses_correct_responses_only():
    # The wrong responses' lengths do not move the correct ones' rewards.
    short_wrong = lead_rewards(torch.tensor([[1000, 2000, 3000, 5, 5, 5]]), SPEC_CORRECT)
    long_wrong = lead_rewards(torch.tensor([[1000, 2000, 3000, 9000, 9000, 9000]]), SPEC_CORRECT)
    assert torch.equal(short_wrong, long_wrong)


# ------------------------------------------------------------------------------------- trainer hooks


@pytest.fixture
def lead(untrained_model_dir, tmp_path, train_problems):
    def build(**overrides):
        return make_trainer(GRPOLeadTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                            **overrides)
    return build


def test_reward_hook_gives_the_spec_rewards(lead):
    groups = make_groups(SPEC_CORRECT.tolist(), SPEC_LENGTHS.tolist())
    rewards, components = lead().reward(groups)
    assert rewards[0].tolist() == approx([1.0513, 1.0, 0.9512, -1, -1, -1])
    assert torch.equal(components["accuracy"], groups.accuracy)


def test_rejection_sampling_drops_uniform_groups_but_keeps_length_differentiated_all_correct_ones(lead):
    groups = make_groups([[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0]],
                         [[5, 6, 7, 8], [9, 9, 9, 9], [4, 8, 12, 16], [5, 6, 7, 8]])
    trainer = lead()
    groups.rewards, _ = trainer.reward(groups)
    assert trainer.group_filter(groups).tolist() == [False, False, True, True]
    assert lead(rejection_sampling=False).group_filter(groups).all()


def test_code_reward_rules_are_off_by_default_and_switch_the_reward_map(lead):
    looping = " ".join(["so the answer is"] * 10) + " \\boxed{1}"
    texts = ["\\boxed{1}", "\\boxed{2}", "no answer here", looping]
    groups = make_groups([[1, 0, 0, 1]], [[8, 10, 12, 14]], texts=texts, answers=["1", "2", None, "1"])
    paper, _ = lead().reward(groups)
    assert paper[0, 1:3].tolist() == [-1.0, -1.0] and paper[0, 0] > 1 > paper[0, 3]  # the shorter one earns more
    code, _ = lead(code_reward_rules=True).reward(groups)
    # No answer -> 0; repetition -> -2 even when right; the length term is off below the 4000-token gate.
    assert code[0].tolist() == [1.0, -1.0, 0.0, -2.0]
    gate_lowered, _ = lead(code_reward_rules=True, length_term_min_tokens=8).reward(groups)
    assert gate_lowered[0, 0] > 1


def test_code_rules_with_a_thinking_template_need_the_closing_think_tag(lead):
    texts = ["<think>so</think> \\boxed{1}", "<think>so \\boxed{1}", "<think>so</think> \\boxed{2}", "\\boxed{2}"]
    groups = make_groups([[1, 1, 0, 0]], [[9, 9, 9, 9]], texts=texts, answers=["1", "1", "2", "2"])
    thinking, _ = lead(code_reward_rules=True, template="r1_think").reward(groups)
    assert thinking[0].tolist() == [1.0, 0.0, -1.0, 0.0]
    plain, _ = lead(code_reward_rules=True).reward(groups)
    assert plain[0].tolist() == [1.0, 1.0, -1.0, -1.0]


def test_degenerate_repetition_detector():
    assert is_degenerate("a b c " * 10) and not is_degenerate("a b c " * 9)
    assert is_degenerate("x" * 120) and not is_degenerate("x" * 119)
    assert not is_degenerate("Add 12 and 5 to get 17, so the answer is \\boxed{17}.")


@pytest.mark.parametrize("field, value", [("length_alpha", -0.1), ("wrong_reward", 0.5),
                                          ("difficulty_weight_low", 2.0), ("difficulty_steepness", -1.0),
                                          ("format_reward", 0.5)])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GRPOLeadConfig(**{field: value})


def test_registered_with_documented_config_and_its_hooks():
    assert VARIANTS.get("grpo-lead") is GRPOLeadTrainer
    assert overridden_hooks(GRPOLeadTrainer) == ["reward", "group_filter", "advantage"]
    docs = field_docs(GRPOLeadConfig)
    assert all(docs[f.name] for f in dataclasses.fields(GRPOLeadConfig) if f.name not in
               {g.name for g in dataclasses.fields(VARIANTS.get("grpo").Config)})
    assert "unconfirmed" in docs["code_reward_rules"]


def test_trains_two_steps_inside_the_budget_and_leaves_a_checkpoint(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(GRPOLeadTrainer, untrained_model_dir, tmp_path, train_problems, Budget(steps=4))
    ledger, log = train_and_check(trainer, tmp_path)
    assert (ledger.steps, ledger.rollouts, ledger.prompts, trainer.stopped_by) == (4, 16, 4, "steps")
    assert [r["step"] for r in log] == [1, 2]
    # 3 of 8 samples right and every wrong one at -1: the mean reward is negative, as it never is under GRPO's 0/1.
    assert all(r["reward_mean"] < 0 for r in log)
