"""Prompt augmentation (variants.md §17): the spec's reward examples, the per-question seeded template draw, the
rendering, and a short training run on a random-weight model that resumes to the same numbers."""

import json
from collections import Counter

import pytest
import torch
from trainer_helpers import ONE_STEP, blank_batch, make_trainer, read_log
from transformers import AutoTokenizer

from harness.aug_templates import PAPER_TEMPLATES, template_pool
from harness.budget import Budget
from harness.extraction import extract
from harness.grading import grade
from harness.overrides import apply_overrides
from harness.task import Problem
from trainers.builtin.base import Groups
from trainers.builtin.grpo import CHECKPOINT, GRPOTrainer
from trainers.builtin.prompt_aug import PromptAugConfig, PromptAugTrainer

OPEN_R1_COMPLETION = "<think>\nx\n</think>\n<answer>\n\\boxed{2}\n</answer>"


def graded_groups(problem, texts) -> Groups:
    """One group of `texts` for `problem`, extracted and graded as the trainer does."""
    answers = [extract(t, "boxed") for t in texts]
    accuracy = torch.tensor([[float(grade("math", problem.golds, a)) for a in answers]])
    rows = len(texts)
    batch = blank_batch(torch.ones(rows, 1, dtype=torch.long))
    return Groups([problem], batch, texts, answers, accuracy, accuracy)


def test_spec_open_r1_reward(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(PromptAugTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                           templates="open-r1")
    problem = Problem(id="one-plus-one", problem="1+1=?", golds=("2",))
    missing_close = OPEN_R1_COMPLETION.removesuffix("\n</answer>")
    total, components = trainer.reward(graded_groups(problem, [OPEN_R1_COMPLETION, missing_close]))
    assert components["accuracy"][0].tolist() == [1.0, 1.0]
    assert total[0].tolist() == pytest.approx([2.0, 1.75])


def test_spec_final_answer_phrase_exactly_once():
    rule = PAPER_TEMPLATES["lm_eval_prompt4"].format_score
    assert rule("The final answer is: \\boxed{2}") == 1.0
    assert rule("The final answer is: 3. The final answer is: \\boxed{2}") == 0.0
    assert rule("\\boxed{2}") == 0.0


def test_teacher_templates_score_the_tags_they_leave_to_the_model():
    open_r1 = PAPER_TEMPLATES["open-r1-teacher"].format_score
    completion = OPEN_R1_COMPLETION.removeprefix("<think>\n")
    assert open_r1(completion) == pytest.approx(1.0)
    assert open_r1(completion.removesuffix("\n</answer>")) == pytest.approx(2 / 3)
    deepseek = PAPER_TEMPLATES["deepseek-r1"].format_score
    assert deepseek("<think>a</think><answer>\\boxed{2}</answer>") == 1.0
    assert deepseek("<think>a</think><answer>b</answer><answer>\\boxed{2}</answer>") == 0.5  # twice is not once
    reflective = PAPER_TEMPLATES["reflective_prompt-teacher"].format_score
    assert reflective("2+2=4\n</solution>\n<check>\nLet's verify step by step: ok</check>") == pytest.approx(1.0)
    assert PAPER_TEMPLATES["abel"].format_score("anything") == 1.0


def test_one_template_per_question_draw(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(PromptAugTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP)
    drawn = [trainer.template_for(p).name for p in train_problems]
    counts = Counter(drawn)
    assert set(counts) == set(PAPER_TEMPLATES) and max(counts.values()) < 40  # uniform over 13: ~15 each
    # A fresh trainer with the same seed (a resumed run) at the same step draws the same templates.
    again = make_trainer(PromptAugTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP)
    assert [again.template_for(p).name for p in train_problems] == drawn
    # The next step (the question's next draw) is drawn afresh.
    again.step = 1
    assert sum(a != b for a, b in zip([again.template_for(p).name for p in train_problems], drawn, strict=True)) > 100
    # Every rollout of a group sees its question's template, whatever the rollout index.
    groups = trainer.generate_groups(train_problems[:3])
    prompts = groups.batch.prompt_ids.view(3, 4, -1)
    assert all(torch.equal(prompts[i, 0], prompts[i, j]) for i in range(3) for j in range(4))
    assert all(PAPER_TEMPLATES[drawn[i]].render(train_problems[i].problem) == trainer.prompt(train_problems[i])
               for i in range(3))


def test_plain_alone_renders_as_grpo(untrained_model_dir, tmp_path, train_problems):
    aug = make_trainer(PromptAugTrainer, untrained_model_dir, tmp_path / "a", train_problems, ONE_STEP,
                       templates="plain")
    grpo = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path / "g", train_problems, ONE_STEP)
    assert [aug.prompt(p) for p in train_problems[:5]] == [grpo.prompt(p) for p in train_problems[:5]]
    assert template_pool("r1_think")[0].format_score("<think>a</think><answer>b</answer>") == 1.0


def test_chat_rendering_has_the_system_turn_and_the_assistant_prefix(untrained_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(untrained_model_dir)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    rendered = PAPER_TEMPLATES["open-r1-teacher"].render("1+1=?", tokenizer)
    assert rendered.startswith("<|system|>Think about the reasoning process")
    assert rendered.endswith("<|user|>1+1=?\n<|assistant|><think>\n")
    assert "\\boxed{} inside the answer" in rendered  # literal braces survive the formatting


def test_unknown_or_empty_template_list_says_what_is_known():
    with pytest.raises(ValueError, match=r"templates: unknown template 'abel2'.*open-r1-teacher.*plain"):
        apply_overrides(PromptAugConfig(), {"templates": "paper,abel2"})
    with pytest.raises(ValueError, match="templates"):
        apply_overrides(PromptAugConfig(), {"templates": " , "})
    with pytest.raises(ValueError, match="format_reward"):
        apply_overrides(PromptAugConfig(), {"format_reward": "-1"})
    assert len(template_pool("paper,plain,abel")) == 14


class RecordingPrompts(PromptAugTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def prompt(self, problem):
        rendered = super().prompt(problem)
        self.seen.append((self.step, problem, rendered))
        return rendered


def test_two_steps_within_the_budget_and_a_resumed_run_draws_the_same(untrained_model_dir, tmp_path,
                                                                       train_problems):
    # 2 prompts x G=4 = 8 rollouts a step: the first run pays for one step, the resumed one for a second.
    first = make_trainer(PromptAugTrainer, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=8))
    assert first.train().steps == 2  # one step of 2 minibatch updates
    before = {k: v.clone() for k, v in first.model.state_dict().items()}
    resumed = make_trainer(RecordingPrompts, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=20))
    ledger = resumed.train()
    assert (ledger.steps, ledger.rollouts, resumed.stopped_by) == (4, 16, "rollouts")
    assert ledger.tokens <= 16 * 12
    assert (tmp_path / CHECKPOINT).is_file()
    assert json.loads((tmp_path / "ledger.json").read_text())["consumed"]["rollouts"] == 16
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] is not None for r in log)
    assert any(not torch.equal(before[k], v) for k, v in resumed.model.state_dict().items())
    # The resumed run rendered its step with the templates the uninterrupted run draws at that step (the first
    # trainer stands at step 1 too): the draw is a function of (seed, step, question), the step is checkpointed.
    assert len(resumed.seen) == 2 * 4 and {step for step, _, _ in resumed.seen} == {1}
    assert all(rendered == first.prompt(problem) for _, problem, rendered in resumed.seen)
