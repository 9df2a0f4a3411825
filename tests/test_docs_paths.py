"""Every file path and every dotted name the documentation cites exists.

Read: README.md, BENCHMARKS.md, data/README.md and docs/*.md (every line, code included),
and the comments and strings (docstrings included) of every module under mp_jax/,
experiments/, benchmarks/, exercises/, notebooks/ and tests/. A path is one under a folder of
the repository (``mp_jax/models/recurrent.py``, ``tests/test_docs.py::test_docs_exist``,
``docs/``; the data folder's files are the user's, not checked); a dotted name starts at a
package (``mp_jax.engine.sweep.fit_sweep``) and is resolved by importing its longest module
prefix and reading the rest as attributes. A module that moves fails here until every page and
docstring that names it follows.
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from test_docs import _comments_and_strings

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "BENCHMARKS.md", "data/README.md")
FOLDERS = ("mp_jax", "experiments", "benchmarks", "exercises", "notebooks", "tests")
#: a path under one of the repository's folders, optionally with a test name after "::"
PATH = re.compile(r"(?<![\w./<>-])((?:mp_jax|experiments|benchmarks|exercises|notebooks|tests|docs|\.ci)/"
                  r"(?:[\w./-]*[\w/])?)(?:::(\w+))?")
#: a dotted name from one of the packages
DOTTED = re.compile(r"(?<![\w./-])((?:mp_jax|experiments|benchmarks)(?:\.[A-Za-z_]\w*)+)")
#: strings that look dotted but name no module: logger names
LOGGER = re.compile(r"getLogger\(\s*[\"']([\w.]+)[\"']")


def _lines():
    """(where, text) of every line that may cite a path or a name."""
    for name in PAGES:
        path = ROOT / name
        if path.exists():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                yield f"{name}:{number}", line
    for path in sorted((ROOT / "docs").glob("*.md")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            yield f"docs/{path.name}:{number}", line
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            loggers = set(LOGGER.findall(source))
            for number, text in _comments_and_strings(path):
                for k, line in enumerate(text.splitlines()):
                    for logger in loggers:  # a logger's name is not a module
                        line = line.replace(logger, "")
                    yield f"{path.relative_to(ROOT)}:{number + k}", line


def resolve(name: str) -> bool:
    """Whether ``name`` is a module, or an attribute path below its longest importable prefix."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        module_name = ".".join(parts[:k])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and not module_name.startswith(e.name):  # a missing dependency, not a missing module
                raise
            continue
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def _cited():
    paths, names = {}, {}
    for where, line in _lines():
        for m in PATH.finditer(line):
            paths.setdefault((m.group(1).rstrip("."), m.group(2)), where)
        for m in DOTTED.finditer(line):
            name = m.group(1).rstrip(".")
            if not re.search(r"\.(py|md|json|txt|png|h5|toml)$", name):
                names.setdefault(name, where)
    return paths, names


PATHS, NAMES = _cited()


def test_the_pages_and_docstrings_cite_paths_and_names():
    """The scan reads something: the README's layout alone names dozens of paths."""
    assert len(PATHS) > 40 and len(NAMES) > 40
    assert ("mp_jax/models/recurrent.py", None) in PATHS and "mp_jax.engine.sweep.fit_sweep" in NAMES


def test_every_cited_path_exists():
    missing = []
    for (path, test), where in sorted(PATHS.items(), key=lambda kv: kv[1]):
        target = ROOT / path
        if not target.exists():
            missing.append(f"{where}: {path} (no such file or folder)")
        elif test and test not in _test_names(target):
            missing.append(f"{where}: {path}::{test} (no such test)")
    assert not missing, "paths cited that the repository lacks (moved? renamed?):\n" + "\n".join(missing)


def test_every_cited_dotted_name_resolves():
    missing = [f"{where}: {name}" for name, where in sorted(NAMES.items(), key=lambda kv: kv[1]) if not resolve(name)]
    assert not missing, "dotted names cited that do not import (moved? renamed?):\n" + "\n".join(missing)


# (names that do not exist are written as two literals, so that the scan above does not read them)
@pytest.mark.parametrize("name,ok", [("mp_jax.engine.sweep.fit_sweep", True), ("mp_jax.engine.sweep", True),
                                     ("experiments." "runs.RunContext", False), ("mp_jax." "engine.sweep.nothing", False),
                                     ("mp_jax.protocols.runs.RunContext.start", True)])
def test_resolve_tells_a_name_that_moved(name, ok):
    assert resolve(name) is ok


def test_a_moved_path_is_found(tmp_path):
    line = "see mp_jax/models/" "gone.py and tests/test_docs.py::test_docs_exist and `docs/`"
    found = [(m.group(1), m.group(2)) for m in PATH.finditer(line)]
    assert found == [("mp_jax/models/" "gone.py", None), ("tests/test_docs.py", "test_docs_exist"), ("docs/", None)]
    assert not (ROOT / found[0][0]).exists() and "test_docs_exist" in _test_names(ROOT / found[1][0])
