"""Every variant's card, pinned: the config it trains with (shared and paper protocol), its probes, its primary
probe and threshold, and the hash that names its run directories. Moving a variant's code (issue 21: one record
per variant) must change none of them: a dropped default, a misspelt field or a reordered probe list would change
the numbers or stop old run directories from resuming.

Regenerate after a deliberate change with `HARNESS_REGEN_GOLDEN=1 pytest tests/test_variant_cards.py` and say
why in the commit."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.card import card_hash
from harness.compare import card_config, mechanism_card

GOLDEN = Path(__file__).parent / "golden" / "variant_cards.json"


def cards() -> dict[str, dict]:
    from harness.overrides import paper_schedule
    from trainers.builtin.base import VARIANTS

    out = {}
    for name in VARIANTS.names():
        trainer = VARIANTS.get(name)
        shared = card_config(trainer.Config(), trainer)
        paper = card_config(paper_schedule(trainer.Config()), trainer)
        mechanism = mechanism_card(trainer)
        out[name] = {"shared": shared, "paper": paper, "mechanism": mechanism,
                     "hash": card_hash({"config": shared, "mechanism": mechanism})}
    return out


def test_variant_cards_unchanged():
    now = json.loads(json.dumps(cards()))  # tuples as lists, as the file holds them
    if os.environ.get("HARNESS_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=False) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(now) == sorted(golden), "variants added or removed: regenerate the golden cards"
    for name in golden:
        for part in ("shared", "paper", "mechanism"):
            assert now[name][part] == golden[name][part], f"{name}: its {part} card changed"
            assert list(now[name][part]) == list(golden[name][part]), f"{name}: its {part} card's order changed"
        assert now[name]["hash"] == golden[name]["hash"], name
