"""Exercise 2: the sparse autoencoder's sparsity term, its share δ_KL of the hidden delta.

Check it:  python -m mp_jax.gradcheck ae --backward exercises/ae_sparsity.py
(swapped in for ``mp_jax.models.autoencoder.sparsity_delta``; try ``--case saturated`` too,
where ρ̂ is near 1 and the term is large, and ``--dtype float32``).

Forward (docs/autoencoder.md, AE5-AE9 and AE18-AE19): a = x W1 + b1 <[N, L_hid]>, h = σ(a);
J = (reconstruction) + (weight decay) + β Σ_b KL(ρ‖ρ̂_b), with ρ̂_b = (1/N) Σ_n h_{n,b} and
KL(ρ‖ρ̂) = ρ log(ρ/ρ̂) + (1 − ρ) log((1 − ρ)/(1 − ρ̂)). The code computes log ρ̂ and log(1 − ρ̂)
in the log domain, as log-sum-exp over the batch of log σ(a) and of log σ(−a), minus log N
(``jax.nn.log_sigmoid``, ``jax.nn.logsumexp``), so the cost is finite for every finite a.

Implement δ_KL = ∂(β Σ_b KL(ρ‖ρ̂_b))/∂a: the backward then adds it to the reconstruction's
share of δ_h. Derive it from the textbook form (AE12)-(AE13) ("Sparsity" in docs/autoencoder.md),
then write it so that it stays finite in float32 where σ(a) underflows to 0 on a whole batch
(a below about −87.3) or rounds to 1 (a above about 17): the section "The sparsity term in the
log domain" of docs/autoencoder.md says why and how.
"""
import jax
import jax.numpy as jnp

TARGET = "mp_jax.models.autoencoder:sparsity_delta"
MODEL = "ae"


def sparsity_delta(a, hp):
    """δ_KL <float>[N, L_hid], the same shape as ``a``.

    Args:
      a: the hidden pre-activations x W1 + b1 <float>[N, L_hid] (N examples, L_hid units).
      hp: hyperparameters with fields ``beta`` (β) and ``rho`` (ρ, the target activation).
    """
    raise NotImplementedError("sparsity_delta: write ∂(β Σ_b KL(ρ‖ρ̂_b))/∂a from a")
