"""End-to-end evaluation on a randomly initialised sandbox model: real generation, grading, run store."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.evaluate import EvalConfig, run_eval

ROOT = Path(__file__).resolve().parents[1]


def eval_args(model_dir, out, *extra):
    return ["eval", "--model", str(model_dir), "--tasks", "sandbox", "--limit", "12", "--n", "4", "--k", "1,2,4",
            "--batch-size", "8", "--out", str(out), "--quiet", *extra]


def sample_keys(run_dir):
    lines = (Path(run_dir) / "samples.jsonl").read_text().splitlines()
    return [(s["problem_id"], s["sample_index"]) for s in map(json.loads, lines)]


def test_eval_writes_card_samples_metrics_and_summary(untrained_model_dir, tmp_path):
    config = EvalConfig(model=str(untrained_model_dir), limit=12, n=4, k=(1, 2, 4), batch_size=8,
                        out=str(tmp_path / "run"))
    result = run_eval(config, progress=False)
    card = json.loads((result.run_dir / "card.json").read_text())
    assert card["tasks"]["sandbox"]["n"] == 4 and card["tasks"]["sandbox"]["num_problems"] == 12
    assert card["model"]["weights_sha256"] and card["tasks"]["sandbox"]["template"]["sha256"]
    keys = sample_keys(result.run_dir)
    assert len(keys) == len(set(keys)) == 48
    m = result.metrics["tasks"]["sandbox"]
    assert set(m["pass@k"]) == {"1", "2", "4"}
    assert m["pass@k"]["1"]["mean"] == pytest.approx(m["mean@n"]["mean"])
    assert m["pass@k"]["1"]["mean"] <= m["pass@k"]["4"]["mean"]
    assert (result.run_dir / "summary.md").read_text().startswith("# Evaluation of")

    # Running the same command again generates nothing and reproduces the numbers.
    again = run_eval(config, progress=False)
    assert again.generated == 0
    assert again.metrics == result.metrics


def test_same_seed_same_samples_other_seed_other_samples(untrained_model_dir, tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = EvalConfig(model=str(untrained_model_dir), limit=3, n=2, batch_size=4, seed=seed,
                            out=str(tmp_path / name))
        run_eval(config, progress=False)
        runs[name] = (tmp_path / name / "samples.jsonl").read_text()
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_killed_eval_resumes_without_losing_or_duplicating(untrained_model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def command(out):
        args = [sys.executable, "-m", "harness.cli", *eval_args(untrained_model_dir, tmp_path / out)]
        args[args.index("12")] = "40"  # enough batches that the kill lands mid-run
        return [*args, "--max-new-tokens", "32"]  # the untrained model never stops: keep its samples short

    args = command("killed")
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = tmp_path / "killed" / "samples.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if samples.exists() and len(samples.read_text().splitlines()) >= 16:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    partial = sample_keys(tmp_path / "killed")
    assert 16 <= len(partial) < 160

    resumed = subprocess.run(args, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = subprocess.run(command("clean"), env=env, capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    keys = sample_keys(tmp_path / "killed")
    assert len(keys) == len(set(keys)) == 160
    assert keys[: len(partial)] == partial

    def by_key(run):
        return {(s["problem_id"], s["sample_index"]): s
                for s in map(json.loads, (tmp_path / run / "samples.jsonl").read_text().splitlines())}

    assert by_key("killed") == by_key("clean")
    killed_metrics = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    clean_metrics = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    assert killed_metrics == clean_metrics


def test_a_second_writer_is_refused_at_once_naming_the_first(untrained_model_dir, tmp_path, capsys):
    """Two real processes on one --out: the second fails with one line naming the first, which finishes with
    every sample once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "harness.cli", *eval_args(untrained_model_dir, tmp_path / "run"),
            "--max-new-tokens", "32"]
    args[args.index("12")] = "40"
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = tmp_path / "run" / "samples.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and not samples.exists():
        time.sleep(0.02)
    assert first.poll() is None, "the first writer finished before the second could try"
    assert main(eval_args(untrained_model_dir, tmp_path / "run", "--max-new-tokens", "32")) == 2
    err = capsys.readouterr().err
    assert f"is being written by pid {first.pid}" in err and "Traceback" not in err
    assert first.wait(timeout=300) == 0, first.stderr.read()
    keys = sample_keys(tmp_path / "run")
    assert len(keys) == len(set(keys)) == 160
    assert oct((tmp_path / "run" / "card.json").stat().st_mode & 0o777) != oct(0o600)  # colleagues can read it


