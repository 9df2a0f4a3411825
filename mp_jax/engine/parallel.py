"""Data parallelism: CPU cores as JAX devices, and a gradient averaged over batch shards.

A recurrence is a chain of small steps (Q3: 150 steps of a [32, 128] × [128, 512] matmul
and a few elementwise kernels each way); XLA's CPU runtime runs each step's kernels one
after another on ONE core, so a second core idles through the whole scan. Two CPU
devices, each running the scans of half the batch, use both (measured on a 2-core CPU:
LSTM epoch 2.47 s → 1.54 s, GRU 2.19 → 1.38 s, RNN 0.62 → 0.51 s; see BENCHMARKS.md).
The matmul-bound models (autoencoder, language model) are slower that way (their big
matmuls already use every core), so they train on one device.

* :func:`use_cpu_cores` exposes the CPU as several devices; it must run before JAX starts
  its backends (the experiments' entry points call it first thing).
* :func:`spans_processes`: whether a mesh reaches devices of other processes
  (:mod:`mp_jax.engine.distributed`).
* :func:`data_parallel` turns ``loss_and_grad(params, batch)`` into the same function
  computed as one shard of the batch per device, the losses and gradients averaged with
  ``jax.lax.pmean`` (one all-reduce per step). It equals the full-batch gradient (up to
  summation order) when the loss is a mean over examples of per-example terms, plus terms
  of the parameters alone (the Q2 and Q3 cross-entropies, weight decay). It does NOT hold
  for the sparse autoencoder, whose sparsity penalty uses the batch-mean activation ρ̂:
  there XLA's whole-program partitioning (``train.make_epoch_fn(..., mesh=...)`` without
  ``per_example_mean``) stays exact.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Callable, Optional

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

log = logging.getLogger(__name__)

AXIS = "data"


def usable_cores() -> int:
    """CPU cores this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _user_set_cpu_devices() -> Optional[int]:
    """The CPU device count the user asked for through the environment, if any."""
    if os.environ.get("JAX_NUM_CPU_DEVICES"):
        return int(os.environ["JAX_NUM_CPU_DEVICES"])
    m = re.search(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(m.group(1)) if m else None


def use_cpu_cores(n: Optional[int] = None) -> int:
    """Expose ``n`` CPU devices to JAX (default: one per usable core, or what the user set
    with ``JAX_NUM_CPU_DEVICES`` / ``XLA_FLAGS=--xla_force_host_platform_device_count``).

    Call before any JAX computation: JAX fixes its device list when its backends start.
    Afterwards this is too late; then it changes nothing, logs why, and returns the count
    JAX has. Harmless on a GPU machine (the GPU stays the default device). Returns the CPU
    device count JAX will use.
    """
    if n is not None and n < 1:
        raise ValueError(f"the number of CPU devices must be at least 1, found {n}")
    want = n if n is not None else (_user_set_cpu_devices() or usable_cores())
    try:
        jax.config.update("jax_num_cpu_devices", int(want))
    except RuntimeError as e:  # backends already started
        have = len(jax.devices("cpu"))
        if have != want:
            log.info("keeping %d CPU device(s): %s", have, str(e).split(" i.e.")[0])
        return have
    return int(want)


def cpu_mesh(batch_size: int, max_devices: Optional[int] = None) -> Optional[jax.sharding.Mesh]:
    """A 1-D ``"data"`` mesh over as many CPU devices as divide ``batch_size`` (at most
    ``max_devices``); None when that is one device (nothing to split)."""
    devices = jax.devices("cpu")
    if max_devices is not None:
        devices = devices[:max_devices]
    k = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    if k == 1:
        return None
    return jax.sharding.Mesh(np.array(devices[:k]), (AXIS,))


def spans_processes(mesh: Optional[jax.sharding.Mesh]) -> bool:
    """Whether ``mesh`` holds devices of other processes (a distributed run, see
    :mod:`mp_jax.engine.distributed`): then each process feeds only its share of a batch."""
    return mesh is not None and any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def data_parallel(loss_and_grad: Callable, mesh: jax.sharding.Mesh, axis: str = AXIS, *,
                  carry_axis: Optional[int] = None) -> Callable:
    """``loss_and_grad`` computed as one batch shard per device of ``mesh``.

    Returns ``f(params, batch) -> (loss, grads)``: each device runs ``loss_and_grad`` on
    N / k examples (every leaf of ``batch`` split along its first axis; ``params``
    replicated) and the loss and gradients are averaged over the k devices, raveled into one
    flat buffer for one all-reduce (each leaf comes back in its own dtype). Only for a loss
    that is a mean over examples (see the module docstring). A batch whose N does not
    divide by k (an epoch's remainder batch) is computed whole on every device instead:
    the same value, without the split. With ``carry_axis``, ``loss_and_grad`` is a step
    ``(params, batch, carry) -> ((loss, grads), carry)`` (:class:`mp_jax.engine.train.Carrying`)
    and so is ``f``: the carry is split over the devices along ``carry_axis``, each device's
    part reused by that device.
    """
    from jax.sharding import PartitionSpec as P

    k = mesh.shape[axis]

    def average(out):
        # One flat buffer, one all-reduce: XLA's CPU all-reduce meets the other devices once
        # per operand (~80 µs each on 2 cores): the GRU's loss and 7 gradient leaves took
        # ~650 µs per step as 8 operands, ~180 µs as one (BENCHMARKS.md).
        flat, unravel = ravel_pytree(out)
        return unravel(jax.lax.pmean(flat, axis))

    if carry_axis is None:
        def shard(params, batch):
            return average(loss_and_grad(params, batch))

        specs = dict(in_specs=(P(), P(axis)), out_specs=(P(), P()))
    else:
        along = P(*([None] * carry_axis), axis)

        def shard(params, batch, carry):
            out, carry = loss_and_grad(params, batch, carry)
            return average(out), carry

        specs = dict(in_specs=(P(), P(axis), along), out_specs=(P(), along))
    # check_vma=False: the scans inside mix replicated weights with per-device carries.
    split = jax.shard_map(shard, mesh=mesh, check_vma=False, **specs)

    def split_if_divisible(params, batch, *carry):
        """``loss_and_grad`` whole for a batch whose N does not divide by k, else split."""
        n = jax.tree.leaves(batch)[0].shape[0]
        return (loss_and_grad if k == 1 or n % k else split)(params, batch, *carry)

    return split_if_divisible
