"""Every variant's math, registered under its name: the single source the built-in trainer and the engine adapters
(TRL, verl) call, so a variant means the same numbers on every engine.

A variant's record (`VariantMath`) holds four pure functions with these signatures:

    reward(batch, config)       -> (rewards [N, G], components {name: [N, G]}, probes {name: float})
    group_filter(batch, config) -> keep [N] bool                      (batch.rewards is set)
    advantage(batch, config)    -> (advantages [N, G], probes)        (batch of the kept groups)
    loss(logp, old_logp, advantages [B], mask [B, T], kl [B, T] | None, config, max_length)
                                -> (scalar loss, probes)              (one minibatch; probes summed over them)

`batch` is a `GroupBatch`: what an engine knows about one step's N questions x G responses, as tensors. `config`
is the variant's config (its dataclass, or any object with the same attribute names: an engine rebuilds it from
JSON). Probes are the mechanism statistics of `GRPOTrainer.mechanism`, so every engine logs them the same way.

A variant whose mechanism needs more than these functions (its own rollouts, prompts, state across steps, or
whole groups inside each minibatch) names what in `engine_hooks`; an engine without that hook refuses it with a
clear message, and the built-in trainer implements it in the variant's module. Its record's functions are then
the pure parts only (the built-in variant overrides the rest).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from harness.registry import Registry
from trainers import algos
from trainers.algos import terms


class MissingInput(ValueError):
    """A variant's math reads something the engine running it does not provide (raised before any training)."""


@dataclass
class GroupBatch:
    """One step's groups, engine-neutral: N questions x G responses, every [N, G] tensor row-major by question.

    Only `accuracy` is always there; an engine leaves out what it cannot supply (verl's advantage step sees no
    response text), and a variant that reads a missing field raises `MissingInput` naming it.
    """

    accuracy: torch.Tensor  # [N, G] 0/1 correctness from the task's grader
    lengths: torch.Tensor | None = None  # [N, G] response tokens
    truncated: torch.Tensor | None = None  # [N, G] bool: stopped by the generation limit, not by EOS
    answered: torch.Tensor | None = None  # [N, G] bool: an answer could be extracted
    texts: list[str] | None = None  # N * G responses
    likelihood: torch.Tensor | None = None  # [N, G] mean token log-prob under the sampling policy
    aux: Mapping[str, torch.Tensor] | None = None  # [N, G] the train task's auxiliary rewards (GDPO)
    step: int | None = None  # rollout steps done before this one
    max_length: int | None = None  # the generation limit L_max
    thinks: bool = False  # the template asks for <think>...</think>
    rewards: torch.Tensor | None = None  # [N, G] set once the reward is computed
    components: Mapping[str, torch.Tensor] = field(default_factory=dict)  # the reward's named parts

    def need(self, name: str):
        value = getattr(self, name)
        if value is None:
            raise MissingInput(name)
        return value

    @property
    def group_size(self) -> int:
        return self.accuracy.shape[1]

    def select(self, keep: torch.Tensor) -> GroupBatch:
        """The groups where `keep` [N] is True."""
        def pick(value):
            return value[keep] if isinstance(value, torch.Tensor) else value

        rows = keep.repeat_interleave(self.group_size).tolist()
        return dataclasses.replace(
            self, accuracy=self.accuracy[keep], lengths=pick(self.lengths), truncated=pick(self.truncated),
            answered=pick(self.answered), likelihood=pick(self.likelihood), rewards=pick(self.rewards),
            texts=None if self.texts is None else [t for t, k in zip(self.texts, rows, strict=True) if k],
            aux=None if self.aux is None else {k: v[keep] for k, v in self.aux.items()},
            components={k: v[keep] for k, v in self.components.items()})


