"""The hand-derived backward inside JAX's own machinery: a loss whose VJP is ``loss_and_grad``.

:func:`manual_vjp` turns a model's ``loss_and_grad(params, batch) -> (loss, grads)`` into a
function ``loss(params, batch)`` with a ``jax.custom_vjp``: its forward runs the manual forward
and keeps the manual gradients as the residual; its backward scales them by the incoming
cotangent. So ``jax.grad``, ``jax.value_and_grad``, optax's helpers and any training loop
written for autodiff run on the manual backward without calling ``loss_and_grad`` themselves,
under ``jit`` and ``vmap`` alike.

When to want it: to drop a manual model into code written for ``jax.grad`` (an optax
tutorial's ``value_and_grad`` loop, a library's ``train_step``), or to time a manual backward
inside the same harness as autodiff. What it cannot do: forward-mode differentiation
(``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) of a ``custom_vjp`` function is refused by JAX,
and no gradient flows to the batch (its cotangent is zero: these backwards do not compute it).

    from mp_jax.checks import registry
    from mp_jax.checks.manual_vjp import manual_vjp
    loss = manual_vjp(registry.get("lstm").impls["fast"].loss_and_grad)
    value, grads = jax.value_and_grad(loss)(params, batch)  # the fast manual BPTT
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)  # integer leaves (labels, word ids) take float0


def manual_vjp(loss_and_grad: Callable) -> Callable:
    """``loss(params, batch)`` whose gradient in ``params`` is ``loss_and_grad``'s."""

    @jax.custom_vjp
    def loss(params, batch):
        return loss_and_grad(params, batch)[0]

    def forward(params, batch):
        value, grads = loss_and_grad(params, batch)
        return value, (grads, batch)

    def backward(residual, cotangent):
        grads, batch = residual
        return jax.tree.map(lambda g: cotangent * g, grads), jax.tree.map(_zero_cotangent, batch)

    loss.defvjp(forward, backward)
    return loss
