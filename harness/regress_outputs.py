"""What `harness regress` writes for people and for CI: a console table, markdown (for $GITHUB_STEP_SUMMARY),
JUnit XML (a testsuite per task, a testcase per metric) and JSON."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.regress import Comparison, Report
from harness.report import format_plain_table, markdown_table
from harness.runstore import write_json_atomic, write_text_atomic

HEADER = ["task", "metric", "problems", "baseline %", "candidate %", "Δ pts [95% CI]", "p", "p (Holm)", "test",
          "margin", "MDE", "verdict"]


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _delta(c: Comparison) -> str:
    return f"{100 * c.difference:+.1f} [{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}]"


def _mde(c: Comparison) -> str:
    return "-" if c.mde is None else f"{100 * c.mde:.1f}"


def summary_line(c: Comparison) -> str:
    """One comparison in words: what a JUnit failure or a reviewer reads."""
    stored = (f"; {100 * c.difference_as_stored:+.1f} on the stored verdicts"
              if c.difference_as_stored is not None else "")
    return (f"{c.task} {c.metric}: {c.verdict}: Δ {_delta(c)} pts over {c.num_problems} problems ({c.test}, "
            f"p {_p(c.p_value)}, p-Holm {_p(c.p_holm)}), margin {100 * c.margin:.1f} pts, minimum detectable "
            f"effect {_mde(c)} pts{stored}")


def _rows(report: Report) -> list[list[str]]:
    rows = []
    for c in report.comparisons:
        delta = _delta(c) + (f" (stored: {100 * c.difference_as_stored:+.1f})" if c.difference_as_stored is not None
                             else "")
        rows.append([c.task, c.metric, str(c.num_problems), f"{100 * c.baseline:.1f}", f"{100 * c.candidate:.1f}",
                     delta, _p(c.p_value), _p(c.p_holm), c.test, f"{100 * c.margin:.1f}", _mde(c), c.verdict])
    return rows


def _notes(report: Report) -> list[str]:
    notes = []
    for drift in report.drift:
        if not drift.checked:
            notes.append(f"grader drift on {drift.task} ({drift.side}): {drift.note}")
            continue
        share = drift.changed / drift.total if drift.total else 0.0
        notes.append(f"grader drift on {drift.task}: {drift.changed} of {drift.total} {drift.side} verdicts change when "
                     f"graded again with the candidate's grader ({100 * share:.2f}%)"
                     + "".join(f"; {part}" for part in (drift.note,) if part))
    comparability = report.comparability
    notes += [f"allowed difference (--allow-diff): {text}" for text in comparability.allowed]
    notes += [f"does not enter (both runs graded again here): {text}" for text in comparability.regraded]
    notes += [f"--allow-diff {name} matched no difference" for name in comparability.unused_allows]
    if comparability.not_gated:
        shown = "; ".join(comparability.not_gated[:5])
        more = f" (and {len(comparability.not_gated) - 5} more)" if len(comparability.not_gated) > 5 else ""
        notes.append(f"differences that do not gate (the model under test, how it is served, the seed): {shown}{more}")
    if any(c.mde is None for c in report.comparisons):
        notes.append("MDE '-': the two runs agree on every problem, so their differences have no spread to measure")
    return notes


def _explanation(report: Report) -> str:
    mode = ("non-inferiority: pass only when the interval's lower end is above -margin"
            if report.config.mode == "noninferiority" else
            "regression = Holm p < alpha and Δ < -margin; pass = interval's lower end >= -margin or Δ >= 0; "
            "otherwise inconclusive")
    return (f"alpha {report.config.alpha}, {mode}. MDE: the drop this run could detect with power 0.8 "
            "(statistics.md).")


def console_text(report: Report, exit_code: int) -> str:
    lines = [f"baseline:  {report.config.baseline} ({report.baseline_model})",
             f"candidate: {report.config.candidate} ({report.candidate_model})", "",
             format_plain_table(HEADER, _rows(report)), ""]
    lines += [f"- {note}" for note in _notes(report)]
    lines += [_explanation(report), f"verdict: {report.overall.upper()} (exit {exit_code})"]
    return "\n".join(lines)


def markdown_text(report: Report, exit_code: int) -> str:
    lines = [f"## harness regress: {report.overall} (exit {exit_code})", "",
             f"Baseline `{report.config.baseline}` ({report.baseline_model}); candidate `{report.config.candidate}` "
             f"({report.candidate_model}).", "", markdown_table(HEADER, _rows(report)), ""]
    lines += [f"- {note}" for note in _notes(report)]
    lines += ["", _explanation(report), ""]
    return "\n".join(lines)


def write_junit(report: Report, path: Path, fail_on_inconclusive: bool = False) -> Path:
    """A testsuite per task, a testcase per metric; a regression is a failure, an inconclusive result a skip
    (a failure with --fail-on-inconclusive), each carrying Δ, its interval, p and p-Holm."""
    suites = ET.Element("testsuites", name="harness regress")
    for task in dict.fromkeys(c.task for c in report.comparisons):
        cases = [c for c in report.comparisons if c.task == task]
        suite = ET.SubElement(suites, "testsuite", name=task, tests=str(len(cases)))
        failures = skipped = 0
        for c in cases:
            case = ET.SubElement(suite, "testcase", classname=f"regress.{task}", name=c.metric)
            message = summary_line(c)
            if c.verdict in ("regression", "not non-inferior") or (c.verdict == "inconclusive" and fail_on_inconclusive):
                ET.SubElement(case, "failure", type=c.verdict, message=message).text = message
                failures += 1
            elif c.verdict == "inconclusive":
                ET.SubElement(case, "skipped", message=message)
                skipped += 1
            else:
                ET.SubElement(case, "system-out").text = message
        suite.set("failures", str(failures))
        suite.set("skipped", str(skipped))
    ET.indent(suites)
    write_text_atomic(Path(path), "<?xml version='1.0' encoding='utf-8'?>\n" + ET.tostring(suites, encoding="unicode")
                      + "\n")
    return Path(path)


def write_json(report: Report, path: Path, exit_code: int) -> Path:
    write_json_atomic(Path(path), {**report.to_dict(), "exit_code": exit_code})
    return Path(path)


def append_step_summary(report: Report, path: Path, exit_code: int) -> None:
    """Append (never overwrite): other steps of the job write to the same summary file."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown_text(report, exit_code) + "\n")

