"""The labelled equations of ``docs/``, read from the documents themselves.

Every display equation of ``docs/*.md`` is one line ``$$ ... \\tag{LABEL} $$`` (docs/README.md).
:func:`equation` finds the line that carries a label and returns it byte for byte, with the
document, its line number and the section it stands in, so that a hint quotes the derivation
the learner reads rather than a copy that could drift from it.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

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
def _index(docs: Path) -> dict:
    """{label: Equation} of every tagged display line of ``docs/*.md``."""
    out = {}
    for path in sorted(docs.glob("*.md")):
        headings: list[tuple[int, str]] = []
        seen: dict = {}
        anchor = ""
        fenced = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            m = _HEADING.match(line)
            if m and not fenced:
                level = len(m[1])
                headings = [h for h in headings if h[0] < level] + [(level, m[2])]
                anchor = _anchor(m[2], seen)
                continue
            stripped = line.strip()
            tag = re.search(r"\\tag\{([^{}]+)\}\s*\$\$$", stripped)
            if stripped.startswith("$$") and tag:
                section = " › ".join(title for level, title in headings if level > 1)
                out[tag[1]] = Equation(tag[1], line, path, number, section, anchor if len(headings) > 1 else "")
    return out


def equation(label: str, docs: Path = DOCS) -> Equation:
    """The display equation tagged ``label`` in ``docs/*.md``; EquationNotFound if none is."""
    if not docs.is_dir():
        raise EquationNotFound(f"no docs/ folder at {docs}: the derivations ship with the repository, not the package")
    try:
        return _index(docs)[label]
    except KeyError:
        raise EquationNotFound(f"no equation of docs/ is tagged {label}") from None


def labels(docs: Path = DOCS) -> set:
    """Every label tagged in ``docs/*.md``."""
    return set(_index(docs)) if docs.is_dir() else set()
