"""What is measured on a trained autoencoder: duplicate, noise and dead units, the distinct
structured ones, unit images, every reported number, and the choice of a study's setting."""
import jax
import numpy as np
import pytest

from mp_jax.models import autoencoder as ae
from mp_jax.models import autoencoder_measures as measures


def test_duplicate_fraction():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(256, 10))
    assert measures.duplicate_fraction(w) == 0.0
    w[:, 3] = 2.0 * w[:, 1] + 0.5  # same image, other contrast and offset
    w[:, 7] = w[:, 1] + 0.01 * rng.normal(size=256)
    assert measures.duplicate_fraction(w) == pytest.approx(0.3)
    w[:, 9] = -w[:, 0]  # an inverted copy is a different detector
    assert measures.duplicate_fraction(w) == pytest.approx(0.3)
    assert measures.duplicate_fraction(w[:, :1]) == 0.0


def test_unit_images():
    w = np.arange(256 * 3, dtype=float).reshape(256, 3)
    imgs = measures.unit_images(w)
    assert imgs.shape == (3, 16, 16) and imgs[1, 0, 1] == w[1, 1]
    with pytest.raises(ValueError, match="square"):
        measures.unit_images(np.ones((250, 2)))


@pytest.mark.slow
def test_evaluate_reports_consistent_numbers():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.uniform(k1, (80, 256), minval=0.1, maxval=0.9)
    params = ae.init_params(k2, 6)
    hp = ae.AEHyper(lam=1e-3, beta=2.0, rho=0.05)
    r = measures.evaluate(params, hp, x[:60], x[60:])
    assert r["final_cost"] == pytest.approx(float(ae.loss(params, x[:60], hp)), rel=1e-5)
    assert r["final_cost"] == pytest.approx(sum(r["cost_terms"].values()))
    assert r["rho"] == pytest.approx(0.05) and 0 < r["mean_hidden_activation"] < 1
    lo, hi = r["mean_hidden_activation_range"]
    assert lo <= r["mean_hidden_activation"] <= hi
    assert r["heldout_mse_ratio"] == pytest.approx(r["heldout_reconstruction_mse"] / r["heldout_mean_patch_mse"])
    assert r["duplicate_units"] == round(r["duplicate_fraction"] * 6)


# ----------------------------------------------------------------------------- noise, dead and distinct units
_Y, _X = np.mgrid[0:16, 0:16] - 7.5


def _gabor(wavelength, theta, sigma=3.0, phase=0.0):
    u = _X * np.cos(theta) + _Y * np.sin(theta)
    return np.exp(-(_X**2 + _Y**2) / (2 * sigma**2)) * np.cos(2 * np.pi * u / wavelength + phase)


def _blob(cx, cy, sigma):
    return np.exp(-((_X - cx) ** 2 + (_Y - cy) ** 2) / (2 * sigma**2))


def _columns(images) -> np.ndarray:
    """W1 <float>[256, K] whose unit images are ``images`` <float>[K, 16, 16]."""
    return np.stack([im.ravel() for im in images], axis=1)


def test_iid_noise_images_are_noise():
    w = np.random.default_rng(0).normal(size=(256, 2000))
    s = measures.smoothness(w)
    # the null distribution the threshold is set against: mean ≈ −1/255, std ≈ 1/sqrt(480)
    assert abs(s.mean()) < 0.01 and 0.04 < s.std() < 0.052
    assert measures.noise_mask(w).all()
    assert measures.smoothness(np.ones((256, 1)))[0] == 0.0  # a flat image has no structure either


def test_gabors_and_blobs_are_structured():
    gabors = [_gabor(lam, th, sig, ph) for lam in (4, 6, 8, 12) for th in np.linspace(0, np.pi, 8, endpoint=False)
              for sig in (2.0, 3.0, 5.0) for ph in (0.0, np.pi / 2)]
    blobs = [_blob(cx, cy, sig) for cx in (-4, 0, 3) for cy in (-2, 2) for sig in (1.0, 2.0, 4.0)]
    s = measures.smoothness(_columns(gabors + blobs))
    assert s[: len(gabors)].min() >= 0.4 and s[len(gabors):].min() >= 0.8
    assert not measures.noise_mask(_columns(gabors + blobs)).any()
    # contrast and offset do not change the measure
    g = _columns([_gabor(6, 0.3)])
    assert measures.smoothness(3.0 * g - 1.0) == pytest.approx(measures.smoothness(g))


