"""What is measured on a trained sparse autoencoder (:mod:`mp_jax.models.autoencoder`).

* :func:`unit_images` — each hidden unit's incoming weights as a 16×16 image.
* :func:`duplicate_fraction` — the share of hidden units whose weight image correlates
  above a threshold with another unit's: units that learned the same feature.
* :func:`evaluate` — every number reported for one model: J and its three terms on the
  training set, the mean hidden activation ρ̂ against the target ρ, and the reconstruction
  error on held-out patches against predicting the mean training patch.

The maths of J, ρ̂ and the terms is in ``docs/autoencoder.md``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mp_jax.models import autoencoder as ae


def unit_images(w_enc) -> np.ndarray:
    """Each hidden unit's incoming weights as an image: <float64>[L_hid, side, side] from
    W1 <float>[side², L_hid] (side = 16 for the course's patches)."""
    w = np.asarray(w_enc, dtype=np.float64)
    side = int(round(np.sqrt(w.shape[0])))
    if side * side != w.shape[0]:
        raise ValueError(f"unit_images: W1 has {w.shape[0]} input rows, not a square number of pixels")
    return w.T.reshape(w.shape[1], side, side)


def duplicate_fraction(w_enc, threshold: float = 0.95) -> float:
    """Fraction of hidden units whose weight image correlates (Pearson) above ``threshold``
    with some other unit's. A copy with another contrast or offset is a duplicate; an
    inverted copy (correlation −1) is a different detector."""
    w = np.asarray(w_enc, dtype=np.float64).T
    if w.shape[0] < 2:
        return 0.0
    w = w - w.mean(axis=1, keepdims=True)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    c = w @ w.T
    np.fill_diagonal(c, -np.inf)
    return float(np.mean(c.max(axis=1) > threshold))


@jax.jit
def _measures(params: ae.AEParams, hp: ae.AEHyper, x_train, x_held) -> dict:
    return {
        "terms": ae.cost_terms(params, x_train, hp),
        "rho_hat": ae.mean_hidden_activation(params, x_train),
        "rho_hat_held": ae.mean_hidden_activation(params, x_held),
        "mse": jnp.mean(jnp.square(ae.reconstruct(params, x_held) - x_held)),
        "baseline": jnp.mean(jnp.square(x_held - jnp.mean(x_train, axis=0))),
    }


def evaluate(params: ae.AEParams, hp: ae.AEHyper, x_train, x_held, threshold: float = 0.95) -> dict:
    """Every number reported for one trained model (J and ρ̂ over the whole training set).

    Args:
      x_train, x_held: preprocessed patches <float>[N, 256], the training set and the
        held-out patches (never trained on).
      threshold: for :func:`duplicate_fraction`.
    Returns:
      JSON-ready floats: ``final_cost`` (J) and ``cost_terms``, ``rho``, the mean hidden
      activation (and its range over units, and on the held-out patches), the held-out
      reconstruction MSE per pixel, the same for predicting the mean training patch, their
      ratio, and the duplicate units (fraction and count).
    """
    m = jax.device_get(_measures(params, hp, x_train, x_held))
    terms = {k: float(v) for k, v in m["terms"].items()}
    rho_hat, rho_hat_held = np.asarray(m["rho_hat"]), np.asarray(m["rho_hat_held"])
    mse, baseline = float(m["mse"]), float(m["baseline"])
    n_hidden = int(params.w_enc.shape[1])
    dup = duplicate_fraction(params.w_enc, threshold)
    return {
        "final_cost": sum(terms.values()),
        "cost_terms": terms,
        "rho": float(hp.rho),
        "mean_hidden_activation": float(rho_hat.mean()),
        "mean_hidden_activation_range": [float(rho_hat.min()), float(rho_hat.max())],
        "mean_hidden_activation_heldout": float(rho_hat_held.mean()),
        "heldout_reconstruction_mse": mse,
        "heldout_mean_patch_mse": baseline,
        "heldout_mse_ratio": mse / baseline,
        "duplicate_fraction": dup,
        "duplicate_units": int(round(dup * n_hidden)),
    }
