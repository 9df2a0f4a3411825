"""Full-batch L-BFGS driven by a model's manual gradients (optax's ``lbfgs``).

optax's L-BFGS asks its zoom line search for a ``value_fn`` and differentiates it with
``jax.value_and_grad``. :func:`manual_value_fn` wraps a manual
``loss_and_grad(params, batch) -> (loss, grads)`` in a ``jax.custom_vjp`` whose backward
*is* the manual gradient, so the line search and the L-BFGS memory never see autodiff:
every gradient the optimiser uses comes from the hand-derived backward.

The iterations run as jitted chunks (a ``lax.scan`` of ``chunk`` steps) in a short
Python loop. The compiled chunk is cached per (``loss_and_grad``, config); keyword
arguments of ``loss_and_grad`` (e.g. a model's hyperparameters as arrays) are traced,
so runs that differ only in them reuse one compilation. The loop stops when the gradient
norm falls below ``gtol`` or the relative decrease of a whole chunk falls below ``ftol``
(there are no minibatches: every step sees the whole training set). Progress counts
iterations (:class:`mp_jax.runtime.progress.EpochProgress`); the time left it shows is reached only
when the run goes to ``max_iter``, and the end says whether, and why, it stopped earlier.

:func:`minimize_many` trains M members (same shapes and data, different parameters
and/or keyword arguments) as one program: the chunk ``jax.vmap``-ed over members, the
same stopping rule applied to each member after every chunk, and stopped members
frozen, so each member equals its run alone. Both run one step body and one chunk loop.
"""
from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mp_jax.engine import trees
from mp_jax.runtime.progress import EpochProgress
from mp_jax.engine.train import NonFiniteError, init_fit_state

PyTree = Any
log = logging.getLogger("mp_jax.engine.lbfgs")


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
    stop_reason: str = "max_iter"  # "gtol", "ftol" or "max_iter" (see STOP_REASONS)


STOP_REASONS = {
    "gtol": "the gradient norm reached gtol",
    "ftol": "a chunk lowered J by less than ftol·|J|",
    "max_iter": "max_iter reached",
}


def summary(res: LbfgsResult) -> dict:
    """A run's counts as JSON-ready numbers: ``iterations``, ``converged``, ``stop_reason``
    and ``function_evaluations`` (one per iteration plus each line-search step)."""
    return {"iterations": int(res.iterations), "converged": bool(res.converged), "stop_reason": res.stop_reason,
            "function_evaluations": int(res.iterations + sum(res.history["linesearch_steps"]))}


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
    return _chunk_fn(loss_and_grad, config.memory_size, config.max_linesearch_steps, config.chunk, False)


def make_chunk_many_fn(loss_and_grad: Callable, config: LbfgsConfig):
    """Jitted ``(params, opt_state, batch, fn_kwargs, active, src) -> (params, opt_state, rows, finite)``:
    :func:`make_chunk_fn`'s chunk ``jax.vmap``-ed over members (every argument but ``batch``
    has a leading axis M; ``active`` is <bool>[M]; ``src`` <int32>[M] is i for an active
    member and some active member's index for a stopped one). Members with ``active`` False
    come back unchanged (frozen); ``finite`` <bool>[M] says whether each member's new
    parameters are finite."""
    return _chunk_fn(loss_and_grad, config.memory_size, config.max_linesearch_steps, config.chunk, True)


