"""Scoring next-word distributions (:mod:`mp_jax.models.language_model`, and the count
baseline :mod:`mp_jax.models.kneser_ney`), mixing two of them, and reading the embedding.

* :func:`probabilities` — the network's p(w4 | w1 w2 w3) over a whole split.
* :func:`target_ranks`, :func:`score` — cross-entropy (nats), perplexity, top-1 / top-k
  accuracy of full distributions.
* :func:`choose_mixture_weight` — the weight of a linear mixture of two models that
  minimises the cross-entropy (chosen on the validation split).
* :func:`top_words`, :func:`nearest_words` — the k most probable next words, and the k
  nearest words by cosine similarity of their embeddings.
* :func:`anchor_trigrams` — the course report's sample trigrams where their words are in the
  vocabulary, and otherwise a test trigram that plays the same role (:data:`COURSE_TRIGRAMS`).
* :func:`context_counts`, :func:`by_context_frequency` — how often each trigram was seen as a
  context in training, and each model's cross-entropy over the test rows grouped by that count
  (:data:`FREQUENCY_BINS`).

The model and its loss are in ``docs/language_model.md``.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import numpy as np

from mp_jax.engine import metrics
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


# ----------------------------------------------------------------------------- by context frequency
#: (label, lowest count, highest count or None) of each group of contexts: a trigram (w1 w2 w3) seen
#: that many times as the context of a training 4-gram
FREQUENCY_BINS = (("0", 0, 0), ("1-5", 1, 5), ("6-50", 6, 50), (">50", 51, None))


def context_counts(train_x, x) -> np.ndarray:
    """<int64>[M]: how many training rows of ``train_x`` <int>[N, 3] have the trigram of each
    row of ``x`` <int>[M, 3] as their context."""
    v = int(max(np.max(train_x), np.max(x))) + 1
    key = lambda a: (np.asarray(a, np.int64)[:, 0] * v + np.asarray(a, np.int64)[:, 1]) * v + np.asarray(a, np.int64)[:, 2]  # noqa: E731
    keys, counts = np.unique(key(train_x), return_counts=True)
    q = key(x)
    i = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return np.where(keys[i] == q, counts[i], 0)


def by_context_frequency(counts: np.ndarray, p_true: dict, bins=FREQUENCY_BINS) -> dict:
    """Each model's cross-entropy over the rows grouped by how often their context was seen.

    Args:
      counts: <int>[M] training count of each row's context (:func:`context_counts`).
      p_true: {model name: <float>[M] its probability of each row's true next word}.
    Returns:
      ``bins`` (labels), ``n`` (rows per bin), ``share`` (of all rows) and ``cross_entropy``
      {name: [nats per bin, None where a bin is empty]}; the means weighted by ``n`` are the
      models' whole cross-entropies.
    """
    counts = np.asarray(counts)
    masks = [(counts >= lo) & (counts <= (np.inf if hi is None else hi)) for _, lo, hi in bins]
    n = [int(m.sum()) for m in masks]
    ce = {name: [float(-np.mean(np.log(np.maximum(np.asarray(p)[m], 1e-300)))) if k else None
                 for m, k in zip(masks, n)] for name, p in p_true.items()}
    return {"bins": [b[0] for b in bins], "n": n, "share": [k / max(len(counts), 1) for k in n],
            "cross_entropy": ce}


# ----------------------------------------------------------------------------- the course's trigrams
NEGATIONS = ("not", "nt", "n't", "no", "never", "nor", "neither", "cannot")
SENTENCE_ENDS = (".", "?", "!")  # the last token of every sentence in raw_sentences.txt and the stand-ins
QUESTION_WORDS = ("how", "what", "why", "where", "when", "who", "whom", "whose", "which", "whither", "whence")
ROLE_WORDS = {"negation": NEGATIONS, "sentence_end": SENTENCE_ENDS, "question": QUESTION_WORDS}
ROLES = {
    "collocation": "a fixed collocation or proper noun: the last word nearly fixes the next (new → york)",
    "negation": "a negation: a negation word in the trigram, or next (but it 's → not)",
    "sentence_end": "the end of a sentence: the next word is the sentence-end token (nt get it → .)",
    "question": "a question word opening a clause: an auxiliary or verb comes next (said , how → did)",
}


class CourseTrigram(NamedTuple):
    """One of the course report's sample trigrams: its words, its role (a key of
    :data:`ROLES`) and the report's top prediction (word, probability) on the course data."""

    trigram: str
    role: str
    reported_top: tuple


