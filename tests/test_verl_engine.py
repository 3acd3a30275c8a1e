"""The verl engine's harness side, in this project's environment: which variants it takes, the launch files it
writes (a golden test of the Hydra overrides), the reward function, and reading a finished run back as a compare
row. verl's own registries are exercised in verl's environment (tests/test_verl_parity.py)."""

import json
import re
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from harness.budget import Budget, parameter_count
from harness.cli import main
from harness.overrides import apply_overrides
from trainers.builtin.base import VARIANTS
from trainers.engines.verl.checkpoints import read_back
from trainers.engines.verl.config import check_supported, prompt_tokens, rollout_steps, write_row
from trainers.engines.verl.reward import compute_score

GOLDEN = Path(__file__).parent / "golden" / "verl-grpo-overrides.txt"


def config(variant, **overrides):
    return apply_overrides(VARIANTS.get(variant).Config(), {k: str(v) for k, v in overrides.items()})


@pytest.mark.parametrize("variant", ["grpo", "dr-grpo", "dgpo", "ngrpo", "a-grae", "grpo-lead"])
def test_variants_verl_can_run_from_scores_and_masks_are_accepted(variant):
    check_supported(variant, config(variant))


@pytest.mark.parametrize("variant, overrides, reads", [
    ("gdpo", {}, "answered"),  # its format component needs to know which responses have an answer
    ("reflection", {}, "answered"),
    ("unlikeliness", {}, "likelihood"),
    ("a-grae", {"curriculum": "linear-schedule"}, "step"),
    ("grpo", {"format_reward": 0.5}, "answered"),
])
def test_variants_reading_what_verl_does_not_hand_over_are_refused_by_name(variant, overrides, reads):
    with pytest.raises(ValueError, match=f"cannot run {variant} with these settings: it reads the responses' {reads}"):
        check_supported(variant, config(variant, **overrides))


def test_variants_needing_engine_hooks_are_refused():
    for variant in ("n-grpo", "r3", "disco", "mc-grpo", "prompt-gdro", "prompt-aug", "dapo"):
        with pytest.raises(ValueError, match=f"the verl engine cannot run {variant}, which needs"):
            check_supported(variant, config(variant))
    check_supported("dapo", config("dapo", dynamic_sampling=False))


def test_the_budget_becomes_the_most_rollout_steps_it_pays_for_at_worst_case():
    cfg = config("grpo")  # 16 prompts x 8 a step, 2 epochs x 4 updates a step
    assert rollout_steps(cfg, Budget(rollouts=40 * 128), 64) == 40
    assert rollout_steps(cfg, Budget(rollouts=40 * 128, steps=24), 64) == 3
    assert rollout_steps(cfg, Budget(tokens=128 * 64 * 7 + 5), 64) == 7
    with pytest.raises(ValueError, match="needs a budget of steps, prompts, rollouts or tokens"):
        rollout_steps(cfg, Budget(update_tokens=10**6), 64)


