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


def test_probabilities_match_the_model_in_chunks():
    params = lm.init_params(jax.random.PRNGKey(0), 12, 4, 8, std=0.5)
    ids = np.random.default_rng(0).integers(0, 12, (11, 3)).astype(np.int32)
    p = scoring.probabilities(params, ids, chunk=4)
    assert p.shape == (11, 12) and p.dtype == np.float64
    np.testing.assert_allclose(p, np.asarray(lm.predict_proba(params, ids)), rtol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
