"""The main job end to end (--quick): report, figures, provenance; finished runs loaded
with the training time they recorded; a run of another configuration into the same results
folder leaves the job's results and report alone."""
import difflib
import json
import re

import pytest

from experiments import __main__ as main_job

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("main")
    args = ["--quick", "--no-progress", "--data-dir", str(root / "data"), "--results-dir", str(root / "results")]
    return root, args


@pytest.fixture(scope="module")
def first_call(quick_run):
    import contextlib
    import io

    root, args = quick_run
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main_job.main(args) == 0
    return out.getvalue()


def test_each_question_prints_its_data_source_once_in_one_short_line(first_call):
    for q in ("q1", "q2", "q3"):
        lines = [line for line in first_call.splitlines() if f"{q} data:" in line]
        assert len(lines) == 1 and len(lines[0]) < 200, lines
        assert "licence" not in lines[0]  # the full credits are in REPORT.md


def test_the_quick_q3_run_writes_every_models_record_and_figures(quick_run, first_call):
    from q3_checks import check_quick_metrics

    root, _ = quick_run
    out = root / "results" / "q3_quick"  # the quick configuration's folder
    check_quick_metrics(out, json.loads((out / "metrics.json").read_text()))  # RNN, LSTM and GRU


def test_report_links_only_existing_figures(quick_run, first_call):
    root, _ = quick_run
    report = (root / "results" / "REPORT_quick.md").read_text()  # the report of --quick
    assert not (root / "results" / "REPORT.md").exists()
    for heading in ("## Q1", "### a) Preprocessing", "### d) L_hid × λ sweep", "## Q2", "### b) Predictions",
                    "## Q3", "## Data", "## Software and device"):
        assert heading in report
    assert "- float32 matmuls: full precision (`--matmul-precision`)" in report  # the main job's default
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) >= 15
    for link in links:
        assert (root / "results" / link).is_file(), link
    for q in ("q1", "q2", "q3"):
        assert (root / "results" / f"{q}_quick" / "metrics.json").is_file()
        assert f"*Made by `{q}_quick/`: a quick run (tiny settings: its numbers are not meaningful); config " in report
        assert f"- {q}: " in report and "stand-in" in report and "licence" in report
    assert re.search(r"Training time: q1 trained in \d+ s \(14 runs\); q2 trained in \d+ s \(4 runs\); "
                     r"q3 trained in \d+ s \(9 runs\)", report)  # q3: 3 validation runs, 3 refits, the LSTM with
    # its forget-gate bias at 1, the baseline's validation run and refit


def test_the_reports_equations_are_the_docs_quoted_by_label(quick_run, first_call):
    """Every display equation of the quick job's REPORT.md is a line of docs/, byte for byte, and
    every label the report module quotes is there (the backward of every model it trains)."""
    from experiments import report as report_module
    from mp_jax import docs_equations

    root, _ = quick_run
    text = (root / "results" / "REPORT_quick.md").read_text()
    assert docs_equations.unquoted(text) == []
    assert docs_equations.quoted_labels(text) == list(report_module.quoted_labels())
    assert "learning rate 0.15, constant" in text.split("## Q2")[1]  # Q2's settings from its configuration


def test_second_call_loads_finished_runs_and_keeps_their_times(quick_run, first_call, capsys):
    root, args = quick_run
    before = {q: json.loads((root / "results" / f"{q}_quick" / "metrics.json").read_text()) for q in ("q1", "q2", "q3")}
    capsys.readouterr()
    assert main_job.main(args) == 0
    out = capsys.readouterr().out
    summary = out[out.index("summary"):]
    assert " trained" not in summary and "resumed" not in summary
    assert summary.count("loaded") == 3
    after = {q: json.loads((root / "results" / f"{q}_quick" / "metrics.json").read_text()) for q in ("q1", "q2", "q3")}
    for q in before:
        assert after[q]["training"]["train_seconds"] == pytest.approx(before[q]["training"]["train_seconds"])
    assert after["q1"]["optimizers"]["lbfgs"]["seconds"] == pytest.approx(before["q1"]["optimizers"]["lbfgs"]["seconds"])
    assert after["q2"]["D=32,P=256"]["seconds"] == pytest.approx(before["q2"]["D=32,P=256"]["seconds"])
    assert before["q2"]["D=32,P=256"]["seconds"] > 0
    assert after["q3"]["gru"]["seconds_per_epoch"] == before["q3"]["gru"]["seconds_per_epoch"]
    report = (root / "results" / "REPORT_quick.md").read_text()
    assert re.search(r"Training time: q1 loaded \(14 runs, trained in \d+ s\)", report)
    assert "| lbfgs |" in report and "loaded (trained in " in report


def test_the_estimate_is_said_at_the_start_and_compared_in_the_summary(first_call):
    lines = first_call.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("expected training time on this machine: about"))
    assert start < next(i for i, line in enumerate(lines) if line.startswith("== Q1"))
    assert "q1 " in lines[start] and "q2 " in lines[start] and "q3 " in lines[start]
    summary = first_call[first_call.index("summary ("):]
    assert re.search(r"estimated at the start: [\d.]+ (s|min) of training; took [\d.]+ (s|min) of training, "
                     r"[\d.]+ (s|min) in all \(q1 [\d.]+ (s|min) estimated, [\d.]+ (s|min) taken; q2 ", summary)


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_of_another_configuration_leaves_the_results_and_the_report_alone(quick_run, first_call):
    """The newcomer's sequence: the main job, then one question with other settings into the
    same results folder, then the report rebuilt: the job's files are byte for byte as they
    were, and the rebuilt report differs only by the line that says what else is there."""
    from experiments import q2_language_model as q2, report

    root, args = quick_run
    results = root / "results"
    assert report.main(["--quick", "--results-dir", str(results)]) == 0  # the report as the results stand
    before = {q: _files(results / f"{q}_quick") for q in ("q1", "q2", "q3")}
    text = (results / "REPORT_quick.md").read_text()
    assert q2.main(["--quick", "--seed", "1", "--no-progress", "--data-dir", str(root / "data"),
                    "--results-dir", str(results)]) == 0
    other = results / "q2_quick_seed-1"
    assert json.loads((other / "metrics.json").read_text())["provenance"]["differs"] == {"seed": 1}
    assert {q: _files(results / f"{q}_quick") for q in ("q1", "q2", "q3")} == before
    assert report.main(["--quick", "--results-dir", str(results)]) == 0
    diff = [d for d in difflib.ndiff(text.splitlines(), (results / "REPORT_quick.md").read_text().splitlines())
            if d[:1] in "+-?"]
    assert diff == ["+ *Also in this results folder: `q2_quick_seed-1/`, a quick run (tiny settings: its numbers "
                    "are not meaningful), with seed 1.*"], diff
    assert {q: _files(results / f"{q}_quick") for q in ("q1", "q2", "q3")} == before


def test_fresh_moves_old_results_aside(quick_run, first_call):
    root, args = quick_run
    assert main_job.main(args + ["--only", "q2", "--fresh"]) == 0
    aside = list((root / "results").glob("q2_quick.old-*"))
    assert len(aside) == 1 and (aside[0] / "metrics.json").is_file()
    assert (root / "results" / "q2_quick" / "metrics.json").is_file()