@functools.lru_cache(maxsize=64)
def _chunk_fn(loss_and_grad: Callable, memory_size: int, max_linesearch_steps: int, chunk: int, many: bool):
    optimizer = make_optimizer(LbfgsConfig(memory_size=memory_size, max_linesearch_steps=max_linesearch_steps))

    def value_and_grad(params, batch, kw):
        return jax.value_and_grad(manual_value_fn(loss_and_grad, batch, kw))(params)

    def update(params, state, value, grad, batch, kw):
        value_fn = manual_value_fn(loss_and_grad, batch, kw)
        updates, state = optimizer.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
        row = {"value": value, "grad_norm": optax.tree.norm(grad), "step_size": optax.tree.get(state, "learning_rate"),
               "linesearch_steps": optax.tree.get(state, "info").num_linesearch_steps}
        return optax.apply_updates(params, updates), state, row

    if many:  # over the members' parameters, states, J, ∇J and keyword arguments; the batch is shared
        value_and_grad = jax.vmap(value_and_grad, in_axes=(0, None, 0))
        update = jax.vmap(update, in_axes=(0, 0, 0, 0, None, 0))

    def scan(params, state, batch, fn_kwargs):
        """``chunk`` steps. As in optax.value_and_grad_from_state, a step takes J and ∇J from the
        state where the last line search stored them (a lax.cond), else computes them. With many
        members the cond is taken once for all (computing, for those that lack them, only when
        some member does), not vmapped into a select that would compute them every step: each
        member gets exactly what it would get alone."""

        def step(carry, _):
            params, state = carry
            stored = (optax.tree.get(state, "value"), optax.tree.get(state, "grad"))
            ok = jnp.isfinite(stored[0])  # a scalar, or <bool>[M]

            def fresh():
                computed = value_and_grad(params, batch, fn_kwargs)
                return trees.select(ok, stored, computed) if many else computed

            value, grad = jax.lax.cond(jnp.all(ok), lambda: stored, fresh)
            params, state, row = update(params, state, value, grad, batch, fn_kwargs)
            return (params, state), row

        return jax.lax.scan(step, (params, state), None, length=chunk)

    def run(params, opt_state, batch, fn_kwargs):
        (params, opt_state), rows = scan(params, opt_state, batch, fn_kwargs)
        return params, opt_state, rows

    def run_many(params, opt_state, batch, fn_kwargs, active, src):
        # A stopped member's slot recomputes an active member (src[i]): its results are thrown
        # away, and a converged member would otherwise keep the batched line search (a
        # while_loop that runs until every member is done) busy for up to max_linesearch_steps.
        picked = jax.tree.map(lambda x: x[src], (params, opt_state, fn_kwargs))
        (new_params, new_state), rows = scan(*picked[:2], batch, picked[2])
        rows = jax.tree.map(lambda r: jnp.swapaxes(r, 0, 1), rows)  # [chunk, M] -> [M, chunk]
        return (trees.select(active, new_params, params), trees.select(active, new_state, opt_state), rows,
                trees.all_finite(new_params, per_member=True))

    return jax.jit(run_many if many else run)


def _stops(rows: dict, config: LbfgsConfig) -> Optional[str]:
    """The stopping rule after a chunk (lists of floats): "gtol" when the gradient norm
    before its last step is at most ``gtol``, "ftol" when the chunk lowered J by at most
    ``ftol``·|J|, else None (go on)."""
    first, last = rows["value"][0], rows["value"][-1]
    if rows["grad_norm"][-1] <= config.gtol:
        return "gtol"
    return "ftol" if first - last <= config.ftol * abs(first) else None


def _strong(tree: PyTree) -> PyTree:
    # strong dtypes throughout, so the state after a chunk matches the initial one and the
    # compiled chunk is reused (optax's init leaves a few scalars weakly typed)
    return jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.asarray(a).dtype), tree)


