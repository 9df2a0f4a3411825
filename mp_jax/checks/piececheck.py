"""A backward piece checked alone, and the diagnosis of a failed check.

:func:`check_piece` calls a function in place of a piece (:mod:`mp_jax.checks.pieces`) on its
piece-alone instance: random arguments and upstream gradients at sizes where no two of N, D, H,
C, T coincide. It checks the returned value against the piece's contract first
(:mod:`mp_jax.checks.contract`: one line naming the field that does not fit), then compares every
returned tensor with its oracle, row by row in the order the piece computes them (a tensor stacked
over time row per step, t = T first; the embedding's gradient row per word), with the error of
:mod:`mp_jax.checks.gradtable` and its tolerances.

:func:`diagnose_piece` and :func:`diagnose_model` name the likely mistake behind the first wrong
row (:mod:`mp_jax.checks.diagnosis`), comparing it with what each bug of the zoo that replaces the
same piece produces at the same instance.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from mp_jax.checks import bugzoo, contract, diagnosis, gradtable, pieces
from mp_jax.checks.gradtable import Row
from mp_jax.checks.pieces import Alone, Piece

BLOCKS = {"lstm": "ifgo", "gru": "zrn"}


@dataclasses.dataclass(frozen=True)
class PieceCheck:
    piece: Piece
    model: str
    dtype: str
    case: str
    tol: float
    alone: Alone
    rows: tuple
    values: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # label -> (got, want)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows)

    def first_wrong(self) -> Row | None:
        return next((r for r in self.rows if not r.passed), None)

    def first_nonfinite(self) -> Row | None:
        return next((r for r in self.rows if r.note in ("NaN", "Inf")), None)


def _rows(alone: Alone, named: dict, tol: float):
    """(rows, values) in the piece's order; per-step tensors step-major from t = T."""
    rows, values = [], {}

    def add(name, got, want, step=None):
        abs_err, rel_err = gradtable._errors(got, want)
        row = Row("output", name, tuple(np.shape(want)), abs_err, rel_err, tol, step=step,
                  note=gradtable.nonfinite_note(got), ref_norm=float(np.linalg.norm(want)))
        rows.append(row)
        values[row.label] = (np.asarray(got, np.float64), np.asarray(want, np.float64))

    steps_done = False
    for name in alone.order:
        if name in alone.per_step:
            if not steps_done:
                steps = alone.oracle[alone.per_step[0]].shape[0]
                for t in range(steps - 1, -1, -1):
                    for step_name in alone.per_step:
                        add(step_name, named[step_name][t], alone.oracle[step_name][t], step=t + 1)
                steps_done = True
        elif name in alone.rows:
            for v in range(alone.oracle[name].shape[0]):
                add(f"{name}[{v}]", named[name][v], alone.oracle[name][v])
        else:
            add(name, named[name], alone.oracle[name])
    return tuple(rows), values


def call_checked(piece: Piece, function: Callable, reference: Callable, args: tuple, dtype: str) -> dict:
    """{returned name: float64 array} of ``function(*args)``, after the contract check against
    what ``reference`` (the package's piece) returns for the same arguments. Exceptions raised by
    ``function`` propagate; a value that does not fit raises ContractError."""
    def checked():  # traced once: one compiled program is faster than op by op, even this small
        got = function(*args)
        contract.check(got, jax.eval_shape(lambda: reference(*args)), piece.returns)
        return contract.named_arrays(got, piece.returns)

    with jax.enable_x64(dtype == "float64"), jax.default_matmul_precision("highest"):
        named = jax.jit(checked)()
        return {k: np.asarray(v, np.float64) for k, v in named.items()}


def check_piece(piece: Piece, function: Callable, reference: Callable, *, model: str | None = None,
                dtype: str = "float64", case: str = "", seed: int = 0) -> PieceCheck:
    """``function`` in place of ``piece`` on its piece-alone instance, every returned tensor
    against its oracle. ``reference`` is the package's own piece (for the contract)."""
    alone = piece.alone(model, dtype, case if case in piece.cases else "", seed)
    tol = gradtable.TOLERANCES[dtype]
    named = call_checked(piece, function, reference, alone.args, dtype)
    rows, values = _rows(alone, named, tol)
    return PieceCheck(piece, model or piece.model, dtype, case, tol, alone, rows, values)


_ZOO_ALONE: dict = {}  # {(bug, instance, dtype): what the bug returns on a piece-alone instance}


def _same_piece_bugs(module, attribute: str) -> list:
    return [b for b in bugzoo.BUGS.values() if b.module is module and b.attribute == attribute]


def _at(named: dict, row: Row, alone: Alone):
    """The value of ``row`` in a named result of the piece."""
    base = row.name.split("[")[0]
    if base not in named:
        return None
    value = named[base]
    if row.step is not None:
        return value[row.step - 1]
    if base in alone.rows:
        return value[int(row.name.split("[")[1].rstrip("]"))]
    return value


def diagnose_piece(check: PieceCheck, reference: Callable) -> diagnosis.Diagnosis | None:
    """The likely mistake behind the first wrong row of a piece-alone check (None if it passed)."""
    row = check.first_wrong()
    if row is None:
        return None
    got, want = check.values[row.label]
    zoo = {}
    for bug in _same_piece_bugs(check.piece.module, check.piece.attribute):
        key = (bug.name, id(check.alone), check.dtype)  # an instance is built once per process: so is this
        if key not in _ZOO_ALONE:
            try:
                _ZOO_ALONE[key] = call_checked(check.piece, bug.replacement, reference, check.alone.args, check.dtype)
            except Exception:  # a bug written for another cell or contract: it cannot be compared here
                _ZOO_ALONE[key] = None
        if _ZOO_ALONE[key] is not None:
            zoo[bug] = _at(_ZOO_ALONE[key], row, check.alone)
    base = row.name.split("[")[0]
    return diagnosis.diagnose(got, want, tensor=row.label, tol=check.tol, dtype=check.dtype,
                              counts=check.alone.counts, factors=check.alone.factors.get(base),
                              regions=check.alone.regions.get(base),
                              zoo=zoo, blocks=check.alone.blocks)


