"""What is measured on a trained sparse autoencoder (:mod:`mp_jax.models.autoencoder`).

* :func:`unit_images` — each hidden unit's incoming weights as a 16×16 image.
* :func:`duplicate_fraction` — the share of hidden units whose weight image correlates
  above a threshold with another unit's: units that learned the same feature.
* :func:`smoothness`, :func:`noise_mask` — the mean lag-1 spatial autocorrelation of each
  unit's image, and the units below a threshold of it: images with no spatial structure.
* :func:`dead_mask` — units whose activation hardly varies over held-out patches.
* :func:`unit_census` — those counts together, and the distinct structured features.
* :func:`evaluate` — every number reported for one model: J and its three terms on the
  training set, the mean hidden activation ρ̂ against the target ρ, the reconstruction
  error on held-out patches against predicting the mean training patch, and the census.
* :func:`minibatch_costs` — J and its sparsity term on each minibatch of the training set
  against the whole set: what an SGD step sees of the cost, ρ̂ estimated from a few patches.
* :func:`choose_setting` — the setting of a study with the most distinct structured units.

The maths of J, ρ̂ and the terms is in ``docs/autoencoder.md``.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

import numpy as np

from mp_jax.models import autoencoder as ae

# i.i.d. pixels give a smoothness of mean −1/255 and standard deviation 1/sqrt(480) ≈ 0.046
# on a 16×16 image (the mean of 2·240 neighbour products, uncorrelated with each other), so
# 0.2 is 4.4 standard deviations above noise (about 1e-5 of noise images reach it), while a
# Gabor of wavelength ≥ 4 pixels at any orientation scores ≥ 0.44 and a blob ≥ 0.8.
SMOOTHNESS_THRESHOLD = 0.2
# a unit whose activation moves by less than this over the held-out patches tells the decoder
# nothing about them: stuck off (largest activation below 0.05), or stuck at any constant
DEAD_SPREAD = 0.05
DUPLICATE_THRESHOLD = 0.95


def unit_images(w_enc) -> np.ndarray:
    """Each hidden unit's incoming weights as an image: <float64>[L_hid, side, side] from
    W1 <float>[side², L_hid] (side = 16 for the course's patches)."""
    w = np.asarray(w_enc, dtype=np.float64)
    side = int(round(np.sqrt(w.shape[0])))
    if side * side != w.shape[0]:
        raise ValueError(f"unit_images: W1 has {w.shape[0]} input rows, not a square number of pixels")
    return w.T.reshape(w.shape[1], side, side)


def _correlations(w_enc) -> np.ndarray:
    """<float64>[L_hid, L_hid] Pearson correlations between the units' weight images."""
    w = np.asarray(w_enc, dtype=np.float64).T
    w = w - w.mean(axis=1, keepdims=True)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return w @ w.T


def duplicate_fraction(w_enc, threshold: float = DUPLICATE_THRESHOLD) -> float:
    """Fraction of hidden units whose weight image correlates (Pearson) above ``threshold``
    with some other unit's. A copy with another contrast or offset is a duplicate; an
    inverted copy (correlation −1) is a different detector."""
    if np.shape(w_enc)[1] < 2:
        return 0.0
    c = _correlations(w_enc)
    np.fill_diagonal(c, -np.inf)
    return float(np.mean(c.max(axis=1) > threshold))


def smoothness(w_enc) -> np.ndarray:
    """<float64>[L_hid]: each unit's mean lag-1 spatial autocorrelation, from W1 <float>[256, L_hid].

    The unit's 16×16 image is standardised (mean 0, standard deviation 1 over its pixels),
    then s = ½ (mean of z[i, j] z[i, j+1] over the 16·15 horizontal neighbour pairs + mean of
    z[i, j] z[i+1, j] over the 16·15 vertical pairs). About 0 for i.i.d. noise, near 1 for a
    smooth blob, cos(2π/λ)-like for a grating of wavelength λ across the direction of the
    shift. A constant image (no variation at all) scores 0.
    """
    imgs = unit_images(w_enc)
    z = imgs - imgs.mean(axis=(1, 2), keepdims=True)
    sd = z.std(axis=(1, 2), keepdims=True)
    z = np.where(sd > 1e-12, z / np.maximum(sd, 1e-12), 0.0)
    horizontal = np.mean(z[:, :, 1:] * z[:, :, :-1], axis=(1, 2))
    vertical = np.mean(z[:, 1:, :] * z[:, :-1, :], axis=(1, 2))
    return (horizontal + vertical) / 2


def noise_mask(w_enc, threshold: float = SMOOTHNESS_THRESHOLD) -> np.ndarray:
    """<bool>[L_hid]: units whose weight image has no spatial structure, :func:`smoothness`
    below ``threshold`` (0.2 by default: 4.4 standard deviations above what i.i.d. pixels
    give, and below every Gabor of wavelength ≥ 4 pixels; see ``SMOOTHNESS_THRESHOLD``)."""
    return smoothness(w_enc) < threshold


def dead_mask(h_max, h_min, spread: float = DEAD_SPREAD) -> np.ndarray:
    """<bool>[L_hid]: units that never respond to the input, from each unit's largest and
    smallest activation over the held-out patches (``h_max``, ``h_min`` <float>[L_hid]).

    Dead means max − min < ``spread`` (0.05 by default): a unit stuck off (its largest
    activation below 0.05, the usual dead unit), or one stuck at any constant (such as
    σ(b1) = ρ with no weight that matters), tells the decoder nothing about the patch.
    """
    return np.asarray(h_max, np.float64) - np.asarray(h_min, np.float64) < spread


def _groups(c: np.ndarray, members: np.ndarray, threshold: float) -> int:
    """How many groups the ``members`` (indices into ``c`` <float>[L_hid, L_hid]) form when
    two units whose correlation exceeds ``threshold`` share a group (connected components,
    so a chain of near-copies is one group)."""
    link = c[np.ix_(members, members)] > threshold
    np.fill_diagonal(link, True)
    label = np.arange(len(members))
    while True:  # each unit takes the smallest label among its neighbours until nothing changes
        new = np.where(link, label[None, :], len(members)).min(axis=1)
        if np.array_equal(new, label):
            return int(len(np.unique(label)))
        label = new


def unit_census(w_enc, h_max, h_min, *, smoothness_threshold: float = SMOOTHNESS_THRESHOLD,
                dead_spread: float = DEAD_SPREAD, duplicate_threshold: float = DUPLICATE_THRESHOLD) -> dict:
    """Counts of noise, dead and distinct structured hidden units of one model.

    Args:
      w_enc: W1 <float>[256, L_hid].
      h_max, h_min: each unit's largest and smallest activation over held-out patches <float>[L_hid].
    Returns:
      ``noise_units`` (:func:`noise_mask`), ``dead_units`` (:func:`dead_mask`; a unit can be
      both), ``structured_units`` (L_hid − noise), ``structured_duplicate_units`` and
      ``distinct_structured_units``, and ``mean_smoothness`` (over all units). The useful units
      are the structured ones that are not dead; grouping them by weight-image correlation above
      ``duplicate_threshold`` (a chain of copies is one group), ``distinct_structured_units`` is
      the number of groups and ``structured_duplicate_units`` the useful units beyond one per
      group, so L_hid = distinct + structured duplicates + (noise or dead), each unit counted once.
    """
    s = smoothness(w_enc)
    noise = s < smoothness_threshold
    dead = dead_mask(h_max, h_min, dead_spread)
    useful = np.flatnonzero(~noise & ~dead)
    distinct = _groups(_correlations(w_enc), useful, duplicate_threshold) if len(useful) else 0
    return {"noise_units": int(noise.sum()), "dead_units": int(dead.sum()), "structured_units": int((~noise).sum()),
            "structured_duplicate_units": int(len(useful) - distinct), "distinct_structured_units": int(distinct),
            "mean_smoothness": float(s.mean())}


@functools.partial(jax.jit, static_argnums=4)
def _measures(params: ae.AEParams, hp: ae.AEHyper, x_train, x_held, batch_size: Optional[int] = None) -> dict:
    h_held = ae.encode(params, x_held)
    return {
        **({"minibatch": _batch_arrays(params, hp, x_train, batch_size)} if batch_size else {}),
        "terms": ae.cost_terms(params, x_train, hp),
        "rho_hat": ae.mean_hidden_activation(params, x_train),
        "rho_hat_held": jnp.mean(h_held, axis=0),
        "h_max_held": jnp.max(h_held, axis=0),
        "h_min_held": jnp.min(h_held, axis=0),
        "mse": jnp.mean(jnp.square(ae.reconstruct(params, x_held) - x_held)),
        "baseline": jnp.mean(jnp.square(x_held - jnp.mean(x_train, axis=0))),
    }


def evaluate(params: ae.AEParams, hp: ae.AEHyper, x_train, x_held, threshold: float = DUPLICATE_THRESHOLD, *,
             smoothness_threshold: float = SMOOTHNESS_THRESHOLD, dead_spread: float = DEAD_SPREAD,
             batch_size: Optional[int] = None) -> dict:
    """Every number reported for one trained model (J and ρ̂ over the whole training set).

    Args:
      x_train, x_held: preprocessed patches <float>[N, 256], the training set and the
        held-out patches (never trained on).
      threshold: for :func:`duplicate_fraction` and the grouping of :func:`unit_census`.
      smoothness_threshold, dead_spread: for :func:`noise_mask` and :func:`dead_mask`.
      batch_size: when given, also ``minibatch``: :func:`minibatch_costs` at that batch size
        (computed in the same compiled program).
    Returns:
      JSON-ready floats: ``final_cost`` (J) and ``cost_terms``, ``rho``, the mean hidden
      activation (and its range over units, and on the held-out patches), the held-out
      reconstruction MSE per pixel, the same for predicting the mean training patch, their
      ratio, the duplicate units (fraction and count), and :func:`unit_census`'s counts
      (the dead units judged on the held-out patches).
    """
    m = jax.device_get(_measures(params, hp, x_train, x_held, int(batch_size) if batch_size else None))
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
        **unit_census(params.w_enc, m["h_max_held"], m["h_min_held"], smoothness_threshold=smoothness_threshold,
                      dead_spread=dead_spread, duplicate_threshold=threshold),
        **({"minibatch": _minibatch_summary(m["minibatch"], m["terms"], m["rho_hat"], batch_size)}
           if batch_size else {}),
    }


