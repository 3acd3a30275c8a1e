"""R3 (variants.md §16): the spec's SERR and CCR numbers, the replay buffer (checkpoint round trip, a killed run
resumes to the same numbers), what is charged to the budget, the reflection prompt, and a 2-step smoke run."""

import dataclasses
import json

import pytest
import torch
from trainer_helpers import ONE_STEP, approx, killed_after, make_trainer, read_log, without_time

from harness.budget import Budget
from trainers import algos
from trainers.builtin.catalog import overridden_hooks
from trainers.builtin.grpo import CHECKPOINT
from trainers.builtin.r3 import (
    ATTEMPT,
    R3Config,
    R3Trainer,
    dominance_scores,
    entropy_profile,
    length_bonus,
    mixed_group_advantages,
    ranking_rewards,
)
from trainers.builtin.rollout import token_logprobs
from trainers.protocol.config import field_docs


class ScriptedPool:
    """Call c grades request i by rules[c](i) (the last rule repeats), so a test decides which groups are all
    right or all wrong. The call count is the only state: a run resumed with the same pool goes on with the
    script, as a real grader would go on grading the resumed policy."""

    def __init__(self, *rules):
        self.rules, self.calls = rules, 0

    def grade(self, requests):
        rule = self.rules[min(self.calls, len(self.rules) - 1)]
        self.calls += 1
        return [bool(rule(i)) for i in range(len(requests))]


def all_right(i):
    return True


def all_wrong(i):
    return False


def every_other(i):
    return i % 2 == 0


def two_steps(trainer):
    """Collect two steps' groups (no update: the buffer is filled by collection alone)."""
    first = trainer.collect()
    trainer.step = 1
    return first, trainer.collect()


def responses(groups, index):
    """Group `index`'s response token lists, one per slot (empty for an empty slot)."""
    width = groups.group_size
    lengths = groups.batch.lengths.tolist()
    return [groups.batch.response_ids[row, : lengths[row]].tolist() for row in range(index * width, (index + 1) * width)]


# ------------------------------------------------------------------------------------------- spec numbers

def test_serr_spec_numbers():
    peak = torch.tensor([[2.0, 1.5, 2.5, 1.0]])
    global_mean = torch.tensor([[0.5, 0.4, 0.3, 0.9]])
    assert dominance_scores(peak, global_mean).tolist() == [[1, 1, 3, 0]]
    assert ranking_rewards(peak, global_mean, reward_max=1.0)[0].tolist() == approx([0.6667, 0.3333, 1.0, 0.0])
    # Groups are ranked independently, and R_max scales the ladder.
    both = ranking_rewards(torch.cat([peak, peak.flip(-1)]), torch.cat([global_mean, global_mean.flip(-1)]), 0.5)
    assert both[1].tolist() == approx([0.0, 0.5, 0.3333, 0.1667])


def test_ccr_spec_numbers():
    rewards = torch.tensor([[0.0, 0, 0, 0, 1]])
    a = mixed_group_advantages(rewards, torch.ones_like(rewards, dtype=torch.bool))
    assert a[0].tolist() == approx([-0.4472] * 4 + [1.7889])


def test_mixed_group_advantages_ignore_empty_slots_and_scale_the_std():
    rewards = torch.tensor([[1.0, 0, 0, 1, 0], [0.3, 0.1, 0.0, 0.2, 1.9]])
    present = torch.tensor([[True, True, True, True, False], [True] * 5])
    a = mixed_group_advantages(rewards, present)
    assert a[0].tolist() == approx([0.866, -0.866, -0.866, 0.866, 0.0])  # §1.2: GRPO's, the empty slot left out
    assert torch.allclose(a[1], algos.grpo_advantages(rewards[1:])[0])
    halved = mixed_group_advantages(rewards, present, std_scale=2.0)
    assert torch.allclose(halved, a / 2, atol=1e-5)
    lone = mixed_group_advantages(torch.tensor([[1.0, 0]]), torch.tensor([[True, False]]))
    assert lone.tolist() == [[0.0, 0.0]]


