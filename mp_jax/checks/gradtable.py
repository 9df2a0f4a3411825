"""The three-oracle gradient check of one registry model, tensor by tensor.

:func:`check_gradients` runs a manual implementation (:mod:`mp_jax.checks.registry`) on a small
instance and compares, row by row:

* every **named intermediate** of its backward (δ_o, s, δ_h; dz, δ_h, de; dz, da, and per
  step dh_t, dc_t and the gate deltas) with ``jax.grad`` of the loss in a zero offset added to
  that intermediate (:mod:`mp_jax.checks.offsets`), and, for the language model, each used row of dR;
* every **parameter gradient** with ``jax.grad`` of the reference loss, and, with ``fd``, with
  **central finite differences** in float64 on a seeded sample of coordinates of each leaf.

The rows come in the order the backward computes them (head to input, t = T down to 1), so
:meth:`GradCheck.first_wrong` is where a wrong backward first goes wrong.

Error of a row: max |manual − oracle| over the tensor (or the step), divided by the largest
|oracle| there (floored at 1e-30): a relative error that does not depend on the tensor's scale.

Tolerances (:data:`TOLERANCES`, :data:`FD_STEP`, :data:`FD_TOLERANCE`): see :func:`explain`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mp_jax.checks.registry import ModelSpec, Size

TINY = 1e-30
DTYPES = {"float64": jnp.float64, "float32": jnp.float32}
#: Relative tolerance per dtype. float64: the unit roundoff is 1.1e-16 and the largest error
#: measured over the registry's cases is 8e-15 (T = 150 included), so 1e-10 leaves four orders
#: of magnitude and still fails any wrong term (the bug zoo's smallest error is 1.1e-4).
#: float32: the unit roundoff is 6e-8; the manual and autodiff paths sum in different orders and
#: each of the T steps of BPTT adds its rounding, measured up to 2.4e-6 at T = 150, so 1e-4.
TOLERANCES = {"float64": 1e-10, "float32": 1e-4}
#: Central differences (L(θ + h e) − L(θ − h e)) / 2h with h = FD_STEP · max(1, |θ_i|), in float64:
#: truncation error h² |∂³L| / 6 ≈ 2e-11 |∂³L| plus rounding ~ u |L| / h ≈ 1e-11 |L|.
FD_STEP = 1e-5
FD_TOLERANCE = 1e-6
FD_SAMPLES = 3  # coordinates per parameter leaf


def explain(dtype: str, size: Size | None = None) -> str:
    """One paragraph: the tolerances this check uses and why."""
    t = f" over T = {size.T} steps" if size is not None and size.T > 1 else ""
    base = {"float64": ("float64 (unit roundoff 1.1e-16): manual and autodiff differ only by the order of their "
                        f"sums; measured up to 8e-15 even at T = 150, so {TOLERANCES['float64']:.0e} relative"),
            "float32": ("float32 (unit roundoff 6e-8): each step of BPTT adds its rounding and the two paths sum "
                        f"in different orders{t}; measured up to 2.4e-6 at T = 150, so "
                        f"{TOLERANCES['float32']:.0e} relative")}[dtype]
    return (f"tolerance: {base}. Finite differences: central, float64, step h = {FD_STEP:.0e}·max(1, |θ|), "
            f"{FD_SAMPLES} coordinates per leaf; their error ≈ h²|∂³L|/6 + 1e-16·|L|/h ≈ 1e-10, so "
            f"{FD_TOLERANCE:.0e} relative to the leaf's largest gradient.")


@dataclasses.dataclass(frozen=True)
class Row:
    kind: str  # "loss", "intermediate" or "parameter"
    name: str  # a docs/ symbol ("δ_f", "dR[3]") or a parameter leaf ("cell.w_h")
    shape: tuple
    abs_err: float
    rel_err: float
    tol: float
    step: int | None = None  # t for per-step intermediates
    fd_err: float | None = None  # parameters, with finite differences
    fd_tol: float | None = None
    note: str = ""
    ref_norm: float = 0.0  # ‖oracle‖ (Frobenius) of the tensor or step: how large the gradient is

    @property
    def passed(self) -> bool:
        ok = self.rel_err <= self.tol  # a NaN fails
        return ok and (self.fd_err is None or self.fd_err <= self.fd_tol)

    @property
    def label(self) -> str:
        return self.name if self.step is None else f"{self.name} at t = {self.step}"


@dataclasses.dataclass(frozen=True)
class GradCheck:
    model: str
    impl: str
    dtype: str
    size: Size
    tol: float
    rows: tuple
    #: {row label: (manual, oracle)} as float64 NumPy arrays: what a diagnosis compares
    values: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows)

    def first_wrong(self) -> Row | None:
        """The first failing intermediate or parameter row, in the backward's order."""
        return next((r for r in self.rows if r.kind != "loss" and not r.passed), None)

    def first_nonfinite(self) -> Row | None:
        """The first row, in the backward's order, whose manual tensor holds NaN or Inf."""
        return next((r for r in self.rows if r.note in ("NaN", "Inf")), None)


