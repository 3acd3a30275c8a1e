"""Helpers shared by the trainer tests (test_trainers.py and test_variant_*.py): a tiny trainer on the untrained
sandbox model, grading pools, the training log, and rollout batches with no model behind them.

A plain module next to the tests: pytest's default (prepend) import mode puts tests/ on sys.path, so a test file
imports it with `from trainer_helpers import make_trainer`."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.budget import Budget
from harness.overrides import apply_overrides
from harness.prompts import TEMPLATES
from trainers.builtin.rollout import RolloutBatch
from trainers.protocol.runlog import TRAIN_LOG

# What makes a step take a second: 2 prompts x G=4 = 8 rollouts of at most 12 tokens, one epoch over them, a
# checkpoint every step.
TINY_OVERRIDES = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 12, "checkpoint_every": 1,
                  "lr": 1e-3, "warmup_steps": 1, "ppo_epochs": 1}

# Pays for exactly one TINY step: its 2 groups make 2 minibatch updates (the shared schedule's 4 minibatches, at
# most one group each).
ONE_STEP = Budget(steps=2)


class AlternatingPool:
    """Grades every third request right, so that groups carry signal even from a random-weight model."""

    def grade(self, requests):
        return [i % 3 == 0 for i in range(len(requests))]


class ConstantPool:
    """Gives every request the same verdict: all right or all wrong."""

    def __init__(self, verdict):
        self.verdict = verdict

    def grade(self, requests):
        return [self.verdict] * len(requests)


def make_trainer(cls, model_dir, run_dir, problems, budget, pool=None, template="plain", **overrides):
    """A `cls` trainer on a fresh copy of the model in `model_dir`, with TINY_OVERRIDES under `overrides`."""
    config = apply_overrides(cls.Config(), {**TINY_OVERRIDES, **overrides})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return cls(config, model=model, tokenizer=tokenizer, problems=problems, template=TEMPLATES.get(template),
               answer_format="boxed", grader="math", max_new_tokens=100, budget=budget, seed=3, run_dir=run_dir,
               pool=pool or AlternatingPool())


def killed_after(cls, step=2):
    """`cls`, dying (as a SIGKILL would, without any clean-up) when it reaches `step` steps."""

    class KilledAfter(cls):
        def collect(self):
            if self.step == step:
                raise KeyboardInterrupt("killed")
            return super().collect()

    return KilledAfter


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / TRAIN_LOG).read_text().splitlines()]


def without_time(log):
    """The log records without their wall-clock time, which no two runs share."""
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in log]


def approx(values, abs=1e-4):
    """pytest.approx to the spec's four printed decimals unless told otherwise."""
    return pytest.approx(values, abs=abs)


def blank_batch(response_mask) -> RolloutBatch:
    """Rollouts with no model behind them: one-token prompts, all-ones responses under `response_mask`, zero
    log-probs, nothing truncated."""
    rows = response_mask.shape[0]
    return RolloutBatch(torch.ones(rows, 1, dtype=torch.long), torch.ones(rows, 1, dtype=torch.long),
                        torch.ones_like(response_mask), response_mask, torch.zeros(response_mask.shape),
                        torch.zeros(rows, dtype=torch.bool))


def train_and_check(trainer, run_dir):
    """Train `trainer` to its budget, then check what every run must leave: a checkpoint, a ledger file equal to
    the in-memory ledger, one log record with a loss per step, and weights that moved. Returns (ledger, log)
    for the variant's own checks."""
    before = [p.detach().clone() for p in trainer.model.parameters()]
    ledger = trainer.train()
    assert (run_dir / "checkpoint.pt").is_file()
    consumed = json.loads((run_dir / "ledger.json").read_text())["consumed"]
    assert {k: consumed[k] for k in ("steps", "prompts", "rollouts", "tokens")} == \
        {k: getattr(ledger, k) for k in ("steps", "prompts", "rollouts", "tokens")}
    log = read_log(run_dir)
    assert [r["step"] for r in log] == list(range(1, trainer.step + 1)) and all(r["loss"] is not None for r in log)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    return ledger, log


def bias_towards_eos(model, eos_id: int, bias: float) -> None:
    """Give `model` an output head that favours EOS by `bias`, so that sampled rows end at many lengths."""
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[eos_id] = bias
    model.lm_head = head
