"""GDRO (arXiv 2601.19280; variants.md §14): what Prompt-GDRO and Rollout-GDRO share.

1. An online difficulty classifier. Every prompt (by its stable id) keeps c_t = 1 if any of the rollouts
   generated for it at a step was correct; its pass@k estimate is the mean of c over its last H visits, and
   the estimate maps to a bin by edges, with hysteresis: a prompt leaves its bin only when the estimate
   passes the boundary by delta.
2. The adversaries' loss signal: the paper's per-sample loss l_ij = -J_clip_ij + beta_KL * KL_ij, a prompt's
   loss the mean over its rollouts. Read as a *sequence mean* per sample (the spec's reading, and the released
   actor's, which records the sequence mean of the clipped loss at every minibatch) it is degenerate: a
   group-normalised advantage has mean 0 over the group, so at ratio 1 a prompt's loss is -mean(A) + beta KL =
   beta KL, and past ratio 1 only -mean((rho - 1) A), the surrogate gain the step's earlier minibatches made on
   it. Measured on the warm-started sandbox (64 prompts revisited every 4 steps, the shared schedule of 4
   minibatches, lr 5e-5, 30 steps): ratios moved 0.07% per token, prompt losses had sd 4.5e-4, and the bin
   weights never spread by more than 0.4%. What moves the paper's adversary in verl is, on our reading, that
   its ratios leave 1 by more (a 1.7-8B model, 4 minibatches of 128 prompts) and that old log-probs
   recomputed in bf16 differ from the training forward's by noise of their own.
   Ours: l_ij is sample j's part of the loss the optimizer minimised (its tokens' weights in the aggregated
   minibatch loss, times the number of samples, so that the minibatch mean of l is that loss), and GDRO trains
   under the launch script's aggregation, verl's default token-mean. l_ij is then the token sum of the
   per-token loss over the minibatch's mean length, and at ratio 1 a prompt's loss is
       -sum_j A_j |o_j| / (n mean|o|) = sqrt(p (1 - p) (n - 1) / n) (mean|o_wrong| - mean|o_right|) / mean|o|:
   positive where the prompt's failures are longer than its successes (token-mean pushes each of their tokens
   down as hard as each success token up), and beta KL alone for all-right or all-wrong groups, whose A is 0.
   So the bins that carry a learning signal are told apart from those that carry none, which a mean of
   sequence means cannot do. In the same sandbox run, wrong answers were 1.8% longer than right ones, prompt
   losses had sd 0.023 (50x), and replaying its per-sample losses through the adversary spread the bin
   weights by 1% at step 10, 10% at step 12 and 50-300% from step 21 (loss_norm_by_share multiplies a bin
   holding 1 prompt of 16 by 16). Under seq-mean-token-mean the same definition gives back the sequence mean:
   the spec's signal is one `loss_aggregation` away.
   The advantage in l is the clipped GRPO advantage *without* Prompt-GDRO's weight, as the released actor
   does: otherwise a bin's measured loss would scale with its own weight (weight up, loss up, weight up).
   Each sample's signal comes from the last epoch that trained on it (ours).
3. The advantage clip (launch script: [-5, 5]) applies to GRPO's advantages *before* Prompt-GDRO multiplies
   them by min(omega, omega_max) (ours). In the released code the clip is a driver-side `algorithm.*` setting
   while the GDRO weight multiplies the advantages inside the actor's loss, so a clip could only have acted on
   unweighted advantages (though the trainer and actor we could read never read adv_clip_low/high: Hydra's
   `+` accepts keys nobody reads). After the weights it would cap the adversary at 5 / |A| and break a group's
   zero sum exactly where DRO pushes hardest: omega = 6 on a group of 8 with one success turns A = (+2.47,
   -0.35 x 7) into (+14.8, -2.1 x 7), clipped to (+5, -2.1 x 7), a net push down on a hard prompt's only
   success. omega_max already bounds the adversary, and the gradient-norm clip bounds the step. Before the
   weights the clip binds only on a lone outlier in a group of n >= 27 (|A| <= (n - 1) / sqrt(n)): never at the
   paper's n = 4 nor on our sandbox (n <= n_max = 16); it stays as the launch script's guard.
4. Steps whose prompts got different numbers of rollouts (Rollout-GDRO): the step is one generation call
   over a flat prompt list (each prompt repeated its own n times), split into one uniform `Groups` per n,
   so GRPO's statistics are taken per group of its own size; all parts train in one optimizer step with the
   loss aggregated over all their rows. Prompt-GDRO is the case of a single part.
Everything the adversaries learn is trainer state and goes into the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from harness.task import Problem
from trainers import algos
from trainers.builtin.base import Groups, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.builtin.rollout import RolloutBatch
from trainers.protocol.config import setting
from trainers.protocol.runlog import TrainingError
from trainers.protocol.seeds import group_rows

# Estimates are means of 0/1 visits: 0.43 must count as passing 0.4 by 0.03 although 0.4 + 0.03 rounds above it.
HYSTERESIS_TOLERANCE = 1e-9


# ------------------------------------------------------------------------------------------ the math


def assign_bins(estimates: torch.Tensor, previous: torch.Tensor, edges: torch.Tensor,
                margin: float) -> torch.Tensor:
    """Bins [N] for pass@k `estimates` [N]: bin b covers [edges[b-1], edges[b]). A prompt with a bin
    (`previous` >= 0) keeps it unless its estimate passes one of the bin's boundaries by `margin`; then it
    goes to the estimate's own bin. A prompt without one (-1) goes straight to its estimate's bin."""
    own = torch.bucketize(estimates, edges, right=True)
    infinity = edges.new_tensor([float("inf")])
    bounds = torch.cat([-infinity, edges, infinity])
    current = previous.clamp(min=0)
    slack = margin - HYSTERESIS_TOLERANCE
    moved = (estimates >= bounds[current + 1] + slack) | (estimates <= bounds[current] - slack)
    return torch.where((previous >= 0) & ~moved, previous, own)


def exponential_weights(scores: torch.Tensor, eta: float, clip: float) -> torch.Tensor:
    """Prompt-GDRO's unnormalised bin weights omega = exp(eta * clip(S, -C, C))."""
    return torch.exp(eta * scores.clamp(-clip, clip))


