"""Why a tensor is wrong: the mistake its value betrays, when the evidence supports one.

:func:`diagnose` compares the first wrong tensor of a check (the learner's value) with the right
one (the oracle's), and with what known mistakes produce at the same instance, each to the
check's own tolerance. The families it names (:data:`FAMILIES`):

* ``nonfinite``: the tensor holds NaN or Inf;
* ``precision``: off by less than 1e-6 relative in a float64 check: a float32 value inside a
  float64 computation, not algebra (an algebra mistake moves a tensor by far more);
* ``zoo``: equal to the tensor a bug of the zoo (:mod:`mp_jax.checks.bugzoo`) that replaces the
  same piece produces there; the bug's explanation comes with it;
* ``region``: wrong only where a piece says a known mistake shows (the sparsity term's units whose
  ρ̂ is near 1, where 1 − ρ̂ by subtraction cancels);
* ``zero`` (a path left out), ``negated``, ``transposed``;
* ``factor``: the right tensor without one factor its equation multiplies by (σ', tanh', a gate);
* ``count``: the right tensor times a count of the instance (N, T, C, H, …), divided by one, or
  divided by one count where the equation divides by another;
* ``constant``: the right tensor times any other constant;
* ``blocks``: for a fused weight or bias (the LSTM's i, f, g, o; the GRU's z, r, n), which gate
  blocks are wrong or swapped.

A zoo match is reported with the family its tensor also fits (a learner's tensor equal to a zoo
bug's is named with both). Otherwise no known mistake matches, and the diagnosis says so. Every
family but ``nonfinite`` and ``region`` has a bug of the zoo that stands for it
(:attr:`mp_jax.checks.bugzoo.Bug.family`).
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

FAMILIES = ("nonfinite", "precision", "zoo", "region", "zero", "negated", "transposed", "factor", "count",
            "constant", "blocks")
PRECISION = 1e-6  # below this relative error in float64 a wrong tensor is rounding, not algebra
TINY = 1e-300


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    family: str  # one of FAMILIES, or "" when no known mistake matches
    text: str  # what the mistake is, in one line
    bug: object = None  # the matching Bug of the zoo, if any
    also: str = ""  # for a zoo match: the family its tensor also fits, if any

    @property
    def found(self) -> bool:
        return bool(self.family)

    def lines(self, tensor: str = "") -> list[str]:
        """``likely mistake: …`` (and the zoo's explanation), or that no known mistake matches."""
        if not self.found:
            return [f"no known mistake matches{' ' + tensor if tensor else ''}: {self.text}"]
        out = [f"likely mistake: {self.text}"]
        if self.bug is not None:
            out.append(f"  why: {self.bug.why}")
        return out


def _max(a) -> float:
    return float(np.max(np.abs(a), initial=0.0))


def close(got, want, tol: float) -> bool:
    """Equal to the check's tolerance, relative to the larger of the two."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape or not (np.all(np.isfinite(got)) and np.all(np.isfinite(want))):
        return False
    return _max(got - want) <= tol * max(_max(got), _max(want), TINY)


def _count_name(k: float, counts: dict) -> str | None:
    """How k is built from the instance's counts: 'N', '1/N' or 'N/C' (a ratio's numerator is
    a count that the piece divides by: N or T), or None."""
    named = [(name, float(v)) for name, v in counts.items() if v > 1]
    candidates = [(name, v) for name, v in named] + [(f"1/{name}", 1.0 / v) for name, v in named]
    candidates += [(f"{a}/{b}", va / vb) for (a, va), (b, vb) in itertools.permutations(named, 2)
                   if a in ("N", "T") and va != vb]
    for name, value in candidates:
        if abs(k - value) <= 1e-6 * abs(value):
            return name
    return None


def _count_text(tensor: str, name: str, counts: dict) -> str:
    if "/" not in name:
        return f"{tensor} is {name} = {counts[name]} times the right one: a division by {name} left out"
    a, b = name.split("/")
    if a == "1":
        return f"{tensor} is the right one divided by {b} = {counts[b]}: a 1/{b} its equation does not have"
    return (f"{tensor} is divided by {b} = {counts[b]} where its equation divides by {a} = {counts[a]} "
            f"(the right one times {a}/{b})")


def _transforms(got, want, tol, tensor, counts, factors) -> Diagnosis | None:
    """The families that relate a finite wrong tensor to the right one (5-9)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return None
    if _max(want) > 0 and _max(got) <= tol * _max(want):
        return Diagnosis("zero", f"{tensor} is zero where the right one is not: a term or a path left out")
    if close(got, -want, tol):
        return Diagnosis("negated", f"{tensor} has the wrong sign: it is −1 times the right one")
    if got.ndim == 2 and got.shape[0] == got.shape[1] and close(got, want.T, tol):
        return Diagnosis("transposed", f"{tensor} is the transpose of the right one (square, so the shapes fit)")
    for what, factor in (factors or {}).items():
        factor = np.broadcast_to(np.asarray(factor, np.float64), want.shape)
        if close(got * factor, want, tol) and not close(factor, np.ones_like(factor), tol):
            return Diagnosis("factor", f"{tensor} lacks the factor {what} that its equation multiplies by")
    denominator = float(np.sum(want * want))
    if denominator > 0:
        k = float(np.sum(got * want)) / denominator
        if k != 0 and close(got, k * want, tol):
            sign = "negated and " if k < 0 else ""
            name = _count_name(abs(k), counts or {})
            if name is not None:
                return Diagnosis("count", sign + _count_text(tensor, name, counts))
            return Diagnosis("constant", f"{tensor} is {k:.4g} times the right one: {sign}off by a constant factor")
    return None


