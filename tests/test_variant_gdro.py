"""Prompt-GDRO and Rollout-GDRO (variants.md §14): the spec's numbers, the online difficulty classifier, the
exact-budget arm allocation, steps whose groups differ in size, both code/paper flags, checkpointed state,
and short runs on an untrained model."""

import dataclasses
import itertools
import random

import pytest
import torch
from trainer_helpers import killed_after, make_trainer, read_log, without_time

from harness.budget import Budget
from harness.task import TASKS, Problem
from trainers import algos
from trainers.base import Groups, field_docs
from trainers.catalog import overridden_hooks
from trainers.gdro import (
    DifficultyClassifier,
    RaggedGroups,
    allocate_arms,
    assign_bins,
    dual_ascent,
    ema_scores,
    exp3_mixture,
    exponential_weights,
    sequence_losses,
    square_root_allocation,
)
from trainers.grpo import CHECKPOINT, GRPOTrainer
from trainers.prompt_gdro import PromptGDROConfig, PromptGDROTrainer
from trainers.rollout_gdro import RolloutGDROConfig, RolloutGDROTrainer

DECILES = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], dtype=torch.float64)


def problem(uid):
    return Problem(uid, f"{uid}=?", ("1",))


def fake_part(problems, rewards):
    """A uniform part with only what the advantage hook and the row layout read."""
    rewards = torch.tensor(rewards)
    return Groups(problems, None, [], [], rewards.clone(), rewards)


def assert_same_state(a, b, where="state"):
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


# ------------------------------------------------------------------------------------- spec numbers


def test_prompt_gdro_weights_and_mixture():
    scores = torch.tensor([0.2, 0.5, -0.1])
    assert exponential_weights(scores, eta=0.65, clip=10.0).tolist() == pytest.approx([1.1388, 1.3840, 0.9371],
                                                                                      abs=1e-4)
    assert exp3_mixture(scores, eta=0.65, gamma=0.01).tolist() == pytest.approx([0.3292, 0.3994, 0.2715], abs=1e-4)
    # C clips the scores before the exponential.
    assert exponential_weights(torch.tensor([30.0]), eta=0.65, clip=10.0).item() == pytest.approx(665.14, abs=0.01)


def test_ema_step_and_first_observation():
    scores = torch.tensor([0.2, 0.5, -0.1])
    bin_losses = torch.full((3,), 0.4)
    everywhere = torch.ones(3, dtype=torch.bool)
    moved, observed = ema_scores(scores, everywhere, bin_losses, everywhere, beta=0.12)
    assert moved.tolist() == pytest.approx([0.224, 0.488, -0.040], abs=1e-6)
    # A bin's first observation sets its score; a bin absent this step keeps its own.
    first, observed = ema_scores(scores, torch.tensor([False, True, True]), bin_losses,
                                 torch.tensor([True, True, False]), beta=0.12)
    assert first.tolist() == pytest.approx([0.4, 0.488, -0.1], abs=1e-6)
    assert observed.tolist() == [True, True, True]


def test_square_root_law():
    shares = torch.tensor([0.3, 0.3, 0.4])
    n = square_root_allocation(torch.tensor([0.25, 0.16, 0.04]), shares, mean_rollouts=4)
    assert n.tolist() == pytest.approx([5.714, 4.571, 2.286], abs=1e-3)
    assert float((shares * n).sum()) == pytest.approx(4.0)
    assert square_root_allocation(torch.zeros(3), shares, 4).tolist() == [4.0, 4.0, 4.0]


def test_dual_step():
    assert dual_ascent(0.0, realized_mean=4.6, target_mean=4, step_size=0.05) == pytest.approx(0.03)


def test_hysteresis():
    estimates = torch.tensor([0.41, 0.43, 0.28, 0.27, 0.95, 0.41], dtype=torch.float64)
    previous = torch.tensor([3, 3, 3, 3, 3, -1])
    # Bin 3 is [0.3, 0.4): 0.41 stays (needs >= 0.43), 0.43 leaves; 0.28 stays, 0.27 leaves; a jump lands in
    # the estimate's own bin; a prompt without a bin goes straight to its estimate's.
    assert assign_bins(estimates, previous, DECILES, margin=0.03).tolist() == [3, 4, 3, 2, 9, 4]
    assert assign_bins(estimates, previous, DECILES, margin=0.0).tolist() == [4, 4, 2, 2, 9, 4]


