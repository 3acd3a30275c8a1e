"""GDPO, Group reward-Decoupled normalisation Policy Optimisation (arXiv 2601.05242; variants.md §11).

GRPO sums the reward components and normalises the sum once, so different combinations of components can
land on the same advantage: correctness [1,1,0,0] plus format [1,0,1,1] sums to [2,1,1,1], and the right
answer without format gets the advantage of the two wrong ones. GDPO keeps the components apart:
1. normalise each component within its group, (r - mean) / (std + 1e-4), NaN rewards counted as 0;
2. sum the normalised components with their weights;
3. whiten that sum over the whole step's batch (TRL: over samples; verl: over response tokens).
A component with no spread in a group adds 0 there; with a single component GDPO is GRPO followed by a batch
whitening, so it needs a second component that varies.

Which components (ours). Accuracy; format, 1 when an answer can be extracted (the TRL recipe weighs its
binary rewards 1 each); and every auxiliary reward the train task declares (`Task.aux_rewards`), each a
verifiable score in [0, 1] of (problem, completion). The sandbox declares one, "process": the share of the
worked solution's column lines whose arithmetic is right (`tasks.column_check`), a process reward in the
sense of PRMs, checked rather than learnt. It varies where accuracy does not: two wrong answers differ in
how many lines slipped, and a right answer boxed after work that does not support it scores below clean
work. Measured on the warm start (32 pool questions x 8 samples): process varied within 31 groups,
accuracy within 29, format within none (the model boxes an answer almost always); a right answer's work
scored 0.997 on average, a wrong one's 0.63. The benchmarks declare no auxiliary reward, so on them GDPO has
accuracy and format only. Whoever builds the trainer passes the train task's `aux_rewards` to it (every trainer takes them; GDPO uses them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainers import algos
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer

BATCH_NORM_UNITS = ("samples", "tokens")


def decoupled_group_advantages(components: torch.Tensor, weights: torch.Tensor, eps: float = 1e-4,
                               unbiased_std: bool = True) -> torch.Tensor:
    """Steps 1-2: components `[K, num_groups, G]` normalised within each group one by one, then summed with
    `weights` `[K]` -> `[num_groups, G]`. NaN rewards count as 0 (the official code's guard)."""
    normalised = algos.grpo_advantages(torch.nan_to_num(components, nan=0.0), eps, unbiased_std)
    return (weights[:, None, None] * normalised).sum(dim=0)


def batch_whiten(values: torch.Tensor, eps: float = 1e-4, unbiased_std: bool = True,
                 token_counts: torch.Tensor | None = None) -> torch.Tensor:
    """Step 3: (x - mean) / (std + eps) over every sample of the batch (any shape).

    With `token_counts` (same shape), each sample counts once per response token, as verl's whitening over
    all response tokens does; the unbiased correction is then over the token count.
    """
    weights = torch.ones_like(values) if token_counts is None else token_counts.to(values.dtype)
    total = weights.sum()
    if total <= 1:
        return torch.zeros_like(values)
    mean = (weights * values).sum() / total
    variance = (weights * (values - mean) ** 2).sum() / (total - 1 if unbiased_std else total)
    return (values - mean) / (variance.sqrt() + eps)


@algos.ADVANTAGES.register("gdpo")
def gdpo_advantages(components: torch.Tensor, weights: torch.Tensor, eps: float = 1e-4, unbiased_std: bool = True,
                    token_counts: torch.Tensor | None = None) -> torch.Tensor:
    """GDPO advantages `[num_groups, G]` from reward components `[K, num_groups, G]` (variants.md §11)."""
    summed = decoupled_group_advantages(components, weights, eps, unbiased_std)
    return batch_whiten(summed, eps, unbiased_std, token_counts)


@dataclass(frozen=True)
class GDPOConfig(GRPOConfig):
    # Epsilon of both normalisations, std + 1e-4 (the TRL implementation; the std stays torch.std's unbiased).
    advantage_eps: float = 1e-4
    # Weight of the format component (1 when an answer can be extracted). The TRL GSM8K recipe weighs its
    # three binary rewards (format, correctness, integer answer) 1 each.
    format_reward: float = 1.0
    # Weight of each of the train task's auxiliary rewards (`Task.aux_rewards`; the sandbox's "process").
    # 0.5 keeps accuracy the leading term where both vary (ours); 0 leaves them out.
    aux_reward_weight: float = 0.5
    # What the batch whitening counts: "samples" (TRL, the spec's numbers) or "tokens" (verl's whitening over
    # all response tokens, so long responses weigh more in the mean and std).
    batch_norm_over: str = "samples"

    def __post_init__(self):
        super().__post_init__()
        if self.format_reward < 0 or self.aux_reward_weight < 0:
            raise ValueError(f"gdpo's format_reward and aux_reward_weight are component weights and must be >= 0, "
                             f"got {self.format_reward} and {self.aux_reward_weight}")
        if self.batch_norm_over not in BATCH_NORM_UNITS:
            raise ValueError(f"gdpo's batch_norm_over must be one of {', '.join(BATCH_NORM_UNITS)}, "
                             f"got {self.batch_norm_over!r}")


@VARIANTS.register("gdpo")
class GDPOTrainer(GRPOTrainer):
    name = "gdpo"
    paper = "GDPO: Group reward-Decoupled Normalization Policy Optimization (arXiv 2601.05242)"
    status = "[code]"
    Config = GDPOConfig

    mechanism = {
        "components_varied": "share of groups where a component other than accuracy varies (what the decoupled "
                             "normalisation gives its own scale)",
        "advantage_change": "mean |A - A_GRPO|, A_GRPO being GRPO's advantage of the summed reward",
    }

    def reward(self, groups: Groups):
        total, components = super().reward(groups)
        if self.config.aux_reward_weight:
            rows = [problem for problem in groups.problems for _ in range(groups.group_size)]
            for name, score in self.aux_rewards.items():
                values = [float(score(problem, text)) for problem, text in zip(rows, groups.texts, strict=True)]
                components[name] = torch.tensor(values, dtype=torch.float32).view_as(total)
                total = total + self.config.aux_reward_weight * components[name]
        return total, components

    def component_weights(self) -> dict[str, float]:
        return {"accuracy": 1.0, "format": self.config.format_reward,
                **dict.fromkeys(self.aux_rewards, self.config.aux_reward_weight)}

    def advantage(self, groups: Groups) -> torch.Tensor:
        weights = {name: w for name, w in self.component_weights().items() if w and name in groups.components}
        stacked = torch.stack([groups.components[name] for name in weights])
        token_counts = None
        if self.config.batch_norm_over == "tokens":
            token_counts = groups.batch.lengths.cpu().view_as(groups.rewards)
        advantages = gdpo_advantages(stacked, torch.tensor(list(weights.values())), self.config.advantage_eps,
                                     self.config.unbiased_std, token_counts)
        others = stacked[1:] if len(stacked) > 1 else stacked.new_zeros((1, *stacked.shape[1:]))
        self.note("components_varied", float((others != others[..., :1]).any(dim=-1).any(dim=0).float().mean()))
        self.note_advantage_change(groups.rewards, advantages)
        return advantages
