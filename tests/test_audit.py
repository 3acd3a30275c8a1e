"""`harness audit`: a run graded a second way, the disagreements listed, the run untouched."""

from __future__ import annotations

import json

from harness.cli import main
from harness.task import TASKS


def test_audit_lists_the_samples_another_extraction_grades_differently(tmp_path, capsys):
    """Unboxed outputs graded strictly are all wrong; the lenient audit names each one it would grade right."""
    problems = TASKS.get("sandbox").load(None).problems[:6]
    lines = [{"problem_id": p.id, "completion": f"so the answer is {p.golds[0]}." if i % 2 else
              f"\\boxed{{{p.golds[0]}}}"} for i, p in enumerate(problems)]
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["eval", "--tasks", "sandbox", "--limit", "6", "--completions", str(path), "--extraction", "strict",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0
    before = (tmp_path / "run" / "samples.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "run"), "--extraction", "lenient"]) == 0
    out = capsys.readouterr().out
    assert "3 of 6 verdicts differ from the stored ones (3 wrong -> right, 0 right -> wrong)" in out
    assert all(p.id in out for i, p in enumerate(problems) if i % 2)
    assert (tmp_path / "run" / "samples.jsonl").read_bytes() == before  # an audit changes nothing
    assert main(["audit", str(tmp_path / "run")]) == 2  # nothing to compare with