# ---------------------------------------------------------------------------------------- classifier


def test_classifier_window_bins_and_state_round_trip():
    classifier = DifficultyClassifier(tuple(DECILES.tolist()), window=4, margin=0.03)
    a, b = problem("a"), problem("b")
    assert classifier.bins([a, b]).tolist() == [10, 10]  # never seen: the extra bin B
    for hit in (True, True, True, True, False):
        classifier.observe([a], torch.tensor([hit]))
    assert classifier.history["a"] == [1, 1, 1, 0]  # the window keeps the last 4 visits: estimate 0.75
    assert classifier.bins([a]).tolist() == [7]
    classifier.observe([b], torch.tensor([False]))
    clone = DifficultyClassifier(tuple(DECILES.tolist()), window=4, margin=0.03)
    clone.load_state_dict(classifier.state_dict())
    assert clone.bins([a, b]).tolist() == [7, 0]
    clone.observe([a], torch.tensor([False]))
    assert classifier.history["a"] == [1, 1, 1, 0]  # the clone's history is its own
    unlimited = DifficultyClassifier(tuple(DECILES.tolist()), window=0, margin=0.03)
    for _ in range(150):
        unlimited.observe([a], torch.tensor([True]))
    assert len(unlimited.history["a"]) == 150


# -------------------------------------------------------------------------------------- allocation


def test_allocation_is_the_best_exact_one():
    rng = random.Random(0)
    arms = torch.arange(2, 9)
    for _ in range(30):
        bins = rng.randint(1, 3)
        counts = torch.tensor([rng.randint(1, 4) for _ in range(bins)])
        log_probs = torch.randn(bins, len(arms), generator=torch.Generator().manual_seed(rng.randint(0, 10**6)))
        total = 4 * int(counts.sum())
        picks = allocate_arms(log_probs, counts, arms, total)
        assert int((counts * arms[picks]).sum()) == total
        best = max(sum(float(log_probs[b, a]) for b, a in enumerate(choice))
                   for choice in itertools.product(range(len(arms)), repeat=bins)
                   if sum(int(c) * int(arms[a]) for c, a in zip(counts, choice, strict=True)) == total)
        assert float(log_probs[torch.arange(bins), picks].sum()) == pytest.approx(best)


def test_allocation_ties_go_to_the_first_listed_arm_and_impossible_totals_say_so():
    arms = torch.tensor([4, 3, 5, 2, 6])  # nearest n_bar = 4 first, as Rollout-GDRO lists them
    picks = allocate_arms(torch.zeros(3, 5), torch.tensor([2, 1, 3]), arms, total=24)
    assert arms[picks].tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="exactly 7 rollouts"):
        allocate_arms(torch.zeros(1, 2), torch.tensor([2]), torch.tensor([2, 4]), total=7)


# ------------------------------------------------------------------------------------- loss signal


def test_loss_signal_is_the_sequence_mean_of_the_clipped_loss_plus_kl():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    advantages = torch.tensor([0.866, -0.866])
    kl = torch.tensor([[0.1, 0.3, 5.0], [0.2, 0.2, 0.2]])
    # At ratio 1 (one epoch, one minibatch) the clipped term is -A.
    signal = sequence_losses(logp, logp, advantages, mask, kl, eps_low=0.2, eps_high=0.28, dual_clip=None,
                             kl_beta=0.1)
    assert signal.tolist() == pytest.approx([-0.866 + 0.02, 0.866 + 0.02])
    moved = sequence_losses(logp + 0.5, logp, advantages, mask, None, eps_low=0.2, eps_high=0.28, dual_clip=None,
                            kl_beta=0.1)
    ratio = torch.exp(torch.tensor(0.5))
    assert moved.tolist() == pytest.approx([-1.28 * 0.866, float(ratio) * 0.866])
    per_token = -algos.clipped_objective(torch.exp(torch.full_like(logp, 0.5)), advantages[:, None], 0.2, 0.28)
    assert float(moved.mean()) == pytest.approx(float(algos.seq_mean_token_mean(per_token, mask)))


