"""Reflection reward (variants.md §15, our implementation of an unconfirmed mechanism): the spec's example, what
counts as a marker, the correctness gate, the stage switch, and a short training run on a random-weight model."""


import pytest
import torch
from trainer_helpers import blank_batch, make_trainer, train_and_check

from harness.budget import Budget
from harness.overrides import apply_overrides
from trainers.algos.terms import distinct_markers, reflection_reward
from trainers.builtin.base import Groups
from trainers.builtin.reflection import ReflectionConfig, ReflectionTrainer

SPEC_TEXT = "…so x=3. Wait, let me check: … x=3."


def crafted_groups(problems, accuracy, texts, answers) -> Groups:
    """One group per row of `accuracy`, with the given response texts and extracted answers."""
    accuracy = torch.tensor(accuracy)
    rows = accuracy.numel()
    batch = blank_batch(torch.ones(rows, 1, dtype=torch.long))
    return Groups(problems[: len(accuracy)], batch, texts, answers, accuracy, accuracy)


@pytest.mark.parametrize("answer_format", [0.0, 1.0])
def test_spec_example(answer_format):
    markers = distinct_markers([SPEC_TEXT])
    assert markers.tolist() == [2]  # "Wait" and "let me check"
    fmt = torch.tensor([answer_format])
    assert reflection_reward(torch.tensor([1.0]), fmt, markers).item() == pytest.approx(1 + 0.5 * answer_format + 0.2)
    assert reflection_reward(torch.tensor([0.0]), fmt, markers).item() == pytest.approx(0.5 * answer_format)


def test_what_counts_as_reflection():
    texts = [
        "Wait. wait! WAIT, 2+2=4",  # one marker, however often
        "I await the waiting list",  # not the word "wait"
        "Hold on, let me recheck. Let me verify. Double-check. Re-examine. Actually, that's wrong. Wait",  # all 8
        "<think>2+2=4</think> wait, let me check",  # after the reasoning: the answer, not reflection
        "<think>2+2=5, that's incorrect</think> \\boxed{4}",
    ]
    assert distinct_markers(texts).tolist() == [1, 0, 8, 0, 1]


def test_cap_and_gate():
    markers = torch.tensor([8.0, 8.0])
    accuracy = torch.tensor([1.0, 0.0])
    fmt = torch.ones(2)
    assert reflection_reward(accuracy, fmt, markers).tolist() == pytest.approx([1.8, 0.5])  # 3 markers at most
    ungated = reflection_reward(accuracy, fmt, markers, only_if_correct=False)
    assert ungated.tolist() == pytest.approx([1.8, 0.8])


def test_trainer_reward_and_the_stage_switch(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(ReflectionTrainer, untrained_model_dir, tmp_path, train_problems, Budget(steps=1),
                           reflection_start_step=2)
    texts = [SPEC_TEXT + " \\boxed{3}", SPEC_TEXT + " \\boxed{4}", "x=3 \\boxed{3}", "Wait, no answer"]
    groups = crafted_groups(train_problems, [[1.0, 0, 1, 0]], texts, ["3", "4", "3", None])
    stage_two, _ = trainer.reward(groups)
    assert stage_two[0].tolist() == pytest.approx([1.5, 0.5, 1.5, 0.0])  # accuracy + 0.5 format only
    trainer.step = 2
    stage_three, components = trainer.reward(groups)
    assert stage_three[0].tolist() == pytest.approx([1.7, 0.5, 1.5, 0.0])
    assert components["reflection"][0].tolist() == [2, 0, 0, 0]  # the wrong answer's markers earn nothing
    assert components["format"][0].tolist() == [1, 1, 1, 0]
    assert trainer.step_stats(groups)["reflection_rate"] == pytest.approx(0.75)


@pytest.mark.parametrize("field, value", [("format_reward", "-1"), ("reflection_reward", "-0.1"),
                                          ("reflection_cap", "0"), ("reflection_start_step", "-1")])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        apply_overrides(ReflectionConfig(), {field: value})


def test_two_steps_train_within_the_budget_and_leave_a_checkpoint(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(ReflectionTrainer, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=20))
    ledger, log = train_and_check(trainer, tmp_path)
    assert (ledger.steps, ledger.rollouts, trainer.stopped_by) == (4, 16, "rollouts")
    assert ledger.tokens <= 16 * 12
    assert [r["step"] for r in log] == [1, 2]
    assert all(r["reflection_rate"] is not None for r in log)
