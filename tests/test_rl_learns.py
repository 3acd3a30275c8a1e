"""The default compare as a new user runs it: GRPO beats the warm start it started from, and the numbers are the
committed leaderboard's, to the last printed digit (slow)."""

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.leaderboard import paired_tests

COMMITTED = Path(__file__).resolve().parents[1] / "leaderboards" / "sandbox.md"


def _rows(markdown: str) -> dict[str, list[str]]:
    """Leaderboard table rows by label: every cell as printed."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| band")]
    return {cells[1]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


@pytest.mark.slow
def test_grpo_beats_the_warm_start_and_reproduces_the_committed_leaderboard(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # Only grpo of the default three: each row trains and evaluates on its own, so its cells and the warm
    # start's are those of the default compare (`harness compare`), which wrote leaderboards/sandbox.md.
    assert main(["compare", "--variants", "grpo"]) == 0
    out = capsys.readouterr().out
    assert "leaderboard: leaderboards/sandbox.md" in out

    (run,) = (tmp_path / "runs" / "compare").iterdir()
    ledger = json.loads((run / "grpo-seed0" / "train" / "ledger.json").read_text())
    protocol = json.loads((run / "protocol.json").read_text())
    assert ledger["consumed"]["rollouts"] == protocol["budget"]["rollouts"]  # the whole default budget, no more
    assert ledger["consumed"]["update_tokens"] <= protocol["budget"]["update_tokens"]
    test = paired_tests([run / "warm-start", run / "grpo-seed0"], baseline="warm start")["grpo"]
    assert test.difference > 0 and test.p_value < 0.05, test

    # Same seed, same kind of machine, same versions (constraints.txt): the committed page's numbers exactly,
    # every column from the label to the mechanism probes (the rank band and the Holm correction depend on the
    # rows beside it).
    mine, committed = _rows((tmp_path / "leaderboards" / "sandbox.md").read_text()), _rows(COMMITTED.read_text())
    for label in ("grpo", "warm start"):
        assert mine[label][1:13] == committed[label][1:13], label

    # The regression gate end to end on this real before/after pair: the trained row passes against its
    # starting point, the starting point fails against the trained row, and the trained model re-sampled under
    # another eval seed (a null pair: same model, new noise) is not called a regression.
    trained, start = str(run / "grpo-seed0"), str(run / "warm-start")
    assert main(["regress", "--baseline", start, "--candidate", trained]) == 0
    assert main(["regress", "--baseline", trained, "--candidate", start, "--junit", "gate.xml"]) == 1
    assert 'failure type="regression"' in (tmp_path / "gate.xml").read_text()
    assert main(["eval", "--model", str(run / "grpo-seed0" / "train" / "final"), "--tasks", "sandbox", "--n", "8",
                 "--seed", "1", "--out", "resampled", "--quiet"]) == 0
    assert main(["regress", "--baseline", trained, "--candidate", "resampled", "--metrics", "pass@1,maj@8",
                 "--json", "null.json"]) == 0
    null = json.loads((tmp_path / "null.json").read_text())
    assert null["verdict"] != "regression" and null["grader_drift"][0]["changed"] == 0
