"""The settings docs/ states against the configuration dataclasses that hold them.

docs/training.md carries a marked table (between ``<!-- config-table -->`` and
``<!-- /config-table -->``) with one row per setting: ``| question | setting | `value` | `Field.path` |``.
Each value is a Python literal and each field names a dataclass instantiated with its
defaults (``Q1Config``, ``Q2Config``, ``Q3Config``, ``LbfgsConfig``), an attribute path, and
``[key]`` to read a tuple of (key, value) pairs as a dictionary. A changed default fails
here until the table follows. The prose checks below hold the sentences that state those
settings (and the ones once wrong) to the same values.
"""
from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest

from experiments.q1_autoencoder import Q1Config
from experiments.q2_language_model import Q2Config
from experiments.q3_activity import Q3Config
from mp_jax.engine.lbfgs import LbfgsConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TRAINING = DOCS / "training.md"
CLASSES = {"Q1Config": Q1Config, "Q2Config": Q2Config, "Q3Config": Q3Config, "LbfgsConfig": LbfgsConfig}
_FIELD = re.compile(r"(?P<cls>\w+)(?P<path>(?:\.\w+|\[\w+\])+)")


def _table_rows() -> list[tuple[str, str, str, str]]:
    text = TRAINING.read_text(encoding="utf-8")
    m = re.search(r"<!-- config-table -->\n(.*?)<!-- /config-table -->", text, re.S)
    assert m, "docs/training.md: no table between <!-- config-table --> and <!-- /config-table -->"
    rows = []
    for line in m.group(1).strip().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or set(cells[0]) <= set("-: "):
            continue
        if cells == ["question", "setting", "value", "field"]:
            continue
        rows.append(tuple(cells))
    return rows


def _resolve(field: str):
    m = _FIELD.fullmatch(field)
    assert m and m.group("cls") in CLASSES, f"field {field!r}: not Class.path with Class one of {sorted(CLASSES)}"
    obj = CLASSES[m.group("cls")]()
    for attr, key in re.findall(r"\.(\w+)|\[(\w+)\]", m.group("path")):
        obj = getattr(obj, attr) if attr else dict(obj)[key]
    return obj


