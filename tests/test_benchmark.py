"""The benchmark's pre-timing agreement check, on tiny sizes (no timing here)."""
import json
import os

import numpy as np
import pytest

from experiments import benchmark

TINY = {
    "ae": dict(benchmark.FULL["ae"], hidden=8),
    "lm": dict(benchmark.FULL["lm"], dim=4, hidden=16),
    "rnn": dict(benchmark.FULL["rnn"], steps=7, hidden=8, mlp=5),
}


def tiny(w):
    return dict(TINY["rnn" if w in ("rnn", "lstm", "gru") else w])


@pytest.mark.parametrize("workload", benchmark.ALL_WORKLOADS)
def test_all_implementations_agree_on_one_batch(workload):
    res = benchmark.check_agreement(workload, tiny(workload), n_check=8)
    assert res["jax_grad"]["ok"] and res["numpy"]["ok"], res
    assert res.get("torch", {"ok": True})["ok"] in (True, None), res


def test_a_wrong_implementation_is_caught(monkeypatch):
    real = benchmark.numpy_fn

    def wrong(workload, hyper):
        fn = real(workload, hyper)

        def scaled(*a):
            loss, g = fn(*a)
            return loss, {k: v * (1.01 if k == "W2" else 1.0) for k, v in g.items()}
        return scaled

    monkeypatch.setattr(benchmark, "numpy_fn", wrong)
    res = benchmark.check_agreement("lm", tiny("lm"), n_check=8)
    assert res["numpy"]["ok"] is False and res["jax_grad"]["ok"]


def test_flop_counts_scale_with_the_work():
    s = tiny("lstm")
    assert benchmark.flops_per_epoch("lstm", s) > 3.5 * benchmark.flops_per_epoch("rnn", s) > 0
    s2 = dict(s, n=2 * s["n"])
    assert benchmark.flops_per_epoch("gru", s2) == pytest.approx(2 * benchmark.flops_per_epoch("gru", s))


def test_sweep_timing_runs_on_tiny_sizes_and_returns_both_ways(tmp_path):
    from experiments import bench_sweep

    sizes = {"q3": dict(bench_sweep.QUICK["q3"], cell="rnn", members=2, n=32, n_val=8, steps=3, hidden=4, mlp=4,
                        batch=16, epochs=1),
             "q1": dict(bench_sweep.QUICK["q1"], n=64, hidden=4, iters=2, chunk=1,
                        beta_rho=bench_sweep.FULL["q1"]["beta_rho"][:2])}
    rows = bench_sweep.run(sizes=sizes, warmup=False)
    got = {(r["workload"], r["implementation"]) for r in rows}
    assert got == {(w, i) for w in ("sweep_q3_seeds", "sweep_q1_beta_rho") for i in ("vmap", "sequential")}
    for r in rows:
        assert r["seconds"] >= 0 and r["members"] == 2 and r["max_abs_param_difference"] < 1e-4
    path = tmp_path / "bench.json"
    path.write_text('[{"workload": "ae"}]')
    bench_sweep.write_rows(path, rows, keep_existing=True)
    assert [r["workload"] for r in json.loads(path.read_text())][:2] == ["ae", "sweep_q3_seeds"]