Reward = Callable[[GroupBatch, object], tuple[torch.Tensor, dict, dict]]
GroupFilter = Callable[[GroupBatch, object], torch.Tensor]
Advantage = Callable[[GroupBatch, object], tuple[torch.Tensor, dict]]
Loss = Callable[..., tuple[torch.Tensor, dict]]


# ---------------------------------------------------------------------------------------------- GRPO (§2)

def grpo_reward(batch: GroupBatch, cfg) -> tuple[torch.Tensor, dict, dict]:
    """Accuracy in {0, 1}, plus `format_reward` when an answer could be extracted."""
    components = {"accuracy": batch.accuracy}
    total = batch.accuracy.clone()
    if cfg.format_reward:
        components["format"] = batch.need("answered").float()
        total = total + cfg.format_reward * components["format"]
    return total, components, {}


def keep_all(batch: GroupBatch, cfg) -> torch.Tensor:
    """Every group is trained on (a degenerate group just gets A = 0)."""
    return torch.ones(batch.accuracy.shape[0], dtype=torch.bool)


def grpo_advantage(batch: GroupBatch, cfg) -> tuple[torch.Tensor, dict]:
    return algos.grpo_advantages(batch.rewards, cfg.advantage_eps, cfg.unbiased_std), {}


def ppo_clip_loss(logp, old_logp, advantages, mask, kl, cfg, max_length) -> tuple[torch.Tensor, dict]:
    """Aggregated PPO-clip loss (+ beta * k3 KL) over a minibatch; advantages are per sequence [B]."""
    ratio = torch.exp(algos.log_ratio(logp, old_logp))
    per_token = -algos.clipped_objective(ratio, advantages[:, None], cfg.eps_low, cfg.eps_high, cfg.dual_clip)
    if cfg.kl_beta and kl is not None:
        per_token = per_token + cfg.kl_beta * kl
    return algos.AGGREGATIONS.get(cfg.loss_aggregation)(per_token, mask, max_length=max_length), {}


def advantage_change(reference_rewards: torch.Tensor, advantages: torch.Tensor, cfg) -> dict:
    """Probe `advantage_change`: mean |A - A_GRPO|, A_GRPO being GRPO's advantage of `reference_rewards`; 0 exactly
    when a variant's advantage gave GRPO's numbers."""
    grpo = algos.grpo_advantages(reference_rewards, cfg.advantage_eps, cfg.unbiased_std)
    return {"advantage_change": float((advantages - grpo).abs().mean()) if advantages.numel() else 0.0}


def reference_advantages(accuracy: torch.Tensor, answered: torch.Tensor | None, reference_config) -> torch.Tensor:
    """Plain GRPO's advantages [N, G] of a step's groups under `reference_config` (its reward: accuracy, plus the
    shared format reward): what `update_change` compares a variant's update with."""
    rewards = accuracy.float()
    if reference_config.format_reward:
        rewards = rewards + reference_config.format_reward * answered.float().view_as(rewards)
    return algos.grpo_advantages(rewards, reference_config.advantage_eps, reference_config.unbiased_std)


def update_change(loss: torch.Tensor, logp: torch.Tensor, old_logp: torch.Tensor, reference_advantages: torch.Tensor,
                  mask: torch.Tensor, reference_config, max_length: int | None) -> float:
    """Probe `update_change` of one minibatch (`algos.update_change`): the variant's `loss` and plain GRPO's under
    `reference_config` (its advantages `reference_advantages` [B]) on the same log-probs, each differentiated with
    respect to them (through the loss's own graph only, not the model's)."""
    weights = torch.autograd.grad(loss, logp, retain_graph=True, allow_unused=True)[0]
    probe = logp.detach().requires_grad_()
    reference_loss, _ = ppo_clip_loss(probe, old_logp, reference_advantages, mask, None, reference_config, max_length)
    reference = torch.autograd.grad(reference_loss, probe, allow_unused=True)[0]
    zeros = torch.zeros_like(probe)
    return algos.update_change((zeros if weights is None else weights) * mask,
                               (zeros if reference is None else reference) * mask)


