"""The epoch benchmark (``python -m benchmarks``): its pre-timing agreement check, its worker
processes and its tables, on tiny sizes (no timing is asserted)."""
import json
import os
import subprocess
import sys

import pytest

from benchmarks import epochs as benchmark

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)

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
    if benchmark.has_reference(workload):  # the reference manual path against the fast one
        assert res["manual_reference"]["ok"] and res["manual_reference"]["grad_rel_err"] < 1e-4, res
    else:
        assert "manual_reference" not in res


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


def test_a_wrong_reference_path_is_caught(monkeypatch):
    real = benchmark.jax_fns

    def wrong(workload, hyper):
        fns = real(workload, hyper)

        def off(p, b):
            loss, g = fns.reference(p, b)
            return loss, g._replace(w_out=1.01 * g.w_out)
        return fns._replace(reference=off)

    monkeypatch.setattr(benchmark, "jax_fns", wrong)
    res = benchmark.check_agreement("gru", tiny("gru"), n_check=8)
    assert res["manual_reference"]["ok"] is False and res["jax_grad"]["ok"] and res["numpy"]["ok"]


def test_each_jax_implementation_trains_with_its_own_path():
    fns = benchmark.jax_fns("lstm", {})
    assert benchmark.loss_and_grad_of(fns, "manual") is fns.manual
    assert benchmark.loss_and_grad_of(fns, "manual_one_device") is fns.manual
    assert benchmark.loss_and_grad_of(fns, "manual_reference") is fns.reference is not fns.manual
    with pytest.raises(ValueError, match="one manual path only"):
        benchmark.loss_and_grad_of(benchmark.jax_fns("ae", dict(lam=5e-4, beta=2.2, rho=0.026)), "manual_reference")
    assert benchmark.implementations("ae", benchmark.IMPLS + benchmark.ONE_DEVICE) == [
        "manual", "jax_grad", "numpy", "torch"]
    assert "manual_reference" in benchmark.implementations("lm", benchmark.IMPLS)
    assert not set(benchmark.ONE_DEVICE) & set(benchmark.implementations("lm", benchmark.ONE_DEVICE))


def test_flop_counts_scale_with_the_work():
    s = tiny("lstm")
    assert benchmark.flops_per_epoch("lstm", s) > 3.5 * benchmark.flops_per_epoch("rnn", s) > 0
    s2 = dict(s, n=2 * s["n"])
    assert benchmark.flops_per_epoch("gru", s2) == pytest.approx(2 * benchmark.flops_per_epoch("gru", s))


def test_memory_rows_for_both_manual_paths_grow_with_the_sequence():
    rows = benchmark.memory_growth("lstm", steps=(4, 12), batches=(2,), hidden=4)
    if not rows:
        pytest.skip("this backend reports no temporary buffer sizes")
    by = {(r["implementation"], r["steps"]): r["temp_mb"] for r in rows}
    assert set(by) == {(i, t) for i in ("manual", "manual_reference") for t in (4, 12)}
    for impl in ("manual", "manual_reference"):
        assert by[(impl, 12)] > by[(impl, 4)] > 0


def test_sweep_timing_runs_on_tiny_sizes_and_returns_both_ways(tmp_path):
    from benchmarks import sweeps

    sizes = {"q3": dict(sweeps.QUICK["q3"], cell="rnn", members=2, n=32, n_val=8, steps=3, hidden=4, mlp=4,
                        batch=16, epochs=1),
             "q1": dict(sweeps.QUICK["q1"], n=64, hidden=4, iters=2, chunk=1,
                        beta_rho=sweeps.FULL["q1"]["beta_rho"][:2])}
    rows = sweeps.run(sizes=sizes, warmup=False)
    got = {(r["workload"], r["implementation"]) for r in rows}
    assert got == {(w, i) for w in ("sweep_q3_seeds", "sweep_q1_beta_rho") for i in ("vmap", "sequential")}
    for r in rows:
        assert r["seconds"] >= 0 and r["members"] == 2 and r["max_abs_param_difference"] < 1e-4
    path = tmp_path / "bench.json"
    path.write_text('[{"workload": "ae"}]')
    sweeps.write_rows(path, rows, keep_existing=True)
    assert [r["workload"] for r in json.loads(path.read_text())][:2] == ["ae", "sweep_q3_seeds"]


