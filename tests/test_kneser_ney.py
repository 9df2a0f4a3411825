"""Interpolated modified Kneser-Ney 4-gram model: hand-checked values, normalisation, a
loop-based reference, speed."""
import collections
import itertools
import time

import numpy as np
import pytest

from mp_jax.models import kneser_ney as kn

A, B, C = 0, 1, 2
# Training 4-grams (w1 w2 w3 → w4) of the hand-worked example, with multiplicities.
TOY = [((A, A, A), B)] * 3 + [((A, A, A), C)] + [((B, A, A), B)] * 2 + [((C, A, A), A)] + [((A, B, C), A)] * 4


def toy_model():
    x = np.array([g for g, _ in TOY])
    y = np.array([w for _, w in TOY])
    return kn.fit(x, y, 3)


def test_hand_checked_discounts():
    """Count-of-counts per order (V = 3, words a b c):
    order 4 raw counts aaab 3, aaac 1, baab 2, caaa 1, abca 4 → n1..n4 = 2,1,1,1, Y = 1/2,
      D1 = 1 − 2·½·1/2 = ½, D2 = 2 − 3·½·1/1 = ½, D3+ = 3 − 4·½·1/1 = 1;
    order 3 continuation counts aab 2 (after a, b), aac 1, aaa 1, bca 1 → n = 3,1,0,0, Y = 3/5,
      D1 = 1 − 2·⅗·⅓ = 0.6, D2 = 2 − 0 = 2, D3+ = Y = 0.6 (n3 = 0);
    order 2: ab, ac, aa, ca once each → n = 4,0 → Y = ½ (fallback), D1 = 1, D2 = D3+ = ½;
    order 1: a 2 (after a, c), b 1, c 1 → n = 2,1,0 → Y = ½, D1 = ½, D2 = 2, D3+ = ½."""
    m = toy_model()
    np.testing.assert_allclose(m.discounts, [[0, .5, 2, .5], [0, 1, .5, .5], [0, .6, 2, .6], [0, .5, .5, 1]])


def test_hand_checked_probabilities():
    """p1 = [(2−2+3/3)/4, (1−½+1)/4, (1−½+1)/4] = [.25, .375, .375];
    p2(·|a) = (0 + 3·p1)/3 = p1 (D1 = 1 removes everything);
    p3(·|a a) = [(1−.6+3.2·.25)/4, (2−2+3.2·.375)/4, (1−.6+3.2·.375)/4] = [.3, .3, .4];
    p4(·|a a a) = [(0+1.5·.3)/4, (3−1+1.5·.3)/4, (1−½+1.5·.4)/4] = [.1125, .6125, .275];
    p4(·|c a a) = [(1−½+½·.3)/1, ½·.3, ½·.4] = [.65, .15, .2];
    unseen contexts back off through the unseen levels: p(·|b b a) = p(·|a c a) = p2(·|a) = p1."""
    m = toy_model()
    p = kn.predict_proba(m, np.array([[A, A, A], [C, A, A], [B, B, A], [A, C, A], [B, A, A]]))
    np.testing.assert_allclose(p[0], [0.1125, 0.6125, 0.275], rtol=1e-12)
    np.testing.assert_allclose(p[1], [0.65, 0.15, 0.2], rtol=1e-12)
    np.testing.assert_allclose(p[2], [0.25, 0.375, 0.375], rtol=1e-12)
    np.testing.assert_allclose(p[3], [0.25, 0.375, 0.375], rtol=1e-12)  # "a c a", "c a" unseen → p2(·|a)
    # "b a a" → b twice: c(h) = 2, γ = D2 = ½ → [½·.3/2, (2 − ½ + ½·.3)/2, ½·.4/2]
    np.testing.assert_allclose(p[4], [0.075, 0.825, 0.1], rtol=1e-12)


