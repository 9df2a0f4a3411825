"""The derivations in docs/ against the code that cites them.

The library's comments and docstrings cite equations of docs/ by label, e.g. ``# (LSTM7)``;
each display equation there carries its label as ``\\tag{LSTM7}``. These tests hold the two
together (every label cited in the code, the experiments, the exercises, the notebook, the
benchmarks, the tests and every Markdown page is tagged), hold docs/README.md's lists of labels
to the labels the pages tag, keep the documents' links working and their math within what
GitHub renders.
"""
from __future__ import annotations

import collections
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "mp_jax"

PREFIXES = ("BPTT", "CLIP", "HEAD", "LSTM", "GRU", "RNN", "AE", "LM", "LR", "AUG", "P")
_PREFIX = "|".join(PREFIXES)
#: One label, or a range of one prefix: "LSTM7", "HEAD1-HEAD3", "RNN1-2" (hyphen or en dash).
_LABEL_OR_RANGE = re.compile(rf"\b({_PREFIX})(\d+)(?:\s*[-\u2013]\s*(?:({_PREFIX}))?(\d+))?\b")
_PARENS = re.compile(r"\(([^()]*)\)")
_TAG = re.compile(r"\\tag\{([^{}]*)\}")

#: The labels of docs/recurrent.md that the recurrent modules cite: the contract with the code.
FIXED_RECURRENT_LABELS = (
    [f"RNN{i}" for i in range(1, 6)]
    + [f"BPTT{i}" for i in range(1, 4)]
    + [f"LSTM{i}" for i in range(1, 13)]
    + [f"GRU{i}" for i in range(1, 12)]
    + [f"HEAD{i}" for i in range(1, 7)]
)


def _doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _labels_in(text: str) -> set[str]:
    """Every label cited inside parentheses in ``text``; a range cites each label in it."""
    found = set()
    for group in _PARENS.findall(text):
        for prefix, first, prefix2, last in _LABEL_OR_RANGE.findall(group):
            if last and prefix2 in ("", prefix) and int(first) <= int(last):
                found.update(f"{prefix}{k}" for k in range(int(first), int(last) + 1))
            else:
                found.add(f"{prefix}{first}")
                if last:
                    found.add(f"{prefix2 or prefix}{last}")
    return found


def _comments_and_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and string literal (docstrings included) of a module."""
    kinds = {tokenize.COMMENT, tokenize.STRING}
    if hasattr(tokenize, "FSTRING_MIDDLE"):
        kinds.add(tokenize.FSTRING_MIDDLE)
    source = path.read_text(encoding="utf-8")
    return [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type in kinds]


def _tags() -> list[tuple[str, str]]:
    """(label, document name) of every \\tag in docs/, in order."""
    return [(label, path.name) for path in _doc_files()
            for label in _TAG.findall(path.read_text(encoding="utf-8"))]


def _tagged() -> set[str]:
    return {label for label, _ in _tags()}


def _prose(text: str, *, keep_code_spans: bool = False) -> str:
    """Markdown without its fenced code blocks (each line kept, blanked) and, unless
    ``keep_code_spans``, without its inline code spans."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else line if keep_code_spans else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def test_docs_exist():
    names = {p.name for p in _doc_files()}
    expected = {"README.md", "layers.md", "autoencoder.md", "language_model.md", "recurrent.md", "training.md"}
    assert expected <= names, f"docs/ lacks {sorted(expected - names)}"
    assert _tags(), "docs/ tags no equation at all"


#: Every folder of Python whose comments and strings may cite a label.
CITING_FOLDERS = ("mp_jax", "experiments", "exercises", "notebooks", "benchmarks", "tests")
#: Every Markdown page outside docs/ that may cite a label.
CITING_PAGES = ("README.md", "BENCHMARKS.md", "data/README.md")


def test_every_cited_label_is_tagged():
    tagged = _tagged()
    missing = []
    for folder in CITING_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, text in _comments_and_strings(path):
                for label in sorted(_labels_in(text) - tagged):
                    missing.append(f"{path.relative_to(ROOT)}:{line}: ({label})")
    assert not missing, ("labels cited in the code but tagged nowhere in docs/ (add the equation with "
                         "\\tag{LABEL}, or cite the right label):\n" + "\n".join(missing))


