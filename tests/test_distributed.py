"""Data parallelism across processes (mp_jax.engine.distributed) on one machine, 127.0.0.1 only:
Q3's LSTM at tiny sizes in float64, 2 processes × 1 CPU device against 1 process × 2
devices; a process killed mid-run, the survivor's stop and the rerun's resumption.

Each run is a subprocess of tests/scripts/distributed_training.py with a bounded workload
(2 epochs of 27 sequences); the subprocess timeouts only guard against a hang.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mp_jax.engine import distributed
from mp_jax import launch

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

SCRIPT = Path(__file__).parent / "scripts" / "distributed_training.py"
HANG_GUARD_S = 1800  # a guard against a hung subprocess only, not a time limit
HEARTBEAT_S = 5  # the runtime's heartbeat timeout in these runs
# After a kill, the survivor stops within the heartbeat timeout; the slack covers starting
# up again on a loaded machine, far below the runtime's 300 s shutdown barrier.
REACTION_SLACK_S = 120


def _env(cpu_devices=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES") and not k.startswith("MP_JAX_")}
    # XLA's optimizations off: tiny programs compiled once each (see conftest FAST_COMPILE)
    env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    return env


def _worker(out, cpu_devices, *extra):
    return [sys.executable, str(SCRIPT), "--out", str(out), "--cpu-devices", str(cpu_devices), *map(str, extra)]


def _pair(out, *extra):
    """Two processes of one run, joined through a free port on 127.0.0.1."""
    port = launch.free_port()
    return [subprocess.Popen(_worker(out, 1, "--coordinator", f"127.0.0.1:{port}", "--num-processes", 2,
                                     "--process-id", i, "--heartbeat-timeout", HEARTBEAT_S, *extra),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
            for i in range(2)]


def _finish(procs, what):
    outs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
            outs.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for i, (rc, _, stderr) in enumerate(outs):
        assert rc == 0, f"{what}, process {i}: status {rc}: {stderr[-3000:]}"
    return [_result(stdout) for _, stdout, _ in outs]


def _result(stdout):
    return json.loads([line for line in stdout.splitlines() if line.startswith("RESULT ")][-1][len("RESULT "):])


def _params(out):
    with np.load(Path(out) / "params.npz") as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def _max_diff(a, b):
    assert len(a) == len(b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process × 2 CPU devices and, side by side, 2 processes × 1 device started by the
    launcher (mp_jax.launch), each training 2 epochs from the same start."""
    root = tmp_path_factory.mktemp("distributed")
    single = subprocess.Popen(_worker(root / "single", 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env())
    launched = subprocess.Popen([sys.executable, "-m", "mp_jax.launch", "--processes", "2", "--cpu-devices", "1",
                                 "--heartbeat-timeout", str(HEARTBEAT_S), "--", *_worker(root / "multi", 1)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    (one,) = _finish([single], "1 process × 2 devices")
    try:
        stdout, stderr = launched.communicate(timeout=HANG_GUARD_S)
    finally:
        if launched.poll() is None:
            launched.kill()
            launched.communicate()
    assert launched.returncode == 0, stderr[-3000:]
    two = sorted((json.loads(line[len("RESULT "):]) for line in stdout.splitlines() if line.startswith("RESULT ")),
                 key=lambda r: r["process"])
    return {"root": root, "one": one, "two": two}


def test_two_processes_train_to_the_parameters_of_one_process_with_two_devices(runs):
    assert runs["one"]["processes"] == 1 and runs["one"]["local_devices"] == 2
    assert [r["process"] for r in runs["two"]] == [0, 1]
    assert all(r["processes"] == 2 and r["local_devices"] == 1 and r["mesh_devices"] == 2 for r in runs["two"])
    diff = _max_diff(_params(runs["root"] / "multi"), _params(runs["root"] / "single"))
    assert diff < 1e-10, f"2 processes × 1 device differ from 1 process × 2 devices by {diff}"
    np.testing.assert_allclose(runs["two"][0]["train_loss"], runs["one"]["train_loss"], rtol=1e-12)


def test_each_process_feeds_only_its_half_of_every_minibatch(runs):
    assert [r["fed_rows"] for r in runs["two"]] == [[4, 8], [4, 8]]
    assert runs["one"]["fed_rows"] is None  # one process: the engine's own epoch


def test_only_process_zero_writes(runs):
    multi = runs["root"] / "multi"
    assert sorted(p.name for p in multi.iterdir()) == ["checkpoint.h5", "epoch-1", "epoch-2", "params.npz"]
    assert runs["two"][1]["epochs_run"] == 2  # process 1 trained too, and wrote nothing


def test_a_killed_process_stops_the_other_and_a_rerun_resumes(runs, tmp_path):
    out = tmp_path / "killed"
    procs = _pair(out, "--hold-after", 1)  # process 1 waits after epoch 1; process 0 goes on
    try:
        t0 = time.monotonic()
        while not (out / "epoch-1").exists():
            assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
            assert time.monotonic() - t0 < HANG_GUARD_S, "no checkpoint after epoch 1"
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].communicate()
        killed_at = time.monotonic()
        _, stderr = procs[0].communicate(timeout=HEARTBEAT_S + REACTION_SLACK_S)
        reaction_s = time.monotonic() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert procs[0].returncode == 1, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: process 0 of 2: another process of the distributed run stopped ("), last
    assert "resume from the last checkpoint" in last
    print(f"survivor stopped {reaction_s:.1f} s after the kill (heartbeat timeout {HEARTBEAT_S} s)")
    assert not (out / "epoch-2").exists() and not (out / "params.npz").exists()

    rerun = _finish(_pair(out), "the rerun")
    assert [r["start_epoch"] for r in rerun] == [1, 1]  # both resumed after epoch 1
    assert [r["epochs_run"] for r in rerun] == [2, 2]
    diff = _max_diff(_params(out), _params(runs["root"] / "multi"))
    assert diff < 1e-10, f"the resumed run ends {diff} away from the uninterrupted one"


@pytest.mark.parametrize("argv, message", [
    (["--coordinator", "127.0.0.1:9"], "a distributed run needs --coordinator, --num-processes and --process-id"),
    (["--coordinator", "127.0.0.1:9", "--num-processes", "2", "--process-id", "2"],
     "argument --process-id: expected 0..1 (--num-processes 2), found 2"),
    (["--coordinator", "localhost"], "argument --coordinator: expected HOST:PORT"),
    (["--coordinator", "h:70000"], "argument --coordinator: expected HOST:PORT"),
    (["--num-processes", "0"], "argument --num-processes: expected a positive integer"),
])
def test_bad_flags_are_one_line_usage_errors(argv, message, capsys, monkeypatch):
    import argparse

    for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    p = argparse.ArgumentParser(prog="prog")
    distributed.add_arguments(p)
    with pytest.raises(SystemExit) as e:
        distributed.settings_from_args(p.parse_args(argv), p)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_flags_fall_back_on_the_environment_the_launcher_sets(monkeypatch):
    import argparse

    p = argparse.ArgumentParser(prog="prog")
    distributed.add_arguments(p)
    for name, value in launch.environments(3, 4321, heartbeat=7)[2].items():
        if name.startswith("MP_JAX_"):
            monkeypatch.setenv(name, value)
    assert distributed.settings_from_args(p.parse_args([]), p) == distributed.Settings("127.0.0.1:4321", 3, 2, 7)
    assert distributed.settings_from_args(p.parse_args(["--process-id", "0"]), p).process_id == 0
    for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(name)
    assert distributed.settings_from_args(p.parse_args([]), p) is None  # one process