@dataclass(frozen=True)
class VariantMath:
    """One variant's registered math (signatures in the module docstring); GRPO's where a variant keeps it."""

    reward: Reward = grpo_reward
    group_filter: GroupFilter = keep_all
    advantage: Advantage = grpo_advantage
    loss: Loss = ppo_clip_loss
    # Hooks beyond these functions that the variant needs from an engine: hook -> why. Empty: registry-shaped,
    # the four functions are the whole variant and any engine that calls them runs it.
    engine_hooks: Mapping[str, str] = field(default_factory=dict)
    # Hooks a config flag can turn off (hook -> the flag that turns it on), e.g. DAPO's dynamic sampling.
    hook_switches: Mapping[str, str] = field(default_factory=dict)

    def hooks_needed(self, config) -> dict[str, str]:
        """The engine hooks this variant needs under `config`; empty: the four functions are the whole of it."""
        return {hook: why for hook, why in self.engine_hooks.items()
                if hook not in self.hook_switches or getattr(config, self.hook_switches[hook])}

    def switchable(self) -> bool:
        """Whether some config runs it on the four functions alone (every hook it has can be turned off)."""
        return all(hook in self.hook_switches for hook in self.engine_hooks)

    def shape(self, batch: GroupBatch, config) -> tuple[GroupBatch, torch.Tensor, torch.Tensor, dict]:
        """One step's reward, filter and advantage, as an engine that keeps every group in its batch needs them:
        (the batch with its rewards, kept groups [N], advantages [N, G] with 0 for the dropped groups, probes)."""
        rewards, components, probes = self.reward(batch, config)
        batch = dataclasses.replace(batch, rewards=rewards, components=components)
        keep = self.group_filter(batch, config)
        advantages = torch.zeros_like(rewards)
        if keep.any():
            kept, advantage_probes = self.advantage(batch.select(keep), config)
            advantages[keep] = kept.to(advantages.dtype)
            probes = {**probes, **advantage_probes}
        return batch, keep, advantages, probes


MATH: Registry[VariantMath] = Registry("variant math", builtins_module="trainers.algos.variants")
MATH.register("grpo", VariantMath())


# ------------------------------------------------------------------------------------------- Dr. GRPO (§3)

def dr_grpo_reward(batch: GroupBatch, cfg):
    total, components, probes = grpo_reward(batch, cfg)
    if cfg.zero_reward_if_truncated:
        total = total * (~batch.need("truncated").bool()).float()
    return total, components, probes


def dr_grpo_advantage(batch: GroupBatch, cfg):
    advantages = (grpo_advantage(batch, cfg)[0] if cfg.std_normalised
                  else algos.mean_centred_advantages(batch.rewards))
    return advantages, advantage_change(batch.rewards, advantages, cfg)


MATH.register("dr-grpo", VariantMath(reward=dr_grpo_reward, advantage=dr_grpo_advantage))


# ----------------------------------------------------------------------------------------------- DAPO (§4)

def dapo_reward(batch: GroupBatch, cfg):
    """+1 / -1 correctness plus the soft overlong penalty over the last L_cache tokens before L_max."""
    correctness = torch.where(batch.accuracy > 0, cfg.reward_correct, cfg.reward_wrong)
    max_length = batch.need("max_length")
    cache = max(1, round(cfg.overlong_buffer_fraction * max_length))
    overlong = algos.overlong_penalty(batch.need("lengths"), max_length, cache,
                                      cfg.overlong_penalty_factor).view_as(correctness)
    return (correctness + overlong, {"accuracy": batch.accuracy, "overlong": overlong},
            {"overlong_penalised": float((overlong < 0).float().mean())})


def non_degenerate(batch: GroupBatch, cfg) -> torch.Tensor:
    """DAPO's dynamic-sampling filter, on accuracy rather than the shaped reward."""
    if not cfg.dynamic_sampling:
        return keep_all(batch, cfg)
    return algos.non_degenerate_groups(batch.accuracy)


