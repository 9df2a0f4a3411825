"""Gradient check from the command line: a model's manual backward against ``jax.grad``.

    python -m mp_jax.gradcheck MODEL [--dtype float64|float32] [--T N] [--hidden H] [--batch N] [--seed S]

MODEL is ``ae`` (sparse autoencoder, tied weights), ``ae-untied``, ``lm`` (the 4-gram
language model), ``rnn``, ``lstm`` or ``gru`` (the sequence classifier). A small random
instance is built with the model's own ``init_params``; its ``loss_and_grad`` (the
hand-derived backward) and ``jax.grad`` of its reference ``loss`` then run in the chosen
dtype, at full matmul precision, exactly as :func:`mp_jax.testing.assert_grads_match` runs
them. The instance: autoencoder patches <float>[N, 16] in [0.1, 0.9]; language-model
trigrams of a 12-word vocabulary with 4-dimensional embeddings; sequences x <float>[N, T, 3]
with a 6-unit ReLU head and 4 classes; H = ``--hidden`` hidden units throughout.

How to read the output. The first table has one row per parameter leaf: its name
(``cell.w_h``, ``w_mlp``, ...), its shape, the largest absolute difference between the two
gradients, and the relative error (that difference over the largest magnitude of the
``jax.grad`` gradient, :func:`mp_jax.testing.grad_errors`'s definition). A row passes at
assert_grads_match's tolerance for the dtype (1e-8 in float64, 1e-4 in float32). Above it,
the loss from ``loss_and_grad`` and from the reference ``loss`` (and, for the recurrences,
from the forward described below), each with its relative difference from the reference;
they must agree to the same tolerance.

For rnn, lstm and gru a second table follows: for each step t = 1..T, the norm ‖∂L/∂h_t‖
(Frobenius over the batch and the hidden units) from the manual backpropagation through
time (``recurrent.hidden_state_grads``), beside the value ``jax.grad`` finds for it, and
‖manual − autodiff‖ / ‖autodiff‖. The autodiff side is a forward written independently
here, which adds a zero offset ε_t to each h_t as it is produced; ∂L/∂ε_t at ε = 0 is
∂L/∂h_t (docs/recurrent.md, BPTT1-BPTT3). Reading the norms from t = T down to t = 1 shows
the gradient shrinking (vanishing) or growing (exploding) as it travels back in time; try
``--T 50`` with ``rnn`` and with ``lstm``.

The exit status is 0 when every row passes and 1 otherwise (2 for bad arguments). Example::

    $ python -m mp_jax.gradcheck lstm --T 6
    ...
    parameter    shape       max abs err   rel. err
    cell.w_x     [3, 32]       5.551e-17   2.20e-16  PASS
    cell.w_h     [8, 32]       5.204e-18   2.58e-16  PASS
    ...
       t       manual     autodiff  rel. diff
       1   7.2784e-03   7.2784e-03   5.60e-16  PASS
       ...
       6   5.0462e-01   5.0462e-01   8.80e-17  PASS

    $ python -m mp_jax.gradcheck ae-untied --dtype float32 --hidden 5
"""
from __future__ import annotations

import argparse
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from mp_jax import cli, testing
from mp_jax.models import autoencoder, language_model, recurrent

MODELS = ("ae", "ae-untied", "lm", "rnn", "lstm", "gru")
DTYPES = {"float64": jnp.float64, "float32": jnp.float32}
# The tolerances of mp_jax.testing.assert_grads_match (its keyword defaults), per dtype.
_DEFAULTS = inspect.signature(testing.assert_grads_match).parameters
RTOL = {"float64": _DEFAULTS["rtol64"].default, "float32": _DEFAULTS["rtol32"].default}
TINY = 1e-30  # the floor under a reference magnitude, as in mp_jax.testing.grad_errors

AE_INPUTS = 16  # L_in of the autoencoder's patches
LM_VOCAB, LM_EMBED = 12, 4  # V and D of the language model
SEQ_INPUTS, SEQ_MLP, SEQ_CLASSES = 3, 6, 4  # D, M and C of the sequence classifier


# ----------------------------------------------------------------------------- instances
def _module(model: str):
    return {"ae": autoencoder, "ae-untied": autoencoder, "lm": language_model}.get(model, recurrent)


