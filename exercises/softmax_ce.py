"""Exercise 1: the softmax cross-entropy head, the gradient every classifier starts from.

Check it:  python -m mp_jax.gradcheck --backward exercises/softmax_ce.py
It is swapped in for ``mp_jax.layers.softmax_cross_entropy_backward``, which the MLP, the logistic
model, the language model and the recurrent classifiers all call: checked first alone (random
logits, labels and dloss, N = 5 rows of C = 7 classes), then inside the ``mlp`` model.

Forward (docs/layers.md, section "Softmax cross-entropy", P15-P16): p = softmax(z) over the C
classes of each row of the logits z <[N, C]>, and the loss is the mean over the N rows,
L = −(1/N) Σ_n log p[n, y_n]. The gradient arriving at L is ``dloss`` (1 when L is the loss).

Derive dL/dz from the forward, on paper, before you write it: the same section of docs/layers.md
derives it. Stuck? ``--hint`` (then ``--hint 2``, ``--hint 3``) climbs one rung at a time.
"""
import jax
import jax.numpy as jnp

TARGET = "mp_jax.layers:softmax_cross_entropy_backward"
MODEL = "mlp"


def softmax_cross_entropy_backward(dloss, cache):
    """Returns dz = dL/dz <float>[N, C], in the dtype of ``probs``.

    Args:
      dloss: a scalar array, the gradient arriving at the loss.
      cache: ``(probs, labels)``: probs <float>[N, C] = softmax(z), labels <int>[N] in [0, C).

    Tools: ``jax.nn.one_hot(labels, C, dtype=probs.dtype)``.
    """
    probs, labels = cache
    raise NotImplementedError("softmax_cross_entropy_backward: not written yet")
