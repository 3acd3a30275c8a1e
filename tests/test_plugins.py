"""Third-party variants are first-class: the example plugin (examples/variant-plugin) registers through the
documented entry point and trains through `harness compare`; a broken plugin is listed with its reason and never
breaks the listing or use of the others.

The entry points are real (`importlib.metadata` finds a `.dist-info` folder on sys.path), so discovery runs as it
does for an installed package, without installing anything."""

import json
import sys
from pathlib import Path

import pytest

from harness.cli import main
from trainers.algos.variants import MATH
from trainers.builtin.base import VARIANTS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "variant-plugin"


def install(tmp_path, monkeypatch, entry_points: dict[str, str]) -> None:
    """Make `entry_points` (name -> 'module:object') visible in the `harness.trainers` group, and let the variant
    registry read them afresh; the registries are restored after the test."""
    dist = tmp_path / "site" / "harness_test_plugins-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-test-plugins\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(
        "[harness.trainers]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items()))
    (tmp_path / "site" / "broken_variant.py").write_text("raise ImportError('this plugin cannot be imported')\n")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    VARIANTS.names()  # the built-ins first, as they always are
    monkeypatch.setattr(VARIANTS, "_items", dict(VARIANTS._items))
    monkeypatch.setattr(VARIANTS, "broken", {})
    monkeypatch.setattr(VARIANTS, "_plugins_loaded", False)
    monkeypatch.setattr(MATH, "_items", dict(MATH._items))
    monkeypatch.delitem(sys.modules, "harness_example_variant", raising=False)


def test_the_example_plugin_is_listed_and_trains_through_compare(untrained_model_dir, tmp_path, monkeypatch, capsys):
    install(tmp_path, monkeypatch, {"scaled-grpo": "harness_example_variant:ScaledGRPOTrainer"})
    assert main(["list", "variants"]) == 0
    listing = capsys.readouterr().out
    assert "scaled-grpo  [example]" in listing and "advantage_scale = 0.5  # Factor on GRPO's advantages" in listing
    out = tmp_path / "compare"
    assert main(["compare", "--model", str(untrained_model_dir), "--variants", "grpo,scaled-grpo",
                 "--budget", "steps=4", "--set", "all.prompts_per_step=2", "--set", "all.group_size=4",
                 "--set", "all.max_new_tokens=12", "--n", "2", "--k", "1", "--limit", "4", "--quiet",
                 "--out", str(out / "runs"), "--leaderboard-dir", str(out / "boards"), "--name", "plugin"]) == 0
    log = [json.loads(line) for line in
           (out / "runs" / "scaled-grpo-seed0" / "train" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and "advantage_change" in log[0]["probes"]
    assert "| scaled-grpo |" in (out / "boards" / "plugin.md").read_text()


def test_a_broken_plugin_is_listed_with_its_reason_and_breaks_nothing(tmp_path, monkeypatch, capsys):
    install(tmp_path, monkeypatch, {"scaled-grpo": "harness_example_variant:ScaledGRPOTrainer",
                                    "unimportable": "broken_variant:Trainer",
                                    "mathless": "harness_example_variant:ScaledGRPOConfig"})
    assert main(["list", "variants"]) == 0
    listing = capsys.readouterr().out
    assert "unimportable  BROKEN: ImportError: this plugin cannot be imported (entry point broken_variant:Trainer)" \
        in listing
    assert "mathless  BROKEN: TypeError" in listing
    assert "scaled-grpo  [example]" in listing and "grpo  [code+paper]" in listing  # the others are all there
    assert "unimportable" not in VARIANTS.names()
    with pytest.raises(Exception, match="installed but broken"):
        VARIANTS.get("unimportable")
    assert main(["compare", "--variants", "grpo,unimportable", "--quiet"]) == 2
    assert "installed but broken" in capsys.readouterr().err


def test_a_plugin_is_checked_for_what_it_must_have():
    """The check a plugin passes before it is listed: documented fields, a primary probe it logs, its own name."""
    from dataclasses import dataclass

    from trainers.algos.configs import GRPOConfig
    from trainers.builtin.base import check_variant
    from trainers.builtin.grpo import GRPOTrainer
    from trainers.protocol.config import setting

    @dataclass(frozen=True)
    class Undocumented(GRPOConfig):
        knob: float = 1.0

    @dataclass(frozen=True)
    class Documented(GRPOConfig):
        knob: float = setting(1.0, "a knob")

    def plugin(**attributes):
        return type("Plugin", (GRPOTrainer,), {"name": "p", "Config": Documented, **attributes})

    monkey_math = dict(MATH._items)
    try:
        check_variant("p", plugin(variant_math=MATH.get("grpo")))  # complete: passes
        for broken, message in [(plugin(Config=Undocumented, variant_math=MATH.get("grpo")), "knob"),
                                (plugin(primary_probe="nowhere", variant_math=MATH.get("grpo")), "nowhere"),
                                (plugin(name="q", variant_math=MATH.get("grpo")), "entry point's name")]:
            with pytest.raises((TypeError, ValueError), match=message):
                check_variant("p", broken)
        with pytest.raises(ValueError, match="no variant math"):
            check_variant("unregistered", plugin(name="unregistered"))
    finally:
        MATH._items.clear()
        MATH._items.update(monkey_math)
