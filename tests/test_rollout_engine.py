"""The rollout engine option on CPU without vLLM: the importance weight's gradient, the sampler gap the update
measures, the card, and what happens where vLLM cannot or may not generate. tests/test_vllm.py trains
through a real engine."""

import pytest
import torch
from trainer_helpers import ONE_STEP, make_trainer, read_log

from harness.compare import card_config
from trainers import algos
from trainers.builtin.base import GRPOConfig
from trainers.builtin.grpo import GRPOTrainer
from trainers.builtin.n_grpo import NGRPOTrainer


def test_token_weights_scale_each_gradient_and_leave_the_value():
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    weights = torch.tensor([[1.0, 0.5, 2.0]])
    weighted = algos.weight_token_gradients(logp, weights)
    assert torch.equal(weighted.detach(), logp.detach())
    (weighted * torch.tensor([[3.0, 3.0, 3.0]])).sum().backward()
    assert torch.allclose(logp.grad, torch.tensor([[3.0, 1.5, 6.0]]))


def test_the_built_in_sampler_has_no_gap_to_correct(untrained_model_dir, tmp_path, train_problems):
    """The update compares the sampler's log-probs with the trainer's on every step; for the built-in sampler
    (the same model, the same float32) they agree to rounding, and no importance weight is reported."""
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP)
    trainer.train()
    record = read_log(tmp_path)[0]
    assert 0 <= record["sampler_gap"] < 1e-4
    assert "tis_truncated" not in record


def test_n_grpo_keeps_the_built_in_sampler_under_vllm_and_says_so(untrained_model_dir, tmp_path, train_problems,
                                                                  caplog):
    """Embedding mixing happens inside the decode loop, which vLLM cannot run: N-GRPO trains as before (no
    engine is started, so this runs without vLLM) and the log says why."""
    trainer = make_trainer(NGRPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                           rollout_engine="vllm")
    trainer.train()
    assert trainer.step == 1 and trainer._engine is None
    assert "vLLM cannot do" in caplog.text


def test_an_unknown_engine_is_refused(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                           rollout_engine="sglang")
    with pytest.raises(ValueError, match="rollout_engine 'sglang' is not builtin or vllm"):
        trainer.train()


def test_the_card_names_the_engine_only_when_it_generates():
    """Cards of built-in runs are as before the option (their hashes, and so their run directories, hold)."""
    assert not {"rollout_engine", "rollout_dtype", "tis_cap"} & set(card_config(GRPOConfig()))
    engine = card_config(GRPOConfig(rollout_engine="vllm"), GRPOTrainer)
    assert (engine["rollout_engine"], engine["rollout_dtype"], engine["tis_cap"]) == ("vllm", "float32", 2.0)
    # N-GRPO samples with the built-in sampler whatever was asked: its card says what it ran with
    assert "rollout_engine" not in card_config(NGRPOTrainer.Config(rollout_engine="vllm"), NGRPOTrainer)
