"""`harness compare` end to end on a random-weight model with a tiny budget: rows, ledger, leaderboard, resume."""

import json

import pytest

from harness.cli import main

TINY = ["--budget", "steps=4", "--set", "all.prompts_per_step=2", "--set", "all.group_size=4",
        "--set", "all.max_new_tokens=12", "--n", "2", "--k", "1,2", "--limit", "6", "--quiet"]


def run(model_dir, out, *extra):
    return main(["compare", "--model", str(model_dir), "--out", str(out / "runs"),
                 "--leaderboard-dir", str(out / "boards"), "--name", "tiny", *TINY, *extra])


def test_compare_trains_each_variant_within_budget_and_renders_a_leaderboard(untrained_model_dir, tmp_path, capsys):
    assert run(untrained_model_dir, tmp_path, "--variants", "grpo,dgpo") == 0
    rows = tmp_path / "runs"
    assert sorted(p.name for p in rows.iterdir() if p.is_dir()) == ["dgpo-seed0", "grpo-seed0", "warm-start"]
    for variant in ("grpo", "dgpo"):
        ledger = json.loads((rows / f"{variant}-seed0" / "train" / "ledger.json").read_text())
        # steps=4 pays for one step: its 2 groups make 2 minibatch updates in each of the shared schedule's 2 epochs.
        assert ledger["consumed"]["steps"] == 4 and ledger["stopped_by"] == "steps"
        assert (rows / f"{variant}-seed0" / "train" / "final" / "config.json").is_file()
        assert json.loads((rows / f"{variant}-seed0" / "eval" / "metrics.json").read_text())["tasks"]["sandbox"][
            "num_problems"] == 6
    board = (tmp_path / "boards" / "tiny.md").read_text()
    assert "| warm start |" in board and "| grpo |" in board and "| dgpo |" in board
    assert "| 8 / " in board and "| 4 / " in board  # rollouts (1 step x 2 prompts x G=4) / updates (2 x 2)
    assert "harness compare --model" in board
    assert (tmp_path / "boards" / "tiny-training.png").read_bytes()[:4] == b"\x89PNG"

    # Started again with the same arguments, nothing is retrained: the final models are kept as they were.
    final = rows / "grpo-seed0" / "train" / "final" / "model.safetensors"
    stamp = final.stat().st_mtime_ns
    assert run(untrained_model_dir, tmp_path, "--variants", "grpo,dgpo") == 0
    assert final.stat().st_mtime_ns == stamp
    # The leaderboard re-renders from the stored runs alone.
    assert main(["leaderboard", str(rows), "--out", str(tmp_path / "again.md")]) == 0
    assert "| dgpo |" in (tmp_path / "again.md").read_text()


def test_an_aa_pair_trains_the_same_variant_under_two_labels_with_disjoint_seeds(untrained_model_dir, tmp_path,
                                                                                   capsys):
    assert run(untrained_model_dir, tmp_path, "--variants", "grpo,grpo@aa", "--seeds", "0,1") == 0
    rows = tmp_path / "runs"
    assert sorted(p.name for p in rows.iterdir() if p.is_dir()) == [
        "grpo-seed0", "grpo-seed1", "grpo@aa-seed2", "grpo@aa-seed3", "warm-start"]
    info = json.loads((rows / "grpo@aa-seed2" / "row.json").read_text())
    assert info["label"] == "grpo@aa" and info["variant"] == "grpo" and info["seed"] == 2
    assert json.loads((rows / "grpo@aa-seed2" / "train" / "card.json").read_text())["variant"] == "grpo"
    # Seed-major: every label's first seed before any label's second.
    protocol = json.loads((rows / "protocol.json").read_text())
    assert list(protocol["variants"]) == ["grpo", "grpo@aa"]
    board = (tmp_path / "boards" / "tiny.md").read_text()
    assert "| grpo@aa |" in board and "training runs (2 seeds v 2 seeds)" in board
    assert "## Seeds needed" in board and "## Every training run" in board
    assert "| grpo@aa | 3 |" in board  # the runs table, one line per run
    assert "Seed-to-seed SD" in capsys.readouterr().out  # compare prints the seed plan too


def test_the_default_budget_is_the_sandboxs_compute_per_parameter(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.compare import DEFAULT_BUDGET, SANDBOX_PARAMETERS, default_budget
    from harness.models import parameter_count_of, resolve_model

    sandbox = resolve_model("sandbox").path
    assert parameter_count_of(sandbox) == SANDBOX_PARAMETERS and default_budget(sandbox) == DEFAULT_BUDGET
    LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=4)).save_pretrained(tmp_path / "m")
    n = parameter_count_of(tmp_path / "m")
    assert n == sum(p.numel() for p in LlamaForCausalLM.from_pretrained(tmp_path / "m").parameters()) - 100 * 64
    assert default_budget(tmp_path / "m").flops == int(float(f"{2.49e12 * n / SANDBOX_PARAMETERS:.3g}"))