def test_ragged_rows_follow_each_groups_own_size():
    parts = [fake_part([problem("a"), problem("b")], [[1.0, 0.0], [0.0, 0.0]]),
             fake_part([problem("c")], [[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])]
    step = RaggedGroups(parts, [torch.tensor([1, 1]), torch.tensor([10])], None, torch.tensor([1, 1, 10]),
                        torch.tensor([2, 2, 6]))
    assert step.sizes.tolist() == [2, 2, 6]
    assert step.rows(torch.tensor([2, 0])).tolist() == [4, 5, 6, 7, 8, 9, 0, 1]
    assert step.rows(torch.tensor([1])).tolist() == [2, 3]


# -------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("cls, overrides, field", [
    (PromptGDROConfig, {"bin_edges": (0.5, 0.2)}, "bin_edges"),
    (PromptGDROConfig, {"bin_edges": (0.0, 0.5)}, "bin_edges"),
    (PromptGDROConfig, {"history_window": -1}, "history_window"),
    (PromptGDROConfig, {"ema_beta": 0.0}, "ema_beta"),
    (PromptGDROConfig, {"mixture_gamma": 1.5}, "mixture_gamma"),
    (PromptGDROConfig, {"max_weight": 0.0}, "max_weight"),
    (RolloutGDROConfig, {"min_rollouts": 9}, "min_rollouts"),
    (RolloutGDROConfig, {"max_rollouts": 4, "group_size": 8}, "max_rollouts"),
    (RolloutGDROConfig, {"arm_gamma": 0.0}, "arm_gamma"),
    (RolloutGDROConfig, {"dual_step_size": -1.0}, "dual_step_size"),
])
def test_bad_values_name_the_field(cls, overrides, field):
    with pytest.raises(ValueError, match=field):
        cls(**overrides)


def test_every_field_is_documented_and_the_hooks_are_listed():
    assert overridden_hooks(PromptGDROTrainer) == ["sampler", "advantage", "state"]
    assert overridden_hooks(RolloutGDROTrainer) == ["sampler", "state"]
    shared = {f.name for f in dataclasses.fields(GRPOTrainer.Config)}
    for trainer in (PromptGDROTrainer, RolloutGDROTrainer):
        docs = field_docs(trainer.Config)
        assert {f.name for f in dataclasses.fields(trainer.Config)} <= set(docs)
        own = {f.name for f in dataclasses.fields(trainer.Config)} - shared
        assert own and all(docs[name] for name in own | {"eps_high", "kl_beta"})
    assert "unconfirmed" in field_docs(PromptGDROConfig)["score_clip"]
    assert "unconfirmed" in field_docs(RolloutGDROConfig)["arm_eta"]


# ---------------------------------------------------------------------------------- prompt-gdro hooks


def test_prompt_gdro_weights_advantages_by_bin_and_the_flag_switches_to_the_normalised_mixture(
        untrained_model_dir, tmp_path, train_problems):
    hard, easy = problem("hard"), problem("easy")
    rewards = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
    plain = algos.grpo_advantages(torch.tensor(rewards))
    weights = {}
    for normalised in (False, True):
        trainer = make_trainer(PromptGDROTrainer, untrained_model_dir, tmp_path / str(normalised), train_problems,
                               Budget(steps=1), normalised_weights=normalised)
        trainer.classifier.observe([hard, easy], torch.tensor([False, True]))  # bins 0 and 9
        trainer.scores[0], trainer.scores[9] = 0.2, 0.5
        advantages = trainer.advantage(fake_part([hard, easy], rewards))
        weights[normalised] = (advantages / plain)[:, 0].tolist()
    assert weights[False] == pytest.approx([1.1388, 1.3840], abs=1e-4)  # the paper's omega
    two_bin_mixture = exp3_mixture(torch.tensor([0.2, 0.5]), eta=0.65, gamma=0.01)
    assert weights[True] == pytest.approx(two_bin_mixture.tolist(), abs=1e-5)  # over the bins present
    trainer.scores[9] = 30.0
    trainer.config = dataclasses.replace(trainer.config, normalised_weights=False)
    assert trainer.bin_weights(torch.ones(10, dtype=torch.bool))[9].item() == 15.0  # capped at omega_max