def test_every_label_a_page_cites_is_tagged_code_included():
    """README.md, BENCHMARKS.md and data/README.md, and every page of docs/ with its code blocks and spans."""
    tagged = _tagged()
    missing = []
    for path in [ROOT / name for name in CITING_PAGES if (ROOT / name).exists()] + _doc_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for label in sorted(_labels_in(_TAG.sub("", line)) - tagged):
                missing.append(f"{path.relative_to(ROOT)}:{number}: ({label})")
    assert not missing, "pages cite labels that no equation carries:\n" + "\n".join(missing)


def test_the_label_finder_finds_what_it_must():
    """The checks above read labels with _labels_in: it must see ranges and lists."""
    assert _labels_in("see (HEAD1-HEAD3) and (RNN1-2), (LSTM7), (P2), (P3)") == {
        "HEAD1", "HEAD2", "HEAD3", "RNN1", "RNN2", "LSTM7", "P2", "P3"}
    untagged = "AE" "99"  # two literals, so that this file cites no untagged label itself
    assert _labels_in(f"# ({untagged})") == {untagged} and untagged not in _tagged()


def test_the_prefixes_read_are_the_prefixes_tagged():
    """A new prefix in docs/ must be added to PREFIXES, or its citations would go unchecked."""
    tagged = {re.match(r"[A-Z]+", label).group() for label, _ in _tags()}
    assert tagged == set(PREFIXES), (f"prefixes tagged in docs/ {sorted(tagged)} differ from the prefixes "
                                     f"these tests read {sorted(PREFIXES)}")


