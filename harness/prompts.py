"""Prompt templates. The exact text and its hash go into the protocol card, so a template change is a new run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from harness.registry import Registry

TEMPLATES: Registry[PromptTemplate] = Registry("template")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str  # formatted with {problem}
    # Whether the answer is expected inside <think>...</think> followed by a final answer (R1 style).
    thinks: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def user_message(self, problem: str) -> str:
        return self.text.format(problem=problem)


for _template in (
    PromptTemplate(
        "boxed_cot",
        "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
    ),
    PromptTemplate(
        "r1_think",
        "{problem}\n\nThink through the problem inside <think> </think> tags, then give the final answer "
        "inside <answer> </answer> tags, with the answer itself in \\boxed{{}}.",
        thinks=True,
    ),
    PromptTemplate("plain", "{problem}"),
):
    TEMPLATES.register(_template.name, _template)


def render_prompt(template: PromptTemplate, problem: str, tokenizer=None) -> str:
    """The text the model sees: the template, wrapped in the tokenizer's chat template where it has one."""
    message = template.user_message(problem)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
        )
    return message
