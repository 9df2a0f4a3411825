"""Interpolated modified Kneser-Ney 4-gram model (Chen and Goodman 1999), in numpy.

The count baseline for Q2: fitted on the training 4-grams (w1, w2, w3 → w4), it gives
p(w | w1 w2 w3) for every word w of the vocabulary.

For an order k (k-gram = the last k−1 context words and the predicted word), with
c_k(h w) the count of the k-gram and c_k(h) = Σ_w c_k(h w):

    p_k(w | h) = [c_k(h w) − D_k(c_k(h w)) + γ_k(h) p_{k−1}(w | h′)] / c_k(h),
    γ_k(h)     = D_k1 N1(h •) + D_k2 N2(h •) + D_k3+ N3+(h •),

where h′ drops the first word of h, N_j(h •) is the number of words following h exactly j
times (3+: at least 3), and p_k = p_{k−1} when c_k(h) = 0. At the top order (k = 4) c_4 is
the raw count; below it c_k(h w) is the continuation count N1+(• h w), the number of
distinct words seen before h w (here: before it inside a training 4-gram, i.e. the number
of distinct (k+1)-gram suffixes of training 4-grams ending in h w). The unigram level
(k = 1, empty context) is interpolated with the uniform 1 / V. Each order's discounts come
from its count-of-counts n_1 … n_4:

    Y = n1 / (n1 + 2 n2),  D1 = 1 − 2Y n2/n1,  D2 = 2 − 3Y n3/n2,  D3+ = 3 − 4Y n4/n3,

each clipped to [0.01, j] (at most j keeps the distribution normalised; at least 0.01 keeps
every probability above zero, which the estimates alone guarantee only on real corpora); an
undefined ratio (a zero n_j in a denominator, which only tiny corpora produce) falls back
to Y, or to 0.5 for Y.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

ORDER = 4
MIN_DISCOUNT = 0.01


class KneserNeyModel(NamedTuple):
    vocab_size: int
    keys: tuple  # per order k = 1..4: sorted <int64>[M_k] k-gram ids (base-V digits, oldest word first)
    counts: tuple  # per order: <int64>[M_k] raw (k = 4) or continuation (k < 4) counts
    discounts: np.ndarray  # <float64>[4, 4]: row k−1 is [0, D1, D2, D3+] of order k


def _encode(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Base-V integer of each row of ``ids`` <int>[N, k] (first column most significant)."""
    out = np.zeros(ids.shape[0], np.int64)
    for j in range(ids.shape[1]):
        out = out * vocab_size + ids[:, j].astype(np.int64)
    return out


def discounts_from_counts(counts: np.ndarray) -> np.ndarray:
    """[0, D1, D2, D3+] from the count-of-counts of ``counts`` (Chen and Goodman's estimates)."""
    n = [int(np.sum(counts == j)) for j in range(5)]  # n[1..4]
    y = n[1] / (n[1] + 2 * n[2]) if n[1] > 0 and n[2] > 0 else 0.5
    out = np.zeros(4)
    for j in (1, 2, 3):
        d = j - (j + 1) * y * n[j + 1] / n[j] if n[j] > 0 else y
        out[j] = min(max(d, MIN_DISCOUNT), float(j))
    return out


