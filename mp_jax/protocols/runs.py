"""One named training run: the single door every experiment trains through.

``fit_run`` wraps :func:`mp_jax.engine.train.fit`. What the runs of a question share is a
:class:`RunContext`, made by the entry point and passed down as an argument: the
checkpoint store, the device mesh, whether this process writes, how progress shows. With
a store (the entry points open one per question) every run writes a checkpoint after each
epoch, keyed by a hash of its name, its run key (every setting of the question's frozen
configuration, the data's digest and split: :meth:`experiments.config.RunOptions.run_key`),
the engine's settings and its PRNG key; calling the same run again loads it when it
finished (with the training time it recorded then), resumes it from its last epoch when
it was interrupted (ending with the same parameters as an uninterrupted run), and sets
aside a corrupt or mismatched checkpoint with a warning before starting over. Without a
store runs train without checkpoints. ``cached_run`` does the same for a run
that does not go through the engine (full-batch L-BFGS, a vmapped sweep), saved whole
when it finishes.

In a distributed run (:mod:`mp_jax.engine.distributed`) only process 0 reads and writes a
:func:`fit_run`'s checkpoint and sets a bad one aside: the state it read, and whether the
run finished, are sent to every process (:func:`mp_jax.engine.distributed.share_fit_state`), so
all take the same branch and resume from the same epoch without a shared file system. A
:func:`cached_run`'s saved result is read by each process that finds it (a shared
results folder), and computed again by one that does not (no collective runs inside it);
only process 0 saves it.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
import optax

from mp_jax.engine import checkpoint, distributed, parallel, sweep, train

log = logging.getLogger("mp_jax.protocols.runs")


@dataclasses.dataclass
class RunStore:
    """Where checkpoints go, and what happened to each run (for summaries)."""

    directory: Path
    # (name, "trained" | "resumed" | "loaded", seconds spent on it now, training seconds it recorded)
    events: list = dataclasses.field(default_factory=list)

    def summary(self) -> dict:
        """``{"trained": n, "resumed": n, "loaded": n, "train_seconds": s}``: how many runs
        of each kind, and the training time all of them recorded (a loaded run counts the
        time it took when it was trained)."""
        out = {"trained": 0, "resumed": 0, "loaded": 0}
        for _, event, _, _ in self.events:
            out[event] += 1
        out["train_seconds"] = float(sum(e[3] for e in self.events if math.isfinite(e[3])))
        return out


class Cached(NamedTuple):
    """What :func:`cached_run` returns."""

    params: Any
    record: dict
    seconds: float  # the training time of the computation (as recorded when it ran)
    loaded: bool  # True when read back from its saved result instead of computed now


def placement(n_devices: Optional[int] = None) -> tuple:
    """``(mesh, explicit)``: every ``fit_run`` trains data-parallel over ``n_devices`` local
    devices; with one device, no mesh is used. The default (``explicit`` False) is every
    accelerator, or on a CPU none: there the runs that gain from it
    (``split_over_cpu_cores``, the recurrences) split each batch over the CPU cores
    themselves, and the rest train on one device (their large matmuls already use every core)."""
    explicit = n_devices is not None
    if not explicit:
        n_devices = 1 if jax.default_backend() == "cpu" else jax.device_count()
    return (train.make_mesh(n_devices) if n_devices != 1 else None), explicit


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What the runs of one question use, made by the entry point and passed down: the
    checkpoint store (None: no checkpoints), the device mesh (``--devices``; ``mesh_explicit``
    when the flag was given), whether this process writes files (process 0 of a distributed
    run), how training shows progress (None: a bar on a terminal; False: log lines) and when
    the question started (``time.time()``: the files written since are its results)."""

    store: Optional[RunStore] = None
    mesh: Any = None
    mesh_explicit: bool = False
    writer: bool = True
    progress: Optional[bool] = None
    started: float = dataclasses.field(default_factory=time.time)

    @classmethod
    def start(cls, checkpoints: Optional[Path] = None, n_devices: Optional[int] = None,
              progress: Optional[bool] = None) -> "RunContext":
        """The context of a question's runs: checkpoints in ``checkpoints`` (None: none), the
        mesh of :func:`placement` for ``n_devices``."""
        store = None
        if checkpoints is not None:
            store = RunStore(Path(checkpoints))
            store.directory.mkdir(parents=True, exist_ok=True)
        mesh, explicit = placement(n_devices)
        return cls(store, mesh, explicit, distributed.is_writer(), progress)

    def run_mesh(self, batch_size: int, split_over_cpu_cores: bool):
        """The mesh one run trains on: the context's; or, when ``--devices`` was not given,
        for a run that asks for it on a CPU, the CPU cores as devices (as many as divide the
        batch size; see :mod:`mp_jax.engine.parallel`)."""
        if not self.mesh_explicit and split_over_cpu_cores and jax.default_backend() == "cpu":
            return parallel.cpu_mesh(batch_size)
        return self.mesh

    def summary(self) -> Optional[dict]:
        """:meth:`RunStore.summary` of the context's store (None without one)."""
        return None if self.store is None else self.store.summary()


