"""Every model with a hand-derived backward, in one place.

For each name (``ae``, ``ae-untied``, ``lm``, ``lm-dropout``, ``rnn``, ``lstm``, ``gru``, ``mlp``,
``logistic``) a :class:`ModelSpec` holds its ``init_params``, its reference ``loss`` (what
``jax.grad`` differentiates), its manual implementations by name (``reference``, and ``fast``
where a speed path exists), the loss with zero offsets at every named intermediate
(:mod:`mp_jax.checks.offsets`) and a builder of small random instances. ``python -m
mp_jax.gradcheck``, the gradient table (``tests/test_gradient_table.py``), the bug zoo
(:mod:`mp_jax.checks.bugzoo`) and the benchmarks read it; a test fails when a module under
``mp_jax/models/`` defines a manual gradient that is not listed here.

Every implementation is an :class:`Implementation`: its ``loss_and_grad(params, batch) ->
(loss, grads)`` and ``loss_grad_and_intermediates(params, batch) -> (loss, grads,
{name: array})``, the intermediates named with the symbols of ``docs/`` and listed, in the
order the backward computes them, by :meth:`ModelSpec.intermediate_shapes`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mp_jax.checks import offsets
from mp_jax.checks.manual_vjp import manual_vjp
from mp_jax.models import (autoencoder, language_model, language_model_dropout, language_model_fast, logistic, mlp,
                           recurrent, recurrent_fast)

AE_INPUTS = 16  # L_in of the small autoencoder instances
LM_VOCAB, LM_EMBED = 12, 4  # V and D of the small language-model instances
SEQ_INPUTS, SEQ_MLP, SEQ_CLASSES = 3, 6, 4  # D, M and C of the small sequence classifiers
MLP_INPUTS, MLP_CLASSES = 5, 4  # D and C of the small MLP
LOGISTIC_FEATURES, LOGISTIC_CLASSES = 15, 6  # F and C of the small logistic model


class Size(NamedTuple):
    """A small instance's size and the special case it exercises.

    ``special``: "" (plain), "saturated" (AE: hidden biases of +8, ρ̂ near 1, the sparsity
    term large), "saturated-low" and "saturated-high" (AE: hidden biases of −20 and +20, ρ̂
    about 1e-8 and 1 − 1e-8, where (AE12)'s s is about ∓1e8 β), "repeat" (LM: a word repeated
    inside one context), "square" (weights whose two dimensions are equal, where a transposed
    gradient has the right shape).
    """

    batch: int = 4
    hidden: int = 8
    T: int = 5
    special: str = ""


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One manual backward: ``loss_and_grad`` and the same computation with its named
    intermediate gradients. Names read module attributes when called, so a replacement of a
    backward piece (:mod:`mp_jax.checks.bugzoo`, an exercise) is the one that runs."""

    module: object
    attribute: str = "loss_and_grad"

    def loss_and_grad(self, params, batch):
        return getattr(self.module, self.attribute)(params, batch)

    def loss_grad_and_intermediates(self, params, batch):
        return self.module.loss_grad_and_intermediates(params, batch)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str
    init_params: Callable  # the model module's own initialiser
    loss: Callable  # (params, batch) -> scalar: the reference for jax.grad
    impls: dict  # implementation name -> Implementation
    offset_loss: Callable  # (params, batch, eps) -> scalar (mp_jax.checks.offsets)
    build: Callable  # (rng, Size) -> (params, batch) in float64 numpy
    shapes: Callable  # (params, batch) -> {name: shape}, in backward order
    per_step: tuple = ()  # names of the per-step intermediates <[T, N, ·]> (recurrences)
    rows_of: tuple = ()  # (leaf, symbol): that leaf's gradient also compared row by row (LM: "emb", "dR")
    sizes: tuple = ()  # the gradient table's cases: (id, Size)

    def instance(self, size: Size = Size(), *, dtype=jnp.float64, seed: int = 0):
        """(params, batch) of a small random instance in ``dtype`` (float leaves only; labels
        and word ids stay int32). Parameters are N(0, scale²) draws, biases included, so no
        gradient is zero by construction; call under ``jax.enable_x64`` for float64."""
        params, batch = self.build(np.random.default_rng(seed), size)
        cast = lambda a: jnp.asarray(a, dtype if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.int32)  # noqa: E731
        return jax.tree.map(cast, params), jax.tree.map(cast, batch)

    def intermediate_shapes(self, params, batch) -> dict:
        """{name: shape} of the named intermediate gradients, in the order the backward
        computes them (per-step ones stacked over time, [T, N, ·])."""
        return self.shapes(params, batch)

    def offsets_at_zero(self, params, batch, dtype) -> dict:
        return offsets.zeros(self.intermediate_shapes(params, batch), dtype)

    def manual_loss(self, impl: str = "reference") -> Callable:
        """``loss(params, batch)`` whose ``jax.grad`` runs implementation ``impl``'s manual
        backward (a ``jax.custom_vjp``; :mod:`mp_jax.checks.manual_vjp`)."""
        return manual_vjp(self.impls[impl].loss_and_grad)


