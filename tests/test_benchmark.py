"""The benchmark's pre-timing agreement check, on tiny sizes (no timing here)."""
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
