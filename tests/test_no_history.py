"""The project's text describes the software as it is, not the history of its making.

Every text file git knows of (``git ls-files``: tracked, plus untracked files that are not
ignored, i.e. what the next commit can hold; files deleted from the working tree are
skipped; this file is skipped, its patterns would match themselves) is read, and each hit
is reported as ``path:line: rule: text``. What is read:

* Markdown, LICENSE and other non-Python text files (``.md``, ``.txt``, ``.toml``, ``.cfg``,
  ``.ini``, ``.yml``, ``.yaml``, ``.sh``, dot-files): every line, code blocks included (a
  command with a scratch path in a Markdown code block is still a scratch path);
* Python: only the prose, i.e. comments (the ``tokenize`` module's COMMENT tokens) and
  docstrings and other bare string statements (``ast``), so that code such as
  ``for i in range(n)`` or a ``tmp_path`` fixture is never read as prose; the scratch-path
  rule alone also reads the code, since a hard-coded ``/tmp/...`` is a scratch path
  wherever it sits.

Rules (:data:`RULES`):

* ``session`` followed by a number ("session 8", "Session 10's"), or the word ``sessions``;
* ``issue`` followed by a number ("issue 7", "issue #8"), or ``#<digits>`` as a reference
  (a hex colour such as ``#1f77b4`` does not match: its digits run into letters);
* first person: the pronoun ``I`` before a lower-case word or in ``I'm``, ``I've``, ``I'd``,
  ``I'll`` (case-sensitive, and not before "of", "and", "is" and the like, so that a
  matrix ``I`` in ``I + A`` or "Part I of" is not read as a pronoun); ``we``, ``our``,
  ``ours``, ``us``, ``my``, ``me``, ``mine`` as words, not followed by ``=``, ``[`` or ``(``
  (the course's weight vector ``We = [W1 W2 b1 b2]`` is a symbol), nor inside inline code
  (``me`` as a variable name); all-capitals ``US`` is an abbreviation, and ``µs`` is not
  the word ``us``;
* a calendar date, ``YYYY-MM-DD`` with a real month and day (a date of work);
* a scratch path, ``/tmp/`` or ``/work/``.

Allowed (:data:`ALLOWED`), each with its reason, as (path, exact text on the line):

* ``data/README.md``: ``matplotlib PR #1599`` cites the pull request of *matplotlib* (not
  of this project) that states the licence of its bundled photograph: provenance of a
  data source, which a licence statement must keep.

Dates: one kind is allowed, the date a stated number was measured, written "measured on
YYYY-MM-DD" (:data:`MEASURED`): a time or a measured effect is only honest with the day and
the machine it was measured on (README's times; the block of docs/recipes.md that
``python -m experiments.recipe_effect`` writes), which is provenance of the number, not a
history of the work. No other date is allowed. The LICENSE's copyright line carries a year,
not a date, and the rule does not match a year; the data's provenance in ``data/README.md`` names package
versions and publication years, not ISO dates. A data release's ISO date, should one be
needed there, belongs in this allow-list with its reason, not in a looser pattern.
"""
from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve().relative_to(REPO).as_posix()

# words that follow a symbol or numeral I ("I of", "Part I and", "I is the identity"), never the pronoun
_NOT_AFTER_PRONOUN = "(?:of|and|or|in|on|is|are|to|from|with|for|at|as|the|a|an|by)"
# inline code (``x``, `x`): identifiers, not prose, for the first-person rule
CODE_SPAN = re.compile(r"``[^`]*``|`[^`]*`")

RULES = {
    "session": re.compile(r"\bsession\s*#?\d+|\bsessions\b", re.IGNORECASE),
    "issue": re.compile(r"\bissues?\s*#?\d+|(?<![\w&/#])#\d+\b", re.IGNORECASE),
    "first person": re.compile(r"(?<![\w'’.-])I(?:['’](?:m|ve|d|ll)\b|\s+(?!" + _NOT_AFTER_PRONOUN + r"\b)[a-z])"
                               r"|\b(?:[Ww]e|[Oo]urs?|[Uu]s|[Mm]y|[Mm]e|[Mm]ine)\b(?!\s*[=\[(])"),
    "date": re.compile(r"\b(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b"),
    "scratch path": re.compile(r"/tmp/|/work/"),
}
CODE_RULES = ("scratch path",)  # also read in Python code, not only in its prose

#: The one date allowed: the day a stated number was measured (module docstring).
MEASURED = re.compile(r"\b[Mm]easured on (?:19|20)\d\d-\d\d-\d\d\b")

ALLOWED = {
    ("data/README.md", "matplotlib PR #1599"),
}

PROSE_SUFFIXES = {".md", ".txt", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".sh", ".rst", ""}