def test_noise_count_is_exact_on_a_mix():
    rng = np.random.default_rng(1)
    structured = [_gabor(5, 0.4), _gabor(8, 2.0, 2.5), _blob(1, -2, 2.0), _gabor(10, 1.1, 4.0, 0.5)]
    noise = list(rng.normal(size=(5, 16, 16)))
    order = rng.permutation(9)
    images = [(structured + noise)[i] for i in order]
    expected = order >= len(structured)
    np.testing.assert_array_equal(measures.noise_mask(_columns(images)), expected)
    census = measures.unit_census(_columns(images), np.ones(9), np.zeros(9))
    assert census["noise_units"] == 5 and census["structured_units"] == 4 and census["distinct_structured_units"] == 4


def test_dead_units_never_respond():
    np.testing.assert_array_equal(measures.dead_mask([0.9, 0.04, 0.52, 0.3], [0.0, 0.0, 0.5, 0.26]),
                                  [False, True, True, True])
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.uniform(k1, (120, 256), minval=0.1, maxval=0.9)
    params = ae.init_params(k2, 5)
    w = np.array(params.w_enc) * 20.0  # strong enough that a live unit's activation spans most of (0, 1)
    b = -np.asarray(x[:60] @ w).mean(axis=0)  # centred pre-activations: no unit saturated by its offset
    b[1] = -60.0  # stuck off: σ(≈ −60) ≈ 0 on every patch
    w[:, 3], b[3] = 0.0, np.log(0.026 / 0.974)  # no weights: σ(b) = ρ on every patch
    params = params._replace(w_enc=w, b_hid=b)
    r = measures.evaluate(params, ae.AEHyper(lam=1e-3, beta=2.0, rho=0.026), x[:60], x[60:])
    assert r["dead_units"] == 2
    assert r["noise_units"] == 5  # the uniform init is i.i.d. noise; the empty unit is flat, noise too
    assert r["distinct_structured_units"] == 0 and 0 <= r["mean_smoothness"] < measures.SMOOTHNESS_THRESHOLD


def test_census_counts_each_unit_once():
    rng = np.random.default_rng(2)
    a, b, c = _gabor(6, 0.2), _gabor(9, 1.5, 4.0), _blob(-3, 3, 2.5)
    images = [a, 2.0 * a + 0.3, a + 0.02 * rng.normal(size=(16, 16)),  # one feature three times
              b, c,  # two more features
              c,  # a copy of c, but dead: not counted as a copy of anything
              rng.normal(size=(16, 16)), rng.normal(size=(16, 16))]  # two noise units
    h_max, h_min = np.ones(8), np.zeros(8)
    h_max[5] = 0.01
    census = measures.unit_census(_columns(images), h_max, h_min)
    assert census == {**census, "noise_units": 2, "dead_units": 1, "structured_units": 6,
                      "structured_duplicate_units": 2, "distinct_structured_units": 3}
    # 8 = 3 distinct + 2 copies + 2 noise + 1 dead
    assert census["distinct_structured_units"] + census["structured_duplicate_units"] + 2 + 1 == 8


def test_a_chain_of_near_copies_is_one_group():
    a, b = _gabor(8, 0.0), _gabor(8, np.pi / 2)
    chain = [np.cos(t) * a + np.sin(t) * b for t in (0.0, 0.25, 0.5)]  # neighbours alike, ends less so
    c = np.corrcoef(_columns(chain).T)
    assert c[0, 1] > 0.95 and c[1, 2] > 0.95 and c[0, 2] < 0.95  # the premise
    census = measures.unit_census(_columns(chain), np.ones(3), np.zeros(3))
    assert census["distinct_structured_units"] == 1 and census["structured_duplicate_units"] == 2
    assert measures.unit_census(_columns(chain), np.ones(3), np.zeros(3),
                                duplicate_threshold=0.999)["distinct_structured_units"] == 3


