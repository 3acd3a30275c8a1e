"""The update schedule and the budget rules every engine applies alike: how many optimizer updates a step makes,
what a generation round may cost at worst, how many steps a budget's count limits pay for, the question order
for that many steps, and the refusal of a budget that cannot pay for one step.

A variant's schedule facts enter as arguments: the sequences it generates per question (MC-GRPO one more than
it trains) and the questions of a step's first generation round (DAPO's dynamic sampling draws more)."""

from __future__ import annotations

import dataclasses
import math

from harness.budget import Budget, Ledger
from trainers.protocol.runlog import TrainingError
from trainers.protocol.seeds import pass_order


def updates_per_step(config, num_groups: int) -> int:
    """Optimizer updates a step over `num_groups` groups makes: mu epochs of minibatches, one minibatch per group
    when groups are fewer."""
    return config.ppo_epochs * max(1, min(config.minibatches, num_groups))


def round_cost(config, max_new_tokens: int, num_prompts: int, rollouts_per_prompt: int, first: bool = True) -> Ledger:
    """Worst-case cost of one generation round (every sequence runs to max_new_tokens), plus the step's optimizer
    updates when it is the step's first round."""
    rollouts = num_prompts * rollouts_per_prompt
    return Ledger(steps=updates_per_step(config, config.prompts_per_step) if first else 0,
                  prompts=num_prompts, rollouts=rollouts, tokens=rollouts * (config.max_new_tokens or max_new_tokens))


def first_round_cost(config, max_new_tokens: int) -> Ledger:
    """A step's first round for a variant that generates group_size sequences for prompts_per_step questions (all
    but DAPO and MC-GRPO, whose trainers say otherwise)."""
    return round_cost(config, max_new_tokens, config.prompts_per_step, config.group_size)


def worst_step_cost(round_cost: Ledger, previous_step: Ledger | None, flops_per_token: int) -> Ledger:
    """What the next generation round may cost, checked against the budget before it runs: `round_cost` (every
    sequence at the generation limit), and when it is a step's first round the step's prompt and update compute,
    known only once spent, for which the previous step's (`previous_step`) stand in; generation FLOPs over those
    tokens and prompts."""
    if previous_step is not None:
        round_cost.prompt_tokens, round_cost.update_tokens = previous_step.prompt_tokens, previous_step.update_tokens
        round_cost.update_flops = previous_step.update_flops
    round_cost.generation_flops = flops_per_token * (round_cost.tokens + round_cost.prompt_tokens)
    return round_cost


def most_steps_paid(first_round: Ledger, budget: Budget) -> int | None:
    """The most rollout steps `budget` pays for when each costs `first_round`, from its count limits (steps,
    prompts, rollouts, tokens); None when none of them bounds it. An engine that fixes its number of steps before
    starting (verl) or shows it (TRL's progress) reads it."""
    bounds = [getattr(budget, name) // getattr(first_round, name)
              for name in ("steps", "prompts", "rollouts", "tokens")
              if getattr(budget, name) and getattr(first_round, name)]
    return min(bounds) if bounds else None


def prompt_order(config, steps: int | None, num_problems: int, seed: int) -> list[int]:
    """The question indices a run draws, in order, for as many passes over the data as `steps` steps need (an
    engine that reads a prepared dataset gets the built-in trainer's order)."""
    prompts = (steps + 1) * config.prompts_per_step if steps else 100 * num_problems
    passes = max(1, math.ceil(prompts / num_problems))
    return [index for epoch in range(passes) for index in pass_order(num_problems, seed, epoch)]


def check_budget(variant: str, config, first_round: Ledger, rollouts_per_prompt: int, max_new_tokens: int,
                 budget: Budget, flops_per_token: int = 0) -> None:
    """Refuse, before any work, a budget that cannot pay for one step (its generation FLOPs too, given the model's
    `flops_per_token`)."""
    cost = dataclasses.replace(first_round, generation_flops=flops_per_token * first_round.tokens)
    if budget.allows(Ledger(), cost):
        limits = ", ".join(f"{k}={v}" for k, v in budget.to_dict().items() if v is not None)
        raise TrainingError(
            f"the budget {limits} cannot pay for one step of {variant}: a step costs {cost.steps} optimizer "
            f"update(s), {cost.prompts} prompts, {cost.rollouts} rollouts and up to {cost.tokens} tokens "
            f"({cost.prompts} prompts x {rollouts_per_prompt} rollouts x "
            f"{config.max_new_tokens or max_new_tokens} "
            f"max new tokens{f', {cost.flops:.3g} FLOPs' if cost.flops else ''}); raise the budget or lower "
            "prompts_per_step")
