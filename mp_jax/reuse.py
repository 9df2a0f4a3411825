"""A ``loss_and_grad`` that reuses its scratch buffers from one minibatch to the next.

XLA zero-fills every buffer a program allocates. A manual BPTT that saves its activations
in [T, N, ·] buffers (the GRU's gates, candidates and weight-gradient operands: ~5 MB per
minibatch of 16 sequences of 150 steps) pays that fill for every minibatch, although its
scans overwrite every element before reading it. An epoch that is one program can instead
carry the buffers from one minibatch to the next (``lax.scan``'s carry, updated in place):
:func:`mp_jax.train.make_epoch_fn` does so for a :class:`BufferReuse`, and
:func:`mp_jax.parallel.data_parallel` splits its buffers over the devices with the batch.
Measured split over two cores: the Q3 GRU's epoch 0.94 of the time without, the LSTM's
0.90 (BENCHMARKS.md).

A :class:`BufferReuse` is also a plain ``loss_and_grad(params, batch)`` (it makes fresh
buffers for that one call), so anything that takes a ``loss_and_grad`` takes it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True, eq=False)
class BufferReuse:
    """``loss_and_grad`` with buffers an epoch carries from one minibatch to the next.

    Attributes:
      step: ``(params, batch, buffers) -> ((loss, grads), buffers)``; the buffers come back
        overwritten, ready for the next minibatch of the same shape. Their contents on entry
        must not matter (the step overwrites what it reads).
      init: ``(params, batch) -> buffers`` (a pytree of arrays) for batches of that shape.
      batch_axis: the examples' axis of every buffer (data parallelism splits it).
    """

    step: Callable
    init: Callable
    batch_axis: int = 0

    def __call__(self, params, batch):
        """The plain ``loss_and_grad(params, batch) -> (loss, grads)``, with fresh buffers."""
        return self.step(params, batch, self.init(params, batch))[0]
