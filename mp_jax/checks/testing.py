"""Gradient-check helper: the hand-derived backward against ``jax.grad``.

Every model in the package has ``loss(params, batch)`` (the reference, differentiated
by ``jax.grad``) and ``loss_and_grad(params, batch)`` (the manual backward). This
module compares the two, leaf by leaf, in float64 and in float32, and names the worst
leaf when they disagree. It is importable so that users can check their own variants.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def _cast_floats(tree: PyTree, dtype) -> PyTree:
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def _leaf_names(tree: PyTree) -> list[str]:
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) or "<root>" for p, _ in paths]


def grad_errors(loss: Callable, loss_and_grad: Callable, params: PyTree, batch: PyTree) -> dict:
    """Compare manual and autodiff gradients once, in the dtype the inputs already have.

    Returns a dict with ``loss_ref``, ``loss_manual`` and ``leaves``: per leaf name, the
    relative error ``max|g_manual − g_ref| / max(max|g_ref|, tiny)``.
    """
    loss_ref, g_ref = jax.value_and_grad(loss)(params, batch)
    loss_man, g_man = loss_and_grad(params, batch)
    if jax.tree.structure(g_ref) != jax.tree.structure(g_man):
        raise AssertionError(
            f"manual gradient pytree {jax.tree.structure(g_man)} differs from "
            f"jax.grad's {jax.tree.structure(g_ref)}"
        )
    names = _leaf_names(g_ref)
    errors = {}
    for name, a, b in zip(names, jax.tree.leaves(g_man), jax.tree.leaves(g_ref)):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise AssertionError(f"leaf {name}: manual shape {a.shape} != jax.grad shape {b.shape}")
        scale = max(np.max(np.abs(b), initial=0.0), 1e-30)
        err = np.max(np.abs(a - b), initial=0.0) / scale
        errors[name] = float(err) if np.all(np.isfinite(a)) else float("inf")
    return {"loss_ref": float(loss_ref), "loss_manual": float(loss_man), "leaves": errors}


def assert_grads_match(
    loss: Callable,
    loss_and_grad: Callable,
    params: PyTree,
    batch: PyTree,
    *,
    rtol64: float = 1e-8,
    rtol32: float = 1e-4,
) -> dict:
    """Assert that ``loss_and_grad`` matches ``jax.value_and_grad(loss)``.

    Runs twice: in float64 (every floating leaf of ``params`` and ``batch`` cast up,
    relative error ≤ ``rtol64``) and in float32 (≤ ``rtol32``). The relative error of a
    leaf is its max absolute difference over the max magnitude of the reference
    gradient. On failure the message names the worst leaf. Returns both reports.

    Both passes compute every matmul at full precision (``jax.default_matmul_precision
    ("highest")``), whatever the caller's default: on NVIDIA GPUs from Ampere on, JAX's
    default rounds float32 operands to TensorFloat-32 (a 10-bit mantissa), and two correct
    formulas for the same gradient then differ by ~1e-3 (measured on an H200), which says
    nothing about the algebra this check is for.
    """
    reports = {}
    for label, dtype, rtol in (("float64", jnp.float64, rtol64), ("float32", jnp.float32, rtol32)):
        with jax.enable_x64(dtype == jnp.float64), jax.default_matmul_precision("highest"):
            rep = grad_errors(loss, loss_and_grad, _cast_floats(params, dtype), _cast_floats(batch, dtype))
        loss_err = abs(rep["loss_manual"] - rep["loss_ref"]) / max(abs(rep["loss_ref"]), 1e-30)
        worst = max(rep["leaves"], key=rep["leaves"].get)
        if loss_err > rtol:
            raise AssertionError(
                f"[{label}] loss mismatch: manual {rep['loss_manual']!r} vs reference {rep['loss_ref']!r}"
            )
        if not rep["leaves"][worst] <= rtol:
            detail = ", ".join(f"{k}: {v:.2e}" for k, v in sorted(rep["leaves"].items()))
            raise AssertionError(
                f"[{label}] gradients differ: worst leaf {worst} has relative error "
                f"{rep['leaves'][worst]:.3e} > {rtol:.0e} (all leaves: {detail})"
            )
        reports[label] = rep
    return reports
