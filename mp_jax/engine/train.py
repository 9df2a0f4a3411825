"""The one training engine shared by every model.

A model hands the engine its manual ``loss_and_grad(params, batch) -> (loss, grads)``
and, for evaluation, ``metrics(params, batch) -> {"loss": ..., ...}`` (batch means).
The engine knows nothing else about the model:

* :func:`make_train_step` — one optax update from the manual gradients.
* :func:`make_epoch_fn` — a whole epoch in one ``jit``: a fixed-key permutation, a
  ``lax.scan`` over the full minibatches, then one step on the remainder batch (it is
  never dropped). The same function on one device, on a mesh of one process's devices
  and on a mesh that spans processes (each process then feeds its own rows of every
  minibatch, :func:`feed`); a :class:`Carrying` ``loss_and_grad`` carries its state from
  one minibatch to the next.
* :func:`make_eval_fn` — batch-size-weighted means of the metrics over a split.
* :func:`fit` — the epoch loop: history, early stopping with patience that returns the
  best parameters, a clear stop on non-finite loss or parameters, a per-epoch hook
  (checkpoints) and resumption from a saved :class:`FitState`.
* :class:`EarlyStopping` — the patience rule itself, for one run or many members at once
  (:func:`fit`, :func:`mp_jax.engine.sweep.fit_sweep` and the experiments share it).

A *dataset* is any pytree of arrays sharing the leading axis N (e.g. ``(x, y)``).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from typing import Any, Callable, NamedTuple, Optional, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mp_jax.engine import parallel, trees
from mp_jax.runtime.progress import EpochProgress

PyTree = Any
LossAndGrad = Callable[[PyTree, PyTree], tuple[jax.Array, PyTree]]
MetricsFn = Callable[[PyTree, PyTree], dict]

log = logging.getLogger("mp_jax.engine.train")


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss or parameters.

    Attributes:
      epoch: the 1-based epoch at which it happened (for L-BFGS, the chunk of iterations).
      last_good: the :class:`FitState` at the end of the last finite epoch.
      step: the 1-based step within that epoch (minibatch; for L-BFGS, the iteration of the
        whole run) whose loss, or the parameters after it, first became non-finite; None
        when it could not be told.
      last_loss: the last finite loss before it (a minibatch's; for L-BFGS, an iterate's
        value); None when there is none.
    """

    def __init__(self, message: str, epoch: int, last_good: "FitState", step: Optional[int] = None,
                 last_loss: Optional[float] = None):
        super().__init__(message)
        self.epoch = epoch
        self.last_good = last_good
        self.step = step
        self.last_loss = last_loss

    @property
    def last_good_params(self):
        return self.last_good.params


def sgd_momentum(learning_rate, momentum: float, clip_norm: Optional[float] = None):
    """SGD with (heavy-ball) momentum, optionally after global-norm clipping.

    optax's ``trace`` keeps v ← momentum·v + g and the update is −lr·v, the form the
    course uses. ``learning_rate``: a number, or an optax schedule of the step count
    (:func:`warmup_cosine`).
    """
    opt = optax.sgd(learning_rate, momentum=momentum)
    if clip_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    return opt


