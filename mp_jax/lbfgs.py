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
iterations (:class:`IterationProgress`): the time left is an upper bound, reached only
when the run goes to ``max_iter``, and the end says whether, and why, it stopped earlier.

:func:`minimize_many` trains M members (same shapes and data, different parameters
and/or keyword arguments) as one program: the chunk ``jax.vmap``-ed over members, the
same stopping rule applied to each member after every chunk, and stopped members
frozen, so each member equals its run alone.
"""
from __future__ import annotations

import functools
import logging
import math
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mp_jax import trees
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
    stop_reason: str = "max_iter"  # "gtol", "ftol" or "max_iter" (see STOP_REASONS)


STOP_REASONS = {
    "gtol": "the gradient norm reached gtol",
    "ftol": "a chunk lowered J by less than ftol·|J|",
    "max_iter": "max_iter reached",
}


class IterationProgress:
    """L-BFGS progress in iterations: a tqdm bar on a terminal, log lines elsewhere.

    ``enabled=None`` shows a bar only when stderr is a terminal; otherwise a line on the
    ``mp_jax.lbfgs`` logger about every quarter of ``total`` (from the second chunk on, once
    there is a rate to estimate from). The time
    left is ``total`` minus the iterations done at the rate of the chunks after the first
    (the first one includes compilation): an upper bound, since the run stops as soon as it
    converges. :meth:`close` logs how many iterations ran and why the run stopped.
    """

    def __init__(self, total: int, desc: str, enabled: Optional[bool] = None):
        self.total, self.desc = total, desc
        self.start = time.perf_counter()
        self.first: Optional[tuple[int, float]] = None  # (iterations, seconds) of the first update
        self.done = 0
        self.next_log = 0
        self.bar = None
        if (sys.stderr.isatty() if enabled is None else enabled):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="it", leave=False, dynamic_ncols=True)

    def left(self) -> float:
        """Seconds left at most (nan before two updates)."""
        if self.first is None or self.done <= self.first[0]:
            return math.nan
        per_iteration = (time.perf_counter() - self.start - self.first[1]) / (self.done - self.first[0])
        return per_iteration * (self.total - self.done)

    def update(self, done: int, value: float) -> None:
        """``done`` iterations finished so far; ``value`` the latest J (or a mean over members)."""
        step, self.done = done - self.done, done
        if self.first is None:
            self.first = (done, time.perf_counter() - self.start)
        left = self.left()
        left_text = f"≤ {left:.0f}s" if math.isfinite(left) else "?"
        if self.bar is not None:
            self.bar.set_postfix({"J": f"{value:.4f}", "left": left_text}, refresh=False)
            self.bar.update(step)
            return
        if done == self.first[0] or done < self.next_log:
            return
        self.next_log = done + max(1, self.total // 4)
        log.info("%s: iteration %d/%d, J %.5g, %.1fs elapsed, %s left (less if it converges)", self.desc, done,
                 self.total, value, time.perf_counter() - self.start, left_text)

    def close(self, iterations: Optional[int] = None, reason: Optional[str] = None) -> None:
        """End the bar; log the iterations run and why it stopped (``reason`` a key of
        :data:`STOP_REASONS`, or a phrase)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if iterations is None:
            return
        why = STOP_REASONS.get(reason, reason)
        early = f"stopped early after {iterations} of at most {self.total} iterations ({why})" \
            if iterations < self.total else f"ran all {iterations} iterations ({why})"
        log.info("%s: %s, %.1fs", self.desc, early, time.perf_counter() - self.start)


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
    return _chunk_fn(loss_and_grad, config.memory_size, config.max_linesearch_steps, config.chunk)


def _chunk_body(loss_and_grad: Callable, memory_size: int, max_linesearch_steps: int, chunk: int):
    """The (unjitted) ``(params, opt_state, batch, fn_kwargs) -> (params, opt_state, rows)``."""
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

    return run


@functools.lru_cache(maxsize=32)
def _chunk_fn(loss_and_grad: Callable, memory_size: int, max_linesearch_steps: int, chunk: int):
    return jax.jit(_chunk_body(loss_and_grad, memory_size, max_linesearch_steps, chunk))