def nonfinite_note(a) -> str:
    """"NaN" or "Inf" if the array holds one (NaN first), else ""."""
    a = np.asarray(a, np.float64)
    return "NaN" if np.any(np.isnan(a)) else "Inf" if np.any(np.isinf(a)) else ""


def _errors(a, ref) -> tuple[float, float]:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    if a.shape != ref.shape:
        return float("inf"), float("inf")
    diff = float(np.max(np.abs(a - ref), initial=0.0))
    if not np.all(np.isfinite(a)):
        return diff, float("inf")
    return diff, diff / max(float(np.max(np.abs(ref), initial=0.0)), TINY)


def _leaf_names(tree) -> list[str]:
    return [jax.tree_util.keystr(p).lstrip(".") or "<root>" for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _fd_sample(spec: ModelSpec, size: Size, seed: int, samples: int):
    """Central differences of the reference loss, float64, at a seeded sample of coordinates of
    every leaf: {leaf name: (flat indices, derivatives)}."""
    with jax.enable_x64(True):
        params, batch = spec.instance(size, dtype=jnp.float64, seed=seed)
        flat, unravel = ravel_pytree(params)
        rng = np.random.default_rng(seed + 1)
        names, leaves = _leaf_names(params), jax.tree.leaves(params)
        picks, start = {}, 0
        for name, leaf in zip(names, leaves):
            k = min(samples, leaf.size)
            picks[name] = np.sort(rng.choice(leaf.size, k, replace=False))
            picks[name] = (picks[name], start + picks[name])
            start += leaf.size
        idx = np.concatenate([p[1] for p in picks.values()])
        theta = np.asarray(flat)
        h = FD_STEP * np.maximum(1.0, np.abs(theta[idx]))
        bumps = np.zeros((len(idx), flat.size))
        bumps[np.arange(len(idx)), idx] = h

        @jax.jit
        def differences(flat, bumps):
            f = jax.vmap(lambda th: spec.loss(unravel(th), batch))
            return (f(flat + bumps) - f(flat - bumps))

        d = np.asarray(differences(flat, jnp.asarray(bumps))) / (2.0 * h)
    out, pos = {}, 0
    for name, (local, _) in picks.items():
        out[name] = (local, d[pos:pos + len(local)])
        pos += len(local)
    return out


def check_gradients(spec: ModelSpec, impl: str = "reference", dtype: str = "float64", size: Size = Size(), *,
                    seed: int = 0, fd: bool = False, fd_samples: int = FD_SAMPLES) -> GradCheck:
    """Compare implementation ``impl`` of ``spec`` with the oracles on ``spec.instance(size)``.

    Every matmul runs at full precision (``jax.default_matmul_precision("highest")``): on NVIDIA
    GPUs from Ampere on JAX's default rounds float32 operands to TensorFloat-32, and two correct
    formulas then differ by ~1e-3, which says nothing about the algebra checked here.
    """
    implementation = spec.impls[impl]
    tol = TOLERANCES[dtype]
    with jax.enable_x64(dtype == "float64"), jax.default_matmul_precision("highest"):
        params, batch = spec.instance(size, dtype=DTYPES[dtype], seed=seed)
        shapes = spec.intermediate_shapes(params, batch)

        def compute(params, batch):  # one compiled program: faster than op by op, even this small
            loss_m, grads_m = implementation.loss_and_grad(params, batch)
            _, _, named_m = implementation.loss_grad_and_intermediates(params, batch)
            loss_r, grads_r = jax.value_and_grad(spec.loss)(params, batch)
            eps = spec.offsets_at_zero(params, batch, DTYPES[dtype])
            named_r = jax.grad(spec.offset_loss, argnums=2)(params, batch, eps)
            return loss_m, grads_m, named_m, loss_r, grads_r, named_r

        loss_m, grads_m, named_m, loss_r, grads_r, named_r = jax.device_get(jax.jit(compute)(params, batch))
    fd_rows = _fd_sample(spec, size, seed, fd_samples) if fd else {}

    rows, values = [], {}
    diff = abs(float(loss_m) - float(loss_r))
    rows.append(Row("loss", "loss", (), diff, diff / max(abs(float(loss_r)), TINY), tol))
    for name in shapes:  # the backward's order
        ref = np.asarray(named_r[name])
        if name not in named_m:
            rows.append(Row("intermediate", name, ref.shape, float("inf"), float("inf"), tol,
                            note="the manual backward does not return it"))
            continue
        man = np.asarray(named_m[name])
        if name in spec.per_step:
            if man.shape != ref.shape:
                rows.append(Row("intermediate", name, ref.shape[1:], float("inf"), float("inf"), tol,
                                note=f"shape {man.shape}, expected {ref.shape}"))
                continue
            for t in range(ref.shape[0] - 1, -1, -1):  # t = T first: the order BPTT runs
                rows.append(Row("intermediate", name, ref.shape[1:], *_errors(man[t], ref[t]), tol, step=t + 1,
                                ref_norm=float(np.linalg.norm(ref[t])), note=nonfinite_note(man[t])))
                values[rows[-1].label] = (man[t], ref[t])
        else:
            note = nonfinite_note(man) if man.shape == ref.shape else f"shape {man.shape}, expected {ref.shape}"
            rows.append(Row("intermediate", name, ref.shape, *_errors(man, ref), tol, note=note,
                            ref_norm=float(np.linalg.norm(ref))))
            values[name] = (man, ref)
    # per-step rows sorted so that each step's tensors come together, t = T first
    inter = [r for r in rows if r.kind == "intermediate"]
    head = [r for r in inter if r.step is None]
    steps = sorted((r for r in inter if r.step is not None),
                   key=lambda r: (-r.step, spec.per_step.index(r.name)))
    rows = rows[:1] + head + steps

    names = _leaf_names(grads_r)
    leaves_r, leaves_m = jax.tree.leaves(grads_r), jax.tree.leaves(grads_m)
    if jax.tree.structure(grads_r) != jax.tree.structure(grads_m):
        rows.append(Row("parameter", "<pytree>", (), float("inf"), float("inf"), tol,
                        note=f"manual gradient pytree {jax.tree.structure(grads_m)} differs from jax.grad's"))
        return GradCheck(spec.name, impl, dtype, size, tol, tuple(rows), values)
    if spec.rows_of:  # the leaf compared row by row: every row a word of the batch uses
        leaf, symbol = spec.rows_of
        k = names.index(leaf)
        for v in sorted(set(np.asarray(batch[0]).ravel().tolist())):
            man_v, ref_v = np.asarray(leaves_m[k])[v], np.asarray(leaves_r[k])[v]
            rows.append(Row("intermediate", f"{symbol}[{v}]", tuple(leaves_r[k].shape[1:]),
                            *_errors(man_v, ref_v), tol, note=nonfinite_note(man_v)))
            values[rows[-1].label] = (man_v, ref_v)
    fd_tol = max(FD_TOLERANCE, tol)
    # a leaf whose gradient is exactly zero (W_h at T = 1: h_0 = 0) is measured against 1e-3 of
    # the largest gradient of any leaf, not against 0: differences of a constant loss are noise
    floor = 1e-3 * max((float(np.max(np.abs(np.asarray(g)), initial=0.0)) for g in leaves_r), default=0.0)
    for name, ref, man in zip(names, leaves_r, leaves_m):
        ref, man = np.asarray(ref), np.asarray(man)
        fd_err = None
        if name in fd_rows and man.shape == ref.shape:
            local, d = fd_rows[name]
            scale = max(float(np.max(np.abs(ref), initial=0.0)), floor, TINY)
            fd_err = float(np.max(np.abs(man.ravel()[local] - d), initial=0.0)) / scale
            if not np.all(np.isfinite(man)):
                fd_err = float("inf")
        note = nonfinite_note(man) if man.shape == ref.shape else f"shape {man.shape}, expected {ref.shape}"
        rows.append(Row("parameter", name, ref.shape, *_errors(man, ref), tol,
                        fd_err=fd_err, fd_tol=fd_tol if fd_err is not None else None, note=note))
        values[name] = (man, ref)
    return GradCheck(spec.name, impl, dtype, size, tol, tuple(rows), values)