def _normal(rng, shape, scale):
    return rng.normal(0.0, scale, shape)


def _like(template, rng, scale):
    """A pytree shaped like ``template`` (a NamedTuple of arrays or None) of N(0, scale²) draws."""
    return jax.tree.map(lambda a: _normal(rng, a.shape, scale), template)


def _shapes_of(init, *args, **kwargs):
    return jax.eval_shape(functools.partial(init, jax.random.key(0), *args, **kwargs))


# ----------------------------------------------------------------------------- autoencoder
def _build_ae(tied: bool):
    def build(rng, size: Size):
        hidden = AE_INPUTS if size.special == "square" else size.hidden
        params = _like(_shapes_of(autoencoder.init_params, hidden, AE_INPUTS, tied=tied), rng, 0.5)
        shift = {"saturated": 8.0, "saturated-low": -20.0, "saturated-high": 20.0}.get(size.special)
        if shift is not None:  # every hidden unit near 1 (or 0): ρ̂ → 1 (or 0), s/N large
            params = params._replace(b_hid=params.b_hid + shift)
        return params, rng.uniform(0.1, 0.9, (size.batch, AE_INPUTS))
    return build


def _ae_shapes(params, x):
    n, hidden = x.shape[0], params.w_enc.shape[1]
    return {"δ_o": (n, AE_INPUTS), "δ_KL": (n, hidden), "δ_h": (n, hidden)}


# ----------------------------------------------------------------------------- language model
def _build_lm(rng, size: Size):
    hidden = 3 * LM_EMBED if size.special == "square" else size.hidden  # W1 [3D, P] and W2 [P, V] square
    params = _like(_shapes_of(language_model.init_params, LM_VOCAB, LM_EMBED, hidden), rng, 0.5)
    ids = rng.integers(0, LM_VOCAB, (size.batch, 3))
    if size.special == "repeat":  # the same word twice inside one context, first and last
        ids[0, 2] = ids[0, 0]
        if size.batch > 1:
            ids[1] = ids[1, 1]  # and all three positions one word
    return params, (ids, rng.integers(0, LM_VOCAB, size.batch))


def _lm_shapes(params, batch):
    n, hidden = batch[0].shape[0], params.w_hid.shape[1]
    return {"dz": (n, LM_VOCAB), "δ_h": (n, hidden), "de": (n, 3 * LM_EMBED)}


def _build_lm_dropout(rng, size: Size):
    """The language model's instance with a dropout seed per example: (ids, y, seeds)."""
    params, (ids, y) = _build_lm(rng, size)
    return params, (ids, y, rng.integers(0, 2**31 - 1, size.batch))


def _lm_dropout_shapes(params, batch):
    n, hidden = batch[0].shape[0], params.w_hid.shape[1]
    return {"dz": (n, LM_VOCAB), "dh": (n, hidden), "δ_h": (n, hidden), "de": (n, 3 * LM_EMBED)}


# ----------------------------------------------------------------------------- recurrences
def _build_seq(cell: str):
    def build(rng, size: Size):
        hidden = SEQ_MLP if size.special == "square" else size.hidden  # W_mlp [H, M] square
        n_in = hidden if size.special == "square" else SEQ_INPUTS  # and the RNN's W_x [D, H]
        params = _like(_shapes_of(recurrent.init_params, cell, n_in, hidden, SEQ_MLP, SEQ_CLASSES), rng, 0.6)
        x = rng.normal(0.0, 1.0, (size.batch, size.T, n_in))
        return params, (x, rng.integers(0, SEQ_CLASSES, size.batch))
    return build


def _seq_shapes(cell: str):
    def shapes(params, batch):
        n, t, _ = batch[0].shape
        hidden = params.cell.w_h.shape[0]
        out = {"dz": (n, SEQ_CLASSES), "da": (n, params.w_mlp.shape[1]), "dh_t": (t, n, hidden)}
        out.update({name: (t, n, hidden) for name in recurrent.STEP_DELTAS[cell]})
        return out
    return shapes


# ----------------------------------------------------------------------------- MLP and logistic
def _build_mlp(rng, size: Size):
    d, h, c = (MLP_CLASSES,) * 3 if size.special == "square" else (MLP_INPUTS, size.hidden, MLP_CLASSES)
    params = _like(_shapes_of(mlp.init_params, d, h, c), rng, 0.6)
    return params, (rng.normal(0.0, 1.0, (size.batch, d)), rng.integers(0, c, size.batch))


def _mlp_shapes(params, batch):
    n = batch[0].shape[0]
    return {"dz": (n, params.w_out.shape[1]), "δ_a": (n, params.w_in.shape[1])}


def _build_logistic(rng, size: Size):
    # random W, not init_params' zeros: at W = 0 a wrong weight-decay term would go unseen
    f = LOGISTIC_CLASSES if size.special == "square" else LOGISTIC_FEATURES
    params = _like(_shapes_of(logistic.init_params, f, LOGISTIC_CLASSES), rng, 0.6)
    return params, (rng.normal(0.0, 1.0, (size.batch, f)), rng.integers(0, LOGISTIC_CLASSES, size.batch))