def _batch_arrays(params: ae.AEParams, hp: ae.AEHyper, x, batch_size: int) -> dict:
    """J's terms and ρ̂ of each minibatch of ``batch_size`` consecutive rows of x (traced)."""
    k = x.shape[0] // batch_size
    batches = x[: k * batch_size].reshape(k, batch_size, x.shape[1])
    return {"terms": jax.vmap(lambda b: ae.cost_terms(params, b, hp))(batches),
            "rho_hat": jax.vmap(lambda b: ae.mean_hidden_activation(params, b))(batches)}


def _minibatch_summary(batch: dict, terms_whole: dict, rho_whole, batch_size: int) -> dict:
    cost = np.sum([np.asarray(v, np.float64) for v in batch["terms"].values()], axis=0)
    rho_whole = np.asarray(rho_whole, np.float64)
    spread = np.asarray(batch["rho_hat"], np.float64).std(axis=0) / np.maximum(rho_whole, 1e-300)
    return {"batch_size": int(batch_size), "batches": int(cost.size),
            "cost_mean": float(cost.mean()), "cost_std": float(cost.std()),
            "cost_whole": float(sum(float(v) for v in terms_whole.values())),
            "sparsity_mean": float(np.mean(batch["terms"]["sparsity"])), "sparsity_whole": float(terms_whole["sparsity"]),
            "rho_hat_spread": float(np.median(spread)), "active_per_batch": float(batch_size * rho_whole.mean())}


