"""The GRPO skeleton: one training step = sample prompts, roll out groups, reward, filter, advantage, update.

Each stage is a hook named as in variants.md (sampler, prompt, rollout, reward, group_filter, advantage,
loss, forward, state). A variant is a subclass that overrides only the hooks its paper changes, plus a
config dataclass derived from `GRPOConfig`; `VARIANTS` holds the built-ins (registered with a decorator)
and third-party ones (entry-point group `harness.trainers`) alike. The math lives in `trainers.algos`.

Every random draw is seeded by (run seed, step, purpose), not by a running generator, so a killed run
resumed from its last checkpoint draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import types
import typing
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from harness.registry import Registry
from harness.task import Problem
from trainers import algos
from trainers.builtin.rollout import RolloutBatch

VARIANTS: Registry[type] = Registry("variant", "harness.trainers", builtins_module="trainers.builtin")
HOOKS = ("sampler", "prompt", "rollout", "reward", "group_filter", "advantage", "loss", "forward", "state")


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss or reward, a budget too small for one step); says why and what is kept."""


@dataclass(frozen=True)
class GRPOConfig:
    """Plain GRPO (variants.md §2). Fields above the line are the shared protocol every variant inherits, so a
    comparison changes mechanisms, not optimisation; they are ours, tuned on the sandbox. Fields below are
    the paper's (verl's where the paper is silent)."""

    # --- shared protocol (ours) ---
    # AdamW peak learning rate, chosen with the update schedule below (see there). Under 1 epoch x 4 minibatches,
    # 5e-5 gained +3.4 points of held-out pass@1 and 1e-4 +4.0 (one seed each); on an earlier sandbox without
    # teacher slips 1e-4-2e-4 degraded it and 4e-4 collapsed it.
    lr: float = 3e-5
    # Linear warm-up over this many rollout steps (not optimizer updates, so the schedule does not change
    # it), then constant (verl's and MathForge's schedule).
    warmup_steps: int = 10
    # AdamW betas; beta2 0.999 as in the planning run that gained on the sandbox.
    adam_betas: tuple[float, float] = (0.9, 0.999)
    # AdamW epsilon (PyTorch's default). On the earlier sandbox without teacher slips, eps 1e-4 with lr 1e-4
    # lost 4.2 points in 40 steps, so the default is kept.
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    # Gradient-norm clip (verl default 1.0).
    grad_clip: float = 1.0
    # Questions per training step, and samples per question (G). Project baseline G = 8 (variants.md §2).
    prompts_per_step: int = 16
    group_size: int = 8
    # Rollout temperature (1.0: the policy itself; the log-probs are of this distribution).
    temperature: float = 1.0
    # Generation limit; None takes the train task's own. Also L_max for Dr. GRPO's normaliser.
    max_new_tokens: int | None = None
    # Prompt template; None takes the train task's own.
    template: str | None = None
    # Weight of a format reward (1 when an answer can be extracted); 0 = accuracy only (Dr. GRPO's advice).
    format_reward: float = 0.0
    # The update schedule: PPO epochs (mu) over each rollout batch, each split into this many minibatch
    # updates of whole groups. Shared by every variant (ours): with several updates per rollout batch the
    # policy moves between them, so later ones see ratios off 1 and the clips (asymmetric, higher, dual) can
    # bind; with one update per batch the ratio is exactly 1 and every clip is inert. A variant's paper
    # schedule (its `PAPER_SCHEDULE`) applies only under `harness compare --protocol paper`.
    # Chosen on the sandbox (GRPO, default compute budget, 5 seeds each, warm start 43.8): 1 x 4 at lr 5e-5 cut
    # only 1.5e-4 of tokens with the clip (pass@1 46.8, SD 1.3), too few for clip-based mechanisms to act on;
    # 2 x 4 at lr 3e-5 cuts 1.4e-3 and keeps GRPO's gain significant over training seeds (46.0, SD 0.6; p =
    # 0.013). Moving the policy further cost the gain: 1 x 8, 1 x 16 and 2 x 4 at lr 5e-5 (clip 0.8-2.5e-3)
    # scored 43-45 at seeds 0 and 1.
    ppo_epochs: int = 2
    minibatches: int = 4
    # Log the k3 KL to the starting policy even when kl_beta is 0 (a training curve; costs one no-grad forward).
    track_kl: bool = True
    # Save the whole trainer state every this many steps (and at the end).
    checkpoint_every: int = 20
    # Prefix Grouper (variants.md §18): the training forwards encode each group's prompt once and score its G
    # responses against the cached keys/values. Same log-probs and gradients up to float rounding
    # (tests/test_prefix_grouper.py); faster when prompts are long against responses (perf/prefix_grouper.py).
    prefix_grouper: bool = False
    # Who generates the rollouts: "builtin" (the reference sampler: the trainer's own model, exact log-probs,
    # bit-exact resume) or "vllm" (a vLLM engine given the policy's weights before each rollout after an
    # update; needs the vLLM environment, see the README). Variants whose rollout the engine cannot do (N-GRPO's
    # embedding mixing) keep the built-in sampler and say so. Generation is charged the same either way.
    rollout_engine: str = "builtin"
    # The vLLM engine's precision: float32 like the trainer on CPU (sampler gap ~5e-6 nats a token on SmolLM2);
    # bfloat16 is twice as fast there and what GPU engines run, at a gap of ~3e-2 that tis_cap corrects.
    rollout_dtype: str = "float32"
    # Truncated importance sampling for vLLM rollouts (ours: cap 2.0): each
    # response token's gradient is weighted by min(pi_trainer / pi_sampler, tis_cap), the sampler's log-probs
    # being the engine's. None: no correction. Inert with the built-in sampler, whose log-probs are the trainer's.
    tis_cap: float | None = 2.0
    # --- GRPO mechanism (paper / verl) ---
    eps_low: float = 0.2
    eps_high: float = 0.2
    # verl's dual clip c for negative advantages; None = off.
    dual_clip: float | None = None
    # k3 KL-to-reference coefficient in the loss (project baseline beta in {0, 0.001}; 0 here).
    kl_beta: float = 0.0
    loss_aggregation: str = "seq-mean-token-mean"
    # Group std convention: unbiased (verl, TRL) and eps 1e-6 (verl).
    unbiased_std: bool = True
    advantage_eps: float = 1e-6

    # The paper's own update schedule where it differs from the shared one, scaled to prompts_per_step
    # (e.g. 512 prompts a step in minibatches of 128 -> minibatches 4); applied by `--protocol paper`.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 1, "minibatches": 1}
    # The settings that switch the variant's mechanism off, leaving GRPO's update (its primary probe then reads
    # 0: tests/test_mechanisms.py); None where no setting does (an objective or sampler that replaces GRPO's).
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {}

    def __post_init__(self):
        if self.group_size < 1 or self.prompts_per_step < 1:
            raise ValueError("group_size and prompts_per_step must be >= 1")
        if self.minibatches < 1 or self.ppo_epochs < 1:
            raise ValueError("ppo_epochs and minibatches must be >= 1")
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be a finite number > 0 for training rollouts, got {self.temperature}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        algos.AGGREGATIONS.get(self.loss_aggregation)


