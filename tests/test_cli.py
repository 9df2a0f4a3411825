"""Entry-point helpers: argument validators (exit 2) and one-line errors (exit 1)."""
from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mp_jax.runtime import cli
from mp_jax.runtime.errors import StorageError, UserError, storage_error

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 1800  # a hung subprocess only; not a time limit


def parser_with(**types) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prog")
    for flag, t in types.items():
        p.add_argument(f"--{flag.replace('_', '-')}", type=t)
    return p


def usage_error(p: argparse.ArgumentParser, argv: list, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        p.parse_args(argv)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- validators
@pytest.mark.parametrize("text", ["0", "-3", "x", "1.5", ""])
def test_positive_int_names_the_flag_the_value_and_what_is_allowed(text, capsys):
    line = usage_error(parser_with(epochs=cli.positive_int), ["--epochs", text], capsys)
    assert line == f"prog: error: argument --epochs: expected a positive integer (1, 2, ...), found {text!r}"


def test_positive_and_non_negative_int_accept_their_ranges(capsys):
    p = parser_with(epochs=cli.positive_int, seed=cli.non_negative_int)
    args = p.parse_args(["--epochs", "7", "--seed", "0"])
    assert (args.epochs, args.seed) == (7, 0)
    line = usage_error(p, ["--seed", "-1"], capsys)
    assert line == "prog: error: argument --seed: expected a non-negative integer (0, 1, 2, ...), found '-1'"


def test_counts_and_seeds_have_an_upper_bound(capsys):
    p = parser_with(epochs=cli.positive_int, seed=cli.seed, rate=cli.positive_number, out=cli.folder)
    assert p.parse_args(["--epochs", str(cli.INT_MAX), "--seed", str(cli.SEED_MAX)]).seed == 2 ** 32 - 1
    line = usage_error(p, ["--epochs", str(cli.INT_MAX + 1)], capsys)
    assert line == (f"prog: error: argument --epochs: expected a positive integer (1, 2, ...) no larger than "
                    f"{cli.INT_MAX}, found '{cli.INT_MAX + 1}'")
    line = usage_error(p, ["--seed", str(cli.SEED_MAX + 1)], capsys)
    assert line.startswith(f"prog: error: argument --seed: expected a seed, an integer from 0 to {cli.SEED_MAX} ")
    assert usage_error(p, ["--rate", "nan"], capsys) == ("prog: error: argument --rate: expected a finite number > 0, "
                                                         "found 'nan'")
    assert "argument --out: expected a folder" in usage_error(p, ["--out", __file__], capsys)


def test_the_parsers_usage_exit_carries_its_line(capsys):
    p = cli.Parser(prog="prog")
    p.add_argument("--n", type=cli.positive_int)
    with pytest.raises(cli.UsageExit) as e:
        p.parse_args(["--n", "0"])
    assert e.value.code == 2 and isinstance(e.value, SystemExit)
    line = "prog: error: argument --n: expected a positive integer (1, 2, ...), found '0' (see prog --help)"
    assert str(e.value) == line and capsys.readouterr().err == line + "\n"


def test_device_count_checks_the_bound_it_is_given(capsys):
    p = parser_with(devices=cli.device_count(2), gpus=cli.device_count(lambda: 1))
    assert p.parse_args(["--devices", "2", "--gpus", "1"]).devices == 2
    line = usage_error(p, ["--devices", "3"], capsys)
    assert line == "prog: error: argument --devices: expected a device count from 1 to 2 (the devices available), found 3"
    assert "argument --gpus: expected a device count from 1 to 1" in usage_error(p, ["--gpus", "2"], capsys)
    assert "expected a positive integer" in usage_error(p, ["--devices", "0"], capsys)


class FakeDevice:
    def __init__(self, platform):
        self.platform = platform


def test_check_device_count_after_jax_started(capsys):
    p = argparse.ArgumentParser(prog="prog")
    cpus = [FakeDevice("cpu")] * 2
    assert cli.check_device_count(p, 2, devices=cpus) == 2
    assert cli.check_device_count(p, None, devices=cpus) is None
    with pytest.raises(SystemExit) as e:
        cli.check_device_count(p, 4, devices=cpus)
    assert e.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == ("prog: error: argument --devices: expected a device count from 1 to 2 (JAX sees 2 cpu), found 4 "
                    "(on a CPU, --cpu-devices 4 exposes 4 devices)")
    with pytest.raises(SystemExit):
        cli.check_device_count(p, 3, devices=[FakeDevice("gpu")])
    assert "(JAX sees 1 gpu), found 3" in capsys.readouterr().err


# ----------------------------------------------------------------------------- run_main
def raising(exc):
    def main(argv):
        raise exc
    return main


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err[len("error: "):-1]


def test_return_values_and_usage_errors_pass_through(capsys):
    assert cli.run_main(lambda argv: 0, []) == 0
    assert cli.run_main(lambda argv: None, []) == 0
    assert cli.run_main(lambda argv: 3, []) == 3

    def main(argv):
        parser_with(epochs=cli.positive_int).parse_args(argv)

    with pytest.raises(SystemExit) as e:
        cli.run_main(main, ["--epochs", "0"])
    assert e.value.code == 2


def test_a_user_error_is_one_line_with_its_hint(capsys):
    assert cli.run_main(raising(UserError("data/x.h5: expected\nan HDF5 file.", hint="Rebuild it.")), []) == 1
    assert one_error_line(capsys) == "data/x.h5: expected an HDF5 file. Rebuild it."


@pytest.mark.parametrize("err,expect", [
    (errno.ENOSPC, "no space left on the device (results/q1/summary.json): free some space in results/q1/"),
    (errno.EACCES, "permission denied (results/q1/summary.json): check the permissions of results/q1/summary.json "
                   "and of results/q1/ for this user"),
    (errno.EROFS, "results/q1/summary.json is on a read-only file system"),
])
def test_os_errors_name_the_path_and_what_to_do(err, expect, capsys):
    e = OSError(err, os.strerror(err), "results/q1/summary.json")
    assert cli.run_main(raising(e), []) == 1
    line = one_error_line(capsys)
    assert line.startswith(expect), line


def test_storage_error_reads_the_errno_h5py_writes_in_its_message():
    e = OSError("Can't write data (file write failed: time = x, filename = 'r/run.h5', errno = 28, "
                "error message = 'No space left on device')")
    s = storage_error(e, "r/run.h5", doing="writing")
    assert isinstance(s, OSError) and isinstance(s, UserError) and s.errno == errno.ENOSPC
    assert str(s).startswith("no space left on the device while writing r/run.h5: free some space in r/")


def test_a_diverged_run_is_one_line(capsys):
    from mp_jax.engine.train import NonFiniteError

    e = NonFiniteError("q3 gru: the training loss became non-finite at epoch 4; lower the learning rate.", 4, None)
    assert cli.run_main(raising(e), []) == 1
    assert one_error_line(capsys) == ("training diverged: q3 gru: the training loss became non-finite at epoch 4; "
                                      "lower the learning rate.")


def test_data_and_lock_errors_are_user_errors(tmp_path, capsys):
    from mp_jax.data import DataError, load_patches
    from mp_jax.runtime.lock import FolderLock

    with pytest.raises(DataError) as e:
        load_patches(tmp_path / "data1.h5")
    assert cli.run_main(raising(e.value), []) == 1
    assert one_error_line(capsys).startswith(f"{tmp_path / 'data1.h5'}: file not found.")
    with FolderLock(tmp_path):
        assert cli.run_main(lambda argv: FolderLock(tmp_path).acquire(), []) == 1
    assert one_error_line(capsys).startswith(f"the results folder {tmp_path} is in use by another run (pid {os.getpid()}")


def test_an_unexpected_error_is_one_line_that_points_to_debug(capsys):
    assert cli.run_main(raising(RuntimeError("boom\n  at some deep place")), []) == 1
    assert one_error_line(capsys) == ("RuntimeError: boom (an unexpected error; run again with --debug "
                                      "(or MP_JAX_DEBUG=1) to see the traceback)")


def test_debug_flag_or_environment_shows_the_traceback(monkeypatch):
    seen = []

    def main(argv):
        seen.append(list(argv))
        raise RuntimeError("boom")

    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(RuntimeError, match="boom"):
        cli.run_main(main, ["--quick", "--debug", "--", "--debug"])
    assert seen[-1] == ["--quick", "--", "--debug"]  # --debug is run_main's, not main's
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.run_main(main, ["--quick"])
    monkeypatch.setenv(cli.DEBUG_ENV, "0")
    assert cli.run_main(main, ["--quick"]) == 1


def test_interrupt_is_one_line_with_status_130(capsys):
    assert cli.run_main(raising(KeyboardInterrupt()), []) == cli.EXIT_INTERRUPTED
    assert one_error_line(capsys) == "interrupted"


# ----------------------------------------------------------------------------- end to end
SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mp_jax.runtime import cli
    from mp_jax.runtime.lock import FolderLock

    def main(argv):
        folder = Path(argv[0])
        if argv[1] == "disk-full":
            raise OSError(28, "No space left on device", str(folder / "summary.json"))
        with FolderLock(folder):
            (folder / "started").write_text("")
            time.sleep(600)

    raise SystemExit(cli.run_main(main))
""")


def run_script(*args, env=None):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=env)


def test_exit_status_and_stderr_of_a_real_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV}
    proc = run_script(str(tmp_path), "disk-full", env=env)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 1
    assert err == (f"error: no space left on the device ({tmp_path}/summary.json): free some space in "
                   f"{tmp_path}/ (or write to another folder), then run the same command again\n")
    proc = run_script(str(tmp_path), "disk-full", env=dict(env, MP_JAX_DEBUG="1"))
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in err and "OSError: [Errno 28]" in err


def test_sigterm_releases_the_lock(tmp_path):
    import signal
    import time

    proc = run_script(str(tmp_path), "hold")
    deadline = time.monotonic() + HANG_GUARD_S
    while not (tmp_path / "started").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (tmp_path / ".lock").exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err == "error: terminated (SIGTERM)\n"
    assert not (tmp_path / ".lock").exists()