def _logistic_shapes(params, batch):
    return {"dz": (batch[0].shape[0], params.w.shape[1])}


# ----------------------------------------------------------------------------- the registry
# The first case of each model is the fast test tier's: N ≥ 2, T ≥ 2 and no two sizes equal (N = 7
# is none of the constants above, H = 9 and 5 none either), so a missing 1/N, a count taken for
# another or a transposed recurrent matrix cannot pass there by coincidence.
_PLAIN = (("N7-H9", Size(batch=7, hidden=9)), ("N1", Size(batch=1)), ("square", Size(special="square")))
_SEQ_SIZES = (("T2", Size(batch=7, hidden=5, T=2)), ("T1", Size(batch=3, hidden=4, T=1)),
              ("T7-N1", Size(batch=1, hidden=4, T=7)), ("T150", Size(batch=2, hidden=3, T=150)),
              ("square", Size(batch=3, T=4, special="square")))


def _ae_spec(name: str, tied: bool) -> ModelSpec:
    return ModelSpec(
        name, f"sparse autoencoder, {'tied' if tied else 'untied'} weights (Q1)",
        autoencoder.init_params, autoencoder.loss,
        {"reference": Implementation(autoencoder)}, offsets.autoencoder, _build_ae(tied), _ae_shapes,
        sizes=_PLAIN + tuple((case, Size(batch=4, hidden=5, special=case))
                             for case in ("saturated", "saturated-low", "saturated-high")))


def _seq_spec(cell: str) -> ModelSpec:
    return ModelSpec(
        cell, f"{cell.upper()} sequence classifier with the ReLU head, manual BPTT (Q3)",
        recurrent.init_params, recurrent.loss,
        {"reference": Implementation(recurrent), "fast": Implementation(recurrent_fast)},
        offsets.recurrent, _build_seq(cell), _seq_shapes(cell),
        per_step=("dh_t",) + recurrent.STEP_DELTAS[cell], sizes=_SEQ_SIZES)


MODELS: dict[str, ModelSpec] = {
    "ae": _ae_spec("ae", True),
    "ae-untied": _ae_spec("ae-untied", False),
    "lm": ModelSpec(
        "lm", "neural 4-gram language model (Q2)", language_model.init_params, language_model.loss,
        {"reference": Implementation(language_model), "fast": Implementation(language_model_fast)},
        offsets.language_model, _build_lm, _lm_shapes,
        rows_of=("emb", "dR"),
        sizes=_PLAIN + (("repeat-N1", Size(batch=1, special="repeat")), ("repeat", Size(special="repeat")))),
    "lm-dropout": ModelSpec(
        "lm-dropout", "the language model trained with dropout on its hidden layer (Q2's tuned network)",
        language_model_dropout.init_params, language_model_dropout.loss,
        {"reference": Implementation(language_model_dropout)}, offsets.language_model_dropout, _build_lm_dropout,
        _lm_dropout_shapes, rows_of=("emb", "dR"),
        sizes=_PLAIN + (("repeat", Size(special="repeat")),)),
    **{cell: _seq_spec(cell) for cell in recurrent.CELLS},
    "mlp": ModelSpec(
        "mlp", "one-hidden-layer tanh MLP classifier (the engine's smoke model)", mlp.init_params, mlp.loss,
        {"reference": Implementation(mlp)}, offsets.mlp, _build_mlp, _mlp_shapes, sizes=_PLAIN),
    "logistic": ModelSpec(
        "logistic", "multinomial logistic regression with weight decay (Q3's baseline)",
        logistic.init_params, logistic.loss, {"reference": Implementation(logistic)},
        offsets.logistic, _build_logistic, _logistic_shapes, sizes=_PLAIN),
}

#: Entry points that compute an implementation's gradient another way and are tested equal to it
#: exactly (the epoch engine's buffer-reusing form of the fast recurrences).
VARIANTS = {recurrent_fast.loss_and_grad_reusing: ("rnn|lstm|gru", "fast"),
            recurrent_fast.loss_and_grad_step: ("rnn|lstm|gru", "fast")}


def training_loss_and_grad(name: str):
    """The manual gradient the experiments train ``name`` with: the fast path where there is
    one (for the recurrences its buffer-reusing form, :data:`VARIANTS`), else the reference."""
    if name in recurrent.CELLS:
        return recurrent_fast.loss_and_grad_reusing
    spec = get(name)
    return spec.impls["fast" if "fast" in spec.impls else "reference"].loss_and_grad


def get(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; the registry has {', '.join(MODELS)}") from None


def manual_gradients() -> set:
    """Every callable the registry lists as a manual gradient (implementations and variants)."""
    out = set(VARIANTS)
    for spec in MODELS.values():
        for impl in spec.impls.values():
            out.add(getattr(impl.module, impl.attribute))
            out.add(impl.module.loss_grad_and_intermediates)
    return out