# GRPO's own mechanism fields (below the line of GRPOConfig); every other field is the shared protocol.
GRPO_MECHANISM = ("eps_low", "eps_high", "dual_clip", "kl_beta", "loss_aggregation", "unbiased_std", "advantage_eps")


def grpo_reference(config: GRPOConfig) -> GRPOConfig:
    """Plain GRPO under `config`'s shared protocol: what a variant's update is measured against (the
    `update_change` probe)."""
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(GRPOConfig)
              if f.name not in GRPO_MECHANISM and hasattr(config, f.name)}
    return GRPOConfig(**shared)


def field_docs(config_cls) -> dict[str, str]:
    """Each config field's comment block, read from the source: the documentation lives where it is declared."""
    import inspect

    docs: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("# ---"):
                pending = []
            elif stripped.startswith("#"):
                pending.append(stripped.lstrip("# "))
            elif ":" in stripped and not stripped.startswith(("def ", "class ", "@", '"""', "return", "if ")):
                name = stripped.split(":")[0].strip()
                if name.isidentifier():
                    docs[name] = " ".join(pending) or docs.get(name, "")
                pending = []
            else:
                pending = []
    return docs


def apply_overrides(config, overrides: dict[str, str]):
    """`{"lr": "1e-5"}` -> a new config; an unknown field lists the known ones. Values are read by the
    field's declared type (`int | None` takes 'none' or an integer, a tuple takes '0.9,0.99'), resolved with
    `typing.get_type_hints`, so a plugin's config reads alike with or without postponed annotations."""
    known = {f.name: f for f in dataclasses.fields(config)}
    types_of = typing.get_type_hints(type(config))
    values = {}
    for name, raw in overrides.items():
        if name not in known:
            raise ValueError(f"{type(config).__name__} has no field {name!r}; its fields: {', '.join(known)}")
        values[name] = _coerce(raw, types_of[name], name)
    return dataclasses.replace(config, **values)


def paper_schedule(config):
    """`config` with its variant's paper update schedule (`PAPER_SCHEDULE`) in place of the shared one."""
    return dataclasses.replace(config, **type(config).PAPER_SCHEDULE)


