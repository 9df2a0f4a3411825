"""docs/notation.md, one symbol per quantity, against the equations and the code.

Each table of the page is preceded by ``<!-- models: NAME ... -->`` (registry names, or none)
and has the columns symbol, quantity, shape, equation, code. A symbol must occur in its
equation as written; a code name must be a parameter leaf or a named intermediate gradient of
one of the table's models (the names ``python -m mp_jax.gradcheck`` prints); every leaf and
intermediate of every registry model must have a row; within one table no symbol and no code
name may have two rows.
"""
from __future__ import annotations

import re
from pathlib import Path

import jax
import pytest

from mp_jax import docs_equations
from mp_jax.checks import registry

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "notation.md"
NONE = "–"


def _tables() -> list[tuple[tuple, list[dict]]]:
    """[(models, rows)] of the page, each row {symbol, quantity, shape, equation, code}."""
    out, models = [], None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"<!-- models:(.*)-->", line.strip())
        if m:
            models = tuple(m.group(1).split())
            out.append((models, []))
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) != 5 or cells[0] == "symbol" or set(cells[0]) <= set("-: "):
            continue
        assert models is not None, f"docs/notation.md: a table row before any '<!-- models: -->' line: {line}"
        out[-1][1].append(dict(zip(("symbol", "quantity", "shape", "equation", "code"), cells)))
    return out


def _latex(cell: str) -> str:
    m = re.fullmatch(r"\$([^$]+)\$", cell)
    assert m, f"docs/notation.md: the symbol cell {cell!r} is not one $...$ span"
    return m.group(1)


def _code(cell: str):
    if cell == NONE:
        return None
    m = re.fullmatch(r"`([^`]+)`", cell)
    assert m, f"docs/notation.md: the code cell {cell!r} is neither `name` nor {NONE}"
    return m.group(1)


def _names(model: str) -> set[str]:
    """The names gradcheck prints for ``model``: its parameter leaves and its intermediates."""
    from mp_jax.checks.gradtable import _leaf_names

    spec = registry.get(model)
    params, batch = spec.instance(dtype=jax.numpy.float32)
    names = set(_leaf_names(params)) | set(spec.intermediate_shapes(params, batch))
    if spec.rows_of:
        names.add(spec.rows_of[1])
    return names


ROWS = [(models, row) for models, rows in _tables() for row in rows]


def test_the_page_has_a_table_for_every_registry_model():
    covered = {m for models, _ in _tables() for m in models}
    assert set(registry.MODELS) <= covered, f"docs/notation.md has no table for {sorted(set(registry.MODELS) - covered)}"
    assert len(ROWS) > 60


@pytest.mark.parametrize("models,row", ROWS, ids=[f"{'+'.join(m) or 'general'}:{r['symbol']}" for m, r in ROWS])
def test_each_symbol_occurs_in_its_equation(models, row):
    symbol = _latex(row["symbol"])
    if row["equation"] == NONE:
        assert _code(row["code"]), f"{row['symbol']}: neither an equation nor a code name"
        return
    m = re.fullmatch(r"\(([A-Z]+[1-9]\d*)\)", row["equation"])
    assert m, f"{row['symbol']}: the equation cell {row['equation']!r} is not one label '(LABEL)'"
    eq = docs_equations.equation(m.group(1))
    # the symbol as written, or its base before a subscript ("$w_{n1}$" in w_{n1}; "$\hat\rho_b$")
    found = symbol in eq.text or symbol.replace(" ", "") in eq.text.replace(" ", "")
    assert found, f"docs/notation.md: {row['symbol']} does not occur in ({eq.label}): {eq.text}"


@pytest.mark.parametrize("models,row", [(m, r) for m, r in ROWS if r["code"] != NONE],
                         ids=[f"{'+'.join(m)}:{r['code']}" for m, r in ROWS if r["code"] != NONE])
def test_each_code_name_is_a_leaf_or_an_intermediate_of_its_models(models, row):
    name = _code(row["code"])
    assert models, f"{row['code']}: a code name in a table without models"
    assert any(name in _names(model) for model in models), (
        f"docs/notation.md: {name!r} is not a leaf or intermediate of any of {models}")


def test_every_leaf_and_intermediate_has_a_row():
    missing = []
    for model in registry.MODELS:
        rows = {_code(r["code"]) for models, rs in _tables() if model in models for r in rs}
        missing += [f"{model}: {name}" for name in sorted(_names(model) - rows)]
    assert not missing, "names the code gives that docs/notation.md lacks:\n" + "\n".join(missing)


def test_no_symbol_or_code_name_twice_in_one_table():
    for models, rows in _tables():
        for column in ("symbol", "code"):
            values = [r[column] for r in rows if r[column] != NONE]
            twice = sorted({v for v in values if values.count(v) > 1})
            assert not twice, f"docs/notation.md, table {models or 'general'}: {column} twice: {twice}"


def test_the_intermediates_are_named_as_the_docs_write_them():
    """An intermediate's code name is its symbol: δ_h is $\\delta_h$, dc_t is $dc_t$, δ_KL is
    $\\delta^{KL}$, and the embedding's rows dR[v] are $dR_v$."""
    params = {n for m in registry.MODELS for n in _leaf_names_of(m)}
    checked = 0
    for models, row in ROWS:
        name = _code(row["code"])
        if name is None or name in params:
            continue
        expected = "dR_v" if name == "dR" else name.replace("δ", "\\delta ").replace("\\delta _", "\\delta_")
        # a multi-letter tag may stand above the letter in the pages: δ_KL is $\\delta^{KL}$
        written = re.sub(r"\^\{(\w+)\}", r"_\1", _latex(row["symbol"]))
        assert written == expected, f"docs/notation.md: the code's {name!r} is written {row['symbol']}"
        checked += 1
    assert checked >= 15


def _leaf_names_of(model: str) -> set[str]:
    from mp_jax.checks.gradtable import _leaf_names

    spec = registry.get(model)
    return set(_leaf_names(spec.instance(dtype=jax.numpy.float32)[0]))


def test_the_registry_is_built_as_read():
    """The names above come from real instances: the registry's shapes and leaves are non-empty."""
    spec = registry.get("lstm")
    params, batch = spec.instance(dtype=jax.numpy.float32)
    assert "δ_f" in spec.intermediate_shapes(params, batch) and jax.tree.leaves(params)
