"""A compare row's verl launch files, generated from the harness's settings: the data (verl's parquet format, the
harness's prompt order and template), the variant spec the plugin reads, the Hydra overrides of verl's
`ppo_trainer` config and a launch script.

The mapping (the shared protocol, so a verl row trains what a built-in row trains):
- a rollout step: data.train_batch_size = prompts_per_step prompts x rollout.n = group_size responses;
- `minibatches` updates an epoch: actor.ppo_mini_batch_size = prompts_per_step / minibatches (verl counts it in
  prompts), one micro-batch per update (the variant's loss aggregates a whole minibatch, as the built-in trainer's);
- `ppo_epochs`, learning rate, AdamW betas and weight decay, gradient clip, clip bounds (eps_low, eps_high, dual
  clip), KL (kl_beta as verl's low-variance k3 KL loss), temperature and generation limit;
- warm-up: verl warms up linearly per optimizer update from a rate of 0 at the first, so warmup_steps rollout
  steps become warmup_steps x updates per step updates (the built-in trainer holds lr x step / warmup_steps within
  a rollout step, from lr / warmup_steps);
- the budget: verl cannot stop on a token count mid-run, so trainer.total_training_steps is the most rollout steps
  the budget pays for at worst-case cost (every response to the generation limit); the ledger is read back from
  verl's own metrics (`checkpoints`);
- the seed: the prompt order is the run seed's (data.shuffle off), and every verl seed is the run seed.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

from harness.budget import Budget
from trainers.algos.variants import missing_input, refuse_unless_registry_shaped
from trainers.engines.verl import verl_name
from trainers.protocol import schedule

# What verl's advantage step hands the variant math (see plugin.py); a variant reading anything else is refused.
VERL_INPUTS = ("lengths", "truncated", "max_length")  # and the accuracy
SPEC = "spec.json"
OVERRIDES = "overrides.txt"
LAUNCH = "launch.sh"


def check_supported(variant: str, config) -> None:
    """Refuse, before any work, a variant verl cannot run from the scores and masks its advantage step sees."""
    refuse_unless_registry_shaped("verl", variant, config)
    missing = missing_input(variant, config, VERL_INPUTS)
    if missing:
        raise ValueError(f"the verl engine cannot run {variant} with these settings: it reads the responses' "
                         f"{missing}, and verl's advantage step sees only their scores and masks "
                         f"(accuracy, {', '.join(VERL_INPUTS)}); train it with --engine builtin or trl")
    if config.prompts_per_step % config.minibatches:
        raise ValueError(f"{variant}: verl splits a step's {config.prompts_per_step} prompts into equal minibatches, "
                         f"and that is not divisible by minibatches={config.minibatches}")
    if config.rollout_engine != "builtin" or config.prefix_grouper:
        raise ValueError(f"{variant}: rollout_engine and prefix_grouper are the built-in trainer's; verl generates "
                         "with its own vLLM and scores with its own forward, so leave them at their defaults")


def prompt_tokens(tokenizer, message: str) -> int:
    """How many tokens verl's prompt for the user message `message` takes: under the model's chat template
    (verl applies it, with the generation prompt), or the message itself for a model without one."""
    if getattr(tokenizer, "chat_template", None):
        message = tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                                add_generation_prompt=True)
        return len(tokenizer(message, add_special_tokens=False).input_ids)
    return len(tokenizer(message).input_ids)


def rollout_steps(config, budget: Budget, max_new_tokens: int) -> int:
    """The most rollout steps `budget` pays for, every response at the generation limit (verl cannot stop on a
    count mid-run). Update compute and wall-clock are not known in advance and are not bounded here."""
    steps = schedule.most_steps_paid(schedule.first_round_cost(config, max_new_tokens), budget)
    if steps is None:
        raise ValueError("the verl engine needs a budget of steps, prompts, rollouts or tokens: it fixes the number "
                         "of rollout steps before launching (update_tokens, prompt_tokens, flops and wall_s alone cannot), "
                         "e.g. --budget rollouts=5120")
    if steps < 1:
        raise ValueError(f"the budget {budget.to_dict()} cannot pay for one verl rollout step")
    return steps


def verl_overrides(variant: str, config, *, model_path: str, train_files: str, val_files: str,
                   checkpoint_dir: str, steps: int, seed: int, max_new_tokens: int,
                   max_prompt_length: int, reward_path: str, gpus: int = 1, name: str = "harness") -> list[str]:
    """Hydra overrides of verl's `ppo_trainer` config that train `variant` under the shared protocol."""
    registered = verl_name(variant)
    updates = schedule.updates_per_step(config, config.prompts_per_step)
    mini = config.prompts_per_step // config.minibatches
    actor = "actor_rollout_ref.actor"
    values = {
        "algorithm.adv_estimator": registered,
        "algorithm.use_kl_in_reward": False,
        "data.train_files": train_files,
        "data.val_files": val_files,
        "data.train_batch_size": config.prompts_per_step,
        "data.max_prompt_length": max_prompt_length,
        "data.max_response_length": max_new_tokens,
        "data.shuffle": False,
        "data.seed": seed,
        "data.filter_overlong_prompts": False,
        "data.truncation": "error",
        "actor_rollout_ref.model.path": model_path,
        f"{actor}.policy_loss.loss_mode": registered,
        f"{actor}.loss_agg_mode": config.loss_aggregation,  # the names are verl's; it aggregates the KL loss with it
        f"{actor}.ppo_mini_batch_size": mini,
        f"{actor}.ppo_micro_batch_size_per_gpu": max(1, mini * config.group_size // gpus),
        f"{actor}.ppo_epochs": config.ppo_epochs,
        f"{actor}.shuffle": False,
        f"{actor}.data_loader_seed": seed,
        f"{actor}.clip_ratio_low": config.eps_low,
        f"{actor}.clip_ratio_high": config.eps_high,
        f"{actor}.clip_ratio_c": config.dual_clip if config.dual_clip is not None else 3.0,
        f"{actor}.use_kl_loss": config.kl_beta > 0,
        f"{actor}.kl_loss_coef": config.kl_beta,
        f"{actor}.kl_loss_type": "low_var_kl",
        f"{actor}.entropy_coeff": 0,
        f"{actor}.optim.lr": config.lr,
        f"{actor}.optim.betas": list(config.adam_betas),
        f"{actor}.optim.weight_decay": config.weight_decay,
        f"{actor}.optim.clip_grad": config.grad_clip,
        f"{actor}.optim.lr_warmup_steps": config.warmup_steps * updates,
        f"{actor}.optim.lr_scheduler_type": "constant",
        f"{actor}.checkpoint.save_contents": ["model", "optimizer", "extra", "hf_model"],
        f"{actor}.fsdp_config.seed": seed,
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.n": config.group_size,
        "actor_rollout_ref.rollout.temperature": config.temperature,
        "actor_rollout_ref.rollout.top_p": 1.0,
        "actor_rollout_ref.rollout.top_k": -1,
        "actor_rollout_ref.rollout.seed": seed,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
        "actor_rollout_ref.rollout.gpu_memory_utilization": 0.4,
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": max(1, mini * config.group_size // gpus),
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": max(1, mini * config.group_size // gpus),
        "reward.custom_reward_function.path": reward_path,
        "reward.custom_reward_function.name": "compute_score",
        "trainer.total_training_steps": steps,
        "trainer.total_epochs": 1000,
        "trainer.save_freq": steps,
        "trainer.test_freq": -1,
        "trainer.val_before_train": False,
        "trainer.default_local_dir": checkpoint_dir,
        "trainer.project_name": "rlvr-harness",
        "trainer.experiment_name": name,
        "trainer.logger": ["console", "file"],
        "trainer.n_gpus_per_node": gpus,
        "trainer.nnodes": 1,
        "trainer.critic_warmup": 0,
        "trainer.resume_mode": "auto",
    }
    return [f"{key}={_hydra(value)}" for key, value in values.items()]


def _hydra(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_hydra(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_row(row_dir: Path, variant: str, config, *, model_path: str, prompts: list[str], golds: list[tuple],
              answer_format: str, grader: str, budget: Budget, seed: int, max_new_tokens: int,
              max_prompt_tokens: int, gpus: int = 1) -> Path:
    """Write `row_dir`/verl: train.parquet (prompts in the order they are trained on, golds for the reward),
    spec.json, overrides.txt and launch.sh; returns the launch script."""
    import pandas as pd

    from trainers.engines.verl import reward

    check_supported(variant, config)
    steps = rollout_steps(config, budget, max_new_tokens)
    out = Path(row_dir) / "verl"
    out.mkdir(parents=True, exist_ok=True)
    # The prompts of the steps the budget pays for, in training order (repeated if too few were given).
    rows = [{"data_source": "rlvr-harness", "prompt": [{"role": "user", "content": prompts[i % len(prompts)]}],
             "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": json.dumps(list(golds[i % len(prompts)]))},
             "extra_info": {"index": i % len(prompts), "answer_format": answer_format, "grader": grader}}
            for i in range(steps * config.prompts_per_step)]
    pd.DataFrame(rows).to_parquet(out / "train.parquet")
    pd.DataFrame(rows[: config.prompts_per_step]).to_parquet(out / "val.parquet")
    spec = {"variant": variant, "max_length": max_new_tokens, "config": dataclasses.asdict(config)}
    (out / SPEC).write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    overrides = verl_overrides(
        variant, config, model_path=str(Path(model_path).resolve()), train_files=str((out / "train.parquet").resolve()),
        val_files=str((out / "val.parquet").resolve()),
        checkpoint_dir=str((out / "checkpoints").resolve()), steps=steps, seed=seed, max_new_tokens=max_new_tokens,
        max_prompt_length=max_prompt_tokens, reward_path=reward.__file__, gpus=gpus,
        name=Path(row_dir).name)
    (out / OVERRIDES).write_text("\n".join(overrides) + "\n")
    launch = out / LAUNCH
    launch.write_text(launch_script(out))
    launch.chmod(0o755)
    return launch


def launch_script(out: Path) -> str:
    here = shlex.quote(str(out.resolve()))
    return f"""#!/usr/bin/env bash
# Train this compare row with verl (generated by `harness compare --engine verl`). Run it on a machine with CUDA
# GPUs, from the project's verl environment (bash envs/verl.sh; . .venv-verl/bin/activate), then run the same
# compare command again: it reads the checkpoint back, evaluates it and ranks it.
set -euo pipefail
cd {here}
# The variant's settings, read by the harness's verl plugin in every verl process (Ray's workers on this node
# inherit the environment; on a multi-node cluster export it on every node before `ray start`).
export HARNESS_VERL_SPEC={here}/{SPEC}
# verl's file logger truncates its file when it opens it: each launch (a resumed one too) logs to its own.
export VERL_FILE_LOGGER_PATH={here}/metrics-$(date +%Y%m%d-%H%M%S).jsonl
mapfile -t overrides < {OVERRIDES}
python -m verl.trainer.main_ppo "${{overrides[@]}}" "$@"
"""