def test_entropy_profile_peak_is_the_top_fraction_and_global_the_mean():
    entropy = torch.tensor([[1.0, 5.0, 3.0, 9.0], [2.0, 4.0, 6.0, 8.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])  # the 9.0 is padding
    peak, global_mean = entropy_profile(entropy, mask, peak_fraction=0.1)  # k = max(1, floor(0.1 L)) = 1
    assert peak.tolist() == approx([5.0, 8.0]) and global_mean.tolist() == approx([3.0, 5.0])
    peak, _ = entropy_profile(entropy, mask, peak_fraction=0.5)  # k = floor(1.5) = 1 and floor(2) = 2
    assert peak.tolist() == approx([5.0, 7.0])


def test_length_bonus_only_for_correct_answers():
    lengths = torch.tensor([16384, 40000, 100])
    assert length_bonus(lengths, torch.tensor([1.0, 1, 0]), 32768).tolist() == approx([0.5, 0.0, 0.0])


# ------------------------------------------------------------------------------------------ config, hooks

def test_config_rejects_bad_values_naming_the_field():
    for name, value in [("replay_count", 0), ("buffer_capacity", 0), ("reflection_threshold", 1.5),
                        ("ranking_peak_fraction", 0.0), ("ranking_reward_max", -1.0),
                        ("length_bonus_max_length", 0), ("advantage_std_scale", 0.0),
                        ("reflection_instruction", " ")]:
        with pytest.raises(ValueError, match=name):
            R3Config(**{name: value})


def test_hooks_and_documented_config():
    assert overridden_hooks(R3Trainer) == ["sampler", "prompt", "reward", "advantage", "loss", "state"]
    docs = field_docs(R3Config)
    assert {f.name for f in dataclasses.fields(R3Config)} <= set(docs)
    for unconfirmed in ("replay_count", "buffer_capacity", "reflection_threshold", "reflection_instruction",
                        "ranking_peak_fraction", "ranking_reward_max", "advantage_std_scale"):
        assert "ours" in docs[unconfirmed], unconfirmed


# ---------------------------------------------------------------------------------- SERR and the reward

def test_all_wrong_groups_are_ranked_by_the_sampling_policys_entropy(untrained_model_dir, tmp_path, train_problems):
    group_zero_wrong = ScriptedPool(lambda i: i >= 4 and i % 2 == 0)  # group 0 all wrong, group 1 [1, 0, 1, 0]
    trainer = make_trainer(R3Trainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                           pool=group_zero_wrong, length_bonus_max_length=20)
    groups = trainer.collect()
    ranking = groups.components["ranking"]
    assert sorted(ranking[0].tolist()) == approx([0.0, 0.5 / 3, 1.0 / 3, 0.5])
    assert ranking[1].tolist() == [0.0] * 4
    _, entropy = token_logprobs(trainer.model, groups.batch.select(torch.arange(4)), 1.0, with_entropy=True)
    peak, global_mean = entropy_profile(entropy, groups.batch.response_mask[:4], 0.1)
    assert ranking[0].tolist() == approx(ranking_rewards(peak[None], global_mean[None], 0.5)[0].tolist(), abs=1e-6)
    lengths = groups.batch.lengths[4:].float()
    bonus = torch.tensor([1.0, 0, 1, 0]) * (1 - lengths / 20)
    assert groups.rewards[1].tolist() == approx((torch.tensor([1.0, 0, 1, 0]) + bonus).tolist(), abs=1e-6)
    assert groups.rewards[0].tolist() == ranking[0].tolist()

    plain = make_trainer(R3Trainer, untrained_model_dir, tmp_path / "off", train_problems, ONE_STEP,
                         pool=ScriptedPool(lambda i: i >= 4 and i % 2 == 0), ranking_reward=False)
    assert plain.collect().rewards[0].tolist() == [0.0] * 4


# ------------------------------------------------------------------------------------------------- CCR

def test_all_wrong_group_replays_a_past_right_answer_without_charging_it(untrained_model_dir, tmp_path,
                                                                         train_problems):
    # Two questions, both drawn every step: step 1 is all right, step 2 all wrong.
    trainer = make_trainer(R3Trainer, untrained_model_dir, tmp_path, train_problems[:2], Budget(steps=5),
                           pool=ScriptedPool(all_right, all_wrong))
    first, second = two_steps(trainer)
    assert first.group_size == 4 and second.group_size == 5
    past = {p.id: responses(first, i) for i, p in enumerate(first.problems)}
    for index, problem in enumerate(second.problems):
        replayed = responses(second, index)[4]
        assert replayed in past[problem.id]
        row = index * 5 + 4
        assert torch.equal(second.batch.prompt_ids[row], second.batch.prompt_ids[index * 5])
        assert second.accuracy[index].tolist() == [0, 0, 0, 0, 1]
        assert second.rewards[index, 4].item() == pytest.approx(1 + 1 - len(replayed) / 32768)
        advantages = trainer.advantage(second)[index]
        assert (advantages[:4] < 0).all() and advantages[4] > 0
    # Replayed rows are scored under pi_old for their old log-probs.
    logp, _ = token_logprobs(trainer.model, second.batch, 1.0)
    assert torch.allclose(second.batch.old_logp, logp * second.batch.response_mask, atol=1e-5)
    # Only the generated sequences are charged: 2 steps x 2 prompts x G=4; the replays cost nothing.
    generated = int(first.batch.lengths.sum() + second.batch.lengths.view(2, 5)[:, :4].sum())
    assert (trainer.ledger.prompts, trainer.ledger.rollouts, trainer.ledger.tokens) == (4, 16, generated)
    assert trainer.step_stats(second)["replayed"] == 2

    off = make_trainer(R3Trainer, untrained_model_dir, tmp_path / "off", train_problems[:2], Budget(steps=5),
                       pool=ScriptedPool(all_right, all_wrong), replay=False)
    assert two_steps(off)[1].group_size == 4


def test_all_right_group_replays_a_wrong_answer_and_other_groups_get_an_empty_slot(untrained_model_dir, tmp_path,
                                                                                  train_problems):
    trainer = make_trainer(R3Trainer, untrained_model_dir, tmp_path, train_problems[:2], Budget(steps=5),
                           pool=ScriptedPool(every_other, lambda i: i < 4 or i % 2 == 0),
                           length_bonus_max_length=None)
    _, second = two_steps(trainer)  # group 0 all right, group 1 [1, 0, 1, 0]
    assert second.accuracy.tolist() == [[1, 1, 1, 1, 0], [1, 0, 1, 0, 0]]
    assert second.batch.lengths[4].item() > 0 and second.batch.lengths[9].item() == 0
    advantages = trainer.advantage(second)
    assert advantages[0].tolist() == approx([0.4472] * 4 + [-1.7889])
    assert advantages[1].tolist() == approx([0.866, -0.866, 0.866, -0.866, 0.0])
    # What the update_change probe compares R3 with: GRPO on the generated responses alone, 0 in the replay
    # slots (GRPO would not have trained them), so the replayed wrong answer counts wholly as R3's.
    reference = trainer.grpo_advantages_of(second).view(2, 5)
    assert reference.reshape(-1).tolist() == approx([0.0] * 5 + [0.866, -0.866, 0.866, -0.866, 0.0])
    # The empty slot is no sequence: the loss is the one over the nine real rows.
    logp = torch.randn(10, 6)
    mask = second.batch.response_mask[:, :6].float()
    real = torch.arange(10) != 9
    flat = advantages.reshape(-1)
    assert trainer.loss(logp, logp, flat, mask, None).item() == pytest.approx(
        algos.seq_mean_token_mean(-flat[real, None].expand(9, 6), mask[real]).item())


# ------------------------------------------------------------------------------------------------- ISR

def test_failing_questions_get_a_reflection_copy_charged_as_new_prompts(untrained_model_dir, tmp_path,
                                                                        train_problems):
    trainer = make_trainer(R3Trainer, untrained_model_dir, tmp_path, train_problems[:2], Budget(steps=5),
                           pool=ScriptedPool(all_wrong))
    first, second = two_steps(trainer)
    originals, copies = second.problems[:2], second.problems[2:]
    assert [c.id for c in copies] == [p.id for p in originals] and all(ATTEMPT not in p.meta for p in originals)
    past = {p.id: [trainer._text(ids) for ids in responses(first, i)] for i, p in enumerate(first.problems)}
    for copy in copies:
        assert copy.meta[ATTEMPT] in past[copy.id]
        assert trainer.prompt(copy) == f"{copy.problem}\n{copy.meta[ATTEMPT]}\n{trainer.config.reflection_instruction}"
    # Each copy is one more prompt and G more rollouts: 2 + (2 + 2) prompts, 4 x (2 + 4) rollouts.
    assert (trainer.ledger.prompts, trainer.ledger.rollouts) == (6, 24)
    assert trainer.step_stats(second)["reflection_groups"] == 2
    # The copies' responses are remembered under the question's own id.
    assert all(trainer.history[p.id].rollouts == 12 for p in originals)

    off = make_trainer(R3Trainer, untrained_model_dir, tmp_path / "off", train_problems[:2], Budget(steps=5),
                       pool=ScriptedPool(all_wrong), reflection=False)
    two_steps(off)
    assert (off.ledger.prompts, off.ledger.rollouts) == (4, 16)


def test_reflection_copies_stop_at_the_budget(untrained_model_dir, tmp_path, train_problems):
    # 20 rollouts: step 1 takes 8, step 2 its 8 and one copy's 4; a second copy would overspend.
    trainer = make_trainer(R3Trainer, untrained_model_dir, tmp_path, train_problems[:2], Budget(rollouts=20),
                           pool=ScriptedPool(all_wrong))
    _, second = two_steps(trainer)
    assert len(second.problems) == 3 and (trainer.ledger.rollouts, trainer.ledger.prompts) == (20, 5)
    trainer.step = 2
    assert trainer.collect() is None and trainer.stopped_by == "rollouts"


def test_reflection_prompt_fits_the_models_context(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(R3Trainer, untrained_model_dir, tmp_path, train_problems, ONE_STEP,
                           max_new_tokens=100)
    long_attempt = trainer.tokenizer("1+2=3 :3\n" * 30, add_special_tokens=False).input_ids  # 270 tokens
    copy = trainer.reflection_copy(train_problems[0], long_attempt)
    limit = trainer.model.config.max_position_embeddings
    assert trainer._prompt_length(copy) + 100 == limit
    assert ("1+2=3 :3\n" * 30).startswith(copy.meta[ATTEMPT]) and len(copy.meta[ATTEMPT]) > 50
    wordy = make_trainer(R3Trainer, untrained_model_dir, tmp_path / "wordy", train_problems, ONE_STEP,
                         max_new_tokens=100, reflection_instruction="Try again. " * (limit // 10))
    assert wordy.reflection_copy(train_problems[0], long_attempt) is None


# --------------------------------------------------------------------------------- state and training

def test_buffer_survives_a_checkpoint_round_trip(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(R3Trainer, untrained_model_dir, tmp_path, train_problems[:2], Budget(steps=5),
                           pool=ScriptedPool(every_other))
    two_steps(trainer)
    state = trainer.state_dict()
    torch.save(state, tmp_path / "state.pt")
    fresh = make_trainer(R3Trainer, untrained_model_dir, tmp_path / "fresh", train_problems[:2], Budget(steps=5))
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))  # plain data, no pickled classes
    assert fresh.history == trainer.history and fresh.state_dict() == state
    assert sum(len(h.correct) + len(h.wrong) for h in fresh.history.values()) == 16


def test_buffer_keeps_the_newest_responses_per_outcome(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(R3Trainer, untrained_model_dir, tmp_path, train_problems[:2], Budget(steps=5),
                           pool=ScriptedPool(all_right, all_right), buffer_capacity=3, replay=False)
    _, second = two_steps(trainer)
    for index, problem in enumerate(second.problems):
        history = trainer.history[problem.id]
        assert [t.ids for t in history.correct] == responses(second, index)[1:] and history.rollouts == 8


KilledAfter = killed_after(R3Trainer, step=2)


@pytest.fixture
def one_thread():
    """The training forward's embedding lookup (`table[ids]` in trainers/builtin/rollout.py) accumulates its gradient
    from several threads in any order once a batch is large enough, which the reflection prompts make it; on
    one thread a rerun is bit-identical, so what is compared is the restored state alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_killed_run_resumes_to_the_same_numbers(untrained_model_dir, tmp_path, train_problems, one_thread):
    # Step 1: group 0 wrong, group 1 right; step 2: every group [1, 0, 1, 0] (the failing question's reflection
    # copy too); step 3 (the resumed one): group 0 wrong, group 1 right, so it replays from the restored buffer
    # and gives the question still under tau = 0.5 a reflection copy.
    script = (lambda i: i >= 4, every_other, lambda i: 4 <= i < 8 or (i >= 8 and i % 2 == 0))
    # One minibatch update per group (fewer groups than minibatches): 2 + 3 + 3 updates pay for the 3 steps, and
    # the 2 a fourth step asks for at least do not fit.
    settings = dict(problems=train_problems[:2], budget=Budget(steps=9), reflection_threshold=0.5)
    whole = make_trainer(R3Trainer, untrained_model_dir, tmp_path / "whole", pool=ScriptedPool(*script), **settings)
    whole.train()
    record = read_log(tmp_path / "whole")[2]
    assert (record["reflection_groups"], record["replayed"]) == (1, 2)

    pool = ScriptedPool(*script)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(KilledAfter, untrained_model_dir, tmp_path / "killed", pool=pool, **settings).train()
    resumed = make_trainer(R3Trainer, untrained_model_dir, tmp_path / "killed", pool=pool, **settings)
    resumed.train()
    assert without_time(read_log(tmp_path / "killed")) == without_time(read_log(tmp_path / "whole"))
    assert resumed.history == whole.history
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_two_step_smoke_run_trains_within_budget_and_checkpoints(untrained_model_dir, tmp_path, train_problems):
    trainer = make_trainer(R3Trainer, untrained_model_dir, tmp_path, train_problems, Budget(rollouts=20))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    ledger = trainer.train()
    assert (ledger.steps, ledger.prompts, ledger.rollouts, trainer.stopped_by) == (4, 4, 16, "rollouts")
    assert 0 < ledger.tokens <= 16 * 12
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] is not None for r in log)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert len(saved["variant_state"]["history"]) == 4
    assert json.loads((tmp_path / "ledger.json").read_text())["consumed"]["rollouts"] == 16
