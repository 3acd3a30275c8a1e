"""The TRL engine (`harness compare --engine trl`): TRL's GRPOTrainer generates and optimises, the harness supplies
everything that defines a variant and a fair comparison.

What comes from the harness, so a TRL row means what a built-in row means:
- rewards from the task's grader (the same extraction, math-verify and grading pool);
- the variant's registered reward, group filter, advantage and loss (trainers.algos.variants), replacing TRL's;
- the prompt order (the run seed's per-pass permutations), the prompts rendered by the task's template;
- the shared update schedule: a rollout step of prompts_per_step x group_size samples split into `minibatches`
  optimizer updates for `ppo_epochs` epochs (TRL's steps_per_generation and num_iterations), the same AdamW,
  gradient clip and warm-up;
- the budget and its ledger: every generated sequence and token is charged where TRL generates it, every
  training-side forward (old policy, reference) and forward + backward where TRL runs it; the run stops at the
  first limit, checked before each rollout step at its worst-case cost, exactly as the built-in trainer does;
- the run store: train_log.jsonl (the same records and mechanism probes), ledger.json, and the final model that
  compare evaluates.

What stays TRL's: generation (transformers' generate on one machine; TRL's vLLM server mode on GPUs) and the
training loop (accelerate, so `accelerate launch` and DeepSpeed scale it; see the README). Differences from the
built-in engine, by design of TRL: across several processes TRL splits samples into minibatches one by one (on
one process the adapter takes the built-in trainer's minibatches, whole groups in the run seed's order), a group a
filter drops stays in the batch with its loss mask zeroed (same loss, fixed batch shapes), and the KL to the
reference is computed only when kl_beta > 0 (the built-in trainer also tracks it for its curve).

A variant that needs hooks TRL lacks (`VariantMath.engine_hooks`) is refused before any work. A killed TRL row
resumes from its last TRL checkpoint (every `checkpoint_every` rollout steps) with its ledger and train log.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import torch

from harness.backends.base import DEFAULT_STOP, cut_at_stop
from harness.budget import Budget, Ledger, parameter_count
from harness.engines import ENGINES, Trained, TrainRow, train_in_process
from harness.extraction import extract
from harness.prompts import render_prompt
from harness.runstore import write_json_atomic
from trainers import algos
from trainers.algos.terms import mean_token_logp
from trainers.algos.variants import (
    MATH,
    GroupBatch,
    missing_input,
    reference_advantages,
    refuse_unless_registry_shaped,
    update_change,
)
from trainers.builtin.base import grpo_reference
from trainers.protocol import schedule
from trainers.protocol.runlog import TRAIN_LOG, TrainingError, append_train_log, trim_train_log, write_ledger
from trainers.protocol.seeds import derived_seed, group_rows, minibatch_groups

logger = logging.getLogger(__name__)

# Hooks beyond the registered functions that this adapter gives: on one process its minibatches are the built-in
# trainer's, whole groups in group order (`group_minibatches`), which DisCO needs.
TRL_HOOKS = ("whole-group minibatches",)
TRL_DIR = "trl"  # TRL's output folder inside the row's train directory: its checkpoints
HARNESS_STATE = "harness_state.json"  # the ledger and step count, written into each TRL checkpoint after TRL's files


def check_supported(variant: str, config) -> None:
    """Refuse, with what to do instead, a variant or setting the TRL engine cannot run faithfully."""
    refuse_unless_registry_shaped("trl", variant, config, provided=TRL_HOOKS)
    if config.rollout_engine != "builtin":
        raise ValueError(f"{variant}.rollout_engine={config.rollout_engine}: with --engine trl TRL generates; "
                         "use TRL's own vLLM settings instead")
    if config.prefix_grouper:
        raise ValueError(f"{variant}.prefix_grouper: the trl engine scores with TRL's forward; set it to false")
    if config.minibatches > config.prompts_per_step:
        raise ValueError(f"{variant}: minibatches={config.minibatches} is more than prompts_per_step="
                         f"{config.prompts_per_step}; TRL makes a fixed number of updates a step, so every minibatch "
                         "needs a question of its own. Lower minibatches")
    # A rollout step's samples are shared out among the processes (accelerate launch sets WORLD_SIZE).
    processes, rows = world_size(), config.prompts_per_step * config.group_size
    if rows % (config.minibatches * processes):
        raise ValueError(f"{variant}: TRL splits a rollout step's {rows} samples into equal minibatches on each of "
                         f"{processes} process(es), and {rows} is not divisible by minibatches={config.minibatches}"
                         f" x {processes}; change prompts_per_step or minibatches")
    if processes > 1 and "whole-group minibatches" in MATH.get(variant).hooks_needed(config):
        raise ValueError(f"the trl engine gives {variant} whole groups in its minibatches on one process only; "
                         f"on {processes} processes TRL splits groups across them. Train it with --engine "
                         "builtin, or on one process")


def world_size() -> int:
    """How many processes train together (set by `accelerate launch`; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def train_with_trl(variant: str, config, *, run_dir: str | Path, **kwargs) -> Ledger:
    """Train `model` in place with TRL under the harness's variant math and budget, resuming from the run's last
    complete TRL checkpoint if there is one; returns the ledger. Keyword arguments as `GRPOTrainer` (the built-in
    one) takes them, plus `device`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = make_trl_trainer(variant, config, run_dir=run_dir, **kwargs)
    checkpoint = last_checkpoint(run_dir)
    if checkpoint is None:
        (run_dir / TRAIN_LOG).unlink(missing_ok=True)
    else:
        trainer.restore(json.loads((checkpoint / HARNESS_STATE).read_text()))
        if trainer.stopped_by:  # killed after its last step's checkpoint: the budget is spent, only the weights are due
            load_weights(trainer.model, checkpoint)
            return trainer.finish()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return trainer.finish()


def load_weights(model, checkpoint: Path) -> None:
    """A TRL (Hugging Face Trainer) checkpoint's model weights, in one file or shards, into `model`."""
    from safetensors.torch import load_file

    state = {}
    for shard in sorted(checkpoint.glob("model*.safetensors")):
        state.update(load_file(shard))
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if not state or unexpected:
        raise TrainingError(f"{checkpoint} does not hold this model's weights (unexpected: {unexpected[:3]})")
    model.tie_weights()  # a tied output layer is saved once


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest TRL checkpoint the harness finished writing (its state file is written last)."""
    found = [path for path in (run_dir / TRL_DIR).glob("checkpoint-*") if (path / HARNESS_STATE).is_file()]
    return max(found, key=lambda path: int(path.name.split("-")[1]), default=None)


def make_trl_trainer(variant: str, config, *, model, tokenizer, problems, template, answer_format: str, grader: str,
                     max_new_tokens: int, budget: Budget, seed: int, run_dir: Path, pool, progress: bool = False,
                     aux_rewards=None, device: str = "cpu", rollout_func=None):
    """The TRL GRPOTrainer subclass that runs `variant`, ready to `.train()` (`rollout_func`: TRL's hook to
    generate elsewhere; the parity test feeds it the built-in sampler's responses)."""
    import datasets
    from transformers import TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLGRPOTrainer

    check_supported(variant, config)
    max_new_tokens = config.max_new_tokens or max_new_tokens
    first_round = schedule.first_round_cost(config, max_new_tokens)
    schedule.check_budget(variant, config, first_round, config.group_size, max_new_tokens, budget,
                          2 * parameter_count(model))
    math_ = MATH.get(variant)
    reference = grpo_reference(config)  # plain GRPO under the same protocol: what update_change compares with
    chat = bool(getattr(tokenizer, "chat_template", None))
    group, per_step = config.group_size, config.prompts_per_step
    updates_per_step = schedule.updates_per_step(config, per_step)
    most_steps = schedule.most_steps_paid(first_round, budget)
    flops_per_token = 2 * parameter_count(model)  # a token through one forward pass (harness.budget)
    # The sampling policy's log-probs cost TRL a forward when the policy does not move within a step: only when read.
    reads_likelihood = missing_input(variant, config, ("lengths", "truncated", "answered", "texts", "aux", "step",
                                                       "max_length")) == "likelihood"
    order = schedule.prompt_order(config, most_steps, len(problems), seed)
    data = datasets.Dataset.from_dict({
        "prompt": [render_prompt(template, problems[i].problem, tokenizer if chat else None) for i in order],
        "problem_index": order})
    # TRL needs a step count up front (its progress bar and schedule): the most the budget pays for; the budget's
    # own check still stops the run at its first limit.
    max_steps = updates_per_step * (most_steps or 10**6)
    args = TRLConfig(
        output_dir=str(run_dir / TRL_DIR), report_to="none", logging_steps=updates_per_step,
        # TRL's checkpoints (model, optimizer, schedule, RNG and data position) every checkpoint_every rollout
        # steps: a killed row resumes from the newest one the harness's state went into (written after TRL's
        # files, and after TRL removed older checkpoints: two are kept so one is always complete).
        save_strategy="steps", save_steps=config.checkpoint_every * updates_per_step, save_total_limit=2,
        logging_strategy="steps" if progress else "no",
        disable_tqdm=not progress, use_cpu=device == "cpu", seed=seed, shuffle_dataset=False,
        remove_unused_columns=False, dataloader_num_workers=0, bf16=False, fp16=False,
        # The shared schedule: a rollout step of per_step x group samples, `minibatches` updates an epoch.
        num_generations=group, per_device_train_batch_size=per_step * group // (config.minibatches * world_size()),
        gradient_accumulation_steps=1, steps_per_generation=config.minibatches, num_iterations=config.ppo_epochs,
        max_steps=max_steps, max_completion_length=max_new_tokens, temperature=config.temperature,
        top_p=1.0, top_k=0, beta=config.kl_beta, max_grad_norm=config.grad_clip, learning_rate=config.lr,
        adam_beta1=config.adam_betas[0], adam_beta2=config.adam_betas[1], adam_epsilon=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.adam_betas, eps=config.adam_eps,
                                  weight_decay=config.weight_decay)
    # The built-in warm-up: linear over rollout steps (not optimizer updates), then constant.
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda update: min(1.0, (update // updates_per_step + 1) / max(1, config.warmup_steps)))

    def accuracy_reward(prompts, completions, **_):  # TRL requires a reward function; the grading is below
        raise AssertionError("HarnessTRLTrainer grades in _calculate_rewards")

    class HarnessTRLTrainer(TRLGRPOTrainer):
        """TRL's GRPOTrainer with the harness's grading, variant math, budget and train log."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.ledger, self.stopped_by, self.rollout_steps = Ledger(), None, 0
            self.last_step, self.record, self.probes = Ledger(), {}, {}
            self.losses, self.clipped, self.trained_tokens, self.changes = [], torch.zeros(3), 0.0, []
            self.started = time.monotonic()
            self.rollout, self.kept_groups = None, None  # the rollout step's batch and the groups its filter kept

        def _prepare_inputs(self, generation_batch):
            """The built-in trainer's minibatches on one process: the rollout step's kept groups, whole and in
            group order, permuted by the run seed for each epoch and split as the built-in trainer splits them
            (a dropped group's masked rows ride along); TRL's own sample-by-sample split across processes."""
            if not self.model.training or self.accelerator.num_processes > 1:
                return super()._prepare_inputs(generation_batch)
            every = self.args.steps_per_generation * self.num_iterations
            if self._step % every == 0 or self.rollout is None:  # None: resumed at a step's start
                self.rollout = self._generate_and_score_completions(generation_batch)
            epoch, index = divmod(self._step % every, self.args.steps_per_generation)
            rows = group_minibatches(self.kept_groups, self.args.steps_per_generation, group,
                                     derived_seed(seed, "minibatch", self.rollout_steps, epoch))[index]
            size = len(self.rollout["completion_mask"])
            return {key: value[rows] if torch.is_tensor(value) and value.dim() and len(value) == size
                    else [value[i] for i in rows.tolist()] if isinstance(value, list) and len(value) == size
                    else value for key, value in self.rollout.items()}

        def charge(self, **counts) -> None:
            """Add what every process spent to the ledger (each holds its share of the batch), so all processes
            keep the same ledger and take the same stopping decision."""
            spent = torch.tensor(list(counts.values()), dtype=torch.float64, device=self.accelerator.device)
            totals = self.accelerator.gather(spent).view(-1, len(counts)).sum(dim=0).tolist()
            self.ledger.add(Ledger(**{name: round(total) for name, total in zip(counts, totals, strict=True)}))

        def _tokenize_prompts(self, prompts):
            # As the built-in trainer: a chat template was applied when the prompt was rendered.
            return [tokenizer(p, add_special_tokens=not chat).input_ids for p in prompts], None, {}

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            texts = [cut_at_stop(c if isinstance(c, str) else c[-1]["content"], DEFAULT_STOP)[0]
                     for c in completions]
            answers = [extract(t, answer_format) for t in texts]
            golds = [problems[x["problem_index"]].golds for x in inputs]
            verdicts = pool.grade([(grader, g, a) for g, a in zip(golds, answers, strict=True)])
            self._graded = (inputs, texts, answers, verdicts)
            accuracy = torch.tensor(verdicts, dtype=torch.float32, device=self.accelerator.device)[:, None]
            return self.accelerator.gather(accuracy)

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            completion_mask, prompt_mask = out["completion_mask"], out["prompt_mask"]
            rows = completion_mask.shape[0]
            # TRL's no-grad forwards over the generation batch: the old policy's (when the policy moves within a
            # step) and the reference's (kl_beta > 0).
            forward = int(prompt_mask.sum() + completion_mask.sum())
            passes = ("old_per_token_logps" in out) + ("ref_per_token_logps" in out)
            self.charge(rollouts=rows, tokens=int(completion_mask.sum()), prompt_tokens=int(prompt_mask.sum()),
                        prompts=rows // group, generation_flops=flops_per_token * forward,
                        update_tokens=forward * passes, update_flops=flops_per_token * forward * passes)
            batch, keep, advantages, self.probes = math_.shape(self._variant_batch(out), config)
            if not torch.isfinite(batch.rewards).all():
                raise TrainingError(f"non-finite reward at step {self.rollout_steps}")
            # The groups are whole across processes (gathered); each process trains its own rows.
            mine = slice(self.accelerator.process_index * rows, (self.accelerator.process_index + 1) * rows)
            out["advantages"] = advantages.reshape(-1)[mine].to(out["advantages"].device)
            out["grpo_advantages"] = reference_advantages(batch.accuracy, batch.answered, reference).reshape(-1)[
                mine].to(out["advantages"].device)
            # A dropped group stays in TRL's fixed-shape batch with its loss mask zeroed: it weighs nothing, but
            # TRL still runs its rows through the training forward, so they are charged (tokens per row, kept apart
            # because TRL shuffles and splits every tensor of the batch into its minibatches).
            out["charged_tokens"] = prompt_mask.sum(dim=1) + completion_mask.sum(dim=1)
            dropped = (~keep).repeat_interleave(group)[mine].to(completion_mask.device)
            out["completion_mask"] = completion_mask * (~dropped)[:, None].to(completion_mask.dtype)
            self.kept_groups = keep
            lengths, correct = batch.lengths.float().reshape(-1), batch.accuracy.reshape(-1) > 0
            kept_rewards = batch.rewards[keep]
            self.record = {"reward_mean": float(batch.rewards.mean()), "reward_std": float(batch.rewards.std()),
                           "accuracy": float(batch.accuracy.mean()), "response_length": float(lengths.mean()),
                           "length_correct": float(lengths[correct].mean()) if correct.any() else None,
                           "length_wrong": float(lengths[~correct].mean()) if (~correct).any() else None,
                           "truncated": float(batch.truncated.float().mean()), "groups_trained": int(keep.sum()),
                           "zero_variance_groups": float((kept_rewards.max(dim=-1).values
                                                          == kept_rewards.min(dim=-1).values).float().mean())
                           if keep.any() else 0.0}
            return out

        def _variant_batch(self, out) -> GroupBatch:
            """The step's GroupBatch: what the built-in trainer supplies, gathered over processes."""
            from accelerate.utils import gather_object

            inputs, texts, answers, verdicts = self._graded
            mask = out["completion_mask"]
            eos = {*(self.eos_token_ids or []), tokenizer.pad_token_id}
            last = out["completion_ids"].gather(1, (mask.sum(dim=1) - 1).clamp(min=0)[:, None]).squeeze(1)
            columns = {"accuracy": torch.tensor(verdicts, dtype=torch.float32), "lengths": mask.sum(dim=1),
                       "truncated": torch.tensor([int(t) not in eos for t in last.tolist()]),
                       "answered": torch.tensor([a is not None for a in answers])}
            if reads_likelihood:
                columns["likelihood"] = mean_token_logp(self._sampling_logps(out), mask.float())
            if aux_rewards and getattr(config, "aux_reward_weight", 0):
                rows = [problems[x["problem_index"]] for x in inputs]
                columns.update({f"aux:{name}": torch.tensor([float(score(p, t)) for p, t in zip(rows, texts,
                                                                                             strict=True)])
                                for name, score in aux_rewards.items()})
            device = self.accelerator.device
            columns = {k: self.accelerator.gather(v.to(device)).cpu().view(-1, group) for k, v in columns.items()}
            aux = {k[4:]: v.float() for k, v in columns.items() if k.startswith("aux:")} or None
            return GroupBatch(
                accuracy=columns["accuracy"], lengths=columns["lengths"], truncated=columns["truncated"].bool(),
                answered=columns["answered"].bool(), texts=gather_object(texts), likelihood=columns.get("likelihood"),
                aux=aux, step=self.rollout_steps, max_length=max_new_tokens,
                thinks=bool(getattr(template, "thinks", False)))

        def _sampling_logps(self, out) -> torch.Tensor:
            """Per-token log-probs of the responses under the policy that sampled them: TRL's old-policy scores
            when it computed them, else one no-grad forward (charged), as the built-in sampler records them."""
            if "old_per_token_logps" in out:
                return out["old_per_token_logps"]
            ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
            attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
            with torch.no_grad():
                logps, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, attention,
                                                                      out["completion_ids"].size(1))
            self.charge(update_tokens=int(attention.sum()), update_flops=flops_per_token * int(attention.sum()))
            return logps

        def _compute_loss(self, model, inputs):
            prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
            completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
            logp, _, _ = self._get_per_token_logps_and_entropies(model, input_ids, attention_mask,
                                                                  completion_ids.size(1))
            old = inputs.get("old_per_token_logps")
            old = logp.detach() if old is None else old
            ref = inputs.get("ref_per_token_logps")
            kl = algos.k3_kl(logp, ref) if ref is not None else None
            mask, advantages = completion_mask.float(), inputs["advantages"]
            loss, probes = math_.loss(logp, old, advantages, mask, kl, config, max_new_tokens)
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss at step {self.rollout_steps}")
            self.changes.append(update_change(loss, logp, old, inputs["grpo_advantages"], mask, reference,
                                              max_new_tokens))
            # A forward and a backward over every token of the minibatch, prompts included, as the built-in counts.
            tokens = int(inputs["charged_tokens"].sum())
            self.charge(update_tokens=2 * tokens, update_flops=3 * flops_per_token * tokens)
            for name, value in probes.items():
                self.probes[name] = self.probes.get(name, 0.0) + value
            ratio = torch.exp(algos.log_ratio(logp.detach(), old))
            self.clipped += algos.clipped_tokens(ratio, advantages, mask, config.eps_low, config.eps_high,
                                                 config.dual_clip).cpu()
            self.trained_tokens += float(mask.sum())
            self.losses.append(float(loss.detach()))
            return loss

        def end_rollout_step(self) -> bool:
            """After a rollout step's last update: log it, write the ledger; True when the budget cannot pay for
            the next step at its worst-case cost (the built-in trainer's rule)."""
            self.rollout_steps += 1
            elapsed = torch.tensor([time.monotonic() - self.started], device=self.accelerator.device)
            self.ledger.wall_s = float(self.accelerator.gather(elapsed).max())  # the slowest process's clock
            probes = {**self.probes, **algos.clip_shares(self.clipped, self.trained_tokens),
                      "update_change": sum(self.changes) / max(1, len(self.changes))}
            if self.accelerator.is_main_process:
                append_train_log(run_dir, {"step": self.rollout_steps, **self.ledger.to_dict(), **self.record,
                                           "loss": sum(self.losses) / len(self.losses) if self.losses else None,
                                           "entropy": None, "kl": None, "engine": "trl", "probes": probes})
            self.losses, self.clipped, self.trained_tokens, self.changes = [], torch.zeros(3), 0.0, []
            cost = schedule.first_round_cost(config, max_new_tokens)
            spent = self.ledger.minus(self.last_step)
            cost.prompt_tokens, cost.update_tokens = spent.prompt_tokens, spent.update_tokens
            cost.update_flops = spent.update_flops
            cost.generation_flops = flops_per_token * (cost.tokens + cost.prompt_tokens)
            self.last_step = dataclasses.replace(self.ledger)
            self.stopped_by = budget.allows(self.ledger, cost)
            if self.accelerator.is_main_process:
                write_ledger(run_dir, budget, self.ledger, self.stopped_by, self.rollout_steps)
            return self.stopped_by is not None

        def harness_state(self) -> dict:
            return {"ledger": self.ledger.to_dict(), "last_step": self.last_step.to_dict(),
                    "rollout_steps": self.rollout_steps, "stopped_by": self.stopped_by}

        def restore(self, saved: dict) -> None:
            """Continue from a checkpoint's state: the ledger, and the train log cut back to its steps (the steps
            after it are trained again, so none is logged twice)."""
            self.ledger, self.last_step = Ledger.from_dict(saved["ledger"]), Ledger.from_dict(saved["last_step"])
            self.rollout_steps, self.stopped_by = saved["rollout_steps"], saved["stopped_by"]
            self.started = time.monotonic() - self.ledger.wall_s
            trim_train_log(run_dir, self.rollout_steps)

        def finish(self) -> Ledger:
            self.ledger.wall_s = max(self.ledger.wall_s, time.monotonic() - self.started)
            if self.accelerator.is_main_process:
                write_ledger(run_dir, budget, self.ledger, self.stopped_by, self.rollout_steps)
            return self.ledger

    class Budgeted(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            trainer.ledger.steps += 1
            if trainer.ledger.steps % updates_per_step == 0 and trainer.end_rollout_step():
                control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if trainer.accelerator.is_main_process:
                write_json_atomic(folder / HARNESS_STATE, trainer.harness_state())

    trainer = HarnessTRLTrainer(model=model, reward_funcs=[accuracy_reward], args=args, train_dataset=data,
                                processing_class=tokenizer, callbacks=[Budgeted()], optimizers=(optimizer, lr_schedule),
                                rollout_func=rollout_func)
    return trainer


def group_minibatches(keep: torch.Tensor, minibatches: int, group: int, seed: int) -> list[torch.Tensor]:
    """Row indices of each of `minibatches` minibatches: the kept groups permuted by `seed` and split as the
    built-in trainer does (`GRPOTrainer.update`), whole and in group order; the dropped groups' rows (masked, so
    they weigh nothing) dealt round the minibatches, empty ones first. With fewer kept groups than minibatches
    some minibatches hold masked rows only: TRL still steps its optimizer on them (zero gradient, but Adam's
    momentum moves the weights), where the built-in trainer makes fewer updates."""
    kept, dropped = keep.nonzero().flatten(), (~keep).nonzero().flatten().tolist()
    used = min(minibatches, len(kept))
    chunks = [kept[part].tolist() for part in minibatch_groups(len(kept), used, seed)] if used else []
    chunks += [[] for _ in range(minibatches - used)]
    empty = range(used, minibatches)  # filled first with dropped groups, so no minibatch is left without rows
    for index, dropped_group in enumerate(dropped):
        chunks[empty[index] if index < len(empty) else (index - len(empty)) % minibatches].append(dropped_group)
    return [group_rows(torch.tensor(chunk, dtype=torch.long), group) for chunk in chunks]


class TRLEngine:
    """TRL's GRPOTrainer as the `trl` engine (`harness compare --engine trl`)."""

    name = "trl"
    packages = ("trl", "accelerate")

    def check(self, variant: str, config) -> None:
        check_supported(variant, config)

    def train(self, row: TrainRow) -> Trained:
        return train_in_process(row, lambda **setting: train_with_trl(row.variant, row.config, **setting,
                                                                       device=row.device))


ENGINES.register("trl", TRLEngine())
