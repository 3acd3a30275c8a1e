"""Budgets are enforced, not advisory: a run stops at the first limit, and every unit of compute counts.

A `Budget` holds the limits; a `Ledger` what a run has consumed: optimizer updates, questions drawn, and the
compute on both sides of training, generation (sequences, generated tokens, prompt tokens the sampler read)
and updates (`update_tokens`: every token that passes through a training-side forward or backward, i.e. the
policy's forward and backward, old-policy and reference forwards, replayed rows and extra scoring forwards).

Compute in FLOPs is the one figure every variant spends alike, whatever its mix of generation and updates
(Kaplan et al. 2020's approximation, from the model's parameter count N, `parameter_count`): a token through a
forward pass costs 2N, through a backward pass 4N. Generation charges 2N per prompt token (prefill) and per
generated token (decode, with a KV cache, as an efficient engine spends it); a training forward under autograd
6N per token (its backward included), a no-grad forward (old policy, reference in the loss, replayed or scoring
rows) 2N. Attention's context-length term is left out: on short math answers it is a few percent, and it is
the same for every variant. `flops` is `generation_flops + update_flops`.

Diagnostics are not training: a forward made only to log (the KL curve to the reference where the KL is not in
the loss) is charged to `diagnostic_tokens` / `diagnostic_flops`, which are shown and which no limit reads.

A trainer asks `budget.allows(ledger, cost)` before it spends anything (a step, or one more generation round
inside a step), so steps, prompts, rollouts and generated tokens never go past their limits: a round's
generated tokens are asked for at their worst case (every sequence runs to max_new_tokens) and charged at
their true size. Prompt tokens, update tokens and wall-clock time are not known before a step is taken:
the trainer asks for what the previous step spent, so these limits may be overrun by at most about one step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

LIMITS = ("steps", "prompts", "rollouts", "tokens", "prompt_tokens", "update_tokens", "flops", "wall_s")
COUNTS = LIMITS[:-1]  # the limits a cost is asked for; wall-clock time is only checked


@dataclass(frozen=True)
class Budget:
    steps: int | None = None  # optimizer steps (a PPO epoch over minibatches counts each minibatch update)
    prompts: int | None = None  # questions drawn, including those whose groups were filtered out
    rollouts: int | None = None  # generated sequences, every one: discarded, extra and pivot ones too
    tokens: int | None = None  # generated tokens (responses only; prompts are not generated)
    prompt_tokens: int | None = None  # prompt tokens the sampler read, one prompt per generated sequence
    update_tokens: int | None = None  # token passes of training-side forwards and backwards (see the module doc)
    flops: int | None = None  # training compute, generation and updates (see the module doc)
    wall_s: float | None = None  # seconds of training, checked between steps

    def __post_init__(self):
        for name in LIMITS:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"budget {name} must be positive, got {value}")
        if all(getattr(self, name) is None for name in LIMITS):
            raise ValueError("a budget needs at least one limit, e.g. --budget steps=100 or rollouts=20000")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """'steps=100,tokens=2e6' -> Budget(steps=100, tokens=2000000)."""
        values: dict[str, float | int] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, raw = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in LIMITS:
                raise ValueError(f"bad budget item {part!r}: expected NAME=VALUE with NAME one of "
                                 f"{', '.join(LIMITS)} (e.g. steps=100,rollouts=20000)")
            try:
                number = float(raw)
            except ValueError:
                raise ValueError(f"bad budget value in {part!r}: {raw!r} is not a number") from None
            if not math.isfinite(number) or number > 1e25:
                raise ValueError(f"bad budget value in {part!r}: a limit must be a finite number (at most 1e25); "
                                 "leave a limit out to have none")
            values[name] = number if name == "wall_s" else int(number)
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def allows(self, ledger: Ledger, cost: Ledger) -> str | None:
        """None if `cost` on top of `ledger` stays within every count limit, else the name of the limit hit."""
        for name in COUNTS:
            limit = getattr(self, name)
            if limit is not None and getattr(ledger, name) + getattr(cost, name) > limit:
                return name
        if self.wall_s is not None and ledger.wall_s >= self.wall_s:
            return "wall_s"
        return None


@dataclass
class Ledger:
    steps: int = 0
    prompts: int = 0
    rollouts: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    update_tokens: int = 0
    generation_flops: int = 0  # 2N per prompt and generated token
    update_flops: int = 0  # 6N per token of a training forward with its backward, 2N of a no-grad one
    wall_s: float = 0.0
    # Not training, so no limit reads them: forwards made only to log.
    diagnostic_tokens: int = 0
    diagnostic_flops: int = 0

    @property
    def flops(self) -> int:
        """Training compute: generation and updates (the `flops` limit)."""
        return self.generation_flops + self.update_flops

    @classmethod
    def from_dict(cls, values: dict) -> Ledger:
        """A ledger from `to_dict`'s output (derived figures dropped; fields it lacks, from older runs, are 0)."""
        names = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in names})

    def add(self, other: Ledger) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def minus(self, earlier: Ledger) -> Ledger:
        """What was consumed since `earlier`, a copy of this ledger taken before."""
        return Ledger(**{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)})

    def to_dict(self) -> dict:
        return {**asdict(self), "flops": self.flops, "wall_s": round(self.wall_s, 2)}


def parameter_count(model) -> int:
    """N of the FLOPs model: the parameters a token's forward multiplies by. The input embedding is a table
    lookup, not a matrix product, so it is left out, unless the output layer shares its weights (then the
    product with it is counted once, as the output layer)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if embedding is None:
        return total
    tied = output is not None and output.weight is embedding.weight
    return total if tied else total - embedding.weight.numel()
