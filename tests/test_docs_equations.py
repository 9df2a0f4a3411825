"""One source for every equation: docs/ tags it, mp_jax.docs_equations reads it, REPORT.md
quotes it byte for byte, and experiments/report.py writes none of its own."""
from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

from experiments import report
from mp_jax import docs_equations

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# relations: an inline span that holds one is an equation of the report's own
RELATION = re.compile(r"=|\\le\b|\\ge\b|\\lt\b|\\gt\b|\\approx|\\leftarrow|\\to\b|\\sim\b|\\ne\b")


# ----------------------------------------------------------------------------- the reader
def test_every_equation_is_its_pages_line_verbatim():
    found = docs_equations.equations()
    assert len(found) > 50
    for e in found.values():
        lines = (DOCS / e.page).read_text(encoding="utf-8").splitlines()
        assert lines[e.line - 1] == e.text, e.label
        assert e.text.startswith("$$ ") and e.text.endswith(" $$") and f"\\tag{{{e.label}}}" in e.text
        assert "\\tag" not in e.body and e.body


def test_quote_is_the_source_line_and_an_unknown_label_is_named():
    line = docs_equations.quote("GRU3")
    assert line in (DOCS / "recurrent.md").read_text(encoding="utf-8").splitlines()
    assert "(r \\odot h_{t-1}) U_n" in line
    with pytest.raises(docs_equations.DocsError, match=r"GRU" "99.*GRU1"):
        docs_equations.quote("GRU99")


def test_labels_expand_ranges_and_refuse_missing_ones():
    assert docs_equations.labels("AE10-AE12", "RNN1-2", "P17") == ["AE10", "AE11", "AE12", "RNN1", "RNN2", "P17"]
    with pytest.raises(docs_equations.DocsError, match="LM" "11"):
        docs_equations.labels("LM9-LM99")
    with pytest.raises(docs_equations.DocsError, match="one prefix"):
        docs_equations.labels("AE1-LM2")


def test_unquoted_finds_own_changed_and_untagged_equations():
    good = docs_equations.quote("LM5")
    assert docs_equations.unquoted(f"text\n\n{good}\n\nmore text with $x$ inline\n") == []
    changed = good.replace("N}", "M}")
    assert changed != good
    own = "$$ a = b \\tag{LM5} $$"
    untagged = "$$ dz = p - y $$"
    fenced = f"```\n{own}\n```"
    assert docs_equations.unquoted("\n".join([good, changed, own, untagged, fenced])) == [changed, own, untagged]
    assert docs_equations.quoted_labels(f"{good}\n{own}") == ["LM5", "LM5"]


def test_a_label_tagged_twice_or_no_folder_is_an_error(tmp_path):
    (tmp_path / "a.md").write_text("$$ x = 1 \\tag{P1} $$\n")
    (tmp_path / "b.md").write_text("```\n$$ y = 2 \\tag{P1} $$\n```\n")  # in a code block: not an equation
    assert list(docs_equations.equations(tmp_path)) == ["P1"]
    (tmp_path / "c.md").write_text("$$ y = 2 \\tag{P1} $$\n")
    docs_equations._parse.cache_clear()
    with pytest.raises(docs_equations.DocsError, match="also tagged"):
        docs_equations.equations(tmp_path)
    with pytest.raises(docs_equations.DocsError, match="no such folder"):
        docs_equations.equations(tmp_path / "absent")
    docs_equations._parse.cache_clear()


def test_page_of_a_prefix():
    assert docs_equations.page_of("LSTM") == ("recurrent.md",)
    assert docs_equations.page_of("CLIP") == ("training.md",)


# ----------------------------------------------------------------------------- the report module
def _string_literals(path: Path) -> list[tuple[int, str]]:
    kinds = {tokenize.STRING} | ({tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE") else set())
    source = path.read_text(encoding="utf-8")
    return [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type in kinds]


def test_the_report_module_writes_no_equation_of_its_own():
    path = ROOT / "experiments" / "report.py"
    problems = []
    for line, text in _string_literals(path):
        if "$$" in text or "\\tag" in text:
            problems.append(f"experiments/report.py:{line}: a display equation: quote it from docs/ by label")
        for span in re.findall(r"\$([^$]+)\$", text):
            if RELATION.search(span.replace("\\\\", "\\")):
                problems.append(f"experiments/report.py:{line}: ${span}$ states an equation: quote it by label")
    assert not problems, "\n".join(problems)


def test_the_report_quotes_existing_labels_and_the_whole_backward():
    labels = report.quoted_labels()
    assert docs_equations.labels(*labels) == list(labels)  # each one tagged in docs/
    # the backward of every model the report trains
    for needed in ("AE10-AE17", "LM5-LM10", "HEAD4-HEAD6", "BPTT1-BPTT3", "RNN3-RNN5", "LSTM5-LSTM12", "GRU6-GRU11",
                   "GRU1-GRU5"):
        missing = set(docs_equations.labels(needed)) - set(labels)
        assert not missing, f"the report does not quote {sorted(missing)}"


def test_every_autoencoder_label_is_quoted():
    """The report shows the whole autoencoder, as docs/autoencoder.md derives it: a label added
    there joins one of report.py's lists (Q1_BACKWARD for a piece of the backward)."""
    tagged = [label for label, e in docs_equations.equations().items() if e.page == "autoencoder.md"]
    missing = [label for label in tagged if label not in report.quoted_labels()]
    assert not missing, (f"docs/autoencoder.md tags {missing}, which REPORT.md does not quote: add them to "
                         f"experiments/report.py's Q1_PREPROCESSING, Q1_FORWARD or Q1_BACKWARD")


# ----------------------------------------------------------------------------- a generated REPORT.md
@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """REPORT.md from the saved metrics of a small made-up run (tests/test_report.py's), with
    Q2's configuration as a run saves it."""
    import test_report

    root = tmp_path_factory.mktemp("report")
    test_report._results_folder(root, test_report.RUN_A)
    m = json.loads((root / "q2" / "metrics.json").read_text())
    m["settings"].update(learning_rate=0.15, momentum=0.85, batch_size=200, epochs=50, max_epochs=50, patience=5,
                         init_std=0.01)
    (root / "q2" / "metrics.json").write_text(json.dumps(m))
    return report.write_report(root).read_text(encoding="utf-8")


def test_every_display_equation_of_the_report_is_a_quotation(written):
    assert docs_equations.unquoted(written) == []
    assert docs_equations.quoted_labels(written) == list(report.quoted_labels())


def test_the_reports_gru_is_the_codes(written):
    for label in ("GRU1", "GRU2", "GRU3", "GRU4", "GRU5"):
        assert docs_equations.quote(label) in written.splitlines()
    assert "W_{hn}" not in written and "b_{hn}" not in written  # the PyTorch form is not the code's


def test_every_label_the_report_cites_is_tagged(written):
    import test_docs

    cited = test_docs._labels_in(re.sub(r"\\tag\{[^{}]*\}", "", written))
    assert cited and not cited - test_docs._tagged(), sorted(cited - test_docs._tagged())


def test_the_report_states_q2s_training_settings_from_the_run(written):
    q2 = written.split("## Q2")[1].split("## Q3")[0]
    for stated in ("learning rate 0.15", "momentum 0.85", "batch 200", "at most 50 epochs", "patience 5",
                   "standard deviation 0.01"):
        assert stated in q2, stated
    for label in report.Q2_TRAINING:
        assert docs_equations.quote(label) in q2.splitlines()
