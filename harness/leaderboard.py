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

TRAINING_PANELS = ("reward_mean", "entropy", "response_length", "kl")


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
    return stats.bands_from_paired_tests([line.scores.mean(axis=0) for line in lines],
                                         [line.pass_at_k[1] for line in lines])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _budget_cells(rows: list[Row]) -> tuple[str, str]:
    """(generation: rollouts / generated tokens (stopped by), updates: optimizer updates / update token
    passes), each the mean over seeds."""
    ledgers = [row.ledger for row in rows if row.ledger]
    if not ledgers:
        return "-", "-"
    keys = ("steps", "rollouts", "tokens", "update_tokens")
    used = {key: np.mean([ledger["consumed"].get(key, 0) for ledger in ledgers]) for key in keys}
    stopped = ", ".join(sorted({ledger.get("stopped_by") or "?" for ledger in ledgers}))
    return (f"{used['rollouts']:,.0f} / {used['tokens']:,.0f} ({stopped})",
            f"{used['steps']:,.0f} / {used['update_tokens']:,.0f}")


def mechanism_summary(rows: list[Row]) -> dict[str, float] | None:
    """Each declared probe's mean per step over a label's runs (None for untrained rows): what the variant's
    defining mechanism did, read from the probes every step logged."""
    names = next((row.train_card.get("mechanism") for row in rows if row.train_card), None)
    if not names:
        return None
    steps = [record.get("probes") or {} for row in rows for record in row.train_log]
    return {name: float(np.mean([step.get(name, 0.0) for step in steps])) if steps else 0.0 for name in names}


def _mechanism_cell(rows: list[Row]) -> str:
    summary = mechanism_summary(rows)
    if summary is None:
        return "-"
    shown = ", ".join(f"{name} {value:.3g}" if value else f"{name} 0 (inert)" for name, value in summary.items())
    return shown if any(summary.values()) else f"**inert**: {shown}"


def _task_mean(rows: list[Row], task: str, *keys: str) -> float:
    """A stored task-level number averaged over seeds (for what metrics.json alone can give, e.g. maj@k)."""
    values = []
    for row in rows:
        value = row.metrics["tasks"][task]
        for key in keys:
            value = value[key]
        values.append(np.nan if value is None else value)
    return float(np.mean(values))


def _tests_against(lines: list[LabelLine], base: LabelLine) -> dict:
    """Each other label's paired test of per-problem pass@1 (seeds averaged) against `base`."""
    return {line.label: stats.paired_test(line.scores.mean(axis=0), base.scores.mean(axis=0))
            for line in lines if line is not base}


def paired_tests(row_dirs, baseline: str, task: str | None = None) -> dict:
    """{label: paired test of pass@1 against `baseline`} from stored rows alone (what the table's Δ and p show)."""
    rows = load_rows(row_dirs)
    lines = _label_lines(rows, task or next(iter(rows[0].metrics["tasks"])))
    base = next((line for line in lines if line.label == baseline), None)
    if base is None:
        raise ValueError(f"baseline {baseline!r} is not among the rows' labels {[line.label for line in lines]}")
    return _tests_against(lines, base)


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

    header = ["band", "variant", "seeds", "pass@1 % [95% CI]", f"pass@{k_max} %", f"maj@{k_max} %",
              "distinct answers", "answer entropy", "distinct-4", "mean tokens",
              "generation: rollouts / tokens (stopped by)", "updates: optimizer steps / token passes",
              "mechanism (mean per step)", f"Δ pass@1 vs {baseline} (pts) [95% CI]", "p", "p (Holm)"]
    table = []
    for i in np.argsort([-line.pass_at_k[1][0] for line in lines], kind="stable"):
        line = lines[i]
        mean, low, high = line.pass_at_k[1]
        if line is base:
            delta, p_raw, p_holm = "baseline", "-", "-"
        else:
            t = tests[line.label]
            delta = f"{100 * t.difference:+.1f} [{100 * t.ci_low:+.1f}, {100 * t.ci_high:+.1f}]"
            p_raw, p_holm = _p(t.p_value), _p(holm[line.label])
        table.append([str(bands[i]), line.label, str(len(line.rows)), f"{_pct(mean)} [{_pct(low)}, {_pct(high)}]",
                      _pct(line.pass_at_k[k_max][0]), _pct(_task_mean(line.rows, task, "maj@k", str(k_max), "mean")),
                      f"{_task_mean(line.rows, task, 'diversity', 'distinct_answers'):.2f}",
                      f"{_task_mean(line.rows, task, 'diversity', 'answer_entropy'):.2f}",
                      f"{_task_mean(line.rows, task, 'diversity', 'distinct_4'):.2f}",
                      number_or_dash(_task_mean(line.rows, task, "length", "mean_tokens")),
                      *_budget_cells(line.rows), _mechanism_cell(line.rows), delta, p_raw, p_holm])

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
    text += [markdown_table(header, table), "", "## How to read this", "", _how_to_read(baseline, k_max, temperature), "",
             "## Plots", ""]
    if tests:
        text += [f"![difference from {baseline} per variant]({delta_png.name})", ""]
    text += [f"![pass@k per variant]({passk_png.name})", "",
             f"![training curves against rollouts consumed]({training_png.name})", ""]
    allocations = _bin_rollouts(lines)
    if allocations:
        _plot_allocation(allocations, allocation_png)
        text += ["## Rollouts per difficulty bin", "",
                 "Rollouts each difficulty bin received over the run (mean over seeds; bins by each prompt's "
                 "pass rate so far, the last one for prompts not seen before, as the GDRO variants log them).",
                 "", _allocation_table(allocations), "",
                 f"![share of each step's rollouts per difficulty bin]({allocation_png.name})", ""]
    if notes:
        text += ["## Notes", "", notes.strip(), ""]
    out_md.write_text("\n".join(text), encoding="utf-8")
    return out_md