def _blocks(got, want, tol, tensor, order) -> Diagnosis | None:
    """Which gate blocks of a fused weight or bias are wrong (split along the last axis)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    k = len(order)
    if got.shape != want.shape or got.shape[-1] % k:
        return None
    gs, ws = np.split(got, k, axis=-1), np.split(want, k, axis=-1)
    scale = max(_max(want), TINY)
    wrong = [j for j in range(k) if _max(gs[j] - ws[j]) > tol * scale]
    if not wrong or len(wrong) == k and k > 1 and not _swapped(gs, ws, wrong, tol, scale):
        return None
    names = ", ".join(order[j] for j in wrong)
    right = ", ".join(order[j] for j in range(k) if j not in wrong)
    pairs = _swapped(gs, ws, wrong, tol, scale)
    if pairs:
        swaps = "; ".join(f"{order[a]} holds {order[b]}'s" for a, b in pairs)
        return Diagnosis("blocks", f"in {tensor} the gate blocks {names} are swapped ({swaps}; the fused order is "
                                   f"{', '.join(order)})")
    what = f"in {tensor} only the gate block{'s' if len(wrong) > 1 else ''} {names} "
    what += f"{'are' if len(wrong) > 1 else 'is'} wrong ({right} match; the fused order is {', '.join(order)})"
    if len(wrong) == 1:
        inner = _transforms(gs[wrong[0]], ws[wrong[0]], tol, f"block {order[wrong[0]]}", {}, {})
        if inner is not None:
            what += f": {inner.text}"
    return Diagnosis("blocks", what)


def _swapped(gs, ws, wrong, tol, scale) -> list:
    """[(a, b)] where wrong block a holds the right block b, every wrong block accounted for."""
    pairs = []
    for a in wrong:
        match = [b for b in wrong if b != a and np.max(np.abs(gs[a] - ws[b]), initial=0.0) <= tol * scale]
        if not match:
            return []
        pairs.append((a, match[0]))
    return pairs


def diagnose(got, want, *, tensor: str, tol: float, dtype: str, counts: dict | None = None,
             factors: dict | None = None, regions: dict | None = None,
             zoo: dict | None = None, blocks: str = "") -> Diagnosis:
    """The likely mistake behind ``got`` (the wrong tensor) where ``want`` is right.

    ``zoo``: {Bug: the tensor that bug produces at the same instance};
    ``regions``: {where: mask}, a mistake that shows only where the mask holds (the wrong entries
    all lie there); ``factors``: {what: F} of the tensor's equation; ``blocks``: the gate order if
    ``tensor`` is a fused weight or bias ("ifgo", "zrn"), else "".
    """
    got_a, want_a = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if not np.all(np.isfinite(got_a)):
        kind = "NaN" if np.any(np.isnan(got_a)) else "Inf"
        return Diagnosis("nonfinite", f"{tensor} holds {kind}: an overflow, a log or a division at 0, or 0 · ∞ "
                                      "in a value it is computed from")
    rel = _max(got_a - want_a) / max(_max(want_a), TINY) if got_a.shape == want_a.shape else np.inf
    if dtype == "float64" and rel <= PRECISION:
        family = Diagnosis("precision", f"{tensor} is off by {rel:.1e} relative, which only a float64 check sees: it "
                                        "looks like precision (a float32 value inside a float64 check), not algebra")
    else:
        family = _transforms(got_a, want_a, tol, tensor, counts, factors)
    if family is None and blocks and tensor.split(".")[-1] in ("w_x", "w_h", "b"):
        family = _blocks(got_a, want_a, tol, tensor, blocks)
    for bug, value in (zoo or {}).items():
        if value is not None and close(got_a, value, tol):
            text = f"{bug.summary} (the zoo's {bug.name})"
            if family is not None:
                text = f"{family.text}; {text}"
            return Diagnosis("zoo", text, bug, family.family if family is not None else "")
    if got_a.shape == want_a.shape:
        wrong = np.abs(got_a - want_a) > tol * max(_max(want_a), TINY)
        for where, mask in (regions or {}).items():
            if wrong.any() and not (wrong & ~np.asarray(mask, bool)).any():
                return Diagnosis("region", f"{tensor} is wrong only {where}")
    if family is not None:
        return family
    return Diagnosis("", f"rel. err {rel:.2e}; compare {tensor} with its equation (--hint)")
