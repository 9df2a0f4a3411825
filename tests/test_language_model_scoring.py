"""Scoring next-word distributions, the mixture weight, top and nearest words."""
import math

import jax
import numpy as np
import pytest

from mp_jax.models import language_model as lm
from mp_jax.models import language_model_scoring as scoring


def test_score_and_ranks():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.25, 0.25]])
    targets = np.array([0, 0, 2])
    np.testing.assert_array_equal(scoring.target_ranks(probs, targets), [0, 2, 1])
    s = scoring.score(probs, targets, k=2)
    ce = -np.mean(np.log([0.7, 0.1, 0.25]))
    assert s["test_cross_entropy"] == pytest.approx(ce) and s["perplexity"] == pytest.approx(math.exp(ce))
    assert s["top1_accuracy"] == pytest.approx(1 / 3) and s["top2_accuracy"] == pytest.approx(2 / 3)


def test_mixture_weight_is_the_grid_minimum():
    rng = np.random.default_rng(0)
    p_a, p_b = rng.uniform(0.01, 1, 200), rng.uniform(0.01, 1, 200)
    lam, loss = scoring.choose_mixture_weight(p_a, p_b)
    assert 0 <= lam <= 1
    for other in np.linspace(0, 1, 101):
        assert loss <= -np.mean(np.log(other * p_a + (1 - other) * p_b)) + 1e-12
    assert scoring.choose_mixture_weight(p_a, p_a * 0.5)[0] == 1.0  # the better model alone


