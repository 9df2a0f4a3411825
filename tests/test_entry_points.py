"""The experiments' entry points as a user meets them: a bad flag is one usage line (exit
status 2) naming the flag and the value; an error met while running is one line
``error: ...`` (exit status 1) naming the path or run; a results folder in use by another
run stops the second one at once, naming the holder; a full disk leaves no partial file."""
import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import __main__ as main_job
from experiments import common, files, q1_autoencoder, q3_activity, smoke
from mp_jax.runtime import atomic, cli
from mp_jax.runtime.lock import FolderLock

FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)

REPO = Path(__file__).resolve().parents[1]

# (argument, the flag the message names, the value it quotes)
BAD = [
    (["--devices", "0"], "--devices", "0"),
    (["--seed", "-1"], "--seed", "-1"),
    (["--cpu-devices", "0"], "--cpu-devices", "0"),
    (["--epochs", "0"], "--epochs", "0"),
]
ENTRY_POINTS = {"experiments": main_job.main, "experiments.q3_activity": q3_activity.main,
                "experiments.q1_autoencoder": q1_autoencoder.main, "experiments.smoke": smoke.main}


def _error_lines(err: str) -> list:
    return [line for line in err.splitlines() if "error:" in line]


@pytest.mark.parametrize("prog", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("argv,flag,value", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_a_bad_argument_is_one_usage_line_naming_the_flag(prog, argv, flag, value, capsys, tmp_path):
    main = ENTRY_POINTS[prog]
    with pytest.raises(SystemExit) as e:
        cli.run_main(main, argv + ["--results-dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1 and err.count("\n") == 1, err  # the message alone, no usage text
    line = lines[0]
    assert line.startswith(f"python -m {prog}: error: ") and flag in line and value in line, line
    assert "Traceback" not in err
    if flag != "--epochs" or prog == "experiments.q3_activity":  # a flag it has: the message says what is allowed
        assert f"argument {flag}: expected a" in line and "integer" in line and f"found '{value}'" in line, line
    else:  # a flag it does not have
        assert "unrecognized arguments: --epochs 0" in line, line
    assert not (tmp_path / ".q1.lock").exists() and not any(tmp_path.iterdir())  # nothing ran


def test_the_exact_messages_of_bad_values(capsys):
    for argv, expected in [
        (["--seed", "-1"], "argument --seed: expected a seed, an integer from 0 to 4294967295 (JAX's PRNG keys hold "
                           "32 bits: a larger seed repeats a smaller one's draws), found '-1'"),
        (["--devices", "0"], "argument --devices: expected a positive integer (1, 2, ...), found '0'"),
        (["--cpu-devices", "0"], "argument --cpu-devices: expected a positive integer (1, 2, ...), found '0'"),
    ]:
        with pytest.raises(SystemExit) as e:
            main_job.main(argv)
        assert e.value.code == 2
        assert capsys.readouterr().err == f"python -m experiments: error: {expected} (see python -m experiments --help)\n"
    with pytest.raises(SystemExit) as e:
        q3_activity.main(["--epochs", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        "python -m experiments.q3_activity: error: argument --epochs: expected a positive integer (1, 2, ...), "
        "found '0' (see python -m experiments.q3_activity --help)\n")


def test_bad_lists_are_usage_errors_too(capsys):
    for main, argv, flag in [(main_job.main, ["--only", "q1,q4"], "--only"),
                             (q3_activity.main, ["--models", "rnn,cnn"], "--models"),
                             (q3_activity.main, ["--lr", "gru"], "--lr")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and flag in err, err


def _run_module(module: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2"}
    env.pop("MP_JAX_DEBUG", None)
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, env=env, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("module", ["experiments", "experiments.smoke"])
def test_more_devices_than_the_machine_has_is_a_usage_error(module, tmp_path):
    # 4 divides every batch (tests/test_bad_values.py: a count that does not is refused before JAX starts)
    r = _run_module(module, "--devices", "4", "--cpu-devices", "2", "--results-dir", str(tmp_path / "r"),
                    "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert lines[0].startswith(f"python -m {module}: error: argument --devices: expected a device count from 1 to 2")
    assert "found 4" in lines[0] and "--cpu-devices" in lines[0]
    assert not (tmp_path / "r").exists()  # stopped before any result folder


@pytest.mark.parametrize("prog,question,argv", [
    ("experiments", "q1", ["--only", "q1"]),
    ("experiments", "q3", []),  # all three asked for: every lock taken before anything trains
    ("experiments.q3_activity", "q3", []),
])
def test_a_folder_in_use_stops_a_second_run_at_once_naming_the_holder(prog, question, argv, tmp_path, capsys):
    results, data = tmp_path / "results", tmp_path / "data"
    question += "_quick"  # the folder of --quick
    with FolderLock(results, name=f".{question}.lock", guards=results / question) as held:
        status = cli.run_main(ENTRY_POINTS[prog], argv + ["--quick", "--no-progress", "--results-dir", str(results),
                                                          "--data-dir", str(data)])
        assert status == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert f"pid {os.getpid()}" in err and str(results / question) in err and "in use by another run" in err
        assert held.held and json.loads(held.path.read_text())["pid"] == os.getpid()  # left as it was
    assert not data.exists()  # nothing was loaded or built
    assert not list(results.glob(".*.lock"))  # the locks the failed run took are gone again


def _tiny_smoke(monkeypatch, **changes):
    """``smoke --quick`` with a handful of examples and epochs."""
    monkeypatch.setattr(smoke.SmokeConfig, "quick", classmethod(
        lambda cls, **ch: cls(**{**dict(is_quick=True, n=64, epochs=2, batch_size=32, hidden=8), **changes, **ch})))


@pytest.mark.slow
def test_no_space_left_while_writing_metrics_names_the_folder_and_leaves_no_part(monkeypatch, tmp_path, capsys):
    _tiny_smoke(monkeypatch)
    real_temporary, real_write, doomed, hit = atomic._temporary, os.write, set(), []

    def temporary(path):
        fd, tmp = real_temporary(path)
        if path.name == "metrics.json":
            doomed.add(fd)
        return fd, tmp

    def write(fd, data):
        if fd in doomed:  # half of it written, then the disk is full
            doomed.discard(fd)
            hit.append(real_write(fd, bytes(data[: max(1, len(data) // 2)])))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(atomic, "_temporary", temporary)
    monkeypatch.setattr(os, "write", write)
    status = cli.run_main(smoke.main, ["--quick", "--no-progress", "--results-dir", str(tmp_path)])
    monkeypatch.setattr(os, "write", real_write)
    assert status == 1 and hit
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no space left on the device"), err
    out = tmp_path / "smoke_quick"
    assert f"free some space in {out}/" in err and str(out / "metrics.json") in err
    assert not (out / "metrics.json").exists()
    assert [p.name for p in out.iterdir() if "metrics" in p.name] == []  # no temporary file either
    assert (out / "loss.png").is_file()  # written before, whole
    assert not (tmp_path / ".smoke_quick.lock").exists()


@pytest.mark.slow
def test_a_diverged_run_is_one_line_naming_the_run(monkeypatch, tmp_path, capsys):
    _tiny_smoke(monkeypatch, learning_rate=float("nan"))
    status = cli.run_main(smoke.main, ["--quick", "--no-progress", "--results-dir", str(tmp_path)])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: training diverged: smoke_mlp: "), err
    assert "non-finite at epoch 1" in err and "learning rate" in err
    assert not (tmp_path / "smoke_quick" / "metrics.json").exists()
    assert not (tmp_path / ".smoke_quick.lock").exists()


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    _tiny_smoke(monkeypatch, learning_rate=float("nan"))
    from mp_jax.engine import train

    with pytest.raises(train.NonFiniteError):
        cli.run_main(smoke.main, ["--quick", "--no-progress", "--debug", "--results-dir", str(tmp_path)])


def test_a_run_leaves_no_lock_and_a_stale_lock_is_taken_over(monkeypatch, tmp_path, caplog):
    _tiny_smoke(monkeypatch)
    stale = tmp_path / ".smoke_quick.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": 0.0}))
    with caplog.at_level("WARNING", logger="mp_jax.runtime.lock"):
        assert cli.run_main(smoke.main, ["--quick", "--no-progress", "--results-dir", str(tmp_path)]) == 0
    assert any("took over the lock" in r.getMessage() for r in caplog.records)
    assert not stale.exists() and (tmp_path / "smoke_quick" / "metrics.json").is_file()


def test_only_the_writing_process_writes(monkeypatch, tmp_path):
    from mp_jax.engine import distributed

    monkeypatch.setattr(distributed, "is_writer", lambda: False)
    files.write_json(tmp_path / "m.json", {"a": 1})
    files.write_text(tmp_path / "t.txt", "x")
    import matplotlib.pyplot as plt

    from experiments import plotting

    plotting.save(plt.figure(), tmp_path / "f.png")
    (tmp_path / "q").mkdir()
    assert common.move_aside(tmp_path / "q") is None and (tmp_path / "q").is_dir()
    with common.question_lock(tmp_path, "q"):
        assert not (tmp_path / ".q.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]