def test_variant_labels_and_their_seeds():
    from harness.compare import label_seeds, parse_variant_labels

    assert parse_variant_labels("grpo, dgpo ,grpo@aa") == ["grpo", "dgpo", "grpo@aa"]
    everything = parse_variant_labels("all,grpo@aa")
    assert everything[0] == "grpo" and everything[-1] == "grpo@aa" and len(everything) >= 18
    labels = ("grpo", "grpo@aa", "grpo@bb", "dgpo@x")
    assert label_seeds("grpo", labels, (0, 1, 2)) == (0, 1, 2)
    assert label_seeds("grpo@aa", labels, (0, 1, 2)) == (3, 4, 5)
    assert label_seeds("grpo@bb", labels, (0, 1, 2)) == (6, 7, 8)
    assert label_seeds("dgpo@x", labels, (4, 7)) == (12, 15)


@pytest.mark.parametrize("variants, message", [
    ("grpo,grpo", "names grpo twice"),
    ("grpo,grpo@", "a label is VARIANT or VARIANT@TAG"),
    ("grpo,grpo@a/b", "a label is VARIANT or VARIANT@TAG"),
    ("grpo,ppo@aa", "unknown variant 'ppo'"),
])
def test_bad_variant_labels_are_one_line(untrained_model_dir, tmp_path, capsys, variants, message):
    code = main(["compare", "--model", str(untrained_model_dir), "--out", str(tmp_path / "runs"), "--quiet",
                 "--variants", variants])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_every_registered_variant_trains_within_one_budget_and_leaves_a_checkpoint(untrained_model_dir, tmp_path):
    from trainers.builtin.base import VARIANTS

    budget = 64
    assert main(["compare", "--model", str(untrained_model_dir), "--out", str(tmp_path / "runs"),
                 "--leaderboard-dir", str(tmp_path / "boards"), "--name", "all", "--variants", "all",
                 "--budget", f"rollouts={budget}", "--set", "all.prompts_per_step=4", "--set", "all.group_size=4",
                 "--set", "all.max_new_tokens=12", "--n", "1", "--k", "1", "--limit", "2", "--quiet"]) == 0
    rows = tmp_path / "runs"
    assert len(VARIANTS.names()) >= 17
    for variant in VARIANTS.names():
        train = rows / f"{variant}-seed0" / "train"
        ledger = json.loads((train / "ledger.json").read_text())
        assert ledger["steps_trained"] >= 1, variant
        assert ledger["consumed"]["rollouts"] <= budget, (variant, ledger)
        assert (train / "checkpoint.pt").is_file() and (train / "final" / "model.safetensors").is_file(), variant
    board = (tmp_path / "boards" / "all.md").read_text()
    assert "Δ pass@1 vs grpo" in board  # with --variants all, every variant is tested against grpo
    assert all(f"| {variant} |" in board for variant in VARIANTS.names())


def test_compare_refuses_a_directory_trained_under_other_settings(untrained_model_dir, tmp_path, capsys):
    assert run(untrained_model_dir, tmp_path, "--variants", "grpo") == 0
    assert run(untrained_model_dir, tmp_path, "--variants", "grpo", "--set", "grpo.lr=1e-2") == 2
    assert "different protocol card" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--variants", "grpo,ppo"], "unknown variant 'ppo'; known variants: a-grae, dapo, dgpo, disco, dr-grpo"),
    (["--variants", "grpo,dgpo", "--baseline", "dapo"], "--baseline 'dapo' is not a row of this compare"),
    (["--variants", "grpo", "--set", "grpo.temprature=1"], "no field 'temprature'"),
    (["--variants", "grpo", "--set", "dgpo.lr=1"], "not among --variants"),
    (["--variants", "grpo", "--budget", "epochs=3"], "expected NAME=VALUE"),
    (["--variants", "grpo", "--n", "2", "--k", "4"], "k=[4] impossible with n=2"),
])
def test_bad_compare_arguments_fail_before_any_work(untrained_model_dir, tmp_path, capsys, arguments, message):
    code = main(["compare", "--model", str(untrained_model_dir), "--out", str(tmp_path / "runs"), "--quiet",
                 *arguments])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_budget_that_cannot_pay_for_one_step_says_why(untrained_model_dir, tmp_path, capsys):
    code = main(["compare", "--model", str(untrained_model_dir), "--out", str(tmp_path / "runs"), "--quiet",
                 "--variants", "grpo", "--budget", "rollouts=4", "--limit", "2", "--n", "1", "--k", "1"])
    assert code == 2
    assert "cannot pay for one step" in capsys.readouterr().err
