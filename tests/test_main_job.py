"""The main job end to end (--quick): report, figures, provenance; finished runs skipped."""
import re

import pytest

from experiments import __main__ as main_job


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("main")
    args = ["--quick", "--no-progress", "--data-dir", str(root / "data"), "--results-dir", str(root / "results")]
    assert main_job.main(args) == 0
    return root, args


def test_report_links_only_existing_figures(quick_run):
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
        assert f"- {q}: " in report and "stand-in" in report


def test_second_call_skips_finished_runs(quick_run, capsys):
    root, args = quick_run
    capsys.readouterr()
    assert main_job.main(args) == 0
    out = capsys.readouterr().out
    summary = out[out.index("summary"):]
    assert "trained" not in summary and "resumed" not in summary
    assert summary.count("skipped") == 3


def test_fresh_moves_old_results_aside(quick_run):
    root, args = quick_run
    assert main_job.main(args + ["--only", "q2", "--fresh"]) == 0
    aside = list((root / "results").glob("q2.old-*"))
    assert len(aside) == 1 and (aside[0] / "metrics.json").is_file()
    assert (root / "results" / "q2" / "metrics.json").is_file()
