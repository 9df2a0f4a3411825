"""Scoring next-word distributions (:mod:`mp_jax.models.language_model`, and the count
baseline :mod:`mp_jax.models.kneser_ney`), mixing two of them, and reading the embedding.

* :func:`probabilities` — the network's p(w4 | w1 w2 w3) over a whole split.
* :func:`target_ranks`, :func:`score` — cross-entropy (nats), perplexity, top-1 / top-k
  accuracy of full distributions.
* :func:`choose_mixture_weight` — the weight of a linear mixture of two models that
  minimises the cross-entropy (chosen on the validation split).
* :func:`top_words`, :func:`nearest_words` — the k most probable next words, and the k
  nearest words by cosine similarity of their embeddings.

The model and its loss are in ``docs/language_model.md``.
"""
from __future__ import annotations

import math

import jax
import numpy as np

from mp_jax import metrics
from mp_jax.models import language_model as lm

_predict_proba = jax.jit(lm.predict_proba)


def probabilities(params: lm.LMParams, ids: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """<float64>[N, V] next-word probabilities for trigrams ``ids`` <int>[N, 3], computed in
    chunks of one padded shape (one compilation for every split)."""
    return metrics.chunked(_predict_proba, params, ids, chunk, dtype=np.float64)


def target_ranks(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """How many words score strictly higher than the target, per row (0 = top-1)."""
    pt = probs[np.arange(len(targets)), targets]
    return np.sum(probs > pt[:, None], axis=1)


def score(probs: np.ndarray, targets: np.ndarray, k: int = 10) -> dict:
    """Cross-entropy (nats), perplexity and top-1 / top-``k`` accuracy of full
    distributions ``probs`` <float>[N, V] for ``targets`` <int>[N]."""
    pt = probs[np.arange(len(targets)), targets]
    ce = float(-np.mean(np.log(np.maximum(pt, 1e-300))))
    ranks = target_ranks(probs, targets)
    return {"test_cross_entropy": ce, "perplexity": math.exp(ce),
            "top1_accuracy": float(np.mean(ranks < 1)), f"top{k}_accuracy": float(np.mean(ranks < k))}


def choose_mixture_weight(p_a: np.ndarray, p_b: np.ndarray, grid: int = 101) -> tuple[float, float]:
    """λ on a grid over [0, 1] minimising −mean log(λ p_a + (1 − λ) p_b), where ``p_a`` and
    ``p_b`` <float>[N] are two models' probabilities of the true words; returns (λ, loss)."""
    lams = np.linspace(0.0, 1.0, grid)
    losses = [-np.mean(np.log(np.maximum(lam * p_a + (1 - lam) * p_b, 1e-300))) for lam in lams]
    i = int(np.argmin(losses))
    return float(lams[i]), float(losses[i])


def top_words(p: np.ndarray, words, k: int = 10) -> list:
    """``[[word, probability], ...]``: the ``k`` most probable words of one distribution
    <float>[V] (ties in vocabulary order)."""
    order = np.argsort(-p, kind="stable")[:k]
    return [[words[i], float(p[i])] for i in order]


def nearest_words(emb: np.ndarray, words, query: str, k: int = 10) -> list:
    """``[[word, cosine similarity], ...]``: the ``k`` words whose embeddings (rows of
    ``emb`` <float>[V, D]) are most similar to ``query``'s, the query itself excluded."""
    e = np.asarray(emb, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    words = list(words)
    if query not in words:
        raise KeyError(f"nearest_words: {query!r} is not in the vocabulary of {len(words)} words")
    i = words.index(query)
    sims = e @ e[i]
    sims[i] = -np.inf
    order = np.argsort(-sims, kind="stable")[:k]
    return [[words[j], float(sims[j])] for j in order]