def warmup_cosine(peak: float, steps_per_epoch: int, epochs: int, warmup_epochs: float = 1.0):
    """The learning rate as a function of the update count: a linear rise from 0 to ``peak``
    over ``warmup_epochs`` epochs, then a cosine decay to 0 at the end of ``epochs`` epochs
    (docs/training.md, LR1). ``steps_per_epoch``: updates per epoch, the remainder batch
    included (⌈N / B⌉)."""
    total = max(1, int(steps_per_epoch) * int(epochs))
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total - 1)
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total, end_value=0.0)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Updates in one epoch of ``n`` examples: the full minibatches and the remainder one."""
    return -(-int(n) // min(int(batch_size), int(n)))


def num_examples(data: PyTree) -> int:
    """Leading-axis length shared by every leaf of a dataset pytree."""
    sizes = {int(x.shape[0]) for x in jax.tree.leaves(data)}
    if len(sizes) != 1:
        raise ValueError(f"dataset leaves disagree on the number of examples: {sorted(sizes)}")
    return sizes.pop()


def take(data: PyTree, idx: jax.Array) -> PyTree:
    """Rows ``idx`` of every leaf."""
    return jax.tree.map(lambda a: a[idx], data)


def float_dtype(tree: PyTree):
    """The dtype floating-point leaves of ``tree`` promote to (float32 when it has none)."""
    dtypes = [jnp.asarray(x).dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.result_type(*dtypes) if dtypes else jnp.dtype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stop after ``patience`` epochs without a new best monitored loss (None or 0: never);
    docs/training.md (CLIP6), with ``bad_epochs`` = E − e*(E).

    The same rule for one run (Python floats and ints) and for M members at once (NumPy
    arrays of shape [M], with ``active`` masking the members that still train).
    """

    patience: Optional[int] = None

    def update(self, monitored, best_loss, bad_epochs, active=True):
        """One epoch's bookkeeping: ``(improved, best_loss, bad_epochs)``.

        ``improved``: the monitored loss is below the best so far (strictly) for an active
        member; then its best is the monitored loss and its count of epochs without
        improvement restarts at 0, else the count grows by one (inactive members keep theirs).
        """
        improved = np.logical_and(active, np.asarray(monitored) < best_loss)
        best_loss = np.where(improved, monitored, best_loss)
        bad_epochs = np.where(improved, 0, np.where(active, np.asarray(bad_epochs) + 1, bad_epochs))
        if improved.ndim == 0:
            return bool(improved), float(best_loss), int(bad_epochs)
        return improved, best_loss, bad_epochs

    def exhausted(self, bad_epochs):
        """Whether ``bad_epochs`` epochs without improvement stop the run (or each member).
        A finished run's count is ``epochs_run - best_epoch``."""
        if not self.patience:
            return np.zeros(np.shape(bad_epochs), bool) if np.ndim(bad_epochs) else False
        out = np.asarray(bad_epochs) >= self.patience
        return bool(out) if out.ndim == 0 else out


def make_mesh(n_devices: Optional[int] = None) -> jax.sharding.Mesh:
    """A 1-D device mesh with axis ``"data"`` over the first ``n_devices`` devices (default:
    all of them; after ``jax.distributed.initialize`` that spans every host)."""
    devices = jax.devices()
    n = len(devices) if n_devices is None else n_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"--devices {n}: JAX sees {len(devices)} device(s) ({devices[0].platform}); "
                         f"choose 1..{len(devices)}")
    return jax.sharding.Mesh(np.array(devices[:n]), ("data",))


def _check_divisible(batch_size: int, mesh: Optional[jax.sharding.Mesh], what: str = "batch size") -> None:
    if mesh is not None and batch_size % mesh.size:
        processes = len({d.process_index for d in mesh.devices.flat})
        where = f" (over {processes} processes)" if processes > 1 else ""
        raise ValueError(
            f"the {what} {batch_size} does not divide across {mesh.size} devices{where}; choose a {what} that is a "
            f"multiple of {mesh.size} or run on a device count that divides it (--devices)")


def _shard_batch(batch: PyTree, mesh: Optional[jax.sharding.Mesh]) -> PyTree:
    """Split a minibatch across the mesh's ``data`` axis (parameters stay replicated); XLA
    then partitions the manual forward/backward and all-reduces the weight gradients."""
    if mesh is None or mesh.size == 1:
        return batch
    if num_examples(batch) % mesh.size:  # the remainder batch: computed replicated, still exact
        return batch
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, spec), batch)


def replicate(tree: PyTree, mesh: Optional[jax.sharding.Mesh]) -> PyTree:
    """Place every leaf on every device of the mesh (no-op without a mesh)."""
    if mesh is None:
        return tree
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


