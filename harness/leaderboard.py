"""Render a markdown leaderboard and its PNG plots from stored runs; nothing is generated or re-graded.

A row directory is one trained variant at one seed (or the untrained warm start): `row.json`, `eval/card.json`,
`eval/metrics.json`, and for trained rows `train/ledger.json` and `train/train_log.jsonl`. Rows sharing a label
are seeds of one variant and become one line. Every number is defined in docs/statistics.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import metrics, stats
from harness.card import card_differences, card_hash
from harness.report import markdown_table, number_or_dash
from harness.runstore import read_json

# The training figure's panels: accuracy beside the diagnostics RL practitioners read first (the clip fraction
# is a probe, under the step record's "probes").
TRAINING_PANELS = ("accuracy", "entropy", "clipped", "kl", "length_correct", "length_wrong")


@dataclass
class Row:
    label: str
    variant: str | None  # None for the warm start
    seed: int | None
    path: Path
    metrics: dict
    card: dict
    ledger: dict | None
    train_log: list[dict]
    command: str | None = None
    protocol_hash: str | None = None
    train_card: dict | None = None


def load_rows(row_dirs) -> list[Row]:
    """Read every row and refuse a mix of eval protocols: their numbers would not be comparable."""
    rows = [_read_row(Path(d)) for d in row_dirs]
    if not rows:
        raise ValueError("no row directories given; pass the run directories that `harness compare` wrote")
    seen: dict[tuple[str, int], Path] = {}
    for row in rows:
        if row.seed is not None and (row.label, row.seed) in seen:
            raise ValueError(f"{row.path} and {seen[row.label, row.seed]} are both {row.label!r} seed {row.seed}; "
                             "pass each run once")
        seen[row.label, row.seed] = row.path
    first = rows[0]
    for row in rows[1:]:
        differences = card_differences(first.card.get("tasks", {}), row.card.get("tasks", {}), prefix="tasks.")
        if differences:
            shown = "; ".join(_shorten(d) for d in differences[:4])
            raise ValueError(f"{row.path} was evaluated under a different protocol than {first.path} ({shown}); "
                             "a leaderboard across protocols is meaningless: re-evaluate with the same settings")
    return rows


def _read_row(path: Path) -> Row:
    for needed in ("row.json", "eval/metrics.json", "eval/card.json"):
        if not (path / needed).is_file():
            raise ValueError(f"{path} is not a leaderboard row: {path / needed} is missing; point at the run "
                             "directories written by `harness compare` (or run `harness eval --out "
                             f"{path / 'eval'}` for an untrained model and add a row.json)")
    info = read_json(path / "row.json")
    card, scored = read_json(path / "eval/card.json"), read_json(path / "eval/metrics.json")
    if card.get("hash") and scored.get("card_hash") not in (None, card["hash"]):
        raise ValueError(f"{path / 'eval/metrics.json'} was scored under card {scored['card_hash'][:12]}, not "
                         f"the card {card['hash'][:12]} next to it; re-run the evaluation")
    ledger_path, log_path, train_card = path / "train/ledger.json", path / "train/train_log.jsonl", path / "train/card.json"
    return Row(label=info.get("label") or info.get("variant") or "warm start", variant=info.get("variant"),
               seed=info.get("seed"), path=path, metrics=scored, card=card,
               ledger=read_json(ledger_path) if ledger_path.is_file() else None,
               train_log=_read_train_log(log_path) if log_path.is_file() else [],
               command=info.get("command"), protocol_hash=info.get("protocol_hash"),
               train_card=read_json(train_card) if train_card.is_file() else None)


def _read_train_log(path: Path) -> list[dict]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # a torn last line from a killed run: the steps before it are still good
            raise ValueError(f"{path}:{i + 1}: malformed step record") from None
    return records


def _shorten(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------- numbers


@dataclass
class LabelLine:
    """One line of the table: a label's seeds merged."""

    label: str
    rows: list[Row]
    scores: np.ndarray  # [seeds, problems] fraction correct, problems in a shared order
    pass_at_k: dict[int, tuple[float, float, float]]  # k -> (mean, ci low, ci high)

    @property
    def trained(self) -> bool:
        """False for a fixed model that no training run produced (the warm start): it has no seed variance."""
        return any(row.variant is not None for row in self.rows)

    @property
    def run_scores(self) -> np.ndarray:
        """pass@1 of each training run (seed), in row order."""
        return self.scores.mean(axis=1)


# The level a comparison is made at (docs/statistics.md): training runs, with seed-to-seed variance in the interval
# and the test, or checkpoints, when a trained side has one seed and its seed variance is unknown.
RUNS, CHECKPOINTS = "training runs", "checkpoints"