def test_prompt_gdro_scores_each_bin_by_its_mean_prompt_loss_over_its_share(untrained_model_dir, tmp_path,
                                                                           train_problems):
    a, b, c = problem("a"), problem("b"), problem("c")
    parts = [fake_part([a, b, c], [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])]
    step = RaggedGroups(parts, [torch.tensor([10, 10, 10])], None, torch.tensor([10, 10, 10]),
                        torch.tensor([2, 2, 2]))
    losses = torch.tensor([1.0, 1.0, 3.0, 3.0, 0.5, 0.5])  # prompt losses 1, 3 (bin 0) and 0.5 (bin 5)
    figures = {}
    for by_share in (True, False):
        trainer = make_trainer(PromptGDROTrainer, untrained_model_dir, tmp_path / str(by_share), train_problems,
                               Budget(steps=1), loss_norm_by_share=by_share)
        trainer.classifier.observe([a, b, c], torch.tensor([False, False, True]))
        trainer.classifier.observe([c], torch.tensor([False]))  # c: estimate 0.5, bin 5
        figures[by_share] = trainer.adversary_step(step, losses)
        first = trainer.scores.clone()
        trainer.adversary_step(step, losses)
        assert trainer.scores[0].item() == pytest.approx(first[0].item())  # same losses: the EMA stays put
    assert figures[True]["gdro_bin_prompts"][:6] == [2, 0, 0, 0, 0, 1]
    assert figures[True]["gdro_bin_score"][0] == pytest.approx(2.0 / (2 / 3))
    assert figures[True]["gdro_bin_score"][5] == pytest.approx(0.5 / (1 / 3))
    assert figures[False]["gdro_bin_score"][0] == pytest.approx(2.0)
    assert figures[False]["gdro_bin_score"][1] is None  # never observed
    assert figures[False]["gdro_bin_weight"][0] == pytest.approx(1.0)  # this step's weight: S was still 0


# --------------------------------------------------------------------------------- rollout-gdro hooks


def rigged_rollout_trainer(model_dir, run_dir, problems, **overrides):
    """Prompt 0 is in bin 9 with a bandit that wants 2 rollouts; prompt 1 is new. 8 rollouts: 2 and 6."""
    trainer = make_trainer(RolloutGDROTrainer, model_dir, run_dir, problems, Budget(steps=1), **overrides)
    trainer.classifier.observe([problems[0]], torch.tensor([True]))
    trainer.arm_scores[9, 0] = 20.0
    return trainer


def test_rollout_gdro_step_gives_bins_different_group_sizes_at_the_same_total(untrained_model_dir, tmp_path):
    problems = TASKS.get("sandbox-train").load(None).problems[:2]
    trainer = rigged_rollout_trainer(untrained_model_dir, tmp_path, problems)
    step = trainer.collect()
    assert [part.group_size for part in step.parts] == [2, 6]
    assert trainer.ledger.rollouts == 8 and trainer.ledger.prompts == 2
    assert [p.id for p in step.parts[0].problems] == [problems[0].id]
    advantages = trainer.step_advantages(step)
    for part, rows in zip(step.parts, torch.split(advantages, [2, 6]), strict=True):
        assert rows.tolist() == pytest.approx(algos.grpo_advantages(part.rewards).reshape(-1).tolist())
    stats = trainer.update(step)
    assert trainer.ledger.steps == 1 and stats["loss"] is not None
    assert stats["gdro_bin_rollouts_per_prompt"][9:] == [2, 6]
    assert stats["gdro_bin_rollouts"][9:] == [2, 6] and sum(stats["gdro_bin_rollouts"]) == 8
    # Bandit feedback: only the arm each bin played is scored and counted.
    assert trainer.arm_plays.sum().item() == 2
    assert trainer.arm_plays[9, 0].item() == 1 and trainer.arm_plays[10, 4].item() == 1


def test_rollout_gdro_sign_flag_scores_the_played_arm_with_utility_or_loss(untrained_model_dir, tmp_path):
    problems = TASKS.get("sandbox-train").load(None).problems[:2]
    played = {}
    for adversarial in (False, True):
        trainer = rigged_rollout_trainer(untrained_model_dir, tmp_path / str(adversarial), problems,
                                         adversarial_arm_scores=adversarial)
        step = trainer.collect()
        trainer.mu = 0.5
        figures = trainer.adversary_step(step, torch.full((8,), 0.25))  # utility J_b = -0.25 in both bins
        # score += J_b - mu (n - n_bar) (paper) or -(J_b + mu (n - n_bar)) (code); mu then steps by 0.
        played[adversarial] = (trainer.arm_scores[9, 0].item() - 20.0, trainer.arm_scores[10, 4].item())
        assert figures["gdro_mu"] == pytest.approx(0.5)
    assert played[False] == pytest.approx((-0.25 + 1.0, -0.25 - 1.0))
    assert played[True] == pytest.approx((0.25 + 1.0, 0.25 - 1.0))


