"""Values that must not get through: every numeric flag is checked for its range before any
data is read (learning rates finite and > 0, seeds within the PRNG's range, counts within
int32, devices dividing every batch), an empty selection is a usage error, a folder flag
naming a file is refused, the benchmarks follow the same convention (one line, exit status
2), and a run that diverges stops the command with exit status 1, naming the run, with no
metrics or report written for it."""
import json
import math

import h5py
import jax
import numpy as np
import pytest

from benchmarks import epochs as bench_epochs
from benchmarks import floor as bench_floor
from experiments import __main__ as main_job
from experiments import common, q1_autoencoder, q2_language_model, q3_activity, smoke
from mp_jax.protocols import runs
from mp_jax.runtime import cli
from mp_jax.engine import train
from mp_jax.models import mlp

FAST_COMPILE = True  # tiny programs compiled once (conftest)

HUGE = "99999999999999999999"
ENTRY_POINTS = {"experiments": main_job.main, "experiments.q1_autoencoder": q1_autoencoder.main,
                "experiments.q2_language_model": q2_language_model.main, "experiments.q3_activity": q3_activity.main,
                "experiments.smoke": smoke.main}


def usage_line(main, argv, capsys, prog=None) -> str:
    """The one line a usage error prints (exit status 2, nothing else on stderr)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    if prog:
        assert err.startswith(f"{prog}: error: ") and err.endswith(f" (see {prog} --help)\n"), err
    return err.strip()


def nothing_written(tmp_path):
    return not (tmp_path / "d").exists() and not (tmp_path / "r").exists()


def dirs(tmp_path) -> list:
    return ["--data-dir", str(tmp_path / "d"), "--results-dir", str(tmp_path / "r")]


# ----------------------------------------------------------------------------- learning rates
@pytest.mark.parametrize("value", ["lstm=-0.1", "lstm=0", "all=nan", "gru=inf", "rnn=-inf"])
def test_a_learning_rate_must_be_finite_and_positive(value, tmp_path, capsys):
    line = usage_line(q3_activity.main, ["--lr", value, *dirs(tmp_path)], capsys, "python -m experiments.q3_activity")
    assert "argument --lr: expected NAME=RATE items" in line and "RATE a finite number > 0" in line, line
    assert f"found {value!r}" in line
    assert nothing_written(tmp_path)


def test_good_learning_rates_still_parse():
    assert dict(q3_activity.parse_lrs("lstm=0.05,all=1e-3,gru=2")) == {"rnn": 1e-3, "lstm": 1e-3, "gru": 2.0}
    assert q3_activity.parse_rates("0.01,0.1") == (0.01, 0.1)


@pytest.mark.parametrize("value", ["0.1,0", "0.1,-1", "nan", "0.01,inf"])
def test_selection_rates_must_be_finite_and_positive(value, capsys):
    line = usage_line(q3_activity.main, ["--select", value], capsys)
    assert "argument --select:" in line and "finite number > 0" in line and f"found {value!r}" in line, line


def test_positive_number():
    assert cli.positive_number(" 0.5 ") == 0.5
    for bad in ("0", "-1e-3", "nan", "inf", "-inf", "x", ""):
        with pytest.raises(Exception, match=r"expected a finite number > 0, found"):
            cli.positive_number(bad)


# ----------------------------------------------------------------------------- empty selections
@pytest.mark.parametrize("value", [",", "", " , "])
def test_an_empty_selection_of_questions_is_a_usage_error(value, tmp_path, capsys):
    line = usage_line(main_job.main, ["--only", value, *dirs(tmp_path)], capsys, "python -m experiments")
    assert f"argument --only: expected at least one of q1,q2,q3 (comma-separated), found {value!r}" in line, line
    assert nothing_written(tmp_path)  # no REPORT.md, no folder


def test_a_question_named_twice_runs_once(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(common, "start_devices", lambda *a, **k: None)
    monkeypatch.setattr(main_job, "_run", lambda args, configs: ran.append(list(configs)) or 0)
    assert main_job.main(["--only", "q3,q1,q3", *dirs(tmp_path)]) == 0
    assert ran == [["q3", "q1"]]


# ----------------------------------------------------------------------------- seeds and counts
@pytest.mark.parametrize("prog", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("value", [HUGE, str(cli.SEED_MAX + 1), "-1"])
def test_a_seed_outside_the_prngs_range_is_a_usage_error(prog, value, tmp_path, capsys):
    line = usage_line(ENTRY_POINTS[prog], ["--seed", value, *dirs(tmp_path)], capsys, f"python -m {prog}")
    assert f"argument --seed: expected a seed, an integer from 0 to {cli.SEED_MAX}" in line, line
    assert f"found {value!r}" in line and "OverflowError" not in line
    assert nothing_written(tmp_path)


def test_the_largest_seed_is_accepted_and_its_key_is_its_own():
    assert cli.seed(str(cli.SEED_MAX)) == cli.SEED_MAX and cli.seed("0") == 0
    assert not np.array_equal(jax.random.PRNGKey(cli.SEED_MAX), jax.random.PRNGKey(0))
    assert np.array_equal(jax.random.PRNGKey(cli.SEED_MAX + 1), jax.random.PRNGKey(0))  # why the bound


def test_q3s_seeds_must_stay_within_the_range_too(tmp_path, capsys):
    argv = ["--seed", str(cli.SEED_MAX - 1), "--seeds", "3", *dirs(tmp_path)]
    line = usage_line(q3_activity.main, argv, capsys, "python -m experiments.q3_activity")
    assert (f"argument --seeds: the seeds run from --seed {cli.SEED_MAX - 1} to {cli.SEED_MAX + 1}, past "
            f"{cli.SEED_MAX}") in line and f"give --seed {cli.SEED_MAX - 2} or lower" in line, line
    assert nothing_written(tmp_path)
    assert q3_activity.Q3Config(seed=cli.SEED_MAX - 2, seeds=3).usage_errors() == []


@pytest.mark.parametrize("main,flag", [(q3_activity.main, "--epochs"), (q3_activity.main, "--seeds"),
                                       (q1_autoencoder.main, "--lbfgs-iters"), (q1_autoencoder.main, "--sgd-epochs"),
                                       (main_job.main, "--cpu-devices"), (main_job.main, "--devices")])
def test_a_count_past_int32_is_a_usage_error(main, flag, tmp_path, capsys):
    line = usage_line(main, [flag, HUGE, *dirs(tmp_path)], capsys)
    assert f"argument {flag}: expected a positive integer (1, 2, ...) no larger than {cli.INT_MAX}" in line, line
    assert nothing_written(tmp_path)


# ----------------------------------------------------------------------------- devices
@pytest.mark.parametrize("prog,sizes,fits", [
    ("experiments", "q1 SGD batch 32, q2 batch 200, q2 tuned batch 200, q3 batch 32, q3 baseline batch 32", "1, 2, 4, 8"),
    ("experiments.q3_activity", "q3 batch 32, q3 baseline batch 32", "1, 2, 4, 8, 16, 32"),
    ("experiments.smoke", "smoke batch 32", "1, 2, 4, 8, 16, 32"),
])
def test_devices_that_do_not_divide_the_batch_are_refused_before_anything_starts(prog, sizes, fits, tmp_path,
                                                                                 capsys, monkeypatch):
    started = []
    monkeypatch.setattr(common, "start_devices", lambda *a, **k: started.append(a))
    line = usage_line(ENTRY_POINTS[prog], ["--devices", "3", *dirs(tmp_path)], capsys, f"python -m {prog}")
    assert (f"argument --devices: expected a device count that divides every batch size ({sizes}), found 3; "
            f"choose one of {fits}") in line, line
    assert not started and nothing_written(tmp_path)  # JAX not started, no data read, no folder


def test_the_default_devices_are_checked_against_the_batch_once_jax_has_started(monkeypatch, capsys):
    p = cli.Parser(prog="prog")
    configs = [q3_activity.Q3Config()]
    common.check_devices_divide(p, configs)  # on this CPU: nothing split by default, nothing to check
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "device_count", lambda: 3)
    line = usage_line(lambda argv: common.check_devices_divide(p, configs), [], capsys, "prog")
    assert "argument --devices: not given, so every run would split its batches over the 3 devices" in line, line
    assert "give --devices with one of 1, 2, 4, 8, 16, 32" in line
    monkeypatch.setattr(jax, "device_count", lambda: 4)
    common.check_devices_divide(p, configs)


# ----------------------------------------------------------------------------- folders
@pytest.mark.parametrize("flag", ["--data-dir", "--results-dir"])
@pytest.mark.parametrize("prog", ["experiments", "experiments.q3_activity"])
def test_a_folder_flag_naming_a_file_says_so(flag, prog, tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    line = usage_line(ENTRY_POINTS[prog], [flag, str(f)], capsys, f"python -m {prog}")
    assert f"argument {flag}: expected a folder (made when missing), found the file {str(f)!r}: give the path of a " \
           f"folder, or move the file away" in line, line
    line = usage_line(ENTRY_POINTS[prog], [flag, str(f / "sub")], capsys)
    assert f"argument {flag}: expected a folder" in line and f"found that {str(f)!r}, above" in line, line
    assert f.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_folder_accepts_folders_and_paths_to_be_made(tmp_path):
    assert cli.folder(str(tmp_path)) == tmp_path
    assert cli.folder(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"


# ----------------------------------------------------------------------------- the benchmarks
@pytest.mark.parametrize("argv,expected", [
    (["--models", "foo"], "argument --models: unknown 'foo'; expected a comma-separated subset of ae,lm,rnn,lstm,gru"),
    (["--impls", "jax"], "argument --impls: unknown 'jax'; expected a comma-separated subset of manual,"),
    (["--models", ","], "argument --models: expected at least one of ae,lm,rnn,lstm,gru (comma-separated), found ','"),
    (["--impls", ""], "argument --impls: expected at least one of manual,"),
    (["--reps", "0"], "argument --reps: expected a positive integer (1, 2, ...), found '0'"),
])
def test_the_benchmark_follows_the_cli_convention(argv, expected, capsys, monkeypatch):
    monkeypatch.setattr(bench_epochs, "run", lambda *a, **k: pytest.fail("ran"))
    line = usage_line(bench_epochs.main, argv, capsys, "python -m benchmarks")
    assert f"python -m benchmarks: error: {expected}" in line, line


def test_the_floor_benchmark_too(capsys, monkeypatch):
    monkeypatch.setattr(bench_floor, "spawn", lambda *a, **k: pytest.fail("ran"))
    line = usage_line(bench_floor.main, ["--models", "foo"], capsys, "python -m benchmarks.floor")
    assert "argument --models: expected a comma-separated subset of gru,lm, found 'foo'" in line, line
    assert "argument --models:" in usage_line(bench_floor.main, ["--models", ","], capsys)


# ----------------------------------------------------------------------------- a run that diverges
def _blobs(n):
    k1, k2 = jax.random.split(jax.random.PRNGKey(n))
    y = jax.random.randint(k1, (n,), 0, 3)
    return jax.random.normal(k2, (n, 2)) + y[:, None], y


def _member(lr, keep_diverged, name="mlp_member"):
    training = runs.Training(mlp.loss_and_grad, train.sgd_momentum(lr, 0.9), train.FitConfig(epochs=2, batch_size=32))
    return runs.fit_member(runs.RunContext(progress=False), name, training,
                             mlp.init_params(jax.random.PRNGKey(0), 2, 4, 3), _blobs(64), key=jax.random.PRNGKey(1),
                             run_key=None, keep_diverged=keep_diverged)


@pytest.mark.slow
def test_a_member_that_diverges_stops_naming_the_run_unless_asked_to_keep_it():
    with pytest.raises(train.NonFiniteError, match="^mlp_member: the .* non-finite at epoch 1"):
        _member(float("nan"), keep_diverged=False)
    kept = _member(float("nan"), keep_diverged=True)
    assert kept.diverged == "non-finite at epoch 1" and kept.epochs_run == 0


def _tiny_q3(data_dir, n=64, t=8, seed=0):
    """A Q3 course file of ``n`` training and ``n // 2`` test windows of ``t`` steps."""
    rng = np.random.default_rng(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(data_dir / "data3.h5", "w") as f:
        for x, y, m in (("trX", "trY", n), ("tstX", "tstY", n // 2)):
            f[x] = rng.normal(size=(m, t, 3)).astype(np.float32)
            f[y] = np.eye(6, dtype=np.float32)[rng.integers(0, 6, m)]


def _nan_rates(monkeypatch, **more):
    """Q3's quick settings, smaller, with every learning rate nan (which --lr refuses)."""
    real = q3_activity.Q3Config.quick.__func__
    nan = tuple((m, math.nan) for m in q3_activity.MODELS)
    monkeypatch.setattr(q3_activity.Q3Config, "quick", classmethod(lambda cls, **ch: real(
        cls, **{**dict(hidden=4, mlp=4, baseline_epochs=1, learning_rates=nan, **more), **ch})))


@pytest.mark.slow
def test_a_diverged_q3_run_stops_the_main_job_with_status_1_and_writes_no_report(monkeypatch, tmp_path, capsys):
    _tiny_q3(tmp_path / "d")
    _nan_rates(monkeypatch)
    from experiments import estimate

    monkeypatch.setattr(estimate, "expected", lambda *a, **k: estimate.Estimate({"q3": 1.0}, [], 0.0))  # not tested here
    argv = ["--only", "q3", "--quick", "--no-progress", *dirs(tmp_path)]  # the RNN trains first, and diverges
    assert cli.run_main(main_job.main, argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: training diverged: q3_rnn_validation: the "), err
    assert "non-finite at epoch 1" in err and "lower the learning rate" in err
    r = tmp_path / "r"
    assert not (r / "REPORT.md").exists() and not (r / "q3_quick" / "metrics.json").exists()
    assert not list(r.glob(".*.lock"))


@pytest.mark.slow
def test_a_diverged_rate_in_the_selection_step_is_marked_and_ends_with_status_1(monkeypatch, tmp_path, capsys):
    _tiny_q3(tmp_path / "d")
    _nan_rates(monkeypatch, select=(math.nan, 0.01))
    argv = ["--quick", "--no-progress", "--models", "rnn", *dirs(tmp_path)]
    assert cli.run_main(q3_activity.main, argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: training diverged: q3 --select: RNN at rate nan (seed 0: non-finite at epoch 1)")
    assert "selection.md marks these rates as diverged" in err and "Leave them out, or lower them." in err
    out = tmp_path / "r" / "q3_quick_models-rnn"
    rows = json.loads((out / "selection.json").read_text())["models"]["rnn"]
    assert rows[0]["diverged"] == ["non-finite at epoch 1"] and rows[0]["val_accuracy"] is None
    assert not rows[0]["best"] and rows[1]["best"] and 0 <= rows[1]["val_accuracy"] <= 1
    md = (out / "selection.md").read_text()
    assert "| RNN | nan | 2 | diverged | seed 0: non-finite at epoch 1 | – |" in md, md
    assert not (out / "metrics.json").exists()


def test_checking_the_flags_does_not_start_jax_before_the_cpu_devices_are_set():
    """check_config runs before start_devices: it must not start JAX's backends, or the CPU
    stays one device and Q3's batches are no longer split over the cores."""
    import subprocess
    import sys

    code = ("import argparse, jax\n"
            "from experiments import common, q3_activity\n"
            "from mp_jax.engine import parallel\n"
            "p = argparse.ArgumentParser()\n"
            "args = argparse.Namespace(devices=None, cpu_devices=None, matmul_precision='highest')\n"
            "common.check_config(p, args, [q3_activity.Q3Config()])\n"
            "common.start_devices(args, p, [q3_activity.Q3Config()])\n"
            "print(len(jax.devices('cpu')), parallel.usable_cores())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in __import__("os").environ.items()
                              if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")})
    have, cores = map(int, out.stdout.split())
    assert have == cores