def _readme_prefixes() -> tuple[dict, dict]:
    """docs/README.md's two lists: {page: prefixes} of the table of documents, and {page:
    prefixes} of the table of prefixes."""
    text = (DOCS / "README.md").read_text(encoding="utf-8")
    documents, prefixes = {}, {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        link = re.fullmatch(r"\[[\w.]+\]\(([\w.]+\.md)\)", cells[0]) if cells else None
        if link and len(cells) >= 2:  # | [page](page) | P, AE | contents |
            documents[link.group(1)] = {p.strip() for p in cells[1].split(",") if p.strip()}
        link = re.fullmatch(r"\[[\w.]+\]\(([\w.]+\.md)\)", cells[-1]) if len(cells) == 2 else None
        if link and re.fullmatch(r"[A-Z, ]+", cells[0]):  # | RNN, BPTT | [page](page) |
            prefixes.setdefault(link.group(1), set()).update(p.strip() for p in cells[0].split(","))
    return documents, prefixes


def test_docs_readme_lists_the_prefixes_each_page_tags():
    tagged = collections.defaultdict(set)
    for label, name in _tags():
        tagged[name].add(re.match(r"[A-Z]+", label).group())
    documents, prefixes = _readme_prefixes()
    assert documents and prefixes, "docs/README.md: the tables of documents and prefixes were not found"
    for name in sorted(set(documents) | set(tagged)):
        assert documents.get(name, set()) == tagged.get(name, set()), (
            f"docs/README.md's table of documents gives {name} the labels {sorted(documents.get(name, ()))}, "
            f"the page tags {sorted(tagged.get(name, ()))}")
    assert prefixes == {k: v for k, v in tagged.items() if v}, (
        f"docs/README.md's table of prefixes {prefixes} is not what the pages tag {dict(tagged)}")
    missing = [p.name for p in _doc_files() if p.name != "README.md" and p.name not in documents]
    assert not missing, f"docs/README.md's table of documents lacks {missing}"


def test_docs_readme_names_the_fixed_recurrent_labels():
    text = re.sub(r"\s+", " ", (DOCS / "README.md").read_text(encoding="utf-8"))
    ranges = dict(re.findall(r"\b(RNN|BPTT|LSTM|GRU|HEAD)1-(\d+)\b", text.split("are fixed")[0][-200:]))
    fixed = collections.Counter(re.match(r"[A-Z]+", label).group() for label in FIXED_RECURRENT_LABELS)
    assert {k: int(v) for k, v in ranges.items()} == dict(fixed), (
        f"docs/README.md names the fixed recurrent labels {ranges}, the tests fix {dict(fixed)}")


def test_labels_referred_to_in_docs_are_tagged():
    tagged = _tagged()
    missing = []
    for path in _doc_files():
        prose = _prose(path.read_text(encoding="utf-8"))
        for number, line in enumerate(prose.splitlines(), 1):
            for label in sorted(_labels_in(_TAG.sub("", line)) - tagged):
                missing.append(f"docs/{path.name}:{number}: ({label})")
    assert not missing, "docs/ refers to labels that no equation carries:\n" + "\n".join(missing)


def test_no_label_is_tagged_twice():
    where = collections.defaultdict(list)
    for label, name in _tags():
        where[label].append(name)
    twice = {label: names for label, names in where.items() if len(names) > 1}
    assert not twice, f"labels tagged more than once (label: documents): {twice}"


def test_every_tag_is_a_well_formed_label():
    bad = [(label, name) for label, name in _tags() if not re.fullmatch(rf"(?:{_PREFIX})[1-9]\d*", label)]
    assert not bad, (f"\\tag{{...}} that is not a label of the form PREFIX + number, PREFIX one of "
                     f"{PREFIXES}: {bad}")


def test_recurrent_doc_carries_the_fixed_labels():
    text = (DOCS / "recurrent.md").read_text(encoding="utf-8")
    present = set(_TAG.findall(text))
    missing = [label for label in FIXED_RECURRENT_LABELS if label not in present]
    assert not missing, f"docs/recurrent.md lacks the fixed labels the recurrent modules cite: {missing}"


def test_recurrent_doc_has_the_errata_section():
    text = (DOCS / "recurrent.md").read_text(encoding="utf-8")
    assert re.search(r"^#+ Errata of the course report\s*$", text, re.M), \
        "docs/recurrent.md: no heading 'Errata of the course report'"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen = collections.Counter()
    anchors = set()
    for line in _prose(path.read_text(encoding="utf-8"), keep_code_spans=True).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = _slug(m.group(1))
            anchors.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return anchors


def _markdown_files() -> list[Path]:
    return _doc_files() + [ROOT / "README.md"]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path):
    broken = []
    prose = _prose(path.read_text(encoding="utf-8"))
    for target in re.findall(r"\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)", prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT) if ROOT in dest.parents else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor} in {dest.name})")
    assert not broken, f"{path.relative_to(ROOT)}: broken relative links:\n" + "\n".join(broken)


def _math_spans(line: str) -> list[str]:
    return re.findall(r"\$\$(.+?)\$\$", line) if line.startswith("$$") else re.findall(r"\$([^$]+)\$", line)


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: p.name)
def test_math_stays_within_what_github_renders(path):
    problems = []
    for number, line in enumerate(_prose(path.read_text(encoding="utf-8")).splitlines(), 1):
        where = f"docs/{path.name}:{number}"
        if "$$" in line and not (line.startswith("$$") and line.rstrip().endswith("$$") and line.count("$$") == 2):
            problems.append(f"{where}: a display equation must be one line of its own, '$$ ... $$'")
        if "\\tag{" in line and not line.startswith("$$"):
            problems.append(f"{where}: \\tag outside a display equation")
        if not line.startswith("$$") and line.count("$") % 2:
            problems.append(f"{where}: unbalanced '$' (inline math opened and not closed on this line)")
        for span in _math_spans(line):
            if re.search(r"[<>]", span):
                problems.append(f"{where}: '<' or '>' inside math (GitHub reads HTML): use \\lt, \\gt")
            escaped = re.search(r"\\[!-/:-@\[-`{-~]", span)
            if escaped:
                problems.append(f"{where}: '{escaped.group()}' inside math (Markdown treats backslash + "
                                f"punctuation as an escape): use \\lbrace, \\rbrace, \\lVert, \\thinspace, ...")
    assert not problems, "\n".join(problems)