@dataclasses.dataclass(frozen=True)
class Training:
    """How a run trains: its gradients (``loss_and_grad``; ``vmapped_loss_and_grad`` for the
    members of :func:`fit_members` trained as one program), the optimizer, the engine's
    settings, what it measures on the validation data, and how its batches split over a mesh.

    ``per_example_mean``: the loss is a mean over examples (see :mod:`mp_jax.engine.parallel`): on a
    mesh each device computes its shard's gradient and they are averaged.
    ``split_over_cpu_cores``: on a CPU without ``--devices``, split each batch over the CPU
    cores (:meth:`RunContext.run_mesh`); for the recurrences, whose scans run on one core each."""

    loss_and_grad: Callable
    optimizer: optax.GradientTransformation
    fit_config: train.FitConfig
    metrics_fn: Optional[Callable] = None
    per_example_mean: bool = False
    split_over_cpu_cores: bool = False
    vmapped_loss_and_grad: Optional[Callable] = None


def _set_aside(ctx: RunContext, path: Path, why: str) -> Optional[Path]:
    """Rename an unusable checkpoint to ``<stem>.bad-<timestamp>.h5`` (the writing process only)."""
    if not ctx.writer:
        log.warning("%s; starting this run over", why)
        return None
    aside = path.with_name(f"{path.stem}.bad-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    path.rename(aside)
    log.warning("%s; set aside as %s and starting this run over", why, aside.name)
    return aside


def _save_state(ctx: RunContext, path: Path, state, meta: dict) -> None:
    """:func:`mp_jax.engine.checkpoint.save_state` (atomic) on the writing process only."""
    if ctx.writer:
        checkpoint.save_state(path, state, meta)


def _share_meta(ctx: RunContext, meta: Optional[dict]) -> dict:
    """In a distributed run, what every process needs of process 0's checkpoint metadata
    (finished, stopped early, training seconds so far); ``meta`` as it is in one process."""
    if distributed.num_processes() == 1:
        return meta or {}
    from jax.experimental import multihost_utils

    mine = meta if ctx.writer and meta is not None else {}
    seconds = mine.get("seconds")
    flags = np.asarray([float(bool(mine.get("finished"))), float(bool(mine.get("stopped_early"))),
                        float(seconds) if isinstance(seconds, (int, float)) else -1.0], np.float32)
    finished, stopped_early, seconds = (float(v) for v in np.asarray(multihost_utils.broadcast_one_to_all(flags)))
    out = {"finished": finished > 0.5, "stopped_early": stopped_early > 0.5}
    if seconds >= 0:
        out["seconds"] = seconds
    return out


def _load_or_set_aside(ctx: RunContext, path: Path, template: train.FitState, run_hash: str, name: str):
    """The checkpoint at ``path`` as ``(state, meta)``; None when there is none, or when it is
    unusable (then it is set aside with a warning)."""
    if not path.exists():
        return None
    try:
        return checkpoint.load_state(path, template, expect_meta={"run_hash": run_hash})
    except checkpoint.CheckpointError as e:
        _set_aside(ctx, path, f"{name}: {e}")
        return None


def _recorded_seconds(meta: dict, state: train.FitState) -> float:
    """The training time a checkpoint recorded (older ones: the sum of its epochs' times)."""
    if isinstance(meta.get("seconds"), (int, float)):
        return float(meta["seconds"])
    return float(sum((state.history or {}).get("epoch_seconds", [])))


def _result_from_state(state: train.FitState, stopped_early: bool, seconds: float,
                       fit_config: train.FitConfig) -> train.FitResult:
    return train.FitResult(params=fit_config.kept(state), last_params=state.params, history=state.history,
                           best_epoch=state.best_epoch, epochs_run=state.epoch, stopped_early=stopped_early,
                           compile_seconds=0.0, state=state, seconds=seconds, loaded=True)


def _key_list(key: jax.Array) -> list:
    return (jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key).tolist()


def fit_run(ctx: RunContext, name: str, training: Training, params: Any, train_data: Any, *, key: jax.Array,
            run_key: Optional[dict], val_data: Any = None) -> train.FitResult:
    """Train one run (or skip / resume it from its checkpoint).

    Returns :func:`mp_jax.engine.train.fit`'s result; ``seconds`` is the run's whole training time
    (over every call that trained part of it) and ``loaded`` tells a finished run read back.

    Args:
      ctx: the question's :class:`RunContext` (checkpoints, mesh, progress).
      name: a short unique name within the question, e.g. ``"lm_D32_P256"``.
      training: how it trains (:class:`Training`).
      run_key: what defines the run (JSON-serialisable), normally
        :meth:`experiments.config.RunOptions.run_key`: every setting of the question's
        configuration, the data's digest and split, the run's own settings. Together with
        ``name``, the engine's settings and ``key`` it keys the checkpoint. None: no checkpoint.
      The rest as :func:`mp_jax.engine.train.fit`.
    """
    fit_config, store = training.fit_config, ctx.store
    mesh = ctx.run_mesh(fit_config.batch_size, training.split_over_cpu_cores)
    fit_kwargs = dict(key=key, val_data=val_data, metrics_fn=training.metrics_fn, progress=ctx.progress, desc=name,
                      mesh=mesh, per_example_mean=training.per_example_mean)
    if mesh is not None:
        devs = mesh.devices.ravel()
        log.info("%s: each batch split over %d %s devices (%s)", name, devs.size, devs[0].platform,
                 "gradients averaged" if training.per_example_mean else "XLA-partitioned step")
    args = (training.loss_and_grad, training.optimizer, params, train_data, fit_config)
    if store is None or run_key is None:
        return train.fit(*args, **fit_kwargs)

    run_hash = checkpoint.config_hash(_with_precision({
        "name": name, "run": run_key, "fit_config": dataclasses.asdict(fit_config), "key": _key_list(key)}))
    path = store.directory / f"{name}-{run_hash}.h5"
    template = train.init_fit_state(params, training.optimizer, key)
    state, event, before = None, "trained", 0.0
    saved = _load_or_set_aside(ctx, path, template, run_hash, name) if ctx.writer else None
    if distributed.num_processes() > 1:  # process 0's reading, in every process
        state = distributed.share_fit_state(None if saved is None else saved[0], template)
        meta = _share_meta(ctx, None if saved is None else saved[1])
        saved = None if state is None else (state, meta)
    if saved is not None:
        state, meta = saved
        before = _recorded_seconds(meta, state)
        if meta.get("finished"):
            log.info("%s: finished earlier (epoch %d, best %d, trained in %.1fs); loaded", name, state.epoch,
                     state.best_epoch, before)
            store.events.append((name, "loaded", 0.0, before))
            return _result_from_state(state, bool(meta.get("stopped_early")), before, fit_config)
        log.info("%s: resuming after epoch %d", name, state.epoch)
        event = "resumed"
    meta = {"name": name, "run_hash": run_hash, "run": run_key, "finished": False}

    t = time.perf_counter()

    def save(s):  # each epoch: the state, and the training time so far
        _save_state(ctx, path, s, {**meta, "seconds": before + time.perf_counter() - t})

    result = train.fit(*args, state=state, on_epoch_end=save, **fit_kwargs)
    seconds = time.perf_counter() - t
    _save_state(ctx, path, result.state, {**meta, "seconds": before + seconds, "finished": True,
                                          "stopped_early": result.stopped_early})
    store.events.append((name, event, seconds, before + seconds))
    log.info("%s: done in %.1fs (%d epochs, best epoch %d)", name, seconds, result.epochs_run, result.best_epoch)
    return result._replace(seconds=before + seconds)


def _with_precision(key: dict) -> dict:
    """A run's checkpoint key, plus the float32 matmul precision when it is not the full
    precision the experiments default to (``--matmul-precision``): a run computed at
    TensorFloat-32 is another run."""
    precision = jax.config.jax_default_matmul_precision
    return key if precision == "highest" else {**key, "matmul_precision": str(precision)}


def cached_run(ctx: RunContext, name: str, *, run_key: Optional[dict], template: Any, compute) -> Cached:
    """A run that does not go through the engine (e.g. full-batch L-BFGS), made skippable.

    ``compute()`` returns ``(params, record)`` with ``record`` JSON-serialisable. With a
    checkpoint store in ``ctx`` the result is saved when it finishes, with the seconds
    ``compute`` took, and the same run (same name and ``run_key``: see :func:`fit_run`)
    called again returns the saved result and those seconds without training (``loaded``);
    a corrupt or mismatched file is set aside and the run recomputed. ``template`` is a
    pytree with the structure, shapes and dtypes of ``params``. Without a store, or with
    ``run_key`` None, it just computes (nothing is saved).
    """
    store = ctx.store
    if store is None or run_key is None:
        t = time.perf_counter()
        params, record = compute()
        return Cached(params, record, time.perf_counter() - t, False)
    run_hash = checkpoint.config_hash(_with_precision({"name": name, "run": run_key}))
    path = store.directory / f"{name}-{run_hash}.h5"
    empty = train.FitState(params=template, opt_state=(), key=jax.numpy.zeros((2,), jax.numpy.uint32), epoch=0,
                           best_params=(), best_loss=0.0, best_epoch=0, bad_epochs=0, history={})
    saved = _load_or_set_aside(ctx, path, empty, run_hash, name)
    if saved is not None:
        state, meta = saved
        seconds = float(meta["seconds"]) if isinstance(meta.get("seconds"), (int, float)) else math.nan
        log.info("%s: finished earlier (trained in %.1fs); loaded", name, seconds)
        store.events.append((name, "loaded", 0.0, seconds))
        return Cached(state.params, meta["record"], seconds, True)
    t = time.perf_counter()
    params, record = compute()
    seconds = time.perf_counter() - t
    _save_state(ctx, path, empty._replace(params=params),
                {"name": name, "run_hash": run_hash, "run": run_key, "finished": True, "record": record,
                 "seconds": seconds})
    store.events.append((name, "trained", seconds, seconds))
    return Cached(params, record, seconds, False)


class Member(NamedTuple):
    """One trained member of a group of runs (:func:`fit_members`)."""

    params: Any  # the best parameters by the monitored loss
    history: dict
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    seconds: float  # training time as recorded when trained (a vmapped program: the member's share)
    loaded: bool  # read back from a finished checkpoint or saved program
    diverged: Optional[str]  # why training stopped on a non-finite value, else None


def fit_member(ctx: RunContext, name: str, training: Training, params: Any, train_data: Any, *, key: jax.Array,
               run_key: Optional[dict], val_data: Any = None, keep_diverged: bool = False) -> Member:
    """:func:`fit_run` as a :class:`Member` (``run_key`` None: :func:`mp_jax.engine.train.fit` on one
    device, no checkpoint).

    A run that diverges (a non-finite loss or parameter) raises
    :class:`mp_jax.engine.train.NonFiniteError`, naming the run: the entry points stop there with
    exit status 1, before any result is written. With ``keep_diverged`` (a comparison of
    settings, where a setting that diverges is a finding) it returns the last finite state
    instead, ``diverged`` saying when, for the caller to report as diverged."""
    try:
        if run_key is None:  # one device, no checkpoint
            res = train.fit(training.loss_and_grad, training.optimizer, params, train_data, training.fit_config,
                            key=key, val_data=val_data, metrics_fn=training.metrics_fn, progress=ctx.progress,
                            desc=name)
        else:
            res = fit_run(ctx, name, training, params, train_data, key=key, run_key=run_key, val_data=val_data)
        return Member(res.params, res.history, res.epochs_run, res.best_epoch, res.stopped_early, res.seconds,
                      res.loaded, None)
    except train.NonFiniteError as e:
        if not keep_diverged:
            raise
        log.warning("%s: %s", name, e)
        st = e.last_good
        return Member(training.fit_config.kept(st), st.history, st.epoch, st.best_epoch, True, math.nan, False,
                      f"non-finite at epoch {e.epoch}")


def fit_members(ctx: RunContext, names: list, run_keys: list, inits: list, training: Training, train_data: Any, *,
                vmap: bool, group: str, val_data: Any = None, keep_diverged: bool = False) -> list:
    """M runs of one model on the same data, each with its own initial parameters and key
    (``inits``: [(params, key)]): [:class:`Member`] in that order.

    ``vmap`` False (or M = 1): one after another, each through :func:`fit_member` (named
    ``names[i]``, keyed by ``run_keys[i]``, checkpointed per epoch). ``vmap`` True: as one
    program (:func:`mp_jax.engine.sweep.fit_sweep` with ``training.vmapped_loss_and_grad``, on one
    device), saved whole when it finishes under the name ``group`` (:func:`cached_run`:
    loaded when called again, not resumed mid-way); if it becomes non-finite the members are
    trained one after another instead, so that the one that diverges is named
    (``keep_diverged``: see :func:`fit_member`). Each loss is taken to be a mean over
    examples (``per_example_mean``). A ``run_keys`` entry None: that run is not checkpointed.
    """
    training = dataclasses.replace(training, per_example_mean=True)
    if not vmap or len(inits) == 1:
        return [fit_member(ctx, name, training, params, train_data, key=key, run_key=run_key, val_data=val_data,
                           keep_diverged=keep_diverged)
                for name, run_key, (params, key) in zip(names, run_keys, inits)]
    stacked = sweep.stack([p for p, _ in inits])

    def compute():
        r = sweep.fit_sweep(training.vmapped_loss_and_grad, training.optimizer, stacked, train_data,
                            training.fit_config, keys=jax.numpy.stack([k for _, k in inits]), val_data=val_data,
                            metrics_fn=training.metrics_fn, progress=ctx.progress,
                            desc=f"{group} ({len(inits)} members, vmapped)")
        return r.params, {"histories": r.histories, "best_epochs": r.best_epochs, "epochs_run": r.epochs_run,
                          "stopped_early": r.stopped_early}

    group_key = None if any(k is None for k in run_keys) else {"members": run_keys}
    try:
        out = cached_run(ctx, group, run_key=group_key, template=stacked, compute=compute)
    except FloatingPointError as e:
        log.warning("%s: %s; training the members one after another instead", group, e)
        return fit_members(ctx, names, run_keys, inits, training, train_data, vmap=False, group=group,
                           val_data=val_data, keep_diverged=keep_diverged)
    r, m = out.record, len(inits)
    return [Member(sweep.unstack(out.params, j), r["histories"][j], r["epochs_run"][j], r["best_epochs"][j],
                   r["stopped_early"][j], out.seconds / m, out.loaded, None) for j in range(m)]
