"""GRPO (DeepSeekMath / R1; variants.md §2), and the skeleton every other variant derives from.

Group-mean baseline scaled by the group std (unbiased, eps 1e-6), PPO clipped token objective, optional k3
KL to the starting policy, `seq-mean-token-mean` aggregation. Each hook below is the plain-GRPO behaviour;
a variant overrides the few it changes.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness.backends.base import DEFAULT_STOP, cut_at_stop
from harness.budget import LIMITS, Budget, Ledger, parameter_count
from harness.claim import Claim
from harness.extraction import extract
from harness.prompts import render_prompt
from harness.task import Problem
from trainers import algos
from trainers.algos import terms
from trainers.algos.configs import GRPOConfig, grpo_reference
from trainers.algos.variants import (
    MATH,
    GroupBatch,
    VariantMath,
    advantage_change,
    reference_advantages,
    update_change,
)
from trainers.builtin.base import VARIANTS, Groups
from trainers.builtin.prefix_grouper import forward_tokens, prefix_grouped_logprobs
from trainers.builtin.rollout import Mixing, RolloutBatch, sample, token_logprobs
from trainers.protocol import schedule
from trainers.protocol.runlog import TRAIN_LOG, TrainingError, append_train_log, trim_train_log, write_ledger
from trainers.protocol.seeds import derived_seed, minibatch_groups, pass_order

logger = logging.getLogger(__name__)

UPDATE_CHANGE = ("share of the update's per-token weight that differs from plain GRPO's on the same batch (half the "
                 "L1 distance of the two losses' unit-norm gradients with respect to the tokens' log-probs; 0: the "
                 "update is GRPO's, up to a constant scale)")

CHECKPOINT = "checkpoint.pt"


@VARIANTS.register("grpo")
class GRPOTrainer:
    name = "grpo"
    paper = "DeepSeekMath (arXiv 2402.03300) / DeepSeek-R1"
    status = "[code+paper]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (Claim("RL with verifiable rewards raises accuracy over the starting model", "variants.md §2",
                   "pass@1", "higher", baseline="warm start"),)
    Config = GRPOConfig
    # The statistics that show this variant's defining mechanism acted (probe name -> what it measures). Each
    # is noted once per step with `note()`, logged under the step record's "probes", averaged per step in the
    # leaderboard's `mechanism` column and listed by `harness list variants`. The skeleton logs, for every
    # variant, `update_change` (UPDATE_CHANGE) and the clip probes (`clipped`, and each bound apart: clip_low,
    # clip_high, dual_clip). `primary_probe` names the one that measures the mechanism's effect: 0 when the
    # update is what GRPO's would be on the same batch, growing with how far it is from it; the page marks a
    # row inert where it is 0 and weak where it is below `materiality`. The other probes count how often a
    # formula was applied (secondary: non-zero by construction for some).
    # Whether an engine (vLLM) can generate this variant's rollouts; a variant whose decode loop is its own
    # (N-GRPO's embedding mixing) says False and keeps the built-in sampler under rollout_engine = "vllm".
    engine_rollouts = True
    # The train-log field of a variant that allocates rollouts across difficulty bins (each step's rollouts per
    # bin, lowest pass rate first, unseen prompts last); the leaderboard plots it. None: no allocation.
    allocation_log_key: str | None = None
    # A plugin variant's math (trainers.algos.variants.VariantMath); the built-ins register theirs by name there.
    variant_math: VariantMath | None = None
    mechanism: dict[str, str] = {
        "clipped": "share of trained response tokens whose gradient a clip bound cut (ratio past 1 - eps_low "
                   "with A < 0, past 1 + eps_high with A > 0, or past the dual clip c)",
    }
    primary_probe = "update_change"
    # The primary probe's mean per step below which the page calls the mechanism weak (ours): update_change is a
    # share of the update's per-token weight, so 0.01 is one part in a hundred.
    materiality = 0.01

    @classmethod
    def describe(cls) -> str:
        """This variant's block of `harness list variants`: paper, hooks, engines, probes, claims, defaults."""
        from trainers.builtin.catalog import describe_variant

        return describe_variant(cls.name, cls)

    @classmethod
    def primary(cls) -> tuple[str, float]:
        """(primary probe, materiality threshold). GRPO is the reference every update_change is measured against;
        its own defining act is the clip, material from 1e-3 of the trained tokens (ours)."""
        return ("clipped", 1e-3) if cls is GRPOTrainer else (cls.primary_probe, cls.materiality)

    def __init__(self, config: GRPOConfig, *, model, tokenizer, problems: list[Problem], template,
                 answer_format: str, grader: str, max_new_tokens: int, budget: Budget, seed: int,
                 run_dir: str | Path, pool, progress: bool = False,
                 aux_rewards: Mapping[str, Callable[[Problem, str], float]] | None = None):
        self.config, self.model, self.tokenizer = config, model, tokenizer
        self.problems, self.template = problems, template
        self.answer_format, self.grader = answer_format, grader
        self.max_new_tokens = config.max_new_tokens or max_new_tokens
        self.budget, self.seed, self.run_dir, self.pool = budget, seed, Path(run_dir), pool
        self.progress = progress
        # The train task's verifiable rewards beyond accuracy (`Task.aux_rewards`), for variants that combine
        # reward components (GDPO); GRPO's own reward is accuracy (and format) only.
        self.aux_rewards = dict(aux_rewards or {})
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        # FLOPs a token costs through one forward pass (2N; see harness.budget).
        self.flops_per_token = 2 * parameter_count(model)
        self.grpo_reference = grpo_reference(config)  # plain GRPO under the same protocol (`update_change`)
        self.reference = None
        if config.kl_beta > 0 or config.track_kl:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.adam_betas,
                                           eps=config.adam_eps, weight_decay=config.weight_decay)
        self.ledger = Ledger()
        self.step = 0  # training steps done (one rollout batch each)
        self.cursor = 0  # prompts drawn from the seeded order so far
        self._order_epoch, self._order_cache = -1, []  # the current pass's permutation, derived from the seed
        self.stopped_by: str | None = None
        self.probes: dict[str, float] = {}  # the current step's probe values (see `mechanism`)
        self.last_step = Ledger()  # what the previous step consumed: the estimate of the next one's cost
        self._engine = None  # the vLLM rollout engine (rollout_engine = "vllm"), started on first use
        self._engine_refused = False

    # ------------------------------------------------------------------------------------------ hooks

    def sampler(self, count: int) -> list[Problem]:
        """The next `count` questions of a seeded order (a new permutation every pass over the data).

        The order depends only on the run seed, so every variant sees the same questions in the same order.
        """
        drawn = []
        for _ in range(count):
            epoch, index = divmod(self.cursor, len(self.problems))
            drawn.append(self.problems[self._order(epoch)[index]])
            self.cursor += 1
        return drawn

    def _order(self, epoch: int) -> list[int]:
        if self._order_epoch != epoch:
            self._order_epoch, self._order_cache = epoch, pass_order(len(self.problems), self.seed, epoch)
        return self._order_cache

    def prompt(self, problem: Problem) -> str:
        return render_prompt(self.template, problem.problem, self.tokenizer if self.chat else None)

    def mixing(self) -> Mixing | None:
        """The rollout's embedding mixing (N-GRPO); plain sampling here."""
        return None

    def rollout(self, prompts: list[str], seed: int) -> RolloutBatch:
        ids = [self.tokenizer(p, add_special_tokens=not self.chat).input_ids for p in prompts]
        self.model.eval()
        options = dict(max_new_tokens=self.max_new_tokens, temperature=self.config.temperature,
                       eos_id=self.tokenizer.eos_token_id, pad_id=self.tokenizer.pad_token_id, seed=seed)
        engine = self.rollout_engine()
        if engine is not None:
            engine.push(self.ledger.steps)  # the weights of the latest optimizer update
            batch = engine.generate(ids, **options)
        else:
            batch = sample(self.model, ids, mixing=self.mixing(), **options)
        self.charge_generation(batch)
        return batch

    def rollout_engine(self):
        """The vLLM engine rollouts go through, started on first use; None for the built-in sampler."""
        if self.config.rollout_engine == "builtin":
            return None
        if self.config.rollout_engine != "vllm":
            raise ValueError(f"rollout_engine {self.config.rollout_engine!r} is not builtin or vllm")
        if not self.engine_rollouts:
            if not self._engine_refused:
                logger.warning("%s mixes embeddings inside its rollout, which vLLM cannot do: its rollouts use the "
                               "built-in sampler (rollout_engine=vllm is ignored for this variant)", self.name)
                self._engine_refused = True
            return None
        if self._engine is None:
            from trainers.builtin.vllm_rollout import VLLMRollouts

            self._engine = VLLMRollouts(self.model, self.tokenizer, dtype=self.config.rollout_dtype)
        return self._engine

    def charge_generation(self, batch: RolloutBatch) -> None:
        """Charge generated sequences where they are generated, so no caller of `rollout` generates for free
        (a variant that replaces `rollout` calls this itself)."""
        tokens, prompt_tokens = int(batch.lengths.sum()), int(batch.prompt_mask.sum())
        self.ledger.add(Ledger(rollouts=batch.response_ids.shape[0], tokens=tokens, prompt_tokens=prompt_tokens,
                               generation_flops=self.flops_per_token * (tokens + prompt_tokens)))

    # The reward, filter, advantage and loss hooks call the variant's registered math (trainers.algos.variants),
    # the functions every engine calls; a variant's module overrides a hook only for what the registry cannot hold.

    @property
    def math(self) -> VariantMath:
        return MATH.get(self.name)  # a plugin's own `variant_math` is registered there when it loads

    def group_batch(self, groups: Groups, with_aux: bool = False) -> GroupBatch:
        """What the variant math reads about `groups` (`with_aux`: the train task's auxiliary rewards too)."""
        shape = groups.accuracy.shape
        batch = groups.batch
        aux = None
        if with_aux and self.aux_rewards:
            rows = [problem for problem in groups.problems for _ in range(groups.group_size)]
            aux = {name: torch.tensor([float(score(problem, text)) for problem, text in
                                       zip(rows, groups.texts, strict=True)]).view(shape)
                   for name, score in self.aux_rewards.items()}
        lengths = truncated = likelihood = answered = None
        if batch is not None:  # (tests build groups from rewards alone)
            lengths, truncated = batch.lengths.cpu().view(shape), batch.truncated.cpu().view(shape)
            likelihood = terms.mean_token_logp(batch.old_logp, batch.response_mask.float()).cpu().view(shape)
        rows = shape[0] * shape[1]
        if groups.answers is not None and len(groups.answers) == rows:
            answered = torch.tensor([a is not None for a in groups.answers]).view(shape)
        texts = groups.texts if groups.texts is not None and len(groups.texts) == rows else None
        return GroupBatch(accuracy=groups.accuracy, lengths=lengths, truncated=truncated, answered=answered,
                          texts=texts, likelihood=likelihood, aux=aux, step=self.step,
                          max_length=self.max_new_tokens, thinks=bool(getattr(self.template, "thinks", False)),
                          rewards=groups.rewards, components=groups.components)

    def reward(self, groups: Groups) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar reward [N, G], named components)."""
        rewards, components, probes = self.math.reward(self.group_batch(groups, with_aux=True), self.config)
        self.note_all(probes)
        return rewards, components

    def group_filter(self, groups: Groups) -> torch.Tensor:
        """Which groups [N] are trained on."""
        return self.math.group_filter(self.group_batch(groups), self.config)

    def advantage(self, groups: Groups) -> torch.Tensor:
        advantages, probes = self.math.advantage(self.group_batch(groups), self.config)
        self.note_all(probes)
        return advantages

    def loss(self, logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
             kl: torch.Tensor | None) -> torch.Tensor:
        """The aggregated loss over a minibatch; advantages are per sequence [B]. Its probes add up over the step."""
        loss, probes = self.math.loss(logp, old_logp, advantages, mask, kl, self.config, self.max_new_tokens)
        self.note_all(probes, add=True)
        return loss

    def forward(self, batch: RolloutBatch, with_entropy: bool = False):
        return self.score(self.model, batch, with_entropy)

    def score(self, model, batch: RolloutBatch, with_entropy: bool = False, diagnostic: bool = False):
        """Log-probs (and entropies) of `batch` under `model`, charged to the ledger: every training-side forward
        goes through here, so none is free. A forward under autograd counts its tokens twice (the backward
        passes them again) and 6N FLOPs a token, a no-grad forward (old policy, reference, scoring) once and 2N.
        `diagnostic`: the forward is made only to log (it changes no update), so it is charged to the
        diagnostics account, which no budget limit reads."""
        tokens = forward_tokens(batch, self.config.prefix_grouper)
        if diagnostic:
            self.ledger.diagnostic_tokens += tokens
            self.ledger.diagnostic_flops += self.flops_per_token * tokens
        elif torch.is_grad_enabled():
            self.ledger.update_tokens += 2 * tokens
            self.ledger.update_flops += 3 * self.flops_per_token * tokens
        else:
            self.ledger.update_tokens += tokens
            self.ledger.update_flops += self.flops_per_token * tokens
        return self.scorer(model, batch, self.config.temperature, with_entropy)

    @property
    def scorer(self):
        """Log-probs of a batch under a model: the standard forward, or Prefix Grouper's (prompt encoded once)."""
        return prefix_grouped_logprobs if self.config.prefix_grouper else token_logprobs

    def state_dict(self) -> dict:
        """State a variant keeps across steps (GDRO's scores, R3's buffer); checkpointed with the rest."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # ------------------------------------------------------------------------------------- the step

    def generate_groups(self, problems: list[Problem], round_index: int = 0) -> Groups:
        """Roll out `rollouts_per_prompt` samples per question, grade them, and charge the ledger for every
        sequence."""
        g = self.rollouts_per_prompt(self.config)
        batch, texts, answers, correct = self.generate_and_grade(problems, [g] * len(problems), round_index)
        accuracy = correct.view(len(problems), g)
        groups = Groups(problems, batch, texts, answers, accuracy, accuracy)
        groups.rewards, groups.components = self.reward(groups)
        if not torch.isfinite(groups.rewards).all():
            raise TrainingError(f"non-finite reward at step {self.step}; {self._kept_message()}")
        return groups

    def generate_and_grade(self, problems: list[Problem], sizes: list[int], round_index: int = 0):
        """`sizes[i]` rollouts of question i in one rollout call (charged by `rollout`), graded, and the questions
        counted in the ledger:
        (batch, texts, answers, correctness [sum(sizes)]), rows question after question."""
        rows = [p for p, size in zip(problems, sizes, strict=True) for _ in range(size)]
        batch = self.rollout([self.prompt(p) for p in rows], derived_seed(self.seed, "rollout", self.step, round_index))
        texts = []
        for row in range(batch.response_ids.shape[0]):
            ids = batch.response_ids[row, : int(batch.response_mask[row].sum())].tolist()
            texts.append(cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), DEFAULT_STOP)[0])
        answers = [extract(t, self.answer_format) for t in texts]
        verdicts = self.pool.grade([(self.grader, p.golds, a) for p, a in zip(rows, answers, strict=True)])
        self.ledger.prompts += len(problems)
        return batch, texts, answers, torch.tensor(verdicts, dtype=torch.float32)

    @staticmethod
    def rollouts_per_prompt(config: GRPOConfig) -> int:
        """Sequences generated per question (MC-GRPO generates one more than it trains)."""
        return config.group_size

    @classmethod
    def round_cost(cls, config: GRPOConfig, max_new_tokens: int, num_prompts: int, first: bool = True) -> Ledger:
        return schedule.round_cost(config, max_new_tokens, num_prompts, cls.rollouts_per_prompt(config), first)

    @classmethod
    def first_round_cost(cls, config: GRPOConfig, max_new_tokens: int) -> Ledger:
        return cls.round_cost(config, max_new_tokens, config.prompts_per_step)

    @classmethod
    def most_steps_paid(cls, config: GRPOConfig, max_new_tokens: int, budget: Budget) -> int | None:
        return schedule.most_steps_paid(cls.first_round_cost(config, max_new_tokens), budget)

    @classmethod
    def check_budget(cls, config: GRPOConfig, max_new_tokens: int, budget: Budget, flops_per_token: int = 0) -> None:
        schedule.check_budget(cls.name, config, cls.first_round_cost(config, max_new_tokens),
                              cls.rollouts_per_prompt(config), max_new_tokens, budget, flops_per_token)

    def collect(self) -> Groups | None:
        """The groups one step trains on; None when the budget cannot pay for them."""
        problems = self.draw_prompts()
        if problems is None:
            return None
        groups = self.generate_groups(problems)
        return groups.select(self.group_filter(groups))

    def draw_prompts(self) -> list[Problem] | None:
        """The step's questions from the sampler, or None (recording why) when the budget cannot pay for
        their generation round at worst-case cost."""
        n = self.config.prompts_per_step
        why = self.budget.allows(self.ledger, self.step_cost(n))
        if why:
            self.stopped_by = why
            return None
        return self.sampler(n)

    def step_cost(self, num_prompts: int, first: bool = True) -> Ledger:
        """What a generation round of `num_prompts` questions may cost (`round_cost`, with its generation FLOPs at
        the worst case), and when it is the step's first round, the step's update compute. Prompt and update
        compute are known only once spent: the previous step's stand in for them."""
        return schedule.worst_step_cost(self.round_cost(self.config, self.max_new_tokens, num_prompts, first),
                                        self.last_step if first else None, self.flops_per_token)

    def update(self, groups: Groups) -> dict:
        """Advantages, then mu epochs of minibatch updates; returns the step's statistics."""
        cfg = self.config
        advantages = self.step_advantages(groups).to(groups.batch.response_ids.device)
        batch = groups.batch
        mask = batch.response_mask.float()
        num_groups = len(groups.problems)
        minibatches = min(cfg.minibatches, num_groups)
        with torch.no_grad():
            if self.reference is not None:  # a KL that is not in the loss (kl_beta 0) is only logged
                ref_logp, _ = self.score(self.reference, batch, diagnostic=not cfg.kl_beta)
            # With one epoch and one minibatch the policy has not moved when it is scored, so the ratio is 1 and
            # the scoring forward itself gives old_logp; otherwise old_logp is scored once before any update.
            old_logp = None
            if cfg.ppo_epochs > 1 or minibatches > 1:
                self.model.eval()
                old_logp, _ = self.forward(batch)
        self.model.train()
        self._sampler_stats = torch.zeros(3)  # |trainer - sampler| log-prob sum, tokens at the TIS cap, tokens
        reference_advantages = self.grpo_advantages_of(groups).to(advantages.device)
        updates = cfg.ppo_epochs * minibatches
        losses, entropies, kls, old_kls, grad_norms = [], [], [], [], []
        clipped = torch.zeros(3)  # response tokens cut by the low clip, the high clip, the dual clip
        clipped_sequences = ratio_sum = 0.0
        ratio_max = 0.0
        for epoch in range(cfg.ppo_epochs):
            for chunk in minibatch_groups(num_groups, minibatches, derived_seed(self.seed, "minibatch", self.step,
                                                                                epoch)):
                rows = groups.rows(chunk)
                sub = batch.select(rows)
                logp, entropy = self.forward(sub, with_entropy=True)
                old = old_logp[rows] if old_logp is not None else logp.detach()
                kl = algos.k3_kl(logp, ref_logp[rows]) if self.reference is not None else None
                logp = self.correct_for_sampler(logp, old, sub)  # after the KL: the weight is the policy gradient's
                sub_mask = mask[rows]
                loss = self.loss(logp, old, advantages[rows], sub_mask, kl)
                if not torch.isfinite(loss):
                    raise TrainingError(f"non-finite loss at step {self.step}; {self._kept_message()}")
                self.note("update_change", update_change(loss, logp, old, reference_advantages[rows], sub_mask,
                                                         self.grpo_reference, self.max_new_tokens) / updates, add=True)
                self._set_learning_rate()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norms.append(float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)))
                self.optimizer.step()
                self.ledger.steps += 1
                self.observe_minibatch(rows, logp.detach(), old, advantages[rows], sub_mask,
                                       None if kl is None else kl.detach())
                ratio = torch.exp(algos.log_ratio(logp.detach(), old))
                counts = algos.clipped_tokens(ratio, advantages[rows], sub_mask, cfg.eps_low, cfg.eps_high,
                                              cfg.dual_clip, per_sequence=True)
                clipped += counts.sum(dim=0).cpu()
                clipped_sequences += float((counts.sum(dim=1) > 0).sum())
                on = sub_mask > 0
                ratio_sum += float(ratio[on].sum())
                ratio_max = max(ratio_max, float(ratio[on].max()) if on.any() else 0.0)
                losses.append(loss.item())
                entropies.append(masked_mean(entropy, sub_mask))
                old_kls.append(masked_mean(algos.k3_kl(logp.detach(), old), sub_mask))
                if kl is not None:
                    kls.append(masked_mean(kl.detach(), sub_mask))
        self.model.eval()
        tokens = float(mask.sum()) * cfg.ppo_epochs
        self.note_all(algos.clip_shares(clipped, tokens))
        sequences = float((mask.sum(dim=-1) > 0).sum()) * cfg.ppo_epochs
        return {"loss": sum(losses) / len(losses), "entropy": sum(entropies) / len(entropies),
                "kl": sum(kls) / len(kls) if kls else None, "kl_old": sum(old_kls) / len(old_kls),
                "clip_sequences": clipped_sequences / max(sequences, 1.0), "ratio_mean": ratio_sum / max(tokens, 1.0),
                "ratio_max": ratio_max, "grad_norm": sum(grad_norms) / len(grad_norms),
                "grad_norm_max": max(grad_norms), **self.sampler_stats(), **self.after_update(groups)}

    def grpo_advantages_of(self, groups: Groups) -> torch.Tensor:
        """Plain GRPO's advantages [rows] of the step's trained samples, group by group (GDRO's steps hold groups
        of several sizes): what the `update_change` probe compares the variant's update with."""
        return torch.cat([reference_advantages(part.accuracy, torch.tensor([a is not None for a in part.answers]),
                                               self.grpo_reference).reshape(-1)
                          for part in getattr(groups, "parts", [groups])])

    def correct_for_sampler(self, logp: torch.Tensor, old: torch.Tensor, sub: RolloutBatch) -> torch.Tensor:
        """Measure how far the sampler's log-probs are from the trainer's (see `sampler_stats`) and, for an
        engine's rollouts with `tis_cap`, weight each token's gradient by the truncated importance ratio
        min(exp(old - sampler), cap)."""
        mask = sub.response_mask.float()
        gap = (old - sub.old_logp).detach() * mask
        ratio, cap = torch.exp(gap), self.config.tis_cap
        at_cap = float(((ratio > cap) * mask).sum()) if cap is not None else 0.0
        self._sampler_stats += torch.tensor([float(gap.abs().sum()), at_cap, float(mask.sum())])
        if self._engine is None or cap is None:
            return logp
        return algos.weight_token_gradients(logp, torch.clamp(ratio, max=cap) * mask)

    def sampler_stats(self) -> dict:
        """The step's `sampler_gap` (mean |trainer - sampler| log-prob per trained token: 0 up to rounding for
        the built-in sampler); for vLLM rollouts the weight pushes so far and their seconds, and under truncated
        importance sampling `tis_truncated` (share of trained tokens whose weight hit the cap)."""
        gap, truncated, tokens = self._sampler_stats.tolist()
        stats = {"sampler_gap": gap / max(tokens, 1.0)}
        if self._engine is not None:
            stats.update(weight_pushes=self._engine.pushes, weight_push_s=round(self._engine.push_seconds, 3))
            if self.config.tis_cap is not None:
                stats["tis_truncated"] = truncated / max(tokens, 1.0)
        return stats

    def step_advantages(self, groups: Groups) -> torch.Tensor:
        """Per-row advantages [rows] of the step's groups: the advantage hook, flattened (GDRO applies it
        part by part to groups of different sizes)."""
        return self.advantage(groups).reshape(-1)

    def observe_minibatch(self, rows, logp, old_logp, advantages, mask, kl) -> None:
        """Called after each minibatch update with what its loss saw (detached); GDRO's adversaries learn
        from it."""

    def after_update(self, groups: Groups) -> dict:
        """Runs once the step's updates are done; returns extra figures for the step's log record."""
        return {}

    def _set_learning_rate(self) -> None:
        lr = self.config.lr * min(1.0, (self.step + 1) / max(1, self.config.warmup_steps))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def note_advantage_change(self, rewards: torch.Tensor, advantages: torch.Tensor) -> None:
        """Probe `advantage_change`: mean |A - A_GRPO| over the step's samples, A_GRPO being plain GRPO's
        advantage of `rewards`; 0 exactly when a variant's advantage hook gave GRPO's numbers."""
        self.note_all(advantage_change(rewards, advantages, self.config))

    def note_all(self, probes: dict[str, float], add: bool = False) -> None:
        for name, value in probes.items():
            self.note(name, value, add)

    def note(self, name: str, value: float, add: bool = False) -> None:
        """Record probe `name`'s value for the current step (`add`: accumulate onto what the step noted)."""
        self.probes[name] = (self.probes.get(name, 0.0) if add else 0.0) + float(value)

    # ----------------------------------------------------------------------------------- the run

    def train(self) -> Ledger:
        """Train until the budget's first limit; resumes from the run directory's checkpoint if there is one."""
        try:
            return self._train()
        finally:  # an error or Ctrl-C too: the engine's processes and shared memory are not left behind
            if self._engine is not None:
                logger.info("vLLM rollouts: %.1f s pushing weights", self._engine.push_seconds)
                self._engine.close()
                self._engine = None

    def _train(self) -> Ledger:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = self._resume()
        if not resumed:
            self.check_budget(self.config, self.max_new_tokens, self.budget, self.flops_per_token)
        started = time.monotonic() - self.ledger.wall_s
        bar = tqdm(total=100, initial=round(100 * self._spent()), desc=f"train {self.name}", unit="%",
                   disable=not self.progress, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/100% of budget [{elapsed}<{remaining}{postfix}]")
        while True:
            self.ledger.wall_s = time.monotonic() - started
            self.probes = {}
            before = dataclasses.replace(self.ledger)
            groups = self.collect()
            if groups is None:
                break
            steps_before = self.ledger.steps
            stats = self.update(groups) if len(groups.problems) else {"loss": None, "entropy": None, "kl": None}
            if self.ledger.steps == steps_before:  # nothing survived the filter: the step still counts as spent
                self.ledger.steps += schedule.updates_per_step(self.config, self.config.prompts_per_step)
            self.step += 1
            self.ledger.wall_s = time.monotonic() - started
            self.last_step = self.ledger.minus(before)
            record = {"step": self.step, **self.ledger.to_dict(), **self.step_stats(groups), **stats,
                      "probes": dict(self.probes)}
            self._append_log(record)
            if self.step % self.config.checkpoint_every == 0:
                self.save_checkpoint()
            bar.n = round(100 * self._spent())
            bar.set_postfix(step=self.step, reward=f"{record['reward_mean']:.3f}", acc=f"{record['accuracy']:.3f}")
        bar.close()
        self.save_checkpoint()
        return self.ledger

    def step_stats(self, groups: Groups) -> dict:
        """Per-step figures for the training log (what the leaderboard's curves show): reward mean and spread,
        accuracy, response length (all, of correct and of wrong answers), truncation, and the share of trained
        groups whose rewards do not vary (no signal for GRPO's advantage)."""
        if not len(groups.problems):
            return {"reward_mean": float("nan"), "accuracy": float("nan"), "response_length": float("nan"),
                    "groups_trained": 0}
        lengths = groups.batch.lengths.float().cpu()
        correct = groups.accuracy.reshape(-1).cpu() > 0
        rewards = groups.rewards.reshape(-1).float()
        return {"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
                "accuracy": float(groups.accuracy.mean()), "response_length": float(lengths.mean()),
                "length_correct": float(lengths[correct].mean()) if correct.any() else None,
                "length_wrong": float(lengths[~correct].mean()) if (~correct).any() else None,
                "truncated": float(groups.batch.truncated.float().mean()),
                "zero_variance_groups": self.flat_groups_share(groups), "groups_trained": len(groups.problems)}

    @staticmethod
    def flat_groups_share(groups) -> float:
        """Share of the step's trained groups whose rewards are all equal (groups of different sizes: GDRO)."""
        parts = getattr(groups, "parts", [groups])
        flat = sum(int((part.rewards.max(dim=-1).values == part.rewards.min(dim=-1).values).sum()) for part in parts)
        return flat / max(1, sum(len(part.problems) for part in parts))

    def _spent(self) -> float:
        fractions = [getattr(self.ledger, name) / limit for name in LIMITS
                     if (limit := getattr(self.budget, name))]
        return min(1.0, max(fractions))

    def _kept_message(self) -> str:
        return (f"stopped; the last good checkpoint is kept in {self.run_dir / CHECKPOINT} "
                f"(lower the learning rate, e.g. --set {self.name}.lr=1e-5)")

    # ------------------------------------------------------------------------------ checkpointing

    def save_checkpoint(self) -> None:
        """The whole trainer state, written atomically: model, optimizer, step, sampler position, ledger and
        the variant's own state (the learning rate and every random draw derive from the step and seed)."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                 "cursor": self.cursor, "ledger": self.ledger.to_dict(), "last_step": self.last_step.to_dict(),
                 "stopped_by": self.stopped_by,
                 "variant_state": self.state_dict()}
        tmp = self.run_dir / f".{CHECKPOINT}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / CHECKPOINT)
        write_ledger(self.run_dir, self.budget, self.ledger, self.stopped_by, self.step)

    def _resume(self) -> bool:
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            (self.run_dir / TRAIN_LOG).unlink(missing_ok=True)
            return False
        state = torch.load(path, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.cursor = state["step"], state["cursor"]
        self.ledger = Ledger.from_dict(state["ledger"])
        self.last_step = Ledger.from_dict(state.get("last_step", {}))
        self.load_state_dict(state["variant_state"])
        trim_train_log(self.run_dir, self.step)
        return True

    def _append_log(self, record: dict) -> None:
        append_train_log(self.run_dir, record)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float((values * mask).sum() / mask.sum().clamp(min=1))