# ------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("cls", [PromptGDROTrainer, RolloutGDROTrainer])
def test_first_step_without_feedback_is_grpo_exactly(cls, untrained_model_dir, tmp_path, train_problems):
    # No scores yet: every weight is 1 and every prompt gets G, so with GRPO's loss settings the step, with
    # two epochs of two minibatches, draws and trains exactly what GRPO's does.
    settings = {"eps_high": 0.2, "kl_beta": 0.0, "ppo_epochs": 2, "minibatches": 2}
    grpo = make_trainer(GRPOTrainer, untrained_model_dir, tmp_path / "grpo", train_problems, Budget(steps=4),
                        **settings)
    grpo.train()
    gdro = make_trainer(cls, untrained_model_dir, tmp_path / "gdro", train_problems, Budget(steps=4), **settings)
    gdro.train()
    ours, theirs = read_log(tmp_path / "gdro")[0], read_log(tmp_path / "grpo")[0]
    for key in ("rollouts", "tokens", "reward_mean", "loss", "entropy", "kl"):
        assert ours[key] == theirs[key], key
    for (name, a), b in zip(grpo.model.state_dict().items(), gdro.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("cls", [PromptGDROTrainer, RolloutGDROTrainer])
def test_trains_within_the_rollout_budget_and_logs_per_bin_figures(cls, untrained_model_dir, tmp_path,
                                                                  train_problems):
    # 2 prompts x G=4 = 8 rollouts a step, whatever the allocation: 20 rollouts pay for 2 steps, not 3.
    trainer = make_trainer(cls, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=20, steps=50))
    ledger = trainer.train()
    assert (ledger.steps, ledger.rollouts, ledger.prompts, trainer.stopped_by) == (2, 16, 4, "rollouts")
    assert (tmp_path / CHECKPOINT).is_file()
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] is not None for r in log)
    for record in log:
        assert sum(record["gdro_bin_prompts"]) == 2
        if cls is RolloutGDROTrainer:
            assert len(record["gdro_bin_prompts"]) == 11 and sum(record["gdro_bin_rollouts"]) == 8
            assert record["gdro_mu"] == 0.0  # exact allocations: the realised mean is always n_bar
        else:
            assert len(record["gdro_bin_prompts"]) == 10
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["variant_state"]["classifier"]["history"]


@pytest.mark.parametrize("cls", [PromptGDROTrainer, RolloutGDROTrainer])
def test_state_round_trip(cls, untrained_model_dir, tmp_path, train_problems):
    pool = train_problems[:3]  # revisited, so bins move and scores accumulate
    trained = make_trainer(cls, untrained_model_dir, tmp_path / "a", pool, Budget(steps=3))
    trained.train()
    fresh = make_trainer(cls, untrained_model_dir, tmp_path / "b", pool, Budget(steps=3))
    fresh.load_state_dict(torch.load(tmp_path / "a" / CHECKPOINT, weights_only=False)["variant_state"])
    assert_same_state(fresh.state_dict(), trained.state_dict())
    bins = fresh.classifier.bins(pool)
    assert bins.lt(fresh.num_bins).all()
    assert torch.equal(fresh.allocate(bins), trained.allocate(bins))


@pytest.mark.parametrize("cls", [PromptGDROTrainer, RolloutGDROTrainer])
def test_killed_run_resumes_to_the_same_numbers(cls, untrained_model_dir, tmp_path, train_problems):
    pool = train_problems[:3]
    budget = Budget(steps=3)
    whole = make_trainer(cls, untrained_model_dir, tmp_path / "whole", pool, budget)
    whole.train()

    with pytest.raises(KeyboardInterrupt):
        make_trainer(killed_after(cls, step=2), untrained_model_dir, tmp_path / "killed", pool, budget).train()
    resumed = make_trainer(cls, untrained_model_dir, tmp_path / "killed", pool, budget)
    resumed.train()
    assert without_time(read_log(tmp_path / "killed")) == without_time(read_log(tmp_path / "whole"))
    assert_same_state(resumed.state_dict(), whole.state_dict())
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
