"""Every metrics.json says what made it, and REPORT.md tells it from there: which run made each
part (quick or full, what differs), the software and devices of the runs (not of the process
that rebuilds the report), and no figure that another run left in a folder."""
import json
import shutil
import subprocess
import sys

import pytest

from experiments import provenance, report
from experiments.q2_language_model import Q2Config
from experiments.q3_activity import Q3Config

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def _run_record(config, question, **over):
    """A provenance record as a run on another machine would write it."""
    p = {"run_id": "20250102-030405-abcdef12", "question": question, "folder": config.results_name(question),
         "quick": config.is_quick, "recipe": config.recipe,
         "differs": {k: list(v) if isinstance(v, tuple) else v for k, v in config.differences().items()},
         "config_type": type(config).__name__, "config": {}, "config_hash": config.config_hash(),
         "data_digest": "0123456789abcdef", "matmul_precision": "highest",
         "devices": {"platform": "cpu", "count": 2, "kinds": ["cpu"], "processes": 1, "split_over": None},
         "python": "3.12.1", "system": "Linux x86_64", "cpu_count": 2,
         "packages": {"jax": "0.7.0", "jaxlib": "0.7.0", "numpy": "2.3.0"},
         "git": {"commit": "a" * 40, "dirty": False}, "started": "2025-01-02T03:00:00",
         "finished": "2025-01-02T03:04:05", "wall_seconds": 245.0, "files": {}}
    return {**p, **over}


def _put(root, folder, metrics, figures=()):
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in figures:
        (d / name).write_bytes(PNG + name.encode())
        files[name] = provenance.file_digest(d / name)
    if "provenance" in metrics:
        metrics = {**metrics, "provenance": {**metrics["provenance"], "files": files}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def _q2(**prov):
    return {"settings": {"settings": [[8, 64]]}, "D=8,P=64": {"val_cross_entropy": 4.0, "test_cross_entropy": 4.1},
            "data": {"path": "data/data2.h5", "source": "stand-in: a corpus (licence: public domain)"}, **prov}


def _q3(**prov):
    return {"data": {"class_names": ["A", "B"], "path": "data/data3.h5", "source": "course file"}, **prov}


def _section(text, title):
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_a_report_from_a_quick_and_a_full_run_says_which_is_which_in_every_part(tmp_path):
    _put(tmp_path, "q2_quick", _q2(provenance=_run_record(Q2Config.quick(), "q2")), ["loss_D8_P64.png"])
    _put(tmp_path, "q3", _q3(provenance=_run_record(Q3Config(), "q3")))
    _put(tmp_path, "q1", {"settings": {"is_quick": True}})  # an earlier version's metrics: no provenance
    text = report.write_report(tmp_path, folders={"q2": "q2_quick"}).read_text()
    q1, q2, q3 = (_section(text, f"## Q{i} —") for i in (1, 2, 3))
    assert "*Made by `q2_quick/`: a quick run (tiny settings: its numbers are not meaningful); config " in q2
    assert "*Made by `q3/`: a full run; config " in q3 and "quick" not in q3
    assert "*Made by `q1/`: a quick run that recorded no provenance (made by an earlier version).*" in q1
    assert "Parts made by a quick run" in text and "The parts come from runs of different configurations" in text
    assert "(q2_quick/loss_D8_P64.png)" in q2
    # and a part with other settings names them
    _put(tmp_path, "q3_models-rnn_seeds-2", _q3(provenance=_run_record(Q3Config(models=("rnn",), seeds=2), "q3")))
    text = report.write_report(tmp_path, folders={"q3": "q3_models-rnn_seeds-2"}).read_text()
    assert "*Made by `q3_models-rnn_seeds-2/`: a full run, with models rnn; seeds 2; config " in text
    assert "*Also in this results folder: `q3/`, a full run.*" in _section(text, "## Q3 —")


def test_a_rebuild_on_another_machine_reports_the_runs_devices_and_software(tmp_path):
    gpu = {"platform": "gpu", "count": 1, "kinds": ["NVIDIA Z9000"], "processes": 1, "split_over": None}
    for q, m, c in (("q2", _q2, Q2Config()), ("q3", _q3, Q3Config())):
        _put(tmp_path, q, m(provenance=_run_record(c, q, devices=gpu, matmul_precision="default",
                                                   packages={"jax": "0.6.2", "jax-cuda12-plugin": "0.6.2"})))
    text = report.write_report(tmp_path).read_text()
    env = _section(text, "## Software and device")
    assert "- JAX devices: 1 × gpu:NVIDIA Z9000" in env
    assert "- float32 matmuls: JAX's default (TensorFloat-32 on recent NVIDIA GPUs) (`--matmul-precision`)" in env
    assert "- jax 0.6.2, jax-cuda12-plugin 0.6.2" in env and "Python 3.12.1 on Linux x86_64, 2 CPU cores" in env
    assert "unknown" not in env and "- code: git commit aaaaaaaaaaaa" in env
    assert "q1: not recorded" not in env  # q1 did not run: nothing to say
    # the rebuilding process's own devices and precision (full: conftest) appear nowhere
    import jax

    assert not any(f"{d.platform}:{d.device_kind}" in env for d in jax.devices())
    assert "full precision" not in env
    # runs of two environments: each listed with its questions
    _put(tmp_path, "q2", _q2(provenance=_run_record(Q2Config(), "q2")))
    env = _section(report.write_report(tmp_path).read_text(), "## Software and device")
    assert "q2:" in env and "q3:" in env and "- JAX devices: 2 × cpu:cpu" in env and "gpu:NVIDIA Z9000" in env


def test_a_figure_another_run_left_in_the_folder_is_not_shown(tmp_path):
    d = _put(tmp_path, "q3", _q3(provenance=_run_record(Q3Config(), "q3")), ["rnn_loss.png", "loss_all.png"])
    (d / "rnn_loss.png").write_bytes(PNG + b"another run's curve")  # replaced after the run wrote its metrics
    (d / "gru_loss.png").write_bytes(PNG)  # not written by this run at all
    text = report.write_report(tmp_path).read_text()
    q3 = _section(text, "## Q3 —")
    assert "(q3/loss_all.png)" in q3 and "rnn_loss.png)" not in q3 and "gru_loss.png)" not in q3
    assert "*Not shown: `gru_loss.png`, `rnn_loss.png` (not written by the run that wrote this `metrics.json`).*" in q3


def test_the_rebuilt_report_is_the_same_text(tmp_path):
    _put(tmp_path, "q3", _q3(provenance=_run_record(Q3Config(), "q3")), ["loss_all.png"])
    first = report.write_report(tmp_path).read_text()
    assert report.write_report(tmp_path).read_text() == first and "Wall time of each part's run: q3 245 s." in first


# ----------------------------------------------------------------------------- what a run records
def test_the_packages_are_those_the_run_imported_and_never_unknown():
    got = provenance.packages(["jax", "jax._src.core", "numpy", "json", "os", "no_such_module_anywhere"])
    assert {"jax", "numpy", "mp_jax"} <= set(got) and all(isinstance(v, str) and v for v in got.values())
    assert not {"json", "os", "no_such_module_anywhere"} & set(got)
    if "chex" not in sys.modules:  # a test extra, not imported by the run: not listed
        assert "chex" not in provenance.packages()
    assert "pytest" in provenance.packages()  # this process imported it


def test_the_git_state_of_a_checkout(tmp_path):
    assert provenance.git_state(tmp_path) is None  # not a checkout
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "f.txt").write_text("one")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    state = provenance.git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "f.txt").write_text("two")
    assert provenance.git_state(tmp_path)["dirty"] is True
    (tmp_path / "sub").mkdir()
    assert provenance.git_state(tmp_path / "sub") is None  # inside a checkout, not its top: not this code's