def _coerce(raw, declared, name: str):
    """`raw` (a command-line string) as a value of type `declared`; anything not a string passes through."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    options = typing.get_args(declared) if typing.get_origin(declared) in (typing.Union, types.UnionType) else ()
    if options:
        if text.lower() in ("none", "null") and type(None) in options:
            return None
        declared = next(option for option in options if option is not type(None))
    shown = getattr(declared, "__name__", str(declared))
    try:
        if declared is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if declared is int:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if declared is float:
            return float(text)
        if declared is tuple or typing.get_origin(declared) is tuple:
            return tuple(float(part) for part in text.strip("()").split(","))
    except ValueError:
        raise ValueError(f"cannot read {raw!r} as {shown} for {name}") from None
    return text


def group_rows(groups: torch.Tensor, group_size: int) -> torch.Tensor:
    """Row indices [len(groups) * G] of the given group indices, in a batch laid out group after group."""
    return (groups[:, None] * group_size + torch.arange(group_size)).reshape(-1)


def derived_seed(*parts) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def minibatch_groups(num_groups: int, minibatches: int, seed: int) -> list[torch.Tensor]:
    """The group indices of each minibatch of one PPO epoch: the groups permuted by `seed` (in order when there
    is one minibatch) and split into `minibatches` near-equal parts."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_groups, generator=generator) if minibatches > 1 else torch.arange(num_groups)
    return list(torch.tensor_split(order, minibatches))


def pass_order(size: int, seed: int, epoch: int) -> list[int]:
    """The order questions are drawn in during pass `epoch` over `size` of them: a permutation derived from the run
    seed alone, so every variant and every engine sees the same questions in the same order."""
    import random

    order = list(range(size))
    random.Random(derived_seed(seed, "order", epoch)).shuffle(order)
    return order


@dataclass
class Groups:
    """One step's rollouts: N questions x G samples, rows of `batch` in group order."""

    problems: list[Problem]
    batch: RolloutBatch
    texts: list[str]
    answers: list[str | None]
    accuracy: torch.Tensor  # [N, G] 0/1 correctness: the signal filters and difficulty estimates read
    rewards: torch.Tensor  # [N, G] the scalar reward advantages are computed from
    components: dict[str, torch.Tensor] = field(default_factory=dict)  # named [N, G] parts of the reward

    @property
    def group_size(self) -> int:
        return self.accuracy.shape[1]

    def rows(self, groups: torch.Tensor) -> torch.Tensor:
        """Row indices in `batch` of the given group indices."""
        return group_rows(groups, self.group_size)

    def select(self, keep: torch.Tensor) -> Groups:
        """The groups where `keep` [N] is True (the same object when every group is kept)."""
        if keep.all():
            return self
        index = torch.nonzero(keep).flatten()
        rows = group_rows(index, self.group_size)
        pick = rows.tolist()
        return Groups([self.problems[i] for i in index.tolist()], self.batch.select(rows),
                      [self.texts[i] for i in pick], [self.answers[i] for i in pick], self.accuracy[index],
                      self.rewards[index], {k: v[index] for k, v in self.components.items()})

    @staticmethod
    def concat(parts: list[Groups]) -> Groups:
        """Groups collected over several generation rounds (DAPO), as one batch."""
        if len(parts) == 1:
            return parts[0]
        return Groups(
            [p for g in parts for p in g.problems], _concat_batches([g.batch for g in parts]),
            [t for g in parts for t in g.texts], [a for g in parts for a in g.answers],
            torch.cat([g.accuracy for g in parts]), torch.cat([g.rewards for g in parts]),
            {k: torch.cat([g.components[k] for g in parts]) for k in parts[0].components})


def _concat_batches(batches: list[RolloutBatch]) -> RolloutBatch:
    def pad_cat(tensors, value, left=False):
        width = max(t.shape[1] for t in tensors)
        padded = []
        for t in tensors:
            extra = width - t.shape[1]
            # F.pad lists the last dimension first: (0, 0) for each trailing dim, then dim 1's (before, after).
            pad = (0, 0) * (t.dim() - 2) + ((extra, 0) if left else (0, extra))
            padded.append(torch.nn.functional.pad(t, pad, value=value))
        return torch.cat(padded)

    first = batches[0]
    mixed = first.candidates is not None
    return RolloutBatch(
        pad_cat([b.prompt_ids for b in batches], 0, left=True), pad_cat([b.prompt_mask for b in batches], 0, left=True),
        pad_cat([b.response_ids for b in batches], 0), pad_cat([b.response_mask for b in batches], 0),
        pad_cat([b.old_logp for b in batches], 0.0), torch.cat([b.truncated for b in batches]),
        pad_cat([b.candidates for b in batches], 0) if mixed else None,
        pad_cat([b.weights for b in batches], 0.0) if mixed else None,
        pad_cat([b.mixed for b in batches], False) if mixed else None,
        pad_cat([b.redirected for b in batches], False) if mixed else None)
