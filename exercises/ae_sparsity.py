"""Exercise 2: the sparse autoencoder's sparsity term, s = ∂(β Σ_b KL(ρ‖ρ̂_b)) / ∂ρ̂.

Check it:  python -m mp_jax.gradcheck ae --backward exercises/ae_sparsity.py
(swapped in for ``mp_jax.models.autoencoder.sparsity_delta``; try ``--case saturated`` too,
where ρ̂ is near 1 and the term is large).

Forward (docs/autoencoder.md, AE7-AE9): ρ̂_b = (1/N) Σ_n h_{n,b};
KL(ρ‖ρ̂) = ρ log(ρ/ρ̂) + (1 − ρ) log((1 − ρ)/(1 − ρ̂)).

Implement (AE12): s_b = β (−ρ/ρ̂_b + (1 − ρ)/(1 − ρ̂_b)). The backward then adds s/N to every
row of the hidden gradient before σ' (AE13): each example moved ρ̂ by 1/N of its activation.
"""
TARGET = "mp_jax.models.autoencoder:sparsity_delta"
MODEL = "ae"


def sparsity_delta(rho_hat, rho_hat_c, hp):
    """s <float>[L_hid].

    Args:
      rho_hat: ρ̂ <float>[L_hid], each hidden unit's mean activation over the batch.
      rho_hat_c: 1 − ρ̂ <float>[L_hid], computed without cancellation (use it, not 1 − rho_hat:
        near ρ̂ = 1 the subtraction loses every digit; docs/autoencoder.md, AE17).
      hp: hyperparameters with fields ``beta`` (β) and ``rho`` (ρ, the target activation).
    """
    raise NotImplementedError("sparsity_delta: write β(−ρ/ρ̂ + (1 − ρ)/(1 − ρ̂))")