# Q2 (b) of the course report, in its order: samples 1-6 with their network's top prediction
COURSE_TRIGRAMS = (
    CourseTrigram("but it 's", "negation", ("not", 0.3752)),
    CourseTrigram("what does new", "collocation", ("york", 0.6466)),
    CourseTrigram("do nt like", "negation", ("it", 0.2501)),
    CourseTrigram("said , how", "question", ("did", 0.1475)),
    CourseTrigram("does nt get", "negation", ("it", 0.2791)),
    CourseTrigram("nt get it", "sentence_end", (".", 0.7512)),
)


class _Counts:
    """Training-set counts of trigrams, of their continuations and of (third word, next word)."""

    def __init__(self, train_x, train_y, vocab: int):
        self.v, self.y = vocab, np.asarray(train_y, np.int64)
        x = np.asarray(train_x, np.int64)
        self.keys, self.inv, self.n = np.unique(self.key(x), return_inverse=True, return_counts=True)
        self.bigram = np.zeros((vocab, vocab), np.int64)
        np.add.at(self.bigram, (x[:, 2], self.y), 1)

    def key(self, x) -> np.ndarray:
        """One integer per trigram of ``x`` <int>[N, 3]."""
        x = np.asarray(x, np.int64)
        return (x[:, 0] * self.v + x[:, 1]) * self.v + x[:, 2]

    def _lookup(self, values: np.ndarray, keys: np.ndarray) -> np.ndarray:
        i = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[i] == keys, values[i], 0)

    def count(self, keys) -> np.ndarray:
        """How often each trigram (by :meth:`key`) occurs in the training set."""
        return self._lookup(self.n, keys)

    def next_in(self, keys, ids) -> np.ndarray:
        """How often each trigram is followed by a word of ``ids`` in the training set."""
        hits = np.bincount(self.inv, weights=np.isin(self.y, ids), minlength=len(self.keys))
        return self._lookup(hits.astype(np.int64), keys)


def _text(ids, words) -> str:
    return " ".join(words[int(i)] for i in ids)


def _pick(course: CourseTrigram, words: list, counts: _Counts, cands: np.ndarray, min_count: int) -> tuple:
    """(index into ``cands`` or None, the rule in words, the numbers that decided) for one course
    trigram's role; ``cands`` <int>[M, 3] are the distinct test trigrams still free, in test order."""
    seen = counts.count(counts.key(cands))
    ok = np.ones(len(cands), bool)
    if course.role == "collocation":
        row = counts.bigram[cands[:, 2]]
        top = row.argmax(axis=1)
        # one pseudo-count of another word: a last word seen a handful of times does not win by chance
        score = row[np.arange(len(cands)), top] / (row.sum(axis=1) + 1.0)
        ok &= np.array([any(ch.isalpha() for ch in words[t]) for t in top], bool)
        rule = ("the test trigram whose last word has the most peaked next word in the training data (the count of "
                "its most frequent next word, a word rather than punctuation, over the last word's count + 1); among "
                "those ending in that word, the most frequent in training")

        def numbers(i):
            return {"last_word": words[cands[i, 2]], "top_next_word": words[top[i]], "peak": float(score[i]),
                    "last_word_count": int(row[i].sum())}
    else:
        cls = [words.index(w) for w in ROLE_WORDS[course.role] if w in words]
        if not cls:
            return None, f"no word of {list(ROLE_WORDS[course.role])} is in the vocabulary", {"candidates": 0}
        where = [k for k, w in enumerate(course.trigram.split()) if w in ROLE_WORDS[course.role]]
        if where:  # the course trigram holds a word of the role's class: that class at the same place
            k = where[0]
            ok &= np.isin(cands[:, k], cls)
            score = np.zeros(len(cands))
            rule = (f"the most frequent test trigram in training with one of {[words[c] for c in cls]} as word "
                    f"{k + 1}, as in the course's")

            def numbers(i):
                return {"position": k + 1}
        else:  # the role is the next word: the trigram most often followed by the class in training
            hits = counts.next_in(counts.key(cands), cls)
            ok &= hits > 0
            score = hits / (seen + 1.0)  # the pseudo-count again: 5 of 6 beats 1 of 1
            rule = (f"the test trigram most often followed by one of {[words[c] for c in cls]} in the training data "
                    f"(that count over the trigram's count + 1)")

            def numbers(i):
                return {"followed_by_class": int(hits[i]), "score": float(score[i])}
    rule += (f"; only trigrams seen ≥ {min_count} times in training (≥ once where none is); ties: the more "
             f"frequent, then the first in test order")
    floor = next((f for f in (min_count, 1) if (ok & (seen >= f)).any()), None)
    if floor is None:
        return None, rule, {"candidates": 0}
    ok &= seen >= floor
    i = min(np.flatnonzero(ok), key=lambda j: (-score[j], -seen[j], j))
    return i, rule, {**numbers(i), "training_count": int(seen[i]), "candidates": int(ok.sum()), "min_count": floor}


