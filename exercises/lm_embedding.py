"""Exercise 3: the language model's embedding gradient, where a repeated word adds up.

Check it:  python -m mp_jax.gradcheck lm --backward exercises/lm_embedding.py --case repeat
(swapped in for ``mp_jax.layers.embedding_backward``; ``--case repeat`` puts one word twice in
a context, where writing the gradient instead of adding it loses a contribution).

Forward (docs/language_model.md, LM1): e_n = [R[w_n1], R[w_n2], R[w_n3]], one row of R per word.

Implement (LM9-LM10): dR[v] = Σ over every (n, j) with w_nj = v of de_n^(j): a scatter-ADD of the
D-blocks of dL/de into the rows of a zero [V, D] matrix.
"""
import jax.numpy as jnp

TARGET = "mp_jax.layers:embedding_backward"
MODEL = "lm"


def embedding_backward(dout, cache):
    """dR <float>[V, D].

    Args:
      dout: dL/d(looked-up rows) <float>[..., D] (for the language model [N, 3, D]).
      cache: ``(ids, vocab_size)``: ids <int>[...] (the shape of dout without D), V.

    Hints: flatten ids to [K] and dout to [K, D]; ``jnp.zeros((V, D)).at[ids].add(rows)`` adds
    repeated ids up (``.set`` would keep one; NumPy's ``dR[ids] += rows`` also keeps one).
    """
    ids, vocab_size = cache
    raise NotImplementedError("embedding_backward: scatter-add the rows of dout into a [V, D] zero matrix")