def test_repeated_samples_from_an_old_double_write_count_once(tmp_path, capsys):
    from tasks.synthetic import sandbox_test

    lines = [{"problem_id": r["id"], "completion": f"\\boxed{{{r['answer']}}}"} for r in sandbox_test()[:4]]
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = ["eval", "--tasks", "sandbox", "--limit", "4", "--n", "1", "--k", "1", "--completions", str(path),
            "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    stored = tmp_path / "run" / "samples.jsonl"
    stored.write_text(stored.read_text() * 2)  # what two unlocked writers used to leave
    assert main(args) == 0
    assert "holds 4 repeated samples" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["tasks"]["sandbox"]
    assert metrics["n"] == 1 and metrics["num_problems"] == 4


@pytest.mark.parametrize(("lines", "message"), [
    ([{"problem_id": "sandbox-test-00000", "completion": 5}], ":1: 'completion' must be a string, got int"),
    ([{"problem_id": "sandbox-test-00000", "completion": "\ud800"}], ":1: 'completion' holds a character UTF-8 cannot"),
    ([{"problem_id": "sandbox-test-00000", "completion": None}], ":1: 'completion' must be a string, got NoneType"),
    ([{"problem_id": "sandbox-test-00000", "completion": "x", "sample_index": None}], "must be a whole number"),
    ([{"problem_id": "sandbox-test-00000", "completion": "x", "sample_index": 1.5}], "must be a whole number"),
    ([{"problem_id": "sandbox-test-00000", "completion": "x", "sample_index": -1}], "must be a whole number"),
    ([{"problem_id": "sandbox-test-00000", "completion": "x", "sample_index": 0},
      {"problem_id": "sandbox-test-00000", "completion": "y", "sample_index": 0}], ":2: sample 0 of sandbox-test-00000 "
                                                                                    "appears twice (first at"),
    ([{"problem_id": "sandbox-test-00000", "completion": "x"}], "cover 1 of the 3 problems of sandbox (first "
                                                                "missing: sandbox-test-00001)"),
    ([{"problem_id": f"sandbox-test-0000{i}", "completion": "x", "sample_index": 1 if i == 2 else 0} for i in range(3)],
     "problem sandbox-test-00002 has samples [1], not 0..0"),
])
def test_completions_that_would_misreport_are_refused_by_line(lines, message, tmp_path, capsys):
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["eval", "--tasks", "sandbox", "--limit", "3", "--completions", str(path), "--out",
                 str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before any run directory is made


def test_completions_backend_grades_an_existing_file(tmp_path):
    from tasks.synthetic import sandbox_test

    records = sandbox_test()[:5]
    lines = []
    for r in records:
        lines.append({"problem_id": r["id"], "completion": f"so \\boxed{{{r['answer']}}}"})
        lines.append({"problem_id": r["id"], "completion": "I am not sure"})
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = EvalConfig(tasks=("sandbox",), limit=5, completions=str(path), k=(1, 2), out=str(tmp_path / "run"))
    metrics = run_eval(config, progress=False).metrics["tasks"]["sandbox"]
    assert metrics["pass@k"]["1"]["mean"] == pytest.approx(0.5)
    assert metrics["pass@k"]["2"]["mean"] == pytest.approx(1.0)
    assert metrics["no_answer_rate"] == pytest.approx(0.5)


@pytest.mark.parametrize(("extra", "message"), [
    (["--tasks", "nope"], "unknown task 'nope'; known tasks: aime24"),
    (["--model", "nope"], "unknown model 'nope'; known models: sandbox"),
    (["--n", "2", "--k", "1,4"], "k=[4] is impossible with n=2"),
    (["--n", "0"], "--n must be >= 1"),
    (["--temperature", "-1"], "temperature must be >= 0"),
    (["--tasks", "sandbox,sandbox"], "--tasks names sandbox more than once"),
])
def test_bad_input_is_refused_before_any_work(extra, message, capsys, tmp_path):
    args = ["eval", "--limit", "2", "--out", str(tmp_path / "run"), "--quiet", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_malformed_completions_line_names_file_and_line(tmp_path, capsys):
    from tasks.synthetic import sandbox_test

    path = tmp_path / "c.jsonl"
    first = json.dumps({"problem_id": sandbox_test()[0]["id"], "completion": "1"})
    path.write_text(first + "\n{oops\n")
    assert main(["eval", "--completions", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert f"{path}:2: malformed JSON" in capsys.readouterr().err
    path.write_text('{"problem_id": "no-such-problem", "completion": "1"}\n')
    assert main(["eval", "--completions", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert f"{path}:1: problem_id 'no-such-problem' is not a problem of sandbox" in capsys.readouterr().err


def test_missing_data_says_how_to_point_at_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    assert main(["eval", "--tasks", "math500", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err and "HARNESS_DATA_DIR" in err


def test_completions_are_read_leniently_by_default_and_the_card_says_so(tmp_path):
    from tasks.synthetic import sandbox_test

    records = sandbox_test()[:4]
    lines = [{"problem_id": r["id"], "completion": f"Adding the columns... so the answer is {r['answer']}."}
             for r in records]
    path = tmp_path / "unboxed.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    lenient = run_eval(EvalConfig(tasks=("sandbox",), limit=4, completions=str(path), out=str(tmp_path / "a")),
                       progress=False)
    assert lenient.metrics["tasks"]["sandbox"]["pass@k"]["1"]["mean"] == 1.0
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert card["tasks"]["sandbox"]["extraction"] == "lenient"
    strict = run_eval(EvalConfig(tasks=("sandbox",), limit=4, completions=str(path), out=str(tmp_path / "b"),
                                 extraction="strict"), progress=False)
    assert strict.metrics["tasks"]["sandbox"]["pass@k"]["1"]["mean"] == 0.0
    assert "extraction" not in json.loads((tmp_path / "b" / "card.json").read_text())["tasks"]["sandbox"]


def test_completions_without_n_take_the_files_n_for_k(tmp_path):
    from tasks.synthetic import sandbox_test

    lines = [{"problem_id": r["id"], "completion": f"\\boxed{{{r['answer']}}}", "sample_index": i}
             for r in sandbox_test()[:2] for i in range(8)]
    path = tmp_path / "eight.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_eval(EvalConfig(tasks=("sandbox",), limit=2, k=(1, 8), completions=str(path),
                                 out=str(tmp_path / "run")), progress=False)  # the task's default n is 4
    assert result.metrics["tasks"]["sandbox"]["n"] == 8
    assert result.metrics["tasks"]["sandbox"]["pass@k"]["8"]["mean"] == 1.0
