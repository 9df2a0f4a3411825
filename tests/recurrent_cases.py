"""Random recurrent-classifier cases shared by test_recurrent and test_recurrent_fast."""
import jax
import jax.numpy as jnp
import numpy as np

from mp_jax.models import recurrent as R


def random_params(cell, d, h, m, c, seed=0) -> R.ClassifierParams:
    """Random parameters made with numpy (no per-shape compiles of jax.random), with
    non-zero biases so that their gradients and the gates' offsets are exercised."""
    rng = np.random.default_rng(seed)
    g = R.N_BLOCKS[cell]
    cell_p = R._PARAM_TYPES[cell](rng.normal(0, 0.6, (d, g * h)), rng.normal(0, 0.6, (h, g * h)),
                                  rng.normal(0, 0.3, g * h))
    p = R.ClassifierParams(cell_p, rng.normal(0, 0.6, (h, m)), rng.normal(0, 0.1, m),
                           rng.normal(0, 0.6, (m, c)), rng.normal(0, 0.1, c))
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)


def random_batch(n, t, d, c, seed=1):
    """(x <float32>[n, t, d], y <int32>[n]) with labels below c."""
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=(n, t, d)), jnp.float32),
            jnp.asarray(rng.integers(0, c, n), jnp.int32))
