"""The chat templates prompt augmentation draws from (variants.md §17), each with a system turn, the start of the
assistant turn and a format rule, and the pool a spec names.

The template texts reproduce the paper's semantically, shortened (ours) because the sandbox model reads one
token per character within 256 positions; the tag strings are exact. They live in harness, not with the
variant, because the sandbox's warm-start data renders them too (so the warm start has seen every template the
variant draws), and harness reaches trainers only through registries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.prompts import TEMPLATES

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