def anchor_trigrams(words: Sequence[str], train_x, train_y, test_x, course: Sequence[CourseTrigram] = COURSE_TRIGRAMS,
                    min_count: int = 5) -> list:
    """The trigram to show for each course trigram: its own where all its words are in the
    vocabulary, otherwise a distinct test trigram that plays the same role.

    Roles (:data:`ROLES`) and their rules, computed from the training counts over the distinct
    trigrams of ``test_x`` (in order of first appearance), none picked twice nor one of the
    course trigrams used as they are; only trigrams seen at least ``min_count`` times in
    training qualify (at least once where none does):

    * ``collocation`` (what does new → york): the most peaked next word after the last word,
      count(w3, w) / (count(w3) + 1) for w3's most frequent next word w, which must be a word
      and not punctuation (the + 1 keeps a last word seen twice from winning on 2 of 2).
    * a course trigram that holds a word of its role's class at position k (``negation``:
      :data:`NEGATIONS`, as in do nt like; ``question``: :data:`QUESTION_WORDS`, as in said ,
      how): the most frequent test trigram with a word of that class at position k.
    * a course trigram without one, whose next word is of the class (``negation``: but it 's →
      not; ``sentence_end``: :data:`SENTENCE_ENDS`, nt get it → .): the highest count of
      training occurrences followed by a word of the class over the trigram's count + 1.

    Ties go to the more frequent trigram, then to the first in test order.

    Args:
      words: the vocabulary (index → word).
      train_x, train_y: the training trigrams <int>[N, 3] and next words <int>[N] (0-based).
      test_x: the test trigrams <int>[M, 3].
    Returns:
      One dict per course trigram, in ``course``'s order: ``trigram`` (the one used, or None
      where no test trigram fits), ``ids`` (its word ids), ``source`` ("course", "substitute"
      or "none"), ``stands_for`` (the course trigram), ``role``, ``role_description``,
      ``course_report_top`` (word, probability on the course data), ``missing`` (its words
      outside the vocabulary) and ``why`` (the rule in words and the numbers that decided).
    """
    words = list(words)
    counts = _Counts(train_x, train_y, len(words))
    test = np.asarray(test_x, np.int64)
    _, first = np.unique(counts.key(test), return_index=True)
    distinct = test[np.sort(first)]
    texts = [_text(t, words) for t in distinct]
    out, used = [], set()
    for c in course:
        missing = [w for w in c.trigram.split() if w not in words]
        entry = {"trigram": None, "ids": None, "source": "none", "stands_for": c.trigram, "role": c.role,
                 "role_description": ROLES[c.role], "course_report_top": list(c.reported_top), "missing": missing}
        if not missing:
            ids = [words.index(w) for w in c.trigram.split()]
            seen = int(counts.count(counts.key(np.array([ids])))[0])
            entry.update(trigram=c.trigram, ids=ids, source="course",
                         why={"rule": "all its words are in the vocabulary: the course's own", "training_count": seen})
            used.add(c.trigram)
        out.append(entry)
    for entry, c in zip(out, course):
        if entry["source"] == "course":
            continue
        free = np.array([t not in used for t in texts], bool)
        cands = distinct[free]
        i, rule, numbers = _pick(c, words, counts, cands, min_count)
        entry["why"] = {"rule": rule, **numbers}
        if i is not None:
            entry.update(trigram=_text(cands[i], words), ids=[int(w) for w in cands[i]], source="substitute")
            used.add(entry["trigram"])
    return out
