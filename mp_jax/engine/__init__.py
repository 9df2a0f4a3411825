"""The training engine: one epoch function for one device, a mesh or a mesh across processes
(:mod:`~mp_jax.engine.train`, :mod:`~mp_jax.engine.parallel`, :mod:`~mp_jax.engine.distributed`),
vmapped sweeps (:mod:`~mp_jax.engine.sweep`), full-batch L-BFGS (:mod:`~mp_jax.engine.lbfgs`),
exact resumption (:mod:`~mp_jax.engine.checkpoint`), augmentation, metrics and tree helpers."""
