"""Small pytree helpers shared by the engine, the sweeps and L-BFGS.

* :func:`select` — per member (the leading axis of every leaf), one tree or the other: how
  a vmapped program freezes the members that have stopped.
* :func:`all_finite` — whether every floating-point leaf is finite, for the whole tree or
  per member.
* :func:`stack`, :func:`unstack`, :func:`max_abs_difference` — members in and out of a
  stacked pytree, and how far two lists of trees are apart.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def select(mask, new: PyTree, old: PyTree) -> PyTree:
    """Per member, ``new`` where ``mask`` else ``old``.

    Args:
      mask: <bool>[M] (a NumPy or JAX array); a NumPy mask that is all True returns ``new``
        itself without any work.
      new, old: pytrees of the same structure whose leaves have the leading axis M.
    """
    if isinstance(mask, np.ndarray) and mask.all():
        return new
    sel = jnp.asarray(mask)
    return jax.tree.map(lambda a, b: jnp.where(sel.reshape((-1,) + (1,) * (jnp.ndim(a) - 1)), a, b), new, old)


def all_finite(tree: PyTree, *, per_member: bool = False) -> jax.Array:
    """Whether every element of every floating-point leaf is finite.

    Returns a <bool>[] scalar, or with ``per_member`` a <bool>[M] over the leading axis M of
    the leaves (a member is finite when all its elements are). Integer leaves (counters,
    keys) count as finite; a tree without floating-point leaves is finite.
    """
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not per_member:
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.array(True)
    if not leaves:
        raise ValueError("all_finite(per_member=True) needs at least one floating-point leaf to find the member axis")
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x), axis=tuple(range(1, jnp.ndim(x)))) for x in leaves]), axis=0)


def stack(trees: list) -> PyTree:
    """Stack a list of same-structure pytrees along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: PyTree, i: int) -> PyTree:
    """Member ``i`` of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def max_abs_difference(trees_a: list, trees_b: list) -> float:
    """The largest |a − b| over every leaf of corresponding pytrees in two lists (e.g. a
    sweep's members against the same runs trained alone)."""
    return float(max(np.max(np.abs(np.asarray(x) - np.asarray(y)))
                     for a, b in zip(trees_a, trees_b) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))
