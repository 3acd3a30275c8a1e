"""`harness regress`: verdicts from real eval run directories (graded completions through `harness eval`),
comparability, grader drift, the CI outputs and the error paths; plus the gate's type-I error by simulation."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from harness import regress, stats
from harness.cli import main
from harness.task import TASKS


def _eval_completions(tmp_path: Path, name: str, task: str, correct: list[list[bool]], limit: int | None = None,
                      extra: tuple[str, ...] = ()) -> Path:
    """A run directory made the way a user grades another system's outputs: `harness eval --completions`.
    correct[j][i] says whether sample i of problem j answers right (the gold) or wrong (a different letter or
    number)."""
    problems = TASKS.get(task).load(None).problems[: limit or len(correct)]
    lines = []
    for problem, samples in zip(problems, correct, strict=True):
        gold = problem.golds[0]
        wrong = {"C": "D", "D": "E", "E": "C"}.get(gold, str(int(gold) + 1) if gold.lstrip("-").isdigit() else "x")
        for i, ok in enumerate(samples):
            lines.append({"problem_id": problem.id, "sample_index": i,
                          "completion": f"work\n\\boxed{{{gold if ok else wrong}}}"})
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / name
    n = len(correct[0])
    assert main(["eval", "--tasks", task, "--completions", str(path), "--n", str(n), "--k", "1",
                 "--limit", str(len(correct)), "--out", str(out), "--quiet", *extra]) == 0
    return out


def _pattern(size: int, solved: int, n: int = 1, seed: int = 0) -> list[list[bool]]:
    """`solved` of `size` problems solved on every sample, the rest on none, in a seeded order."""
    order = np.random.default_rng(seed).permutation(size)
    return [[bool(order[j] < solved)] * n for j in range(size)]


def _flip(pattern: list[list[bool]], down: int, up: int) -> list[list[bool]]:
    """Lose `down` solved problems and gain `up` unsolved ones (the first of each in order)."""
    out = [list(p) for p in pattern]
    solved = [j for j, p in enumerate(pattern) if p[0]]
    unsolved = [j for j, p in enumerate(pattern) if not p[0]]
    for j in solved[:down]:
        out[j] = [False] * len(out[j])
    for j in unsolved[:up]:
        out[j] = [True] * len(out[j])
    return out


def _regress(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()  # what earlier evals printed is not this command's
    code = main(["regress", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --------------------------------------------------------------------------------------- the verdicts


def test_verdict_rules_follow_the_spec():
    # regression: significant and beyond the margin; a significant drop inside the margin is not one
    assert regress.verdict(-0.05, -0.08, 0.001, 0.01, 0.05, "gate") == "regression"
    assert regress.verdict(-0.005, -0.009, 0.001, 0.01, 0.05, "gate") == "pass"
    # not significant: the interval decides
    assert regress.verdict(-0.02, -0.06, 0.2, 0.01, 0.05, "gate") == "inconclusive"
    assert regress.verdict(0.01, -0.06, 0.6, 0.01, 0.05, "gate") == "pass"  # Δ >= 0
    assert regress.verdict(-0.002, -0.009, 0.6, 0.01, 0.05, "gate") == "pass"  # interval within the margin
    # non-inferiority demands the lower end above -margin
    assert regress.verdict(0.01, -0.06, 0.6, 0.01, 0.05, "noninferiority") == "not non-inferior"
    assert regress.verdict(0.01, -0.005, 0.6, 0.01, 0.05, "noninferiority") == "pass"


def test_mcnemar_is_the_exact_binomial_on_discordant_problems():
    # 10 problems lost, 2 gained: p = 2 P(Bin(12, 1/2) <= 2) = 2 (1 + 12 + 66) / 4096
    baseline = np.array([True] * 10 + [False] * 2 + [True] * 5)
    candidate = np.array([False] * 10 + [True] * 2 + [True] * 5)
    assert stats.mcnemar_exact(baseline, candidate) == pytest.approx(2 * 79 / 4096)
    assert stats.mcnemar_exact(baseline, baseline) == 1.0
    # the same as the exact sign-flip test on d in {-1, 0, 1}
    flip = stats.paired_test(candidate.astype(float), baseline.astype(float))
    assert flip.exact and flip.p_value == pytest.approx(stats.mcnemar_exact(baseline, candidate))


def test_minimum_detectable_effect_follows_the_formula():
    d = np.array([-1.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0])
    z = 1.959963984540054 + 0.8416212335729143
    assert stats.minimum_detectable_effect(d) == pytest.approx(z * d.std(ddof=1) / np.sqrt(d.size))
    # four times the problems, half the detectable effect
    assert stats.minimum_detectable_effect(np.tile(d, 4)) == pytest.approx(
        stats.minimum_detectable_effect(d) / 2, rel=0.05)


def test_margins_and_metrics_parse_or_say_why():
    assert regress.parse_margins(None, ["a", "b"]) == {"a": regress.DEFAULT_MARGIN_POINTS, "b": 1.0}
    assert regress.parse_margins("2,b=3.3", ["a", "b"]) == {"a": 2.0, "b": 3.3}
    with pytest.raises(regress.RegressError, match="not gated here"):
        regress.parse_margins("c=1", ["a", "b"])
    with pytest.raises(regress.RegressError, match="non-negative"):
        regress.parse_margins("-1", ["a"])
    assert regress.parse_metrics(["pass@1", "maj@8", "maj@1", "pass@1"]) == [("pass@1", ("pass", 1)),
                                                                            ("maj@8", ("maj", 8))]
    with pytest.raises(regress.RegressError, match="pass@K or maj@K"):
        regress.parse_metrics(["accuracy"])
    with pytest.raises(regress.RegressError, match="no metric"):
        regress.parse_metrics([])


def test_the_verdicts_on_graded_outputs(tmp_path, capsys):
    """Identical runs pass, an improvement passes, a big drop fails, a 3-point drop over 1,000 problems fails,
    and a 4-point drop over 25 problems is too little data: inconclusive, with the MDE stated."""
    base_pattern = _pattern(240, 130)
    base = _eval_completions(tmp_path, "base", "sandbox", base_pattern)
    same = _eval_completions(tmp_path, "same", "sandbox", base_pattern)
    better = _eval_completions(tmp_path, "better", "sandbox", _flip(base_pattern, 5, 30))
    worse = _eval_completions(tmp_path, "worse", "sandbox", _flip(base_pattern, 50, 2))

    code, out = _regress(capsys, "--baseline", str(base), "--candidate", str(same))
    assert code == 0 and "verdict: PASS" in out and "McNemar exact" in out
    code, out = _regress(capsys, "--baseline", str(base), "--candidate", str(better))
    assert code == 0 and "verdict: PASS" in out and "+10.4" in out
    code, out = _regress(capsys, "--baseline", str(base), "--candidate", str(worse))
    assert code == 1 and "verdict: REGRESSION" in out and "-20.0" in out

    # 1,000 relation problems, one greedy sample each: 60 lost, 30 gained (-3 points, McNemar p ~ 0.002)
    rel = _pattern(1000, 600, seed=1)
    rel_base = _eval_completions(tmp_path, "rel-base", "sandbox-relation-train", rel)
    rel_worse = _eval_completions(tmp_path, "rel-worse", "sandbox-relation-train", _flip(rel, 60, 30))
    code, out = _regress(capsys, "--baseline", str(rel_base), "--candidate", str(rel_worse))
    assert code == 1 and "-3.0" in out and "verdict: REGRESSION" in out and "McNemar exact" in out

    # 25 problems, one lost: -4 points, but 25 problems cannot tell
    small = _pattern(25, 12, n=4, seed=2)
    small_base = _eval_completions(tmp_path, "small-base", "sandbox", small)
    small_worse = _eval_completions(tmp_path, "small-worse", "sandbox", _flip(small, 1, 0))
    code, out = _regress(capsys, "--baseline", str(small_base), "--candidate", str(small_worse))
    assert code == 0 and "verdict: INCONCLUSIVE" in out and "-4.0" in out
    mde = float(next(line for line in out.splitlines() if line.startswith("sandbox ")).split()[-2])
    assert mde > 4.0  # the run says how large a drop it could have seen
    code, _ = _regress(capsys, "--baseline", str(small_base), "--candidate", str(small_worse),
                       "--fail-on-inconclusive")
    assert code == regress.EXIT_INCONCLUSIVE


def test_outputs_for_ci_and_a_committed_baseline(tmp_path, capsys, monkeypatch):
    pattern = _pattern(240, 130, n=2)
    base = _eval_completions(tmp_path, "base", "sandbox", pattern)
    worse = _eval_completions(tmp_path, "worse", "sandbox", _flip(pattern, 40, 0))
    baseline_file = tmp_path / "baseline.json"
    code, _ = _regress(capsys, "--baseline", str(base), "--save-baseline", str(baseline_file))
    assert code == 0
    saved = json.loads(baseline_file.read_text())
    assert "completion" not in json.dumps(saved["tasks"]) and saved["card"]["tasks"]["sandbox"]["n"] == 2
    assert baseline_file.stat().st_size < (base / "samples.jsonl").stat().st_size

    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    code, out = _regress(capsys, "--baseline", str(baseline_file), "--candidate", str(worse), "--metrics",
                         "pass@1,maj@2", "--junit", str(junit), "--json", str(report))
    assert code == 1
    suites = ET.parse(junit).getroot()
    (suite,) = suites.findall("testsuite")
    assert suite.get("name") == "sandbox" and suite.get("failures") == "2"
    failure = suite.find("testcase[@name='pass@1']/failure")
    assert failure is not None and "-16.7" in failure.get("message") and "p-Holm" in failure.get("message")
    data = json.loads(report.read_text())
    assert data["verdict"] == "regression" and data["exit_code"] == 1
    assert [c["metric"] for c in data["comparisons"]] == ["pass@1", "maj@2"]
    holm = stats.holm_adjust([c["p_value"] for c in data["comparisons"]])
    assert [c["p_holm"] for c in data["comparisons"]] == pytest.approx(list(holm))
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "## harness regress: regression (exit 1)" in text
    # a committed file serves as the candidate too, and the gate reads it as it reads the run it came from
    worse_file = tmp_path / "worse.json"
    assert main(["regress", "--baseline", str(worse), "--save-baseline", str(worse_file)]) == 0
    code, from_file = _regress(capsys, "--baseline", str(base), "--candidate", str(worse_file))
    code_dirs, from_dirs = _regress(capsys, "--baseline", str(base), "--candidate", str(worse))
    assert code == code_dirs == 1
    row = [line for line in from_file.splitlines() if line.startswith("sandbox ")]
    assert row == [line for line in from_dirs.splitlines() if line.startswith("sandbox ")]


def test_incomparable_runs_exit_3_naming_the_setting(tmp_path, capsys):
    pattern = _pattern(30, 15)
    base = _eval_completions(tmp_path, "base", "sandbox", pattern)
    other_tokens = _eval_completions(tmp_path, "other", "sandbox", pattern, extra=("--max-new-tokens", "64"))
    code, out = _regress(capsys, "--baseline", str(base), "--candidate", str(other_tokens))
    assert code == regress.EXIT_INCOMPARABLE and "sampling.max_new_tokens" in out and "--allow-diff" in out
    code, out = _regress(capsys, "--baseline", str(base), "--candidate", str(other_tokens),
                         "--allow-diff", "sampling.max_new_tokens")
    assert code == 0 and "allowed difference (--allow-diff): tasks.sandbox.sampling.max_new_tokens" in out
    # another task entirely is refused by name too
    relation = _eval_completions(tmp_path, "rel", "sandbox-relation", _pattern(30, 15))
    code, out = _regress(capsys, "--baseline", str(base), "--candidate", str(relation))
    assert code == regress.EXIT_INCOMPARABLE and "not evaluated on sandbox" in out


def test_bad_input_exits_4_with_one_line(tmp_path, capsys):
    base = _eval_completions(tmp_path, "base", "sandbox", _pattern(20, 10))
    cases = [
        ["--baseline", str(tmp_path / "nowhere"), "--candidate", str(base)],
        ["--baseline", str(base), "--candidate", str(base), "--metrics", "pass@2"],  # k > n
        ["--baseline", str(base), "--candidate", str(base), "--metrics", "top1"],
        ["--baseline", str(base)],  # no candidate, nothing to save
        ["--baseline", str(base), "--candidate", str(base), "--metrics", ","],
        ["--baseline", str(base), "--candidate", str(base), "--nonsense"],
    ]
    (tmp_path / "junk.json").write_text("{not json")
    cases.append(["--baseline", str(tmp_path / "junk.json"), "--candidate", str(base)])
    damaged = tmp_path / "damaged.json"
    assert main(["regress", "--baseline", str(base), "--save-baseline", str(damaged)]) == 0
    data = json.loads(damaged.read_text())
    next(iter(data["tasks"]["sandbox"].values())).pop("answers")
    damaged.write_text(json.dumps(data))
    cases.append(["--baseline", str(damaged), "--candidate", str(base)])
    doubled = tmp_path / "doubled"  # a run whose samples were written twice (two writers)
    doubled.mkdir()
    (doubled / "card.json").write_text((base / "card.json").read_text())
    (doubled / "samples.jsonl").write_text((base / "samples.jsonl").read_text() * 2)
    cases.append(["--baseline", str(base), "--candidate", str(doubled)])
    for args in cases:
        code, out = _regress(capsys, *args)
        assert code == regress.EXIT_ERROR, (args, out)
        assert "Traceback" not in out


def test_an_unfinished_run_is_refused_and_left_untouched(tmp_path, capsys):
    base = _eval_completions(tmp_path, "base", "sandbox", _pattern(20, 10))
    samples = base / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    samples.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])  # a killed eval: its last line torn
    before = samples.read_bytes()
    code, out = _regress(capsys, "--baseline", str(base), "--candidate", str(base))
    assert code == regress.EXIT_ERROR and "19 of the 20 x 1 samples" in out
    assert samples.read_bytes() == before  # a reader never truncates a run another process may be writing


def test_grader_drift_is_reported_and_separated_from_the_model(tmp_path, capsys):
    pattern = _pattern(100, 50)
    base = _eval_completions(tmp_path, "base", "sandbox", pattern)
    baseline_file = tmp_path / "old-grader.json"
    _regress(capsys, "--baseline", str(base), "--save-baseline", str(baseline_file))
    saved = json.loads(baseline_file.read_text())
    # An older grader that accepted three wrong answers: the stored verdicts say so, re-grading does not.
    wrong = [pid for pid, p in sorted(saved["tasks"]["sandbox"].items()) if not p["correct"][0]][:3]
    for pid in wrong:
        saved["tasks"]["sandbox"][pid]["correct"] = [True]
    baseline_file.write_text(json.dumps(saved))
    code, out = _regress(capsys, "--baseline", str(baseline_file), "--candidate", str(base), "--json",
                         str(tmp_path / "r.json"))
    assert code == 0 and "3 of 100 baseline verdicts change" in out
    (comparison,) = json.loads((tmp_path / "r.json").read_text())["comparisons"]
    assert comparison["difference"] == 0.0  # the model did not change
    assert comparison["difference_as_stored"] == pytest.approx(-0.03)  # the grader did
    code, out = _regress(capsys, "--baseline", str(baseline_file), "--candidate", str(base), "--no-regrade")
    assert code == 0 and "-3.0" in out and "not re-graded (--no-regrade)" in out


# ------------------------------------------------------------------------------------ error rates


def _simulated_verdicts(rng, rates: np.ndarray, drop: float, n: int, pairs: int, margin: float) -> list[str]:
    """Verdicts on `pairs` simulated (baseline, candidate) runs: each problem's samples drawn at its rate,
    the candidate's rates scaled so their mean is `drop` lower."""
    candidate_rates = rates * (1 - drop / rates.mean())
    out = []
    for i in range(pairs):
        b = rng.binomial(n, rates) / n
        c = rng.binomial(n, candidate_rates) / n
        comparison = regress.compare_scores("sim", "pass@1", b, c, n == 1, margin, seed=i)
        regress.judge([comparison])
        out.append(comparison.verdict)
    return out


def test_the_gate_holds_its_error_rate_on_null_pairs_and_sees_a_large_drop():
    """240 problems with sandbox-like spread of difficulty, 4 samples each. Under no change and no margin (so
    only the test's own level protects), false regressions stay near alpha / 2 (a two-sided test, and only
    drops fail); a 6-point drop is caught almost always. (perf/regress_power.py measures both at scale.)"""
    rng = np.random.default_rng(0)
    rates = rng.beta(0.6, 0.6, size=240)
    null = _simulated_verdicts(rng, rates, 0.0, 4, 200, 0.0)
    assert null.count("regression") / len(null) <= 0.06
    drop = _simulated_verdicts(rng, rates, 0.06, 4, 40, 0.01)
    assert drop.count("regression") / len(drop) >= 0.9

