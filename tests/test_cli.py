import subprocess
import sys

import pytest

from harness.cli import main


def test_list_tasks_shows_size_sha_template_and_grader(benchmarks_dir, capsys):
    assert main(["list", "tasks", "--data-dir", str(benchmarks_dir)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["math500"][1:3] == ["500", "09c72a079f8a8fc0"]  # the sha256 MANIFEST.md gives
    assert rows["ineqmath-relation"][-4:-2] == ["relation", "choice"]
    assert rows["sandbox"][3] == "plain"


def test_list_tasks_without_data_says_how_to_point_at_it(capsys, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    assert main(["list", "tasks"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "(no data: pass --data-dir)" in rows["math500"]
    assert "(no data" not in rows["sandbox"]  # generated in code, needs no data


def test_the_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "harness.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: harness")


@pytest.mark.parametrize("command", [["eval"], ["compare"], ["leaderboard"], ["list"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:  # in-process: a subprocess per command paid ~3.5 s of imports
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: harness {command[0]}")


def test_list_variants_shows_paper_status_hooks_and_documented_defaults(capsys):
    assert main(["list", "variants"]) == 0
    out = capsys.readouterr().out
    for name in ("grpo", "dr-grpo", "dapo", "dgpo", "n-grpo"):
        assert f"\n{name}  [" in f"\n{out}"
    assert "eps_high = 0.28" in out and "hooks: sampler, reward, group_filter" in out
    assert "mix_rate = 0.1  # Paper Table 6" in out
    # Which engines run each variant, and what keeps the others from it.
    assert "engines: builtin, trl, verl\n" in out
    assert "engines: builtin\n    not on trl: the trl engine cannot run n-grpo, which needs rollout" in out
    assert "engines: builtin, trl\n    not on verl: the verl engine cannot run unlikeliness with these settings: it " \
           "reads the responses' likelihood" in out


def _bad_inputs(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "config.json").write_text("{}")
    eval_ = ["eval", "--limit", "2", "--n", "1", "--k", "1", "--quiet", "--out"]
    compare = ["compare", "--quiet", "--out", str(tmp_path / "compare")]
    return [
        ([*eval_, str(tmp_path / "r"), "--device", "cuda"], "--device cuda: this machine has no CUDA device"),
        ([*eval_, str(tmp_path / "r"), "--embeddings"], "pip install rlvr-harness[embeddings]"),
        ([*eval_, str(tmp_path / "r"), "--temperature", "nan"], "temperature and top_p must be finite numbers"),
        ([*eval_, str(tmp_path / "r"), "--max-new-tokens", "0"], "max_new_tokens must be >= 1, got 0"),
        ([*eval_, str(tmp_path / "r"), "--grading-timeout", "-1"], "--grading-timeout must be a positive number"),
        ([*eval_, str(tmp_path / "a-file")], "is a file, not a run directory"),
        ([*eval_, str(tmp_path / "r"), "--model", str(tmp_path / "no-weights")], "no weight files"),
        ([*compare, "--budget", "tokens=1e400"], "a limit must be a finite number"),
        ([*compare, "--budget", "wall_s=nan"], "a limit must be a finite number"),
        ([*compare, "--budget", "wall_s=inf"], "a limit must be a finite number"),
        ([*compare, "--variants", ""], "--variants is empty"),
        ([*compare, "--seeds", "-1"], "seeds are non-negative integers"),
        (["compare", "--quiet", "--name", "../../x"], "a leaderboard name is letters, digits"),
        ([*compare, "--set", "grpo.lr=-1"], "lr must be a finite number > 0, got -1.0"),
        ([*compare, "--set", "grpo.lr=nan"], "lr must be a finite number > 0, got nan"),
    ]


def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args, message in _bad_inputs(tmp_path):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "r").exists() and not (tmp_path / "compare").exists()
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "x.md").exists()


def test_a_cache_that_is_a_file_is_named(tmp_path, capsys, monkeypatch):
    (tmp_path / "cache").write_text("")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert main(["eval", "--limit", "1", "--n", "1", "--k", "1", "--quiet", "--out", str(tmp_path / "r")]) == 2
    assert "(HARNESS_CACHE) is a file; point HARNESS_CACHE at a folder" in capsys.readouterr().err


def test_a_reader_that_leaves_early_and_sigterm_end_quietly(tmp_path):
    import os
    import signal
    import time

    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    reader_gone = subprocess.Popen([sys.executable, "-m", "harness.cli", "list", "variants"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader_gone.stdout.close()  # `harness list variants | true`
    assert reader_gone.wait(timeout=120) == 0
    assert b"Traceback" not in reader_gone.stderr.read()

    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", "eval", "--limit", "40", "--n", "4", "--out",
                                str(run), "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not (run / "samples.jsonl").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    err = process.stderr.read()
    assert "terminated; every stored sample is kept" in err and "Traceback" not in err


def test_a_model_folder_with_garbage_weights_is_one_line(untrained_model_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(untrained_model_dir, broken)
    next(broken.glob("*.safetensors")).write_bytes(b"not a safetensors file")
    assert main(["eval", "--model", str(broken), "--limit", "1", "--n", "1", "--k", "1", "--quiet", "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "cannot be loaded as a transformers model (SafetensorError" in err and "Traceback" not in err


def test_a_benchmark_file_with_a_repeated_id_is_refused(benchmarks_dir, tmp_path):
    from harness.task import TASKS, DataError

    lines = (benchmarks_dir / "math500.jsonl").read_text().splitlines()[:3]
    (tmp_path / "math500.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(DataError, match="records 1 and 4 share the id"):
        TASKS.get("math500").load(tmp_path)


def test_a_file_size_limit_mid_run_is_one_line_and_keeps_what_was_stored(tmp_path):
    """ulimit -f: the write that crosses the limit fails (Python ignores SIGXFSZ), and the run says so in one
    line, exit 2; the samples written before it stay."""
    import json
    import os
    import resource

    from tasks.synthetic import sandbox_test

    lines = [{"problem_id": r["id"], "completion": "x" * 400 + f"\\boxed{{{r['answer']}}}"} for r in sandbox_test()[:240]]
    completions = tmp_path / "c.jsonl"
    completions.write_text("".join(json.dumps(line) + "\n" for line in lines))

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    run = subprocess.run([sys.executable, "-m", "harness.cli", "eval", "--tasks", "sandbox", "--n", "1", "--k", "1",
                          "--completions", str(completions), "--out", str(tmp_path / "run"), "--quiet"],
                         env={**os.environ}, preexec_fn=limit_file_size, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "File too large" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    complete = (tmp_path / "run" / "samples.jsonl").read_bytes().split(b"\n")[:-1]  # a torn tail is dropped on resume
    assert 0 < len(complete) < 240 and all(json.loads(line)["problem_id"] for line in complete)
