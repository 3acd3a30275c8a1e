"""Prompt augmentation for GRPO (Lu, Huang, Balestriero; arXiv 2602.03190; variants.md §17).

Each time a question is drawn, one of 13 chat templates is picked uniformly at random and the prompt is
rendered with it; all G rollouts of the group share that template, and the next epoch's draw of the same
question picks afresh. The reward is accuracy (0/1, last \\boxed) plus a format reward in [0, 1] that is
specific to the group's template: tag templates score the share of their tags that occur exactly once,
"The final answer is:" templates require that phrase exactly once, the rest score 1. Otherwise the released
script is DAPO's clip-higher and token-mean loss with no KL, without dynamic sampling or overlong shaping.
Evaluation uses the task's fixed template, as the paper evaluates with one standard prompt.

The templates and their format rules are in harness/aug_templates.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

import torch

from harness.aug_templates import AugTemplate, template_pool
from harness.claim import Claim
from harness.task import Problem
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting
from trainers.protocol.seeds import derived_seed


@dataclass(frozen=True)
class PromptAugConfig(GRPOConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"format_reward": 0.0, "eps_high": 0.2, "loss_aggregation": "seq-mean-token-mean"}
    # The paper's schedule (`--protocol paper`): 128 prompts a step in minibatches of 32.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 1, "minibatches": 4}
    eps_high: float = setting(
        0.28, "Clip-higher, eps_low 0.2 / eps_high 0.28 (the released script; it enables neither dynamic "
        "sampling nor overlong shaping).")
    loss_aggregation: str = setting("token-mean", "Token-mean over the minibatch (the released script).")
    kl_beta: float = setting(0.0, "No KL term and no reference model (the released script).")
    format_reward: float = setting(
        1.0, "Weight of the group template's format reward in [0, 1], added to accuracy (paper: 1).")
    templates: str = setting(
        "paper", 'Templates drawn uniformly per question draw, comma-separated: "paper" is the paper\'s 13; '
        "harness templates ('plain', 'boxed_cot', 'r1_think') may be added (ours). Replaces `template` "
        "during training only. On the sandbox the warm start saw these templates around 15% of its problems "
        "(issue 9), so it answers under them, if worse than under its plain prompt: 4.6% sampled pass@1 (13%"
        " greedy) on the test split, and 9 of 32 groups on the train pool carry signal (the "
        "`templated_signal` probe). A sandbox run shows the mechanism (per-question draws, per-template "
        "format rewards, budget); it cannot show the paper's claim (stable long training of a model that "
        "follows instructions).")

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