MATH.register("dapo", VariantMath(reward=dapo_reward, group_filter=non_degenerate, engine_hooks={
    "resample": "dynamic sampling generates further prompt batches until prompts_per_step groups survive the "
                "filter (set dapo.dynamic_sampling=false to run the rest of DAPO on an engine without it)"},
    hook_switches={"resample": "dynamic_sampling"}))


# ------------------------------------------------------------------------------------- DGPO / MathForge (§7)

def dgpo_advantage(batch: GroupBatch, cfg):
    advantages = (algos.mad_advantages(batch.rewards, cfg.mad_eps) if cfg.mad_scaling
                  else algos.grpo_advantages(batch.rewards, cfg.advantage_eps, cfg.unbiased_std))
    probes = {}
    if cfg.question_weighting:
        accuracy = batch.accuracy.mean(dim=-1)  # p_q from the accuracy component, not a shaped reward
        valid = algos.non_degenerate_groups(batch.accuracy)
        weights = algos.difficulty_weights(accuracy, valid, cfg.dqw_temperature)
        advantages = advantages * weights[:, None]
        if valid.any():
            probes["weight_spread"] = float(weights[valid].max() / weights[valid].min() - 1)
    return advantages, {**probes, **advantage_change(batch.rewards, advantages, cfg)}


def dgpo_loss(logp, old_logp, advantages, mask, kl, cfg, max_length):
    # Only valid-group tokens count in the normaliser, so degenerate groups (A = 0) do not dilute the batch. A
    # sample of a valid group never has A = 0 exactly under a binary reward (r - mean != 0), so A != 0 marks the
    # valid groups' rows within any minibatch.
    valid = (advantages != 0).to(mask.dtype)[:, None]
    return ppo_clip_loss(logp, old_logp, advantages, mask * valid, kl, cfg, max_length)


MATH.register("dgpo", VariantMath(advantage=dgpo_advantage, loss=dgpo_loss))


# ----------------------------------------------------------------------------------------------- NGRPO (§8)

def drop_all_correct(batch: GroupBatch, cfg) -> torch.Tensor:
    return terms.not_all_correct(batch.accuracy) if cfg.drop_all_correct else keep_all(batch, cfg)


def ngrpo_advantage(batch: GroupBatch, cfg):
    virtual_reward = cfg.max_reward if cfg.max_reward is not None else 1.0 + max(0.0, cfg.format_reward)
    advantages = terms.virtual_max_advantages(batch.rewards, virtual_reward, cfg.virtual_samples,
                                              cfg.advantage_eps, cfg.unbiased_std)
    flat = (batch.rewards == batch.rewards[:, :1]).all(dim=-1)
    lifted = flat & (advantages != 0).any(dim=-1)
    return advantages, {"virtual_signal": float(lifted.float().mean()) if len(flat) else 0.0}


MATH.register("ngrpo", VariantMath(group_filter=drop_all_correct, advantage=ngrpo_advantage))


# ------------------------------------------------------------------------------------------------ GDPO (§11)

def gdpo_reward(batch: GroupBatch, cfg):
    total, components, probes = grpo_reward(batch, cfg)
    if cfg.aux_reward_weight:
        for name, values in (batch.aux or {}).items():
            components[name] = values
            total = total + cfg.aux_reward_weight * values
    return total, components, probes


def gdpo_advantage(batch: GroupBatch, cfg):
    # Every component the reward produced, at its weight there: accuracy 1, format, the auxiliary rewards.
    weights = {name: {"accuracy": 1.0, "format": cfg.format_reward}.get(name, cfg.aux_reward_weight)
               for name in batch.components}
    weights = {name: w for name, w in weights.items() if w}
    stacked = torch.stack([batch.components[name] for name in weights])
    token_counts = batch.need("lengths") if cfg.batch_norm_over == "tokens" else None
    advantages = terms.gdpo_advantages(stacked, torch.tensor(list(weights.values())), cfg.advantage_eps,
                                       cfg.unbiased_std, token_counts)
    others = stacked[1:] if len(stacked) > 1 else stacked.new_zeros((1, *stacked.shape[1:]))
    varied = float((others != others[..., :1]).any(dim=-1).any(dim=0).float().mean())
    return advantages, {"components_varied": varied, **advantage_change(batch.rewards, advantages, cfg)}


MATH.register("gdpo", VariantMath(reward=gdpo_reward, advantage=gdpo_advantage))


# ----------------------------------------------------------------------------------------------- A-GRAE (§13)

def a_grae_advantage(batch: GroupBatch, cfg):
    if cfg.std_normalised:
        advantages = algos.grpo_advantages(batch.rewards, cfg.advantage_eps, cfg.unbiased_std)
    else:
        advantages = algos.mean_centred_advantages(batch.rewards)
    accuracy = batch.accuracy.mean(dim=-1)
    batch_accuracy = accuracy.mean()
    if cfg.curriculum == "batch-accuracy":
        progress = batch_accuracy
    else:
        progress = min(1.0, batch.need("step") / cfg.curriculum_steps)
    focused = (terms.difficulty_focus(advantages, accuracy, progress, cfg.focus_scale, cfg.advantage_eps)
               if cfg.difficulty_focus else advantages)
    advantages = terms.suppress_correct(focused, batch_accuracy, cfg.suppression_alpha)
    return advantages, advantage_change(batch.rewards, advantages, cfg)


MATH.register("a-grae", VariantMath(advantage=a_grae_advantage))


# -------------------------------------------------------------------------------------------- GRPO-LEAD (§14)

def grpo_lead_reward(batch: GroupBatch, cfg):
    lengths = batch.need("lengths")
    alpha = torch.full((batch.accuracy.shape[0], 1), cfg.length_alpha)
    if cfg.code_reward_rules:
        shortest = lengths.sort(dim=-1).values[:, :terms.LENGTH_GATE_SHORTEST].float().mean(dim=-1, keepdim=True)
        alpha = alpha * (shortest > cfg.length_term_min_tokens)
    correct = batch.accuracy > 0
    rewards = terms.lead_rewards(lengths, correct, alpha, cfg.wrong_reward)
    if cfg.code_reward_rules:
        texts = batch.need("texts")
        answered = batch.need("answered").bool().flatten()
        unanswered = torch.tensor([not a or (batch.thinks and "</think>" not in t)
                                   for a, t in zip(answered.tolist(), texts, strict=True)]).view_as(rewards)
        degenerate = torch.tensor([terms.is_degenerate(t) for t in texts]).view_as(rewards)
        rewards = torch.where(unanswered, torch.zeros_like(rewards), rewards)
        rewards = torch.where(degenerate, torch.full_like(rewards, cfg.repetition_reward), rewards)
    length_term = float((rewards[correct] - 1).abs().mean()) if correct.any() else 0.0
    return rewards, {"accuracy": batch.accuracy}, {"length_term": length_term}


def rejection_sampling(batch: GroupBatch, cfg) -> torch.Tensor:
    """Drop groups whose rewards are all <= 0, or all exactly 1 (an all-correct group the length term spread is
    kept)."""
    if not cfg.rejection_sampling:
        return keep_all(batch, cfg)
    return ~((batch.rewards <= 0).all(dim=-1) | (batch.rewards == 1).all(dim=-1))


def grpo_lead_advantage(batch: GroupBatch, cfg):
    advantages = algos.grpo_advantages(batch.rewards, cfg.advantage_eps, cfg.unbiased_std)
    advantages = terms.difficulty_reweighted(advantages, batch.rewards, low=cfg.difficulty_weight_low,
                                             high=cfg.difficulty_weight_high, midpoint=cfg.difficulty_midpoint,
                                             steepness=cfg.difficulty_steepness)
    return advantages, advantage_change(batch.accuracy, advantages, cfg)


