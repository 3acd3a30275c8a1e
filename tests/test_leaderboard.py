"""Leaderboard rendering from hand-made row directories whose metrics.json is computed with harness.metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from harness import metrics, stats
from harness.cli import add_leaderboard_parser
from harness.leaderboard import (
    _colors,
    expand_row_dirs,
    load_rows,
    render_leaderboard,
)

TASK = "sandbox"
KS = (1, 4)


def _card(n: int, temperature: float = 1.0) -> dict:
    task = {"data_sha256": "ab" * 32, "num_problems": None, "limit": None, "n": n, "k": list(KS),
            "template": {"name": "plain", "sha256": "cd" * 32}, "grader": "math",
            "sampling": {"temperature": temperature, "top_p": 1.0, "max_new_tokens": 64}}
    return {"kind": "eval", "model": {"name": "m"}, "tasks": {TASK: task}}


def _entry(per_problem: np.ndarray) -> dict:
    low, high = stats.bootstrap_ci(per_problem)
    return {"mean": float(per_problem.mean()), "ci": [low, high]}


def write_row(root: Path, name: str, label: str, counts: list[int], n: int = 8, seed: int | None = 0,
              variant: str | None = "same-as-label", temperature: float = 1.0, train: bool = True,
              row_extra: dict | None = None) -> Path:
    """One row directory; `counts` are the correct samples per problem out of `n`."""
    row = root / name
    c = np.array(counts)
    ns = np.full(c.size, n)
    card = _card(n, temperature)
    card["tasks"][TASK]["num_problems"] = c.size
    card["hash"] = f"hash-{name}"
    # Two answer clusters per problem, the correct one and one wrong one, so maj@k is the exact expectation.
    maj = {str(k): _entry(np.array([metrics.maj_at_k([s for s in (ci, n - ci) if s],
                                                     [ok for s, ok in ((ci, True), (n - ci, False)) if s], n, k)
                                    for ci in c])) for k in KS}
    task_metrics = {
        "num_problems": int(c.size), "n": n, "mean@n": _entry(c / ns),
        "pass@k": {str(k): _entry(metrics.pass_at_k_per_problem(ns, c, k)) for k in KS}, "maj@k": maj,
        "diversity": {"distinct_1": 0.5, "distinct_2": 0.6, "distinct_3": 0.7, "distinct_4": 0.8,
                      "distinct_answers": 1.5 + c.mean() / n, "answer_entropy": 0.4},
        "length": {"mean_tokens": 30.0 + seed_or_zero(seed), "median_tokens": 29.0},
        "truncation_rate": 0.0, "no_answer_rate": 0.1,
        "per_problem": {f"p{j:03d}": {"n": n, "c": int(cj)} for j, cj in enumerate(c)},
    }
    _dump(row / "eval/card.json", card)
    _dump(row / "eval/metrics.json", {"card_hash": card["hash"], "tasks": {TASK: task_metrics}})
    info = {"label": label, "variant": label if variant == "same-as-label" else variant, "seed": seed,
            "command": "harness compare --variants grpo,dgpo", "protocol_hash": "f00d" * 16, **(row_extra or {})}
    _dump(row / "row.json", info)
    if train:
        _dump(row / "train/ledger.json", {
            "limits": {"steps": 5, "prompts": None, "rollouts": 80, "tokens": None, "wall_s": None},
            "consumed": {"steps": 5, "prompts": 10, "rollouts": 80, "tokens": 4000 + 10 * seed_or_zero(seed),
                         "update_tokens": 16000 + 10 * seed_or_zero(seed), "wall_s": 1.0},
            "stopped_by": "steps"})
        steps = [{"step": s, "prompts": 2 * s, "rollouts": 16 * s, "tokens": 800 * s, "wall_s": 0.2 * s,
                  "reward_mean": 0.1 * s, "accuracy": 0.1 * s, "entropy": 1.0 - 0.05 * s, "response_length": 30.0,
                  "kl": None, "loss": 0.5, "lr": 1e-6, "extra_key": 1, "probes": {"clip_low": 0.01 * s}}
                 for s in range(1, 6)]
        _dump(row / "train/card.json", {"variant": info["variant"], "protocol": "shared", "mechanism": ["clip_low"],
                                        "config": {"ppo_epochs": 1, "minibatches": 4}})
        (row / "train/train_log.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    return row


def seed_or_zero(seed: int | None) -> int:
    return seed or 0


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def table(markdown: str, first_cell: str = "| band") -> dict[str, dict[str, str]]:
    """The table whose header starts with `first_cell` (the leaderboard's own by default) as
    {variant: {column: cell}}; the runs table is keyed by (variant, seed)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_cell))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    lines = lines[start:end]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]
    return {row["variant"] if "seed" not in row else (row["variant"], row["seed"]): row for row in rows}


