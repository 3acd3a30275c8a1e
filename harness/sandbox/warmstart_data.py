"""The warm start's supervised examples, and how they are batched.

What the tiny model sees before RL, and why each ingredient is there (the shares are `WarmStartConfig`'s):
- a careless teacher's worked solutions of `warm_start_train` problems: each column line off by one at
  `slip_rate`, so sampling slips too and only a reward can teach it not to (the gap RL closes);
- a self-check line before the answer on `self_check_rate` of them ('let me check: 37+48=85', the
  expression restated with the value the work arrived at), so the reflection detector has something to
  count before RL, and the reflection and R3 variants a behaviour to reward;
- prompt-aug's own templates (`harness.aug_templates.template_pool`, rendered by `AugTemplate.render` as that
  variant renders them) around `template_fraction` of the prompts, so accuracy under them is above zero and
  prompt-aug's groups carry signal;
- relation problems at `relation_fraction`, so the relation task starts above chance too.
Every choice is drawn from its own seeded stream, so changing one share leaves the others' draws alone.
"""

from __future__ import annotations

import random

import torch

from harness.aug_templates import template_pool
from tasks import synthetic

# Seed offsets of the per-ingredient streams (added to the config's seed).
_SLIP_STREAM, _SELF_CHECK_STREAM, _TEMPLATE_STREAM = 1, 2, 3


def under_template(template, problem: str, solution: str) -> tuple[str, str]:
    """(prompt, solution) of a problem under one of prompt-aug's templates. The prompt is exactly what that
    variant renders for the sandbox (no chat template); where it does not end in a newline, the solution
    starts with one, so the column work begins on a line of its own rather than glued to "...step by step"."""
    prompt = template.render(problem)
    return prompt, solution if prompt.endswith("\n") else "\n" + solution


def arithmetic_records(config) -> list[dict]:
    """{"prompt", "solution", "level", "template"} per selected `warm_start_train` problem, in the split's order."""
    records, kept = synthetic.warm_start_train(), dict.fromkeys(synthetic.LEVELS, 0)
    quota = {level: round(weight * sum(r["level"] == level for r in records))
             for level, weight in zip(synthetic.LEVELS, config.level_weights, strict=True)}
    slips = synthetic.Slips(config.slip_rate, random.Random(config.seed + _SLIP_STREAM)) if config.slip_rate else None
    self_checks = random.Random(config.seed + _SELF_CHECK_STREAM)
    template_draws = random.Random(config.seed + _TEMPLATE_STREAM)
    templates = template_pool(config.templates)
    selected = []
    for record in records:  # a prefix of each level, in the split's seeded order
        if kept[record["level"]] >= quota[record["level"]]:
            continue
        kept[record["level"]] += 1
        expression = record["problem"].removesuffix("=?")
        solution = synthetic.solve(expression, slips)[1] if slips else record["solution"]
        # Every record draws from each stream whatever the shares, so changing one share leaves the others alone.
        if self_checks.random() < config.self_check_rate:
            solution = synthetic.with_self_check(solution, expression)
        draw, index = template_draws.random(), template_draws.randrange(len(templates))
        template = templates[index] if draw < config.template_fraction else None
        prompt = record["problem"]
        if template:
            prompt, solution = under_template(template, prompt, solution)
        selected.append({"prompt": prompt, "solution": solution, "level": record["level"],
                         "template": template.name if template else None})
    return selected


def encode(tokenizer, records: list[dict]) -> list[tuple[list[int], int]]:
    """(token ids of prompt + solution + eos, prompt length) per record, exactly as generation will see it."""
    encoded = []
    for record in records:
        prompt = tokenizer(record["prompt"]).input_ids  # <s> + prompt, as tokenizer(prompt) gives at eval
        solution = tokenizer(record["solution"], add_special_tokens=False).input_ids
        encoded.append((prompt + solution + [tokenizer.eos_token_id], len(prompt)))
    return encoded


def training_examples(config, tokenizer, rng: random.Random):
    """(train examples, validation examples): a seeded mix of arithmetic and relation worked solutions.

    The validation examples come from the end of each TRAIN set: the `sandbox` test split is never trained
    or selected on.
    """
    arithmetic = encode(tokenizer, arithmetic_records(config))
    relation = encode(tokenizer, [{"prompt": r["problem"], "solution": r["solution"]}
                                  for r in synthetic.sandbox_relation_train()])
    n_relation_val = round(config.validation_size * config.relation_fraction)
    n_arithmetic_val = config.validation_size - n_relation_val
    validation = arithmetic[-n_arithmetic_val:] + relation[len(relation) - n_relation_val:]
    arithmetic, relation = arithmetic[:-n_arithmetic_val], relation[: len(relation) - n_relation_val]
    # Relation problems are drawn at `relation_fraction` by repeating or thinning that pool to its share.
    n_relation = round(len(arithmetic) * config.relation_fraction / (1 - config.relation_fraction))
    relation = [relation[i % len(relation)] for i in range(n_relation)] if config.relation_fraction else []
    train = arithmetic + relation
    rng.shuffle(train)
    return train, validation


def collate(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch whose labels cover only the solution (and eos): the prompt is given, not learnt."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def length_bucketed_batches(examples: list, batch_size: int, rng: random.Random) -> list[list]:
    """One epoch of batches of similar lengths, in a seeded order.

    Templated and relation prompts are several times as long as a bare arithmetic one; a random batch
    nearly always holds one and would pad every row to its length, wasting most of each step on a CPU.
    """
    order = examples[:]
    rng.shuffle(order)
    batches = []
    chunk = batch_size * 32
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda example: len(example[0]))
        batches += [block[i : i + batch_size] for i in range(0, len(block) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches
