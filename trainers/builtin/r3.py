"""R3: Replay, Reflection, and Ranking rewards (arXiv 2601.19620; variants.md §16). No official code; every
hyperparameter the paper leaves open takes the spec's suggested default and is marked as ours.

A per-question (UID) history keeps every question's running accuracy and its latest right and wrong
responses; it is trainer state, checkpointed with the rest. Per step:
1. ISR, in-context self-reflection (prompt hook): a drawn question whose mean accuracy over all its past
   rollouts is below tau also gets a reflection copy: the question, one of its past wrong responses (a
   seeded choice) and a fixed instruction to find the mistake and solve again. A question has a history only
   from its second pass over the data on, which is the paper's "from epoch 2 on".
2. G samples for every group, originals and reflection copies, in one rollout batch.
3. SERR, entropy ranking (reward hook): the responses of an all-wrong group, truncated or not, are ranked by
   the entropy profile of the sampling policy (a high peak and a low mean entropy rank first) and get
   R_max (1 - k/(N-1)) for rank k. A correct response gets 1 plus a length bonus max(0, 1 - l/L_max).
4. CCR, cross-context replay (sampler hook): an all-wrong group gets k past right responses to the same
   question appended, an all-right group k past wrong ones, whatever context they were generated in (a
   reflection copy's answers are replayed under the plain question). They keep their stored reward and are
   trained with the ratio taken against the current policy, as if pi_old had drawn them (the spec's
   suggestion; the bias is that it did not).
5. Advantage on the mixed group: (R - mean) / (alpha std + lambda), with lambda = `advantage_eps`.

Groups stay rectangular: when any group of a step gets a replay, every group gets `replay_count` extra slots,
and a slot left empty is a row without response tokens that counts in no mean, std or loss.

Budget: every newly generated sequence is charged, reflection copies included (each is one more prompt and G
more rollouts; a step makes as many copies as the budget still pays for, in draw order). A replayed
trajectory is not generated again: it costs no prompt, rollout or token, only training compute.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from harness.backends.base import DEFAULT_STOP, cut_at_stop
from harness.claim import Claim
from harness.extraction import extract
from harness.task import Problem
from trainers.algos.variants import reference_advantages
from trainers.builtin.base import VARIANTS, Groups, GRPOConfig
from trainers.builtin.grpo import UPDATE_CHANGE, GRPOTrainer
from trainers.builtin.rollout import RolloutBatch
from trainers.protocol.config import setting
from trainers.protocol.seeds import derived_seed, group_rows

# Problem.meta key that makes a problem a reflection copy; its value is the past wrong response shown.
ATTEMPT = "r3_attempt"


def length_bonus(lengths: torch.Tensor, correct: torch.Tensor, max_length: int) -> torch.Tensor:
    """max(0, 1 - l / L_max) for correct responses, 0 for the others."""
    return correct * torch.clamp(1 - lengths.to(correct.dtype) / max_length, min=0.0)


def entropy_profile(entropy: torch.Tensor, mask: torch.Tensor,
                    peak_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence [B]: E_peak, the mean of its top max(1, floor(p L)) token entropies, and E_global, the mean
    of all L of them (entropy and mask [B, T])."""
    lengths = mask.sum(dim=-1).to(torch.float64)
    # The small offset keeps floor(p L) from losing one to rounding when p L is a whole number (0.29 * 100).
    top_k = torch.clamp(torch.floor(peak_fraction * lengths + 1e-9), min=1)
    ranked = torch.where(mask.bool(), entropy, float("-inf")).sort(dim=-1, descending=True).values
    in_top = torch.arange(entropy.shape[-1], device=entropy.device) < top_k[:, None]
    peak = torch.where(in_top, ranked, 0.0).sum(dim=-1) / top_k
    global_mean = (entropy * mask).sum(dim=-1) / lengths.clamp(min=1)
    return peak.to(entropy.dtype), global_mean.to(entropy.dtype)


def dominance_scores(peak: torch.Tensor, global_mean: torch.Tensor) -> torch.Tensor:
    """S_i = #{j : i > j} within each group [n, N], where i > j iff E_peak^i > E_peak^j and E_global^i < E_global^j."""
    dominates = (peak[:, :, None] > peak[:, None, :]) & (global_mean[:, :, None] < global_mean[:, None, :])
    return dominates.sum(dim=-1)


def ranking_rewards(peak: torch.Tensor, global_mean: torch.Tensor, reward_max: float) -> torch.Tensor:
    """SERR [n, N]: sort by S descending (stable for ties), R_(k) = R_max (1 - k / (N-1)) for rank k.

    A group of one failed response gets R_max (ours: rank 0 of 1; the formula divides by zero there).
    """
    order = torch.sort(dominance_scores(peak, global_mean), dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    return reward_max * (1 - ranks.to(peak.dtype) / max(order.shape[-1] - 1, 1))


def mixed_group_advantages(rewards: torch.Tensor, present: torch.Tensor, std_scale: float = 1.0, eps: float = 1e-6,
                           unbiased_std: bool = True) -> torch.Tensor:
    """(R - mean) / (alpha std + lambda) over the present members of each mixed group [n, W]; 0 on empty slots.

    With every slot present and alpha 1 this is GRPO's advantage; a group of one present member gets std 1
    (verl's convention), hence A = 0.
    """
    weight = present.to(rewards.dtype)
    count = weight.sum(dim=-1, keepdim=True)
    mean = (rewards * weight).sum(dim=-1, keepdim=True) / count.clamp(min=1)
    squares = ((rewards - mean) ** 2 * weight).sum(dim=-1, keepdim=True)
    std = torch.sqrt(squares / (count - 1 if unbiased_std else count).clamp(min=1))
    std = torch.where(count > 1, std, torch.ones_like(std))
    return (rewards - mean) / (std_scale * std + eps) * weight


@dataclass(frozen=True)
class R3Config(GRPOConfig):
    MECHANISM_OFF: ClassVar[dict[str, object] | None] = {"replay": False, "reflection": False, "ranking_reward": False,
                                                         "length_bonus_max_length": None}
    # --- R3 mechanism (paper; what it leaves open is the spec's suggestion, ours) ---
    replay: bool = setting(True, "CCR on/off: replay past responses into all-wrong and all-right groups.")
    replay_count: int = setting(
        1, "k, the past responses replayed into each such group, fewer when fewer are stored (unconfirmed; "
        "ours: 1, so off-policy rows stay few).")
    buffer_capacity: int = setting(
        8, "Past responses kept per question and per outcome (right / wrong), the oldest dropped first "
        "(ours: the paper keeps every rollout; one group's worth bounds the checkpoint).")
    reflection: bool = setting(True, "ISR on/off: give questions the policy keeps failing a reflection copy.")
    reflection_threshold: float = setting(
        0.2, "tau: a question whose mean accuracy over all its past rollouts is below this gets a reflection"
        " copy (unconfirmed; ours: 0.2, on accuracy rather than the shaped reward).")
    reflection_instruction: str = setting(
        "The solution above is wrong. Find the mistake and solve it again.", "p_r, the instruction after the"
        " question and the past wrong response (unconfirmed; the wording is ours). The past response is cut,"
        " keeping its head, so that the prompt plus max_new_tokens fits the model's max_position_embeddings "
        "(ours: the sandbox model has 256 positions and 100 new tokens).")
    ranking_reward: bool = setting(
        True, "SERR on/off: rank the responses of all-wrong groups by their entropy profile.")
    ranking_peak_fraction: float = setting(
        0.1, "p: E_peak is the mean of the top max(1, floor(p L)) token entropies (unconfirmed; ours: 0.1).")
    ranking_reward_max: float = setting(
        0.5, "R_max, the best-ranked failed response's reward (unconfirmed; ours: 0.5, below a correct "
        "answer's 1).")
    length_bonus_max_length: int | None = setting(
        32768, "L_max of the correct-answer length bonus max(0, 1 - l / L_max), added to the 1 of a correct "
        "answer (the sum is ours; paper: L_max 32768, which on the sandbox's 100-token answers is a "
        "near-constant ~1); None = no bonus.")
    advantage_std_scale: float = setting(
        1.0, "alpha, the scale on the mixed group's std; lambda is advantage_eps (unconfirmed; ours: 1, i.e."
        " GRPO's advantage on every group without replay).")

    def __post_init__(self):
        super().__post_init__()
        allowed = {
            "replay_count": (self.replay_count >= 1, ">= 1"),
            "buffer_capacity": (self.buffer_capacity >= 1, ">= 1"),
            "reflection_threshold": (0 <= self.reflection_threshold <= 1, "in [0, 1]"),
            "reflection_instruction": (bool(self.reflection_instruction.strip()), "non-empty"),
            "ranking_peak_fraction": (0 < self.ranking_peak_fraction <= 1, "in (0, 1]"),
            "ranking_reward_max": (self.ranking_reward_max >= 0, ">= 0"),
            "length_bonus_max_length": (self.length_bonus_max_length is None or self.length_bonus_max_length >= 1,
                                        "None or >= 1"),
            "advantage_std_scale": (self.advantage_std_scale > 0, "> 0"),
        }
        for name, (ok, bounds) in allowed.items():
            if not ok:
                raise ValueError(f"r3 {name} must be {bounds}, got {getattr(self, name)!r}")


@dataclass
class Trajectory:
    """One past response: its tokens (EOS included when one was drawn) and its outcome."""

    ids: list[int]
    # The outcome reward (accuracy, format, length bonus) without the ranking part, which only means something
    # relative to the group it was ranked in.
    reward: float
    correct: bool
    truncated: bool


@dataclass
class QuestionHistory:
    accuracy_sum: float = 0.0
    rollouts: int = 0
    correct: list[Trajectory] = field(default_factory=list)
    wrong: list[Trajectory] = field(default_factory=list)

    @property
    def mean_accuracy(self) -> float:
        return self.accuracy_sum / self.rollouts


@VARIANTS.register("r3")
class R3Trainer(GRPOTrainer):
    name = "r3"
    paper = "R3: Replay, Reflection, and Ranking Rewards (arXiv 2601.19620)"
    status = "[paper]"
    # The paper's headline claims, tested on the leaderboard (harness.claims).
    claims = (Claim("higher accuracy than GRPO", "variants.md §16 (Table 1)", "pass@1", "higher"),)
    Config = R3Config
    mechanism = {
        "update_change": UPDATE_CHANGE + " (GRPO's update being on the step's generated responses alone, so a "
                         "replayed response's weight counts wholly as R3's)",
        "replayed_share": "share of the step's trained responses that are replays of past ones (CCR: each gives an "
                          "all-right or all-wrong group the signal GRPO's update lacks there)",
        "replays": "past responses replayed into all-right or all-wrong groups this step (CCR)",
        "reflections": "reflection copies of hard questions generated this step (ISR)",
        "ranked_groups": "all-wrong groups given entropy-ranking rewards this step (SERR)",
    }

    # The primary probe is update_change against GRPO on the generated responses (`grpo_advantages_of`): it sees
    # all three parts that change the update, the ranking rewards and length bonus (SERR) and the replays (CCR).
    # The replays alone need history, so they act only from a question's second visit: on the sandbox's default
    # budget (15 R3 steps, the pool's second pass from step 11) they are under 1% of the trained responses.

    def grpo_advantages_of(self, groups: Groups) -> torch.Tensor:
        """Plain GRPO's advantages [rows] on the step as generated: GRPO's own over each group's G sampled
        responses, and 0 in the replay slots, which GRPO would not have trained."""
        g, width = self.config.group_size, groups.accuracy.shape[-1]
        if width == g:
            return super().grpo_advantages_of(groups)
        n = groups.accuracy.shape[0]
        answered = torch.tensor([a is not None for a in groups.answers]).view(n, width)[:, :g]
        reference = torch.zeros(n, width)
        reference[:, :g] = reference_advantages(groups.accuracy[:, :g], answered, self.grpo_reference)
        return reference.reshape(-1)

    def __init__(self, config: R3Config, **kwargs):
        super().__init__(config, **kwargs)
        self.history: dict[str, QuestionHistory] = {}  # keyed by problem id, the paper's question UID

    # ----------------------------------------------------------------------------------------- ISR

    def prompt(self, problem: Problem) -> str:
        attempt = problem.meta.get(ATTEMPT)
        if attempt is None:
            return super().prompt(problem)
        text = f"{problem.problem}\n{attempt}\n{self.config.reflection_instruction}"
        return super().prompt(dataclasses.replace(problem, problem=text))

    def reflection_copy(self, problem: Problem, attempt_ids: list[int]) -> Problem | None:
        """`problem` with a past wrong response to reflect on, cut to fit the model's context; None if even
        the question and the instruction leave no room for it."""
        def with_attempt(ids):
            return dataclasses.replace(problem, meta={**problem.meta, ATTEMPT: self._text(ids)})

        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is None:
            return with_attempt(attempt_ids)
        room = limit - self.max_new_tokens - self._prompt_length(with_attempt([]))
        if room <= 0:
            return None
        copy = with_attempt(attempt_ids[:room])
        # A subword tokenizer may not split the cut text back into `room` tokens; then it is skipped.
        return copy if self._prompt_length(copy) + self.max_new_tokens <= limit else None

    def _reflection_copies(self, problems: list[Problem]) -> list[Problem]:
        copies = []
        for problem in problems:
            history = self.history.get(problem.id)
            if history is None or not history.wrong or history.mean_accuracy >= self.config.reflection_threshold:
                continue
            chooser = random.Random(derived_seed(self.seed, "reflection", self.step, problem.id))
            copy = self.reflection_copy(problem, chooser.choice(history.wrong).ids)
            if copy is not None:
                copies.append(copy)
        return copies

    def _text(self, ids: list[int]) -> str:
        return cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), DEFAULT_STOP)[0]

    def _prompt_length(self, problem: Problem) -> int:
        return len(self.tokenizer(self.prompt(problem), add_special_tokens=not self.chat).input_ids)

    # ---------------------------------------------------------------------------------------- SERR

    def reward(self, groups: Groups) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, components = super().reward(groups)
        cfg = self.config
        if cfg.length_bonus_max_length is not None:
            lengths = groups.batch.lengths.cpu().view_as(total)
            components["length_bonus"] = length_bonus(lengths, groups.accuracy, cfg.length_bonus_max_length)
            total = total + components["length_bonus"]
        if cfg.ranking_reward:
            components["ranking"] = self._ranking(groups)
            total = total + components["ranking"]
        return total, components

    def _ranking(self, groups: Groups) -> torch.Tensor:
        """SERR rewards [N, G] of the all-wrong groups, 0 elsewhere. Entropies are those of the sampling
        distribution (the policy has not moved since the rollout), scored again because the rollout keeps
        only the drawn tokens' log-probs."""
        ranking = torch.zeros_like(groups.accuracy)
        failed = groups.accuracy.sum(dim=-1) == 0
        self.note("ranked_groups", int(failed.sum()), add=True)
        if not failed.any():
            return ranking
        batch = groups.batch.select(group_rows(torch.nonzero(failed).flatten(), groups.group_size))
        with torch.no_grad():
            _, entropy = self.forward(batch, with_entropy=True)
        peak, global_mean = entropy_profile(entropy.cpu(), batch.response_mask.cpu(), self.config.ranking_peak_fraction)
        shape = (-1, groups.group_size)
        ranking[failed] = ranking_rewards(peak.view(shape), global_mean.view(shape), self.config.ranking_reward_max)
        return ranking

    # ----------------------------------------------------------------------------- the step and CCR

    def collect(self) -> Groups | None:
        cfg = self.config
        problems = self.draw_prompts()
        if problems is None:
            return None
        n = len(problems)
        copies = self._reflection_copies(problems) if cfg.reflection else []
        # A reflection copy is generated like any group: the step makes only as many as the budget still pays for.
        while copies and self.budget.allows(self.ledger, self.step_cost(n + len(copies))):
            copies.pop()
        self.note("reflections", len(copies))
        self.note("replays", 0)
        self.note("replayed_share", 0)
        groups = self.generate_groups(problems + copies)
        groups = groups.select(self.group_filter(groups))
        trained = self._with_replays(groups) if cfg.replay else groups
        self._remember(groups)  # after the replay draw: a group never replays its own step's responses
        return trained

    def _with_replays(self, groups: Groups) -> Groups:
        """`groups` widened to G + k slots, with past responses replayed into its all-wrong and all-right groups;
        the same object when no group has anything to replay."""
        g, k = groups.group_size, self.config.replay_count
        picks = []
        for index, problem in enumerate(groups.problems):
            correct = int(groups.accuracy[index].sum())
            wanted = "correct" if correct == 0 else "wrong" if correct == g else None
            history = self.history.get(problem.id)
            stored = getattr(history, wanted) if history is not None and wanted else []
            chooser = random.Random(derived_seed(self.seed, "replay", self.step, index))
            picks.append(chooser.sample(stored, min(k, len(stored))))
        if not any(picks):
            return groups
        replays = sum(len(chosen) for chosen in picks)
        self.note("replays", replays)
        self.note("replayed_share", replays / (groups.accuracy.numel() + replays))

        batch, n, width = groups.batch, len(groups.problems), g + k
        device, pad = batch.response_ids.device, self.tokenizer.pad_token_id
        span = max([batch.response_ids.shape[1]] + [len(t.ids) for chosen in picks for t in chosen])

        def widened(values, fill, dtype, per_token=True):
            # On-policy rows in the first G slots of each group, `fill` in the replay slots.
            shape = (n, width, span) if per_token else (n, width)
            out = torch.full(shape, fill, dtype=dtype, device=values.device)
            if per_token:
                out[:, :g, : values.shape[-1]] = values.reshape(n, g, -1)
            else:
                out[:, :g] = values.reshape(n, g)
            return out

        response_ids = widened(batch.response_ids, pad, torch.long)
        response_mask = widened(batch.response_mask, 0, batch.response_mask.dtype)
        truncated = widened(batch.truncated, False, torch.bool, per_token=False)
        accuracy = widened(groups.accuracy, 0.0, groups.accuracy.dtype, per_token=False)
        rewards = widened(groups.rewards, 0.0, groups.rewards.dtype, per_token=False)
        texts = [list(groups.texts[i * g:(i + 1) * g]) + [""] * k for i in range(n)]
        answers = [list(groups.answers[i * g:(i + 1) * g]) + [None] * k for i in range(n)]
        for i, chosen in enumerate(picks):
            for j, trajectory in enumerate(chosen):
                slot = g + j
                response_ids[i, slot, : len(trajectory.ids)] = torch.tensor(trajectory.ids, device=device)
                response_mask[i, slot, : len(trajectory.ids)] = 1
                truncated[i, slot] = trajectory.truncated
                accuracy[i, slot] = float(trajectory.correct)
                rewards[i, slot] = trajectory.reward
                texts[i][slot] = self._text(trajectory.ids)
                answers[i][slot] = extract(texts[i][slot], self.answer_format)

        def group_prompt(t):  # every slot of a group reads the group's own prompt
            return t.reshape(n, g, -1)[:, :1].expand(n, width, t.shape[-1]).reshape(n * width, -1)

        mixed = RolloutBatch(group_prompt(batch.prompt_ids), group_prompt(batch.prompt_mask),
                             response_ids.reshape(n * width, span), response_mask.reshape(n * width, span),
                             widened(batch.old_logp, 0.0, batch.old_logp.dtype).reshape(n * width, span),
                             truncated.reshape(-1))
        replayed = torch.nonzero(response_mask[:, g:].sum(dim=-1).reshape(-1) > 0).flatten()
        replayed = (replayed // k) * width + g + replayed % k
        with torch.no_grad():  # the policy has not been updated this step: this is pi_old
            mixed.old_logp[replayed] = self.forward(mixed.select(replayed))[0].to(mixed.old_logp.dtype)
        components = {name: widened(value, 0.0, value.dtype, per_token=False)
                      for name, value in groups.components.items()}
        components["accuracy"] = accuracy
        return Groups(groups.problems, mixed, [t for row in texts for t in row], [a for row in answers for a in row],
                      accuracy, rewards, components)

    def _remember(self, groups: Groups) -> None:
        g = groups.group_size
        outcome = groups.rewards - groups.components.get("ranking", torch.zeros_like(groups.rewards))
        lengths, truncated = groups.batch.lengths.tolist(), groups.batch.truncated.tolist()
        for index, problem in enumerate(groups.problems):
            history = self.history.setdefault(problem.id, QuestionHistory())
            for column in range(g):
                row = index * g + column
                correct = bool(groups.accuracy[index, column])
                kept = history.correct if correct else history.wrong
                kept.append(Trajectory(groups.batch.response_ids[row, : lengths[row]].tolist(),
                                       float(outcome[index, column]), correct, bool(truncated[row])))
                del kept[: -self.config.buffer_capacity]
            history.accuracy_sum += float(groups.accuracy[index].sum())
            history.rollouts += g

    # ------------------------------------------------------------------------------ advantage, loss

    def advantage(self, groups: Groups) -> torch.Tensor:
        present = groups.batch.lengths.cpu().view_as(groups.rewards) > 0
        return mixed_group_advantages(groups.rewards, present, self.config.advantage_std_scale,
                                      self.config.advantage_eps, self.config.unbiased_std)

    def loss(self, logp, old_logp, advantages, mask, kl):
        # An empty replay slot is no sequence: drop it before the aggregation counts sequences.
        real = mask.sum(dim=-1) > 0
        return super().loss(logp[real], old_logp[real], advantages[real], mask[real],
                            None if kl is None else kl[real])

    def step_stats(self, groups: Groups) -> dict:
        """GRPO's figures over the generated samples only, plus how many reflection copies and replays."""
        g = self.config.group_size
        n = len(groups.problems)
        on_policy = groups
        if groups.group_size > g:
            rows = group_rows(torch.arange(n), groups.group_size).view(n, -1)[:, :g].reshape(-1)
            pick = rows.tolist()
            on_policy = Groups(groups.problems, groups.batch.select(rows), [groups.texts[i] for i in pick],
                               [groups.answers[i] for i in pick], groups.accuracy[:, :g], groups.rewards[:, :g],
                               {name: value[:, :g] for name, value in groups.components.items()})
        replayed = int((groups.batch.lengths.view(n, -1)[:, g:] > 0).sum()) if n else 0
        return {**super().step_stats(on_policy), "reflection_groups": sum(ATTEMPT in p.meta for p in groups.problems),
                "replayed": replayed}

    # --------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        return {"history": {uid: dataclasses.asdict(history) for uid, history in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.history = {
            uid: QuestionHistory(saved["accuracy_sum"], saved["rollouts"],
                                 [Trajectory(**t) for t in saved["correct"]], [Trajectory(**t) for t in saved["wrong"]])
            for uid, saved in state["history"].items()}
