"""The generation backend contract: prompts in, completions (with token counts and finish reasons) out."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import groupby
from typing import Protocol

from harness.registry import Registry

BACKENDS: Registry[type] = Registry("backend", "harness.backends", builtins_module="harness.backends")

# Stop strings every chat model family uses; a completion is cut at the first one before grading.
DEFAULT_STOP = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>")


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: tuple[str, ...] = field(default=DEFAULT_STOP)

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and math.isfinite(self.top_p)):
            raise ValueError(f"temperature and top_p must be finite numbers, got {self.temperature} and {self.top_p}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def to_card(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Generation:
    text: str  # the completion, cut at the first stop string
    num_tokens: int  # generated tokens, up to and including the stop
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (hit max_new_tokens: truncated)


class Backend(Protocol):
    """Generates completions. `seed` fixes the randomness of one call, so a batch can be regenerated exactly."""

    def generate(self, prompts: list[str], params: SamplingParams, seed: int) -> list[Generation]: ...

    def describe(self) -> dict:
        """What about the backend changes numbers (name, device, dtype, batch size), for the protocol card."""
        ...


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """Cut at the earliest stop string; say whether one was found."""
    positions = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if not positions:
        return text, False
    return text[: min(positions)], True


def group_consecutive(prompts: list[str]) -> list[tuple[str, int]]:
    """[(prompt, how many times in a row)]: the eval loop repeats each problem's prompt n times in a row, which
    engines and servers take as one request for n samples."""
    return [(prompt, len(list(copies))) for prompt, copies in groupby(prompts)]