def test_the_files_a_run_wrote_are_those_written_since_it_started(tmp_path):
    import os
    import time

    (tmp_path / "old.png").write_bytes(PNG)
    os.utime(tmp_path / "old.png", (time.time() - 60, time.time() - 60))
    started = time.time()
    (tmp_path / "new.png").write_bytes(PNG)
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / ".new.png.tmp").write_bytes(PNG)
    assert provenance.made_files(tmp_path, started) == {"new.png": provenance.file_digest(tmp_path / "new.png")}


def test_a_metrics_file_records_its_configuration_devices_and_software(tmp_path):
    from experiments import files
    from mp_jax.protocols import runs

    c = Q3Config.quick(models=("rnn",), results_dir=tmp_path)
    ctx = runs.RunContext(progress=False)
    (tmp_path / "rnn_loss.png").write_bytes(PNG)
    files.write_metrics(tmp_path, {"question": "q3"}, c, "q3", data="feedface", ctx=ctx)
    p = json.loads((tmp_path / "metrics.json").read_text())["provenance"]
    assert p["folder"] == "q3_quick_models-rnn" and p["quick"] is True and p["differs"] == {"models": ["rnn"]}
    assert p["config"]["hidden"] == c.hidden and p["config"]["models"] == ["rnn"] and len(p["config"]) > 20
    assert p["config_hash"] == c.config_hash() and p["data_digest"] == "feedface"
    assert p["matmul_precision"] == "highest" and p["devices"]["count"] >= 1 and p["devices"]["kinds"]
    assert "jax" in p["packages"] and "numpy" in p["packages"] and p["wall_seconds"] >= 0
    assert p["files"] == {"rnn_loss.png": provenance.file_digest(tmp_path / "rnn_loss.png")}
