"""Prompt augmentation for GRPO (Lu, Huang, Balestriero; arXiv 2602.03190; variants.md §17).

Each time a question is drawn, one of 13 chat templates is picked uniformly at random and the prompt is
rendered with it; all G rollouts of the group share that template, and the next epoch's draw of the same
question picks afresh. The reward is accuracy (0/1, last \\boxed) plus a format reward in [0, 1] that is
specific to the group's template: tag templates score the share of their tags that occur exactly once,
"The final answer is:" templates require that phrase exactly once, the rest score 1. Otherwise the released
script is DAPO's clip-higher and token-mean loss with no KL, without dynamic sampling or overlong shaping.
Evaluation uses the task's fixed template, as the paper evaluates with one standard prompt.

The template texts reproduce the paper's semantically, shortened (ours) because the sandbox model reads one
token per character within 256 positions; the tag strings are exact. Templates are defined here, not in
harness.prompts, because they carry a system turn, an assistant prefix and a format rule.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from harness.claims import Claim
from harness.prompts import TEMPLATES
from harness.task import Problem
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig, derived_seed
from trainers.builtin.grpo import GRPOTrainer

FINAL_ANSWER_PHRASE = "The final answer is:"


def always_formatted(completion: str) -> float:
    """Templates that ask for nothing beyond the boxed answer, which accuracy already checks, score 1."""
    return 1.0


@dataclass(frozen=True)
class TagFormat:
    """1/len(tags) for each tag that occurs exactly once in the completion."""

    tags: tuple[str, ...]

    def __call__(self, completion: str) -> float:
        return sum(completion.count(tag) == 1 for tag in self.tags) / len(self.tags)


def final_answer_once(completion: str) -> float:
    return float(completion.count(FINAL_ANSWER_PHRASE) == 1)


@dataclass(frozen=True)
class AugTemplate:
    """A chat template: system turn, user turn around {problem}, the start of the assistant turn, format rule."""

    name: str
    user: str  # a format string with {problem}; literal braces doubled, as in the system text
    system: str | None = None
    # Written into the prompt as the start of the answer ("teacher" templates); the completion continues it.
    prefix: str = ""
    format_score: Callable[[str], float] = always_formatted

    def render(self, problem: str, tokenizer=None) -> str:
        """The prompt text; without a chat template, the turns are joined by blank lines (the sandbox)."""
        message = self.user.format(problem=problem)
        system = self.system.format(problem=problem) if self.system else None
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            turns = [{"role": "system", "content": system}] if system else []
            turns.append({"role": "user", "content": message})
            return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) + self.prefix
        text = f"{system}\n\n{message}" if system else message
        return f"{text}\n{self.prefix}" if self.prefix else text


_BOXED = "put your final answer within \\boxed{{}}"
_OPEN_R1 = ("Think about the reasoning process first, then give the answer, in the format "
            "<think>\n...\n</think>\n<answer>\n...\n</answer>, with the final answer in \\boxed{{}} inside the answer.")
_DEEPSEEK_R1 = ("The assistant first thinks about the reasoning process and then gives the answer, enclosed in "
                "<think> </think> and <answer> </answer> tags, with the final answer in \\boxed{{}} inside the answer.")
_REFLECTIVE = ("Solve the problem inside <solution> </solution>, then verify it inside <check>\nLet's verify step by "
               "step ... </check>, and put the final answer within \\boxed{{}}.")
_END_WITH = "End your response with 'The final answer is: \\boxed{{answer}}'."
OPEN_R1_TAGS = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")
DEEPSEEK_R1_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
# The tag elements of the reflective templates (ours: the spec names the tags, not whether newlines belong to them).
REFLECTIVE_TAGS = ("<solution>", "</solution>", "<check>", "</check>")

PAPER_TEMPLATES: dict[str, AugTemplate] = {t.name: t for t in (
    AugTemplate("abel", "{problem}", system=f"Reason step by step and {_BOXED}.",
                prefix="Let's think step by step."),
    AugTemplate("simplerl", f"{{problem}}\nPlease reason step by step, and {_BOXED}.",
                system="You are a helpful assistant."),
    AugTemplate("qwen-math", "{problem}", system=f"Please reason step by step, and {_BOXED}."),
    AugTemplate("open-r1", "{problem}", system=_OPEN_R1, format_score=TagFormat(OPEN_R1_TAGS)),
    # A teacher template writes the first tag itself, so the completion is scored on the remaining ones.
    AugTemplate("open-r1-teacher", "{problem}", system=_OPEN_R1, prefix="<think>\n",
                format_score=TagFormat(OPEN_R1_TAGS[1:])),
    AugTemplate("deepseek-r1", "{problem}", system=_DEEPSEEK_R1, format_score=TagFormat(DEEPSEEK_R1_TAGS)),
    AugTemplate("deepseek-r1-teacher", "{problem}", system=_DEEPSEEK_R1, prefix="<think>",
                format_score=TagFormat(DEEPSEEK_R1_TAGS[1:])),
    AugTemplate("formal", "{problem}", system=f"Give a rigorous step-by-step derivation, and {_BOXED}."),
    AugTemplate("lm_eval_prompt1", "{problem}", system=f"Solve the problem step by step. {_END_WITH}",
                prefix="Let's think step by step", format_score=final_answer_once),
    AugTemplate("lm_eval_prompt4", f"Analyze and solve the math task.\n{{problem}}\n{_END_WITH}",
                format_score=final_answer_once),
    AugTemplate("lm_eval_prompt8", f"Solve the following math problem. Show each step of your work, and {_BOXED}."
                "\n{problem}", prefix="Let's think step by step"),
    AugTemplate("reflective_prompt", "{problem}", system=_REFLECTIVE, format_score=TagFormat(REFLECTIVE_TAGS)),
    AugTemplate("reflective_prompt-teacher", "{problem}", system=_REFLECTIVE, prefix="<solution>\n",
                format_score=TagFormat(REFLECTIVE_TAGS[1:])),
)}


def template_pool(spec: str) -> tuple[AugTemplate, ...]:
    """The templates named in `spec` (comma-separated; "paper" = the paper's 13). A harness template (e.g.
    'plain') may join: it renders as `harness.prompts.render_prompt` does, and scores format 1, or the
    deepseek-r1 tag rule when it asks for <think> (ours)."""
    pool: dict[str, AugTemplate] = {}
    for name in (part.strip() for part in spec.split(",") if part.strip()):
        if name == "paper":
            pool.update(PAPER_TEMPLATES)
        elif name in PAPER_TEMPLATES:
            pool[name] = PAPER_TEMPLATES[name]
        elif name in TEMPLATES.names():
            harness_template = TEMPLATES.get(name)
            pool[name] = AugTemplate(name, harness_template.text, format_score=(
                TagFormat(DEEPSEEK_R1_TAGS) if harness_template.thinks else always_formatted))
        else:
            raise ValueError(f"prompt-aug templates: unknown template {name!r}; known: paper, "
                             f"{', '.join(PAPER_TEMPLATES)}, {', '.join(TEMPLATES.names())}")
    if not pool:
        raise ValueError("prompt-aug templates: name at least one template (e.g. 'paper')")
    return tuple(pool.values())


@dataclass(frozen=True)
class PromptAugConfig(GRPOConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"format_reward": 0.0, "eps_high": 0.2, "loss_aggregation": "seq-mean-token-mean"}
    # The paper's schedule (`--protocol paper`): 128 prompts a step in minibatches of 32.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 1, "minibatches": 4}
    # Clip-higher, eps_low 0.2 / eps_high 0.28 (the released script; it enables neither dynamic sampling nor
    # overlong shaping).
    eps_high: float = 0.28
    # Token-mean over the minibatch (the released script).
    loss_aggregation: str = "token-mean"
    # No KL term and no reference model (the released script).
    kl_beta: float = 0.0
    # Weight of the group template's format reward in [0, 1], added to accuracy (paper: 1).
    format_reward: float = 1.0
    # Templates drawn uniformly per question draw, comma-separated: "paper" is the paper's 13; harness templates
    # ('plain', 'boxed_cot', 'r1_think') may be added (ours). Replaces `template` during training only.
    # On the sandbox the warm start saw these templates around 15% of its problems (issue 9), so it answers
    # under them, if worse than under its plain prompt: 4.6% sampled pass@1 (13% greedy) on the test split,
    # and 9 of 32 groups on the train pool carry signal (the `templated_signal` probe). A sandbox run shows the
    # mechanism (per-question draws, per-template format rewards, budget); it cannot show the paper's claim
    # (stable long training of a model that follows instructions).
    templates: str = "paper"

    def __post_init__(self):
        super().__post_init__()
        template_pool(self.templates)
        if self.format_reward < 0:
            raise ValueError(f"prompt-aug's format_reward must be >= 0, got {self.format_reward}")


@VARIANTS.register("prompt-aug")
class PromptAugTrainer(GRPOTrainer):
    name = "prompt-aug"
    paper = "Prompt Augmentation for GRPO (arXiv 2602.03190)"
    status = "[code+paper(abstract)]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (Claim("higher accuracy than GRPO", "variants.md §17", "pass@1", "higher"),)
    Config = PromptAugConfig
    mechanism = {
        "templated_signal": "share of groups, each under its drawn template, whose rewards vary (zero: the "
                            "templates give the update nothing to learn from)",
        "templates_used": "distinct templates drawn in the step",
    }

    def __init__(self, config: PromptAugConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.template_choices = template_pool(config.templates)

    def template_for(self, problem: Problem) -> AugTemplate:
        """This step's template for `problem`, seeded by (run seed, step, question): every rollout of the group
        gets the same one, a resumed run draws the same, and a later epoch's draw of the question is new (a
        question drawn twice within one step, which needs a step larger than the data, gets one template)."""
        rng = random.Random(derived_seed(self.seed, "template", self.step, problem.id))
        return self.template_choices[rng.randrange(len(self.template_choices))]

    def prompt(self, problem: Problem) -> str:
        return self.template_for(problem).render(problem.problem, self.tokenizer if self.chat else None)

    def reward(self, groups: Groups):
        g = groups.group_size
        templates = [self.template_for(p) for p in groups.problems for _ in range(g)]
        answer_format = torch.tensor([t.format_score(text) for t, text in zip(templates, groups.texts, strict=True)],
                                     dtype=torch.float32).view_as(groups.accuracy)
        total = groups.accuracy + self.config.format_reward * answer_format
        self.note("templated_signal", float((total != total[:, :1]).any(dim=-1).float().mean()))
        self.note("templates_used", len({t.name for t in templates}))
        return total, {"accuracy": groups.accuracy, "format": answer_format}
