"""The spec's unit-test numbers (../shared/docs/variants.md §1.2, §2-5, §7) for the pure functions."""

import pytest
import torch

from trainers import algos


def approx(values, rel=1e-3, abs=1e-4):
    return pytest.approx(values, rel=rel, abs=abs)


def test_grpo_advantages_unbiased_std():
    a = algos.grpo_advantages(torch.tensor([[1.0, 0, 0, 1]]))
    assert a[0].tolist() == approx([0.866, -0.866, -0.866, 0.866])


def test_group_of_one_has_zero_advantage():
    assert algos.grpo_advantages(torch.tensor([[1.0]])).tolist() == [[0.0]]


def test_dr_grpo_mean_centred():
    assert algos.mean_centred_advantages(torch.tensor([[1.0, 0, 0, 1]]))[0].tolist() == [0.5, -0.5, -0.5, 0.5]


def test_k3_kl():
    assert algos.k3_kl(torch.tensor(-1.0), torch.tensor(-1.2)).item() == pytest.approx(0.018731, abs=1e-6)


def test_clip_higher_and_negative_clip():
    assert algos.clipped_objective(torch.tensor(1.3), torch.tensor(1.0)).item() == pytest.approx(1.2)
    assert algos.clipped_objective(torch.tensor(1.3), torch.tensor(1.0), eps_high=0.28).item() == pytest.approx(1.28)
    ratio = torch.tensor(0.7, requires_grad=True)
    objective = algos.clipped_objective(ratio, torch.tensor(-1.0))
    assert objective.item() == pytest.approx(-0.8)
    objective.backward()
    assert ratio.grad.item() == 0.0  # clipped: no gradient


def test_dual_clip_bounds_negative_advantage_tokens():
    objective = algos.clipped_objective(torch.tensor(5.0), torch.tensor(-1.0), dual_clip=3.0)
    assert objective.item() == pytest.approx(-3.0)


def test_aggregations():
    loss = torch.tensor([[1.0, 1, 0, 0], [2, 2, 2, 2]])
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    assert algos.seq_mean_token_mean(loss, mask).item() == pytest.approx(1.5)
    assert algos.token_mean(loss, mask).item() == pytest.approx(1.6667, abs=1e-4)
    assert algos.seq_mean_token_sum(loss, mask).item() == pytest.approx(5.0)
    assert algos.seq_mean_token_sum_norm(loss, mask, max_length=8).item() == pytest.approx(0.625)


def test_dapo_overlong_penalty_and_dynamic_sampling():
    lengths = torch.tensor([16000, 16384, 18432, 20480])
    assert algos.overlong_penalty(lengths, 20480, 4096).tolist() == approx([0, 0, -0.5, -1.0])
    groups = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]])
    assert algos.non_degenerate_groups(groups).tolist() == [False, False, True]


def test_dgpo_mad_advantages_and_question_weights():
    rewards = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]])
    a = algos.mad_advantages(rewards)
    assert a[0].tolist() == approx([2.0, -0.667, -0.667, -0.667])
    assert a[1].tolist() == approx([0.667, 0.667, 0.667, -2.0])
    assert a[2].tolist() == [0.0, 0.0, 0.0, 0.0]
    valid = algos.non_degenerate_groups(rewards)
    weights = algos.difficulty_weights(rewards.mean(dim=-1), valid, temperature=2.0)
    assert weights.tolist() == approx([1.1244, 0.8756, 1.0])
    assert (a * weights[:, None])[0, 0].item() == pytest.approx(2.2488, abs=1e-3)


def test_n_grpo_neighbour_mixing():
    embeddings = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1], [0.7, 0.7], [-1, 0]])
    logits = torch.tensor([[2.0, 1.5, 0.1, 1.0, 0.0]])
    candidates, weights, mixed = algos.neighbour_mixing(logits, embeddings, temperature=0.7, k=3)
    assert candidates[0].tolist() == [0, 1, 3]
    assert weights[0].tolist() == approx([0.5783, 0.2831, 0.1386])
    assert mixed[0].tolist() == approx([0.9301, 0.1253])


# ------------------------------------------------------------------------------------------ update_change


def test_update_change_is_zero_for_a_rescaled_update_and_one_for_disjoint_ones():
    weights = torch.tensor([[0.5, -0.25, 0.0], [1.0, 0.0, -2.0]])
    assert algos.update_change(weights, 3.0 * weights) == pytest.approx(0.0, abs=1e-12)
    assert algos.update_change(weights, -weights) == pytest.approx(1.0)  # the opposite update
    only_first = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    only_last = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert algos.update_change(only_first, only_last) == pytest.approx(1.0)
    assert algos.update_change(torch.zeros(2, 3), only_last) == 1.0  # a variant that trains where GRPO has nothing
    assert algos.update_change(torch.zeros(2, 3), torch.zeros(2, 3)) == 0.0


def test_update_change_is_the_share_of_weight_moved():
    # Reference weight split 50/50 over two tokens; the variant puts 75/25: a quarter of the weight moved.
    assert algos.update_change(torch.tensor([0.75, 0.25]), torch.tensor([0.5, 0.5])) == pytest.approx(0.25)
