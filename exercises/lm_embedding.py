"""Exercise 3: the language model's embedding gradient, where one matrix row serves many positions.

Check it:  python -m mp_jax.gradcheck --backward exercises/lm_embedding.py --case repeat
It is swapped in for ``mp_jax.layers.embedding_backward``: checked first alone (ids with a word
repeated inside one context and a word shared by two contexts, V = 8 words of D = 2), then inside
the ``lm`` model (``--case repeat`` puts one word twice in a context there too).

Forward (docs/language_model.md, section "Forward", LM1; the lookup is P18 of docs/layers.md):
each context of three word ids w_n1, w_n2, w_n3 looks up three rows of the embedding matrix R
<[V, D]>, e_n = [R[w_n1], R[w_n2], R[w_n3]]. One R serves every position of every context.

Derive dR from dL/de on paper first: docs/language_model.md derives it (sections "Backward" and
"A word repeated within one trigram"). Stuck? ``--hint`` climbs one rung at a time.
"""
import jax.numpy as jnp

TARGET = "mp_jax.layers:embedding_backward"
MODEL = "lm"


def embedding_backward(dout, cache):
    """Returns dR = dL/dR <float>[V, D], in the dtype of ``dout``.

    Args:
      dout: dL/d(the looked-up rows) <float>[..., D] (for the language model [N, 3, D]).
      cache: ``(ids, vocab_size)``: ids <int>[...] (the shape of dout without D) and V.

    Tools: JAX arrays are immutable: start from ``jnp.zeros((V, D), dout.dtype)`` and use its
    ``.at[index]`` update methods (read what each does with an index that appears twice).
    """
    ids, vocab_size = cache
    raise NotImplementedError("embedding_backward: not written yet")