def fit(contexts: np.ndarray, targets: np.ndarray, vocab_size: int) -> KneserNeyModel:
    """Count tables and discounts from training 4-grams.

    Args:
      contexts: <int>[N, 3] 0-based word indices w1 w2 w3.
      targets: <int>[N] the fourth word w4.
      vocab_size: V (indices must be in [0, V)).
    """
    contexts = np.asarray(contexts)
    targets = np.asarray(targets)
    if contexts.ndim != 2 or contexts.shape[1] != 3 or targets.shape != (contexts.shape[0],):
        raise ValueError(f"expected contexts [N, 3] and targets [N], found {contexts.shape} and {targets.shape}")
    grams = np.concatenate([contexts, targets[:, None]], axis=1)
    if grams.size == 0 or grams.min() < 0 or grams.max() >= vocab_size:
        raise ValueError(f"expected a non-empty set of word indices in [0, {vocab_size}), found "
                         f"{'none' if grams.size == 0 else f'values in {grams.min()}..{grams.max()}'}")
    v = np.int64(vocab_size)
    keys4, counts4 = np.unique(_encode(grams, vocab_size), return_counts=True)
    keys, counts = [None] * ORDER, [None] * ORDER
    keys[ORDER - 1], counts[ORDER - 1] = keys4, counts4.astype(np.int64)
    higher = keys4  # distinct (k+1)-grams
    for k in range(ORDER - 1, 0, -1):
        # N1+(• g): each distinct (k+1)-gram contributes one to its k-suffix.
        suffix = higher % v ** k
        keys[k - 1], c = np.unique(suffix, return_counts=True)
        counts[k - 1] = c.astype(np.int64)
        higher = keys[k - 1]
    discounts = np.stack([discounts_from_counts(c) for c in counts])
    return KneserNeyModel(int(vocab_size), tuple(keys), tuple(counts), discounts)


def _dense_counts(model: KneserNeyModel, k: int, context_ids: np.ndarray) -> np.ndarray:
    """<int64>[U, V] counts of order k for each (k−1)-gram context id (all words w)."""
    v = model.vocab_size
    keys, vals = model.keys[k - 1], model.counts[k - 1]
    query = context_ids[:, None] * np.int64(v) + np.arange(v, dtype=np.int64)[None, :]
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, len(keys) - 1)
    return np.where(keys[pos] == query, vals[pos], 0)


def _interpolate(counts: np.ndarray, d: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """One level: [c − D(c) + γ p_lower] / Σc, or p_lower where the context is unseen."""
    disc = d[np.minimum(counts, 3)]  # d[0] = 0: unseen words lose nothing
    denom = counts.sum(axis=1, keepdims=True).astype(np.float64)
    gamma = disc.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (counts - disc + gamma * lower) / denom
    return np.where(denom > 0, p, lower)


def predict_proba(model: KneserNeyModel, contexts: np.ndarray, *, chunk: int = 8192) -> np.ndarray:
    """p(w | w1 w2 w3) for every word: <float64>[N, V] (rows sum to 1).

    Args:
      contexts: <int>[N, 3] 0-based word indices.
    """
    contexts = np.asarray(contexts)
    if contexts.ndim != 2 or contexts.shape[1] != 3:
        raise ValueError(f"expected contexts of shape [N, 3], found {contexts.shape}")
    v = model.vocab_size
    if contexts.size and (contexts.min() < 0 or contexts.max() >= v):
        raise ValueError(f"expected word indices in [0, {v}), found values in {contexts.min()}..{contexts.max()}")
    # Score each distinct trigram once.
    uniq, inverse = np.unique(_encode(contexts, v), return_inverse=True)
    digits = np.stack([(uniq // np.int64(v) ** (2 - j)) % v for j in range(3)], axis=1)
    uni = _interpolate(_dense_counts(model, 1, np.zeros(1, np.int64)), model.discounts[0],
                       np.full((1, v), 1.0 / v))
    out = np.empty((len(uniq), v))
    for s in range(0, len(uniq), chunk):
        rows = digits[s:s + chunk]
        p = np.broadcast_to(uni, (len(rows), v))
        for k in range(2, ORDER + 1):
            ctx = _encode(rows[:, 4 - k:], v)  # the last k−1 context words
            p = _interpolate(_dense_counts(model, k, ctx), model.discounts[k - 1], p)
        out[s:s + chunk] = p
    return out[inverse.reshape(-1)]


def log_prob(model: KneserNeyModel, contexts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p(target | context) <float64>[N] (natural log)."""
    p = predict_proba(model, contexts)
    return np.log(p[np.arange(len(targets)), np.asarray(targets)])