MATH.register("grpo-lead", VariantMath(reward=grpo_lead_reward, group_filter=rejection_sampling,
                                       advantage=grpo_lead_advantage))


# ------------------------------------------------------------------------------------------ Reflection (§15)

def reflection_reward(batch: GroupBatch, cfg):
    accuracy = batch.accuracy
    answer_format = batch.need("answered").float()
    markers = terms.distinct_markers(batch.need("texts")).view_as(accuracy)
    per_marker = cfg.reflection_reward if batch.need("step") >= cfg.reflection_start_step else 0.0
    total = terms.reflection_reward(accuracy, answer_format, markers, cfg.format_reward, per_marker,
                                    cfg.reflection_cap, cfg.reflection_only_if_correct)
    reflection = terms.rewarded_markers(accuracy, markers, cfg.reflection_cap, cfg.reflection_only_if_correct)
    probes = {"marker_rate": float((markers > 0).float().mean()),
              "reflection_paid": float((reflection * per_marker > 0).float().mean())}
    return total, {"accuracy": accuracy, "format": answer_format, "reflection": reflection}, probes


MATH.register("reflection", VariantMath(reward=reflection_reward))


# ---------------------------------------------------------------------------------------- Unlikeliness (§16)

def skip_uniform_groups(batch: GroupBatch, cfg) -> torch.Tensor:
    # On the unshaped reward: the rank penalty would give an all-correct group spurious variance.
    if not cfg.skip_uniform_groups:
        return keep_all(batch, cfg)
    return (batch.rewards != batch.rewards[:, :1]).any(dim=-1)


def unlikeliness_advantage(batch: GroupBatch, cfg):
    shaped = terms.unlikeliness_rewards(batch.rewards, batch.need("likelihood"), cfg.unlikeliness_beta)
    rewarded = batch.rewards > 0
    penalised = float((shaped < batch.rewards)[rewarded].float().mean()) if rewarded.any() else 0.0
    return (algos.grpo_advantages(shaped, cfg.advantage_eps, cfg.unbiased_std), {"rank_penalised": penalised})


MATH.register("unlikeliness", VariantMath(group_filter=skip_uniform_groups, advantage=unlikeliness_advantage))


# ----------------------------------------------------------------------------------------------- DisCO (§17)

def disco_labels(batch: GroupBatch, cfg):
    """+1 / -1 labels from correctness, the binary signal DisCO needs (a format bonus never makes a wrong answer
    a positive; ours), in the advantage slot."""
    probes = {"discriminated": float(algos.non_degenerate_groups(batch.accuracy).float().mean()),
              "hinge_active": 0.0}
    return 2 * batch.accuracy - 1, probes


def disco_loss(logp, old_logp, advantages, mask, kl, cfg, max_length):
    """The discriminative objective over whole groups (rows in group order) plus the squared-hinge trust region."""
    scores = terms.sequence_scores(logp, old_logp, mask, cfg.score).view(-1, cfg.group_size)
    labels = advantages.view(-1, cfg.group_size)
    if cfg.objective == "disco-b":
        tau = None
    else:
        tau = cfg.tau if cfg.tau is not None else (10.0 if cfg.score == "log-l" else 1.0)
    objective = terms.discriminative_objective(scores, labels, tau)
    drift = algos.token_mean(old_logp - logp, mask)
    loss = -objective.mean() + terms.squared_hinge_penalty(drift, cfg.constraint_beta, cfg.constraint_delta)
    if cfg.kl_beta and kl is not None:  # 0 in DisCO (no reference model); honoured when a run sets it
        loss = loss + cfg.kl_beta * algos.token_mean(kl, mask)
    return loss, {"hinge_active": float(drift.detach() > cfg.constraint_delta)}