def model_counts(model: str, params, batch) -> dict:
    """The sizes of a registry model's instance that a wrong gradient may be scaled by."""
    n = int(np.shape(jax.tree.leaves(batch)[0])[0])
    if model in BLOCKS or model == "rnn":
        x = batch[0]
        return {"N": n, "T": int(x.shape[1]), "D": int(x.shape[2]), "H": int(params.cell.w_h.shape[0]),
                "M": int(params.w_mlp.shape[1]), "C": int(params.w_out.shape[1])}
    if model == "lm":
        return {"N": n, "V": int(params.emb.shape[0]), "D": int(params.emb.shape[1]), "P": int(params.w_hid.shape[1])}
    if model.startswith("ae"):
        return {"N": n, "L_in": int(params.w_enc.shape[0]), "L_hid": int(params.w_enc.shape[1])}
    if model == "mlp":
        return {"N": n, "D": int(params.w_in.shape[0]), "H": int(params.w_in.shape[1]), "C": int(params.w_out.shape[1])}
    if model == "logistic":
        return {"N": n, "F": int(params.w.shape[0]), "C": int(params.w.shape[1])}
    return {"N": n}


def diagnose_model(check: gradtable.GradCheck, spec, *, zoo: dict | None = None) -> diagnosis.Diagnosis | None:
    """The likely mistake behind the first wrong row of a model's check (None if it passed);
    ``zoo``: {Bug: that bug's manual tensor at the same row and instance}."""
    row = check.first_wrong()
    if row is None or row.label not in check.values:
        return None
    got, want = check.values[row.label]
    with jax.enable_x64(True):
        params, batch = spec.instance(check.size, dtype=gradtable.DTYPES["float64"])
    return diagnosis.diagnose(got, want, tensor=row.label, tol=check.tol, dtype=check.dtype,
                              counts=model_counts(check.model, params, batch), zoo=zoo,
                              blocks=BLOCKS.get(check.model, ""))


def model_zoo(check: gradtable.GradCheck, spec, bug, *, seed: int = 0) -> dict:
    """{Bug: its manual tensor at ``check``'s first wrong row} for every bug that replaces the same
    piece as ``bug`` (``check`` ran with ``bug`` swapped in: its own values are reused)."""
    row = check.first_wrong()
    out = {}
    for other in _same_piece_bugs(bug.module, bug.attribute):
        if other.impl != check.impl or other.model != check.model:
            continue
        if other is bug:
            out[other] = check.values.get(row.label, (None,))[0]
            continue
        try:
            with bugzoo.applied(other):
                out[other] = _manual_value(spec, check, row, seed)
        except Exception:  # written for another model: no comparison
            continue
    return out


def _manual_value(spec, check: gradtable.GradCheck, row: Row, seed: int):
    """The manual backward's tensor at ``row`` on ``check``'s instance (no oracle computed)."""
    dtype = gradtable.DTYPES[check.dtype]
    with jax.enable_x64(check.dtype == "float64"), jax.default_matmul_precision("highest"):
        params, batch = spec.instance(check.size, dtype=dtype, seed=seed)
        _, grads, named = jax.device_get(jax.jit(spec.impls[check.impl].loss_grad_and_intermediates)(params, batch))
    base = row.name.split("[")[0]
    if row.kind == "parameter":
        leaves = dict(zip(gradtable._leaf_names(grads), jax.tree.leaves(grads)))
        return np.asarray(leaves[row.name])
    if row.step is not None:
        return np.asarray(named[row.name])[row.step - 1]
    if base in named:
        return np.asarray(named[base])
    leaf, symbol = spec.rows_of  # a row of a leaf compared row by row (dR[v])
    leaves = dict(zip(gradtable._leaf_names(grads), jax.tree.leaves(grads)))
    return np.asarray(leaves[leaf])[int(row.name.split("[")[1].rstrip("]"))]


def bug_alone(bug, model: str, *, dtype: str = "float64", case: str = "", seed: int = 0) -> PieceCheck | None:
    """The piece-alone check of a zoo bug whose piece an exercise covers (None otherwise): what a
    learner who made that mistake sees first. Call it while the package's own piece is in place."""
    piece = pieces.get(f"{bug.module.__name__}:{bug.attribute}")
    if piece is None or not piece.checks_on(model):
        return None
    return check_piece(piece, bug.replacement, getattr(bug.module, bug.attribute), model=model, dtype=dtype,
                       case=case, seed=seed)


def diagnose_bug(bug, spec, check: gradtable.GradCheck, alone: PieceCheck | None, *, seed: int = 0):
    """(first wrong row, its diagnosis, the check it belongs to) for a zoo bug: from the piece-alone
    check when it failed, as for a learner, else from the model's check."""
    if alone is not None and not alone.ok:
        return alone.first_wrong(), diagnose_piece(alone, getattr(bug.module, bug.attribute)), alone
    wrong = check.first_wrong()
    if wrong is None:
        return None, None, check
    return wrong, diagnose_model(check, spec, zoo=model_zoo(check, spec, bug, seed=seed)), check
