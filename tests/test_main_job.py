"""The main job end to end (--quick): report, figures, provenance; finished runs loaded
with the training time they recorded."""
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
    out = root / "results" / "q3"
    check_quick_metrics(out, json.loads((out / "metrics.json").read_text()))  # RNN, LSTM and GRU


def test_report_links_only_existing_figures(quick_run, first_call):
    root, _ = quick_run
    report = (root / "results" / "REPORT.md").read_text()
    for heading in ("## Q1", "### a) Preprocessing", "### d) L_hid × λ sweep", "## Q2", "### b) Predictions",
                    "## Q3", "## Data", "## Software and device"):
        assert heading in report
    assert "- float32 matmuls: full precision (`--matmul-precision`)" in report  # the main job's default
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) >= 15
    for link in links:
        assert (root / "results" / link).is_file(), link
    for q in ("q1", "q2", "q3"):
        assert (root / "results" / q / "metrics.json").is_file()
        assert f"- {q}: " in report and "stand-in" in report and "licence" in report
    assert re.search(r"Training time: q1 trained in \d+ s \(14 runs\); q2 trained in \d+ s \(4 runs\); "
                     r"q3 trained in \d+ s \(8 runs\)", report)


def test_second_call_loads_finished_runs_and_keeps_their_times(quick_run, first_call, capsys):
    root, args = quick_run
    before = {q: json.loads((root / "results" / q / "metrics.json").read_text()) for q in ("q1", "q2", "q3")}
    capsys.readouterr()
    assert main_job.main(args) == 0
    out = capsys.readouterr().out
    summary = out[out.index("summary"):]
    assert " trained" not in summary and "resumed" not in summary
    assert summary.count("loaded") == 3
    after = {q: json.loads((root / "results" / q / "metrics.json").read_text()) for q in ("q1", "q2", "q3")}
    for q in before:
        assert after[q]["training"]["train_seconds"] == pytest.approx(before[q]["training"]["train_seconds"])
    assert after["q1"]["optimizers"]["lbfgs"]["seconds"] == pytest.approx(before["q1"]["optimizers"]["lbfgs"]["seconds"])
    assert after["q2"]["D=32,P=256"]["seconds"] == pytest.approx(before["q2"]["D=32,P=256"]["seconds"])
    assert before["q2"]["D=32,P=256"]["seconds"] > 0
    assert after["q3"]["gru"]["seconds_per_epoch"] == before["q3"]["gru"]["seconds_per_epoch"]
    report = (root / "results" / "REPORT.md").read_text()
    assert re.search(r"Training time: q1 loaded \(14 runs, trained in \d+ s\)", report)
    assert "| lbfgs |" in report and "loaded (trained in " in report


def test_fresh_moves_old_results_aside(quick_run, first_call):
    root, args = quick_run
    assert main_job.main(args + ["--only", "q2", "--fresh"]) == 0
    aside = list((root / "results").glob("q2.old-*"))
    assert len(aside) == 1 and (aside[0] / "metrics.json").is_file()
    assert (root / "results" / "q2" / "metrics.json").is_file()
