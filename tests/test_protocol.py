"""The fair protocol: one update schedule for every variant (the paper's only on request), a ledger that charges
every unit of compute where it is spent, mechanism probes, and config overrides read by the fields' real types."""

import dataclasses
import importlib.util
import json
import sys

import pytest
from trainer_helpers import ONE_STEP, make_trainer, read_log

from harness.budget import Budget, parameter_count
from harness.compare import CompareConfig, variant_configs
from harness.overrides import apply_overrides
from trainers.builtin.base import VARIANTS, GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.builtin.prefix_grouper import forward_tokens


def test_every_variant_shares_the_schedule_unless_the_paper_protocol_is_asked_for():
    shared = variant_configs(CompareConfig(variants=tuple(VARIANTS.names())))
    assert {(c.ppo_epochs, c.minibatches) for c in shared.values()} == {(GRPOConfig.ppo_epochs, GRPOConfig.minibatches)}
    assert GRPOConfig.ppo_epochs * GRPOConfig.minibatches > 1  # so the ratio leaves 1 and the clips can bind
    paper = variant_configs(CompareConfig(variants=("grpo", "unlikeliness", "disco", "mc-grpo"), protocol="paper"))
    assert [(c.ppo_epochs, c.minibatches) for c in paper.values()] == [(1, 1), (2, 1), (1, 4), (2, 1)]
    # A user's own setting still wins over either schedule.
    mine = variant_configs(CompareConfig(variants=("unlikeliness",), protocol="paper",
                                         overrides={"all": {"ppo_epochs": "3"}}))
    assert mine["unlikeliness"].ppo_epochs == 3
    with pytest.raises(ValueError, match="--protocol 'mine' is not one of shared, paper"):
        variant_configs(CompareConfig(variants=("grpo",), protocol="mine"))


def test_warm_up_counts_rollout_steps_not_optimizer_updates(untrained_model_dir, tmp_path, train_problems):
    rates = []
    for minibatches in (1, 2):
        trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path / str(minibatches), train_problems,
                               Budget(prompts=4), minibatches=minibatches, warmup_steps=4, lr=1e-3)
        trainer.train()
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    # Two steps into a 4-step warm-up, whatever the number of updates those steps made.
    assert rates == [pytest.approx(1e-3 * 2 / 4)] * 2


def test_several_minibatches_move_the_ratio_and_the_clip_probes_see_it(untrained_model_dir, tmp_path,
                                                                       train_problems):
    # A large learning rate so that two updates move the policy well past the clip range.
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP, lr=0.05,
                           warmup_steps=1)
    trainer.train()
    probes = read_log(tmp_path)[0]["probes"]
    assert probes["clipped"] > 0
    assert probes["clipped"] == pytest.approx(probes["clip_low"] + probes["clip_high"] + probes["dual_clip"])
    # One update per batch: the ratio is exactly 1, nothing is ever clipped.
    single = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path / "one", train_problems, Budget(steps=1),
                          lr=0.05, warmup_steps=1, minibatches=1)
    single.train()
    assert read_log(tmp_path / "one")[0]["probes"] == {"clip_low": 0.0, "clip_high": 0.0, "dual_clip": 0.0,
                                                       "clipped": 0.0, "update_change": 0.0}


def test_the_ledger_charges_generation_at_the_rollout_and_every_training_forward(untrained_model_dir, tmp_path,
                                                                                train_problems):
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP)
    seen = []
    original = trainer.update

    def update(groups):
        seen.append(groups.batch)
        return original(groups)

    trainer.update = update
    ledger = trainer.train()
    batch = seen[0]
    tokens = forward_tokens(batch, prefix_grouped=False)
    assert ledger.prompt_tokens == int(batch.prompt_mask.sum()) and ledger.tokens == int(batch.lengths.sum())
    # The old-policy forward once, no grad; each minibatch forward and backward. The reference forward (track_kl)
    # only draws the KL curve when kl_beta is 0: a diagnostic, charged apart, which no limit reads.
    assert ledger.update_tokens == tokens + 2 * tokens
    assert ledger.diagnostic_tokens == tokens
    # FLOPs from the parameter count N: 2N a token through a forward, 4N through a backward; 2N per prompt and
    # generated token of generation.
    n = parameter_count(trainer.model)
    assert ledger.generation_flops == 2 * n * (ledger.prompt_tokens + ledger.tokens)
    assert ledger.update_flops == 2 * n * tokens + 6 * n * tokens
    assert ledger.diagnostic_flops == 2 * n * tokens
    assert ledger.flops == ledger.generation_flops + ledger.update_flops
    assert ledger.to_dict()["flops"] == ledger.flops
    # A hook that calls the rollout itself is charged too: no generation is free.
    before = dataclasses.replace(trainer.ledger)
    trainer.rollout(["1+1=?"] * 3, seed=0)
    assert trainer.ledger.rollouts == before.rollouts + 3 and trainer.ledger.prompt_tokens > before.prompt_tokens


