"""One named training run: the single door every experiment trains through.

``fit_run`` wraps :func:`mp_jax.train.fit`. Inside a :func:`checkpointing` context (the
main job opens one per question) every run writes a checkpoint after each epoch, keyed by
a hash of its name, configuration and data; calling the same run again skips it when it
finished, resumes it from its last epoch when it was interrupted (ending with the same
parameters as an uninterrupted run), and sets aside a corrupt or mismatched checkpoint
with a warning before starting over. Outside such a context runs train without
checkpoints.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Optional

import jax
import optax

from mp_jax import checkpoint, parallel, train

log = logging.getLogger("experiments.runner")


@dataclasses.dataclass
class RunStore:
    """Where checkpoints go, and what happened to each run (for summaries)."""

    directory: Path
    events: list = dataclasses.field(default_factory=list)  # (name, "trained" | "resumed" | "skipped", seconds)


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


def _set_aside(path: Path, why: str) -> Path:
    aside = path.with_name(f"{path.stem}.bad-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    path.rename(aside)
    log.warning("%s; set aside as %s and starting this run over", why, aside.name)
    return aside


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


def _result_from_state(state: train.FitState, stopped_early: bool) -> train.FitResult:
    return train.FitResult(params=state.best_params, last_params=state.params, history=state.history,
                           best_epoch=state.best_epoch, epochs_run=state.epoch, stopped_early=stopped_early,
                           compile_seconds=0.0, state=state)


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
    state, event = None, "trained"
    saved = _load_or_set_aside(path, template, run_hash, name)
    if saved is not None:
        state, meta = saved
        if meta.get("finished"):
            log.info("%s: finished earlier (epoch %d, best %d); skipped", name, state.epoch, state.best_epoch)
            store.events.append((name, "skipped", 0.0))
            return _result_from_state(state, bool(meta.get("stopped_early")))
        log.info("%s: resuming after epoch %d", name, state.epoch)
        event = "resumed"
    meta = {"name": name, "run_hash": run_hash, "config": config, "data_id": data_id, "finished": False}

    t = time.perf_counter()
    result = train.fit(loss_and_grad, optimizer, params, train_data, fit_config, state=state,
                       on_epoch_end=lambda s: checkpoint.save_state(path, s, meta), **fit_kwargs)
    seconds = time.perf_counter() - t
    checkpoint.save_state(path, result.state, {**meta, "finished": True, "stopped_early": result.stopped_early})
    store.events.append((name, event, seconds))
    log.info("%s: done in %.1fs (%d epochs, best epoch %d)", name, seconds, result.epochs_run, result.best_epoch)
    return result


def _with_precision(key: dict) -> dict:
    """A run's checkpoint key, plus the float32 matmul precision when it is not the full
    precision the experiments default to (``--matmul-precision``): a run computed at
    TensorFloat-32 is another run. At the default the key is unchanged, so checkpoints
    written before the option existed (on a CPU, where it changes nothing) still match."""
    precision = jax.config.jax_default_matmul_precision
    return key if precision == "highest" else {**key, "matmul_precision": str(precision)}


def cached_run(name: str, *, config: dict, data_id: str, template: Any, compute) -> tuple[Any, dict]:
    """A run that does not go through the engine (e.g. full-batch L-BFGS), made skippable.

    ``compute()`` returns ``(params, record)`` with ``record`` JSON-serialisable. Inside a
    :func:`checkpointing` context the result is saved when it finishes, and the same run
    (same name, config and data) called again returns the saved result without training;
    a corrupt or mismatched file is set aside and the run recomputed. ``template`` is a
    pytree with the structure, shapes and dtypes of ``params``.
    """
    store = _STORE.get()
    if store is None:
        return compute()
    run_hash = checkpoint.config_hash(_with_precision({"name": name, "config": config, "data_id": data_id}))
    path = store.directory / f"{name}-{run_hash}.h5"
    empty = train.FitState(params=template, opt_state=(), key=jax.numpy.zeros((2,), jax.numpy.uint32), epoch=0,
                           best_params=(), best_loss=0.0, best_epoch=0, bad_epochs=0, history={})
    saved = _load_or_set_aside(path, empty, run_hash, name)
    if saved is not None:
        state, meta = saved
        log.info("%s: finished earlier; skipped", name)
        store.events.append((name, "skipped", 0.0))
        return state.params, meta["record"]
    t = time.perf_counter()
    params, record = compute()
    seconds = time.perf_counter() - t
    checkpoint.save_state(path, empty._replace(params=params),
                          {"name": name, "run_hash": run_hash, "config": config, "data_id": data_id,
                           "finished": True, "record": record})
    store.events.append((name, "trained", seconds))
    return params, record
