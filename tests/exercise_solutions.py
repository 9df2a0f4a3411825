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

# Mistakes a learner makes, each a list of (text of the solution, its wrong version), with the first
# wrong output of the piece checked alone and what the diagnosis must name: a bug of the zoo, a
# family of mp_jax.checks.diagnosis.FAMILIES, or "" where no known mistake matches.
LEARNER_MISTAKES = [
    ("softmax_ce", [("/ probs.shape[0]", "/ probs.shape[1]")], "dz", "softmax-ce-mean-over-classes"),
    ("softmax_ce", [("(probs - onehot)", "(onehot - probs)")], "dz", "softmax-ce-sign"),
    ("softmax_ce", [("return dloss * (probs", "return (probs")], "dz", "factor"),
    ("softmax_ce", [("/ probs.shape[0]", "/ 2.0")], "dz", "constant"),
    ("lm_embedding", [(".add(", ".set(")], "dR", "embedding-set-not-added"),
    ("rnn_step", [("delta = dh * (1.0 - h * h)", "delta = dh")], "δ_t", "factor"),
    ("rnn_step", [("delta @ p.w_h.T", "delta @ p.w_h")], "dh_prev", "rnn-dh-prev-w-not-transposed"),
    ("rnn_step", [("delta = dh * (1.0 - h * h)", "delta = dh * (1.0 - h.astype(jnp.float32) ** 2)")], "δ_t",
     "precision"),
    ("rnn_step", [("h_prev.T @ delta", "(h_prev.T @ delta).T")], "cell.w_h", "transposed"),
    ("rnn_step", [("delta.sum(0)", "delta.mean(0)")], "cell.b", "count"),
    ("rnn_step", [("h_prev.T @ delta", "h.T @ delta")], "cell.w_h", "rnn-h-t-in-dWh"),
    ("lstm_step", [("d_o = dh * tc * o * (1.0 - o)", "d_o = dh * tc")], "δ_o", "lstm-output-gate-no-sigma-prime"),
    ("lstm_step", [("dc * i * (1.0 - g * g)", "dc * (1.0 - g * g)")], "δ_g", "factor"),
    ("lstm_step", [("(delta @ p.w_h.T, dc * f)", "(delta @ p.w_h.T, jnp.zeros_like(dc))")], "dc_prev",
     "lstm-cell-carry-dropped"),
    ("lstm_step", [("dc = dc + dh", "dc_in, dc = dc, dc + dh"), ("(delta @ p.w_h.T, dc * f)", "(delta @ p.w_h.T, dc_in * f)")],
     "dc_prev", "lstm-carry-before-lstm6"),
    ("lstm_step", [("(delta @ p.w_h.T, dc * f)", "(delta @ p.w_h.T, dc)")], "dc_prev", "lstm-no-forget-carry"),
    ("lstm_step", [("[d_i, d_f, d_g, d_o]", "[d_i, d_f, d_o, d_g]")], "cell.w_x", "lstm-gate-order"),
    ("lstm_step", [("(1.0 - tc * tc)", "(1.0 - c * c)")], "dc_t", "lstm-tanh-prime-of-c"),
    ("lstm_step", [("dc * c_prev * f", "dc * c * f")], "δ_f", ""),
    ("gru_step", [("(r * h_prev).T @ d_n", "h_prev.T @ d_n")], "cell.w_h", "gru-un-without-reset"),
    ("gru_step", [("dh * (h_prev - n)", "dh * (n - h_prev)")], "δ_z", "negated"),
    ("gru_step", [("dh * z + d_rh", "d_rh")], "dh_prev", "gru-no-direct-path"),
    ("bptt", [("total = jax.tree.map(jnp.add, total, grads)", "total = grads")], "cell.w_x", "bptt-weights-set"),
    ("bptt", [('{"dh_t": dstate[0] if kind == "lstm" else dstate', '{"dh_t": dstate_prev[0] if kind == "lstm" else dstate_prev')],
     "dh_t", "bptt-dh-after-step"),
    ("bptt", [("(dh_last, jnp.zeros_like(dh_last))", "(dh_last, dh_last)")], "dc_t", "bptt-lstm-dc-from-dh"),
]


def _first_array(value, replace):
    """``value`` with its first array leaf (depth first) replaced by ``replace(leaf)``."""
    done = [False]

    def walk(v):
        if done[0]:
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, tuple):
            items = [walk(x) for x in v]
            return type(v)(*items) if hasattr(type(v), "_fields") else tuple(items)
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            done[0] = True
            return replace(v)
        return v
    return walk(value)


def _first_dict(value, change):
    if isinstance(value, dict):
        return change(value)
    if isinstance(value, tuple):
        items = [_first_dict(x, change) for x in value]
        return type(value)(*items) if hasattr(type(value), "_fields") else tuple(items)
    return value


def _plain_tuples(value):
    if isinstance(value, tuple):
        return tuple(_plain_tuples(x) for x in value)
    return value


def _ascii_keys(d):
    return {("delta_" + k[2:] if k.startswith("δ_") else k): v for k, v in d.items()}


# Returned values that break the contract, each a function of the right value: the check must
# answer each with one line, whatever the exercise.
MALFORMED = {
    "None": lambda r: None,
    "a number": lambda r: 0.5,
    "a string": lambda r: "gradient",
    "an empty list": lambda r: [],
    "a list": lambda r: list(r) if isinstance(r, tuple) else [r],
    "one item short": lambda r: r[:-1] if isinstance(r, tuple) and not hasattr(type(r), "_fields") else (r, r),
    "a nested tuple": lambda r: (r, r),
    "a wrong shape": lambda r: _first_array(r, lambda a: a[..., :-1]),
    "an extra axis": lambda r: _first_array(r, lambda a: a[None]),
    "float32": lambda r: _first_array(r, lambda a: a.astype("float32")),
    "int32": lambda r: _first_array(r, lambda a: a.astype("int32")),
    "a Python list leaf": lambda r: _first_array(r, lambda a: [[0.0]]),
    "None leaf": lambda r: _first_array(r, lambda a: None),
    "plain tuples": _plain_tuples,
    "ASCII keys": lambda r: _first_dict(r, _ascii_keys),
    "a key missing": lambda r: _first_dict(r, lambda d: dict(list(d.items())[1:])),
    "an extra key": lambda r: _first_dict(r, lambda d: {**d, "extra": next(iter(d.values()))}),
    "dict values as a list": lambda r: _first_dict(r, lambda d: list(d.values())),
    "a generator": lambda r: (x for x in ()),
    "an object": lambda r: object(),
    "a function": lambda r: (lambda: r),
}
