"""What a backward piece must return, checked field by field, in one line.

A learner's piece (an exercise) is swapped into a model whose later code takes its return value
apart: a wrong type, structure, shape or dtype would surface as a JAX error about a scan carry
or a pytree, far from the cause, or cut short. :func:`check` compares the value with what the
package's own piece returns for the same arguments (:func:`jax.eval_shape`, so nothing extra
runs) and raises :class:`ContractError` whose message is one line naming the returned field,
what was expected and what came: ``dh_prev: got [4, 4], expected [4, 8]``.

Fields are named by a template that mirrors the returned structure: a string names a value (an
array, a parameter tuple whose fields are then ``name.field``, or a dict whose entries are named
by their keys), a tuple of templates names a tuple, e.g. ``(("dh_prev", "dc_prev"), "cell",
"deltas")`` for the LSTM step. :func:`named_arrays` lists the arrays of a value that passed, by
those names.
"""
from __future__ import annotations

import unicodedata
from typing import Any, Mapping

import jax
import numpy as np

#: ASCII spellings of the docs/ symbols a dict key may use by mistake
_ASCII = {"delta": "δ", "d_": "δ_", "rho": "ρ", "sigma": "σ"}


class ContractError(Exception):
    """A returned value that does not fit the piece's contract; ``str()`` is one line."""


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def _shape(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def describe(x) -> str:
    """A short description of any value, for 'got …'."""
    if x is None:
        return "None"
    if _is_array(x):
        return f"an array {_shape(x.shape)} of {np.dtype(x.dtype).name}"
    if _is_namedtuple(x):
        return f"{type(x).__name__}({', '.join(type(x)._fields)})"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)}"
    if isinstance(x, Mapping):
        return f"a dict with keys {_keys(x)}"
    if isinstance(x, (bool, int, float, complex, np.generic)):
        return f"the number {x!r}"[:60]
    if isinstance(x, str):
        return f"the string {x[:30]!r}"
    return f"a {type(x).__name__}"


def _keys(d) -> str:
    try:
        keys = sorted(map(str, d))
    except Exception:  # an object that cannot list its keys
        return "{?}"
    return "{" + ", ".join(keys) + "}"


def _expected(want, template) -> str:
    if _is_namedtuple(want):
        module = type(want).__module__
        return f"{type(want).__name__}({', '.join(type(want)._fields)}) (from {module} import {type(want).__name__})"
    if isinstance(want, tuple):
        return f"a tuple of {len(want)}: {_template_text(template)}"
    if isinstance(want, Mapping):
        return f"a dict with keys {_keys(want)}"
    if want is None:
        return "None"
    return f"an array {_shape(want.shape)} of {np.dtype(want.dtype).name}"


def _template_text(template) -> str:
    if isinstance(template, tuple):
        return "(" + ", ".join(_template_text(t) for t in template) + ")"
    return str(template)


def _ascii_hint(missing: set, extra: set) -> str:
    """' (keys are the docs/ symbols: δ_o, not delta_o)' where an extra key spells a missing one."""
    pairs = []
    for key in sorted(map(str, extra)):
        spelled = key
        for ascii_, symbol in _ASCII.items():
            if spelled.startswith(ascii_):
                spelled = symbol + spelled[len(ascii_):]
        normal = unicodedata.normalize("NFKC", spelled)
        for want in missing:
            if normal == want or normal.replace("δ_", "δ") == want.replace("δ_", "δ"):
                pairs.append(f"{want}, not {key}")
    return f" (the keys are the symbols of docs/: {'; '.join(pairs)})" if pairs else ""


def check(got: Any, want: Any, template: Any, *, where: str = "the returned value") -> None:
    """Raise ContractError (one line) at the first field of ``got`` that does not fit ``want``
    (the package piece's return value or its :func:`jax.eval_shape`); return None if it fits."""
    if isinstance(template, tuple) and not _is_namedtuple(want):
        if not isinstance(want, tuple):  # the template names a tuple the piece does not return
            raise ContractError(f"{where}: the contract expects {_expected(want, template)}")
        if not isinstance(got, tuple) or _is_namedtuple(got):
            raise ContractError(f"{where}: got {describe(got)}, expected {_expected(want, template)}")
        if len(got) != len(want):
            raise ContractError(f"{where}: got a tuple of {len(got)}, expected a tuple of {len(want)}: "
                                f"{_template_text(template)}")
        for g, w, t in zip(got, want, template):
            check(g, w, t, where=_template_text(t))
        return
    name = str(template)
    if _is_namedtuple(want):
        if type(got) is not type(want):
            raise ContractError(f"{name}: got {describe(got)}, expected {_expected(want, template)}")
        for field, g, w in zip(type(want)._fields, got, want):
            check(g, w, f"{name}.{field}", where=f"{name}.{field}")
        return
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            raise ContractError(f"{name}: got {describe(got)}, expected {_expected(want, template)}")
        missing = set(want) - set(got)
        extra = set(got) - set(want)
        if missing or extra:
            parts = ([f"missing {', '.join(sorted(map(str, missing)))}"] if missing else []) + (
                [f"extra {', '.join(sorted(map(str, extra)))}"] if extra else [])
            raise ContractError(f"{name}: got keys {_keys(got)}, expected {_keys(want)} ({'; '.join(parts)})"
                                + _ascii_hint(missing, extra))
        for key in want:
            check(got[key], want[key], str(key), where=str(key))
        return
    if want is None:
        if got is not None:
            raise ContractError(f"{name}: got {describe(got)}, expected None")
        return
    if not _is_array(got):
        raise ContractError(f"{name}: got {describe(got)}, expected {_expected(want, template)}")
    if tuple(got.shape) != tuple(want.shape):
        hint = " (the transpose's shape)" if len(got.shape) == 2 and tuple(got.shape) == tuple(want.shape)[::-1] else ""
        raise ContractError(f"{name}: got {_shape(got.shape)}, expected {_shape(want.shape)}{hint}")
    if np.dtype(got.dtype) != np.dtype(want.dtype):
        g, w = np.dtype(got.dtype), np.dtype(want.dtype)
        hint = ""
        if g == np.float32 and w == np.float64:
            hint = " (a float32 value inside a float64 check: keep the dtype of the arguments)"
        elif not np.issubdtype(g, np.floating):
            hint = " (a gradient is a float array)"
        raise ContractError(f"{name}: got {g.name}, expected {w.name}{hint}")


def named_arrays(value: Any, template: Any) -> dict:
    """{name: array} of a value that passed :func:`check`, in the order of its fields."""
    out = {}
    if isinstance(template, tuple) and not _is_namedtuple(value):
        for v, t in zip(value, template):
            out.update(named_arrays(v, t))
        return out
    name = str(template)
    if _is_namedtuple(value):
        for field, v in zip(type(value)._fields, value):
            if v is not None:
                out[f"{name}.{field}"] = v
    elif isinstance(value, Mapping):
        out.update({str(k): v for k, v in value.items()})
    elif value is not None:
        out[name] = value
    return out