def test_a_kl_in_the_loss_is_training_compute(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP, kl_beta=0.01)
    ledger = trainer.train()
    n = parameter_count(trainer.model)
    assert ledger.diagnostic_tokens == 0 and ledger.diagnostic_flops == 0
    # reference and old policy once each, the minibatches forward and backward
    assert ledger.update_flops == 2 * n * ledger.update_tokens + 2 * n * (ledger.update_tokens // 4)


def test_a_flops_limit_stops_every_run_within_one_step_of_it(untrained_model_dir, tmp_path, train_problems):
    first = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path / "a", train_problems, ONE_STEP)
    per_step = first.train().flops
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path / "b", train_problems,
                           Budget(flops=int(2.5 * per_step)))
    ledger = trainer.train()
    # Generation is asked at its worst case and updates at the last step's: the run stops short, within one step.
    assert trainer.stopped_by == "flops" and ledger.flops <= 2.5 * per_step + 0.5 * per_step
    assert ledger.flops > 2.5 * per_step - 1.5 * per_step
    assert json.loads((tmp_path / "b" / "ledger.json").read_text())["consumed"]["flops"] == ledger.flops


def test_an_update_token_limit_stops_the_run(untrained_model_dir, tmp_path, train_problems):
    first = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path / "a", train_problems, ONE_STEP)
    per_step = first.train().update_tokens
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path / "b", train_problems,
                           Budget(update_tokens=int(2.5 * per_step)))
    ledger = trainer.train()
    # The step's cost is known once spent, so the limit is asked with the previous step's: at most one over.
    assert trainer.stopped_by == "update_tokens" and 2 <= trainer.step <= 3
    assert ledger.update_tokens <= 2.5 * per_step + 1.5 * per_step


def test_prefix_grouper_charges_each_group_prompt_once(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP)
    batch = trainer.rollout(["12+3=?"] * 4 + ["7+80=?"] * 4, seed=1)
    responses = int(batch.response_mask.sum())
    assert forward_tokens(batch, prefix_grouped=False) == 8 * 7 + responses  # <s> + 6 characters per prompt
    assert forward_tokens(batch, prefix_grouped=True) == 2 * 7 + responses


def test_every_variant_declares_its_mechanism_probes():
    for name, trainer_cls in VARIANTS.items():
        assert trainer_cls.mechanism, f"{name} declares no mechanism probe"
        assert all(isinstance(what, str) and what for what in trainer_cls.mechanism.values()), name


PLUGIN = '''
{future}
from dataclasses import dataclass

from trainers.builtin.base import GRPOConfig


@dataclass(frozen=True)
class PluginConfig(GRPOConfig):
    flag: bool = True
    scale: float = 1.0
    cap: int | None = 3
'''


@pytest.mark.parametrize("future", ["from __future__ import annotations", ""])
def test_overrides_read_a_plugin_config_by_its_real_types(tmp_path, future):
    path = tmp_path / "plugin_config.py"
    path.write_text(PLUGIN.format(future=future))
    spec = importlib.util.spec_from_file_location(f"plugin_config_{bool(future)}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    config = apply_overrides(module.PluginConfig(), {"flag": "false", "scale": "0.5", "cap": "none", "lr": "2e-5"})
    assert (config.flag, config.scale, config.cap, config.lr) == (False, 0.5, None, 2e-5)
    assert apply_overrides(module.PluginConfig(), {"cap": "7"}).cap == 7
    with pytest.raises(ValueError, match="cannot read 'maybe' as bool for flag"):
        apply_overrides(module.PluginConfig(), {"flag": "maybe"})
    with pytest.raises(ValueError, match="cannot read '2.5' as int for cap"):
        apply_overrides(module.PluginConfig(), {"cap": "2.5"})


def test_mechanism_cell_marks_a_row_whose_probes_never_moved(tmp_path):
    from harness.leaderboard import Row, _mechanism_cell

    def row(values):
        log = [{"step": i + 1, "probes": {"replays": v}} for i, v in enumerate(values)]
        return Row("r3", "r3", 0, tmp_path, {}, {}, None, log, train_card={"mechanism": ["replays"]})

    assert _mechanism_cell([row([0, 2, 4])]) == "replays 2"
    assert _mechanism_cell([row([0, 0])]) == "**inert**: replays 0 (inert)"