def test_the_sweep_benchmark_covers_q1_beta_rho_study_and_q3_seed_sweep():
    import dataclasses

    from benchmarks import sweeps
    from experiments import q1_autoencoder

    # Q1's configuration: the module's dataclass with a beta_rho field (whatever its name)
    configs = [c for c in vars(q1_autoencoder).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
               and "beta_rho" in {f.name for f in dataclasses.fields(c)}]
    assert configs, "experiments.q1_autoencoder has no configuration dataclass with a beta_rho field"
    default = {f.name: f.default for f in dataclasses.fields(configs[0])}["beta_rho"]
    assert tuple(sweeps.FULL["q1"]["beta_rho"]) == tuple(default)
    assert sweeps.FULL["q3"]["members"] > 1 and sweeps.FULL["q3"]["cell"] in ("rnn", "lstm", "gru")


def _worker(workload, impl, *extra):
    # each worker is its own process, so it can choose its CPU device count before JAX starts;
    # on the CPU even on a GPU machine (on a GPU nothing is split: see the fake-run test below)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--worker", workload, impl, "--quick",
                           "--reps", "1", *extra], capture_output=True, text=True,
                          env=dict(os.environ, JAX_NUM_CPU_DEVICES="2", JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_worker_splits_the_recurrences_over_the_cpu_cores_and_not_the_others():
    # (the fast path's split: the interleaved worker's below)
    assert _worker("rnn", "manual_reference")["devices"] == 2
    assert _worker("rnn", "jax_grad_one_device")["devices"] == 1
    row = _worker("ae", "manual")
    assert row["devices"] == 1 and len(row["times"]) == 1 and row["times"][0] > 0


def test_interleaved_worker_times_the_jax_paths_in_one_process():
    pair = _worker("ae", "interleaved")  # the autoencoder: no reference path, manual and jax_grad
    assert pair["devices"] == 1 and set(pair["times"]) == {"manual", "jax_grad"}
    assert all(len(v) == 1 and v[0] > 0 for v in pair["times"].values())
    trio = _worker("rnn", "interleaved", "--interleave", "manual,manual_reference")
    assert trio["devices"] == 2 and set(trio["times"]) == {"manual", "manual_reference"}


def test_interleaved_rows_are_the_per_pair_ratios():
    pairs = {"gru": {"manual": [1.0, 2.0, 1.0], "jax_grad": [2.0, 2.0, 4.0], "manual_reference": [3.0, 4.0, 1.5]},
             "ae": {"manual": [1.0], "jax_grad": [0.5]}}
    rows = {(r["workload"], r["numerator"], r["denominator"]): r for r in benchmark.interleaved_rows(pairs)}
    assert set(rows) == {("gru", "manual", "jax_grad"), ("gru", "manual_reference", "manual"),
                         ("ae", "manual", "jax_grad")}
    fast = rows[("gru", "manual", "jax_grad")]  # pairs 0.5, 1.0, 0.25
    assert fast["ratio"] == 0.5 and fast["ratio_range"] == [0.25, 1.0] and fast["n_pairs"] == 3
    assert fast["numerator_seconds_per_epoch"] == 1.0 and fast["denominator_seconds_per_epoch"] == 2.0
    ref = rows[("gru", "manual_reference", "manual")]  # pairs 3.0, 2.0, 1.5
    assert ref["ratio"] == 2.0 and ref["ratio_range"] == [1.5, 3.0]
    assert rows[("ae", "manual", "jax_grad")]["ratio"] == 2.0


def test_table_prints_both_interleaved_ratios(capsys):
    rows = [{"workload": "matmul_peak", "gflops": 100.0},
            {"workload": "lm", "implementation": "manual", "seconds_per_epoch": 1.0, "gflops": 10.0,
             "peak_fraction": 0.1, "peak_rss_mb": 300.0, "devices": 1},
            {"workload": "lm", "implementation": "manual_reference", "seconds_per_epoch": 1.25, "gflops": 8.0,
             "peak_fraction": 0.08, "peak_rss_mb": 300.0, "devices": 1},
            {"workload": "lm", "implementation": "jax_grad", "seconds_per_epoch": 2.0, "gflops": 5.0,
             "peak_fraction": 0.05, "peak_rss_mb": 300.0, "devices": 1}]
    rows += benchmark.interleaved_rows({"lm": {"manual": [1.5, 1.5], "jax_grad": [2.0, 2.0],
                                               "manual_reference": [1.8, 1.8]}})
    benchmark.print_table(rows, [], quick=True)
    out = capsys.readouterr().out
    assert "/jax_grad 0.50" in out and "/manual_reference 0.80" in out  # the separate-process rows
    assert "lm    manual / jax_grad           0.75   (pairs 0.75-0.75; manual 1.500 s, jax_grad 2.000 s, 2 pairs)" in out
    assert "lm    manual_reference / manual   1.20   (pairs 1.20-1.20; manual_reference 1.800 s" in out
    assert "ONE process" in out


def test_only_the_recurrences_jax_rows_split_over_cpu_cores_and_never_on_a_gpu():
    split = benchmark.splits_over_cpu_cores
    assert split("gru", "manual", "cpu") and split("lstm", "jax_grad", "cpu") and split("rnn", "interleaved", "cpu")
    assert split("lstm", "manual_reference", "cpu")
    assert not split("gru", "manual_one_device", "cpu") and not split("ae", "manual", "cpu")
    assert not split("lm", "jax_grad", "cpu") and not split("lm", "manual_reference", "cpu")
    assert not any(split("gru", impl, "gpu") for impl in ("manual", "manual_reference", "jax_grad", "interleaved"))


def _fake_run(monkeypatch, platform, impls, models=("ae", "gru")):
    """benchmark.run with its processes replaced by fakes that record what was spawned."""
    spawned, together = [], {}

    def spawn(workload, impl, quick, reps, interleave=None):
        spawned.append((workload, impl))
        if impl == "matmul":
            return {"gflops": 100.0, "platform": platform, "device_kind": "fake"}
        if impl == "interleaved":
            together[workload] = list(interleave)
            sec = {"manual": 1.0, "manual_reference": 1.5, "jax_grad": 2.0}
            return {"times": {i: [sec[i]] * reps for i in interleave}, "devices": 1, "platform": platform}
        sec = {"manual": 1.0, "manual_reference": 1.5, "jax_grad": 2.0}.get(impl.replace("_one_device", ""), 4.0)
        return {"times": [sec] * reps, "peak_rss_mb": 10.0, "devices": 1,
                "platform": platform if impl in benchmark.JAX_IMPLS else "cpu"}

    monkeypatch.setattr(benchmark, "spawn", spawn)
    monkeypatch.setattr(benchmark, "check_agreement", lambda w, s: {"jax_grad": {"ok": True, "loss_rel_err": 0.0,
                                                                                 "grad_rel_err": 0.0}})
    monkeypatch.setattr(benchmark, "memory_growth", lambda **kw: [])
    monkeypatch.setattr(benchmark, "jax_platform", lambda: platform)
    monkeypatch.setattr(benchmark, "torch_available", lambda: False)
    out = benchmark.run(list(models), quick=True, reps=2, rounds=1, impls=impls)
    return spawned, together, out


def test_every_workload_times_its_paths_and_interleaves_them(monkeypatch, capsys):
    spawned, together, out = _fake_run(monkeypatch, "cpu", None)
    assert ("ae", "manual_reference") not in spawned and ("gru", "manual_reference") in spawned
    assert ("gru", "manual_one_device") in spawned and ("ae", "manual_one_device") not in spawned
    assert together == {"ae": ["manual", "jax_grad"], "gru": ["manual", "manual_reference", "jax_grad"]}
    ratios = {(r["workload"], r["numerator"], r["denominator"]): r["ratio"]
              for r in out["rows"] if r.get("kind") == "interleaved"}
    assert ratios == {("ae", "manual", "jax_grad"): 0.5, ("gru", "manual", "jax_grad"): 0.5,
                      ("gru", "manual_reference", "manual"): 1.5}
    printed = capsys.readouterr().out
    assert "gru   manual_reference / manual   1.50" in printed
    assert "ae: one manual path only" in printed


def test_impls_times_a_subset_and_always_the_manual_row(monkeypatch, capsys):
    spawned, together, out = _fake_run(monkeypatch, "cpu", ["numpy"])
    assert set(spawned) == {("matmul", "matmul"), ("ae", "manual"), ("ae", "numpy"), ("gru", "manual"), ("gru", "numpy")}
    rows = [r for r in out["rows"] if r.get("implementation")]
    assert {(r["workload"], r["implementation"]) for r in rows} == {(w, i) for w in ("ae", "gru") for i in ("manual", "numpy")}
    assert "/numpy 0.25" in capsys.readouterr().out
    assert not together and not [r for r in out["rows"] if r.get("kind") == "interleaved"]  # one JAX path: no pair


def test_impls_manual_reference_interleaves_it_with_the_fast_path_only(monkeypatch):
    spawned, together, out = _fake_run(monkeypatch, "cpu", ["manual_reference"])
    assert together == {"gru": ["manual", "manual_reference"]}  # the autoencoder: one path, no pair
    assert ("ae", "manual_reference") not in spawned


def test_on_a_gpu_the_one_device_rows_are_left_out_and_rows_name_the_platform(monkeypatch, capsys):
    spawned, together, out = _fake_run(monkeypatch, "gpu", None)
    assert not [s for s in spawned if s[1] in benchmark.ONE_DEVICE]
    assert ("gru", "interleaved") in spawned and ("gru", "numpy") in spawned
    rows = {(r["workload"], r["implementation"]): r for r in out["rows"] if r.get("implementation")}
    assert rows[("gru", "manual")]["platform"] == "gpu" and rows[("gru", "numpy")]["platform"] == "cpu"
    assert out["rows"][0]["platform"] == "gpu"
    printed = capsys.readouterr().out
    assert "JAX implementations on" in printed and "(gpu), one device" in printed


@pytest.mark.parametrize("flags,message", [
    (["--impls", "manual,cuda_magic", "--check-only"], "--impls: unknown"),
    (["--models", "ae,transformer", "--check-only"], "--models: unknown"),
])
def test_unknown_names_are_refused(flags, message):
    with pytest.raises(SystemExit, match=message):
        benchmark.main(flags)


def test_worker_refuses_a_reference_row_for_the_autoencoder():
    with pytest.raises(SystemExit, match="one manual path only"):
        benchmark.worker("ae", "manual_reference", quick=True, reps=1)


def test_the_workloads_are_the_experiments_configs():
    """The benchmark times what the main job trains: its settings come from the configs."""
    from benchmarks import floor, sweeps, workloads
    from experiments.q1_autoencoder import Q1Config
    from experiments.q2_language_model import Q2Config
    from experiments.q3_activity import Q3Config

    q1, q2, q3 = Q1Config(), Q2Config(), Q3Config()
    for cell, lr in q3.learning_rates:
        s = benchmark.FULL[cell]
        assert (s["hidden"], s["mlp"], s["batch"], s["lr"], s["momentum"], s["clip"]) == (
            q3.hidden, q3.mlp, q3.batch_size, lr, q3.momentum, q3.clip_norm)
    ae = benchmark.FULL["ae"]
    assert (ae["batch"], ae["lr"], ae["momentum"], ae["hidden"], ae["lam"]) == (
        q1.sgd_batch, q1.sgd_lr, q1.sgd_momentum, q1.hidden, q1.hp.lam)
    lm = benchmark.FULL["lm"]
    assert (lm["batch"], lm["lr"], lm["momentum"], (lm["dim"], lm["hidden"])) == (
        q2.batch_size, q2.learning_rate, q2.momentum, q2.settings[0])
    assert sweeps.FULL["q3"]["momentum"] == q3.momentum and sweeps.FULL["q1"]["beta_rho"] == q1.beta_rho
    assert floor.FULL["gru"]["mlp"] == q3.mlp and floor.FULL["gru"]["batch"] * 2 == q3.batch_size
    assert workloads.q3("lstm")["lr"] == dict(q3.learning_rates)["lstm"]
