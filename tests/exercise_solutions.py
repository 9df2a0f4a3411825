"""Bodies that fill each exercise's ``raise NotImplementedError`` line: the solution, and one
mistake from the bug zoo with the tensor the check must name first."""

SOLUTIONS = {
    "softmax_ce": """
    onehot = jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)
    return dloss * (probs - onehot) / probs.shape[0]
""",
    "ae_sparsity": """
    n = a.shape[0]
    log_h, log_h_c = jax.nn.log_sigmoid(a), jax.nn.log_sigmoid(-a)
    rho_hat = jnp.exp(jax.nn.logsumexp(log_h, axis=0) - jnp.log(n))
    pi, pi_c = jax.nn.softmax(log_h, axis=0), jax.nn.softmax(log_h_c, axis=0)
    return n * hp.beta * (rho_hat - hp.rho) * pi * pi_c
""",
    "lm_embedding": """
    d = dout.shape[-1]
    return jnp.zeros((vocab_size, d), dout.dtype).at[ids.reshape(-1)].add(dout.reshape(-1, d))
""",
    "rnn_step": """
    delta = dh * (1.0 - h * h)
    return delta @ p.w_h.T, RNNParams(x.T @ delta, h_prev.T @ delta, delta.sum(0)), {"δ_t": delta}
""",
    "lstm_step": """
    tc = jnp.tanh(c)
    d_o = dh * tc * o * (1.0 - o)
    dc = dc + dh * o * (1.0 - tc * tc)
    d_i, d_f, d_g = dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g)
    delta = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)
    grads = LSTMParams(x.T @ delta, h_prev.T @ delta, delta.sum(0))
    return (delta @ p.w_h.T, dc * f), grads, {"δ_o": d_o, "dc_t": dc, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}
""",
    "gru_step": """
    hd = h_prev.shape[-1]
    u_zr, u_n = p.w_h[:, :2 * hd], p.w_h[:, 2 * hd:]
    d_n = dh * (1.0 - z) * (1.0 - n * n)
    d_z = dh * (h_prev - n) * z * (1.0 - z)
    d_rh = d_n @ u_n.T
    d_r = d_rh * h_prev * r * (1.0 - r)
    d_zr = jnp.concatenate([d_z, d_r], axis=-1)
    delta = jnp.concatenate([d_zr, d_n], axis=-1)
    w_h = jnp.concatenate([h_prev.T @ d_zr, (r * h_prev).T @ d_n], axis=-1)
    dh_prev = dh * z + d_rh * r + d_zr @ u_zr.T
    return dh_prev, GRUParams(x.T @ delta, w_h, delta.sum(0)), {"δ_n": d_n, "δ_z": d_z, "δ_r": d_r}
""",
    "bptt": """
    dstate = (dh_last, jnp.zeros_like(dh_last)) if kind == "lstm" else dh_last

    def step(carry, cache):
        dstate, total = carry
        dstate_prev, grads, deltas = step_backward(cell, dstate, cache)
        total = jax.tree.map(jnp.add, total, grads)
        return (dstate_prev, total), {"dh_t": dstate[0] if kind == "lstm" else dstate, **deltas}

    (_, grads), per_step = jax.lax.scan(step, (dstate, jax.tree.map(jnp.zeros_like, cell)), caches, reverse=True)
    return grads, per_step
""",
}

# (text replaced in the solution, its wrong version, the first wrong tensor the check names)
MISTAKES = {
    "softmax_ce": ("/ probs.shape[0]", "", "dz"),
    "ae_sparsity": ("(rho_hat - hp.rho)", "(hp.rho - rho_hat)", "δ_KL"),
    "lm_embedding": (".add(", ".set(", "dR"),
    "rnn_step": ("h_prev.T @ delta", "h.T @ delta", "cell.w_h"),
    "lstm_step": ("(delta @ p.w_h.T, dc * f)", "(delta @ p.w_h.T, dc)", "dc_t"),
    "gru_step": ("dh * z + d_rh", "d_rh", "dh_t"),
    "bptt": ("total = jax.tree.map(jnp.add, total, grads)", "total = grads", "cell.w_x"),
}
