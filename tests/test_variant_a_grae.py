"""A-GRAE (variants.md §9): the spec's numbers, the batch accuracy over every question, the suppression of
positive advantages only, the schedule and base-advantage flags, and a short training run. Small random-weight
model, so every test takes seconds."""

import dataclasses

import pytest
import torch
from trainer_helpers import ONE_STEP, make_trainer, train_and_check

from harness.budget import Budget
from trainers import algos
from trainers.algos.terms import difficulty_focus, suppress_correct
from trainers.builtin.a_grae import AGRAEConfig, AGRAETrainer
from trainers.builtin.base import VARIANTS, Groups
from trainers.builtin.catalog import overridden_hooks
from trainers.protocol.config import field_docs


def approx(values, abs=1e-4):
    """pytest.approx over a nested list or tensor, flattened (approx takes no nested structures)."""
    return pytest.approx(flat(values), abs=abs)


def flat(values) -> list[float]:
    return torch.as_tensor(values, dtype=torch.float64).flatten().tolist()


def graded(accuracy) -> Groups:
    """Graded groups without rollouts: the advantage hook reads only rewards and accuracy."""
    accuracy = torch.tensor(accuracy, dtype=torch.float32)
    return Groups([None] * accuracy.shape[0], None, [], [], accuracy, accuracy)


SPEC_BATCH = [[1, 1, 1, 0], [1, 0, 0, 0]]  # p = 0.75 and 0.25, so mu_B = 0.5
SPEC_RESULT = [[0.5387, 0.5387, 0.5387, -3.2320], [0.75, -0.5, -0.5, -0.5]]


@pytest.fixture
def a_grae(untrained_model_dir, tmp_path, train_problems):
    def build(**overrides):
        return make_trainer(AGRAETrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                            track_kl=False, **overrides)
    return build


# ------------------------------------------------------------------------------------------- spec numbers


def test_pure_functions_give_the_spec_numbers():
    rewards = torch.tensor(SPEC_BATCH, dtype=torch.float32)
    advantages = algos.grpo_advantages(rewards)
    assert flat(advantages) == approx([[0.5, 0.5, 0.5, -1.5], [1.5, -0.5, -0.5, -0.5]])
    accuracy = rewards.mean(dim=-1)
    focused = difficulty_focus(advantages, accuracy, accuracy.mean())
    assert flat(suppress_correct(focused, accuracy.mean())) == approx(SPEC_RESULT)


def test_advantage_hook_gives_the_spec_numbers(a_grae):
    assert flat(a_grae().advantage(graded(SPEC_BATCH))) == approx(SPEC_RESULT)


def test_suppression_scales_positive_advantages_only():
    advantages = torch.tensor([[2.0, -1.0, 0.0, -3.0]])
    assert suppress_correct(advantages, 0.25).tolist() == [[0.5, -1.0, 0.0, -3.0]]
    assert suppress_correct(advantages, 0.25, alpha=0.5).tolist() == [[1.0, -1.0, 0.0, -3.0]]
    assert torch.equal(suppress_correct(advantages, 0.7, alpha=0.5), advantages)  # min(1, mu_B / alpha) = 1


def test_batch_accuracy_counts_zero_variance_groups(a_grae):
    # An all-wrong question trains nothing itself, but lowers mu_B from 1/2 to 1/3 for the others.
    with_degenerate = a_grae().advantage(graded([*SPEC_BATCH, [0, 0, 0, 0]]))
    assert with_degenerate[2].tolist() == [0.0] * 4
    assert flat(with_degenerate[:2]) != approx(SPEC_RESULT)
    advantages = algos.grpo_advantages(torch.tensor(SPEC_BATCH, dtype=torch.float32))
    third = torch.tensor(1 / 3)
    expected = suppress_correct(difficulty_focus(advantages, torch.tensor([0.75, 0.25]), third), third)
    assert flat(with_degenerate[:2]) == approx(expected, abs=1e-6)


def test_linear_schedule_moves_the_focus_with_the_step_and_keeps_mu_b_for_suppression(a_grae):
    trainer = a_grae(curriculum="linear-schedule", curriculum_steps=100)
    trainer.step = 50  # progress 0.5 equals the spec batch's mu_B: the spec numbers again
    assert flat(trainer.advantage(graded(SPEC_BATCH))) == approx(SPEC_RESULT)
    trainer.step = 0  # only the easy-focused term, positives still scaled by mu_B = 0.5
    advantages = algos.grpo_advantages(torch.tensor(SPEC_BATCH, dtype=torch.float32))
    easy = difficulty_focus(advantages, torch.tensor([0.75, 0.25]), 0.0)
    assert flat(trainer.advantage(graded(SPEC_BATCH))) == approx(suppress_correct(easy, 0.5), abs=1e-6)
    trainer.step = 500  # the schedule saturates at the hard-focused term
    hard = difficulty_focus(advantages, torch.tensor([0.75, 0.25]), 1.0)
    assert flat(trainer.advantage(graded(SPEC_BATCH))) == approx(suppress_correct(hard, 0.5), abs=1e-6)


def test_mean_centred_base_advantage(a_grae):
    # Dr. GRPO's A for [1,0,0,0] is [0.75, -0.25 x 3]; at p = 0.25 both focus terms equal A (0.5 / (1 - 0.5) =
    # 0.5 / 0.5 = 1), and mu_B = 0.5 halves the positive one.
    result = a_grae(std_normalised=False).advantage(graded(SPEC_BATCH))
    assert flat(result[1]) == approx([0.375, -0.25, -0.25, -0.25])


@pytest.mark.parametrize("field, value", [("suppression_alpha", 0.0), ("focus_scale", -0.5),
                                          ("curriculum", "cosine"), ("curriculum_steps", 0),
                                          ("format_reward", 0.5)])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AGRAEConfig(**{field: value})


def test_registered_with_documented_config_and_its_hook():
    assert VARIANTS.get("a-grae") is AGRAETrainer
    assert overridden_hooks(AGRAETrainer) == ["advantage"]
    docs = field_docs(AGRAEConfig)
    shared = {f.name for f in dataclasses.fields(VARIANTS.get("grpo").Config)}
    assert all(docs[f.name] for f in dataclasses.fields(AGRAEConfig) if f.name not in shared)
    assert "ours" in docs["suppression_alpha"] and "ours" in docs["focus_scale"]


def test_trains_two_steps_inside_the_budget_and_leaves_a_checkpoint(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(AGRAETrainer, untrained_model_dir, tmp_path, train_problems, Budget(steps=4))
    ledger, log = train_and_check(trainer, tmp_path)
    assert (ledger.steps, ledger.rollouts, ledger.prompts, trainer.stopped_by) == (4, 16, 4, "steps")
    assert [r["step"] for r in log] == [1, 2]