def _allocation_table(allocations: dict[str, list[np.ndarray]]) -> str:
    """Total rollouts per difficulty bin for each label that logs them, summed over steps, averaged over seeds."""
    table = [(label, np.mean([steps.sum(axis=0) for steps in per_seed], axis=0))
             for label, per_seed in allocations.items()]
    bins = max(len(totals) for _, totals in table)
    header = ["variant", *_bin_names(bins)]
    return markdown_table(header, [[label, *(f"{t:,.0f}" for t in totals)] for label, totals in table])


def _bin_names(bins: int) -> list[str]:
    # GDRO logs its pass-rate bins from the lowest (hardest) up, then one for prompts not yet classified.
    return [f"bin {b}{' (hardest)' if b == 0 else ''}" for b in range(bins - 1)] + ["unseen"]


def _bin_rollouts(lines: list[LabelLine]) -> dict[str, list[np.ndarray]]:
    """{label: per seed, the [steps, bins] rollouts each difficulty bin received} for the labels whose training
    logs record them (the GDRO variants); empty if none do."""
    allocations = {}
    for line in lines:
        per_seed = []
        for row in line.rows:
            steps = [record["gdro_bin_rollouts"] for record in row.train_log if record.get("gdro_bin_rollouts")]
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
    limits = [row.ledger.get("limits", {}) for row in rows if row.ledger]
    if not limits:
        return None
    if any(other != limits[0] for other in limits):
        return "Budget limits **differ between runs**: see each run's `train/ledger.json`."
    shown = ", ".join(f"{key} ≤ {value:,}" for key, value in limits[0].items() if value is not None)
    return f"Budget limits, the same for every trained run: {shown or 'none'}. A run stops at the first it reaches."


def _how_to_read(baseline: str, k_max: int, temperature) -> str:
    return (f"pass@1 is the expected fraction of problems solved by one answer sampled at temperature {temperature} "
            f"(the unbiased estimate from all n samples per problem, averaged over problems); pass@{k_max} is the "
            f"chance that at least one of {k_max} samples is correct and maj@{k_max} that their majority answer is, "
            "both as expectations over all subsets of the n samples. Brackets are 95% percentile "
            "bootstrap intervals over problems (with several seeds: over seeds, then problems). Δ is the paired "
            f"per-problem difference from `{baseline}` in percentage points; p is a two-sided sign-flip permutation "
            "test of that difference, and p (Holm) corrects it for comparing every variant with the baseline. "
            "Variants sharing a rank band are not distinguishable from the band's leader (overlapping intervals "
            "and Holm-adjusted p ≥ 0.05): that means the data cannot order them, not that they are equal.")


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
    ax.set_xlabel(f"Δ pass@1 vs {baseline} (points, paired 95% CI)")
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
        points = [(r["rollouts"], r[key]) for r in row.train_log if r.get(key) is not None and "rollouts" in r]
        if points:
            x, y = (np.array(v, dtype=float) for v in zip(*points, strict=True))
            window = max(1, len(y) // 10)
            curves.append((x[window - 1:], np.convolve(y, np.ones(window) / window, mode="valid")))
    return curves


def _plot_training(lines: list[LabelLine], path: Path, colors: dict) -> None:
    crowded = len(lines) > CROWDED
    figure = _new_figure(figsize=(12.5 if crowded else 10, 7), layout="constrained")
    axes = figure.subplots(2, 2).ravel()
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
    if crowded:  # one legend for the four panels, beside them, from the panel that drew the most lines
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
