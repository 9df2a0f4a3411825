"""Multinomial logistic regression on per-window statistics: the non-neural Q3 baseline.

Features of a window x <float>[T, D]: per axis the mean, standard deviation, minimum,
maximum and energy (mean of squares) — 5·D numbers, standardized with training statistics
(:func:`fit_standardizer`). Model: z = f W + b <float>[N, C]; loss: mean softmax
cross-entropy + λ/2 ‖W‖².

Manual gradient: dz = (p − onehot(y)) / N; dW = fᵀ dz + λ W; db = Σ_n dz.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mp_jax import layers

Array = jax.Array

FEATURES = ("mean", "std", "min", "max", "energy")


class LogisticParams(NamedTuple):
    w: Array  # [F, C]
    b: Array  # [C]


class LogisticHP(NamedTuple):
    l2: float = 1e-4  # λ, on W only


class Standardizer(NamedTuple):
    mean: Array  # [F]
    std: Array  # [F]


def window_features(x: Array) -> Array:
    """<float>[N, T, D] → <float>[N, 5·D]: mean, std, min, max, energy of each axis,
    grouped by statistic (all means first)."""
    return jnp.concatenate([
        jnp.mean(x, axis=1), jnp.std(x, axis=1), jnp.min(x, axis=1), jnp.max(x, axis=1),
        jnp.mean(x * x, axis=1),
    ], axis=-1)


def feature_names(axes=("x", "y", "z")) -> list[str]:
    return [f"{s}_{a}" for s in FEATURES for a in axes]


def fit_standardizer(f: Array, eps: float = 1e-8) -> Standardizer:
    """Per-feature mean and standard deviation of training features <float>[N, F]."""
    return Standardizer(jnp.mean(f, axis=0), jnp.std(f, axis=0) + eps)


def standardize(f: Array, s: Standardizer) -> Array:
    return (f - s.mean) / s.std


def init_params(key: Array, n_features: int, n_classes: int, dtype=jnp.float32) -> LogisticParams:
    """Zero weights (the problem is convex; ``key`` kept for the common signature)."""
    del key
    return LogisticParams(jnp.zeros((n_features, n_classes), dtype), jnp.zeros(n_classes, dtype))


def forward(params: LogisticParams, f: Array):
    """Logits <float>[N, C] from standardized features f <float>[N, F], and the cache."""
    return layers.linear_forward(f, params.w, params.b)


def backward(params: LogisticParams, cache, dz: Array, hp: LogisticHP = LogisticHP()) -> LogisticParams:
    """dW = fᵀ dz + λ W; db = Σ dz."""
    _, dw, db = layers.linear_backward(dz, cache)
    return LogisticParams(dw + hp.l2 * params.w, db)


def loss(params: LogisticParams, batch, hp: LogisticHP = LogisticHP()) -> Array:
    """Reference loss for ``jax.grad``: mean cross-entropy + λ/2 ‖W‖²."""
    f, y = batch
    return layers.cross_entropy(f @ params.w + params.b, y) + 0.5 * hp.l2 * jnp.sum(params.w ** 2)


def loss_grad_and_intermediates(params: LogisticParams, batch, hp: LogisticHP = LogisticHP()):
    """(loss, LogisticParams of gradients, {"dz": dL/dz <[N, C]>})."""
    f, y = batch
    z, cache = forward(params, f)
    ce, ce_cache = layers.softmax_cross_entropy_forward(z, y)
    dz = layers.softmax_cross_entropy_backward(jnp.ones((), z.dtype), ce_cache)
    return ce + 0.5 * hp.l2 * jnp.sum(params.w ** 2), backward(params, cache, dz, hp), {"dz": dz}


def loss_and_grad(params: LogisticParams, batch, hp: LogisticHP = LogisticHP()):
    """Manual (loss, LogisticParams of gradients); batch = (f <float>[N, F], y <int>[N])."""
    return loss_grad_and_intermediates(params, batch, hp)[:2]


def predict(params: LogisticParams, f: Array) -> Array:
    return jnp.argmax(forward(params, f)[0], axis=-1).astype(jnp.int32)


def metrics(params: LogisticParams, batch) -> dict:
    """{"loss": mean cross-entropy (no penalty), "accuracy"}."""
    f, y = batch
    z, _ = forward(params, f)
    ce, _ = layers.softmax_cross_entropy_forward(z, y)
    return {"loss": ce, "accuracy": jnp.mean((jnp.argmax(z, -1) == y).astype(z.dtype))}
