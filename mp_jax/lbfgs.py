"""Full-batch L-BFGS driven by a model's manual gradients (optax's ``lbfgs``).

optax's L-BFGS asks its zoom line search for a ``value_fn`` and differentiates it with
``jax.value_and_grad``. :func:`manual_value_fn` wraps a manual
``loss_and_grad(params, batch) -> (loss, grads)`` in a ``jax.custom_vjp`` whose backward
*is* the manual gradient, so the line search and the L-BFGS memory never see autodiff:
every gradient the optimiser uses comes from the hand-derived backward.

The iterations run as jitted chunks (a ``lax.scan`` of ``chunk`` steps) in a short
Python loop. The compiled chunk is cached per (``loss_and_grad``, config); keyword
arguments of ``loss_and_grad`` (e.g. a model's hyperparameters as arrays) are traced,
so runs that differ only in them reuse one compilation. The loop which logs progress and stops when the gradient norm falls below ``gtol``
or the relative decrease of a whole chunk falls below ``ftol`` (there are no minibatches:
every step sees the whole training set).
"""
from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mp_jax.progress import EpochProgress
from mp_jax.train import NonFiniteError, init_fit_state

PyTree = Any
log = logging.getLogger("mp_jax.lbfgs")


class LbfgsConfig(NamedTuple):
    max_iter: int = 400  # rounded up to a whole number of chunks
    memory_size: int = 10
    max_linesearch_steps: int = 20
    chunk: int = 25  # iterations per compiled call (progress granularity)
    gtol: float = 1e-6  # stop when ‖∇J‖ ≤ gtol
    ftol: float = 1e-9  # stop when a whole chunk lowers J by less than ftol·|J|


class LbfgsResult(NamedTuple):
    params: PyTree
    history: dict  # per iteration: value, grad_norm, step_size, linesearch_steps
    iterations: int
    converged: bool  # stopped by gtol / ftol rather than max_iter
    seconds: float


def manual_value_fn(loss_and_grad: Callable, batch: PyTree, fn_kwargs: dict | None = None) -> Callable[[PyTree], jax.Array]:
    """``params -> J`` whose ``jax.grad`` is ``loss_and_grad(params, batch, **fn_kwargs)[1]``."""
    fn_kwargs = fn_kwargs or {}

    @jax.custom_vjp
    def value(params):
        return loss_and_grad(params, batch, **fn_kwargs)[0]

    def fwd(params):
        return loss_and_grad(params, batch, **fn_kwargs)

    def bwd(grads, ct):
        return (jax.tree.map(lambda g: ct * g, grads),)

    value.defvjp(fwd, bwd)
    return value


def make_optimizer(config: LbfgsConfig = LbfgsConfig()) -> optax.GradientTransformationExtraArgs:
    return optax.lbfgs(
        memory_size=config.memory_size,
        linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=config.max_linesearch_steps,
                                                  initial_guess_strategy="one"),
    )


def make_chunk_fn(loss_and_grad: Callable, config: LbfgsConfig):
    """Jitted ``(params, opt_state, batch, fn_kwargs) -> (params, opt_state, per-step history)``
    running ``config.chunk`` L-BFGS iterations (cached per function and optimiser shape)."""
    return _chunk_fn(loss_and_grad, config.memory_size, config.max_linesearch_steps, config.chunk)


@functools.lru_cache(maxsize=32)
def _chunk_fn(loss_and_grad: Callable, memory_size: int, max_linesearch_steps: int, chunk: int):
    config = LbfgsConfig(memory_size=memory_size, max_linesearch_steps=max_linesearch_steps, chunk=chunk)
    optimizer = make_optimizer(config)

    def run(params, opt_state, batch, fn_kwargs):
        value_fn = manual_value_fn(loss_and_grad, batch, fn_kwargs)
        value_and_grad = optax.value_and_grad_from_state(value_fn)

        def step(carry, _):
            params, state = carry
            value, grad = value_and_grad(params, state=state)
            updates, state = optimizer.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
            params = optax.apply_updates(params, updates)
            row = {"value": value, "grad_norm": optax.tree.norm(grad),
                   "step_size": optax.tree.get(state, "learning_rate"),
                   "linesearch_steps": optax.tree.get(state, "info").num_linesearch_steps}
            return (params, state), row

        (params, opt_state), rows = jax.lax.scan(step, (params, opt_state), None, length=config.chunk)
        return params, opt_state, rows

    return jax.jit(run)


def _all_finite(tree: PyTree) -> bool:
    return all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(tree))


def minimize(
    loss_and_grad: Callable,
    params: PyTree,
    batch: PyTree,
    config: LbfgsConfig = LbfgsConfig(),
    *,
    fn_kwargs: dict | None = None,
    progress: bool | None = None,
    desc: str = "lbfgs",
) -> LbfgsResult:
    """Minimise ``loss_and_grad(·, batch, **fn_kwargs)`` over the whole batch with L-BFGS.

    Returns the final parameters and a per-iteration history (the value and gradient
    norm *before* each step). Raises :class:`mp_jax.train.NonFiniteError` when the
    value or the parameters stop being finite.
    """
    fn_kwargs = fn_kwargs or {}
    # strong dtypes throughout, so the state after a chunk matches the initial one and the
    # compiled chunk is reused (optax's init leaves a few scalars weakly typed)
    opt_state = jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.asarray(a).dtype), make_optimizer(config).init(params))
    n_chunks = math.ceil(config.max_iter / config.chunk)
    chunk_fn = make_chunk_fn(loss_and_grad, config)
    history: dict = {"value": [], "grad_norm": [], "step_size": [], "linesearch_steps": []}
    converged = False
    t0 = time.perf_counter()
    bar = EpochProgress(total=n_chunks * config.chunk, desc=desc, enabled=progress)
    try:
        for c in range(n_chunks):
            new_params, new_state, rows = chunk_fn(params, opt_state, batch, fn_kwargs)
            rows = {k: [float(v) for v in jax.device_get(a)] for k, a in rows.items()}
            if not (all(math.isfinite(v) for v in rows["value"]) and _all_finite(new_params)):
                raise NonFiniteError(
                    f"{desc}: L-BFGS produced a non-finite value or parameters in iterations "
                    f"{c * config.chunk + 1}-{(c + 1) * config.chunk}; kept the parameters from before them "
                    f"(error.last_good).",
                    c + 1, init_fit_state(params, optax.identity(), jax.random.PRNGKey(0)),
                )
            params, opt_state = new_params, new_state
            for k, v in rows.items():
                history[k].extend(v)
            done = (c + 1) * config.chunk
            bar.update(done, {"train_loss": rows["value"][-1]})
            first, last = rows["value"][0], rows["value"][-1]
            if rows["grad_norm"][-1] <= config.gtol or first - last <= config.ftol * abs(first):
                converged = True
                break
    finally:
        bar.close()
    iterations = len(history["value"])
    return LbfgsResult(params, history, iterations, converged, time.perf_counter() - t0)