@runtime_checkable
class Carrying(Protocol):
    """A ``loss_and_grad`` that carries state from one minibatch to the next, e.g. scan
    buffers it overwrites instead of allocating afresh (the fast recurrences'
    :class:`mp_jax.models.recurrent_fast.BufferReuse`). An epoch makes the carry once and
    threads it through its minibatches (``lax.scan``'s carry, updated in place).

    Members:
      step: ``(params, batch, carry) -> ((loss, grads), carry)``; the carry comes back ready
        for the next minibatch of the same shape. The result must not depend on what the
        carry held on entry.
      init: ``(params, batch) -> carry`` (a pytree of arrays) for batches of that shape.
      batch_axis: the examples' axis of every leaf of the carry (data parallelism splits it).
      ``__call__``: the plain ``loss_and_grad(params, batch)``, with a fresh carry.
    """

    batch_axis: int

    def step(self, params, batch, carry): ...

    def init(self, params, batch): ...

    def __call__(self, params, batch): ...


@dataclasses.dataclass(frozen=True, eq=False)
class _Carried:
    """A :class:`Carrying` the engine builds: a carrying step split over devices, or a plain
    ``loss_and_grad`` with nothing to carry."""

    step: Callable
    init: Callable
    batch_axis: int = 0

    def __call__(self, params, batch):
        return self.step(params, batch, self.init(params, batch))[0]


def per_device(loss_and_grad: LossAndGrad, mesh: jax.sharding.Mesh) -> LossAndGrad:
    """``loss_and_grad`` computed as one shard of the batch per device of ``mesh``, the
    losses and gradients averaged (:func:`mp_jax.engine.parallel.data_parallel`; a loss that is a
    mean over examples). A :class:`Carrying` stays one, its carry split over the devices
    along its ``batch_axis``, each device's part reused by that device."""
    if not isinstance(loss_and_grad, Carrying):
        return parallel.data_parallel(loss_and_grad, mesh)
    step = parallel.data_parallel(loss_and_grad.step, mesh, carry_axis=loss_and_grad.batch_axis)
    return _Carried(step, loss_and_grad.init, loss_and_grad.batch_axis)


def make_train_step(loss_and_grad: LossAndGrad, optimizer: optax.GradientTransformation):
    """Pure ``step(params, opt_state, batch) -> (params, opt_state, loss)``."""

    def step(params, opt_state, batch):
        loss, grads = loss_and_grad(params, batch)
        return (*_apply(optimizer, params, opt_state, grads), loss)

    return step