def reference_probability(grams: list, v: int, context: tuple, word: int) -> float:
    """The recursion written directly from the definitions, with dictionaries and loops."""
    raw = collections.Counter(grams)
    tables = {4: dict(raw)}
    distinct = set(raw)
    for k in (3, 2, 1):
        cont = collections.Counter(g[1:] for g in distinct)
        tables[k] = dict(cont)
        distinct = set(cont)

    def discounts(table):
        n = collections.Counter(table.values())
        y = n[1] / (n[1] + 2 * n[2]) if n[1] and n[2] else 0.5
        d = [0.0]
        for j in (1, 2, 3):
            dj = j - (j + 1) * y * n[j + 1] / n[j] if n[j] else y
            d.append(min(max(dj, 0.01), j))
        return d

    def p(k, h, w):
        if k == 0:
            return 1.0 / v
        table, d = tables[k], discounts(tables[k])
        follow = {g[-1]: c for g, c in table.items() if g[:-1] == h}
        total = sum(follow.values())
        lower = p(k - 1, h[1:], w)
        if total == 0:
            return lower
        gamma = sum(d[min(c, 3)] for c in follow.values())
        c = follow.get(w, 0)
        return (c - d[min(c, 3)] + gamma * lower) / total

    return p(4, tuple(context), word)


@pytest.mark.parametrize("v,n,seed", [(4, 60, 0), (6, 300, 1), (9, 500, 2)])
def test_matches_a_loop_reference_and_sums_to_one(v, n, seed):
    rng = np.random.default_rng(seed)
    # A skewed source so that counts of 1, 2, 3 and 4+ all occur.
    probs = rng.dirichlet(np.full(v, 0.4))
    grams = rng.choice(v, size=(n, 4), p=probs)
    m = kn.fit(grams[:, :3], grams[:, 3], v)
    contexts = np.array(list(itertools.product(range(v), repeat=3)))
    p = kn.predict_proba(m, contexts)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert p.min() > 0.0
    as_tuples = [tuple(g) for g in grams.tolist()]
    check = rng.choice(len(contexts), size=12, replace=False)
    for i in check:
        for w in range(v):
            ref = reference_probability(as_tuples, v, tuple(contexts[i]), w)
            assert p[i, w] == pytest.approx(ref, rel=1e-12), (contexts[i], w)


def test_log_prob_and_seen_grams_beat_unseen():
    m = toy_model()
    lp = kn.log_prob(m, np.array([[A, B, C], [A, B, C]]), np.array([A, B]))
    assert lp[0] > lp[1]  # "a b c → a" seen 4 times
    np.testing.assert_allclose(np.exp(lp[0]), kn.predict_proba(m, np.array([[A, B, C]]))[0, A])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        kn.fit(np.zeros((4, 2), int), np.zeros(4, int), 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        kn.fit(np.array([[0, 1, 3]]), np.array([0]), 3)
    m = toy_model()
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        kn.predict_proba(m, np.array([[0, 1, 5]]))


def test_scores_a_course_sized_test_split_in_seconds():
    """372,500 training 4-grams and 46,500 test trigrams over V = 250, a Zipf-like source."""
    rng = np.random.default_rng(0)
    v = 250
    probs = 1.0 / np.arange(1, v + 1)
    probs /= probs.sum()
    grams = rng.choice(v, size=(372_500 + 46_500, 4), p=probs)
    t = time.perf_counter()
    m = kn.fit(grams[:372_500, :3], grams[:372_500, 3], v)
    p = kn.predict_proba(m, grams[372_500:, :3])
    seconds = time.perf_counter() - t
    assert p.shape == (46_500, v)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-10)
    assert seconds < 30.0, f"fitting and scoring took {seconds:.1f}s"


def test_discounts_are_clipped_so_probabilities_stay_positive():
    # n1 = 1, n2 = 1, n3 = 5: Y = 1/3, D2 = 2 − 3·⅓·5 = −3 → 0.01; D3+ = 3 − 0 = 3.
    d = kn.discounts_from_counts(np.array([1, 2, 3, 3, 3, 3, 3]))
    np.testing.assert_allclose(d, [0.0, 1 - 2 / 3, 0.01, 3.0])
    # A context followed only by count-2 words still passes mass to the lower orders.
    x = np.array([[0, 0, 0]] * 2 + [[1, 1, 1]] * 2 + [[2, 2, 2]] + [[0, 1, 2]] * 3 * 5)
    y = np.array([1] * 2 + [2] * 2 + [0] + [0, 1, 2] * 5)
    p = kn.predict_proba(kn.fit(x, y, 3), np.array([[0, 0, 0]]))[0]
    assert p.min() > 0 and p.sum() == pytest.approx(1.0)
