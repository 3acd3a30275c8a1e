"""Every random draw of a run is seeded by (run seed, purpose, step, ...), not by a running generator, so a killed
run resumed from its last checkpoint draws exactly what the uninterrupted run drew, and every engine draws the
questions in the same order and splits the same minibatches."""

from __future__ import annotations

import hashlib
import random

import torch


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
    order = list(range(size))
    random.Random(derived_seed(seed, "order", epoch)).shuffle(order)
    return order
