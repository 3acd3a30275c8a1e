"""Bring a finished verl run back as a compare row: its last checkpoint's Hugging Face model becomes the row's final
model (evaluated like every other row), and verl's per-step metrics become the row's ledger and train log.

verl writes `<checkpoints>/latest_checkpointed_iteration.txt` and `global_step_<N>/actor/huggingface/` (the model
itself only when `checkpoint.save_contents` has `hf_model`, which the generated overrides ask for); with
`trainer.logger=[console,file]` and $VERL_FILE_LOGGER_PATH (set by launch.sh) one JSON line a step in
`metrics-<launch time>.jsonl`.

verl reports no training-side token counts, so a verl row's update_tokens are estimated from its mean prompt and
response lengths and its schedule: a forward and a backward over every sample each PPO epoch, plus the forward of
the old policy's log-probs and, with a KL loss, the reference's (`update_passes`); its FLOPs follow from those
counts and the model's parameter count (harness.budget's model).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.budget import Budget, Ledger
from harness.models import parameter_count_of
from trainers.protocol import schedule

PROBE_PREFIX = "harness/"


def latest_model(verl_dir: Path) -> tuple[int, Path] | None:
    """(rollout steps, Hugging Face model directory) of the run's last checkpoint; None before it has one."""
    root = Path(verl_dir) / "checkpoints"
    latest = root / "latest_checkpointed_iteration.txt"
    if not latest.is_file():
        return None
    step = int(latest.read_text().strip())
    model = root / f"global_step_{step}" / "actor" / "huggingface"
    if not (model / "config.json").is_file() or not any(model.glob("*.safetensors")):
        raise ValueError(f"verl's checkpoint {model} has no model weights: it was saved without hf_model in "
                         "actor.checkpoint.save_contents; relaunch with the generated overrides")
    return step, model


def read_metrics(verl_dir: Path) -> list[dict]:
    """verl's per-step metrics (one `metrics-<launch time>.jsonl` per launch, from its file logger), in step order;
    a step logged by several launches (a resumed run repeats the steps after its checkpoint) keeps the latest."""
    last = {}
    for path in sorted(Path(verl_dir).glob("metrics*.jsonl")):  # launch times sort in launch order
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                last[record["step"]] = record["data"]
    return [{"step": step, **last[step]} for step in sorted(last)]


def update_passes(config) -> int:
    """Passes a verl step makes over each sample on the training side: forward and backward per PPO epoch, the old
    policy's forward (verl recomputes its log-probs) and, with a KL loss, the reference's."""
    return 2 * config.ppo_epochs + 1 + (1 if config.kl_beta > 0 else 0)


# What the plugin's loss logs beside the probes: the built-in trainer's per-step diagnostics of the same names.
# verl averages a step's micro-batch figures, so ratio_max is there the mean of each minibatch's max.
PLUGIN_DIAGNOSTICS = ("kl_old", "ratio_mean", "ratio_max", "clip_sequences")


def step_record(metrics: dict, ledger: Ledger) -> dict:
    """One train-log record (the built-in trainer's fields) from verl's metrics of one step. Not in verl's metrics,
    so not logged: update_change (the loss sees no accuracy to build GRPO's reference from), reward SD, lengths of
    right and wrong answers, groups with no reward spread."""
    ours = {key.split(PROBE_PREFIX, 1)[1]: value for key, value in metrics.items() if PROBE_PREFIX in key}
    diagnostics = {name: ours.pop(name) for name in PLUGIN_DIAGNOSTICS if name in ours}
    score = metrics.get("critic/score/mean")
    return {"step": metrics["step"], **ledger.to_dict(), "reward_mean": metrics.get("critic/rewards/mean", score),
            "accuracy": score, "response_length": metrics.get("response_length/mean"),
            "truncated": metrics.get("response_length/clip_ratio"), "loss": metrics.get("actor/pg_loss"),
            "entropy": metrics.get("actor/entropy"), "kl": metrics.get("actor/kl_loss"),
            "grad_norm": metrics.get("actor/grad_norm"), **diagnostics, "engine": "verl", "probes": ours}


def read_back(verl_dir: Path, train_dir: Path, config, budget: Budget) -> Path | None:
    """Write the row's train/ledger.json, train_log.jsonl and final/ from a finished verl run; returns final/, or
    None while the run has no checkpoint yet."""
    from harness.cache import atomic_directory
    from trainers.protocol.runlog import TRAIN_LOG, append_train_log, write_ledger

    found = latest_model(verl_dir)
    if found is None:
        return None
    steps, model = found
    rows = config.prompts_per_step * config.group_size
    per_token = 2 * parameter_count_of(model)  # FLOPs of a token through one forward pass
    passes = update_passes(config)
    backward = config.ppo_epochs  # of the passes, those with a backward (6N rather than 2N)
    ledger = Ledger()
    train_dir.mkdir(parents=True, exist_ok=True)
    (train_dir / TRAIN_LOG).unlink(missing_ok=True)
    for metrics in read_metrics(verl_dir)[:steps]:
        response = metrics.get("response_length/mean", 0) * rows
        prompt = metrics.get("prompt_length/mean", 0) * rows
        ledger.add(Ledger(steps=schedule.updates_per_step(config, config.prompts_per_step),
                          prompts=config.prompts_per_step, rollouts=rows, tokens=round(response),
                          prompt_tokens=round(prompt), update_tokens=round((prompt + response) * passes),
                          generation_flops=round(per_token * (prompt + response)),
                          update_flops=round(per_token * (prompt + response) * (passes + backward)),
                          wall_s=metrics.get("timing_s/step", 0.0)))
        append_train_log(train_dir, step_record(metrics, ledger))
    write_ledger(train_dir, budget, ledger, "trainer.total_training_steps (verl: the budget's rollout steps)", steps)
    final = train_dir / "final"
    if not (final / "config.json").is_file():
        with atomic_directory(final) as scratch:
            for item in model.iterdir():
                if item.is_file():
                    shutil.copy2(item, Path(scratch) / item.name)
    return final
