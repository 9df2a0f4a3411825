"""Q1 preprocessing of RGB patches, as pure functions (Q1 (a); docs/autoencoder.md, (AE1)-(AE4)).

RGB <float>[N, 3, 16, 16] → grey (luminance, Rec. 709 weights) → subtract each patch's
own mean → clip at ±k σ, σ the standard deviation of the mean-removed pixels over the
whole set → map [−k σ, k σ] linearly to [0.1, 0.9]. This is UFLDL's ``normalizeData``;
the narrow output range suits the autoencoder's sigmoid output layer.
"""
from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
from jax.typing import ArrayLike

LUMA = (0.2126, 0.7152, 0.0722)


def to_gray(rgb: ArrayLike) -> jnp.ndarray:
    """<float>[N, 3, H, W] → <float>[N, H, W]: 0.2126 R + 0.7152 G + 0.0722 B (AE1)."""
    rgb = jnp.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"to_gray: expected RGB patches of shape (N, 3, H, W), found shape {rgb.shape}")
    w = jnp.asarray(LUMA, rgb.dtype)
    return jnp.einsum("nchw,c->nhw", rgb, w)


def remove_patch_mean(x: ArrayLike) -> jnp.ndarray:
    """<float>[N, ...] minus each patch's own mean over its pixels (AE2)."""
    x = jnp.asarray(x)
    axes = tuple(range(1, x.ndim))
    return x - jnp.mean(x, axis=axes, keepdims=True)


def set_std(centred: ArrayLike) -> jnp.ndarray:
    """σ: the standard deviation over every pixel of the whole (mean-removed) set (AE3)."""
    return jnp.std(jnp.asarray(centred))


def clip_and_rescale(centred: ArrayLike, sigma: ArrayLike, n_std: float = 3.0,
                     lo: float = 0.1, hi: float = 0.9) -> jnp.ndarray:
    """Clip to [−n_std σ, n_std σ], then map that interval linearly onto [lo, hi] (AE4)."""
    bound = n_std * sigma
    c = jnp.clip(jnp.asarray(centred), -bound, bound) / bound  # in [-1, 1]
    return lo + (hi - lo) * (c + 1.0) / 2.0


def preprocess(rgb: ArrayLike, *, sigma: Optional[ArrayLike] = None, n_std: float = 3.0,
               lo: float = 0.1, hi: float = 0.9) -> jnp.ndarray:
    """The whole Q1 pipeline.

    Args:
      rgb: <float>[N, 3, 16, 16] RGB patches, channels first.
      sigma: the clipping scale; None (default) computes it over this set, as the
        assignment asks (AE3). Pass the training set's σ to treat other patches the same way.
    Returns:
      <float>[N, 256] grey, mean-removed, clipped patches in [lo, hi] (row-major pixels).
    """
    gray = to_gray(rgb)
    centred = remove_patch_mean(gray)
    if sigma is None:
        sigma = set_std(centred)
    out = clip_and_rescale(centred, sigma, n_std, lo, hi)
    return out.reshape(out.shape[0], -1)


def patch_sigma(rgb: ArrayLike) -> jnp.ndarray:
    """σ that :func:`preprocess` uses for this set."""
    return set_std(remove_patch_mean(to_gray(rgb)))