@functools.partial(jax.jit, static_argnums=3)
def _minibatch(params, hp, x, batch_size):
    return _batch_arrays(params, hp, x, batch_size), ae.cost_terms(params, x, hp), ae.mean_hidden_activation(params, x)


def minibatch_costs(params: ae.AEParams, hp: ae.AEHyper, x_train, batch_size: int) -> dict:
    """J on minibatches of ``batch_size`` patches (consecutive rows of ``x_train``, which is in
    a random order) against J on the whole set, at the same weights: what an SGD step sees.

    ρ̂ of a minibatch estimates each unit's mean activation from ``batch_size`` patches, and
    the KL term (AE9) is convex in ρ̂, steeply where ρ̂ ≪ ρ (its curvature in ρ̂ is
    ρ/ρ̂² + (1 − ρ)/(1 − ρ̂)²), so the minibatches' mean sparsity term exceeds the whole
    set's (Jensen's inequality): SGD descends a noisy and biased version of J.

    Returns JSON-ready floats: ``batch_size``, ``batches``; ``cost_mean``, ``cost_std`` (J over
    the minibatches), ``cost_whole`` (J on the whole set); ``sparsity_mean``,
    ``sparsity_whole`` (the β Σ KL term the same two ways); ``rho_hat_spread``, the median
    over units of the standard deviation of a minibatch's ρ̂ over the whole set's ρ̂; and
    ``active_per_batch``, ``batch_size`` times the mean ρ̂ (how many patches of a minibatch
    carry a unit's mean activation)."""
    batch, whole, rho_whole = jax.device_get(_minibatch(params, hp, jnp.asarray(x_train), int(batch_size)))
    return _minibatch_summary(batch, whole, rho_whole, batch_size)