def _apply(optimizer: optax.GradientTransformation, params, opt_state, grads):
    """(params, opt_state) after one optax update from ``grads``."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


class Minibatches(NamedTuple):
    """An epoch's training data as :func:`feed` lays it out for a mesh that spans processes:
    ``full`` <[n_full, B, ...]> the full minibatches in the epoch's order, split over the
    devices along B (each process holding only its devices' rows); ``rest`` <[N mod B, ...]>
    the remainder batch on every device, or None."""

    full: PyTree
    rest: PyTree = None


@functools.partial(jax.jit, static_argnums=1)
def _permutation(key, n):
    return jax.random.permutation(key, n)


def feed(key: jax.Array, data: PyTree, batch_size: int, mesh: jax.sharding.Mesh) -> Minibatches:
    """One epoch's :class:`Minibatches` for a mesh that spans processes.

    Every process holds the whole training set ``data`` on the host (the same in each) and
    draws the same permutation from the epoch's ``key`` (the one :func:`make_epoch_fn` draws
    for data on the devices), so all agree on every minibatch; each then puts on its own
    devices only its rows of every full minibatch (``jax.make_array_from_callback``). The
    remainder batch is small: every process feeds it whole.
    """
    from jax.sharding import NamedSharding, PartitionSpec as P

    host = jax.tree.map(np.asarray, data)
    n = num_examples(host)
    n_full, rem = divmod(n, batch_size)
    order = np.asarray(_permutation(key, n))
    full_idx, rem_idx = order[: n_full * batch_size].reshape(n_full, batch_size), order[n_full * batch_size:]
    full_sh, rep_sh = NamedSharding(mesh, P(None, parallel.AXIS)), NamedSharding(mesh, P())

    def own_rows(a):  # this process's devices' rows of every full minibatch, only those
        return jax.make_array_from_callback(
            (n_full, batch_size, *a.shape[1:]), full_sh,
            lambda idx: a[full_idx[idx[0], idx[1]]][(slice(None), slice(None), *idx[2:])])

    def whole(a):
        return jax.make_array_from_callback((rem, *a.shape[1:]), rep_sh, lambda idx: a[rem_idx][idx])

    return Minibatches(jax.tree.map(own_rows, host), jax.tree.map(whole, host) if rem else None)


def make_epoch_fn(loss_and_grad: LossAndGrad, optimizer: optax.GradientTransformation, batch_size: int, *,
                  jit: bool = True, mesh: Optional[jax.sharding.Mesh] = None, per_example_mean: bool = False,
                  per_step: bool = False):
    """One shuffled pass over a dataset, compiled as a single program.

    Returns ``epoch(params, opt_state, key, data) -> (params, opt_state, mean_loss, finite)``
    where ``mean_loss`` is the example-weighted mean of the minibatch losses, summed in the
    parameters' floating-point dtype (float64 parameters give a float64 mean), and
    ``finite`` tells whether every parameter is finite at the end. ``per_step`` adds a fifth
    output, ``(losses, finite_after)`` <[steps]> each: every minibatch's loss and whether the
    parameters after its step are finite (what :func:`fit` replays a diverged epoch for).

    Where the data lives: ``data`` is the training set on the device (or on every device of
    the ``mesh``), permuted with ``key`` inside the program; or, for a mesh that spans
    processes, the epoch's :class:`Minibatches` (:func:`feed`, which draws the same
    permutation; ``key`` is then unused). With a ``mesh``, each full minibatch is split
    across its devices (data parallelism): with ``per_example_mean`` (the loss is a mean
    over examples, see :mod:`mp_jax.engine.parallel`) each device runs ``loss_and_grad`` on its
    shard and the gradients are averaged, one all-reduce per step (:func:`per_device`);
    without it XLA partitions the whole step (exact for any loss, e.g. the autoencoder's
    batch-mean sparsity). A :class:`Carrying` ``loss_and_grad`` gets its carry made once per
    epoch and threaded from one full minibatch to the next (the remainder batch, and a
    ``mesh`` without ``per_example_mean``, call it as a plain ``loss_and_grad``).
    """
    _check_divisible(batch_size, mesh)
    if mesh is not None and per_example_mean:
        loss_and_grad = per_device(loss_and_grad, mesh)
        mesh = None  # the shards are cut inside per_device, not by sharding constraints
    # the carry threads through the minibatches; not under XLA's whole-step partitioning (mesh).
    # A plain loss_and_grad runs the same loop with nothing to carry.
    if isinstance(loss_and_grad, Carrying) and mesh is None:
        carrying = loss_and_grad
    else:
        carrying = _Carried(lambda p, b, carry: (loss_and_grad(p, b), carry), lambda p, b: ())
    step = make_train_step(loss_and_grad, optimizer)

    def epoch(params, opt_state, key, data):
        if isinstance(data, Minibatches):  # laid out by feed: permuted, each process's rows on its devices
            first = jax.tree.leaves(data.full)[0]
            n_full, rem = first.shape[0], 0 if data.rest is None else num_examples(data.rest)
            n = n_full * batch_size + rem
            order, batch_of, rest = data.full, (lambda batch: batch), (lambda: data.rest)
        else:  # on the device(s): permuted here
            n = num_examples(data)
            n_full, rem = divmod(n, batch_size)
            perm = jax.random.permutation(key, n)
            order = perm[: n_full * batch_size].reshape(n_full, batch_size)
            batch_of = lambda i: _shard_batch(take(data, i), mesh)  # noqa: E731
            rest = lambda: take(data, perm[n_full * batch_size:])  # noqa: E731
        dtype = float_dtype(params)
        total = jnp.zeros((), dtype)
        steps = ([], [])  # per_step: each step's loss and whether the parameters after it are finite
        if n_full:
            def body(state, x):
                p, s, carry = state
                (loss, grads), carry = carrying.step(p, batch_of(x), carry)
                p, s = _apply(optimizer, p, s, grads)
                return (p, s, carry), ((loss, trees.all_finite(p)) if per_step else loss)

            carry = carrying.init(params, batch_of(jax.tree.map(lambda a: a[0], order)))  # made once per epoch
            (params, opt_state, _), out = jax.lax.scan(body, (params, opt_state, carry), order)
            losses = out[0] if per_step else out
            if per_step:
                steps[0].append(losses.astype(dtype))
                steps[1].append(out[1])
            total = total + jnp.sum(losses.astype(dtype)) * batch_size
        if rem:
            params, opt_state, loss = step(params, opt_state, rest())
            total = total + loss.astype(dtype) * rem
            if per_step:
                steps[0].append(loss.astype(dtype)[None])
                steps[1].append(trees.all_finite(params)[None])
        if per_step:
            return params, opt_state, total / n, trees.all_finite(params), tuple(jnp.concatenate(v) for v in steps)
        return params, opt_state, total / n, trees.all_finite(params)

    return jax.jit(epoch) if jit else epoch


def make_eval_fn(metrics_fn: MetricsFn, batch_size: int, *, jit: bool = True,
                 mesh: Optional[jax.sharding.Mesh] = None):
    """``evaluate(params, data) -> {name: mean}``, means weighted by batch size."""
    if mesh is not None and batch_size % mesh.size:
        batch_size += mesh.size - batch_size % mesh.size

    def evaluate(params, data):
        n = num_examples(data)
        n_full, rem = divmod(n, batch_size)
        sums = None
        if n_full:
            idx = jnp.arange(n_full * batch_size).reshape(n_full, batch_size)

            def body(_, i):
                return None, metrics_fn(params, _shard_batch(take(data, i), mesh))

            _, ms = jax.lax.scan(body, None, idx)
            sums = {k: jnp.sum(v) * batch_size for k, v in ms.items()}
        if rem:
            m = metrics_fn(params, take(data, jnp.arange(n_full * batch_size, n)))
            m = {k: v * rem for k, v in m.items()}
            sums = m if sums is None else {k: sums[k] + m[k] for k in sums}
        return {k: v / n for k, v in sums.items()}

    return jax.jit(evaluate) if jit else evaluate


class FitState(NamedTuple):
    """Everything needed to continue a run exactly where it stopped."""

    params: PyTree
    opt_state: PyTree
    key: jax.Array
    epoch: int  # epochs completed
    best_params: PyTree
    best_loss: float
    best_epoch: int
    bad_epochs: int
    history: dict


class FitResult(NamedTuple):
    params: PyTree  # best by the monitored loss, or the last (FitConfig.keep)
    last_params: PyTree
    history: dict
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    compile_seconds: float
    state: FitState
    seconds: float = math.nan  # training wall time, compilation included (a loaded run: as recorded)
    loaded: bool = False  # restored from a finished checkpoint instead of trained (mp_jax.protocols.runs)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    epochs: int
    batch_size: int
    patience: Optional[int] = None  # epochs without improvement before stopping; None: never
    eval_batch_size: int = 4096
    # the parameters a run returns: "best" (the epoch with the lowest monitored loss) or "last"
    keep: str = "best"
    # None, or a frozen dataclass ``augment(key, data) -> data`` (mp_jax.engine.augment) applied to the
    # whole training set at the start of every epoch with a key drawn from the epoch's key
    augment: Any = None

    def __post_init__(self):
        if self.keep not in ("best", "last"):
            raise ValueError(f"FitConfig.keep must be 'best' or 'last', found {self.keep!r}")

    def kept(self, state: "FitState") -> PyTree:
        """The parameters a run with this config returns from ``state``."""
        return state.params if self.keep == "last" else state.best_params


def augment_key(epoch_key: jax.Array) -> jax.Array:
    """The key of an epoch's data augmentation, from the key its permutation uses."""
    return jax.random.fold_in(epoch_key, 1)