def exp3_mixture(scores: torch.Tensor, eta: float, gamma: float) -> torch.Tensor:
    """(1 - gamma) softmax(eta * scores) + gamma / K over the last dim: Prompt-GDRO's bin mixture q and
    Rollout-GDRO's EXP3P arm probabilities (softmax, not exp / sum: cumulative arm scores would overflow)."""
    return (1 - gamma) * torch.softmax(eta * scores, dim=-1) + gamma / scores.shape[-1]


def ema_scores(scores: torch.Tensor, observed: torch.Tensor, bin_losses: torch.Tensor, present: torch.Tensor,
               beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """S(b) <- (1 - beta) S(b) + beta * loss(b) for the bins `present` this step; a bin's first observation
    sets S(b) to it. Returns (scores, observed)."""
    moved = torch.where(observed, (1 - beta) * scores + beta * bin_losses, bin_losses)
    return torch.where(present, moved, scores), observed | present


def allocate_arms(log_probs: torch.Tensor, counts: torch.Tensor, arms: torch.Tensor, total: int) -> torch.Tensor:
    """One arm per bin (indices [B] into `arms`) maximising sum_b log_probs[b, arm] subject to
    sum_b counts[b] * arms[arm] == total, by dynamic programming over bins and the rollouts spent so far.

    Ties go to the arm listed first in `arms`, deciding from the last bin backwards.
    """
    spent = torch.arange(total + 1)
    best = torch.full((total + 1,), float("-inf"), dtype=torch.float64)
    best[0] = 0.0
    choices = []
    for b in range(log_probs.shape[0]):
        before = spent[None, :] - counts[b] * arms[:, None]  # [A, total + 1]: spent before this bin's arm
        candidates = torch.where(before >= 0, best[before.clamp(min=0)], float("-inf"))
        candidates = candidates + log_probs[b, :, None].to(torch.float64)
        choice = candidates.argmax(dim=0)
        best = candidates.gather(0, choice[None]).squeeze(0)
        choices.append(choice)
    if best[total] == float("-inf"):
        raise ValueError(f"no choice of arms {arms.tolist()} for bins of {counts.tolist()} prompts spends "
                         f"exactly {total} rollouts")
    picks, left = [], total
    for b in reversed(range(len(choices))):
        arm = int(choices[b][left])
        picks.append(arm)
        left -= int(counts[b] * arms[arm])
    return torch.tensor(picks[::-1], dtype=torch.long)


def square_root_allocation(variances: torch.Tensor, shares: torch.Tensor, mean_rollouts: float) -> torch.Tensor:
    """The compute-neutral variance-optimal (Neyman) allocation n_b = n_bar sqrt(v_b) / sum_j q_j sqrt(v_j);
    n_bar everywhere when no bin has any variance."""
    root = variances.sqrt()
    spread = (shares * root).sum()
    if spread <= 0:
        return torch.full_like(variances, float(mean_rollouts))
    return mean_rollouts * root / spread


def sample_losses(per_token: torch.Tensor, mask: torch.Tensor, aggregate, max_length: int | None = None
                  ) -> torch.Tensor:
    """Each sample's part of the minibatch loss `aggregate(per_token, mask)`, times the number of samples [B], so
    that their mean is the loss itself. The aggregations are linear in the per-token loss, so a token's part is
    its weight d(loss)/d(per_token), read off the aggregation: 1/|o_i| under seq-mean-token-mean (a sample's part
    is its sequence mean), B/sum|o| under token-mean (its token sum over the minibatch's mean length)."""
    probe = torch.zeros_like(per_token, requires_grad=True)
    with torch.enable_grad():
        aggregate(probe, mask, max_length=max_length).backward()
    return per_token.shape[0] * (probe.grad * per_token.detach()).sum(dim=-1)


def loss_signal(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                kl: torch.Tensor | None, *, eps_low: float, eps_high: float, dual_clip: float | None, kl_beta: float,
                aggregate, max_length: int | None = None) -> torch.Tensor:
    """The adversaries' per-sample loss l = -J_clip + beta * KL [B]: each sample's part of the aggregated loss."""
    ratio = torch.exp(algos.log_ratio(logp, old_logp))
    per_token = -algos.clipped_objective(ratio, advantages[:, None], eps_low, eps_high, dual_clip)
    if kl_beta and kl is not None:
        per_token = per_token + kl_beta * kl
    return sample_losses(per_token, mask, aggregate, max_length)


def segment_means(values: torch.Tensor, segments: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean of `values` per segment id, members per segment) for ids in [0, count); empty segments mean 0."""
    members = torch.bincount(segments, minlength=count)
    sums = torch.zeros(count, dtype=torch.float64).index_add_(0, segments, values.to(torch.float64))
    return sums / members.clamp(min=1), members


def per_bin(values: torch.Tensor, present: torch.Tensor) -> list:
    """A per-bin figure for the training log: None for the bins with no prompt this step."""
    return [v if p else None for v, p in zip(values.tolist(), present.tolist(), strict=True)]


# ---------------------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class GDROConfig(GRPOConfig):
    """What both GDRO halves share: the launch script's loss settings and the online difficulty classifier."""

    # Launch script: 512 prompts a step in minibatches of 128, one epoch.
    PAPER_SCHEDULE: ClassVar[dict[str, int]] = {"ppo_epochs": 1, "minibatches": 4}

    eps_high: float = setting(0.28, "Launch script: clip 0.2 / 0.28 (the paper's GRPO baseline uses it too).")
    kl_beta: float = setting(
        0.001, "Launch script: k3 KL loss with beta 0.001; also the beta_KL of the adversaries' loss signal.")
    loss_aggregation: str = setting(
        "token-mean", "Launch script: verl's default loss_agg_mode, token-mean (the script leaves it). The "
        "adversaries' signal is each sample's part of this loss (ours, module docstring 2): under token-mean"
        " it is live; under seq-mean-token-mean it is the spec's sequence mean, which a group-normalised "
        "advantage makes ~beta KL.")
    advantage_clip: float | None = setting(
        5.0, "Launch script: advantages clipped to [-5, 5], here to GRPO's advantages before Prompt-GDRO's "
        "weight (ours, module docstring 3); None = no clip. With binary rewards it never binds below G = 27:"
        " a group of n with one success has the largest |A|, (n - 1) / sqrt(n) (2.47 at G = 8, 3.75 at "
        "Rollout-GDRO's 16). Kept for the paper's scale and shaped rewards; inert on the sandbox, and "
        "switching it off changes no number.")
    bin_edges: tuple[float, ...] = setting(
        (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "Inner edges of the pass@k bins, increasing in (0, 1)"
        " (paper: equal-width deciles accbin_0..accbin_9; the launch scripts also use "
        "0.1,0.2,0.4,0.6,0.8,0.9).")
    history_window: int = setting(
        100, "Sliding window H of visits in a prompt's pass@k estimate (launch script 100); 0 keeps every "
        "visit. c_t comes from the step's own rollouts, as the code does (ours: the paper's k = 8 scale is "
        "unconfirmed).")
    bin_margin: float = setting(
        0.03, "Hysteresis delta: a prompt leaves its bin only when its estimate passes a boundary by this "
        "much.")

    def __post_init__(self):
        super().__post_init__()
        edges = self.bin_edges
        if not edges or not all(a < b for a, b in zip((0.0, *edges), (*edges, 1.0), strict=True)):
            raise ValueError(f"bin_edges must be strictly increasing values in (0, 1), got {edges}")
        if self.history_window < 0:
            raise ValueError(f"history_window must be >= 0 (0 = every visit), got {self.history_window}")
        if not 0 <= self.bin_margin < 1:
            raise ValueError(f"bin_margin must be in [0, 1), got {self.bin_margin}")
        if self.advantage_clip is not None and self.advantage_clip <= 0:
            raise ValueError(f"advantage_clip must be > 0 or None, got {self.advantage_clip}")


# ------------------------------------------------------------------------------ classifier and batch


class DifficultyClassifier:
    """Per-prompt pass@k history and bin. Bins are 0..B-1; a prompt never seen is in `unseen` (= B)."""

    def __init__(self, edges: tuple[float, ...], window: int, margin: float):
        self.edges = torch.tensor(edges, dtype=torch.float64)
        self.window, self.margin = window, margin
        self.history: dict[str, list[int]] = {}
        self.assigned: dict[str, int] = {}

    @property
    def unseen(self) -> int:
        return len(self.edges) + 1

    def bins(self, problems: list[Problem]) -> torch.Tensor:
        return torch.tensor([self.assigned.get(p.id, self.unseen) for p in problems], dtype=torch.long)

    def observe(self, problems: list[Problem], solved: torch.Tensor) -> None:
        """Record one visit per problem (`solved` [N] bool: any rollout correct) and re-bin the problems."""
        previous = self.bins(problems)
        for problem, hit in zip(problems, solved.tolist(), strict=True):
            visits = self.history.setdefault(problem.id, [])
            visits.append(int(hit))
            if self.window:
                del visits[:-self.window]
        estimates = torch.tensor([sum(self.history[p.id]) / len(self.history[p.id]) for p in problems],
                                 dtype=torch.float64)
        previous = torch.where(previous == self.unseen, -1, previous)
        for problem, b in zip(problems, assign_bins(estimates, previous, self.edges, self.margin).tolist(),
                              strict=True):
            self.assigned[problem.id] = b

    def state_dict(self) -> dict:
        return {"history": {uid: list(v) for uid, v in self.history.items()}, "assigned": dict(self.assigned)}

    def load_state_dict(self, state: dict) -> None:
        self.history = {uid: list(v) for uid, v in state["history"].items()}
        self.assigned = dict(state["assigned"])


@dataclass
class RaggedGroups:
    """One step's groups when prompts got different numbers of rollouts: one uniform `Groups` per group size
    (ascending), whose rows lie part after part in `batch`."""

    parts: list[Groups]
    part_bins: list[torch.Tensor]  # each part's groups' bins at allocation time (before this step's rollouts)
    batch: RolloutBatch
    allocation_bins: torch.Tensor  # [drawn prompts] bin of every drawn prompt when its rollouts were allocated
    allocation_sizes: torch.Tensor  # [drawn prompts] rollouts generated for it (filtered groups included)

    @property
    def problems(self) -> list[Problem]:
        return [p for part in self.parts for p in part.problems]

    @property
    def sizes(self) -> torch.Tensor:
        """Group size of each trained group, in batch order."""
        return torch.cat([torch.full((len(p.problems),), p.group_size, dtype=torch.long) for p in self.parts])

    @property
    def bins(self) -> torch.Tensor:
        return torch.cat(self.part_bins)

    @property
    def rewards(self) -> torch.Tensor:
        """Every trained sample's reward, row-ordered (what GRPOTrainer.step_stats averages)."""
        return self.flat("rewards")

    @property
    def accuracy(self) -> torch.Tensor:
        return self.flat("accuracy")

    def flat(self, name: str) -> torch.Tensor:
        """A per-sample [N, G] field of every part (accuracy, rewards) as one row-ordered vector."""
        return torch.cat([getattr(p, name).reshape(-1) for p in self.parts])

    def rows(self, groups: torch.Tensor) -> torch.Tensor:
        """Row indices of the given group indices (`group_rows` for groups of different sizes)."""
        sizes = self.sizes
        starts = torch.cumsum(sizes, 0) - sizes
        picked = sizes[groups]
        offsets = torch.arange(int(picked.sum())) - torch.repeat_interleave(torch.cumsum(picked, 0) - picked, picked)
        return torch.repeat_interleave(starts[groups], picked) + offsets


# ------------------------------------------------------------------------------------------ the trainer


class GDROTrainer(GRPOTrainer):
    """Collects and trains ragged steps, keeps the classifier; a half supplies `allocate` and `adversary_step`."""

    Config = GDROConfig
    # The train-log field holding each step's rollouts per difficulty bin, which the leaderboard plots.
    allocation_log_key = "gdro_bin_rollouts"

    def __init__(self, config: GDROConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.classifier = DifficultyClassifier(config.bin_edges, config.history_window, config.bin_margin)
        self.signal = torch.zeros(0)  # [rows] of the step being trained: each sample's loss signal
        self.signal_advantages = torch.zeros(0)  # [rows] the advantages the signal uses: clipped, unweighted

    @property
    def num_bins(self) -> int:
        return len(self.config.bin_edges) + 1

    def allocate(self, bins: torch.Tensor) -> torch.Tensor:
        """Rollouts [N] for prompts in `bins` (their bins before this step): G each unless a half reallocates."""
        return torch.full_like(bins, self.config.group_size)

    def group_weights(self, groups: Groups) -> torch.Tensor:
        """The adversary's advantage weight for each group [N]: 1 unless Prompt-GDRO reweights."""
        return torch.ones(len(groups.problems))

    def adversary_step(self, step: RaggedGroups, losses: torch.Tensor) -> dict:
        """Learn from the trained step's per-sample losses [rows]; returns the step's per-bin log figures."""
        raise NotImplementedError

    def clipped_advantage(self, groups: Groups) -> torch.Tensor:
        """GRPO's advantages clipped to +-advantage_clip (module docstring, 3)."""
        advantages = super().advantage(groups)
        clip = self.config.advantage_clip
        return advantages if clip is None else advantages.clamp(-clip, clip)

    def advantage(self, groups: Groups) -> torch.Tensor:
        # The clip comes before the adversary's weight, so the weight is never clipped away.
        weights = self.group_weights(groups).to(groups.rewards.dtype)
        return self.clipped_advantage(groups) * weights[:, None]

    def state_dict(self) -> dict:
        return {"classifier": self.classifier.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.classifier.load_state_dict(state["classifier"])

    # ------------------------------------------------------------------------------------ the step

    def collect(self) -> RaggedGroups | None:
        # Every allocation spends exactly N x G rollouts, so GRPO's worst-case round cost (N x G sequences of
        # max_new_tokens) is this step's too, and the budget check before it stays exact.
        problems = self.draw_prompts()
        if problems is None:
            return None
        # Probe: without revisits the classifier has no history, and every prompt is binned by one visit.
        self.note("revisited", sum(p.id in self.classifier.history for p in problems) / len(problems))
        n = len(problems)
        bins = self.classifier.bins(problems)  # the previous steps' classification
        sizes = self.allocate(bins)
        if int(sizes.sum()) != n * self.config.group_size:
            raise RuntimeError(f"{self.name} allocated {int(sizes.sum())} rollouts to {n} prompts, not "
                               f"{n} x G = {n * self.config.group_size}: the budget check assumed the latter")
        step = self.generate_ragged(problems, sizes, bins)
        self.signal = torch.zeros(step.batch.response_ids.shape[0])
        return step

    def generate_ragged(self, problems: list[Problem], sizes: torch.Tensor, bins: torch.Tensor) -> RaggedGroups:
        """`generate_groups` with `sizes[i]` rollouts for problem i, in one rollout call; prompts are ordered by
        size (stably), so with equal sizes the call is GRPO's own. Grades, charges the ledger for every
        sequence, records the visits in the classifier, then applies the group filter part by part."""
        order = torch.argsort(sizes, stable=True).tolist()
        problems, sizes, bins = [problems[i] for i in order], sizes[order], bins[order]
        batch, texts, answers, correct = self.generate_and_grade(problems, sizes.tolist())
        group_of_row = torch.repeat_interleave(torch.arange(len(problems)), sizes)
        self.classifier.observe(problems, segment_means(correct, group_of_row, len(problems))[0] > 0)

        parts, part_bins, kept_rows = [], [], []
        start = 0
        for size in sizes.unique().tolist():
            index = torch.nonzero(sizes == size).flatten()
            rows = start + torch.arange(len(index) * size)
            start += len(index) * size
            accuracy = correct[rows].view(len(index), size)
            part = Groups([problems[i] for i in index.tolist()], batch.select(rows), [texts[i] for i in rows.tolist()],
                          [answers[i] for i in rows.tolist()], accuracy, accuracy)
            part.rewards, part.components = self.reward(part)
            if not torch.isfinite(part.rewards).all():
                raise TrainingError(f"non-finite reward at step {self.step}; {self._kept_message()}")
            keep = self.group_filter(part)
            if keep.any():
                kept = torch.nonzero(keep).flatten()
                parts.append(part.select(keep))
                part_bins.append(bins[index][kept])
                kept_rows.append(rows[group_rows(kept, size)])
        batch = batch.select(torch.cat(kept_rows) if kept_rows else torch.zeros(0, dtype=torch.long))
        return RaggedGroups(parts, part_bins, batch, bins, sizes)

    def step_advantages(self, step: RaggedGroups) -> torch.Tensor:
        """The advantage hook applied part by part (statistics per group of its own size), row-ordered; the
        signal's unweighted advantages are kept aside (module docstring, 2)."""
        self.signal_advantages = torch.cat([self.clipped_advantage(part).reshape(-1) for part in step.parts])
        return torch.cat([self.advantage(part).reshape(-1) for part in step.parts])

    def observe_minibatch(self, rows, logp, old_logp, advantages, mask, kl) -> None:
        # Each sample's loss signal, from the last epoch that trained on it (ours), for the adversary: its part of
        # the loss as aggregated, with the advantage before the adversary's weight.
        cfg = self.config
        self.signal[rows] = loss_signal(logp, old_logp, self.signal_advantages[rows].to(logp.device), mask, kl,
                                        eps_low=cfg.eps_low, eps_high=cfg.eps_high, dual_clip=cfg.dual_clip,
                                        kl_beta=cfg.kl_beta, aggregate=algos.AGGREGATIONS.get(cfg.loss_aggregation),
                                        max_length=self.max_new_tokens).cpu()

    def after_update(self, step: RaggedGroups) -> dict:
        return self.adversary_step(step, self.signal)
