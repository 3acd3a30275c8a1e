"""What `harness list variants` shows: each variant's paper, status, the hooks it overrides, the probes that show
its mechanism acted, its paper's update schedule and its defaults."""

from __future__ import annotations

import dataclasses

from trainers.algos.variants import MATH
from trainers.builtin.base import HOOKS, GRPOConfig
from trainers.protocol.config import field_docs

# Hook name -> the methods that implement it on the skeleton.
HOOK_METHODS = {"sampler": ("sampler", "collect"), "prompt": ("prompt",), "rollout": ("rollout", "mixing"),
                "reward": ("reward",), "group_filter": ("group_filter",), "advantage": ("advantage",),
                "loss": ("loss",), "forward": ("forward",), "state": ("state_dict", "load_state_dict")}


def overridden_hooks(trainer_cls) -> list[str]:
    """The hooks a variant changes: in its registered math (trainers.algos.variants) or in its module's methods."""
    from trainers.builtin.grpo import GRPOTrainer

    if trainer_cls is GRPOTrainer:
        return ["advantage", "loss"]  # the skeleton's own: GRPO defines them
    grpo_math, own_math = MATH.get("grpo"), MATH.get(trainer_cls.name)
    return [hook for hook in HOOKS
            if any(getattr(trainer_cls, m) is not getattr(GRPOTrainer, m) for m in HOOK_METHODS[hook])
            or getattr(own_math, hook, None) is not getattr(grpo_math, hook, None)]


def engines(name: str, config) -> str:
    """Which training engines run the variant with its defaults, and each other engine's reason for refusing it."""
    from harness.engines import ENGINES

    runs, refused = [], []
    for engine in ENGINES.names():
        try:
            ENGINES.get(engine).check(name, config)
            runs.append(engine)
        except ValueError as why:
            refused.append(f"\n    not on {engine}: {why}")
    return ", ".join(runs) + "".join(refused)


def config_changes(trainer_cls) -> dict[str, object]:
    """Fields a variant adds or whose default differs from plain GRPO's."""
    base = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    own = trainer_cls.Config()
    return {f.name: getattr(own, f.name) for f in dataclasses.fields(own)
            if f.name not in base or base[f.name] != getattr(own, f.name)}


def probe_lines(trainer_cls) -> list[str]:
    """The primary probe with its materiality threshold, then the variant's other probes, each in words."""
    from trainers.builtin.grpo import UPDATE_CHANGE, GRPOTrainer

    meanings = {"update_change": UPDATE_CHANGE, **GRPOTrainer.mechanism, **trainer_cls.mechanism}
    primary, materiality = trainer_cls.primary()
    return [f"  primary probe: {primary} (weak below {materiality:g} a step, inert at 0): {meanings[primary]}",
            "  other probes:", *(f"    {probe}: {what}" for probe, what in trainer_cls.mechanism.items()
                                 if probe != primary)]


def claim_lines(trainer_cls) -> list[str]:
    """The paper's headline claims as the leaderboard tests them (harness.claims)."""
    from harness.claims import MEASURES

    return ["  paper claims (tested on the leaderboard):",
            *(f"    {c.statement} [{c.section}]: {MEASURES[c.measure].description} {c.direction} than "
              f"{c.baseline}'s" + (f" (margin {c.margin:g} {MEASURES[c.measure].unit})" if c.margin else "")
              for c in trainer_cls.claims)]


def describe_variant(name: str, trainer_cls) -> str:
    """One variant's block of `harness list variants`."""
    docs = field_docs(trainer_cls.Config)
    schedule = trainer_cls.Config.PAPER_SCHEDULE
    lines = [f"{name}  {trainer_cls.status}  {trainer_cls.paper}",
             f"  hooks: {', '.join(overridden_hooks(trainer_cls))}",
             f"  engines: {engines(name, trainer_cls.Config())}",
             f"  paper schedule (--protocol paper): {schedule['ppo_epochs']} PPO epoch(s) x "
             f"{schedule['minibatches']} minibatches",
             *probe_lines(trainer_cls), *claim_lines(trainer_cls)]
    changes = config_changes(trainer_cls) if name != "grpo" else {
        f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    for field_name, value in changes.items():
        doc = docs.get(field_name, "")
        lines.append(f"  {field_name} = {value!r}" + (f"  # {doc}" if doc else ""))
    return "\n".join(lines)
