"""The GRPO skeleton: one training step = sample prompts, roll out groups, reward, filter, advantage, update.

Each stage is a hook named as in variants.md (sampler, prompt, rollout, reward, group_filter, advantage,
loss, forward, state). A variant is a subclass that overrides only the hooks its paper changes, plus a
config dataclass derived from `GRPOConfig`; `VARIANTS` holds the built-ins (registered with a decorator)
and third-party ones (entry-point group `harness.trainers`) alike. The math lives in `trainers.algos`.

Every random draw is seeded by (run seed, step, purpose), not by a running generator, so a killed run
resumed from its last checkpoint draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from harness.task import Problem
from harness.variants import VARIANTS
from trainers.algos.configs import GRPOConfig  # noqa: F401  (re-exported: the variant modules derive it)
from trainers.builtin.rollout import RolloutBatch
from trainers.protocol.config import SharedConfig, field_docs
from trainers.protocol.seeds import group_rows


def check_variant(name: str, trainer_cls) -> None:
    """What a variant plugin must have before it is listed or trained: a trainer class with a `Config` dataclass
    deriving the shared protocol, every field documented, and math (its own `variant_math`, or registered under its
    name); raises with the missing piece otherwise (the registry keeps the plugin aside as broken)."""
    import dataclasses

    from trainers.algos.variants import MATH

    config = getattr(trainer_cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config) and issubclass(config, SharedConfig)):
        raise TypeError(f"{name}: its trainer's Config must be a dataclass deriving GRPOConfig")
    undocumented = [f for f, doc in field_docs(config).items() if not doc]
    if undocumented:
        raise ValueError(f"{name}: config fields without documentation (declare them with "
                         f"trainers.protocol.config.setting): {', '.join(undocumented)}")
    own_math = getattr(trainer_cls, "variant_math", None)
    if own_math is not None:
        MATH.register(name, own_math)  # one entry point registers the whole variant: engines find its math too
    elif name not in MATH:
        raise ValueError(f"{name}: no variant math (set variant_math on its trainer class)")
    primary, _ = trainer_cls.primary()
    if primary not in {*trainer_cls.mechanism, "update_change", "clipped"}:
        raise ValueError(f"{name}: its primary probe {primary!r} is not among its probes ({', '.join(trainer_cls.mechanism)})")
    if getattr(trainer_cls, "name", None) != name:
        raise ValueError(f"{name}: its trainer's `name` is {getattr(trainer_cls, 'name', None)!r}, not its entry "
                         "point's name")


VARIANTS.validate = check_variant
HOOKS = ("sampler", "prompt", "rollout", "reward", "group_filter", "advantage", "loss", "forward", "state")


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
