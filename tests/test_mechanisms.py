"""A mechanism that never acts is a bug, not a result: every variant, trained briefly on the sandbox under the
default (shared) protocol, shows with its own probes that its defining mechanism acted (slow: it needs the
warm start and a few real training steps per variant)."""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.budget import Budget
from harness.grading_pool import GradingPool
from harness.models import resolve_model
from harness.overrides import apply_overrides
from harness.prompts import TEMPLATES
from harness.task import TASKS
from trainers.builtin.base import VARIANTS
from trainers.protocol.runlog import TRAIN_LOG

# The sha256 of each variant's train log below (wall-clock fields dropped), pinned so that moving a variant's code
# (issue 21) provably moves no number: every reward, loss, probe and FLOP of four steps. Regenerate after a
# deliberate change with HARNESS_REGEN_GOLDEN=1 and say why in the commit.
TRAIN_LOG_DIGESTS = Path(__file__).parent / "golden" / "train_log_digests.json"
TIMING = ("wall_s", "weight_push_s")


def train_log_digest(run_dir: Path) -> str:
    records = [json.loads(line) for line in (run_dir / TRAIN_LOG).read_text().splitlines()]
    stable = [{k: v for k, v in record.items() if k not in TIMING} for record in records]
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()

# Few questions, each revisited every step, so that what needs history has some (GDRO's bins are played from
# the second visit and Rollout-GDRO's allocation can move from the third; R3 replays and reflects on what it
# saw before); everything else, the update schedule included (2 epochs x 4 minibatches), is the default but the
# warm-up: at full learning rate from the first step the policy moves far enough between updates for the clip
# to bind within a few steps (in a full default run GRPO's clip cuts ~1.4e-3 of tokens).
POOL, STEPS = 8, 4
OVERRIDES = {"prompts_per_step": 8, "checkpoint_every": 100, "warmup_steps": 1}
# DAPO's overlong punishment acts in the last 20% of the generation limit; sandbox answers (~50 tokens) reach
# the default limit's (128) only when they derail, which a full run sees (0.16% truncated) and five steps
# rarely do, so here the limit sits where ordinary answers end.
VARIANT_OVERRIDES = {"dapo": {"max_new_tokens": 56}}


@pytest.fixture(scope="module")
def sandbox():
    model = resolve_model("sandbox")
    task = TASKS.get("sandbox-train")
    return model, task, task.load(None).problems[:POOL]


@pytest.fixture(scope="module")
def pool():
    with GradingPool() as grading:
        yield grading


def _train_briefly(variant, sandbox, pool, run_dir, overrides=None, steps=STEPS):
    model, task, problems = sandbox
    trainer_cls = VARIANTS.get(variant)
    config = apply_overrides(trainer_cls.Config(), {**OVERRIDES, **VARIANT_OVERRIDES.get(variant, {}),
                                                    **(overrides or {})})
    policy = AutoModelForCausalLM.from_pretrained(model.path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    trainer = trainer_cls(config, model=policy, tokenizer=tokenizer, problems=problems,
                          template=TEMPLATES.get(task.template), answer_format=task.answer_format, grader=task.grader,
                          max_new_tokens=task.max_new_tokens, budget=Budget(steps=steps * config.ppo_epochs * config.minibatches),
                          seed=0, run_dir=run_dir, pool=pool, aux_rewards=task.aux_rewards)
    trainer.train()
    return [json.loads(line)["probes"] for line in (run_dir / TRAIN_LOG).read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS.names())
def test_each_variant_mechanism_acts_on_the_sandbox(variant, sandbox, pool, tmp_path):
    steps = _train_briefly(variant, sandbox, pool, tmp_path)
    trainer_cls = VARIANTS.get(variant)
    primary, _ = trainer_cls.primary()
    totals = {name: sum(step.get(name, 0.0) for step in steps) for name in [primary, *trainer_cls.mechanism]}
    inert = [name for name, total in totals.items() if not total]
    assert not inert, f"{variant}: probes {inert} stayed 0 over {len(steps)} steps ({totals})"
    if variant == "grpo":  # the reference itself: its update is GRPO's to the last bit
        assert all(step["update_change"] == 0 for step in steps)
    digest = train_log_digest(tmp_path)
    if os.environ.get("HARNESS_REGEN_GOLDEN"):
        golden = json.loads(TRAIN_LOG_DIGESTS.read_text()) if TRAIN_LOG_DIGESTS.is_file() else {}
        TRAIN_LOG_DIGESTS.write_text(json.dumps({**golden, variant: digest}, indent=1, sort_keys=True) + "\n")
    assert digest == json.loads(TRAIN_LOG_DIGESTS.read_text()).get(variant), (
        f"{variant}: four sandbox steps no longer give the same train log (a number moved)")


# One step: its later minibatches already train on moved weights (ratios off 1), and the probe must read 0 there.
OFF_STEPS = 1


@pytest.mark.slow
@pytest.mark.parametrize("variant", [name for name in VARIANTS.names()
                                     if name != "grpo" and VARIANTS.get(name).Config.MECHANISM_OFF is not None])
def test_primary_probe_reads_zero_with_the_mechanism_switched_off(variant, sandbox, pool, tmp_path):
    """The variant's `MECHANISM_OFF` settings leave GRPO's update, and its primary probe says so (up to float
    rounding: a rescaled loss is the same update)."""
    trainer_cls = VARIANTS.get(variant)
    primary, _ = trainer_cls.primary()
    steps = _train_briefly(variant, sandbox, pool, tmp_path, overrides=trainer_cls.Config.MECHANISM_OFF,
                           steps=OFF_STEPS)
    assert len(steps) == OFF_STEPS
    assert all(step[primary] < 1e-6 for step in steps), [step[primary] for step in steps]


def test_variants_without_an_off_switch_are_those_that_replace_grpo():
    """Only an objective or a sampler that replaces GRPO's has no GRPO-equivalent setting; any other variant
    declares one (a new variant cannot skip it silently)."""
    assert {name for name in VARIANTS.names() if VARIANTS.get(name).Config.MECHANISM_OFF is None} == {"disco",
                                                                                                      "mc-grpo"}
