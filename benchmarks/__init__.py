"""Timings of the models' gradient paths: the fast manual one, the reference manual one,
``jax.grad``, from-scratch numpy and PyTorch; sweeps vmapped against sequential; the matmul
floor. Results and how they were measured: BENCHMARKS.md.

* ``python -m benchmarks`` — seconds per training epoch of each model, every
  implementation, with the side-by-side ratios measured in one process
  (:mod:`benchmarks.epochs`); ``--sweeps`` adds :mod:`benchmarks.sweeps`;
* ``python -m benchmarks.sweeps`` — Q3's seed sweep and Q1's (β, ρ) study as one vmapped
  program against their members one after another;
* ``python -m benchmarks.floor`` — the manual fast path against its own matmuls alone;
* :mod:`benchmarks.numpy_impl`, :mod:`benchmarks.torch_impl` — the numpy and PyTorch
  implementations the epoch benchmark times.
"""
