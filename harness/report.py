"""Human-readable views of a run's metrics: the console table and the markdown summary."""

from __future__ import annotations

from pathlib import Path


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def number_or_dash(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"  # x != x: NaN, from runs stored before None


def _with_ci(entry: dict | None) -> str:
    if not entry:
        return "-"
    low, high = entry["ci"]
    return f"{_pct(entry['mean'])} [{_pct(low)}, {_pct(high)}]"


def metric_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """One row per task: pass@k and maj@k with 95% CIs (percent), diversity, length and failure rates."""
    header = ["task", "problems", "n", "pass@k % [95% CI]", "maj@k %", "distinct answers", "entropy",
              "distinct-4", "mean tokens", "truncated %", "no answer %"]
    rows = []
    for name, m in metrics["tasks"].items():
        pass_k = "; ".join(f"@{k} {_with_ci(v)}" for k, v in m["pass@k"].items())
        maj_k = "; ".join(f"@{k} {_pct(v['mean'])}" for k, v in m["maj@k"].items())
        d = m["diversity"]
        rows.append([name, str(m["num_problems"]), str(m["n"]), pass_k, maj_k, f"{d['distinct_answers']:.2f}",
                     f"{d['answer_entropy']:.2f}", f"{d['distinct_4']:.2f}", number_or_dash(m["length"]["mean_tokens"]),
                     _pct(m["truncation_rate"]), _pct(m["no_answer_rate"])])
    return header, rows


def format_console_table(metrics: dict) -> str:
    return format_plain_table(*metric_rows(metrics))


def format_plain_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_summary_markdown(path: Path, card: dict, metrics: dict) -> None:
    model = card["model"]
    lines = [
        f"# Evaluation of `{model['name']}`",
        "",
        f"Protocol card `{metrics['card_hash'][:12]}` (full card in `card.json`). "
        f"Backend {card['backend']['backend']}, seed {card['seed']}.",
        "",
        markdown_table(*metric_rows(metrics)),
        "",
        "Decoding and prompt per task:",
        "",
    ]
    for name, task in card["tasks"].items():
        s = task["sampling"]
        lines.append(f"- `{name}`: template `{task['template']['name']}` (sha256 {task['template']['sha256'][:12]}), "
                     f"temperature {s['temperature']}, top_p {s['top_p']}, max_new_tokens {s['max_new_tokens']}, "
                     f"n {task['n']}, data sha256 {task['data_sha256'][:12]}")
    if card.get("command"):
        lines += ["", f"Produced by: `{card['command']}`"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
