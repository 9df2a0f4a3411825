"""Data parallelism on 4 simulated CPU devices (in a subprocess, so other tests keep one)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

SCRIPT = Path(__file__).parent / "scripts" / "sharded_training.py"
# A guard against a hung subprocess only, not a time limit: far above the minute or so the
# script takes on two idle cores, so a loaded machine is never mistaken for a failure.
HANG_GUARD_S = 1800


@pytest.fixture(scope="module")
def result():
    """The script's two halves as two processes side by side (each compiles on one core)."""
    # XLA's optimizations off: the script compiles many tiny programs once each (see conftest FAST_COMPILE)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    procs = {part: subprocess.Popen([sys.executable, str(SCRIPT), part], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env)
             for part in ("main", "reuse")}
    out = {}
    try:
        for part, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
            assert proc.returncode == 0, f"{part}: {stderr[-3000:]}"
            line = [l for l in stdout.splitlines() if l.startswith("RESULT ")][-1]
            out.update(json.loads(line[len("RESULT "):]))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return out


def test_one_two_four_devices_train_to_the_same_parameters(result):
    assert result["devices"] == [1, 2, 4]
    for n, diff in result["max_diff"].items():
        assert diff < 1e-5, f"{n} devices differ from 1 device by {diff}"


def test_manual_gradients_under_sharding_match_jax_grad(result):
    assert result["rows_per_device"] == {"1": [32], "2": [16], "4": [8]}
    for n, err in result["sharded_grad_rel_err"].items():
        assert err < 1e-5, f"{n} devices: relative error {err}"


def test_a_batch_that_does_not_divide_is_a_clear_error(result):
    assert "batch size 30 does not divide across 4 devices" in result["indivisible_error"]


def test_per_example_mean_data_parallel_trains_like_one_device(result):
    for n, diff in result["per_example_max_diff"].items():
        assert diff < 1e-5, f"{n} devices (shard_map + pmean) differ from 1 device by {diff}"


def test_recurrent_gradients_averaged_over_shards_equal_the_full_batch_float64(result):
    # every cell with an even split (8 examples over 2 or 4 devices) and with a remainder (5 over 2)
    assert sorted(result["recurrent_rel_err"]) == ["gru N=5 k=2", "gru N=8 k=4", "lstm N=5 k=2", "lstm N=8 k=4",
                                                   "rnn N=5 k=2", "rnn N=8 k=2"]
    for case, err in result["recurrent_rel_err"].items():
        assert err < 1e-10, f"{case}: relative error {err}"


def test_one_all_reduce_of_one_flat_buffer_per_step(result):
    # the loss and the GRU's seven gradient leaves travel as ONE operand of ONE all-reduce
    assert result["all_reduce_operands"] == [1]


def test_the_flat_all_reduce_gives_each_leaf_back_in_its_own_dtype(result):
    assert result["mixed_dtypes"] == ["float32", "float64", "float32"]
    assert result["mixed_values"] == [17.5, 17.5, 17.5]  # mean of 0², 1², …, 7² over both shards


def test_reused_gru_and_lstm_buffers_split_over_devices_train_bit_for_bit_as_without(result):
    assert result["reusing_stays_carrying"]
    assert result["reusing_max_diff"] == {"gru4": 0.0, "lstm2": 0.0}


def test_shard_averaging_is_not_the_autoencoder_gradient(result):
    # why the autoencoder keeps XLA's whole-step partitioning: its sparsity term is not a
    # mean over examples, so averaging per-shard gradients changes it
    assert result["autoencoder_sharded_rel_err"] > 1e-6


def test_cpu_cores_as_devices_only_for_runs_that_ask(result):
    assert result["cpu_mesh"] == {"32": 4, "6": 3, "5": None}
    assert result["run_mesh_default"] == [4, None]  # recurrences split; the rest one device
    assert result["run_mesh_explicit"] == [2, 2]  # --devices 2 applies to every run
    assert result["use_cpu_cores_too_late"] == 4  # JAX had started: the count it has


def test_use_cpu_cores_defaults_to_one_device_per_usable_core():
    code = ("import os, jax; from mp_jax.engine import parallel; n = parallel.use_cpu_cores(); "
            "print(n, len(jax.devices('cpu')), len(os.sched_getaffinity(0)))")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S,
                         env=dict(env, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    n, have, cores = map(int, out.stdout.split())
    assert n == have == cores
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S,
                         env=dict(env, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="3"))
    assert out.returncode == 0 and out.stdout.split()[:2] == ["3", "3"], out.stdout + out.stderr[-2000:]
