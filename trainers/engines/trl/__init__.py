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
import os
from pathlib import Path

import torch

from harness.budget import Budget, Ledger, parameter_count
from harness.engines import ENGINES, Trained, TrainRow, train_in_process
from trainers.algos.configs import grpo_reference
from trainers.algos.variants import MATH, missing_input, refuse_unless_registry_shaped
from trainers.protocol import schedule
from trainers.protocol.runlog import TRAIN_LOG, TrainingError
from trainers.protocol.seeds import group_rows, minibatch_groups

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


def make_trl_trainer(variant: str, config, *, model, tokenizer, problems, template, answer_format: str, grader: str,
                     max_new_tokens: int, budget: Budget, seed: int, run_dir: Path, pool, progress: bool = False,
                     aux_rewards=None, device: str = "cpu", rollout_func=None):
    """The TRL GRPOTrainer subclass that runs `variant`, ready to `.train()` (`rollout_func`: TRL's hook to
    generate elsewhere; the parity test feeds it the built-in sampler's responses)."""
    from trainers.engines.trl.adapter import build_trainer, check_trl

    check_trl()
    check_supported(variant, config)
    max_new_tokens = config.max_new_tokens or max_new_tokens
    first_round = schedule.first_round_cost(config, max_new_tokens)
    schedule.check_budget(variant, config, first_round, config.group_size, max_new_tokens, budget,
                          2 * parameter_count(model))
    row = TRLRow(
        variant=variant, config=config, math=MATH.get(variant),
        reference=grpo_reference(config),  # plain GRPO under the same protocol: what update_change compares with
        model=model, tokenizer=tokenizer, chat=bool(getattr(tokenizer, "chat_template", None)), problems=problems,
        template=template, answer_format=answer_format, grader=grader, max_new_tokens=max_new_tokens,
        budget=budget, seed=seed, run_dir=Path(run_dir), pool=pool, progress=progress,
        aux_rewards=aux_rewards, device=device,
        updates_per_step=schedule.updates_per_step(config, config.prompts_per_step),
        most_steps=schedule.most_steps_paid(first_round, budget),
        flops_per_token=2 * parameter_count(model),  # a token through one forward pass (harness.budget)
        # The sampling policy's log-probs cost TRL a forward when the policy does not move within a step: only
        # when read.
        reads_likelihood=missing_input(variant, config, ("lengths", "truncated", "answered", "texts", "aux",
                                                         "step", "max_length")) == "likelihood")
    return build_trainer(row, rollout_func)


@dataclasses.dataclass(frozen=True)
class TRLRow:
    """Everything a TRL row trains with: the row's settings and what the adapter derives from them once."""

    variant: str
    config: object
    math: object  # the variant's VariantMath
    reference: object  # plain GRPO's config under the same protocol
    model: object
    tokenizer: object
    chat: bool  # the tokenizer has a chat template (prompts are rendered with it)
    problems: list
    template: object
    answer_format: str
    grader: str
    max_new_tokens: int
    budget: Budget
    seed: int
    run_dir: Path
    pool: object
    progress: bool
    aux_rewards: object
    device: str
    updates_per_step: int
    most_steps: int | None
    flops_per_token: int
    reads_likelihood: bool

    @property
    def group(self) -> int:
        return self.config.group_size


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
