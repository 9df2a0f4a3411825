"""Wording shared by the findings of every question: numbers, comparisons, labels."""
from __future__ import annotations

import math


def _num(x, nd: int = 3) -> str:
    """A number in prose: 3 significant digits (``nd``), no exponent for ordinary sizes."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "?"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{max(nd - 1, 1)}e}"
    return f"{x:.{nd}g}"


def _pct(x) -> str:
    return f"{100 * x:.1f} %"


def compare(a: float, b: float, more: str = "higher", less: str = "lower", rel: float = 1e-9) -> str:
    """The word for ``a`` against ``b``: ``more``, ``less`` or "the same as"."""
    if abs(a - b) <= rel * max(abs(a), abs(b), 1e-300):
        return "the same as"
    return more if a > b else less


def times(ratio: float) -> str:
    """ "6.2 times", "about the same as" or "0.3 times" for a ratio."""
    return f"{ratio:.1f} times" if ratio >= 0.1 else f"{ratio:.2g} times"


def label(name: str) -> str:
    return "the logistic baseline" if name == "baseline" else name.upper()


def cap(text: str) -> str:
    """``text`` with its first letter upper-case (a label opening a sentence)."""
    return text[:1].upper() + text[1:]