def _instance(model: str, key, dtype, args):
    """(params, batch) of a small random instance in ``dtype``."""
    kp, kx, ky = jax.random.split(key, 3)
    n, hdim = args.batch, args.hidden
    if model in ("ae", "ae-untied"):
        params = autoencoder.init_params(kp, hdim, AE_INPUTS, tied=model == "ae", dtype=dtype)
        return params, jax.random.uniform(kx, (n, AE_INPUTS), dtype, 0.1, 0.9)
    if model == "lm":
        params = language_model.init_params(kp, LM_VOCAB, LM_EMBED, hdim, dtype=dtype)
        ids = jax.random.randint(kx, (n, 3), 0, LM_VOCAB, dtype=jnp.int32)
        return params, (ids, jax.random.randint(ky, (n,), 0, LM_VOCAB, dtype=jnp.int32))
    params = recurrent.init_params(kp, model, SEQ_INPUTS, hdim, SEQ_MLP, SEQ_CLASSES, dtype=dtype)
    x = jax.random.normal(kx, (n, args.T, SEQ_INPUTS), dtype)
    return params, (x, jax.random.randint(ky, (n,), 0, SEQ_CLASSES, dtype=jnp.int32))


def _errors(a, ref) -> tuple[float, float]:
    """max|a − ref| and the relative error max|a − ref| / max(max|ref|, tiny) (inf where
    ``a`` is not finite), as :func:`mp_jax.testing.grad_errors` defines it."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    diff = float(np.max(np.abs(a - ref), initial=0.0))
    if not np.all(np.isfinite(a)):
        return diff, float("inf")
    return diff, diff / max(float(np.max(np.abs(ref), initial=0.0)), TINY)


# ----------------------------------------------------------------------------- ∂L/∂h_t by autodiff
def _loss_with_offsets(kind: str, params, batch, eps):
    """The ``kind`` classifier's loss with h_t ← h_t + ε_t at every step; ε <float>[T, N, H].

    Written from the cell equations (RNN1-2, LSTM1-4, GRU1-5, HEAD1-3) with per-gate
    column slices of the fused weights, sharing no code with :mod:`mp_jax.models.recurrent`.
    """
    x, y = batch
    cell = params.cell
    hdim = cell.w_h.shape[0]

    def pre(k, x_t, h):  # gate block k of x_t W_x + h_{t−1} W_h + b
        cols = slice(k * hdim, (k + 1) * hdim)
        return x_t @ cell.w_x[:, cols] + h @ cell.w_h[:, cols] + cell.b[cols]

    def step(carry, inputs):
        h, c = carry
        x_t, e_t = inputs
        if kind == "rnn":
            h = jnp.tanh(pre(0, x_t, h))
        elif kind == "lstm":
            i, f = jax.nn.sigmoid(pre(0, x_t, h)), jax.nn.sigmoid(pre(1, x_t, h))
            g, o = jnp.tanh(pre(2, x_t, h)), jax.nn.sigmoid(pre(3, x_t, h))
            c = f * c + i * g
            h = o * jnp.tanh(c)
        else:
            z, r = jax.nn.sigmoid(pre(0, x_t, h)), jax.nn.sigmoid(pre(1, x_t, h))
            cols = slice(2 * hdim, 3 * hdim)
            n = jnp.tanh(x_t @ cell.w_x[:, cols] + (r * h) @ cell.w_h[:, cols] + cell.b[cols])
            h = z * h + (1.0 - z) * n
        return (h + e_t, c), None

    h0 = jnp.zeros((x.shape[0], hdim), x.dtype)
    (h_last, _), _ = jax.lax.scan(step, (h0, h0), (jnp.swapaxes(x, 0, 1), eps))
    u = jax.nn.relu(h_last @ params.w_mlp + params.b_mlp)
    logp = jax.nn.log_softmax(u @ params.w_out + params.b_out, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


# ----------------------------------------------------------------------------- the check
def check(model: str, dtype_name: str, args) -> dict:
    """Run the comparison; returns the rows to print (numbers as Python floats)."""
    rtol = RTOL[dtype_name]
    dtype = DTYPES[dtype_name]
    module = _module(model)

    def compute(key):  # one compiled program: faster than running op by op, even this small
        params, batch = _instance(model, key, dtype, args)
        out = {"ref": jax.value_and_grad(module.loss)(params, batch), "manual": module.loss_and_grad(params, batch)}
        if module is recurrent:
            eps = jnp.zeros((args.T, args.batch, args.hidden), dtype)
            out["dh_manual"] = recurrent.hidden_state_grads(params, batch)
            out["dh_ref"] = jax.value_and_grad(_loss_with_offsets, argnums=3)(model, params, batch, eps)
        return out

    with jax.enable_x64(dtype == jnp.float64), jax.default_matmul_precision("highest"):
        # "rbg" (XLA's own generator): its programs compile in about half the time of the
        # default threefry's, a noticeable part of this check's run time on a CPU
        out = jax.device_get(jax.jit(compute)(jax.random.key(args.seed, impl="rbg")))
        (loss_ref, g_ref), (loss_man, g_man) = out["ref"], out["manual"]
        if jax.tree.structure(g_ref) != jax.tree.structure(g_man):
            raise AssertionError(f"manual gradient pytree {jax.tree.structure(g_man)} differs from "
                                 f"jax.grad's {jax.tree.structure(g_ref)}")
        paths = jax.tree_util.tree_flatten_with_path(g_ref)[0]
        leaves = []
        for (path, ref), man in zip(paths, jax.tree.leaves(g_man)):
            name = jax.tree_util.keystr(path).lstrip(".") or "<root>"  # ".cell.w_h" -> "cell.w_h"
            leaves.append((name, tuple(ref.shape), *_errors(man, ref)))
        losses = [("loss_and_grad (manual)", float(loss_man)), ("loss (reference)", float(loss_ref))]
        steps = []
        if module is recurrent:
            dh_man = np.asarray(out["dh_manual"], np.float64)
            loss_eps, dh_ref = out["dh_ref"]
            losses.append(("independent forward, ε = 0", float(loss_eps)))
            dh_ref = np.asarray(dh_ref, np.float64)
            if dh_man.shape != dh_ref.shape:
                raise AssertionError(f"hidden_state_grads has shape {dh_man.shape}, expected [T, N, H] = {dh_ref.shape}")
            norm = lambda a: float(np.linalg.norm(a))  # noqa: E731  (Frobenius over [N, H])
            steps = [(t + 1, norm(man), norm(ref), norm(man - ref) / max(norm(ref), TINY)
                      if np.all(np.isfinite(man)) else float("inf"))
                     for t, (man, ref) in enumerate(zip(dh_man, dh_ref))]
    return {"rtol": rtol, "leaves": leaves, "losses": losses, "steps": steps}


def _verdict(err: float, rtol: float) -> str:
    return "PASS" if err <= rtol else "FAIL"  # a NaN fails


def report(model: str, dtype_name: str, result: dict) -> tuple[str, bool]:
    """The printed tables and whether every row passed."""
    rtol, ok = result["rtol"], True
    lines = [f"gradient check: {model}, {dtype_name}, tolerance {rtol:.0e} (relative)", ""]
    ref = result["losses"][1][1]
    lines.append(f"{'loss':<28} {'value':>22} {'rel. diff':>10}")
    for name, value in result["losses"]:
        err = abs(value - ref) / max(abs(ref), TINY)
        ok &= err <= rtol
        lines.append(f"{name:<28} {value:>22.15g} {err:>10.2e}  {_verdict(err, rtol)}")
    lines += ["", f"{'parameter':<12} {'shape':<10} {'max abs err':>12} {'rel. err':>10}"]
    for name, shape, diff, err in result["leaves"]:
        ok &= err <= rtol
        shape_text = "[" + ", ".join(map(str, shape)) + "]"
        lines.append(f"{name:<12} {shape_text:<10} {diff:>12.3e} {err:>10.2e}  {_verdict(err, rtol)}")
    if result["steps"]:
        lines += ["", "‖∂L/∂h_t‖ over [N, H], manual BPTT beside autodiff (t = T is the last step)",
                  f"{'t':>4} {'manual':>12} {'autodiff':>12} {'rel. diff':>10}"]
        for t, man, ad, err in result["steps"]:
            ok &= err <= rtol
            lines.append(f"{t:>4} {man:>12.4e} {ad:>12.4e} {err:>10.2e}  {_verdict(err, rtol)}")
    lines += ["", "all rows PASS" if ok else "some rows FAIL"]
    return "\n".join(lines), ok


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m mp_jax.gradcheck",
                                description="Compare a model's manual gradients with jax.grad on a small instance.")
    p.add_argument("model", metavar="MODEL", choices=MODELS, help=f"one of {', '.join(MODELS)}")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float64", help="default float64")
    p.add_argument("--T", type=cli.positive_int, default=5, help="sequence length of rnn/lstm/gru (default 5)")
    p.add_argument("--hidden", type=cli.positive_int, default=8, help="hidden units H (default 8)")
    p.add_argument("--batch", type=cli.positive_int, default=4, help="examples N (default 4)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="PRNG seed (default 0)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    text, ok = report(args.model, args.dtype, check(args.model, args.dtype, args))
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