def test_launch_files_match_the_golden_overrides(tmp_path):
    """The generated Hydra overrides, paths aside, are the reviewed golden file: a change to the mapping from the
    harness's settings to verl's shows up here (regenerate the file with HARNESS_REGENERATE_GOLDEN=1)."""
    import os

    import pandas as pd

    row = tmp_path / "grpo-seed0"
    launch = write_row(row, "grpo", config("grpo"), model_path=str(tmp_path / "model"),
                       prompts=[f"What is {i}+1?" for i in range(20)], golds=[(str(i + 1),) for i in range(20)],
                       answer_format="boxed", grader="math", budget=Budget(rollouts=3 * 128), seed=7,
                       max_new_tokens=64, max_prompt_tokens=80)
    overrides = (row / "verl" / "overrides.txt").read_text().replace(str(tmp_path.resolve()), "<tmp>")
    overrides = re.sub(r"reward\.custom_reward_function\.path=.*", "reward.custom_reward_function.path=<reward.py>",
                       overrides)
    if os.environ.get("HARNESS_REGENERATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(overrides)
    assert overrides == GOLDEN.read_text()
    assert launch.read_text().startswith("#!/usr/bin/env bash") and "verl.trainer.main_ppo" in launch.read_text()
    data = pd.read_parquet(row / "verl" / "train.parquet")
    assert len(data) == 3 * 16  # the prompts of the 3 rollout steps the budget pays for, in training order
    assert data["prompt"][0][0]["content"] == "What is 0+1?" and json.loads(data["reward_model"][20]["ground_truth"]) == ["1"]
    spec = json.loads((row / "verl" / "spec.json").read_text())
    assert spec["variant"] == "grpo" and spec["max_length"] == 64 and spec["config"]["group_size"] == 8


def test_prompt_length_counts_the_chat_template_verl_will_apply(untrained_model_dir):
    """data.max_prompt_length with truncation=error: it must count the tokens verl will feed, template included."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(untrained_model_dir)
    plain = prompt_tokens(tokenizer, "What is 1+1?")
    assert plain == len(tokenizer("What is 1+1?").input_ids) > 2
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    templated = tokenizer.apply_chat_template([{"role": "user", "content": "What is 1+1?"}], tokenize=False,
                                              add_generation_prompt=True)
    assert prompt_tokens(tokenizer, "What is 1+1?") == len(tokenizer(templated, add_special_tokens=False).input_ids)
    assert prompt_tokens(tokenizer, "What is 1+1?") > plain


def test_reward_function_grades_with_the_tasks_extraction_and_grader():
    info = {"answer_format": "boxed", "grader": "math"}
    assert compute_score("rlvr-harness", r"so \boxed{\frac{1}{2}}", json.dumps(["0.5"]), info) == 1.0
    assert compute_score("rlvr-harness", r"so \boxed{3}", json.dumps(["0.5"]), info) == 0.0
    assert compute_score("rlvr-harness", "no answer", json.dumps(["0.5"]), info) == 0.0


def fake_verl_run(verl_dir: Path, model_dir: Path, steps: int) -> None:
    """What a finished verl run leaves: its last checkpoint's Hugging Face model and its per-step metrics."""
    import shutil

    hf = verl_dir / "checkpoints" / f"global_step_{steps}" / "actor" / "huggingface"
    shutil.copytree(model_dir, hf)
    (verl_dir / "checkpoints" / "latest_checkpointed_iteration.txt").write_text(str(steps))
    with open(verl_dir / "metrics-20261201-120000.jsonl", "w") as f:
        for step in range(1, steps + 1):
            f.write(json.dumps({"step": step, "data": {
                "critic/score/mean": 0.25 * step, "response_length/mean": 10.0, "prompt_length/mean": 6.0,
                "actor/pg_loss": 0.1, "actor/harness/clipped": 0.01 * step, "actor/harness/advantage_change": 0.5,
                "actor/harness/kl_old": 0.002, "actor/harness/ratio_max": 1.3, "actor/grad_norm": 0.7,
                "timing_s/step": 2.0}}) + "\n")


def test_a_finished_verl_run_reads_back_as_a_row(untrained_model_dir, tmp_path):
    verl_dir, train = tmp_path / "row" / "verl", tmp_path / "row" / "train"
    assert read_back(verl_dir, train, config("dgpo"), Budget(rollouts=256)) is None  # not run yet
    fake_verl_run(verl_dir, untrained_model_dir, steps=2)
    final = read_back(verl_dir, train, config("dgpo"), Budget(rollouts=256))
    assert (final / "config.json").is_file() and list(final.glob("*.safetensors"))
    ledger = json.loads((train / "ledger.json").read_text())
    assert ledger["steps_trained"] == 2
    consumed = ledger["consumed"]  # 2 steps of 16 prompts x 8, 2 epochs x 4 updates a step, verl's mean lengths
    assert [consumed[k] for k in ("steps", "prompts", "rollouts", "tokens", "prompt_tokens")] == [16, 32, 256, 2560,
                                                                                                   1536]
    # Estimated: forward + backward in each of its two epochs and the old policy's forward, over prompts and
    # responses.
    assert consumed["update_tokens"] == (2560 + 1536) * 5
    # Its FLOPs from those counts and the model's parameter count N: 2N a generated or prompt token, 2N + 2 x 6N a
    # token of the update (the old policy's forward, then forward and backward in each epoch).
    n = parameter_count(AutoModelForCausalLM.from_pretrained(untrained_model_dir))
    assert consumed["generation_flops"] == 2 * n * (2560 + 1536)
    assert consumed["update_flops"] == 14 * n * (2560 + 1536)
    log = [json.loads(line) for line in (train / "train_log.jsonl").read_text().splitlines()]
    assert [r["accuracy"] for r in log] == [0.25, 0.5] and log[1]["probes"]["clipped"] == 0.02
    # The plugin's diagnostics are the built-in trainer's fields, not probes; verl's own gradient norm too.
    assert (log[0]["kl_old"], log[0]["ratio_max"], log[0]["grad_norm"]) == (0.002, 1.3, 0.7)
    assert set(log[0]["probes"]) == {"clipped", "advantage_change"}
    # A relaunch (resumed after its step 1) logs to a file of its own; the latest record of a step counts.
    with open(verl_dir / "metrics-20261201-130000.jsonl", "w") as f:
        f.write(json.dumps({"step": 2, "data": {"critic/score/mean": 0.75, "response_length/mean": 10.0}}) + "\n")
    read_back(verl_dir, train, config("dgpo"), Budget(rollouts=256))
    log = [json.loads(line) for line in (train / "train_log.jsonl").read_text().splitlines()]
    assert [r["accuracy"] for r in log] == [0.25, 0.75]
    assert log[0]["engine"] == "verl" and log[0]["rollouts"] == 128


def test_compare_with_verl_prepares_launch_files_then_ranks_the_trained_rows(untrained_model_dir, tmp_path, capsys):
    args = ["compare", "--engine", "verl", "--model", str(untrained_model_dir), "--variants", "grpo",
            "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "boards"), "--name", "v",
            "--budget", "rollouts=32", "--set", "all.prompts_per_step=4", "--set", "all.group_size=4",
            "--set", "all.max_new_tokens=12", "--n", "2", "--k", "1", "--limit", "4", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    launch = tmp_path / "runs" / "grpo-seed0" / "verl" / "launch.sh"
    assert str(launch) in out and "run this command again" in out
    assert not (tmp_path / "boards" / "v.md").exists()
    fake_verl_run(launch.parent, untrained_model_dir, steps=2)  # as if launch.sh had run on a GPU machine
    assert main(args) == 0
    board = (tmp_path / "boards" / "v.md").read_text()
    assert "| grpo |" in board and "| 32 / " in board
    assert json.loads((tmp_path / "runs" / "grpo-seed0" / "train" / "card.json").read_text())["engine"] == "verl"
