"""What is measured on a trained autoencoder: duplicate units, unit images, every reported number."""
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
