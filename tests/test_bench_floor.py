"""The matmul-floor benchmark (``python -m benchmarks.floor``) on tiny sizes: its floor holds
exactly the manual fast path's matmuls (no timing is asserted)."""
import json

import jax
import pytest

from benchmarks import floor as bench_floor

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

TINY = {
    "gru": dict(bench_floor.FULL["gru"], batch=4, steps=5, hidden=8, mlp=6, batches=2, one_core=False),
    "lm": dict(bench_floor.FULL["lm"], batch=10, vocab=13, dim=4, hidden=16, batches=3),
}


def expected_matmul_flops(workload, s):
    """The manual path's matmul FLOPs per batch, written out from its equations."""
    n = s["batch"]
    if workload == "gru":
        h, d, m, c, t = s["hidden"], s["inputs"], s["mlp"], s["classes"], s["steps"]
        step = 2 * n * h * (2 * h) + 2 * n * h * h  # h [U_z U_r], then (r ⊙ h) U_n
        head = 2 * n * h * m + 2 * n * m * c
        weights = 2 * (h + d + 1) * (t * n) * (3 * h)  # [h_{t−1}, x_t, 1]ᵀ δ over all (t, n)
        return 2 * t * step + 3 * head + weights  # forward + backward steps; head fwd + 2 bwd
    d3, p, v = 3 * s["dim"], s["hidden"], s["vocab"]
    return 3 * (2 * n * d3 * p + 2 * n * p * v)  # each of the two layers: forward, dx, dW


def first(batches):
    return jax.tree.map(lambda a: a[0], batches)


@pytest.mark.parametrize("workload", bench_floor.WORKLOADS)
def test_floor_holds_exactly_the_manual_matmuls(workload):
    s = TINY[workload]
    p, batches, floor_batches, manual, jax_grad, floor = bench_floor.make_problem(workload, s)
    want = expected_matmul_flops(workload, s)
    assert bench_floor.matmul_flops(manual, p, first(batches)) == want
    assert bench_floor.matmul_flops(floor, p, first(floor_batches)) == want
    # jax.grad's reference has at least these (the GRU's also projects its D = 3 inputs by matmul)
    assert bench_floor.matmul_flops(jax_grad, p, first(batches)) >= want


@pytest.mark.parametrize("workload", bench_floor.WORKLOADS)
def test_worker_times_the_three_programs(workload):
    row = bench_floor.worker(workload, False, 2, sizes=TINY[workload])
    assert row["workload"] == workload and row["matmul_flops_per_batch"] == expected_matmul_flops(workload, TINY[workload])
    for k in ("manual_ms", "jax_grad_ms", "floor_ms"):
        assert row[k] > 0
    assert row["floor_over_manual"] == pytest.approx(row["floor_ms"] / row["manual_ms"], abs=2e-3)


def test_a_floor_missing_a_matmul_is_refused(monkeypatch):
    real = bench_floor.make_problem

    def short_floor(workload, s, seed=0):
        p, b, fb, manual, jax_grad, _ = real(workload, s, seed)

        def floor(params, batch):  # lm_floor without de = δ_h W1ᵀ
            e = batch[2]
            a = e @ params.w_hid
            z = a @ params.w_out
            da = z @ params.w_out.T
            return z.sum(), (a.T @ z, e.T @ da)
        return p, b, fb, manual, jax_grad, jax.jit(floor)

    monkeypatch.setattr(bench_floor, "make_problem", short_floor)
    with pytest.raises(RuntimeError, match="not the manual path's"):
        bench_floor.worker("lm", False, 1, sizes=TINY["lm"])


def test_json_output_is_never_overwritten(tmp_path):
    out = tmp_path / "floor.json"
    out.write_text("[]")
    with pytest.raises(SystemExit, match="exists"):
        bench_floor.main(["--json", str(out), "--models", "lm"])
    assert out.read_text() == "[]"


def test_command_line_runs_a_worker_process_and_writes_json(tmp_path, capsys):
    out = tmp_path / "new" / "floor.json"
    assert bench_floor.main(["--quick", "--models", "lm", "--reps", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["workload"] for r in rows] == ["lm"] and rows[0]["floor_ms"] > 0
    assert "floor/jax_grad" in capsys.readouterr().out