def column(rows: dict, prefix: str) -> str:
    return next(key for key in next(iter(rows.values())) if key.startswith(prefix))


def test_clearly_better_variant_ranks_first_with_significant_positive_delta(tmp_path):
    rng = np.random.default_rng(0)
    weak = rng.integers(0, 3, size=40)
    strong = np.minimum(weak + 5, 8)
    dirs = [write_row(tmp_path, "base", "warm start", list(weak), variant=None, seed=None, train=False),
            write_row(tmp_path, "good", "dgpo", list(strong))]
    out = render_leaderboard(dirs, tmp_path / "board" / "lb.md")
    markdown = out.read_text()
    rows = table(markdown)
    assert list(rows) == ["dgpo", "warm start"]  # sorted by pass@1, best first
    assert rows["dgpo"]["band"] == "1" and rows["warm start"]["band"] == "2"
    delta = rows["dgpo"][column(rows, "Δ pass@1 vs warm start")]
    expected = 100 * (strong - weak).mean() / 8
    assert float(delta.split()[0]) == pytest.approx(expected, abs=0.05) and expected > 0
    assert float(rows["dgpo"]["p"]) < 0.05 and float(rows["dgpo"]["p (Holm)"]) < 0.05
    assert rows["warm start"][column(rows, "Δ")] == "baseline"
    assert rows["warm start"][column(rows, "generation")] == "-"  # the warm start trained on nothing
    assert rows["warm start"][column(rows, "mechanism")] == "-"
    assert rows["dgpo"][column(rows, "generation")] == "80 / 4,000"
    assert rows["dgpo"][column(rows, "compute")] == "- (steps)"  # a ledger from before FLOPs were counted
    assert rows["dgpo"][column(rows, "updates")] == "5 / 16,000"
    assert rows["dgpo"][column(rows, "mechanism")] == "clip_low 0.03"  # the mean per step of 0.01 ... 0.05
    assert "Update schedule: `shared` protocol (every variant 1 PPO epoch(s) x 4 minibatches" in markdown
    pass1 = rows["dgpo"]["pass@1 % [95% CI]"]
    low, high = stats.bootstrap_ci(strong / 8)
    assert pass1 == f"{100 * strong.mean() / 8:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
    assert "Compare protocol `f00df00df00d`" in markdown and "`harness compare --variants grpo,dgpo`" in markdown
    assert "n = 8 samples per problem, 40 problems" in markdown


def test_identical_variants_share_a_band_and_have_p_one(tmp_path):
    counts = list(np.random.default_rng(1).integers(0, 9, size=30))
    dirs = [write_row(tmp_path, "a", "grpo", counts), write_row(tmp_path, "b", "dr-grpo", counts)]
    rows = table(render_leaderboard(dirs, tmp_path / "lb.md").read_text())
    assert rows["grpo"]["band"] == rows["dr-grpo"]["band"] == "1"
    assert rows["dr-grpo"]["p"] == "1.000" and rows["dr-grpo"]["p (Holm)"] == "1.000"
    assert rows["dr-grpo"][column(rows, "Δ")].startswith("+0.0")


