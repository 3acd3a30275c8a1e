"""The variant-math registry (trainers/algos/variants.py): one record per variant, the layout seam that keeps it
loadable without the built-in trainer, and the aggregation rule that lets engines keep dropped rows."""

import subprocess
import sys

import pytest
import torch

from trainers import algos
from trainers.algos.variants import MATH, missing_input, registry_shaped
from trainers.builtin.base import VARIANTS


def test_every_variant_has_a_math_record_and_only_variants_do():
    assert sorted(MATH.names()) == sorted(VARIANTS.names())


def test_registry_shaped_variants_are_the_ones_without_unconditional_hooks():
    shaped = {v for v in MATH.names() if registry_shaped(v)}
    assert shaped == {"grpo", "dr-grpo", "dapo", "dgpo", "ngrpo", "gdpo", "a-grae", "grpo-lead", "reflection",
                      "unlikeliness"}
    dapo = MATH.get("dapo")
    assert dapo.hooks_needed(VARIANTS.get("dapo").Config()) == dapo.engine_hooks  # dynamic sampling on by default
    assert MATH.get("dapo").hooks_needed(VARIANTS.get("dapo").Config(dynamic_sampling=False)) == {}
    assert "rollout" in MATH.get("n-grpo").engine_hooks and "pivot rollout" in MATH.get("mc-grpo").engine_hooks


@pytest.mark.parametrize("variant, supplied, missing", [
    ("grpo", (), None),
    ("dr-grpo", (), "truncated"),
    ("dapo", ("truncated",), "max_length"),
    ("unlikeliness", ("lengths", "truncated", "answered", "texts", "aux", "step", "max_length"), "likelihood"),
    ("reflection", ("answered",), "texts"),
])
def test_missing_input_names_the_first_field_a_variant_reads_that_an_engine_lacks(variant, supplied, missing):
    assert missing_input(variant, VARIANTS.get(variant).Config(), supplied) == missing


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
                                         "seq-mean-token-sum-norm"])
def test_a_row_with_its_mask_zeroed_weighs_nothing_in_any_aggregation(aggregation):
    """Engines keep a dropped group's rows in their fixed-shape batches with the mask zeroed; every aggregation
    then gives the loss of the batch without them (as verl's agg_loss)."""
    g = torch.Generator().manual_seed(0)
    loss = torch.randn(6, 5, generator=g)
    mask = (torch.rand(6, 5, generator=g) > 0.3).float()
    mask[:, 0] = 1
    aggregate = algos.AGGREGATIONS.get(aggregation)
    kept = aggregate(loss[:4], mask[:4], max_length=5)
    zeroed = mask.clone()
    zeroed[4:] = 0
    assert aggregate(loss, zeroed, max_length=5).item() == pytest.approx(kept.item(), rel=1e-6)


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_harness_library_does_not_import_the_trainers_at_module_level():
    loaded = run_python("import sys, harness.cli, harness.compare, harness.evaluate, harness.leaderboard, "
                        "harness.regress; print(sorted(m for m in sys.modules if m.split('.')[0] == 'trainers'))")
    assert loaded == "[]"


def test_the_variant_math_loads_without_the_builtin_trainer_or_transformers():
    """What an engine's workers (verl's) import: torch and the registry, nothing of the built-in trainer."""
    loaded = run_python("import sys, trainers.algos.variants as v; v.MATH.get('dgpo'); "
                        "print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'datasets'}),"
                        " 'trainers.builtin' in sys.modules)")
    assert loaded == "[] False"