def make_chunk_many_fn(loss_and_grad: Callable, config: LbfgsConfig):
    """Jitted ``(params, opt_state, batch, fn_kwargs, active, src) -> (params, opt_state, rows, finite)``:
    :func:`make_chunk_fn`'s chunk ``jax.vmap``-ed over members (every argument but ``batch``
    has a leading axis M; ``active`` is <bool>[M]; ``src`` <int32>[M] is i for an active
    member and some active member's index for a stopped one). Members with ``active`` False
    come back unchanged (frozen); ``finite`` <bool>[M] says whether each member's new
    parameters are finite."""
    return _chunk_many_fn(loss_and_grad, config.memory_size, config.max_linesearch_steps, config.chunk)


@functools.lru_cache(maxsize=32)
def _chunk_many_fn(loss_and_grad: Callable, memory_size: int, max_linesearch_steps: int, chunk: int):
    config = LbfgsConfig(memory_size=memory_size, max_linesearch_steps=max_linesearch_steps, chunk=chunk)
    optimizer = make_optimizer(config)

    def value_fn(batch, fn_kwargs):
        return manual_value_fn(loss_and_grad, batch, fn_kwargs)

    def run(params, opt_state, batch, fn_kwargs, active, src):
        # A stopped member's slot recomputes an active member (src[i]): its results are thrown
        # away, and a converged member would otherwise keep the batched line search (a
        # while_loop that runs until every member is done) busy for up to max_linesearch_steps.
        frozen_params, frozen_state = params, opt_state
        params, opt_state, fn_kwargs = jax.tree.map(lambda x: x[src], (params, opt_state, fn_kwargs))
        # The step of _chunk_body with the vmap inside it. optax.value_and_grad_from_state
        # picks the value and gradient stored by the last line search (or computes them when
        # there are none) with a lax.cond; vmapped, that cond would become a select that
        # computes J and ∇J every step. Here the cond is taken once for all members
        # (computing only when some member lacks them), and each member then gets exactly
        # what it would get alone.
        value_and_grad_all = jax.vmap(lambda p, kw: jax.value_and_grad(value_fn(batch, kw))(p))

        def member_update(p, s, value, grad, kw):
            updates, s = optimizer.update(grad, s, p, value=value, grad=grad, value_fn=value_fn(batch, kw))
            row = {"value": value, "grad_norm": optax.tree.norm(grad),
                   "step_size": optax.tree.get(s, "learning_rate"),
                   "linesearch_steps": optax.tree.get(s, "info").num_linesearch_steps}
            return optax.apply_updates(p, updates), s, row

        def step(carry, _):
            params, state = carry
            stored = (optax.tree.get(state, "value"), optax.tree.get(state, "grad"))
            ok = jnp.isfinite(stored[0])  # <bool>[M]

            def fresh():
                computed = value_and_grad_all(params, fn_kwargs)
                return trees.select(ok, stored, computed)

            value, grad = jax.lax.cond(jnp.all(ok), lambda: stored, fresh)
            params, state, row = jax.vmap(member_update)(params, state, value, grad, fn_kwargs)
            return (params, state), row

        (new_params, new_state), rows = jax.lax.scan(step, (params, opt_state), None, length=config.chunk)
        finite = trees.all_finite(new_params, per_member=True)
        rows = jax.tree.map(lambda r: jnp.swapaxes(r, 0, 1), rows)  # [chunk, M] -> [M, chunk]
        return (trees.select(active, new_params, frozen_params), trees.select(active, new_state, frozen_state),
                rows, finite)

    return jax.jit(run)


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
    :class:`mp_jax.train.NonFiniteError` when the value or the parameters stop being finite.
    """
    fn_kwargs = fn_kwargs or {}
    opt_state = _strong(make_optimizer(config).init(params))
    n_chunks = math.ceil(config.max_iter / config.chunk)
    chunk_fn = make_chunk_fn(loss_and_grad, config)
    history: dict = {"value": [], "grad_norm": [], "step_size": [], "linesearch_steps": []}
    reason = "max_iter"
    t0 = time.perf_counter()
    bar = IterationProgress(n_chunks * config.chunk, desc, enabled=progress)
    try:
        for c in range(n_chunks):
            new_params, new_state, rows = chunk_fn(params, opt_state, batch, fn_kwargs)
            rows = {k: [float(v) for v in jax.device_get(a)] for k, a in rows.items()}
            if not (all(math.isfinite(v) for v in rows["value"]) and bool(trees.all_finite(new_params))):
                raise NonFiniteError(
                    f"{desc}: L-BFGS produced a non-finite value or parameters in iterations "
                    f"{c * config.chunk + 1}-{(c + 1) * config.chunk}; kept the parameters from before them "
                    f"(error.last_good).",
                    c + 1, init_fit_state(params, optax.identity(), jax.random.PRNGKey(0)),
                )
            params, opt_state = new_params, new_state
            for k, v in rows.items():
                history[k].extend(v)
            bar.update((c + 1) * config.chunk, rows["value"][-1])
            reason = _stops(rows, config) or reason
            if reason != "max_iter":
                break
    finally:
        bar.close()
    iterations = len(history["value"])
    bar.close(iterations, reason)
    return LbfgsResult(params, history, iterations, reason != "max_iter", time.perf_counter() - t0, reason)


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
    its longest member). Raises :class:`mp_jax.train.NonFiniteError` when a
    still-running member's value or parameters stop being finite.
    """
    fn_kwargs_stacked = fn_kwargs_stacked or {}
    leaves = jax.tree.leaves(params_stacked)
    m = int(leaves[0].shape[0])
    bad = [tuple(x.shape) for x in jax.tree.leaves((params_stacked, fn_kwargs_stacked)) if jnp.ndim(x) < 1 or x.shape[0] != m]
    if bad:
        raise ValueError(f"{desc}: every leaf of params_stacked and fn_kwargs_stacked needs the leading member axis "
                         f"M={m} (from the first parameter leaf); found shapes {bad}. Stack the members with "
                         f"mp_jax.sweep.stack.")
    opt_state = _strong(jax.vmap(make_optimizer(config).init)(params_stacked))
    params = params_stacked
    n_chunks = math.ceil(config.max_iter / config.chunk)
    chunk_fn = make_chunk_many_fn(loss_and_grad, config)
    keys = ("value", "grad_norm", "step_size", "linesearch_steps")
    histories = [{k: [] for k in keys} for _ in range(m)]
    active = np.ones(m, bool)
    reasons = ["max_iter"] * m
    t0 = time.perf_counter()
    bar = IterationProgress(n_chunks * config.chunk, desc, enabled=progress)
    try:
        for c in range(n_chunks):
            if not active.any():
                break
            src = np.where(active, np.arange(m), np.flatnonzero(active)[0])
            new_params, new_state, rows, finite = chunk_fn(params, opt_state, batch, fn_kwargs_stacked,
                                                           jnp.asarray(active), jnp.asarray(src, dtype=jnp.int32))
            rows = {k: np.asarray(a, dtype=np.float64) for k, a in jax.device_get(rows).items()}
            finite = np.asarray(finite) & np.isfinite(rows["value"]).all(axis=1)
            broken = np.flatnonzero(active & ~finite)
            if broken.size:
                raise NonFiniteError(
                    f"{desc}: L-BFGS produced a non-finite value or parameters for member(s) {broken.tolist()} in "
                    f"iterations {c * config.chunk + 1}-{(c + 1) * config.chunk}; kept the stacked parameters "
                    f"from before them (error.last_good).",
                    c + 1, init_fit_state(params, optax.identity(), jax.random.PRNGKey(0)),
                )
            params, opt_state = new_params, new_state
            for i in np.flatnonzero(active):
                member_rows = {k: [float(v) for v in rows[k][i]] for k in keys}
                for k in keys:
                    histories[i][k].extend(member_rows[k])
                reasons[i] = _stops(member_rows, config) or reasons[i]
                active[i] = reasons[i] == "max_iter"
            bar.update((c + 1) * config.chunk, float(np.mean(rows["value"][:, -1])))
    finally:
        bar.close()
    iterations = [len(h["value"]) for h in histories]
    n_early = sum(r != "max_iter" for r in reasons)
    bar.close(max(iterations), f"{n_early} of {m} members converged early" if n_early else "max_iter reached")
    share = (time.perf_counter() - t0) / m
    return [LbfgsResult(trees.unstack(params, i), histories[i], iterations[i], reasons[i] != "max_iter", share,
                        reasons[i]) for i in range(m)]
