"""The labelled equations of ``docs/``, read from the documents themselves.

Every display equation of ``docs/*.md`` is one line ``$$ ... \\tag{LABEL} $$`` (docs/README.md).
:func:`equation` finds the line that carries a label and returns it byte for byte, with the
document, its line number and the section it stands in, so that a hint quotes the derivation
the learner reads rather than a copy that could drift from it. The lines are read by
:mod:`mp_jax.docs_equations`, as the report quotes them; this module adds the section.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

from mp_jax import docs_equations

DOCS = Path(__file__).resolve().parents[2] / "docs"
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


@dataclasses.dataclass(frozen=True)
class Equation:
    label: str  # "LSTM7"
    text: str  # the display line as docs/ has it, "$$ ... \tag{LSTM7} $$"
    path: Path  # the document
    line: int  # 1-based line number of the display line
    section: str  # "LSTM › Backward, one step": the headings above it, outermost first (no page title)
    anchor: str  # the GitHub anchor of the innermost heading, "backward-one-step-1"

    @property
    def where(self) -> str:
        """'docs/recurrent.md, section "LSTM › Backward, one step"'."""
        return f'docs/{self.path.name}, section "{self.section}"' if self.section else f"docs/{self.path.name}"

    @property
    def link(self) -> str:
        return f"docs/{self.path.name}#{self.anchor}" if self.anchor else f"docs/{self.path.name}"


class EquationNotFound(LookupError):
    pass


def _anchor(title: str, seen: dict) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens, and
    ``-1``, ``-2`` … after a repeated one."""
    base = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
    k = seen.get(base, 0)
    seen[base] = k + 1
    return base if k == 0 else f"{base}-{k}"


@functools.lru_cache(maxsize=None)
def _headings(path: Path) -> tuple:
    """((line number, level, title, anchor), …) of every heading of a page, outside fenced code."""
    out, seen, fenced = [], {}, False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = _HEADING.match(line)
        if m and not fenced:
            out.append((number, len(m[1]), m[2], _anchor(m[2], seen)))
    return tuple(out)


def _located(found: docs_equations.Equation, docs: Path) -> Equation:
    """The equation :mod:`mp_jax.docs_equations` found, with the section it stands in."""
    path = docs / found.page
    stack: list = []  # the headings above the line, outermost first
    for number, level, title, anchor in _headings(path):
        if number > found.line:
            break
        stack = [h for h in stack if h[0] < level] + [(level, title, anchor)]
    section = " › ".join(title for level, title, _ in stack if level > 1)
    return Equation(found.label, found.text, path, found.line, section, stack[-1][2] if len(stack) > 1 else "")


def equation(label: str, docs: Path = DOCS) -> Equation:
    """The display equation tagged ``label`` in ``docs/*.md``; EquationNotFound if none is."""
    if not docs.is_dir():
        raise EquationNotFound(f"no docs/ folder at {docs}: the derivations ship with the repository, not the package")
    try:
        return _located(docs_equations.equation(label, docs), docs)
    except docs_equations.DocsError:
        raise EquationNotFound(f"no equation of docs/ is tagged {label}") from None


def labels(docs: Path = DOCS) -> set:
    """Every label tagged in ``docs/*.md``."""
    return set(docs_equations.equations(docs)) if docs.is_dir() else set()