def test_holm_adjusted_p_is_at_least_raw_p(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.integers(1, 6, size=40)
    dirs = [write_row(tmp_path, "base", "grpo", list(base))]
    for shift, name in [(1, "v1"), (2, "v2"), (3, "v3")]:
        improved = base + (rng.random(40) < 0.3 * shift) * shift
        dirs.append(write_row(tmp_path, name, name, list(np.minimum(improved, 8))))
    rows = table(render_leaderboard(dirs, tmp_path / "lb.md").read_text())
    raw = {v: float(rows[v]["p"]) for v in ("v1", "v2", "v3")}
    holm = {v: float(rows[v]["p (Holm)"]) for v in ("v1", "v2", "v3")}
    assert all(holm[v] >= raw[v] for v in raw)
    smallest = min(raw, key=raw.get)
    assert holm[smallest] == pytest.approx(min(1.0, 3 * raw[smallest]), rel=0.05)  # Holm scales the smallest by m


def test_seeds_of_one_label_merge_into_one_line(tmp_path):
    rng = np.random.default_rng(3)
    seed0, seed1 = rng.integers(0, 9, size=25), rng.integers(0, 9, size=25)
    dirs = [write_row(tmp_path, "ws", "warm start", list(rng.integers(0, 9, size=25)), variant=None, seed=None,
                      train=False),
            write_row(tmp_path, "g0", "grpo", list(seed0), seed=0),
            write_row(tmp_path, "g1", "grpo", list(seed1), seed=1)]
    markdown = render_leaderboard(dirs, tmp_path / "lb.md").read_text()
    rows = table(markdown)
    assert sorted(rows) == ["grpo", "warm start"]
    assert rows["grpo"]["seeds"] == "2" and rows["warm start"]["seeds"] == "1"
    low, high = stats.two_level_bootstrap_ci([seed0 / 8, seed1 / 8])
    mean = (seed0.mean() + seed1.mean()) / 16
    assert rows["grpo"]["pass@1 % [95% CI]"] == f"{100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
    assert rows["grpo"][column(rows, "generation")] == "80 / 4,005"  # mean of 4,000 and 4,010 tokens
    assert rows["grpo"][column(rows, "updates")] == "5 / 16,005"
    # The paired test compares per-problem scores averaged over the seeds.
    expected = stats.paired_test((seed0 + seed1) / 16, _counts(dirs[0]) / 8)
    assert rows["grpo"][column(rows, "Δ")].startswith(f"{100 * expected.difference:+.1f} ")


def _counts(row: Path) -> np.ndarray:
    per_problem = json.loads((row / "eval/metrics.json").read_text())["tasks"][TASK]["per_problem"]
    return np.array([per_problem[i]["c"] for i in sorted(per_problem)])


def test_plots_are_pngs_and_rerendering_is_byte_identical(tmp_path):
    rng = np.random.default_rng(4)
    dirs = [write_row(tmp_path, "g0", "grpo", list(rng.integers(0, 9, size=20)), seed=0),
            write_row(tmp_path, "g1", "grpo", list(rng.integers(0, 9, size=20)), seed=1),
            write_row(tmp_path, "d0", "dgpo", list(rng.integers(0, 9, size=20)), seed=0)]
    out = render_leaderboard(dirs, tmp_path / "lb.md", title="Sandbox", notes="Tiny runs, for the test.")
    markdown = out.read_text()
    pngs = [tmp_path / "lb-passk.png", tmp_path / "lb-training.png", tmp_path / "lb-delta.png"]
    first = [p.read_bytes() for p in pngs]
    assert all(data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000 for data in first)
    assert "![pass@k per variant](lb-passk.png)" in markdown and "(lb-training.png)" in markdown
    assert "![difference from grpo per variant](lb-delta.png)" in markdown
    assert markdown.startswith("# Sandbox\n") and "## Notes\n\nTiny runs, for the test." in markdown
    assert "## How to read this" in markdown
    render_leaderboard(dirs, out, title="Sandbox", notes="Tiny runs, for the test.")
    assert out.read_text() == markdown
    assert [p.read_bytes() for p in pngs] == first


def test_missing_metrics_names_the_path(tmp_path):
    row = write_row(tmp_path, "g0", "grpo", [1, 2, 3])
    (row / "eval/metrics.json").unlink()
    with pytest.raises(ValueError, match=r"g0/eval/metrics\.json is missing"):
        load_rows([row])


def test_missing_row_json_names_the_path(tmp_path):
    row = write_row(tmp_path, "g0", "grpo", [1, 2, 3])
    (row / "row.json").unlink()
    with pytest.raises(ValueError, match=r"g0/row\.json is missing"):
        render_leaderboard([row], tmp_path / "lb.md")


def test_different_eval_protocols_are_refused_naming_the_setting(tmp_path):
    dirs = [write_row(tmp_path, "a", "grpo", [1, 2, 3]),
            write_row(tmp_path, "b", "dgpo", [1, 2, 3], temperature=0.6)]
    with pytest.raises(ValueError, match=r"tasks\.sandbox\.sampling\.temperature: 1\.0 -> 0\.6"):
        load_rows(dirs)


def test_different_problem_sets_are_refused(tmp_path):
    dirs = [write_row(tmp_path, "a", "grpo", [1, 2, 3]), write_row(tmp_path, "b", "dgpo", [1, 2, 3, 4])]
    card = json.loads((dirs[1] / "eval/card.json").read_text())
    card["tasks"][TASK]["num_problems"] = 3  # same card, but a different set of scored problems
    _dump(dirs[1] / "eval/card.json", card)
    with pytest.raises(ValueError, match="different problem set"):
        render_leaderboard(dirs, tmp_path / "lb.md")


def test_unknown_baseline_is_refused(tmp_path):
    dirs = [write_row(tmp_path, "a", "grpo", [1, 2, 3])]
    with pytest.raises(ValueError, match="baseline 'dapo'"):
        render_leaderboard(dirs, tmp_path / "lb.md", baseline="dapo")


def test_explicit_baseline_changes_the_reference(tmp_path):
    dirs = [write_row(tmp_path, "a", "grpo", [1] * 20), write_row(tmp_path, "b", "dgpo", [5] * 20)]
    rows = table(render_leaderboard(dirs, tmp_path / "lb.md", baseline="dgpo").read_text())
    assert rows["dgpo"][column(rows, "Δ pass@1 vs dgpo")] == "baseline"
    assert rows["grpo"][column(rows, "Δ")].startswith("-50.0 ")


def test_cli_expands_a_parent_directory_and_keeps_argument_order(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_row(runs, "b-grpo", "grpo", [2] * 10)
    write_row(runs, "a-warm", "warm start", [1] * 10, variant=None, seed=None, train=False)
    extra = write_row(tmp_path / "other", "dgpo", "dgpo", [6] * 10)
    (runs / "notes").mkdir()  # a folder without row.json is not a row
    assert expand_row_dirs([runs, extra]) == [runs / "a-warm", runs / "b-grpo", extra]

    parser = argparse.ArgumentParser(prog="harness")
    add_leaderboard_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "leaderboards" / "sandbox.md"
    args = parser.parse_args(["leaderboard", str(runs), str(extra), "--out", str(out), "--title", "T"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    rows = table(out.read_text())
    assert set(rows) == {"warm start", "grpo", "dgpo"}
    assert column(rows, "Δ pass@1 vs warm start")  # the first expanded row is the default baseline
    assert (out.parent / "sandbox-passk.png").is_file() and (out.parent / "sandbox-training.png").is_file()


def test_cli_refuses_a_folder_without_rows_and_has_help(tmp_path, capsys):
    with pytest.raises(ValueError, match="holds no row.json"):
        expand_row_dirs([tmp_path])
    parser = argparse.ArgumentParser(prog="harness")
    add_leaderboard_parser(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["leaderboard", "--help"])
    assert exit_info.value.code == 0
    assert "Holm-adjusted" in capsys.readouterr().out


def test_gdro_rollouts_per_difficulty_bin_are_summed_over_steps_and_averaged_over_seeds(tmp_path):
    counts = [3, 4, 5, 6]
    dirs = [write_row(tmp_path, "grpo", "grpo", counts),
            write_row(tmp_path, "r0", "rollout-gdro", counts, seed=0),
            write_row(tmp_path, "r1", "rollout-gdro", counts, seed=1)]
    for name, per_step in (("r0", [[4, 0, 12], [8, 4, 4]]), ("r1", [[0, 8, 8], [6, 6, 4]])):
        log = dirs[0].parent / name / "train/train_log.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()]
        for record, rollouts in zip(records, per_step, strict=False):
            record["gdro_bin_rollouts"] = rollouts
        log.write_text("".join(json.dumps(r) + "\n" for r in records))
    markdown = render_leaderboard(dirs, tmp_path / "lb.md").read_text()
    section = markdown.split("## Rollouts per difficulty bin")[1]
    # Seed 0 gives [12, 4, 16], seed 1 [6, 14, 12]; their mean is [9, 9, 14]. grpo logs no bins: no line.
    assert "| rollout-gdro | 9 | 9 | 14 |" in section and "| grpo |" not in section

    assert "(lb-allocation.png)" in section and (tmp_path / "lb-allocation.png").read_bytes().startswith(b"\x89PNG")

    plain = render_leaderboard(dirs[:1], tmp_path / "plain.md").read_text()
    assert "Rollouts per difficulty bin" not in plain and not (tmp_path / "plain-allocation.png").exists()
    # One label has nothing to be compared with: no difference plot.
    assert "plain-delta.png" not in plain and not (tmp_path / "plain-delta.png").exists()


def test_many_variants_get_distinct_colours_and_a_readable_render(tmp_path):
    labels = [f"variant-{i}" for i in range(17)]
    assert len(set(_colors(labels).values())) == 17
    rng = np.random.default_rng(7)
    dirs = [write_row(tmp_path, label, label, list(rng.integers(0, 9, size=30))) for label in labels]
    markdown = render_leaderboard(dirs, tmp_path / "all.md").read_text()
    assert len(table(markdown)) == 17
    assert all((tmp_path / f"all-{kind}.png").is_file() for kind in ("passk", "training", "delta"))


def test_several_seeds_are_tested_as_training_runs_with_per_seed_numbers_and_a_seed_plan(tmp_path):
    rng = np.random.default_rng(8)
    base = rng.integers(0, 9, size=60)
    dirs = [write_row(tmp_path, "ws", "warm start", list(base), variant=None, seed=None, train=False)]
    for label, shift in (("grpo", 0), ("dgpo", 1)):
        for seed in range(3):
            counts = np.clip(base + shift + rng.integers(-1, 2, size=60) + (seed - 1), 0, 8)
            dirs.append(write_row(tmp_path, f"{label}{seed}", label, list(counts), seed=seed))
    markdown = render_leaderboard(dirs, tmp_path / "lb.md", baseline="grpo").read_text()
    rows = table(markdown)
    lines = {label: [load_rows([d])[0] for d in dirs if d.name.startswith(label)] for label in ("grpo", "dgpo")}
    scores = {label: np.array([_counts(row.path) / 8 for row in rs]) for label, rs in lines.items()}
    expected = stats.seed_aware_test(scores["dgpo"], scores["grpo"])
    delta = rows["dgpo"][column(rows, "Δ pass@1 vs grpo")]
    assert delta == (f"{100 * expected.difference:+.1f} [{100 * expected.ci_low:+.1f}, "
                     f"{100 * expected.ci_high:+.1f}]")
    assert rows["dgpo"]["tested as"] == "training runs (3 seeds v 3 seeds)"
    assert rows["dgpo"]["p"] == f"{expected.p_value:.3f}" or rows["dgpo"]["p"] == f"{expected.p_value:.1e}"
    # The warm start is a fixed model: tested as a constant against grpo's three runs.
    assert rows["warm start"]["tested as"] == "training runs (fixed v 3 seeds)"
    per_seed = scores["grpo"].mean(axis=1)
    assert rows["grpo"]["pass@1 per seed % (SD)"] == (" / ".join(f"{100 * s:.1f}" for s in per_seed)
                                                       + f" ({100 * per_seed.std(ddof=1):.1f})")
    assert rows["warm start"]["pass@1 per seed % (SD)"] == "-"
    assert "Every comparison is between training runs" in markdown
    plan = markdown.split("## Seeds needed")[1].split("##")[0]
    sd, df = stats.pooled_seed_sd([scores["grpo"].mean(axis=1), scores["dgpo"].mean(axis=1)])
    assert f"{100 * sd:.2f} points ({df} degrees of freedom)" in plan
    assert f"Δ = 2 points: {stats.seeds_for_power(sd, 0.02)} seeds" in plan
    runs = table(markdown, "| variant | seed")
    assert set(runs) == {("warm start", "-"), *((label, str(s)) for label in ("grpo", "dgpo") for s in range(3))}
    assert runs[("dgpo", "2")]["pass@1 %"] == f"{100 * scores['dgpo'][2].mean():.1f}"


def test_one_seed_per_variant_says_it_compares_checkpoints(tmp_path):
    rng = np.random.default_rng(9)
    dirs = [write_row(tmp_path, "a", "grpo", list(rng.integers(0, 9, size=30))),
            write_row(tmp_path, "b", "dgpo", list(rng.integers(0, 9, size=30)))]
    markdown = render_leaderboard(dirs, tmp_path / "lb.md").read_text()
    assert "this page compares checkpoints, not algorithms" in markdown
    assert table(markdown)["dgpo"]["tested as"] == "checkpoints (per problem)"
    assert "Seed planning needs a variant with two or more seeds" in markdown


def test_a_one_seed_variant_beside_multi_seed_ones_is_named_as_a_checkpoint_comparison(tmp_path):
    rng = np.random.default_rng(10)
    dirs = [write_row(tmp_path, f"g{s}", "grpo", list(rng.integers(0, 9, size=30)), seed=s) for s in range(2)]
    dirs.append(write_row(tmp_path, "d0", "dgpo", list(rng.integers(0, 9, size=30))))
    markdown = render_leaderboard(dirs, tmp_path / "lb.md").read_text()
    assert "Tested as checkpoints, not training runs (a side with one seed has no measured seed variance): dgpo" \
        in markdown


def test_compute_cells_show_flops_generation_update_and_diagnostics_apart(tmp_path):
    row = write_row(tmp_path, "g0", "grpo", [3, 4, 5])
    ledger = json.loads((row / "train/ledger.json").read_text())
    ledger["limits"]["flops"] = 3e12
    ledger["consumed"].update(generation_flops=5e11, update_flops=1.94e12, diagnostic_flops=4.9e11)
    ledger["stopped_by"] = "flops"
    _dump(row / "train/ledger.json", ledger)
    markdown = render_leaderboard([row], tmp_path / "lb.md").read_text()
    rows = table(markdown)
    assert rows["grpo"][column(rows, "compute")] == "2.44e12 = 5e11 + 1.94e12 (flops)"
    assert rows["grpo"][column(rows, "diagnostics")] == "4.9e11"
    assert "flops ≤ 3e12" in markdown and "the limit that stopped them: flops (1 of 1 runs)" in markdown
