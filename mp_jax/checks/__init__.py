"""How the hand-derived backward passes are checked (docs/checks.md) and taught (docs/exercises.md).

* :mod:`~mp_jax.checks.registry`: every model with a manual backward, its reference loss, its
  implementations and small random instances;
* :mod:`~mp_jax.checks.gradtable`: the three-oracle check, tensor by tensor; the losses it
  differentiates at zero offsets are in :mod:`~mp_jax.checks.offsets`;
* :mod:`~mp_jax.checks.bugzoo`: wrong backward pieces the check must catch, each explained;
* :mod:`~mp_jax.checks.diagnosis`: the likely mistake behind a wrong tensor;
* :mod:`~mp_jax.checks.exercises`: a learner's backward piece, loaded and swapped in;
  :mod:`~mp_jax.checks.pieces`: what the checker knows of each piece an exercise covers (its
  contract, its equations, its piece-alone instance); :mod:`~mp_jax.checks.piececheck`: a piece
  checked alone; :mod:`~mp_jax.checks.contract`: what a piece returns, checked field by field;
  :mod:`~mp_jax.checks.hints` and :mod:`~mp_jax.checks.equations`: hints quoted from docs/;
* :mod:`~mp_jax.checks.manual_vjp`: a manual backward as a ``jax.custom_vjp``;
* :mod:`~mp_jax.checks.testing`: ``assert_grads_match`` for any ``loss`` / ``loss_and_grad`` pair.

``python -m mp_jax.gradcheck`` is the command line over them.
"""
