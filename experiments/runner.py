"""One named training run: the single door every experiment trains through.

``fit_run`` wraps :func:`mp_jax.train.fit`. Inside a :func:`checkpointing` context (the
main job opens one per question) every run writes a checkpoint after each epoch, keyed by
a hash of its name, configuration and data; calling the same run again loads it when it
finished (with the training time it recorded then), resumes it from its last epoch when
it was interrupted (ending with the same parameters as an uninterrupted run), and sets
aside a corrupt or mismatched checkpoint with a warning before starting over. Outside
such a context runs train without checkpoints. ``cached_run`` does the same for a run
that does not go through the engine (full-batch L-BFGS, a vmapped sweep), saved whole
when it finishes.

In a distributed run (:mod:`mp_jax.distributed`) only process 0 reads and writes a
:func:`fit_run`'s checkpoint and sets a bad one aside: the state it read, and whether the
run finished, are sent to every process (:func:`mp_jax.distributed.share_fit_state`), so
all take the same branch and resume from the same epoch without a shared file system. A
:func:`cached_run`'s saved result is read by each process that finds it (a shared
results folder), and computed again by one that does not (no collective runs inside it);
only process 0 saves it.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
import optax

from mp_jax import checkpoint, distributed, parallel, sweep, train

log = logging.getLogger("experiments.runner")


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


_STORE: contextvars.ContextVar[Optional[RunStore]] = contextvars.ContextVar("mp_jax_run_store", default=None)
_MESH: contextvars.ContextVar = contextvars.ContextVar("mp_jax_mesh", default=None)


@contextlib.contextmanager
def devices(n_devices: Optional[int] = None):
    """Train every ``fit_run`` inside the block data-parallel over ``n_devices`` local
    devices; with one device, no mesh is used. The default is every accelerator, or on a
    CPU none: there the runs that gain from it (``fit_run(..., split_over_cpu_cores=True)``,
    the recurrences) split each batch over the CPU cores themselves, and the rest train on
    one device (their large matmuls already use every core)."""
    explicit = n_devices is not None
    if not explicit:
        n_devices = 1 if jax.default_backend() == "cpu" else jax.device_count()
    mesh = train.make_mesh(n_devices) if n_devices != 1 else None
    token = _MESH.set((mesh, explicit))
    try:
        yield mesh
    finally:
        _MESH.reset(token)


def current_mesh():
    return (_MESH.get() or (None, False))[0]


def current_store() -> Optional[RunStore]:
    """The :class:`RunStore` of the enclosing :func:`checkpointing` block, or None."""
    return _STORE.get()


def training_summary() -> Optional[dict]:
    """:meth:`RunStore.summary` of the enclosing :func:`checkpointing` block (None outside one)."""
    store = _STORE.get()
    return None if store is None else store.summary()


def run_mesh(batch_size: int, split_over_cpu_cores: bool):
    """The mesh one run trains on: the block's (:func:`devices`); or, when ``--devices``
    was not given, for a run that asks for it on a CPU, the CPU cores as devices (as many
    as divide the batch size; see :mod:`mp_jax.parallel`)."""
    mesh, explicit = _MESH.get() or (None, False)
    if not explicit and split_over_cpu_cores and jax.default_backend() == "cpu":
        return parallel.cpu_mesh(batch_size)
    return mesh


@contextlib.contextmanager
def checkpointing(directory: Path):
    """Checkpoint every ``fit_run`` inside the block into ``directory``."""
    store = RunStore(Path(directory))
    store.directory.mkdir(parents=True, exist_ok=True)
    token = _STORE.set(store)
    try:
        yield store
    finally:
        _STORE.reset(token)


def _set_aside(path: Path, why: str) -> Optional[Path]:
    """Rename an unusable checkpoint to ``<stem>.bad-<timestamp>.h5`` (process 0 only)."""
    if not distributed.is_writer():
        log.warning("%s; starting this run over", why)
        return None
    aside = path.with_name(f"{path.stem}.bad-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    path.rename(aside)
    log.warning("%s; set aside as %s and starting this run over", why, aside.name)
    return aside


def _save_state(path: Path, state, meta: dict) -> None:
    """:func:`mp_jax.checkpoint.save_state` (atomic) on the writing process only."""
    if distributed.is_writer():
        checkpoint.save_state(path, state, meta)


def _share_meta(meta: Optional[dict]) -> dict:
    """In a distributed run, what every process needs of process 0's checkpoint metadata
    (finished, stopped early, training seconds so far); ``meta`` as it is in one process."""
    if distributed.num_processes() == 1:
        return meta or {}
    from jax.experimental import multihost_utils

    mine = meta if distributed.is_writer() and meta is not None else {}
    seconds = mine.get("seconds")
    flags = np.asarray([float(bool(mine.get("finished"))), float(bool(mine.get("stopped_early"))),
                        float(seconds) if isinstance(seconds, (int, float)) else -1.0], np.float32)
    finished, stopped_early, seconds = (float(v) for v in np.asarray(multihost_utils.broadcast_one_to_all(flags)))
    out = {"finished": finished > 0.5, "stopped_early": stopped_early > 0.5}
    if seconds >= 0:
        out["seconds"] = seconds
    return out


def _load_or_set_aside(path: Path, template: train.FitState, run_hash: str, name: str):
    """The checkpoint at ``path`` as ``(state, meta)``; None when there is none, or when it is
    unusable (then it is set aside with a warning)."""
    if not path.exists():
        return None
    try:
        return checkpoint.load_state(path, template, expect_meta={"run_hash": run_hash})
    except checkpoint.CheckpointError as e:
        _set_aside(path, f"{name}: {e}")
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


def fit_run(
    name: str,
    *,
    config: dict,
    data_id: str,
    loss_and_grad,
    optimizer: optax.GradientTransformation,
    params: Any,
    train_data: Any,
    fit_config: train.FitConfig,
    key: jax.Array,
    val_data: Any = None,
    metrics_fn=None,
    progress: Optional[bool] = None,
    per_example_mean: bool = False,
    split_over_cpu_cores: bool = False,
) -> train.FitResult:
    """Train one run (or skip / resume it from its checkpoint).

    Returns :func:`mp_jax.train.fit`'s result; ``seconds`` is the run's whole training time
    (over every call that trained part of it) and ``loaded`` tells a finished run read back.

    Args:
      name: a short unique name within the question, e.g. ``"lm_D32_P256"``.
      config: every setting that defines the run (JSON-serialisable: numbers, strings,
        lists); together with ``data_id`` and ``fit_config`` it keys the checkpoint.
      data_id: a string identifying the data (e.g. a content hash of the file).
      per_example_mean: the loss is a mean over examples (see :mod:`mp_jax.parallel`): on a
        mesh each device computes its shard's gradient and they are averaged.
      split_over_cpu_cores: on a CPU without ``--devices``, split each batch over the CPU
        cores (:func:`run_mesh`); for the recurrences, whose scans run on one core each.
      The rest as :func:`mp_jax.train.fit`.
    """
    store = _STORE.get()
    fit_kwargs = dict(key=key, val_data=val_data, metrics_fn=metrics_fn, progress=progress, desc=name,
                      mesh=run_mesh(fit_config.batch_size, split_over_cpu_cores), per_example_mean=per_example_mean)
    if fit_kwargs["mesh"] is not None:
        devs = fit_kwargs["mesh"].devices.ravel()
        log.info("%s: each batch split over %d %s devices (%s)", name, devs.size, devs[0].platform,
                 "gradients averaged" if per_example_mean else "XLA-partitioned step")
    if store is None:
        return train.fit(loss_and_grad, optimizer, params, train_data, fit_config, **fit_kwargs)

    run_hash = checkpoint.config_hash(_with_precision({
        "name": name, "config": config, "data_id": data_id, "fit_config": dataclasses.asdict(fit_config),
        "key": jax.random.key_data(key).tolist() if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key.tolist()}))
    path = store.directory / f"{name}-{run_hash}.h5"
    template = train.init_fit_state(params, optimizer, key)
    state, event, before = None, "trained", 0.0
    saved = _load_or_set_aside(path, template, run_hash, name) if distributed.is_writer() else None
    if distributed.num_processes() > 1:  # process 0's reading, in every process
        state = distributed.share_fit_state(None if saved is None else saved[0], template)
        meta = _share_meta(None if saved is None else saved[1])
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
    meta = {"name": name, "run_hash": run_hash, "config": config, "data_id": data_id, "finished": False}

    t = time.perf_counter()

    def save(s):  # each epoch: the state, and the training time so far
        _save_state(path, s, {**meta, "seconds": before + time.perf_counter() - t})

    result = train.fit(loss_and_grad, optimizer, params, train_data, fit_config, state=state, on_epoch_end=save,
                       **fit_kwargs)
    seconds = time.perf_counter() - t
    _save_state(path, result.state, {**meta, "seconds": before + seconds, "finished": True,
                                     "stopped_early": result.stopped_early})
    store.events.append((name, event, seconds, before + seconds))
    log.info("%s: done in %.1fs (%d epochs, best epoch %d)", name, seconds, result.epochs_run, result.best_epoch)
    return result._replace(seconds=before + seconds)


def _with_precision(key: dict) -> dict:
    """A run's checkpoint key, plus the float32 matmul precision when it is not the full
    precision the experiments default to (``--matmul-precision``): a run computed at
    TensorFloat-32 is another run. At the default the key is unchanged, so checkpoints
    written before the option existed (on a CPU, where it changes nothing) still match."""
    precision = jax.config.jax_default_matmul_precision
    return key if precision == "highest" else {**key, "matmul_precision": str(precision)}


def cached_run(name: str, *, config: dict, data_id: Optional[str], template: Any, compute) -> Cached:
    """A run that does not go through the engine (e.g. full-batch L-BFGS), made skippable.

    ``compute()`` returns ``(params, record)`` with ``record`` JSON-serialisable. Inside a
    :func:`checkpointing` context the result is saved when it finishes, with the seconds
    ``compute`` took, and the same run (same name, config and data) called again returns
    the saved result and those seconds without training (``loaded``); a corrupt or
    mismatched file is set aside and the run recomputed. ``template`` is a pytree with the
    structure, shapes and dtypes of ``params``. Outside such a context, or with ``data_id``
    None, it just computes (nothing is saved).
    """
    store = _STORE.get()
    if store is None or data_id is None:
        t = time.perf_counter()
        params, record = compute()
        return Cached(params, record, time.perf_counter() - t, False)
    run_hash = checkpoint.config_hash(_with_precision({"name": name, "config": config, "data_id": data_id}))
    path = store.directory / f"{name}-{run_hash}.h5"
    empty = train.FitState(params=template, opt_state=(), key=jax.numpy.zeros((2,), jax.numpy.uint32), epoch=0,
                           best_params=(), best_loss=0.0, best_epoch=0, bad_epochs=0, history={})
    saved = _load_or_set_aside(path, empty, run_hash, name)
    if saved is not None:
        state, meta = saved
        seconds = float(meta["seconds"]) if isinstance(meta.get("seconds"), (int, float)) else math.nan
        log.info("%s: finished earlier (trained in %.1fs); loaded", name, seconds)
        store.events.append((name, "loaded", 0.0, seconds))
        return Cached(state.params, meta["record"], seconds, True)
    t = time.perf_counter()
    params, record = compute()
    seconds = time.perf_counter() - t
    _save_state(path, empty._replace(params=params),
                {"name": name, "run_hash": run_hash, "config": config, "data_id": data_id,
                 "finished": True, "record": record, "seconds": seconds})
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


def fit_member(name: str, *, config: dict, data_id: Optional[str], loss_and_grad, optimizer, params, train_data,
               fit_config: train.FitConfig, key: jax.Array, val_data=None, metrics_fn=None,
               progress: Optional[bool] = None, per_example_mean: bool = False,
               split_over_cpu_cores: bool = False, keep_diverged: bool = False) -> Member:
    """:func:`fit_run` (``data_id`` None: :func:`mp_jax.train.fit` on one device, no checkpoint).

    A run that diverges (a non-finite loss or parameter) raises
    :class:`mp_jax.train.NonFiniteError`, naming the run: the entry points stop there with
    exit status 1, before any result is written. With ``keep_diverged`` (a comparison of
    settings, where a setting that diverges is a finding) it returns the last finite state
    instead, ``diverged`` saying when, for the caller to report as diverged."""
    try:
        if data_id is None:
            res = train.fit(loss_and_grad, optimizer, params, train_data, fit_config, key=key, val_data=val_data,
                            metrics_fn=metrics_fn, progress=progress, desc=name)
        else:
            res = fit_run(name, config=config, data_id=data_id, loss_and_grad=loss_and_grad, optimizer=optimizer,
                          params=params, train_data=train_data, fit_config=fit_config, key=key, val_data=val_data,
                          metrics_fn=metrics_fn, progress=progress, per_example_mean=per_example_mean,
                          split_over_cpu_cores=split_over_cpu_cores)
        return Member(res.params, res.history, res.epochs_run, res.best_epoch, res.stopped_early, res.seconds,
                      res.loaded, None)
    except train.NonFiniteError as e:
        if not keep_diverged:
            raise
        log.warning("%s: %s", name, e)
        st = e.last_good
        return Member(fit_config.kept(st), st.history, st.epoch, st.best_epoch, True, math.nan, False,
                      f"non-finite at epoch {e.epoch}")


def fit_members(names: list, configs: list, inits: list, *, vmap: bool, group: str, data_id: Optional[str],
                loss_and_grad, vmapped_loss_and_grad, optimizer, train_data, fit_config: train.FitConfig,
                val_data=None, metrics_fn=None, progress: Optional[bool] = None,
                split_over_cpu_cores: bool = False, keep_diverged: bool = False) -> list:
    """M runs of one model on the same data, each with its own initial parameters and key
    (``inits``: [(params, key)]): [:class:`Member`] in that order.

    ``vmap`` False (or M = 1): one after another, each through :func:`fit_member` (named
    ``names[i]``, keyed by ``configs[i]``, checkpointed per epoch). ``vmap`` True: as one
    program (:func:`mp_jax.sweep.fit_sweep` with ``vmapped_loss_and_grad``, on one device),
    saved whole when it finishes under the name ``group`` (:func:`cached_run`: loaded when
    called again, not resumed mid-way); if it becomes non-finite the members are trained one
    after another instead, so that the one that diverges is named (``keep_diverged``: see
    :func:`fit_member`). Each loss is taken to be a mean over examples (see :func:`fit_run`'s
    ``per_example_mean``).
    """
    shared = dict(optimizer=optimizer, train_data=train_data, fit_config=fit_config, val_data=val_data,
                  metrics_fn=metrics_fn, progress=progress, keep_diverged=keep_diverged)
    if not vmap or len(inits) == 1:
        return [fit_member(name, config=config, data_id=data_id, loss_and_grad=loss_and_grad, params=params, key=key,
                           per_example_mean=True, split_over_cpu_cores=split_over_cpu_cores, **shared)
                for name, config, (params, key) in zip(names, configs, inits)]
    stacked = sweep.stack([p for p, _ in inits])

    def compute():
        r = sweep.fit_sweep(vmapped_loss_and_grad, optimizer, stacked, train_data, fit_config,
                            keys=jax.numpy.stack([k for _, k in inits]), val_data=val_data, metrics_fn=metrics_fn,
                            progress=progress, desc=f"{group} ({len(inits)} members, vmapped)")
        return r.params, {"histories": r.histories, "best_epochs": r.best_epochs, "epochs_run": r.epochs_run,
                          "stopped_early": r.stopped_early}

    try:
        out = cached_run(group, config={"members": configs}, data_id=data_id, template=stacked, compute=compute)
    except FloatingPointError as e:
        log.warning("%s: %s; training the members one after another instead", group, e)
        return fit_members(names, configs, inits, vmap=False, group=group, data_id=data_id,
                           loss_and_grad=loss_and_grad, vmapped_loss_and_grad=vmapped_loss_and_grad,
                           split_over_cpu_cores=split_over_cpu_cores, **shared)
    r, m = out.record, len(inits)
    return [Member(sweep.unstack(out.params, j), r["histories"][j], r["epochs_run"][j], r["best_epochs"][j],
                   r["stopped_early"][j], out.seconds / m, out.loaded, None) for j in range(m)]