@dataclass(frozen=True)
class Comparison:
    """A label against another: Δ pass@1 with its 95% interval and two-sided p, at the level it was tested."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    level: str  # RUNS or CHECKPOINTS
    detail: str  # what was compared, e.g. "3 v 3 seeds"


def compare_lines(line: LabelLine, base: LabelLine) -> Comparison:
    """`line` against `base`. Training runs (`stats.seed_aware_test`) when every trained side has 2+ seeds, a fixed
    model (the warm start) counting as a constant; else checkpoints (`stats.paired_test` on the per-problem scores
    averaged over seeds), which says nothing about seed-to-seed variance."""
    seeds_known = all(len(side.rows) >= 2 for side in (line, base) if side.trained)
    if not seeds_known or not (line.trained or base.trained):
        t = stats.paired_test(line.scores.mean(axis=0), base.scores.mean(axis=0))
        return Comparison(t.difference, t.ci_low, t.ci_high, t.p_value, CHECKPOINTS, "per problem")
    if not line.trained:  # the fixed side goes second: test base against it, then turn the difference round
        r = stats.seed_aware_test(base.scores, line.scores, fixed_b=True)
        return Comparison(-r.difference, -r.ci_high, -r.ci_low, r.p_value, RUNS, f"fixed v {r.seeds_a} seeds")
    r = stats.seed_aware_test(line.scores, base.scores, fixed_b=not base.trained)
    detail = f"{r.seeds_a} seeds v " + (f"{r.seeds_b} seeds" if base.trained else "fixed")
    return Comparison(r.difference, r.ci_low, r.ci_high, r.p_value, RUNS, detail)


def _per_problem_counts(row: Row, task: str, problem_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if task not in row.metrics["tasks"]:
        raise ValueError(f"{row.path} has no metrics for task {task!r} (it has {sorted(row.metrics['tasks'])})")
    per_problem = row.metrics["tasks"][task].get("per_problem")
    if per_problem is None:
        raise ValueError(f"{row.path / 'eval/metrics.json'} has no per-problem counts for {task}; re-score it "
                         "with a current harness (`harness eval` on the same run directory grades nothing new)")
    if set(per_problem) != set(problem_ids):
        raise ValueError(f"{row.path} scored a different problem set for {task} ({len(per_problem)} problems, "
                         f"{len(set(per_problem) ^ set(problem_ids))} not shared with the first row); "
                         "paired tests need the same problems")
    return (np.array([per_problem[i]["n"] for i in problem_ids]), np.array([per_problem[i]["c"] for i in problem_ids]))


def _label_lines(rows: list[Row], task: str) -> list[LabelLine]:
    problem_ids = sorted(rows[0].metrics["tasks"].get(task, {}).get("per_problem", {}))
    ks = sorted(int(k) for k in rows[0].metrics["tasks"].get(task, {}).get("pass@k", {"1": None}))
    by_label: dict[str, list[Row]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    lines = []
    for label, label_rows in by_label.items():
        counts = [_per_problem_counts(row, task, problem_ids) for row in label_rows]
        curve = {k: stats.mean_with_ci([metrics.pass_at_k_per_problem(n, c, k) for n, c in counts]) for k in ks}
        lines.append(LabelLine(label, label_rows, np.array([c / n for n, c in counts]), curve))
    return lines


def _rank_bands(lines: list[LabelLine]) -> np.ndarray:
    """Bands by the same tests as the Δ column: training runs where the seeds allow, checkpoints otherwise."""
    return stats.bands_from_tests(lambda i, j: compare_lines(lines[i], lines[j]).p_value,
                                  [line.pass_at_k[1] for line in lines])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _flops(x: float) -> str:
    return f"{x:.3g}".replace("e+", "e")


def _budget_cells(rows: list[Row]) -> tuple[str, str, str, str]:
    """(compute: FLOPs total = generation + update (stopped by), generation: rollouts / generated tokens, updates:
    optimizer updates / update token passes, diagnostics: FLOPs of forwards made only to log), each the mean over
    seeds. Runs from before the FLOPs ledger show '-' for FLOPs."""
    ledgers = [row.ledger for row in rows if row.ledger]
    if not ledgers:
        return "-", "-", "-", "-"
    keys = ("steps", "rollouts", "tokens", "update_tokens", "generation_flops", "update_flops", "diagnostic_flops")
    used = {key: np.mean([ledger["consumed"].get(key, 0) for ledger in ledgers]) for key in keys}
    stopped = ", ".join(sorted({ledger.get("stopped_by") or "?" for ledger in ledgers}))
    total = used["generation_flops"] + used["update_flops"]
    compute = (f"{_flops(total)} = {_flops(used['generation_flops'])} + {_flops(used['update_flops'])}" if total
               else "-") + f" ({stopped})"
    return (compute, f"{used['rollouts']:,.0f} / {used['tokens']:,.0f}",
            f"{used['steps']:,.0f} / {used['update_tokens']:,.0f}",
            _flops(used["diagnostic_flops"]) if used["diagnostic_flops"] else "0")


def mechanism_summary(rows: list[Row]) -> dict[str, float] | None:
    """Each probe's mean per step over a label's runs (None for untrained rows): what the variant's defining
    mechanism did, read from the probes every step logged, the primary probe first."""
    card = next((row.train_card.get("mechanism") for row in rows if row.train_card), None)
    if not card:
        return None
    names = card["probes"] if isinstance(card, dict) else card  # a list: cards from before the primary probe
    steps = [record.get("probes") or {} for row in rows for record in row.train_log]
    return {name: float(np.mean([step.get(name, 0.0) for step in steps])) if steps else 0.0 for name in names}


def mechanism_verdict(rows: list[Row]) -> str | None:
    """'inert' (the primary probe is 0), 'weak' (below the variant's materiality threshold), 'acts', or
    'unmeasured' (no step logged it), from the primary probe's mean per step; None for untrained rows and cards
    from before the primary probe."""
    card = next((row.train_card.get("mechanism") for row in rows if row.train_card), None)
    summary = mechanism_summary(rows)
    if not isinstance(card, dict) or summary is None:
        return None
    if not any(card["primary"] in (record.get("probes") or {}) for row in rows for record in row.train_log):
        return "unmeasured"  # an engine that does not log it (the probe needs the loss's own gradient)
    value = summary[card["primary"]]
    return "inert" if value == 0 else "weak" if value < card["materiality"] else "acts"


def _mechanism_cell(rows: list[Row]) -> str:
    summary = mechanism_summary(rows)
    if summary is None:
        return "-"
    card = next(row.train_card["mechanism"] for row in rows if row.train_card)
    if not isinstance(card, dict):
        shown = ", ".join(f"{name} {value:.3g}" if value else f"{name} 0 (inert)" for name, value in summary.items())
        return shown if any(summary.values()) else f"**inert**: {shown}"
    primary = card["primary"]
    verdict = mechanism_verdict(rows)
    head = f"{primary} {summary[primary]:.3g} (material from {card['materiality']:g})"
    head = {"acts": head, "unmeasured": f"{primary} not logged by this engine"}.get(verdict, f"**{verdict}**: {head}")
    rest = ", ".join(f"{name} {value:.3g}" for name, value in summary.items() if name != primary)
    return f"{head}; {rest}" if rest else head


def _task_mean(rows: list[Row], task: str, *keys: str) -> float:
    """A stored task-level number averaged over seeds (for what metrics.json alone can give, e.g. maj@k)."""
    values = []
    for row in rows:
        value = row.metrics["tasks"][task]
        for key in keys:
            value = value[key]
        values.append(np.nan if value is None else value)
    return float(np.mean(values))


def _tests_against(lines: list[LabelLine], base: LabelLine) -> dict[str, Comparison]:
    """Each other label's comparison of pass@1 with `base` (`compare_lines`)."""
    return {line.label: compare_lines(line, base) for line in lines if line is not base}


def variant_tests(row_dirs, baseline: str, task: str | None = None) -> dict[str, Comparison]:
    """{label: comparison of pass@1 with `baseline`} from stored rows alone (what the table's Δ and p show)."""
    rows = load_rows(row_dirs)
    lines = _label_lines(rows, task or next(iter(rows[0].metrics["tasks"])))
    base = next((line for line in lines if line.label == baseline), None)
    if base is None:
        raise ValueError(f"baseline {baseline!r} is not among the rows' labels {[line.label for line in lines]}")
    return _tests_against(lines, base)


@dataclass(frozen=True)
class SeedPlan:
    """How many seeds per variant would detect a given Δ, from the seed-to-seed SD the runs showed."""

    seed_sd: float  # pooled SD of a run's pass@1 within each label (a fraction), nan when unknown
    df: int  # its degrees of freedom
    labels: int  # labels with 2+ seeds that it pools
    seeds_needed: dict[float, int | None]  # Δ (points) -> seeds per variant at power 0.8, None past 1,000


PLANNED_EFFECTS = (1.0, 2.0, 3.0)  # points of pass@1


def seed_plan_of_rows(row_dirs, task: str | None = None) -> SeedPlan:
    """`seed_plan` from stored rows alone (what the page's "Seeds needed" section says)."""
    rows = load_rows(row_dirs)
    return seed_plan(_label_lines(rows, task or next(iter(rows[0].metrics["tasks"]))))


def seed_plan(lines: list[LabelLine]) -> SeedPlan:
    trained = [line.run_scores for line in lines if line.trained and len(line.rows) >= 2]
    sd, df = stats.pooled_seed_sd(trained)
    needed = {effect: stats.seeds_for_power(sd, effect / 100) for effect in PLANNED_EFFECTS}
    return SeedPlan(sd, df, len(trained), needed)


def seed_plan_text(plan: SeedPlan) -> str:
    """The plan in a sentence, for the page and for `harness compare`'s last lines."""
    if not plan.df:
        return ("Seed planning needs a variant with two or more seeds: with one seed per variant the seed-to-seed "
                "spread of a training run is unknown.")
    needed = "; ".join(f"Δ = {effect:g} point{'s' if effect != 1 else ''}: "
                       + (f"{m} seeds" if m else "more than 1,000 seeds") for effect, m in plan.seeds_needed.items())
    return (f"Seed-to-seed SD of a training run's pass@1, pooled over {plan.labels} variant(s) with 2+ seeds: "
            f"{100 * plan.seed_sd:.2f} points ({plan.df} degrees of freedom). Seeds per variant that detect a true "
            f"difference between two variants at power 0.8 (two-sided α = 0.05, Welch's test, equal seeds): "
            f"{needed}. The seed count stays your choice (`--seeds`); this is what each choice can resolve.")


# ------------------------------------------------------------------------------------------ rendering


def render_leaderboard(row_dirs, out_md: Path, task: str | None = None, baseline: str | None = None,
                       title: str | None = None, notes: str | None = None) -> Path:
    """Write `out_md` and, next to it, `<stem>-passk.png` and `<stem>-training.png`; return `out_md`."""
    rows = load_rows(row_dirs)
    task = task or next(iter(rows[0].metrics["tasks"]))
    lines = _label_lines(rows, task)
    labels = [line.label for line in lines]
    baseline = baseline or labels[0]  # "difference from the first variant" unless told otherwise
    if baseline not in labels:
        raise ValueError(f"baseline {baseline!r} is not among the rows' labels {labels}")
    base = lines[labels.index(baseline)]
    k_max = max(base.pass_at_k)

    tests = _tests_against(lines, base)
    holm = dict(zip(tests, stats.holm_adjust([t.p_value for t in tests.values()]), strict=True)) if tests else {}
    bands = _rank_bands(lines)

    header, table, ranked = _main_table(lines, base, tests, holm, bands, task, k_max)

    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    passk_png, training_png, delta_png, allocation_png = (out_md.with_name(f"{out_md.stem}-{kind}.png") for kind
                                                          in ("passk", "training", "delta", "allocation"))
    colors = _colors(labels)
    _plot_pass_at_k(lines, passk_png, task, colors)
    _plot_training(lines, training_png, colors)
    if tests:
        _plot_differences(tests, holm, baseline, delta_png)

    temperature = rows[0].card["tasks"].get(task, {}).get("sampling", {}).get("temperature", "?")
    text = [f"# {title or f'Leaderboard: {task}'}", "", _protocol_line(rows, task), ""]
    provenance = _provenance_line(rows)
    if provenance:
        text += [provenance, ""]
    budget_line = _budget_limits_line(rows)
    if budget_line:
        text += [budget_line, ""]
    level_line = _claim_level_line(lines, tests)
    if level_line:
        text += [level_line, ""]
    text += [markdown_table(header, table), "", "## How to read this", "",
             _how_to_read(baseline, k_max, temperature), "", "## Seeds needed", "", seed_plan_text(seed_plan(lines)), "",
             "## Every training run", "", _runs_table([lines[i] for i in ranked], task, k_max), ""]
    claims = _claims_section(lines, task)
    if claims:
        text += ["## Paper claims on this setup", "", claims, ""]
    text += ["## Plots", ""]
    if tests:
        text += [f"![difference from {baseline} per variant]({delta_png.name})", ""]
    text += [f"![pass@k per variant]({passk_png.name})", "",
             f"![training curves against rollouts consumed]({training_png.name})", ""]
    text += _allocation_section(lines, allocation_png)
    if notes:
        text += ["## Notes", "", notes.strip(), ""]
    out_md.write_text("\n".join(text), encoding="utf-8")
    return out_md


def _main_table(lines: list[LabelLine], base: LabelLine, tests: dict, holm: dict, bands: list, task: str,
                k_max: int) -> tuple[list[str], list[list[str]], np.ndarray]:
    """The page's ranking: its header, one row per label (best pass@1 first), and that order."""
    baseline = base.label
    header = ["band", "variant", "seeds", "pass@1 % [95% CI]", "pass@1 per seed % (SD)", f"pass@{k_max} %",
              f"maj@{k_max} %", "distinct answers", "answer entropy", "distinct-4", "mean tokens",
              "compute FLOPs: total = generation + update (stopped by)", "generation: rollouts / tokens",
              "updates: optimizer steps / token passes", "diagnostics FLOPs (not charged)",
              "mechanism (mean per step)", f"Δ pass@1 vs {baseline} (pts) [95% CI]", "tested as", "p", "p (Holm)"]
    table = []
    ranked = np.argsort([-line.pass_at_k[1][0] for line in lines], kind="stable")
    for i in ranked:
        line = lines[i]
        mean, low, high = line.pass_at_k[1]
        if line is base:
            delta, level, p_raw, p_holm = "baseline", "-", "-", "-"
        else:
            t = tests[line.label]
            delta = f"{100 * t.difference:+.1f} [{100 * t.ci_low:+.1f}, {100 * t.ci_high:+.1f}]"
            level = f"{t.level} ({t.detail})"
            p_raw, p_holm = _p(t.p_value), _p(holm[line.label])
        table.append([str(bands[i]), line.label, str(len(line.rows)), f"{_pct(mean)} [{_pct(low)}, {_pct(high)}]",
                      _per_seed_cell(line), _pct(line.pass_at_k[k_max][0]),
                      _pct(_task_mean(line.rows, task, "maj@k", str(k_max), "mean")),
                      f"{_task_mean(line.rows, task, 'diversity', 'distinct_answers'):.2f}",
                      f"{_task_mean(line.rows, task, 'diversity', 'answer_entropy'):.2f}",
                      f"{_task_mean(line.rows, task, 'diversity', 'distinct_4'):.2f}",
                      number_or_dash(_task_mean(line.rows, task, "length", "mean_tokens")),
                      *_budget_cells(line.rows), _mechanism_cell(line.rows), delta, level, p_raw, p_holm])
    return header, table, ranked


def _allocation_section(lines: list[LabelLine], allocation_png: Path) -> list[str]:
    """The rollouts each difficulty bin received, for the variants that allocate them (none: no section)."""
    allocations = _bin_rollouts(lines)
    if not allocations:
        return []
    _plot_allocation(allocations, allocation_png)
    return ["## Rollouts per difficulty bin", "",
            "Rollouts each difficulty bin received over the run (mean over seeds; bins by each prompt's "
            "pass rate so far, the last one for prompts not seen before, as the variants log them).",
            "", _allocation_table(allocations), "",
            f"![share of each step's rollouts per difficulty bin]({allocation_png.name})", ""]


def _claims_section(lines: list[LabelLine], task: str) -> str | None:
    """Each variant's declared paper claims (harness.claims) with their verdicts on this page's runs; None when no
    variant on the page declares one. A/A copies (VARIANT@TAG) repeat their variant's claims and are left out."""
    from harness.claims import claim_verdicts, verdict_line
    from harness.variants import VARIANTS

    claims = {line.label: VARIANTS.get(line.label).claims for line in lines
              if line.label in VARIANTS.names() and line.rows[0].variant == line.label}
    if not any(claims.values()):
        return None
    verdicts = claim_verdicts({line.label: line.rows for line in lines}, claims, task)
    counts = {kind: sum(v.verdict == kind for v in verdicts)
              for kind in ("supported", "contradicted", "inconclusive", "untested")}
    intro = ("Each variant's headline claims (`harness list variants` names them and their sources), tested as "
             "claims about training runs: the 95% interval of the variant's mean over its seeds minus the "
             "baseline's, seed-to-seed variance included (`harness.claims`). Supported: the interval lies on the "
             "claimed side; contradicted: on the other; inconclusive: neither, with the smallest true difference "
             "these seeds would detect with 80% power. The claims are the papers', made at their scale; a verdict "
             "here is about this setup only. Tally: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + ".")
    return "\n".join([intro, "", *(verdict_line(v) for v in verdicts)])


def _per_seed_cell(line: LabelLine) -> str:
    """'44.6 / 47.7 / 47.9 (1.8)': each training run's pass@1 in seed order and their SD; '-' for a fixed model."""
    if not line.trained:
        return "-"
    order = np.argsort([row.seed if row.seed is not None else -1 for row in line.rows], kind="stable")
    shown = " / ".join(_pct(line.run_scores[i]) for i in order)
    return shown + (f" ({100 * line.run_scores.std(ddof=1):.1f})" if len(line.rows) > 1 else "")


def _runs_table(lines: list[LabelLine], task: str, k_max: int) -> str:
    """One line per training run (and the fixed models), label by label in the order given, seeds ascending."""
    header = ["variant", "seed", "pass@1 %", f"pass@{k_max} %", f"maj@{k_max} %", "mean tokens", "rollout steps",
              "compute FLOPs (stopped by)"]
    body = []
    for line in lines:
        for row in sorted(line.rows, key=lambda r: -1 if r.seed is None else r.seed):
            n, c = _per_problem_counts(row, task, sorted(row.metrics["tasks"][task]["per_problem"]))
            ledger = row.ledger or {}
            consumed = ledger.get("consumed", {})
            flops = consumed.get("generation_flops", 0) + consumed.get("update_flops", 0)
            body.append([line.label, "-" if row.seed is None else str(row.seed), _pct(float(np.mean(c / n))),
                         _pct(float(np.mean(metrics.pass_at_k_per_problem(n, c, k_max)))),
                         _pct(_task_mean([row], task, "maj@k", str(k_max), "mean")),
                         number_or_dash(_task_mean([row], task, "length", "mean_tokens")),
                         str(ledger.get("steps_trained", "-")) if ledger else "-",
                         (f"{_flops(flops) if flops else '-'} ({ledger.get('stopped_by') or '?'})") if ledger else "-"])
    return markdown_table(header, body)


def _claim_level_line(lines: list[LabelLine], tests: dict[str, Comparison]) -> str | None:
    """What the page's comparisons can claim, said before the table: with one training run per variant they
    compare checkpoints, not algorithms."""
    if not tests:
        return None
    trained = [line for line in lines if line.trained]
    if trained and all(len(line.rows) == 1 for line in trained):
        return ("**One training run (seed) per variant: this page compares checkpoints, not algorithms.** Δ, p and "
                "the rank bands say whether these trained models differ on these problems; they leave out how much "
                "a variant's result moves from one training seed to the next, so they are no evidence that one "
                "algorithm beats another. For that, train several seeds per variant (`--seeds 0,1,2,...`): the page "
                "then tests training runs.")
    checkpoints = sorted(label for label, t in tests.items() if t.level == CHECKPOINTS)
    if checkpoints:
        return (f"Tested as checkpoints, not training runs (a side with one seed has no measured seed variance): "
                f"{', '.join(checkpoints)}. Every other comparison includes seed-to-seed variance.")
    return ("Every comparison is between training runs: each interval and p include seed-to-seed variance "
            "(the unit of an algorithm claim is the training run).")


def _allocation_table(allocations: dict[str, list[np.ndarray]]) -> str:
    """Total rollouts per difficulty bin for each label that logs them, summed over steps, averaged over seeds."""
    table = [(label, np.mean([steps.sum(axis=0) for steps in per_seed], axis=0))
             for label, per_seed in allocations.items()]
    bins = max(len(totals) for _, totals in table)
    header = ["variant", *_bin_names(bins)]
    return markdown_table(header, [[label, *(f"{t:,.0f}" for t in totals)] for label, totals in table])


def _bin_names(bins: int) -> list[str]:
    # Bins by pass rate from the lowest (hardest) up, then one for prompts not yet classified.
    return [f"bin {b}{' (hardest)' if b == 0 else ''}" for b in range(bins - 1)] + ["unseen"]


def _bin_rollouts(lines: list[LabelLine]) -> dict[str, list[np.ndarray]]:
    """{label: per seed, the [steps, bins] rollouts each difficulty bin received} for the labels whose variant
    declares such a log field (`allocation_log_key`: the GDRO variants) and whose logs hold it; empty if none."""
    from harness.variants import VARIANTS

    allocations = {}
    for line in lines:
        variant = line.rows[0].variant
        key = getattr(VARIANTS.get(variant), "allocation_log_key", None) if variant in VARIANTS else None
        if key is None:
            continue
        per_seed = []
        for row in line.rows:
            steps = [record[key] for record in row.train_log if record.get(key)]
            if steps:
                per_seed.append(np.array(steps, dtype=float))
        if per_seed:
            allocations[line.label] = per_seed
    return allocations


def _protocol_line(rows: list[Row], task: str) -> str:
    protocol_hashes = {row.protocol_hash for row in rows}
    if len(protocol_hashes) == 1 and None not in protocol_hashes:
        protocol = f"Compare protocol `{protocol_hashes.pop()[:12]}`"
    else:  # eval card hashes name the model too, so hash what load_rows checked is shared: the task settings
        protocol = f"Eval protocol `{card_hash({'tasks': rows[0].card.get('tasks', {})})[:12]}` (task settings)"
    m = rows[0].metrics["tasks"][task]
    n = m["n"] if isinstance(m["n"], int) else "–".join(map(str, m["n"]))
    line = f"{protocol}; task `{task}`, n = {n} samples per problem, {m['num_problems']} problems."
    command = rows[0].command or rows[0].card.get("command")
    return line + (f" Produced by `{command}`." if command else "")


def _provenance_line(rows: list[Row]) -> str | None:
    """The update schedule every trained row used, and the library versions and machine that produced the
    numbers: the same seed gives the same numbers only under the same versions on the same processor kind."""
    cards = [row.train_card for row in rows if row.train_card]
    parts = []
    if cards:
        protocols = "/".join(sorted({card.get("protocol", "shared") for card in cards}))
        schedules = {card["variant"]: (card["config"]["ppo_epochs"], card["config"]["minibatches"]) for card in cards}
        if len(set(schedules.values())) == 1:
            epochs, minibatches = next(iter(schedules.values()))
            shown = f"every variant {epochs} PPO epoch(s) x {minibatches} minibatches"
        else:
            shown = "; ".join(f"{variant} {epochs} x {minibatches}" for variant, (epochs, minibatches)
                              in sorted(schedules.items()))
        engines = sorted({card.get("engine", "builtin") for card in cards})
        if engines != ["builtin"]:  # pages trained by the built-in trainer read as they always have
            parts.append(f"Trained by the `{'/'.join(engines)}` engine (trainers/engines).")
        parts.append(f"Update schedule: `{protocols}` protocol ({shown} per rollout batch).")
    stored = rows[0].path.parent / "protocol.json"
    if stored.is_file():
        protocol = read_json(stored)
        versions = ", ".join(f"{name} {v}" for name, v in protocol.get("versions", {}).items())
        machine = protocol.get("machine")
        parts.append(f"Produced with {versions}" + (f" on {machine['cpu']} ({machine['cores']} cores, "
                                                    f"{machine['torch_threads']} torch threads)." if machine else "."))
    return " ".join(parts) or None


def _budget_limits_line(rows: list[Row]) -> str | None:
    ledgers = [row.ledger for row in rows if row.ledger]
    if not ledgers:
        return None
    limits = [ledger.get("limits", {}) for ledger in ledgers]
    if any(other != limits[0] for other in limits):
        return "Budget limits **differ between runs**: see each run's `train/ledger.json`."
    shown = ", ".join(f"{key} ≤ {_flops(value) if key == 'flops' else f'{value:,}'}" for key, value in limits[0].items()
                      if value is not None)
    stops: dict[str, int] = {}
    for ledger in ledgers:
        stops[ledger.get("stopped_by") or "?"] = stops.get(ledger.get("stopped_by") or "?", 0) + 1
    bound = ", ".join(f"{name} ({count} of {len(ledgers)} runs)" for name, count in sorted(stops.items()))
    return (f"Budget limits, the same for every trained run: {shown or 'none'}. A run stops at the first it reaches; "
            f"the limit that stopped them: {bound}.")


def _how_to_read(baseline: str, k_max: int, temperature) -> str:
    return (f"pass@1 is the expected fraction of problems solved by one answer sampled at temperature {temperature} "
            f"(the unbiased estimate from all n samples per problem, averaged over problems); pass@{k_max} is the "
            f"chance that at least one of {k_max} samples is correct and maj@{k_max} that their majority answer is, "
            "both as expectations over all subsets of the n samples. A row's brackets are 95% percentile bootstrap "
            "intervals over problems (with several seeds: over seeds, then problems); its per-seed column lists "
            "each training run's pass@1 and their SD.\n\n"
            f"Δ is the difference in pass@1 from `{baseline}`, in percentage points, tested at the level the column "
            "`tested as` names. **Training runs** (every trained side has 2+ seeds): Δ is the difference of the "
            "variants' mean pass@1 over their training runs, and its interval and p include training-seed "
            "variance: Welch's t-test on the per-seed scores, with the variance of the variant x problem "
            "interaction added (the paired per-problem variance less the per-run spread the seed terms already "
            "hold) (Δ / SE "
            "against Student's t with Welch-Satterthwaite degrees of freedom; the interval is Δ ± t × SE, so "
            "interval and p agree). A fixed model (the warm start) is a constant there, without seed variance. "
            "Its type-I error at 3-10 seeds is at most α in simulation (perf/seed_test_power.py). **Checkpoints** "
            "(a trained side with one seed): Δ is the paired per-problem difference, its interval a paired "
            "bootstrap and p a sign-flip permutation test; it says whether these trained models differ on these "
            "problems, not whether one algorithm beats another. p (Holm) corrects p for comparing every variant "
            "with the baseline. Variants sharing a rank band are not distinguishable from the band's leader "
            "(overlapping intervals and Holm-adjusted p ≥ 0.05 by the same tests): the data cannot order them, "
            "which does not make them equal.\n\n"
            "Compute is counted in FLOPs from the model's parameter count N (2N a token through a forward pass, "
            "4N through a backward; generation 2N per prompt and generated token): generation plus every "
            "training-side forward and backward. Diagnostics (forwards made only to log, such as the KL curve "
            "where the KL is not in the loss) are shown apart and charged to no limit.\n\n"
            "The mechanism column gives each variant's primary probe first, the mean per step of what its mechanism "
            "changed: for most variants `update_change`, the share of the update's per-token weight that differs "
            "from plain GRPO's on the same batch (0: GRPO's update, up to a constant scale; 1: nothing in common); "
            "for GRPO itself the share of tokens a clip cut. It is marked **weak** below the variant's materiality "
            "threshold and **inert** at 0. The probes after it count how often a formula applied; `harness list "
            "variants` gives each in words.")


# ---------------------------------------------------------------------------------------------- plots


def _new_figure(**kwargs):
    # The object-oriented Figure needs no pyplot state, so rendering never switches the caller's backend.
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(figure, path: Path) -> None:
    import matplotlib

    # No software/version tag and a fixed hash salt: the same runs give the same bytes.
    with matplotlib.rc_context({"svg.hashsalt": "rlvr-harness"}):
        figure.savefig(path, dpi=110, metadata={"Software": None})


# Beyond this many lines a legend inside the axes hides the curves, and per-seed lines hide the means.
CROWDED = 6


def _colors(labels: list[str]) -> dict[str, tuple]:
    """A distinct colour per label: tab10, or for more labels tab20 with its dark shades first, so that
    neighbours in the legend (which tab20 pairs as dark/light of one hue) never look alike."""
    import matplotlib

    if len(labels) <= 10:
        cmap, order = matplotlib.colormaps["tab10"], range(10)
    else:
        cmap, order = matplotlib.colormaps["tab20"], [*range(0, 20, 2), *range(1, 20, 2)]
    return {label: cmap(order[i % len(order)]) for i, label in enumerate(labels)}


def _plot_differences(tests: dict, holm: dict, baseline: str, path: Path) -> None:
    """Forest plot of each label's paired pass@1 difference from the baseline, largest first."""
    order = sorted(tests, key=lambda label: tests[label].difference)
    figure = _new_figure(figsize=(6.4, 1.4 + 0.32 * len(order)), layout="constrained")
    ax = figure.add_subplot()
    for y, label in enumerate(order):
        t = tests[label]
        significant = holm[label] < 0.05
        ax.errorbar(100 * t.difference, y, xerr=[[100 * (t.difference - t.ci_low)], [100 * (t.ci_high - t.difference)]],
                    fmt="o", color="C3" if significant else "0.35", markerfacecolor=None if significant else "white",
                    capsize=3)
    ax.axvline(0, color="0.5", linewidth=1)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(-0.7, len(order) - 0.3)
    levels = " / ".join(sorted({tests[label].level for label in order}))
    ax.set_xlabel(f"Δ pass@1 vs {baseline} (points, 95% CI, tested as {levels})")
    ax.set_title("filled red: Holm-adjusted p < 0.05; hollow: not distinguishable", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    _save(figure, path)


def _plot_allocation(allocations: dict[str, list[np.ndarray]], path: Path) -> None:
    """Each GDRO label's share of rollouts per difficulty bin at each step (mean over seeds), stacked."""
    import matplotlib

    figure = _new_figure(figsize=(6.4, 2.6 * len(allocations)), layout="constrained")
    axes = figure.subplots(len(allocations), 1, squeeze=False)[:, 0]
    for ax, (label, per_seed) in zip(axes, allocations.items(), strict=True):
        steps = min(s.shape[0] for s in per_seed)  # the steps every seed reached
        bins = max(s.shape[1] for s in per_seed)
        padded = [np.pad(s[:steps], ((0, 0), (0, bins - s.shape[1]))) for s in per_seed]
        shares = np.mean([s / np.maximum(s.sum(axis=1, keepdims=True), 1) for s in padded], axis=0)
        viridis = matplotlib.colormaps["viridis"]
        ax.stackplot(np.arange(1, steps + 1), 100 * shares.T, labels=_bin_names(bins),
                     colors=[viridis(b / max(bins - 1, 1)) for b in range(bins)])
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of the step's rollouts")
        ax.set_xlabel("training step")
        ax.set_title(f"{label} (mean of {len(per_seed)} seed{'s' if len(per_seed) > 1 else ''})", fontsize="small")
        ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(figure, path)


def _plot_pass_at_k(lines: list[LabelLine], path: Path, task: str, colors: dict) -> None:
    crowded = len(lines) > CROWDED
    figure = _new_figure(figsize=(8.4 if crowded else 6.4, 4.4), layout="constrained")
    ax = figure.add_subplot()
    for line in lines:
        ks = sorted(line.pass_at_k)
        mean, low, high = (np.array([100 * line.pass_at_k[k][i] for k in ks]) for i in range(3))
        seeds = f" ({len(line.rows)} seeds)" if len(line.rows) > 1 else ""
        ax.plot(ks, mean, marker="o", color=colors[line.label], label=line.label + seeds)
        if not crowded:  # many overlapping bands are a grey smear; the table gives every interval
            ax.fill_between(ks, low, high, color=colors[line.label], alpha=0.15, linewidth=0)
    ks = sorted(lines[0].pass_at_k)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xticks([], minor=True)  # log-scale minor ticks would suggest k values that were not measured
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k %" if crowded else "pass@k % (95% CI shaded)")
    ax.set_title(f"pass@k on {task}")
    ax.grid(alpha=0.3)
    if crowded:
        ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize="small")
    _save(figure, path)


def _seed_curves(rows: list[Row], key: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rollouts consumed, trailing moving mean) per seed. Per-step values swing with the batch's questions
    (easy or hard draws), which hides the trend; the window is a tenth of the run."""
    curves = []
    for row in rows:
        points = [(r["rollouts"], value) for r in row.train_log
                  if (value := r.get(key, (r.get("probes") or {}).get(key))) is not None and "rollouts" in r]
        if points:
            x, y = (np.array(v, dtype=float) for v in zip(*points, strict=True))
            window = max(1, len(y) // 10)
            curves.append((x[window - 1:], np.convolve(y, np.ones(window) / window, mode="valid")))
    return curves


def _plot_training(lines: list[LabelLine], path: Path, colors: dict) -> None:
    crowded = len(lines) > CROWDED
    figure = _new_figure(figsize=(12.5 if crowded else 10, 10), layout="constrained")
    axes = figure.subplots(3, 2).ravel()
    for ax, key in zip(axes, TRAINING_PANELS, strict=True):
        drawn = False
        for line in lines:
            curves = _seed_curves(line.rows, key)  # the warm start has no log and is skipped here
            color = colors[line.label]
            if len(curves) == 1:
                ax.plot(*curves[0], color=color, linewidth=1.8, label=line.label)
            elif curves:  # thin per-seed lines show the spread; the bold mean uses the range every seed reached
                if not crowded:
                    for x, y in curves:
                        ax.plot(x, y, color=color, alpha=0.3, linewidth=0.8)
                grid = np.linspace(max(x[0] for x, _ in curves), min(x[-1] for x, _ in curves), 100)
                ax.plot(grid, np.mean([np.interp(grid, x, y) for x, y in curves], axis=0), color=color,
                        linewidth=1.8, label=f"{line.label} (mean of {len(curves)} seeds)")
            drawn = drawn or bool(curves)
        if drawn and not crowded:
            ax.legend(fontsize="x-small")
        elif not drawn:
            ax.text(0.5, 0.5, "no KL term" if key == "kl" else f"no {key} logged", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
            ax.set_yticks([])
        ax.set_title(f"{key} (moving mean over a tenth of the run)")
        ax.set_xlabel("rollouts consumed")
        ax.grid(alpha=0.3)
    if crowded:  # one legend for the panels, beside them, from the panel that drew the most lines
        handles, names = max((ax.get_legend_handles_labels() for ax in axes), key=lambda pair: len(pair[0]))
        if handles:
            figure.legend(handles, names, loc="outside right center", fontsize="x-small")
    _save(figure, path)


# ------------------------------------------------------------------------------------------------- paths


def expand_row_dirs(paths) -> list[Path]:
    """Each argument is a row directory or a folder of them (sorted by name); argument order is kept."""
    rows = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory; pass run directories or a folder that holds them")
        if (path / "row.json").is_file() or (path / "eval").is_dir():
            rows.append(path)  # a row, possibly incomplete: load_rows says what is missing
            continue
        children = sorted(child for child in path.iterdir() if (child / "row.json").is_file())
        if not children:
            raise ValueError(f"{path} holds no row.json, nor does any folder directly inside it; pass the run "
                             "directories that `harness compare` wrote")
        rows += children
    return rows
