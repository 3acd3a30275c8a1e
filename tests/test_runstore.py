import json

import pytest

from harness.card import card_differences, card_hash
from harness.runstore import RunDir, RunMismatchError


def test_card_hash_ignores_provenance_but_not_settings():
    card = {"seed": 0, "tasks": {"a": {"n": 4}}, "provenance": {"created_at": "today"}}
    moved = {**card, "provenance": {"created_at": "tomorrow"}, "command": "harness eval"}
    assert card_hash(card) == card_hash(moved)
    changed = {**card, "tasks": {"a": {"n": 8}}}
    assert card_hash(card) != card_hash(changed)
    assert card_differences(card, changed) == ["tasks.a.n: 4 -> 8"]


def test_resume_requires_the_same_card(tmp_path):
    card = {"seed": 0}
    RunDir.open(tmp_path / "run", card)
    RunDir.open(tmp_path / "run", card)  # same card: resumes
    with pytest.raises(RunMismatchError, match="seed: 0 -> 1"):
        RunDir.open(tmp_path / "run", {"seed": 1})


def test_torn_last_line_is_dropped_and_truncated(tmp_path):
    run = RunDir.open(tmp_path / "run", {"seed": 0})
    run.append_samples([{"i": 0}, {"i": 1}])
    with open(run.samples_path, "a") as f:
        f.write('{"i": 2, "comp')  # a write cut short by a kill
    assert run.read_samples() == [{"i": 0}, {"i": 1}]
    run.append_samples([{"i": 2}])
    assert [json.loads(line)["i"] for line in run.samples_path.read_text().splitlines()] == [0, 1, 2]


def test_damaged_middle_line_names_file_and_line(tmp_path):
    run = RunDir.open(tmp_path / "run", {"seed": 0})
    run.samples_path.write_text('{"i": 0}\nnot json\n{"i": 2}\n')
    with pytest.raises(ValueError, match=r"samples.jsonl:2"):
        run.read_samples()
