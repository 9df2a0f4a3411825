"""Exercise 1: the softmax cross-entropy head, the gradient every classifier starts from.

Check it:  python -m mp_jax.gradcheck mlp --backward exercises/softmax_ce.py
(it is swapped in for ``mp_jax.layers.softmax_cross_entropy_backward``, which the MLP, the
logistic model, the language model and the recurrent classifiers all call).

Forward (docs/layers.md, P15-P16): p = softmax(z) over the C classes of each row,
L = −(1/N) Σ_n log p[n, y_n].

Implement (P17): dL/dz = dloss · (p − onehot(y)) / N.
"""
import jax
import jax.numpy as jnp

TARGET = "mp_jax.layers:softmax_cross_entropy_backward"
MODEL = "mlp"


def softmax_cross_entropy_backward(dloss, cache):
    """dL/dz <float>[N, C].

    Args:
      dloss: scalar, the gradient arriving at the loss (1 for the loss itself).
      cache: ``(probs, labels)``: probs <float>[N, C] = softmax(z), labels <int>[N] in [0, C).

    Hints: ``jax.nn.one_hot(labels, C, dtype=probs.dtype)``; the loss is a MEAN over N rows.
    """
    probs, labels = cache
    raise NotImplementedError("softmax_cross_entropy_backward: write dloss · (p − onehot(y)) / N")
