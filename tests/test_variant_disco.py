"""DisCO (variants.md §13): the spec's objective, gradient-weight and penalty numbers, skipped groups in the
1/|Q| mean, the loss hook regrouping minibatch rows, and a short training run with minibatch updates."""


import pytest
import torch
from trainer_helpers import ONE_STEP, make_trainer, read_log

from harness.budget import Budget
from trainers.algos.terms import discriminative_objective, sequence_scores, squared_hinge_penalty
from trainers.builtin.disco import DisCOConfig, DisCOTrainer
from trainers.builtin.grpo import CHECKPOINT

SPEC_SCORES = [-0.3, -0.5, -0.4, -0.9]
SPEC_LABELS = [1.0, 1, -1, -1]


def test_spec_objectives_and_negative_weights():
    scores = torch.tensor([SPEC_SCORES], requires_grad=True)
    labels = torch.tensor([SPEC_LABELS])
    assert discriminative_objective(scores, labels).item() == pytest.approx(0.25)
    objective = discriminative_objective(scores, labels, tau=10.0)
    assert objective.item() == pytest.approx(0.246875, abs=1e-6)
    objective.sum().backward()
    # Positives pull up by 1/|O+|; negatives push down by softmax(s / tau) = [0.5125, 0.4875].
    assert scores.grad[0].tolist() == pytest.approx([0.5, 0.5, -0.5125, -0.4875], abs=1e-4)


def test_spec_penalty_value_and_gradient():
    inside = torch.tensor(5e-5, requires_grad=True)
    value = squared_hinge_penalty(inside, beta=1000.0, delta=1e-4)
    value.backward()
    assert (value.item(), inside.grad.item()) == (0.0, 0.0)
    outside = torch.tensor(3e-4, dtype=torch.float64, requires_grad=True)
    value = squared_hinge_penalty(outside, beta=1000.0, delta=1e-4)
    value.backward()
    assert value.item() == pytest.approx(2e-5)
    assert outside.grad.item() == pytest.approx(0.2)


def test_groups_without_both_sides_give_zero_and_still_count():
    scores = torch.tensor([SPEC_SCORES, [-0.1, -0.2, -0.3, -0.4]], requires_grad=True)
    labels = torch.tensor([SPEC_LABELS, [1.0, 1, 1, 1]])
    for tau in (None, 10.0):
        objective = discriminative_objective(scores, labels, tau)
        assert objective[1].item() == 0.0
        objective.mean().backward()
        assert torch.isfinite(scores.grad).all() and scores.grad[1].abs().sum() == 0
        scores.grad = None
    assert discriminative_objective(scores, labels).mean().item() == pytest.approx(0.125)


def test_scores_are_length_normalised_and_l_ratio_keeps_its_gradient():
    logp = torch.tensor([[-1.0, -3.0, -9.0], [-2.0, -9.0, -9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0]])
    assert sequence_scores(logp, logp.detach(), mask, "log-l").tolist() == [-2.0, -2.0]
    ratio_scores = sequence_scores(logp, logp.detach(), mask, "l-ratio")
    assert ratio_scores.tolist() == [1.0, 1.0]
    ratio_scores.sum().backward()
    assert logp.grad.tolist() == [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]


def test_the_loss_takes_tau_from_the_score_unless_set():
    """tau 10 for log-l scores, 1 for l-ratio, the config's own when set, none for DisCO-b (variants.md §13), read
    off the registered loss every engine calls."""
    from trainers.algos.variants import disco_loss

    logp = torch.tensor([[-0.2, -0.9], [-1.4, -0.3], [-0.1, -0.2], [-2.0, -0.7]])
    mask, labels = torch.ones_like(logp), torch.tensor([1.0, -1.0, -1.0, 1.0])
    losses = []
    for settings, tau in [({}, 10.0), ({"score": "l-ratio"}, 1.0), ({"tau": 3.0}, 3.0),
                          ({"objective": "disco-b"}, None)]:
        config = DisCOConfig(group_size=4, **settings)
        loss, _ = disco_loss(logp, logp, labels, mask, None, config, 2)  # one group of 4; old = new: the trust region is slack
        scores = sequence_scores(logp, logp, mask, config.score).view(-1, 4)
        assert loss.item() == pytest.approx(-discriminative_objective(scores, labels.view(-1, 4), tau).mean().item())
        losses.append(loss.item())
    assert len(set(losses)) == 4  # each setting gives its own objective


def test_config_defaults_and_validation():
    assert (DisCOConfig().constraint_beta, DisCOConfig().constraint_delta, DisCOConfig().kl_beta) == (1000.0, 1e-4, 0)
    for bad, message in [({"score": "logl"}, "score must be one of log-l, l-ratio"),
                         ({"objective": "dro"}, "objective must be one of disco, disco-b"),
                         ({"tau": 0.0}, "tau must be > 0"), ({"constraint_beta": -1.0}, "must be >= 0")]:
        with pytest.raises(ValueError, match=message):
            DisCOConfig(**bad)


def test_loss_hook_regroups_rows_and_adds_the_trust_region(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(DisCOTrainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                           minibatches=2)
    # Two groups of G=4 one-token responses whose log-probs are the scores: the spec's group, then an
    # all-wrong one that is skipped but still halves the mean.
    logp = torch.tensor(SPEC_SCORES + [-0.1, -0.2, -0.3, -0.4])[:, None]
    labels = torch.tensor(SPEC_LABELS + [-1.0] * 4)
    mask = torch.ones_like(logp)
    assert trainer.loss(logp, logp, labels, mask, None).item() == pytest.approx(-0.246875 / 2, abs=1e-6)
    # pi_old 3e-4 above pi_theta on every token: k1 KL 3e-4, penalty (1000 / 2)(2e-4)^2 = 2e-5.
    drifted = trainer.loss(logp, logp + 3e-4, labels, mask, None).item()
    assert drifted == pytest.approx(-0.246875 / 2 + 2e-5, abs=1e-6)
    trainer.config = DisCOConfig(objective="disco-b", group_size=4)
    assert trainer.loss(logp, logp, labels, mask, None).item() == pytest.approx(-0.25 / 2)


def test_trains_with_minibatch_updates_within_budget_and_leaves_a_checkpoint(untrained_model_dir, tmp_path,
                                                                           train_problems):
    # Two minibatches of one group each: every rollout batch costs 2 optimizer steps; 4 steps pay for 2 batches.
    trainer = make_trainer(DisCOTrainer, untrained_model_dir, tmp_path, train_problems, Budget(steps=4),
                           minibatches=2)
    ledger = trainer.train()
    assert (ledger.steps, ledger.rollouts, trainer.stopped_by) == (4, 16, "steps")
    assert (tmp_path / CHECKPOINT).is_file()
    log = read_log(tmp_path)
    assert [r["steps"] for r in log] == [2, 4]
    assert all(r["loss"] is not None for r in log)