def _same(stated, actual) -> bool:
    if isinstance(stated, bool) or isinstance(actual, bool) or stated is None or actual is None:
        return stated is actual or (type(stated) is type(actual) and stated == actual)
    if isinstance(stated, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(stated, actual, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(stated, (tuple, list)) and isinstance(actual, (tuple, list)):
        return len(stated) == len(actual) and all(_same(s, a) for s, a in zip(stated, actual))
    return stated == actual


def _unquote(cell: str) -> str:
    return cell[1:-1] if cell.startswith("`") and cell.endswith("`") else cell


def test_the_table_has_rows_for_every_question():
    rows = _table_rows()
    questions = {q.split()[0] for q, *_ in rows}
    assert {"Q1", "Q2", "Q3"} <= questions, f"the config table covers only {sorted(questions)}"
    fields = [_unquote(f) for *_, f in rows]
    assert len(fields) == len(set(fields)), "a field appears in two rows of the config table"


@pytest.mark.parametrize("row", _table_rows(), ids=lambda r: _unquote(r[3]))
def test_every_table_row_matches_its_dataclass_field(row):
    question, setting, value, field = row
    stated = ast.literal_eval(_unquote(value))
    actual = _resolve(_unquote(field))
    assert _same(stated, actual), (f"docs/training.md states {question} {setting} = {stated!r}, but "
                                   f"{_unquote(field)} is {actual!r}: update the table and the prose that states it")


def test_the_table_fails_when_a_config_changes(monkeypatch):
    """The check above is not vacuous: a changed default is caught."""
    row = next(r for r in _table_rows() if _unquote(r[3]) == "Q3Config.momentum")
    stated = ast.literal_eval(_unquote(row[2]))
    assert _same(stated, _resolve("Q3Config.momentum"))
    monkeypatch.setitem(CLASSES, "Q3Config", lambda: Q3Config(momentum=stated / 2))
    assert not _same(stated, _resolve("Q3Config.momentum"))


# ----------------------------------------------------------------------------- the prose
def _pages() -> dict[str, str]:
    """docs/*.md without the config table (checked above), each page's line breaks made
    spaces, so a sentence reads as one line."""
    table = re.compile(r"<!-- config-table -->.*?<!-- /config-table -->", re.S)
    return {p.name: re.sub(r"\s+", " ", table.sub("", p.read_text(encoding="utf-8")))
            for p in sorted(DOCS.glob("*.md"))}


def _momentum(question: str) -> set:
    c1, c2, c3 = Q1Config(), Q2Config(), Q3Config()
    return {"Q1": {c1.sgd_momentum}, "Q2": {c2.momentum}, "Q3": {c3.momentum, c3.baseline_momentum}}[question]


def test_every_stated_momentum_is_the_configs():
    """'$\\mu = 0.9$ (Q1's SGD, Q3's ...)': each question named in the parentheses uses that μ."""
    wrong, found = [], 0
    for name, text in _pages().items():
        for value, where in re.findall(r"\$\\mu = ([0-9.]+)\$ \(([^)]*)\)", text):
            for q in re.findall(r"Q[123]", where):
                found += 1
                if float(value) not in _momentum(q):
                    wrong.append(f"docs/{name}: μ = {value} for {q}, the config has {sorted(_momentum(q))}")
        for sentence in re.split(r"(?<=\.) ", text):
            if re.search(r"\bQ3\b", sentence) and re.search(r"momentum[^.]*\b0\.85\b|\b0\.85\b[^.]*momentum", sentence):
                if Q3Config().momentum != 0.85:
                    wrong.append(f"docs/{name}: a sentence gives Q3 momentum 0.85: {sentence[:160]}")
    assert found, "no '$\\mu = ...$ (Q...)' statement found: the check reads nothing"
    assert not wrong, "\n".join(wrong)


def test_no_page_says_the_rate_is_constant_for_every_run():
    """Q3 warms the rate up and decays it (LR1); the momentum forms agree only for a constant rate."""
    bad = [f"docs/{name}" for name, text in _pages().items()
           if re.search(r"engine uses a constant learning rate", text, re.I)]
    assert not bad, f"pages claim a constant learning rate for every run: {bad}"
    text = _pages()["training.md"]
    assert Q3Config().warmup_epochs > 0, "Q3 has no warm-up: docs/training.md's momentum section must change"
    assert re.search(r"agree only while \$\\eta\$ stays constant", text), \
        "docs/training.md no longer says when the two momentum forms agree"


def test_settings_stated_in_prose_match_the_configs():
    pages = _pages()
    c1, c2, c3, lb = Q1Config(), Q2Config(), Q3Config(), LbfgsConfig()
    checks = [  # (page, pattern with one number group, the config's value)
        ("training.md", r"Q3 uses \$c = ([0-9.]+)\$", c3.clip_norm),
        ("training.md", r"validation cross-entropy with \$p = ([0-9]+)\$", c2.patience),
        ("training.md", r"nearer to ([0-9.]+) % of the training windows", 100 * c3.val_fraction),
        ("training.md", r"g_n \\sim U\(([0-9.]+), [0-9.]+\)", c3.gain_range[0]),
        ("training.md", r"g_n \\sim U\([0-9.]+, ([0-9.]+)\)", c3.gain_range[1]),
        ("training.md", r"the last ([0-9]+) pairs of parameter and gradient differences", c1.lbfgs_memory),
        ("training.md", r"jitted chunks of ([0-9]+),", c1.lbfgs_chunk),
        ("training.md", r"at most ([0-9]+) by default", c1.lbfgs_iters),
        ("training.md", r"gradient norm falls to \$10\^\{(-[0-9]+)\}\$", math.log10(lb.gtol)),
        ("training.md", r"by less than \$10\^\{(-[0-9]+)\} \\lvert J \\rvert\$", math.log10(lb.ftol)),
        ("recurrent.md", r"\$H = ([0-9]+)\$, \$M = [0-9]+\$", c3.hidden),
        ("recurrent.md", r"\$H = [0-9]+\$, \$M = ([0-9]+)\$", c3.mlp),
        ("autoencoder.md", r"target \(\$\\rho = ([0-9.]+)\$", c1.hp.rho),
        ("language_model.md", r"start from \$\\mathcal\{N\}\(0, ([0-9.]+)\^2\)\$", c2.init_std),
    ]
    wrong = []
    for page, pattern, actual in checks:
        found = re.findall(pattern, pages[page])
        if not found:
            wrong.append(f"docs/{page}: no statement matches {pattern!r} (reworded? update this check)")
        wrong += [f"docs/{page}: states {v} where the config has {actual} ({pattern!r})"
                  for v in found if not math.isclose(float(v), float(actual), rel_tol=1e-9)]
    assert not wrong, "\n".join(wrong)


def test_the_errata_state_the_configs_sparsity_setting():
    text = _pages()["recurrent.md"]
    m = re.search(r"the setting is \$\(\\beta, \\rho\) = \(([0-9.]+), ([0-9.]+)\)\$", text)
    assert m, "docs/recurrent.md: the errata no longer state (β, ρ)"
    hp = Q1Config().hp
    assert (float(m.group(1)), float(m.group(2))) == (hp.beta, hp.rho)