def _run(chunk: Callable, params: PyTree, opt_state: PyTree, m: Optional[int], config: LbfgsConfig, desc: str,
         progress: Optional[bool]):
    """The chunk loop of :func:`minimize` (``m`` None) and :func:`minimize_many` (``m`` members):
    ``chunk(params, opt_state, active) -> (params, opt_state, rows ([M,] chunk), finite ([M]))``.
    Returns the parameters, each member's history and stop reason, and the seconds taken."""
    n, keys = m or 1, ("value", "grad_norm", "step_size", "linesearch_steps")
    histories = [{k: [] for k in keys} for _ in range(n)]
    active, reasons = np.ones(n, bool), ["max_iter"] * n
    n_chunks = math.ceil(config.max_iter / config.chunk)
    t0 = time.perf_counter()
    bar = EpochProgress(n_chunks * config.chunk, desc=desc, enabled=progress, unit="iteration")
    try:
        for c in range(n_chunks):
            if not active.any():
                break
            new_params, new_state, rows, finite = chunk(params, opt_state, active)
            rows = {k: np.asarray(a, dtype=np.float64).reshape(n, -1) for k, a in jax.device_get(rows).items()}
            broken = np.flatnonzero(active & ~(np.asarray(finite).reshape(n) & np.isfinite(rows["value"]).all(axis=1)))
            if broken.size:
                which, what = ("", "") if m is None else (f" for member(s) {broken.tolist()}", "stacked ")
                # the first broken member's first non-finite iterate (its value is recorded before each
                # step), else the chunk's last step made the parameters non-finite
                values = np.concatenate([histories[broken[0]]["value"], rows["value"][broken[0]]])
                bad = np.flatnonzero(~np.isfinite(values))
                step = int(bad[0]) + 1 if bad.size else len(values)
                finite = values[:step][np.isfinite(values[:step])]
                last = float(finite[-1]) if finite.size else None
                raise NonFiniteError(
                    f"{desc}: L-BFGS produced a non-finite value or parameters{which} in iterations "
                    f"{c * config.chunk + 1}-{(c + 1) * config.chunk} (first at iteration {step}, last finite value "
                    + (f"{last:.6g}" if last is not None else "none") + f"); kept the {what}parameters from "
                    "before them (error.last_good).",
                    c + 1, init_fit_state(params, optax.identity(), jax.random.PRNGKey(0)), step, last,
                )
            params, opt_state = new_params, new_state
            for i in np.flatnonzero(active):
                member_rows = {k: [float(v) for v in rows[k][i]] for k in keys}
                for k in keys:
                    histories[i][k].extend(member_rows[k])
                reasons[i] = _stops(member_rows, config) or reasons[i]
                active[i] = reasons[i] == "max_iter"
            bar.update((c + 1) * config.chunk, {"train_loss": float(np.mean(rows["value"][:, -1]))})
    finally:
        bar.close()
    seconds, its, total = time.perf_counter() - t0, max(len(h["value"]) for h in histories), n_chunks * config.chunk
    n_early = sum(r != "max_iter" for r in reasons)
    why = f"{n_early} of {m} members converged early" if m and n_early else STOP_REASONS[reasons[0]]
    log.info("%s: %s, %.1fs", desc, f"stopped early after {its} of at most {total} iterations ({why})" if its < total
             else f"ran all {its} iterations ({why})", seconds)
    return params, histories, reasons, seconds


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
    norm *before* each step), with why it stopped (``stop_reason``). Raises
    :class:`mp_jax.engine.train.NonFiniteError` when the value or the parameters stop being finite.
    """
    fn_kwargs = fn_kwargs or {}
    chunk_fn = make_chunk_fn(loss_and_grad, config)

    def chunk(params, opt_state, active):
        params, opt_state, rows = chunk_fn(params, opt_state, batch, fn_kwargs)
        return params, opt_state, rows, trees.all_finite(params)

    opt_state = _strong(make_optimizer(config).init(params))
    params, [history], [reason], seconds = _run(chunk, params, opt_state, None, config, desc, progress)
    return LbfgsResult(params, history, len(history["value"]), reason != "max_iter", seconds, reason)


def minimize_many(
    loss_and_grad: Callable,
    params_stacked: PyTree,
    batch: PyTree,
    config: LbfgsConfig = LbfgsConfig(),
    *,
    fn_kwargs_stacked: dict | None = None,
    progress: bool | None = None,
    desc: str = "lbfgs (vmapped)",
) -> list[LbfgsResult]:
    """:func:`minimize` for M members at once: one compiled program, ``jax.vmap`` over members.

    ``params_stacked`` and every leaf of ``fn_kwargs_stacked`` (e.g. ``{"hp": AEHyper(lam=<[M]>,
    ...)}``) carry a leading axis M; ``batch`` is shared. Each member gets exactly the
    iterations it would get alone: after each chunk :func:`minimize`'s stopping rule is
    applied to every member, and a member that has stopped is frozen (the program still
    computes it, but its parameters, optimiser state and history no longer change).

    Returns one :class:`LbfgsResult` per member, equal (to round-off) to ``minimize`` with
    that member's parameters and keyword arguments; ``seconds`` is the member's share
    (1/M) of the program's wall time. Progress counts the program's iterations (those of
    its longest member). Raises :class:`mp_jax.engine.train.NonFiniteError` when a
    still-running member's value or parameters stop being finite.
    """
    fn_kwargs_stacked = fn_kwargs_stacked or {}
    m = int(jax.tree.leaves(params_stacked)[0].shape[0])
    bad = [tuple(x.shape) for x in jax.tree.leaves((params_stacked, fn_kwargs_stacked)) if jnp.ndim(x) < 1 or x.shape[0] != m]
    if bad:
        raise ValueError(f"{desc}: every leaf of params_stacked and fn_kwargs_stacked needs the leading member axis "
                         f"M={m} (from the first parameter leaf); found shapes {bad}. Stack the members with "
                         f"mp_jax.engine.sweep.stack.")
    chunk_fn = make_chunk_many_fn(loss_and_grad, config)

    def chunk(params, opt_state, active):
        src = np.where(active, np.arange(m), np.flatnonzero(active)[0])
        return chunk_fn(params, opt_state, batch, fn_kwargs_stacked, jnp.asarray(active),
                        jnp.asarray(src, dtype=jnp.int32))

    opt_state = _strong(jax.vmap(make_optimizer(config).init)(params_stacked))
    params, histories, reasons, seconds = _run(chunk, params_stacked, opt_state, m, config, desc, progress)
    return [LbfgsResult(trees.unstack(params, i), h, len(h["value"]), r != "max_iter", seconds / m, r)
            for i, (h, r) in enumerate(zip(histories, reasons))]
