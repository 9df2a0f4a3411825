"""Data parallelism on 4 simulated CPU devices (in a subprocess, so other tests keep one)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "sharded_training.py"


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


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