def init_fit_state(params: PyTree, optimizer: optax.GradientTransformation, key: jax.Array) -> FitState:
    return FitState(
        params=params,
        opt_state=optimizer.init(params),
        key=key,
        epoch=0,
        best_params=params,
        best_loss=math.inf,
        best_epoch=0,
        bad_epochs=0,
        history={},
    )


def fit(
    loss_and_grad: LossAndGrad,
    optimizer: optax.GradientTransformation,
    params: PyTree,
    train_data: PyTree,
    config: FitConfig,
    *,
    key: jax.Array,
    val_data: Optional[PyTree] = None,
    metrics_fn: Optional[MetricsFn] = None,
    state: Optional[FitState] = None,
    on_epoch_end: Optional[Callable[[FitState], None]] = None,
    progress: Optional[bool] = None,
    desc: str = "train",
    mesh: Optional[jax.sharding.Mesh] = None,
    per_example_mean: bool = False,
) -> FitResult:
    """Train for ``config.epochs`` epochs (or until early stopping).

    The monitored loss is the validation loss when ``val_data`` is given, else the
    epoch's mean training loss; the returned ``params`` are those of the best epoch (or
    of the last, ``config.keep == "last"``). ``config.augment`` transforms the training set
    at the start of each epoch.
    History keys: ``train_loss``, ``epoch_seconds`` and ``val_<metric>`` for each metric.
    ``state`` resumes a run (e.g. from a checkpoint); ``on_epoch_end`` sees the state
    after every epoch. Raises :class:`NonFiniteError` when the loss or the parameters
    stop being finite. ``mesh`` (see :func:`make_mesh`) trains data-parallel: the batch
    size must be a multiple of the device count (a clear ``ValueError`` otherwise); the
    remainder batch of an epoch is computed replicated. ``per_example_mean`` declares the
    loss a mean over examples, so each device computes its shard's gradient and they are
    averaged (see :func:`make_epoch_fn`). A mesh that spans processes (after
    :func:`mp_jax.engine.distributed.initialize_from_args`) trains with the same epoch: every
    process passes the same ``train_data`` and feeds its own rows of each minibatch
    (:func:`feed`).
    """
    if metrics_fn is None:
        def metrics_fn(p, b):
            return {"loss": loss_and_grad(p, b)[0]}  # XLA drops the unused gradients

    n_train = num_examples(train_data)
    if n_train == 0:
        raise ValueError("the training set is empty")
    batch_size = min(config.batch_size, n_train)
    epoch_fn = make_epoch_fn(loss_and_grad, optimizer, batch_size, mesh=mesh, per_example_mean=per_example_mean)
    eval_fn = make_eval_fn(metrics_fn, config.eval_batch_size, mesh=mesh)
    augment = None if config.augment is None else jax.jit(config.augment)
    # where the training data lives: on the device(s), or, for a mesh that spans processes, on
    # each process's host, which feeds its own rows of every minibatch to its devices
    fed = parallel.spans_processes(mesh)

    def placed(key, data):
        return feed(key, data, batch_size, mesh) if fed else data

    if state is None:
        state = init_fit_state(params, optimizer, key)
    if mesh is not None:
        state = state._replace(**replicate(
            dict(params=state.params, opt_state=state.opt_state, key=state.key, best_params=state.best_params), mesh))
        train_data = jax.tree.map(np.asarray, train_data) if fed else replicate(train_data, mesh)
        val_data = replicate(val_data, mesh)
    history = {k: list(v) for k, v in state.history.items()}
    history.setdefault("train_loss", [])
    history.setdefault("epoch_seconds", [])

    t0 = time.perf_counter()
    _, sub = jax.random.split(state.key)
    epoch_c = epoch_fn.lower(state.params, state.opt_state, sub, placed(sub, train_data)).compile()
    eval_c = eval_fn.lower(state.params, val_data).compile() if val_data is not None else None
    compile_seconds = time.perf_counter() - t0

    stopping = EarlyStopping(config.patience)
    stopped_early = stopping.exhausted(state.bad_epochs)
    bar = EpochProgress(total=config.epochs, initial=state.epoch, desc=desc, enabled=progress)
    try:
        while state.epoch < config.epochs and not stopped_early:
            epoch = state.epoch + 1
            key, sub = jax.random.split(state.key)
            t = time.perf_counter()
            data = train_data if augment is None else augment(augment_key(sub), train_data)
            params, opt_state, train_loss, finite = epoch_c(state.params, state.opt_state, sub, placed(sub, data))
            train_loss = float(train_loss)
            seconds = time.perf_counter() - t
            if not (math.isfinite(train_loss) and bool(finite)):
                what = "training loss" if not math.isfinite(train_loss) else "parameters"
                located = _locate_non_finite(
                    lambda: make_epoch_fn(loss_and_grad, optimizer, batch_size, mesh=mesh,
                                          per_example_mean=per_example_mean, per_step=True)(
                        state.params, state.opt_state, sub, placed(sub, data))[4])
                where = "" if located is None else (
                    f"at step {located[0]} of {located[2]}, last finite minibatch loss "
                    + (f"{located[1]:.6g}" if located[1] is not None else "none") + "; ")
                raise NonFiniteError(
                    f"{desc}: the {what} became non-finite at epoch {epoch} ({where}mean training loss "
                    f"{train_loss}); stopped and kept the parameters from the end of epoch {epoch - 1} "
                    f"(error.last_good). Check the inputs for NaN/inf, lower the learning rate or "
                    f"enable gradient clipping.",
                    epoch,
                    state._replace(history=history),
                    *(located[:2] if located else ()),
                )
            row = {"train_loss": train_loss, "epoch_seconds": seconds}
            if eval_c is not None:
                for k, v in eval_c(params, val_data).items():
                    row[f"val_{k}"] = float(v)
            for k, v in row.items():
                history.setdefault(k, []).append(v)
            monitored = row.get("val_loss", train_loss)
            if not math.isfinite(monitored):
                raise NonFiniteError(
                    f"{desc}: the validation loss became non-finite at epoch {epoch}; stopped and kept "
                    f"the parameters from the end of epoch {epoch - 1}.",
                    epoch,
                    state._replace(history=history),
                )
            improved, best_loss, bad_epochs = stopping.update(monitored, state.best_loss, state.bad_epochs)
            best = dict(best_params=params, best_epoch=epoch) if improved else {}
            state = state._replace(params=params, opt_state=opt_state, key=key, epoch=epoch, best_loss=best_loss,
                                   bad_epochs=bad_epochs, history={k: list(v) for k, v in history.items()}, **best)
            if on_epoch_end is not None:
                on_epoch_end(state)
            bar.update(epoch, row)
            stopped_early = stopping.exhausted(state.bad_epochs)
    finally:
        bar.close()
    if stopped_early:
        log.info("%s: early stop after epoch %d (best epoch %d)", desc, state.epoch, state.best_epoch)
    return FitResult(
        params=config.kept(state),
        last_params=state.params,
        history=history,
        best_epoch=state.best_epoch,
        epochs_run=state.epoch,
        stopped_early=stopped_early,
        compile_seconds=compile_seconds,
        state=state,
        seconds=time.perf_counter() - t0,
    )


def _locate_non_finite(replay: Callable[[], tuple]) -> Optional[tuple]:
    """``(step, last finite loss or None, steps in the epoch)`` of an epoch that became
    non-finite, from ``replay()`` -> ``(losses, finite_after)`` <[steps]>: the same epoch run
    again from its start with :func:`make_epoch_fn`'s ``per_step`` outputs (the epoch is a
    deterministic function of its parameters, optimiser state, key and data). The first step
    whose loss, or whose parameters after the update, are non-finite; None if the replay
    fails or finds every step finite (it never hides the error it explains)."""
    try:
        losses, finite_after = (np.asarray(v) for v in jax.device_get(replay()))
    except Exception as e:  # noqa: BLE001 — a diagnosis, never a new failure
        log.warning("could not replay the diverged epoch to find its step: %s", e)
        return None
    bad = np.flatnonzero(~np.isfinite(losses) | ~finite_after.astype(bool))
    if bad.size == 0:
        return None
    k = int(bad[0])
    seen = losses[: k + 1]
    finite = seen[np.isfinite(seen)]
    return k + 1, (float(finite[-1]) if finite.size else None), int(losses.size)


def history_to_numpy(history: dict) -> dict:
    return {k: np.asarray(v) for k, v in history.items()}
