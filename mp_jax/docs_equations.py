"""The labelled equations of ``docs/``, read from the pages themselves.

Every equation of the derivations lives once, in ``docs/*.md``, as one display line
``$$ ... \\tag{LABEL} $$`` (docs/README.md). Whatever else shows an equation (REPORT.md,
the grader's hints) quotes that line by its label through this module, so a quotation is the
source, byte for byte, and cannot drift from it:

    >>> from mp_jax import docs_equations
    >>> docs_equations.quote("GRU3")
    '$$ a_n = x_t W_x^{n} + (r \\\\odot h_{t-1}) U_n + b^{n} \\\\tag{GRU3} $$'

:func:`equations` parses every page (fenced code blocks skipped) into :class:`Equation`
records; :func:`quote` returns one label's line; :func:`labels` expands ``"AE10-AE17"`` into
the labels that exist; :func:`unquoted` lists the display lines of a text that are not
exactly an equation of ``docs/`` (the check that a quoting document holds no equation of its
own). The pages are found beside the package (``<repository>/docs``, an editable install or
a checkout); another folder can be given.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: A label: a prefix of capitals and a number without leading zero, e.g. "LSTM7".
LABEL = re.compile(r"([A-Z]+)([1-9]\d*)")
_TAG = re.compile(r"\\tag\{([^{}]*)\}")
_RANGE = re.compile(r"^\s*([A-Z]+)([1-9]\d*)\s*[-\u2013]\s*(?:([A-Z]+))?([1-9]\d*)\s*$")


class Equation(NamedTuple):
    """One labelled display equation of ``docs/``."""

    label: str  # "GRU3"
    text: str  # the whole display line, "$$ ... \tag{GRU3} $$", as the page has it
    page: str  # "recurrent.md"
    line: int  # its line number in the page, from 1

    @property
    def body(self) -> str:
        """The mathematics alone: the line without ``$$`` and without its ``\\tag``."""
        return _TAG.sub("", self.text.strip()[2:-2]).strip()


class DocsError(LookupError):
    """A label that no page tags, a label tagged twice, or no ``docs/`` folder."""


def _display_lines(path: Path):
    """(line number, text) of every display line (``$$ ... $$``) of a Markdown page outside
    fenced code blocks."""
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("$$"):
            yield number, line.rstrip()


@functools.lru_cache(maxsize=8)
def _parse(folder: Path) -> tuple:
    if not folder.is_dir():
        raise DocsError(f"{folder}: no such folder; the equations are read from the repository's docs/ "
                        f"(install with pip install -e . from a checkout)")
    found, seen = [], {}
    for path in sorted(folder.glob("*.md")):
        for number, line in _display_lines(path):
            for label in _TAG.findall(line):
                if label in seen:
                    raise DocsError(f"docs/{path.name}:{number}: \\tag{{{label}}} is also tagged at {seen[label]}; "
                                    f"a label is tagged once")
                seen[label] = f"docs/{path.name}:{number}"
                found.append(Equation(label, line, path.name, number))
    return tuple(found)


def equations(folder: Optional[Path] = None) -> dict[str, Equation]:
    """Every labelled equation of ``docs/`` (or ``folder``), by label, in page order."""
    return {e.label: e for e in _parse(Path(folder or DOCS).resolve())}


def equation(label: str, folder: Optional[Path] = None) -> Equation:
    """The :class:`Equation` tagged ``label``; :class:`DocsError` naming the label when none is."""
    found = equations(folder)
    if label not in found:
        same = ", ".join(k for k in found if _prefix(k) == _prefix(label)) or "none"
        raise DocsError(f"({label}): no equation of docs/ carries \\tag{{{label}}}; labels of that prefix: {same}")
    return found[label]


def quote(label: str, folder: Optional[Path] = None) -> str:
    """The display line of ``label``, exactly as ``docs/`` writes it (``$$ ... \\tag{label} $$``)."""
    return equation(label, folder).text


def _prefix(label: str) -> str:
    m = LABEL.fullmatch(label)
    return m.group(1) if m else label


def labels(*specs: str, folder: Optional[Path] = None) -> list[str]:
    """The labels that ``specs`` name, each a label (``"AE12"``) or a range of one prefix
    (``"AE10-AE17"``, ``"RNN1-5"``): every label of the range, each of which must exist."""
    out = []
    for spec in specs:
        m = _RANGE.match(spec)
        if m and m.group(3) not in (None, m.group(1)):
            raise DocsError(f"{spec!r}: a range runs within one prefix")
        names = ([f"{m.group(1)}{k}" for k in range(int(m.group(2)), int(m.group(4)) + 1)] if m else [spec.strip()])
        for name in names:
            equation(name, folder)  # raises for a label that does not exist
        out += names
    return out


def unquoted(text: str, folder: Optional[Path] = None) -> list[str]:
    """The display lines of ``text`` (a Markdown document that quotes ``docs/``) that are not,
    byte for byte, the line of the equation their ``\\tag`` names: an equation of its own, a
    changed copy, or a line without a tag. Empty when every display equation is a quotation."""
    found = equations(folder)
    bad = []
    for line in _markdown_display_lines(text):
        tags = _TAG.findall(line)
        if len(tags) != 1 or tags[0] not in found or found[tags[0]].text != line:
            bad.append(line)
    return bad


def quoted_labels(text: str) -> list[str]:
    """The labels of the display equations of ``text``, in order."""
    return [label for line in _markdown_display_lines(text) for label in _TAG.findall(line)]


def _markdown_display_lines(text: str) -> list[str]:
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and "$$" in line:
            out.append(line.rstrip())
    return out


def page_of(prefix: str, folder: Optional[Path] = None) -> Sequence[str]:
    """The pages that tag labels of ``prefix`` ("LSTM" -> ("recurrent.md",))."""
    return tuple(dict.fromkeys(e.page for e in equations(folder).values() if _prefix(e.label) == prefix))
