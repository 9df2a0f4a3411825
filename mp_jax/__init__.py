"""mp_jax: a neural-networks mini project in JAX with hand-derived gradients.

Library modules are pure and importable, with no plotting (the report is ``experiments``).
Three small commands live here because they need nothing else: ``python -m mp_jax.data``
(build or check the data), ``python -m mp_jax.gradcheck`` and ``python -m mp_jax.launch``.
"""
__version__ = "0.1.0"
