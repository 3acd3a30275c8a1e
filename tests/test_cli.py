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
