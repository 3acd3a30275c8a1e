"""The lm-eval round trip on a real lm-eval run: harness tasks exported, sampled by lm-eval's own hf model on
the sandbox, graded inside lm-eval by the harness's metric, and the logged samples graded back by `harness eval`
to the same numbers (needs the lm-eval extra; CI installs it)."""

import json
import subprocess
import sys

import pytest

from harness.cli import main

pytest.importorskip("lm_eval", reason="lm-eval is an optional extra: pip install rlvr-harness[lm-eval]")


@pytest.mark.slow
def test_exported_tasks_run_in_lm_eval_and_their_samples_grade_back_to_the_same_numbers(tmp_path, capsys):
    from harness.models import resolve_model

    model = resolve_model("sandbox").path
    assert main(["export", "lm-eval", "--tasks", "sandbox", "--n", "4", "--k", "1,4", "--out",
                 str(tmp_path / "tasks")]) == 0
    yaml = (tmp_path / "tasks" / "harness_sandbox.yaml").read_text()
    assert "repeats: 4" in yaml and "process_results: !function utils.process_results" in yaml
    run = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                          f"pretrained={model},dtype=float32", "--tasks", "harness_sandbox", "--include_path",
                          str(tmp_path / "tasks"), "--limit", "12", "--log_samples", "--output_path",
                          str(tmp_path / "out"), "--device", "cpu", "--batch_size", "16"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    (results,) = tmp_path.glob("out/*/results_*.json")
    (samples,) = tmp_path.glob("out/*/samples_harness_sandbox_*.jsonl")
    lm_eval_scores = json.loads(results.read_text())["results"]["harness_sandbox"]
    assert main(["eval", "--tasks", "sandbox", "--limit", "12", "--k", "1,4", "--lm-eval-samples", str(samples),
                 "--out", str(tmp_path / "graded"), "--quiet"]) == 0
    ours = json.loads((tmp_path / "graded" / "metrics.json").read_text())["tasks"]["sandbox"]
    assert ours["n"] == 4 and ours["num_problems"] == 12
    for k in (1, 4):
        assert ours["pass@k"][str(k)]["mean"] == pytest.approx(lm_eval_scores[f"pass_at_{k},all"])
    card = json.loads((tmp_path / "graded" / "card.json").read_text())
    assert card["backend"]["format"] == "lm-eval" and "extraction" not in card["tasks"]["sandbox"]


def test_a_file_that_is_not_lm_eval_samples_is_one_line(tmp_path, capsys):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"doc": {"question": "?"}, "filtered_resps": [["x"]]}) + "\n")
    assert main(["eval", "--tasks", "sandbox", "--limit", "1", "--lm-eval-samples", str(path), "--out",
                 str(tmp_path / "r"), "--quiet"]) == 2
    assert "not a sample of a task from `harness export lm-eval`" in capsys.readouterr().err
