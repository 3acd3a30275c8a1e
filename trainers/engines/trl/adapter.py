"""The TRL adapter: TRL's GRPOTrainer with the harness's grading, variant math, minibatches, budget and train log
(trainers/engines/trl/__init__.py says what comes from where). Importing it imports TRL.

The adapter overrides private methods of TRL's GRPOTrainer and reads private attributes; `OVERRIDES` and `USES`
list them with the parameters they had in the TRL versions the adapter was checked against (`TRL_SUPPORTED`), and
tests/test_trl_api.py fails with a clear message when an installed TRL changes one.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import datasets
import torch
import trl
from packaging.specifiers import SpecifierSet
from transformers import TrainerCallback
from trl import GRPOConfig as TRLConfig
from trl import GRPOTrainer as TRLGRPOTrainer

from harness.backends.base import DEFAULT_STOP, cut_at_stop
from harness.budget import Ledger
from harness.extraction import extract
from harness.prompts import render_prompt
from harness.runstore import write_json_atomic
from trainers import algos
from trainers.algos.terms import mean_token_logp
from trainers.algos.variants import GroupBatch, reference_advantages, update_change
from trainers.engines.trl import HARNESS_STATE, TRL_DIR, TRLRow, group_minibatches, world_size
from trainers.protocol import schedule
from trainers.protocol.runlog import TrainingError, append_train_log, trim_train_log, write_ledger
from trainers.protocol.seeds import derived_seed

# The TRL versions the overrides below were checked against (pyproject's pin).
TRL_SUPPORTED = ">=1.16,<2"
# TRL's private methods the adapter overrides, with the parameters (after self) they take in those versions.
OVERRIDES = {
    "_prepare_inputs": ("generation_batch",),
    "_tokenize_prompts": ("prompts",),
    "_calculate_rewards": ("inputs", "prompts", "completions", "completion_ids_list"),
    "_generate_and_score_completions": ("inputs",),
    "_compute_loss": ("model", "inputs"),
}
# TRL's private methods the adapter calls (with their parameters after self), and attributes it reads.
USES = {"_get_per_token_logps_and_entropies": ("model", "input_ids", "attention_mask", "logits_to_keep")}
USED_ATTRIBUTES = ("_step", "num_iterations", "eos_token_ids", "args.steps_per_generation")


def check_trl() -> None:
    """Refuse a TRL outside the checked versions, naming both."""
    if trl.__version__ not in SpecifierSet(TRL_SUPPORTED):
        raise RuntimeError(f"the trl engine was checked against TRL {TRL_SUPPORTED}; this environment has "
                           f"{trl.__version__}. Install a checked version (pip install 'trl{TRL_SUPPORTED}')")


def trl_config(row: TRLRow) -> TRLConfig:
    """TRL's settings for the row: the shared schedule, optimiser and sampling, and checkpoints every
    checkpoint_every rollout steps."""
    config, per_step, group = row.config, row.config.prompts_per_step, row.group
    # TRL needs a step count up front (its progress bar and schedule): the most the budget pays for; the budget's
    # own check still stops the run at its first limit.
    max_steps = row.updates_per_step * (row.most_steps or 10**6)
    return TRLConfig(
        output_dir=str(row.run_dir / TRL_DIR), report_to="none", logging_steps=row.updates_per_step,
        # TRL's checkpoints (model, optimizer, schedule, RNG and data position) every checkpoint_every rollout
        # steps: a killed row resumes from the newest one the harness's state went into (written after TRL's
        # files, and after TRL removed older checkpoints: two are kept so one is always complete).
        save_strategy="steps", save_steps=config.checkpoint_every * row.updates_per_step, save_total_limit=2,
        logging_strategy="steps" if row.progress else "no",
        disable_tqdm=not row.progress, use_cpu=row.device == "cpu", seed=row.seed, shuffle_dataset=False,
        remove_unused_columns=False, dataloader_num_workers=0, bf16=False, fp16=False,
        # The shared schedule: a rollout step of per_step x group samples, `minibatches` updates an epoch.
        num_generations=group, per_device_train_batch_size=per_step * group // (config.minibatches * world_size()),
        gradient_accumulation_steps=1, steps_per_generation=config.minibatches, num_iterations=config.ppo_epochs,
        max_steps=max_steps, max_completion_length=row.max_new_tokens, temperature=config.temperature,
        top_p=1.0, top_k=0, beta=config.kl_beta, max_grad_norm=config.grad_clip, learning_rate=config.lr,
        adam_beta1=config.adam_betas[0], adam_beta2=config.adam_betas[1], adam_epsilon=config.adam_eps,
        weight_decay=config.weight_decay,
    )


def build_trainer(row: TRLRow, rollout_func=None) -> HarnessTRLTrainer:
    """The row's TRL trainer, ready to `.train()`: the prompts in the run seed's order, the built-in trainer's
    AdamW and warm-up, and the callback that keeps the budget and checkpoints the harness's state."""
    config = row.config
    order = schedule.prompt_order(config, row.most_steps, len(row.problems), row.seed)
    data = datasets.Dataset.from_dict({
        "prompt": [render_prompt(row.template, row.problems[i].problem, row.tokenizer if row.chat else None)
                   for i in order],
        "problem_index": order})
    optimizer = torch.optim.AdamW(row.model.parameters(), lr=config.lr, betas=config.adam_betas,
                                  eps=config.adam_eps, weight_decay=config.weight_decay)
    # The built-in warm-up: linear over rollout steps (not optimizer updates), then constant.
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda update: min(1.0, (update // row.updates_per_step + 1) / max(1, config.warmup_steps)))
    budgeted = Budgeted()
    trainer = HarnessTRLTrainer(row, model=row.model, reward_funcs=[accuracy_reward], args=trl_config(row),
                                train_dataset=data, processing_class=row.tokenizer, callbacks=[budgeted],
                                optimizers=(optimizer, lr_schedule), rollout_func=rollout_func)
    budgeted.trainer = trainer
    return trainer


def accuracy_reward(prompts, completions, **_):  # TRL requires a reward function; the grading is the adapter's
    raise AssertionError("HarnessTRLTrainer grades in _calculate_rewards")


class HarnessTRLTrainer(TRLGRPOTrainer):
    """TRL's GRPOTrainer with the harness's grading, variant math, budget and train log."""

    def __init__(self, row: TRLRow, **kwargs):
        self.row = row  # before TRL's own set-up, which may call the methods below
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
        row = self.row
        if not self.model.training or self.accelerator.num_processes > 1:
            return super()._prepare_inputs(generation_batch)
        every = self.args.steps_per_generation * self.num_iterations
        if self._step % every == 0 or self.rollout is None:  # None: resumed at a step's start
            self.rollout = self._generate_and_score_completions(generation_batch)
        epoch, index = divmod(self._step % every, self.args.steps_per_generation)
        rows = group_minibatches(self.kept_groups, self.args.steps_per_generation, row.group,
                                 derived_seed(row.seed, "minibatch", self.rollout_steps, epoch))[index]
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
        row = self.row
        # As the built-in trainer: a chat template was applied when the prompt was rendered.
        return [row.tokenizer(p, add_special_tokens=not row.chat).input_ids for p in prompts], None, {}

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        row = self.row
        texts = [cut_at_stop(c if isinstance(c, str) else c[-1]["content"], DEFAULT_STOP)[0]
                 for c in completions]
        answers = [extract(t, row.answer_format) for t in texts]
        golds = [row.problems[x["problem_index"]].golds for x in inputs]
        verdicts = row.pool.grade([(row.grader, g, a) for g, a in zip(golds, answers, strict=True)])
        self._graded = (inputs, texts, answers, verdicts)
        accuracy = torch.tensor(verdicts, dtype=torch.float32, device=self.accelerator.device)[:, None]
        return self.accelerator.gather(accuracy)

    def _generate_and_score_completions(self, inputs):
        row = self.row
        out = super()._generate_and_score_completions(inputs)
        completion_mask, prompt_mask = out["completion_mask"], out["prompt_mask"]
        rows = completion_mask.shape[0]
        # TRL's no-grad forwards over the generation batch: the old policy's (when the policy moves within a
        # step) and the reference's (kl_beta > 0).
        forward = int(prompt_mask.sum() + completion_mask.sum())
        passes = ("old_per_token_logps" in out) + ("ref_per_token_logps" in out)
        self.charge(rollouts=rows, tokens=int(completion_mask.sum()), prompt_tokens=int(prompt_mask.sum()),
                    prompts=rows // row.group, generation_flops=row.flops_per_token * forward,
                    update_tokens=forward * passes, update_flops=row.flops_per_token * forward * passes)
        batch, keep, advantages, self.probes = row.math.shape(self._variant_batch(out), row.config)
        if not torch.isfinite(batch.rewards).all():
            raise TrainingError(f"non-finite reward at step {self.rollout_steps}")
        # The groups are whole across processes (gathered); each process trains its own rows.
        mine = slice(self.accelerator.process_index * rows, (self.accelerator.process_index + 1) * rows)
        out["advantages"] = advantages.reshape(-1)[mine].to(out["advantages"].device)
        out["grpo_advantages"] = reference_advantages(batch.accuracy, batch.answered, row.reference).reshape(-1)[
            mine].to(out["advantages"].device)
        # A dropped group stays in TRL's fixed-shape batch with its loss mask zeroed: it weighs nothing, but
        # TRL still runs its rows through the training forward, so they are charged (tokens per row, kept apart
        # because TRL shuffles and splits every tensor of the batch into its minibatches).
        out["charged_tokens"] = prompt_mask.sum(dim=1) + completion_mask.sum(dim=1)
        dropped = (~keep).repeat_interleave(row.group)[mine].to(completion_mask.device)
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
        row = self.row
        from accelerate.utils import gather_object

        inputs, texts, answers, verdicts = self._graded
        mask = out["completion_mask"]
        eos = {*(self.eos_token_ids or []), row.tokenizer.pad_token_id}
        last = out["completion_ids"].gather(1, (mask.sum(dim=1) - 1).clamp(min=0)[:, None]).squeeze(1)
        columns = {"accuracy": torch.tensor(verdicts, dtype=torch.float32), "lengths": mask.sum(dim=1),
                   "truncated": torch.tensor([int(t) not in eos for t in last.tolist()]),
                   "answered": torch.tensor([a is not None for a in answers])}
        if row.reads_likelihood:
            columns["likelihood"] = mean_token_logp(self._sampling_logps(out), mask.float())
        if row.aux_rewards and getattr(row.config, "aux_reward_weight", 0):
            rows = [row.problems[x["problem_index"]] for x in inputs]
            columns.update({f"aux:{name}": torch.tensor([float(score(p, t)) for p, t in zip(rows, texts,
                                                                                         strict=True)])
                            for name, score in row.aux_rewards.items()})
        device = self.accelerator.device
        columns = {k: self.accelerator.gather(v.to(device)).cpu().view(-1, row.group) for k, v in columns.items()}
        aux = {k[4:]: v.float() for k, v in columns.items() if k.startswith("aux:")} or None
        return GroupBatch(
            accuracy=columns["accuracy"], lengths=columns["lengths"], truncated=columns["truncated"].bool(),
            answered=columns["answered"].bool(), texts=gather_object(texts), likelihood=columns.get("likelihood"),
            aux=aux, step=self.rollout_steps, max_length=row.max_new_tokens,
            thinks=bool(getattr(row.template, "thinks", False)))

    def _sampling_logps(self, out) -> torch.Tensor:
        """Per-token log-probs of the responses under the policy that sampled them: TRL's old-policy scores
        when it computed them, else one no-grad forward (charged), as the built-in sampler records them."""
        row = self.row
        if "old_per_token_logps" in out:
            return out["old_per_token_logps"]
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        with torch.no_grad():
            logps, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, attention,
                                                                  out["completion_ids"].size(1))
        self.charge(update_tokens=int(attention.sum()), update_flops=row.flops_per_token * int(attention.sum()))
        return logps

    def _compute_loss(self, model, inputs):
        row = self.row
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
        loss, probes = row.math.loss(logp, old, advantages, mask, kl, row.config, row.max_new_tokens)
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss at step {self.rollout_steps}")
        self.changes.append(update_change(loss, logp, old, inputs["grpo_advantages"], mask, row.reference,
                                          row.max_new_tokens))
        # A forward and a backward over every token of the minibatch, prompts included, as the built-in counts.
        tokens = int(inputs["charged_tokens"].sum())
        self.charge(update_tokens=2 * tokens, update_flops=3 * row.flops_per_token * tokens)
        for name, value in probes.items():
            self.probes[name] = self.probes.get(name, 0.0) + value
        ratio = torch.exp(algos.log_ratio(logp.detach(), old))
        self.clipped += algos.clipped_tokens(ratio, advantages, mask, row.config.eps_low, row.config.eps_high,
                                             row.config.dual_clip).cpu()
        self.trained_tokens += float(mask.sum())
        self.losses.append(float(loss.detach()))
        return loss

    def end_rollout_step(self) -> bool:
        """After a rollout step's last update: log it, write the ledger; True when the budget cannot pay for
        the next step at its worst-case cost (the built-in trainer's rule)."""
        row = self.row
        self.rollout_steps += 1
        elapsed = torch.tensor([time.monotonic() - self.started], device=self.accelerator.device)
        self.ledger.wall_s = float(self.accelerator.gather(elapsed).max())  # the slowest process's clock
        probes = {**self.probes, **algos.clip_shares(self.clipped, self.trained_tokens),
                  "update_change": sum(self.changes) / max(1, len(self.changes))}
        if self.accelerator.is_main_process:
            append_train_log(row.run_dir, {"step": self.rollout_steps, **self.ledger.to_dict(), **self.record,
                                       "loss": sum(self.losses) / len(self.losses) if self.losses else None,
                                       "entropy": None, "kl": None, "engine": "trl", "probes": probes})
        self.losses, self.clipped, self.trained_tokens, self.changes = [], torch.zeros(3), 0.0, []
        cost = schedule.worst_step_cost(schedule.first_round_cost(row.config, row.max_new_tokens),
                                        self.ledger.minus(self.last_step), row.flops_per_token)
        self.last_step = dataclasses.replace(self.ledger)
        self.stopped_by = row.budget.allows(self.ledger, cost)
        if self.accelerator.is_main_process:
            write_ledger(row.run_dir, row.budget, self.ledger, self.stopped_by, self.rollout_steps)
        return self.stopped_by is not None

    def harness_state(self) -> dict:
        return {"ledger": self.ledger.to_dict(), "last_step": self.last_step.to_dict(),
                "rollout_steps": self.rollout_steps, "stopped_by": self.stopped_by}

    def restore(self, saved: dict) -> None:
        """Continue from a checkpoint's state: the ledger, and the train log cut back to its steps (the steps
        after it are trained again, so none is logged twice)."""
        row = self.row
        self.ledger, self.last_step = Ledger.from_dict(saved["ledger"]), Ledger.from_dict(saved["last_step"])
        self.rollout_steps, self.stopped_by = saved["rollout_steps"], saved["stopped_by"]
        self.started = time.monotonic() - self.ledger.wall_s
        trim_train_log(row.run_dir, self.rollout_steps)

    def finish(self) -> Ledger:
        row = self.row
        self.ledger.wall_s = max(self.ledger.wall_s, time.monotonic() - self.started)
        if self.accelerator.is_main_process:
            write_ledger(row.run_dir, row.budget, self.ledger, self.stopped_by, self.rollout_steps)
        return self.ledger


class Budgeted(TrainerCallback):
    """Counts optimizer updates into the ledger, ends a rollout step after its last update (stopping when the
    budget cannot pay for the next), and writes the harness's state into each TRL checkpoint."""

    trainer: HarnessTRLTrainer

    def on_step_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        trainer.ledger.steps += 1
        if trainer.ledger.steps % trainer.row.updates_per_step == 0 and trainer.end_rollout_step():
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.trainer.accelerator.is_main_process:
            write_json_atomic(folder / HARNESS_STATE, self.trainer.harness_state())
