"""The backward pieces a learner writes (``exercises/``), each with what the checker needs to
check it alone and to teach it.

A :class:`Piece` names the package function an exercise replaces (its ``TARGET``), the registry
model that calls it, the names of what it returns (:mod:`mp_jax.checks.contract`), and, for every
tensor it computes, the label of the equation of ``docs/`` that defines it and the tensors that
equation reads (:class:`Rung`: what ``--hint`` shows, one rung at a time).

``Piece.alone(...)`` builds the **piece-alone instance**: random arguments at sizes where no two
of N, D, H, C, T, V coincide, random upstream gradients (dh_t AND dc_t for the LSTM step, a
random dloss for the softmax), and the oracle of every returned tensor: ``jax.grad`` of a forward
written here or in :mod:`mp_jax.checks.offsets` with ``jnp`` only, in float64, with zero offsets
where a tensor names a pre-activation's gradient. The instance also carries what the diagnosis
(:mod:`mp_jax.checks.diagnosis`) compares a wrong tensor with: the sizes, the factors each
equation multiplies by, and where a known mistake shows (the saturated units of the sparsity term).

The sparsity piece follows the autoencoder module's contract, read from its signature:
``sparsity_delta(rho_hat, rho_hat_c, hp) -> s`` (AE12) or ``sparsity_delta(a, hp) -> δ_KL``.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mp_jax import layers
from mp_jax.checks import offsets
from mp_jax.models import autoencoder, recurrent

#: sizes of the piece-alone instances: no two equal (a 1/C where 1/N belongs, a transposed
#: square matrix or a count of steps taken for a count of units cannot pass by coincidence)
N, D, H, T, C, V, EMB_D, L_HID = 5, 3, 4, 6, 7, 8, 2, 9  # EMB_D: the embedding's D
SATURATION = 30.0  # |a| of the saturated autoencoder instance: 1 − ρ̂ below 1e-11, where 1 − rho_hat cancels


@dataclasses.dataclass(frozen=True)
class Rung:
    """The equation that defines one tensor of a piece, and the tensors that equation reads."""

    label: str  # a label of docs/, e.g. "LSTM7"
    needs: tuple = ()  # symbols it is computed from


@dataclasses.dataclass
class Alone:
    """One instance of a piece alone: its arguments and the oracle of everything it returns
    (computed when first read: a piece that fails before needs none)."""

    args: tuple  # the arguments, in the check's dtype
    make_oracle: Callable  # () -> {returned name: array}, in float64
    order: tuple  # the names in the order the piece computes them
    counts: dict  # {"N": 5, ...}: the sizes a wrong scale may be
    description: str  # what the instance is, in one line
    per_step: tuple = ()  # names whose arrays are stacked over time [T, ...]
    rows: tuple = ()  # names compared row by row (dR: one row per word)
    factors: dict = dataclasses.field(default_factory=dict)  # {name: {what: F}}: the equation multiplies by F
    regions: dict = dataclasses.field(default_factory=dict)  # {name: {where: mask}}: a mistake that shows only there
    blocks: str = ""  # the gate blocks of the fused weights, "ifgo" (LSTM), "zrn" (GRU)
    _oracle: dict | None = None

    @property
    def oracle(self) -> dict:
        """{returned name: float64 NumPy array}: the right value of everything the piece returns."""
        if self._oracle is None:
            with jax.enable_x64(True):
                self._oracle = {k: np.asarray(v, np.float64) for k, v in jax.jit(self.make_oracle)().items()}
        return self._oracle


@dataclasses.dataclass(frozen=True)
class Piece:
    name: str  # the exercise's file stem
    target: str  # "module:function"
    model: str  # the registry model that calls it
    returns: Any  # the contract's names (mp_jax.checks.contract)
    rungs: dict  # {tensor: Rung}, in the order the piece computes them
    given: dict  # {symbol: where it comes from}, for the tensors the piece reads
    build: Callable  # (rng, model, case) -> (the arguments in float64, the other fields of Alone)
    model_names: dict = dataclasses.field(default_factory=dict)  # model row name -> rung tensor
    cases: tuple = ()  # the --case values the alone instance knows
    models: tuple = ()  # every model it may be checked on (default: (model,))

    @property
    def module(self):
        return importlib.import_module(self.target.split(":")[0])

    @property
    def attribute(self) -> str:
        return self.target.split(":")[1]

    def checks_on(self, model: str) -> bool:
        """Whether the piece-alone instance serves a check on registry model ``model``."""
        return model in (self.models or (self.model,))

    def rung_of(self, tensor: str) -> tuple[str, Rung] | None:
        """(rung tensor, Rung) for a tensor named by the alone check or by the model's rows."""
        base = tensor.split("[")[0]
        for name in (tensor, base, self.model_names.get(tensor), self.model_names.get(base)):
            if name in self.rungs:
                return name, self.rungs[name]
        return None

    def alone(self, model: str | None = None, dtype: str = "float64", case: str = "", seed: int = 0) -> Alone:
        """The piece-alone instance: arguments cast to ``dtype`` (float leaves), the oracle in
        float64 computed from the float64 arguments. Built once per process for each
        (piece, contract, model, dtype, case, seed): its arrays are immutable, the oracle lazy."""
        key = (self.target, self.build, model or self.model, dtype, case, seed)
        if key not in _ALONE:
            with jax.enable_x64(True):
                rng = np.random.default_rng(seed + 7919)
                args, fields = self.build(rng, model or self.model, case)
                for group in ("factors", "regions"):
                    fields[group] = {k: {w: np.asarray(a, np.float64) for w, a in d.items()}
                                     for k, d in fields.get(group, {}).items()}
            with jax.enable_x64(dtype == "float64"):
                target = jnp.float64 if dtype == "float64" else jnp.float32
                args = jax.tree.map(lambda a: _cast(a, target), args)
            _ALONE[key] = Alone(args=args, **fields)
        return _ALONE[key]


