"""Many runs as one compiled program: ``jax.vmap`` of the engine's epoch over members.

A sweep trains M members that share the data and the shapes but differ in their
hyperparameters (a pytree ``hps`` with a leading axis M, passed to
``loss_and_grad(params, batch, hp)``), their initial parameters and/or their PRNG keys
(seeds). Each member is the same computation as the run trained alone by
:func:`mp_jax.engine.train.fit` with that member's hyperparameters, parameters and key: the
same permutations, the same minibatches, the same updates; early stopping is tracked
per member (a member that has stopped keeps training inside the program, but its best
parameters, history and epoch count are frozen at its stop, exactly as if trained alone;
the rule is :class:`mp_jax.engine.train.EarlyStopping`, as for a run alone).

Whether this pays depends on the device: on an accelerator one member leaves most of it idle
and the vmapped program trains M members in little more than one member's time; on a CPU a
batched matmul of a few members runs no faster per FLOP than the members' own matmuls, so
the members trained one after another finish sooner (``BENCHMARKS.md``). The experiments
therefore vmap on an accelerator and train one after another on a CPU (``--vmap`` /
``--no-vmap`` override).
"""
from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
import optax

from mp_jax.engine import train
from mp_jax.runtime.progress import EpochProgress
from mp_jax.engine.trees import max_abs_difference, select, stack, unstack

__all__ = ["SweepResult", "fit_sweep", "max_abs_difference", "stack", "unstack"]

PyTree = Any


class SweepResult(NamedTuple):
    params: PyTree  # the kept parameters (best, or last: FitConfig.keep), stacked: leading axis M
    last_params: PyTree
    histories: list  # one history dict per member
    best_epochs: list
    epochs_run: list
    compile_seconds: float
    stopped_early: list = []  # per member: stopped by the patience rule before config.epochs
    seconds: float = math.nan  # the program's wall time, compilation included


def fit_sweep(
    loss_and_grad: Callable,
    optimizer: optax.GradientTransformation,
    params: PyTree,
    train_data: PyTree,
    config: train.FitConfig,
    *,
    keys: jax.Array,
    hps: Optional[PyTree] = None,
    val_data: Optional[PyTree] = None,
    metrics_fn: Optional[Callable] = None,
    progress: Optional[bool] = None,
    desc: str = "sweep",
) -> SweepResult:
    """Train M members at once.

    Args:
      loss_and_grad: ``(params, batch, hp) -> (loss, grads)`` when ``hps`` is given, else
        ``(params, batch) -> (loss, grads)``.
      params: stacked initial parameters, leading axis M.
      keys: <uint32>[M, 2], one PRNG key per member (as ``fit``'s ``key``).
      hps: stacked hyperparameters (leading axis M) or None.
      metrics_fn: ``(params, batch[, hp]) -> {"loss": ...}`` for validation.
    """
    m = int(keys.shape[0])

    def bind(fn, hp):
        return fn if hps is None else functools.partial(fn, hp=hp)

    n_train = train.num_examples(train_data)
    bs = min(config.batch_size, n_train)

    def member_epoch(p, s, key, hp):
        data = train_data if config.augment is None else config.augment(train.augment_key(key), train_data)
        return train.make_epoch_fn(bind(loss_and_grad, hp), optimizer, bs, jit=False)(p, s, key, data)

    def member_eval(p, hp):
        fn = metrics_fn if metrics_fn is not None else (lambda pp, b, **kw: {"loss": loss_and_grad(pp, b, **kw)[0]})
        return train.make_eval_fn(bind(fn, hp), config.eval_batch_size, jit=False)(p, val_data)

    hp_axis = None if hps is None else 0
    epoch_v = jax.jit(jax.vmap(member_epoch, in_axes=(0, 0, 0, hp_axis)))
    eval_v = jax.jit(jax.vmap(member_eval, in_axes=(0, hp_axis))) if val_data is not None else None

    opt_state = jax.vmap(optimizer.init)(params)
    t0 = time.perf_counter()
    sub0 = jax.vmap(lambda k: jax.random.split(k)[1])(keys)
    epoch_c = epoch_v.lower(params, opt_state, sub0, hps).compile()
    eval_c = eval_v.lower(params, hps).compile() if eval_v is not None else None
    compile_seconds = time.perf_counter() - t0

    stopping = train.EarlyStopping(config.patience)
    best_params = params
    best_loss = np.full(m, np.inf)
    best_epoch = np.zeros(m, int)
    bad = np.zeros(m, int)
    active = np.ones(m, bool)
    epochs_run = np.zeros(m, int)
    histories = [{"train_loss": [], "epoch_seconds": []} for _ in range(m)]
    bar = EpochProgress(total=config.epochs, desc=desc, enabled=progress)
    try:
        for epoch in range(1, config.epochs + 1):
            if not active.any():
                break
            split = jax.vmap(jax.random.split)(keys)
            keys, sub = split[:, 0], split[:, 1]
            t = time.perf_counter()
            new_params, new_opt_state, losses, finite = epoch_c(params, opt_state, sub, hps)
            # members that stopped early are frozen, so every output equals the lone run's
            params = select(active, new_params, params)
            opt_state = select(active, new_opt_state, opt_state)
            losses, finite = np.asarray(losses), np.asarray(finite)
            seconds = time.perf_counter() - t
            bad_members = np.flatnonzero(active & ~(np.isfinite(losses) & finite))
            if bad_members.size:
                raise FloatingPointError(
                    f"{desc}: member(s) {bad_members.tolist()} became non-finite at epoch {epoch}; "
                    f"lower their learning rate or enable clipping")
            vals = {k: np.asarray(v) for k, v in eval_c(params, hps).items()} if eval_c is not None else {}
            monitored = vals.get("loss", losses)
            improved, best_loss, bad = stopping.update(monitored, best_loss, bad, active)
            best_params = select(improved, params, best_params)
            best_epoch = np.where(improved, epoch, best_epoch)
            for i in np.flatnonzero(active):
                h = histories[i]
                h["train_loss"].append(float(losses[i]))
                h["epoch_seconds"].append(seconds / m)
                for k, v in vals.items():
                    h.setdefault(f"val_{k}", []).append(float(v[i]))
            epochs_run = np.where(active, epoch, epochs_run)
            active &= ~stopping.exhausted(bad)
            bar.update(epoch, {"train_loss": float(np.mean(losses))})
    finally:
        bar.close()
    stopped = [bool(stopping.exhausted(b)) for b in bad]
    kept = params if config.keep == "last" else best_params
    return SweepResult(kept, params, histories, best_epoch.tolist(), epochs_run.tolist(), compile_seconds,
                       stopped, time.perf_counter() - t0)