def choose_setting(records: list, keys: tuple, max_mean_activation: Optional[float] = None,
                   min_smoothness: Optional[float] = None) -> dict:
    """The setting of a study chosen by a rule computed from its records.

    Rule: among the records that did not diverge (no ``diverged``; all if every one did)
    and reconstruct the held-out patches better than the mean training patch
    (``heldout_mse_ratio`` below 1; all those if none does), those whose code is sparse
    (``mean_hidden_activation`` at most ``max_mean_activation``, when given) and whose units
    are smooth (``mean_smoothness`` at least ``min_smoothness``, when given; all those if
    none qualifies); among them the most ``distinct_structured_units``; ties broken by the
    lower ``heldout_mse_ratio`` (held-out reconstruction MSE over the mean patch's), then by
    the first in ``records``' order. A model no better than the mean patch has learnt no
    code worth its units (SGD at β = 10 on the stand-in: 60 distinct units, MSE ratio 1.46).
    A dense code (ρ̂ near 0.9) can reconstruct well with many distinct units, but it
    is not the sparse autoencoder the question asks for: hence the condition for (β, ρ). A
    small λ lets every unit of a large L_hid fit high-frequency detail (structured by the
    noise test, yet grainy to the eye, mean smoothness about 0.8): hence the smoothness
    condition for (L_hid, λ).

    Args:
      records: the study's records (dicts with ``keys``, ``distinct_structured_units``,
        ``heldout_mse_ratio`` and ``name``).
      keys: the record fields that name a setting, e.g. ``("beta", "rho")``.
    Returns:
      ``setting`` ({key: value}), ``name``, ``rule`` (in words), ``tied_on_units`` (the
      settings that shared the most distinct units, so the MSE ratio decided) and
      ``candidates``: each setting's deciding numbers, in ``records``' order.
    """
    if not records:
        raise ValueError("choose_setting: no records to choose from")
    trained = [i for i, r in enumerate(records) if not r.get("diverged")] or list(range(len(records)))
    trained = [i for i in trained if records[i]["heldout_mse_ratio"] < 1] or trained
    eligible = [i for i in trained
                if (max_mean_activation is None or records[i].get("mean_hidden_activation", 0.0) <= max_mean_activation)
                and (min_smoothness is None or records[i].get("mean_smoothness", 1.0) >= min_smoothness)] or trained
    best = min(eligible, key=lambda i: (-records[i]["distinct_structured_units"], records[i]["heldout_mse_ratio"], i))
    top = records[best]["distinct_structured_units"]
    conditions = (["a held-out reconstruction better than the mean patch's (MSE ratio below 1)"]
                  + ([f"a sparse code (mean activation ρ̂ ≤ {max_mean_activation:g})"] if max_mean_activation is not None
                     else []) + ([f"smooth units (mean smoothness ≥ {min_smoothness:g})"] if min_smoothness is not None
                                 else []))
    sparse = f"among the settings with {', '.join(conditions[:-1]) + ' and ' if len(conditions) > 1 else ''}" \
             f"{conditions[-1]}, "

    def setting(r):
        return {k: r[k] for k in keys}

    return {"setting": setting(records[best]), "name": records[best]["name"],
            "rule": sparse + "the setting with the most distinct structured units (neither noise nor dead, copies "
                    "counted once); ties broken by the lower held-out MSE ratio (reconstruction over the mean patch's)",
            "tied_on_units": [setting(records[i]) for i in eligible if records[i]["distinct_structured_units"] == top],
            "candidates": [{**setting(r), "distinct_structured_units": r["distinct_structured_units"],
                            "heldout_mse_ratio": r["heldout_mse_ratio"], "eligible": i in eligible,
                            **{k: r[k] for k in ("mean_hidden_activation", "mean_smoothness") if k in r}}
                           for i, r in enumerate(records)]}