_ALONE: dict = {}  # the piece-alone instances built so far (Piece.alone)


def _cast(a, dtype):
    """Float arrays to ``dtype``; integer arrays to int32; anything else (ints, hyperparameters) as is."""
    if isinstance(a, (np.ndarray, jax.Array)):
        return jnp.asarray(a, dtype if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.int32)
    return a


def _normal(rng, *shape, scale=1.0):
    return rng.normal(0.0, scale, shape)


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


# ============================================================================= softmax cross-entropy
def _build_softmax(rng, model, case):
    z = _normal(rng, N, C, scale=2.0)
    y = rng.integers(0, C, N)
    dloss = rng.uniform(0.5, 1.5)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)

    def oracle():
        return {"dz": dloss * jax.grad(layers.cross_entropy)(jnp.asarray(z), jnp.asarray(y))}

    return (np.asarray(dloss), layers.SoftmaxCECache(p, y)), dict(
        make_oracle=oracle, order=("dz",), counts={"N": N, "C": C},
        description=f"random logits and labels, a random dloss = {dloss:.3f}; N = {N}, C = {C}",
        factors={"dz": {"dloss (the gradient arriving at the loss)": np.full((N, C), dloss)}})


# ============================================================================= autoencoder sparsity
def _kl_sum(rho, log_rho_hat, log_rho_hat_c):
    return jnp.sum(rho * (jnp.log(rho) - log_rho_hat) + (1.0 - rho) * (jnp.log1p(-rho) - log_rho_hat_c))


_CANCELS = ("in the units whose ρ̂ is within 1e-6 of 1, where 1 − ρ̂ (or 1 − h) computed by subtraction "
            "keeps only rounding: compute it without cancellation (docs/autoencoder.md, saturated units)")


