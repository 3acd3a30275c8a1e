"""Paper claims as tested statements (harness.claims): each verdict from hand-made training runs whose difference is
known, the leaderboard section that lists them, and the mechanism column's weak / inert marks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_leaderboard import column, table, write_row

from harness.claim import Claim
from harness.claims import MEASURES, judge
from harness.leaderboard import load_rows, render_leaderboard
from trainers.builtin.base import VARIANTS

PROBLEMS = 60


def runs(tmp_path, label: str, shift: int, seeds=(0, 1, 2), spread: int = 0, steps=None):
    """Training runs of `label`: each problem's correct count out of 8 moved by `shift`, plus the seed's own luck
    (+-`spread` on a sixth of the problems), and optionally its training log's records."""
    rng = np.random.default_rng(0)
    base = rng.integers(1, 6, size=PROBLEMS)
    dirs = []
    for seed in seeds:
        luck = np.zeros(PROBLEMS, dtype=int)
        luck[: PROBLEMS // 6] = (seed % 3 - 1) * spread
        counts = np.clip(base + shift + luck, 0, 8)
        row = write_row(tmp_path, f"{label}-seed{seed}", label, list(counts), seed=seed)
        if steps is not None:
            (row / "train/train_log.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps(seed)))
        dirs.append(row)
    return load_rows(dirs)


def test_a_clear_gain_supports_a_higher_claim_and_a_clear_loss_contradicts_it(tmp_path):
    grpo = runs(tmp_path, "grpo", 0, spread=1)
    better, worse = runs(tmp_path, "dgpo", 2, spread=1), runs(tmp_path, "dapo", -2, spread=1)
    claim = Claim("higher accuracy", "test", "pass@1", "higher")
    supported = judge("dgpo", claim, better, grpo, "sandbox", {})
    assert supported.verdict == "supported" and supported.ci[0] > 0
    assert supported.difference == pytest.approx(100 * 2 / 8, abs=1.0)
    assert judge("dapo", claim, worse, grpo, "sandbox", {}).verdict == "contradicted"


def test_no_difference_is_inconclusive_with_a_detectable_effect(tmp_path):
    grpo, same = runs(tmp_path, "grpo", 0, spread=1), runs(tmp_path, "dgpo", 0, seeds=(3, 4, 5), spread=1)
    verdict = judge("dgpo", Claim("higher", "test", "pass@1", "higher"), same, grpo, "sandbox", {})
    assert verdict.verdict == "inconclusive"
    assert verdict.mde is not None and verdict.mde > abs(verdict.difference)


def test_not_lower_claims_use_the_margin(tmp_path):
    grpo, slightly_worse = runs(tmp_path, "grpo", 0), runs(tmp_path, "dr-grpo", 0, seeds=(3, 4, 5))
    claim = Claim("similar accuracy", "test", "pass@1", "not lower", margin=1.0)
    assert judge("dr-grpo", claim, slightly_worse, grpo, "sandbox", {}).verdict == "supported"


def test_one_seed_or_missing_diagnostics_leave_a_claim_untested(tmp_path):
    grpo, one = runs(tmp_path, "grpo", 0), runs(tmp_path, "dapo", 1, seeds=(0,))
    assert judge("dapo", Claim("h", "t", "pass@1", "higher"), one, grpo, "sandbox", {}).verdict == "untested"
    dapo = runs(tmp_path, "dapo", 0, seeds=(1, 2))
    verdict = judge("dapo", Claim("h", "t", "late no-signal groups", "lower"), dapo, grpo, "sandbox", {})
    assert verdict.verdict == "untested" and "lack" in verdict.why


def test_training_diagnostic_claims_read_the_end_of_the_run(tmp_path):
    def log(value):
        return lambda seed: [{"step": s, "rollouts": 16 * s, "entropy": 1.0 if s <= 6 else value + 0.01 * seed}
                             for s in range(1, 9)]
    grpo = runs(tmp_path, "grpo", 0, steps=log(0.2))
    dapo = runs(tmp_path, "dapo", 0, seeds=(3, 4, 5), steps=log(0.5))
    assert MEASURES["late entropy"].per_run(dapo[0], "sandbox") == pytest.approx(0.53)  # the last 2 of 8 steps
    verdict = judge("dapo", Claim("entropy stays higher", "t", "late entropy", "higher"), dapo, grpo, "sandbox", {})
    assert verdict.verdict == "supported" and verdict.difference == pytest.approx(0.33)  # seeds 3-5 vs 0-2


def test_every_declared_claim_names_a_known_measure():
    for name in VARIANTS.names():
        for claim in VARIANTS.get(name).claims:
            assert claim.measure in MEASURES, (name, claim)


def test_the_page_lists_each_variants_claims_with_verdicts(tmp_path):
    dirs = [row.path for row in runs(tmp_path, "grpo", 0, spread=1) + runs(tmp_path, "dgpo", 3, seeds=(3, 4, 5),
                                                                                     spread=1)]
    markdown = render_leaderboard(dirs, tmp_path / "board" / "lb.md").read_text()
    section = markdown.split("## Paper claims on this setup")[1].split("## Plots")[0]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(lines) == len(VARIANTS.get("dgpo").claims) + len(VARIANTS.get("grpo").claims)
    accuracy = next(line for line in lines if "dgpo" in line and "held-out pass@1 higher" in line)
    assert "**supported**" in accuracy
    assert "**untested**" in next(line for line in lines if "**grpo**" in line)  # no warm-start row on this page


def _mechanism_rows(tmp_path, primary_values, materiality=0.01):
    row = write_row(tmp_path, "dgpo-seed0", "dgpo", [3] * 10)
    card = {"variant": "dgpo", "protocol": "shared", "config": {"ppo_epochs": 1, "minibatches": 4},
            "mechanism": {"probes": ["update_change", "weight_spread"], "primary": "update_change",
                          "materiality": materiality}}
    (row / "train/card.json").write_text(json.dumps(card))
    steps = [{"step": s, "rollouts": 16 * s, "probes": {"weight_spread": 0.5}
              | ({"update_change": v} if v is not None else {})} for s, v in enumerate(primary_values, 1)]
    (row / "train/train_log.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    grpo = write_row(tmp_path, "grpo-seed0", "grpo", [3] * 10)
    rows = table(render_leaderboard([grpo, row], tmp_path / "lb.md").read_text())
    return rows["dgpo"][column(rows, "mechanism")]


@pytest.mark.parametrize(("values", "mark"), [([0.2, 0.1], None), ([0.004, 0.002], "**weak**"),
                                               ([0.0, 0.0], "**inert**"), ([None, None], "not logged")])
def test_the_mechanism_cell_marks_weak_inert_and_unmeasured_primary_probes(tmp_path, values, mark):
    cell = _mechanism_rows(tmp_path, values)
    if mark is None:
        assert cell.startswith("update_change 0.15 (material from 0.01)") and "weak" not in cell
    else:
        assert mark in cell