def tracked_files(repo: Path = REPO) -> list:
    """Paths (relative, posix) of the files git knows of: tracked, and untracked but not
    ignored; skips those missing from the working tree."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=repo, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"git ls-files failed in {repo} ({e}): not a git checkout, nothing to list")
    names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
    return [n for n in names if (repo / n).is_file()]


def read_text(path: Path):
    """The file's text, or None for a binary file (NUL bytes, or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def python_prose(source: str) -> list:
    """(line number, text) of every comment and every docstring / bare string statement line."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out.append((tok.start[0], tok.string.lstrip("#")))
    except (tokenize.TokenError, SyntaxError):
        pass
    lines = source.splitlines()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return out + list(enumerate(lines, 1))  # unparsable: read it all
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for n in range(node.lineno, node.end_lineno + 1):
                out.append((n, lines[n - 1]))
    return out


def hits_in_text(path: str, text: str) -> list:
    """``path:line: rule: text`` for every rule that matches (allow-list applied)."""
    lines = text.splitlines()
    if path.endswith(".py"):
        checks = [(n, t, RULES) for n, t in python_prose(text)]
        checks += [(n, t, {k: RULES[k] for k in CODE_RULES}) for n, t in enumerate(lines, 1)]
    elif Path(path).suffix in PROSE_SUFFIXES or Path(path).name.startswith("."):
        checks = [(n, t, RULES) for n, t in enumerate(lines, 1)]
    else:
        checks = []
    found = {}
    for n, t, rules in checks:
        if any(p == path and allowed in lines[n - 1] for p, allowed in ALLOWED):
            continue
        for rule, pattern in rules.items():
            if rule == "date":
                t = MEASURED.sub(" ", t)
            if pattern.search(CODE_SPAN.sub(" ", t) if rule == "first person" else t):
                found[(n, rule)] = f"{path}:{n}: {rule}: {lines[n - 1].strip()[:160]}"
    return [found[k] for k in sorted(found)]


def test_no_development_history_in_project_text():
    hits = []
    for name in tracked_files():
        if name == SELF:
            continue
        text = read_text(REPO / name)
        if text is not None:
            hits += hits_in_text(name, text)
    assert not hits, (f"{len(hits)} line(s) tell the history of the work instead of describing the software "
                      "(remove or rewrite them; a legitimate use goes in ALLOWED with its reason):\n"
                      + "\n".join(hits))


# ----------------------------------------------------------------------------- the checker itself
@pytest.mark.parametrize("line,rule", [
    ("Measured in session 8, before the change.", "session"),
    ("Session 10's full run of the unchanged code.", "session"),
    ("Both sessions read 0.57.", "session"),
    ("The targets of issue 7, as measured.", "issue"),
    ("Fixed for issue #8.", "issue"),
    ("as asked in #7 above", "issue"),
    ("I judge the targets by the interleaved lines.", "first person"),
    ("Then I measured it again.", "first person"),
    ("I've kept the defaults.", "first person"),
    ("Here we split each batch.", "first person"),
    ("Our table shows it.", "first person"),
    ("It cost us 2 ms.", "first person"),
    ("Nothing else of mine ran.", "first person"),
    ("Changed on 2026-11-30.", "date"),
    ("Measured 2026-11-30, then measured on 2026-12-01.", "date"),
    ("--json /tmp/s10/bench_full.json", "scratch path"),
    ("cd /work/main && make", "scratch path"),
])
def test_each_rule_catches_its_pattern(line, rule):
    assert RULES[rule].search(line), (rule, line)
    assert hits_in_text("NOTES.md", line) and f": {rule}: " in hits_in_text("NOTES.md", line)[0]


@pytest.mark.parametrize("line", [
    "for i in range(n): pass",
    "def test_x(tmp_path): assert tmp_path.exists()",
    "the matmul takes 53 µs per step",
    "the identity I + A and Part I of the report",
    "one session context manager: common.session(args, 'q1')",
    "colour #1f77b4 for the first curve",
    "the US Navy photograph",
    "Copyright (c) 2026 the mp_jax authors",
    "we_matrix = user_data",
    "the course's literal We = [W1 W2 b1 b2]",
    "Create the lock file with ``me`` in it",
    "the tests use a temporary directory, never a fixed path",
    "5 min 32 s for 834 tests, measured on 2026-12-05 on 2 CPU cores",
    "*Measured on 2026-12-05 at commit `0123abc`, on Linux x86_64 with 2 CPU cores.*",
])
def test_legitimate_text_is_not_flagged(line):
    assert hits_in_text("NOTES.md", line) == []


def test_python_code_is_not_read_as_prose_but_its_comments_and_docstrings_are():
    source = ('"""Module doc: nothing here."""\n'
              "us = [i for i in range(3)]  # a comment\n"
              "def f(we):\n"
              '    """Here we compute f."""\n'
              "    return we  # see issue 7\n"
              "PATH = '/tmp/x'\n")
    hits = hits_in_text("pkg/mod.py", source)
    assert [h.split(":")[1] for h in hits] == ["4", "5", "6"], hits
    assert "first person" in hits[0] and "issue" in hits[1] and "scratch path" in hits[2]


def test_the_allow_list_applies_to_its_file_and_text_only():
    line = "as stated in matplotlib PR #1599."
    assert hits_in_text("data/README.md", line) == []
    assert hits_in_text("README.md", line), "the allow-list is per file"
