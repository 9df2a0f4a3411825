"""What every command needs around its work: argument validation and one-line errors
(:mod:`~mp_jax.runtime.cli`, :mod:`~mp_jax.runtime.errors`), the results-folder lock
(:mod:`~mp_jax.runtime.lock`), atomic writes (:mod:`~mp_jax.runtime.atomic`) and progress
(:mod:`~mp_jax.runtime.progress`)."""