def _ae_preactivations(rng, case):
    a = _normal(rng, N, L_HID, scale=1.5)
    if case == "saturated":  # ρ̂ within 1e-11 of 1 (first half of the units) and of 0 (the rest)
        a = a + np.where(np.arange(L_HID) < L_HID // 2, SATURATION, -SATURATION)
    return a




def _build_sparsity_delta_kl(rng, model, case):
    """sparsity_delta(a, hp) -> δ_KL <[N, L_hid]>: the sparsity term's share of δ_h at a."""
    hp = autoencoder.DEFAULT_HYPER
    a = _ae_preactivations(rng, case)

    def oracle():
        def sparsity(a):
            log_n = jnp.log(a.shape[0])
            return hp.beta * _kl_sum(hp.rho, jax.nn.logsumexp(jax.nn.log_sigmoid(a), 0) - log_n,
                                     jax.nn.logsumexp(jax.nn.log_sigmoid(-a), 0) - log_n)
        return {"δ_KL": jax.grad(sparsity)(jnp.asarray(a))}

    return (a, hp), dict(
        make_oracle=oracle, order=("δ_KL",), counts={"N": N, "L_hid": L_HID},
        description=f"random pre-activations a{' near ±30 (saturated)' if case == 'saturated' else ''}; "
                    f"N = {N}, L_hid = {L_HID}, β = {hp.beta}, ρ = {hp.rho}",
        factors={"δ_KL": {"β": np.full((N, L_HID), hp.beta)}},
        regions={"δ_KL": {_CANCELS: np.broadcast_to(_sig(a).mean(0) > 1.0 - 1e-6, (N, L_HID))}})


# ============================================================================= embedding
def _build_embedding(rng, model, case):
    ids = rng.integers(0, V - 2, (N, 3))  # words V − 2 and V − 1 unused: their rows must stay 0
    ids[0, 2] = ids[0, 0]  # a word twice inside one context
    ids[1] = ids[1, 1]  # and three times
    ids[2, 1] = ids[0, 1]  # a word shared by two examples
    dout = _normal(rng, N, 3, EMB_D)
    def oracle():
        _, vjp = jax.vjp(lambda e: e[jnp.asarray(ids)], jnp.zeros((V, EMB_D)))
        return {"dR": vjp(jnp.asarray(dout))[0]}

    return (dout, layers.EmbeddingCache(ids, V)), dict(
        make_oracle=oracle, order=("dR",), rows=("dR",), counts={"N": N, "D": EMB_D, "V": V},
        description=f"random dL/d(rows) for ids with a word repeated inside a context and across contexts; "
                    f"N = {N}, 3 words each, D = {EMB_D}, V = {V}")


# ============================================================================= recurrent steps
def _random_cell(rng, kind):
    g = recurrent.N_BLOCKS[kind]
    cls = {"rnn": recurrent.RNNParams, "lstm": recurrent.LSTMParams, "gru": recurrent.GRUParams}[kind]
    return cls(_normal(rng, D, g * H, scale=0.6), _normal(rng, H, g * H, scale=0.6), _normal(rng, g * H, scale=0.6))


def _step_oracle(kind, cell, x, h0, c0, dh, dc):
    """() -> {name: gradient} of L = <dh, h_t> + <dc, c_t> for one step from (h0, c0): the cell's
    gradients, dh_prev, dc_prev and every named delta (offsets at the pre-activations)."""
    names = ("dh_t",) + recurrent.STEP_DELTAS[kind]

    def loss(cell, h0, c0, eps):
        h, c = offsets.encode(cell, jnp.asarray(x)[:, None, :], eps, (h0, c0))
        return jnp.sum(jnp.asarray(dh) * h) + jnp.sum(jnp.asarray(dc) * c)

    def oracle():
        eps = {k: jnp.zeros((1, N, H)) for k in names}
        g_cell, g_h0, g_c0, g_eps = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(
            jax.tree.map(jnp.asarray, cell), jnp.asarray(h0), jnp.asarray(c0), eps)
        out = {f"cell.{k}": v for k, v in g_cell._asdict().items()}
        out.update({k: g_eps[k][0] for k in recurrent.STEP_DELTAS[kind]}, dh_prev=g_h0)
        if kind == "lstm":
            out["dc_prev"] = g_c0
        return out
    return oracle


def _step_inputs(rng, kind):
    cell = _random_cell(rng, kind)
    x = _normal(rng, N, D)
    h0 = np.tanh(_normal(rng, N, H))
    c0 = _normal(rng, N, H) if kind == "lstm" else np.zeros((N, H))
    pre = np.split(x @ cell.w_x + h0 @ cell.w_h + cell.b, recurrent.N_BLOCKS[kind], axis=-1)  # the forward,
    return cell, x, h0, c0, pre  # in NumPy: the cache a step receives (RNN1, LSTM1, GRU1)


def _build_rnn_step(rng, model, case):
    cell, x, h0, _, (a,) = _step_inputs(rng, "rnn")
    h = np.tanh(a)
    cache = recurrent.RNNStepCache(x, h0, h)
    dh = _normal(rng, N, H)
    oracle = _step_oracle("rnn", cell, x, h0, np.zeros((N, H)), dh, np.zeros((N, H)))
    return (cell, dh, cache), dict(
        make_oracle=oracle, order=("δ_t", "cell.w_x", "cell.w_h", "cell.b", "dh_prev"), counts={"N": N, "D": D, "H": H},
        description=f"one step with a random dh_t; N = {N}, D = {D}, H = {H}",
        factors={"δ_t": {"tanh'(a_t) = 1 − h_t ⊙ h_t": 1.0 - h * h}})


def _build_lstm_step(rng, model, case):
    cell, x, h0, c0, (a_i, a_f, a_g, a_o) = _step_inputs(rng, "lstm")
    i, f, g, o = _sig(a_i), _sig(a_f), np.tanh(a_g), _sig(a_o)
    c = f * c0 + i * g
    cache = recurrent.LSTMStepCache(x, h0, c0, i, f, g, o, c)
    dh, dc = _normal(rng, N, H), _normal(rng, N, H)
    oracle = _step_oracle("lstm", cell, x, h0, c0, dh, dc)
    tc = np.tanh(c)
    return (cell, (dh, dc), cache), dict(
        make_oracle=oracle, order=("δ_o", "dc_t", "δ_i", "δ_f", "δ_g", "cell.w_x", "cell.w_h", "cell.b", "dh_prev", "dc_prev"),
        counts={"N": N, "D": D, "H": H}, blocks="ifgo",
        description=f"one step with random dh_t and dc_t (dc_t ≠ 0 as at every t < T); N = {N}, D = {D}, H = {H}",
        factors={"δ_o": {"tanh(c_t)": tc, "σ'(a_o) = o ⊙ (1 − o)": o * (1 - o)},
                 "δ_i": {"g": g, "σ'(a_i) = i ⊙ (1 − i)": i * (1 - i)},
                 "δ_f": {"c_{t−1}": c0, "σ'(a_f) = f ⊙ (1 − f)": f * (1 - f)},
                 "δ_g": {"i": i, "tanh'(a_g) = 1 − g²": 1 - g * g},
                 "dc_prev": {"f": f}})


def _build_gru_step(rng, model, case):
    cell, x, h0, _, (a_z, a_r, _) = _step_inputs(rng, "gru")
    z, r = _sig(a_z), _sig(a_r)
    n = np.tanh(x @ cell.w_x[:, 2 * H:] + (r * h0) @ cell.w_h[:, 2 * H:] + cell.b[2 * H:])  # (GRU3)-(GRU4)
    cache = recurrent.GRUStepCache(x, h0, z, r, n)
    dh = _normal(rng, N, H)
    oracle = _step_oracle("gru", cell, x, h0, np.zeros((N, H)), dh, np.zeros((N, H)))
    return (cell, dh, cache), dict(
        make_oracle=oracle, order=("δ_n", "δ_z", "δ_r", "cell.w_x", "cell.w_h", "cell.b", "dh_prev"),
        counts={"N": N, "D": D, "H": H}, blocks="zrn",
        description=f"one step with a random dh_t; N = {N}, D = {D}, H = {H}",
        factors={"δ_n": {"1 − z": 1 - z, "tanh'(a_n) = 1 − n²": 1 - n * n},
                 "δ_z": {"h_{t−1} − n": h0 - n, "σ'(a_z) = z ⊙ (1 − z)": z * (1 - z)},
                 "δ_r": {"h_{t−1}": h0, "σ'(a_r) = r ⊙ (1 − r)": r * (1 - r)}})


# ============================================================================= the reverse scan
def _build_bptt(rng, model, case):
    kind = model if model in recurrent.CELLS else "lstm"
    cell = jax.tree.map(jnp.asarray, _random_cell(rng, kind))
    x = _normal(rng, N, T, D)
    _, caches = jax.jit(recurrent.encode_forward)(cell, jnp.asarray(x))  # the package's forward: its caches
    dh_last = _normal(rng, N, H)
    names = ("dh_t",) + recurrent.STEP_DELTAS[kind]

    def loss(cell, eps):
        h, _ = offsets.encode(cell, jnp.asarray(x), eps)
        return jnp.sum(jnp.asarray(dh_last) * h)

    def oracle():
        g_cell, g_eps = jax.jit(jax.grad(loss, argnums=(0, 1)))(cell, {k: jnp.zeros((T, N, H)) for k in names})
        return {**{f"cell.{k}": v for k, v in g_cell._asdict().items()}, **g_eps}

    return (cell, jax.tree.map(np.asarray, caches), dh_last), dict(
        make_oracle=oracle, order=names + ("cell.w_x", "cell.w_h", "cell.b"), per_step=names,
        counts={"N": N, "T": T, "D": D, "H": H}, blocks={"lstm": "ifgo", "gru": "zrn"}.get(kind, ""),
        description=f"the {kind.upper()}'s reverse scan from a random dh_T; N = {N}, T = {T}, D = {D}, H = {H}")


# ============================================================================= the pieces
_CELL_GIVEN = {"x_t": "the cache (x)", "h_{t−1}": "the cache (h_prev)", "W_h": "p.w_h", "dh_t": "the argument dh"}


def _sparsity_piece() -> Piece:
    """The autoencoder's sparsity piece: sparsity_delta(a, hp) -> δ_KL (AE21)."""
    return Piece(name="ae_sparsity", target="mp_jax.models.autoencoder:sparsity_delta", model="ae",
                 cases=("saturated",), models=("ae", "ae-untied"),
                 returns="δ_KL", rungs={"δ_KL": Rung("AE21", ("ρ̂", "π", "π̄", "N", "β", "ρ"))},
                 given={"a": "the argument a: the hidden pre-activations x W1 + b1",
                        "ρ̂": "the mean activation of each unit over the batch, computed inside from a: AE18",
                        "π": "softmax over the batch of log σ(a), computed inside: AE20",
                        "π̄": "softmax over the batch of log σ(−a), computed inside: AE20",
                        "N": "the number of rows of a", "β": "hp.beta", "ρ": "hp.rho"},
                 build=_build_sparsity_delta_kl)


def _pieces() -> dict:
    lstm_w = ("x_t", "h_{t−1}", "δ_i", "δ_f", "δ_g", "δ_o")
    gru_w = ("x_t", "h_{t−1}", "r", "δ_z", "δ_r", "δ_n")
    out = [
        Piece("softmax_ce", "mp_jax.layers:softmax_cross_entropy_backward", "mlp", "dz",
              {"dz": Rung("P17", ("p", "onehot(y)", "N", "dloss"))},
              {"p": "the cache's probs = softmax(z) (P15)", "onehot(y)": "jax.nn.one_hot(labels, C) of the cache's labels",
               "N": "the number of rows of probs", "dloss": "the argument dloss: 1 inside a model, random alone"},
              _build_softmax, models=("mlp", "logistic", "lm", "rnn", "lstm", "gru")),
        _sparsity_piece(),
        Piece("lm_embedding", "mp_jax.layers:embedding_backward", "lm", "dR",
              {"dR": Rung("LM10", ("de", "ids"))},
              {"de": "the argument dout: dL/d(looked-up rows), [N, 3, D] in the model (LM9)",
               "ids": "the cache's ids", "V": "the cache's vocab_size"},
              _build_embedding, model_names={"emb": "dR"}, cases=("repeat",)),
        Piece("rnn_step", "mp_jax.models.recurrent:rnn_step_backward", "rnn", ("dh_prev", "cell", "deltas"),
              {"δ_t": Rung("RNN3", ("dh_t", "h_t")), "cell.w_x": Rung("RNN4", ("x_t", "δ_t")),
               "cell.w_h": Rung("RNN4", ("h_{t−1}", "δ_t")), "cell.b": Rung("RNN4", ("δ_t",)),
               "dh_prev": Rung("RNN5", ("δ_t", "W_h"))},
              {**_CELL_GIVEN, "h_t": "the cache (h)"}, _build_rnn_step, model_names={"dh_t": "dh_prev"}),
        Piece("lstm_step", "mp_jax.models.recurrent:lstm_step_backward", "lstm", (("dh_prev", "dc_prev"), "cell", "deltas"),
              {"δ_o": Rung("LSTM5", ("dh_t", "c_t", "o")), "dc_t": Rung("LSTM6", ("dc_t from step t + 1", "dh_t", "o", "c_t")),
               "δ_i": Rung("LSTM7", ("dc_t", "g", "i")), "δ_f": Rung("LSTM8", ("dc_t", "c_{t−1}", "f")),
               "δ_g": Rung("LSTM9", ("dc_t", "i", "g")), "cell.w_x": Rung("LSTM10", lstm_w),
               "cell.w_h": Rung("LSTM10", lstm_w), "cell.b": Rung("LSTM10", lstm_w[2:]),
               "dh_prev": Rung("LSTM11", ("δ_i", "δ_f", "δ_g", "δ_o", "W_h")), "dc_prev": Rung("LSTM12", ("dc_t", "f"))},
              {**_CELL_GIVEN, "dc_t from step t + 1": "the argument dstate[1] (zero at t = T)", "c_t": "the cache (c)",
               "c_{t−1}": "the cache (c_prev)", "i": "the cache (i)", "f": "the cache (f)", "g": "the cache (g)",
               "o": "the cache (o)", "dh_t": "the argument dstate[0]"},
              _build_lstm_step, model_names={"dh_t": "dh_prev"}),
        Piece("gru_step", "mp_jax.models.recurrent:gru_step_backward", "gru", ("dh_prev", "cell", "deltas"),
              {"δ_n": Rung("GRU6", ("dh_t", "z", "n")), "δ_z": Rung("GRU7", ("dh_t", "h_{t−1}", "n", "z")),
               "d(r⊙h)": Rung("GRU8", ("δ_n", "U_n")), "δ_r": Rung("GRU9", ("d(r⊙h)", "h_{t−1}", "r")),
               "cell.w_x": Rung("GRU10", gru_w), "cell.w_h": Rung("GRU10", gru_w), "cell.b": Rung("GRU10", gru_w[3:]),
               "dh_prev": Rung("GRU11", ("dh_t", "z", "d(r⊙h)", "r", "δ_z", "δ_r", "U_z", "U_r"))},
              {**_CELL_GIVEN, "z": "the cache (z)", "r": "the cache (r)", "n": "the cache (n)",
               "U_n": "the last H columns of p.w_h", "U_z": "the first H columns of p.w_h",
               "U_r": "columns H to 2H of p.w_h"},
              _build_gru_step, model_names={"dh_t": "dh_prev"}),
        Piece("bptt", "mp_jax.models.recurrent:encode_backward", "lstm", ("cell", "per_step"),
              {"dh_t": Rung("BPTT1", ("dh_T from the head", "dh_{t−1} that step t's backward returns")),
               "cell.w_x": Rung("BPTT2", ("each step's gradients",)), "cell.w_h": Rung("BPTT2", ("each step's gradients",)),
               "cell.b": Rung("BPTT2", ("each step's gradients",))},
              {"dh_T from the head": "the argument dh_last", "dh_{t−1} that step t's backward returns":
               "step_backward(cell, dstate, cache)[0]", "each step's gradients": "step_backward(cell, dstate, cache)[1]"},
              _build_bptt, model_names={**{k: "dh_t" for k in ("δ_t", "δ_o", "dc_t", "δ_i", "δ_f", "δ_g", "δ_n", "δ_z", "δ_r")}},
              models=("lstm", "rnn", "gru")),
    ]
    return {p.target: p for p in out}


def get(target: str) -> Piece | None:
    """The piece whose TARGET is ``target`` ("module:function"), or None for a piece the
    exercises do not cover (it is then checked inside its model only)."""
    return _pieces().get(target)


def by_name(name: str) -> Piece:
    for piece in _pieces().values():
        if piece.name == name:
            return piece
    raise KeyError(name)


def all_pieces() -> list:
    return list(_pieces().values())