def test_top_and_nearest_words():
    words = ["a", "b", "c", "d"]
    assert scoring.top_words(np.array([0.1, 0.4, 0.4, 0.1]), words, 2) == [["b", 0.4], ["c", 0.4]]
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    near = scoring.nearest_words(emb, words, "a", k=3)
    assert [w for w, _ in near] == ["b", "c", "d"] and near[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    with pytest.raises(KeyError, match="not in the vocabulary"):
        scoring.nearest_words(emb, words, "z")


@pytest.mark.slow
def test_probabilities_match_the_model_in_chunks():
    params = lm.init_params(jax.random.PRNGKey(0), 12, 4, 8, std=0.5)
    ids = np.random.default_rng(0).integers(0, 12, (11, 3)).astype(np.int32)
    p = scoring.probabilities(params, ids, chunk=4)
    assert p.shape == (11, 12) and p.dtype == np.float64
    np.testing.assert_allclose(p, np.asarray(lm.predict_proba(params, ids)), rtol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------- the course's trigrams, or substitutes
WORDS = ["the", "new", "york", "city", "not", "is", "it", ".", "he", "said", "in", "was", "and", "big", "dog"]
TRAIN = [("in the new", "york", 9), ("in the new", "city", 1),  # new → york: peaked, 9 / (10 + 1)
         ("he was big", "dog", 2),  # big → dog every time, but seen twice: 2 / (2 + 1)
         ("he said it", ".", 5), ("it is it", ".", 1),  # it → "." : most peaked of all, but punctuation
         ("was not the", "dog", 7), ("is not the", "city", 4),  # a negation as word 2
         ("the dog is", "not", 4), ("the dog is", "big", 1), ("it was he", "not", 1)]  # followed by a negation
TEST = ["and the city", "it was he", "is not the", "he said it", "in the new", "the dog is", "it is it",
        "was not the", "he was big", "in the new"]


def _ids(trigram):
    return [WORDS.index(w) for w in trigram.split()]


def _data():
    x = np.array([_ids(t) for t, _, n in TRAIN for _ in range(n)])
    y = np.array([WORDS.index(w) for _, w, n in TRAIN for _ in range(n)])
    return x, y, np.array([_ids(t) for t in TEST])


def _course(trigram, role):
    return scoring.CourseTrigram(trigram, role, ("x", 0.5))


def test_a_course_trigram_in_the_vocabulary_is_used_as_it_is():
    x, y, test = _data()
    [a] = scoring.anchor_trigrams(WORDS, x, y, test, [_course("the dog is", "negation")])
    assert a["source"] == "course" and a["trigram"] == a["stands_for"] == "the dog is"
    assert a["ids"] == _ids("the dog is") and a["missing"] == [] and a["why"]["training_count"] == 5
    assert a["role"] == "negation" and a["course_report_top"] == ["x", 0.5]


def test_substitutes_play_each_role():
    x, y, test = _data()
    course = [_course("what does new", "collocation"), _course("do nt like", "negation"),
              _course("does nt get", "negation"), _course("but it 's", "negation"),
              _course("nt get it", "sentence_end"), _course("said , how", "question")]
    picks = scoring.anchor_trigrams(WORDS, x, y, test, course)
    got = {a["stands_for"]: a for a in picks}
    assert [a["stands_for"] for a in picks] == [c.trigram for c in course]
    # the last word with the most peaked next word ("it" → "." is punctuation, not a collocation)
    col = got["what does new"]
    assert col["source"] == "substitute" and col["trigram"] == "in the new" and col["missing"] == ["what", "does"]
    assert col["why"]["top_next_word"] == "york" and col["why"]["peak"] == pytest.approx(9 / 11)
    # a negation as word 2, as in "do nt like": the most frequent first, then the next one (none twice)
    assert got["do nt like"]["trigram"] == "was not the" and got["do nt like"]["why"]["position"] == 2
    assert got["does nt get"]["trigram"] == "is not the"
    assert got["does nt get"]["why"]["min_count"] == 1  # nothing left seen 5 times: the floor drops to once
    # "but it 's" holds no negation: the trigram most often followed by one
    neg = got["but it 's"]
    assert neg["trigram"] == "the dog is" and neg["why"]["score"] == pytest.approx(4 / 6)
    assert got["nt get it"]["trigram"] == "he said it" and got["nt get it"]["why"]["followed_by_class"] == 5
    # no question word in this vocabulary: nothing stands in, and it says why
    q = got["said , how"]
    assert q["source"] == "none" and q["trigram"] is None and q["ids"] is None and "no word of" in q["why"]["rule"]
    for a in picks:
        if a["source"] == "substitute":
            assert a["ids"] == _ids(a["trigram"]) and a["trigram"] in TEST and a["why"]["rule"]


def test_the_pseudo_count_and_the_course_trigrams_already_used():
    x, y, test = _data()
    # with every trigram allowed, "big" (2 of 2) would beat "new" (9 of 10) on the raw share
    [col] = scoring.anchor_trigrams(WORDS, x, y, test, [_course("what does new", "collocation")], min_count=1)
    assert col["trigram"] == "in the new"
    # a course trigram used as it is is not picked again as another one's substitute
    picks = scoring.anchor_trigrams(WORDS, x, y, test, [_course("he said it", "sentence_end"),
                                                        _course("nt get it", "sentence_end")])
    assert [a["source"] for a in picks] == ["course", "substitute"] and picks[1]["trigram"] == "it is it"
    # the role of the course's own trigrams
    roles = {c.trigram: c.role for c in scoring.COURSE_TRIGRAMS}
    assert roles == {"but it 's": "negation", "what does new": "collocation", "do nt like": "negation",
                     "said , how": "question", "does nt get": "negation", "nt get it": "sentence_end"}


def test_context_counts_count_training_contexts():
    train_x = np.array([[1, 2, 3], [1, 2, 3], [3, 2, 1], [0, 0, 0]])
    x = np.array([[1, 2, 3], [3, 2, 1], [2, 2, 2], [0, 0, 0], [1, 2, 3]])
    np.testing.assert_array_equal(scoring.context_counts(train_x, x), [2, 1, 0, 1, 2])


def test_by_context_frequency_bins_rows_and_its_weighted_means_are_the_whole_cross_entropy():
    rng = np.random.default_rng(0)
    counts = np.array([0, 0, 1, 5, 6, 50, 51, 400, 3, 0])
    p = {"a": rng.uniform(0.01, 1.0, len(counts)), "b": rng.uniform(0.01, 1.0, len(counts))}
    out = scoring.by_context_frequency(counts, p)
    assert out["bins"] == ["0", "1-5", "6-50", ">50"] and out["n"] == [3, 3, 2, 2]
    assert sum(out["share"]) == pytest.approx(1.0)
    for name, q in p.items():
        ce = out["cross_entropy"][name]
        assert ce[1] == pytest.approx(-np.mean(np.log(q[[2, 3, 8]])))
        assert np.dot(out["n"], ce) / len(counts) == pytest.approx(-np.mean(np.log(q)))
    empty = scoring.by_context_frequency(np.array([0, 2]), {"a": np.array([0.5, 0.5])})
    assert empty["n"] == [1, 1, 0, 0] and empty["cross_entropy"]["a"][2:] == [None, None]
