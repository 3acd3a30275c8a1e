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
from typing import ClassVar

from harness.claim import Claim
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.protocol.config import setting

BATCH_NORM_UNITS = ("samples", "tokens")


@dataclass(frozen=True)
class GDPOConfig(GRPOConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"format_reward": 0.0, "aux_reward_weight": 0.0, "advantage_eps": 1e-6}
    advantage_eps: float = setting(
        1e-4, "Epsilon of both normalisations, std + 1e-4 (the TRL implementation; the std stays torch.std's"
        " unbiased).")
    format_reward: float = setting(
        1.0, "Weight of the format component (1 when an answer can be extracted). The TRL GSM8K recipe "
        "weighs its three binary rewards (format, correctness, integer answer) 1 each.")
    aux_reward_weight: float = setting(
        0.5, "Weight of each of the train task's auxiliary rewards (`Task.aux_rewards`; the sandbox's "
        '"process"). 0.5 keeps accuracy the leading term where both vary (ours); 0 leaves them out.')
    batch_norm_over: str = setting(
        "samples", 'What the batch whitening counts: "samples" (TRL, the spec\'s numbers) or "tokens" (verl\'s'
        " whitening over all response tokens, so long responses weigh more in the mean and std).")

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
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (Claim("gains over GRPO in math reasoning", "variants.md §11", "pass@1", "higher"),)
    Config = GDPOConfig

    mechanism = {
        "components_varied": "share of groups where a component other than accuracy varies (what the decoupled "
                             "normalisation gives its own scale)",
        "advantage_change": "mean |A - A_GRPO|, A_GRPO being GRPO's advantage of the summed reward",
    }