def test_worker_splits_the_recurrences_over_the_cpu_cores_and_not_the_others():
    # each worker is its own process, so it can choose its CPU device count before JAX starts;
    # on the CPU even on a GPU machine (on a GPU nothing is split: see the fake-run test below)
    import subprocess
    import sys

    def worker(workload, impl):
        proc = subprocess.run([sys.executable, "-m", "experiments.benchmark", "--worker", workload, impl,
                               "--quick", "--reps", "1"], capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, JAX_NUM_CPU_DEVICES="2", JAX_PLATFORMS="cpu"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert worker("rnn", "manual")["devices"] == 2
    assert worker("rnn", "jax_grad_one_device")["devices"] == 1
    row = worker("ae", "manual")
    assert row["devices"] == 1 and len(row["times"]) == 1 and row["times"][0] > 0
    pair = worker("ae", "interleaved")  # manual and jax_grad in one process, epochs in turn
    assert pair["devices"] == 1 and len(pair["manual"]) == len(pair["jax_grad"]) == 1
    assert pair["manual"][0] > 0 and pair["jax_grad"][0] > 0


def test_table_prints_the_interleaved_ratio(capsys):
    rows = [{"workload": "matmul_peak", "gflops": 100.0},
            {"workload": "ae", "implementation": "manual", "seconds_per_epoch": 1.0, "gflops": 10.0,
             "peak_fraction": 0.1, "peak_rss_mb": 300.0, "devices": 1},
            {"workload": "ae", "implementation": "jax_grad", "seconds_per_epoch": 2.0, "gflops": 5.0,
             "peak_fraction": 0.05, "peak_rss_mb": 300.0, "devices": 1},
            {"workload": "ae", "kind": "interleaved", "manual_seconds_per_epoch": 1.5,
             "jax_grad_seconds_per_epoch": 2.0, "ratio": 0.75, "ratio_range": [0.7, 0.9], "n_pairs": 4}]
    benchmark.print_table(rows, [], quick=True)
    out = capsys.readouterr().out
    assert "/jax_grad 0.50" in out  # the separate-process rows
    assert "ae    0.75   (pairs 0.70-0.90; manual 1.500 s, jax_grad 2.000 s, 4 pairs)" in out and "ONE process" in out


def test_only_the_recurrences_jax_rows_split_over_cpu_cores_and_never_on_a_gpu():
    split = benchmark.splits_over_cpu_cores
    assert split("gru", "manual", "cpu") and split("lstm", "jax_grad", "cpu") and split("rnn", "interleaved", "cpu")
    assert not split("gru", "manual_one_device", "cpu") and not split("ae", "manual", "cpu")
    assert not split("lm", "jax_grad", "cpu")
    assert not any(split("gru", impl, "gpu") for impl in ("manual", "jax_grad", "interleaved"))


def _fake_run(monkeypatch, platform, impls, models=("ae", "gru")):
    """benchmark.run with its processes replaced by fakes that record what was spawned."""
    spawned = []

    def spawn(workload, impl, quick, reps):
        spawned.append((workload, impl))
        if impl == "matmul":
            return {"gflops": 100.0, "platform": platform, "device_kind": "fake"}
        if impl == "interleaved":
            return {"manual": [1.0] * reps, "jax_grad": [2.0] * reps, "devices": 1, "platform": platform}
        sec = {"manual": 1.0, "jax_grad": 2.0}.get(impl.replace("_one_device", ""), 4.0)
        return {"times": [sec] * reps, "peak_rss_mb": 10.0, "devices": 1,
                "platform": platform if impl in benchmark.JAX_IMPLS else "cpu"}

    monkeypatch.setattr(benchmark, "spawn", spawn)
    monkeypatch.setattr(benchmark, "check_agreement", lambda w, s: {"jax_grad": {"ok": True, "loss_rel_err": 0.0,
                                                                                 "grad_rel_err": 0.0}})
    monkeypatch.setattr(benchmark, "memory_growth", lambda: [])
    monkeypatch.setattr(benchmark, "jax_platform", lambda: platform)
    monkeypatch.setattr(benchmark, "torch_available", lambda: False)
    out = benchmark.run(list(models), quick=True, reps=2, rounds=1, impls=impls)
    return spawned, out


def test_impls_times_a_subset_and_always_the_manual_row(monkeypatch, capsys):
    spawned, out = _fake_run(monkeypatch, "cpu", ["numpy"])
    assert set(spawned) == {("matmul", "matmul"), ("ae", "manual"), ("ae", "numpy"), ("gru", "manual"), ("gru", "numpy")}
    rows = [r for r in out["rows"] if r.get("implementation")]
    assert {(r["workload"], r["implementation"]) for r in rows} == {(w, i) for w in ("ae", "gru") for i in ("manual", "numpy")}
    assert "/numpy 0.25" in capsys.readouterr().out
    assert not [r for r in out["rows"] if r.get("kind") == "interleaved"]  # no jax_grad row, no pair


def test_on_a_gpu_the_one_device_rows_are_left_out_and_rows_name_the_platform(monkeypatch, capsys):
    spawned, out = _fake_run(monkeypatch, "gpu", None)
    assert not [s for s in spawned if s[1] in benchmark.ONE_DEVICE]
    assert ("gru", "interleaved") in spawned and ("gru", "numpy") in spawned
    rows = {(r["workload"], r["implementation"]): r for r in out["rows"] if r.get("implementation")}
    assert rows[("gru", "manual")]["platform"] == "gpu" and rows[("gru", "numpy")]["platform"] == "cpu"
    assert out["rows"][0]["platform"] == "gpu"
    printed = capsys.readouterr().out
    assert "JAX implementations on" in printed and "(gpu), one device" in printed


def test_unknown_impls_are_refused():
    with pytest.raises(SystemExit, match="--impls: unknown"):
        benchmark.main(["--impls", "manual,cuda_magic", "--check-only"])
