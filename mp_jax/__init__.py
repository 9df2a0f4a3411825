"""mp_jax: a neural-networks mini project in JAX with hand-derived gradients.

Library modules are pure and importable: no plotting, no CLI (see ``experiments``).
"""
__version__ = "0.1.0"