def _record(name, beta, rho, distinct, ratio):
    return {"name": name, "beta": beta, "rho": rho, "distinct_structured_units": distinct, "heldout_mse_ratio": ratio}


def test_choose_setting_most_distinct_units_then_lower_mse_ratio():
    records = [_record("a", 2.2, 0.026, 40, 0.30), _record("b", 10.0, 0.026, 52, 0.45),
               _record("c", 0.01, 0.026, 52, 0.25), _record("d", 2.2, 0.001, 3, 0.10)]
    choice = measures.choose_setting(records, ("beta", "rho"))
    assert choice["setting"] == {"beta": 0.01, "rho": 0.026} and choice["name"] == "c"  # the tie, by the MSE ratio
    assert choice["tied_on_units"] == [{"beta": 10.0, "rho": 0.026}, {"beta": 0.01, "rho": 0.026}]
    assert [r["distinct_structured_units"] for r in choice["candidates"]] == [40, 52, 52, 3]
    assert "most distinct structured units" in choice["rule"] and "MSE ratio" in choice["rule"]
    # computed from the records: change the numbers, change the choice
    records[0]["distinct_structured_units"] = 60
    assert measures.choose_setting(records, ("beta", "rho"))["name"] == "a"
    # a full tie goes to the first in order
    same = [_record("x", 1.0, 0.1, 7, 0.5), _record("y", 2.0, 0.1, 7, 0.5)]
    assert measures.choose_setting(same, ("beta",))["setting"] == {"beta": 1.0}
    with pytest.raises(ValueError, match="no records"):
        measures.choose_setting([], ("beta",))
    # with a sparsity condition, a dense code is not a candidate however many units it has
    dense = [{**_record("dense", 2.2, 0.9, 64, 0.2), "mean_hidden_activation": 0.88},
             {**_record("sparse", 2.2, 0.026, 60, 0.3), "mean_hidden_activation": 0.03}]
    assert measures.choose_setting(dense, ("beta", "rho"))["name"] == "dense"
    picked = measures.choose_setting(dense, ("beta", "rho"), max_mean_activation=0.1)
    assert picked["name"] == "sparse" and "sparse code" in picked["rule"]
    assert [c["eligible"] for c in picked["candidates"]] == [False, True]
    # with a smoothness condition, grainy units do not win on their number
    grainy = [{**_record("grainy", 2.2, 0.026, 100, 0.24), "mean_smoothness": 0.79},
              {**_record("smooth", 2.2, 0.026, 96, 0.37), "mean_smoothness": 0.94}]
    assert measures.choose_setting(grainy, ("beta",))["name"] == "grainy"
    smooth = measures.choose_setting(grainy, ("beta",), min_smoothness=0.9)
    assert smooth["name"] == "smooth" and "smooth units (mean smoothness ≥ 0.9)" in smooth["rule"]


def test_choose_setting_passes_over_a_diverged_member_and_one_no_better_than_the_mean_patch():
    records = [_record("worse", 10.0, 0.026, 60, 1.46), _record("diverged", 1e3, 0.026, 64, 0.2),
               _record("fine", 2.2, 0.026, 33, 0.52)]
    records[1]["diverged"] = {"reason": "non-finite at epoch 3, step 17"}
    choice = measures.choose_setting(records, ("beta", "rho"), max_mean_activation=None)
    assert choice["name"] == "fine" and "better than the mean patch's" in choice["rule"]
    assert [c["eligible"] for c in choice["candidates"]] == [False, False, True]
    # when every member is worse than the mean patch, the rule still names one of them
    records[2]["heldout_mse_ratio"] = 1.2
    assert measures.choose_setting(records, ("beta", "rho"))["name"] == "worse"
