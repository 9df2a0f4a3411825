"""Random transformations of a training set, drawn afresh every epoch (``FitConfig.augment``).

:class:`RotationGain` is for tri-axial motion sensors (Q3): a body-worn accelerometer
sits at a slightly different angle and gain on every person, so a model validated on
people it never saw gains from seeing each training window turned and scaled a little.
Each window n gets its own rotation R_n (a uniformly random axis, an angle drawn from
N(0, σ²)) and gain g_n ~ U(lo, hi):

    x'_n[t] = g_n · R_n x_n[t]        for every time step t   (docs/training.md, AUG1)

in the sensor's own units: inputs standardized per channel (x = (u − m) / s) are turned
back into u, transformed, and standardized again, so the rotation is a physical one even
when the axes' spreads differ.

The transforms are frozen dataclasses, so their settings key a run's checkpoint like the
rest of its ``FitConfig``.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


def rotation_matrices(axes: jax.Array, angles: jax.Array) -> jax.Array:
    """Rodrigues' formula: R = I + sin θ K + (1 − cos θ) K², K the cross-product matrix of
    the unit axis. ``axes`` <float>[N, 3] (unit vectors), ``angles`` <float>[N] (radians);
    returns <float>[N, 3, 3], each orthonormal with determinant 1."""
    x, y, z = axes[:, 0], axes[:, 1], axes[:, 2]
    zero = jnp.zeros_like(x)
    k = jnp.stack([jnp.stack([zero, -z, y], -1), jnp.stack([z, zero, -x], -1), jnp.stack([-y, x, zero], -1)], -2)
    s, c = jnp.sin(angles)[:, None, None], jnp.cos(angles)[:, None, None]
    return jnp.eye(3, dtype=axes.dtype) + s * k + (1.0 - c) * (k @ k)


@dataclasses.dataclass(frozen=True)
class RotationGain:
    """``(key, (x, y, ...)) -> (x', y, ...)``: each window of ``x`` <float>[N, T, 3] rotated
    by a random angle (σ = ``angle_std_degrees``) about a random axis and scaled by a gain
    uniform in ``gain``; the other leaves unchanged. ``mean``, ``std``: the per-channel
    standardization ``x`` went through (the identity by default)."""

    angle_std_degrees: float = 20.0
    gain: tuple = (0.9, 1.1)
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)

    def __post_init__(self):
        lo, hi = self.gain
        if self.angle_std_degrees < 0 or not 0 < lo <= hi:
            raise ValueError(f"RotationGain needs angle_std_degrees ≥ 0 and 0 < gain[0] ≤ gain[1], found {self}")

    def __call__(self, key: jax.Array, data):
        x, *rest = data
        if x.shape[-1] != 3:
            raise ValueError(f"RotationGain rotates tri-axial signals: expected x of shape (N, T, 3), found {x.shape}")
        n = x.shape[0]
        k_axis, k_angle, k_gain = jax.random.split(key, 3)
        axes = jax.random.normal(k_axis, (n, 3), x.dtype)
        axes = axes / jnp.linalg.norm(axes, axis=1, keepdims=True)
        angles = jax.random.normal(k_angle, (n,), x.dtype) * math.radians(self.angle_std_degrees)
        gains = jax.random.uniform(k_gain, (n, 1, 1), x.dtype, *self.gain)
        mean, std = jnp.asarray(self.mean, x.dtype), jnp.asarray(self.std, x.dtype)
        u = x * std + mean  # sensor units
        u = gains * jnp.einsum("nij,ntj->nti", rotation_matrices(axes, angles), u)
        return ((u - mean) / std, *rest)