MATH.register("disco", VariantMath(advantage=disco_labels, loss=disco_loss, engine_hooks={
    "whole-group minibatches": "the objective compares a question's positives with its negatives, so every "
                               "minibatch (and data-parallel shard) must hold whole groups in group order"}))


# --------------------------------------------------------------------------------------------- MC-GRPO (§20)

def mc_grpo_reward(batch: GroupBatch, cfg):
    total, components, probes = grpo_reward(batch, cfg)
    # The skeleton's accuracy term is 1 per correct answer; rescale it to the code's reward.
    return total + (cfg.reward_correct - 1) * batch.accuracy, components, probes


def median_advantage(batch: GroupBatch, cfg):
    """(r - median) / (MAD + eps) over each group of G + 1 (the pivot included; the trainer drops it after)."""
    return terms.median_advantages(batch.rewards, cfg.mad_eps, cfg.mad_floor, cfg.unbiased_std), {}


MATH.register("mc-grpo", VariantMath(reward=mc_grpo_reward, advantage=median_advantage, engine_hooks={
    "pivot rollout": "generates G + 1 responses a question, centres on the median one and trains the other G"}))


# ------------------------------------------- variants whose mechanism lives in hooks beyond the four functions

MATH.register("n-grpo", VariantMath(engine_hooks={
    "rollout": "mixes the embeddings of the sampled token's neighbours inside the decode loop"}))
MATH.register("r3", VariantMath(engine_hooks={
    "replay buffer": "keeps past trajectories across steps, replays them into groups and adds reflection copies "
                     "of questions (state and extra prompts an engine's batch does not carry)"}))
MATH.register("prompt-aug", VariantMath(engine_hooks={
    "prompt": "renders each question with one of several templates and rewards each template's format"}))
for _name in ("prompt-gdro", "rollout-gdro"):
    MATH.register(_name, VariantMath(engine_hooks={
        "per-prompt rollout counts": "an adversary over difficulty bins reweights or reallocates rollouts across "
                                     "questions from step to step (ragged groups and state)"}))


def registry_shaped(name: str) -> bool:
    """Whether the four registered functions can be the whole variant (with its defaults, or with its hooks
    switched off in its config): what an engine adapter registers."""
    return MATH.get(name).switchable()


def missing_input(name: str, config, supplied: tuple[str, ...]) -> str | None:
    """The first GroupBatch field variant `name`'s reward, filter or advantage reads under `config` that is not
    among `supplied`; None when those fields suffice. Found by running them on a small synthetic batch."""
    group = config.group_size
    accuracy = torch.tensor([[1.0] * (group // 2) + [0.0] * (group - group // 2), [1.0] * group])
    values = {"lengths": accuracy.long() + 3, "truncated": accuracy < 0, "answered": accuracy >= 0,
              "texts": ["wait, let me check: 1"] * accuracy.numel(), "likelihood": -accuracy, "aux": {}, "step": 0,
              "max_length": 8}
    batch = GroupBatch(accuracy=accuracy, **{k: v for k, v in values.items() if k in supplied})
    try:  # the batch's mixed group survives every filter, so the advantage runs too
        MATH.get(name).shape(batch, config)
    except MissingInput as missing:
        return str(missing)
    return None


def refuse_unless_registry_shaped(engine: str, name: str, config, provided: tuple[str, ...] = ()) -> None:
    """One clear refusal for a variant whose mechanism, under `config`, needs hooks `engine` does not have
    (`provided`: the hooks beyond the four functions that the engine's adapter does give)."""
    needed = {hook: why for hook, why in MATH.get(name).hooks_needed(config).items() if hook not in provided}
    if needed:
        why = "; ".join(f"{hook}: {reason}" for hook, reason in needed.items())
        raise ValueError(f"the {engine} engine cannot run {name}, which needs {why}. Train it with --engine builtin")
