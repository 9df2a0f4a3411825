"""Sweeps as one program against their members one after another: seconds, side by side.

``python -m benchmarks --sweeps [--quick] [--models ''] [--json PATH]`` (or
``python -m benchmarks.sweeps [--quick] [--json PATH]``) times, in one process, the two
sweeps the experiments can train as one vmapped program (``--no-vmap`` trains their
members one by one), each both ways on the same data and initial parameters:

* ``sweep_q3_seeds`` — Q3's repeated seeds (``python -m experiments.q3_activity --seeds
  K``): M LSTM members (each its own initial parameters and shuffling key) trained by
  :func:`mp_jax.engine.sweep.fit_sweep` (``vmap``: one jitted program over the members, with
  ``recurrent_fast.loss_and_grad``) and by :func:`mp_jax.engine.train.fit` once per member
  (``sequential``, with ``recurrent_fast.loss_and_grad_reusing``), as Q3 trains them.
  Every member runs every epoch (no early stopping), with a validation pass per epoch as
  in Q3. Both ways compile their epoch inside the call; ``seconds`` is the call's wall
  time minus the compile time each reports (``compile_seconds``), after a first call on
  one short batch has warmed up the eager operations around the epoch.
* ``sweep_q1_beta_rho`` — Q1's (β, ρ) study: one tied-weight sparse autoencoder per
  (β, ρ) trained by full-batch L-BFGS, :func:`mp_jax.engine.lbfgs.minimize_many` (``vmap``)
  against :func:`mp_jax.engine.lbfgs.minimize` per member (``sequential``), as Q1 trains them
  with its default optimiser. Their compiled chunks are cached, so each way is run once
  beforehand to compile, and ``seconds`` is the second run's wall time.

The data are synthetic, of the assignment's shapes (scaled down): only time is measured.
Before a row is reported, the two ways are compared (a wrong sweep is not worth timing):
``max_abs_param_difference`` is the largest difference between a member's parameters
trained both ways. ``ratio`` is vmapped seconds / sequential seconds (below 1: the
sweep is faster).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks import workloads

# Q3's LSTM and Q1's L-BFGS study as the experiments' configs set them (benchmarks/workloads.py),
# on fewer examples and iterations: a sweep's members, not a whole run
FULL = {
    "q3": dict(workloads.q3("lstm"), cell="lstm", members=4, n=512, n_val=64, epochs=3),
    "q1": dict(workloads.q1_lbfgs(), n=4096, iters=50),
}
QUICK = {
    "q3": dict(FULL["q3"], members=2, n=64, n_val=16, steps=20, hidden=16, mlp=16, epochs=2),
    "q1": dict(FULL["q1"], n=256, hidden=16, iters=10, chunk=5, beta_rho=FULL["q1"]["beta_rho"][:3]),
}


def time_q3_seeds(s: dict, seed: int = 0, warmup: bool = True) -> list:
    """Rows for an M-member LSTM seed sweep, vmapped and sequential (see the module doc);
    ``warmup=False`` skips the first, untimed calls (for tests: the seconds are then rougher)."""
    import jax
    import jax.numpy as jnp

    from mp_jax.engine import sweep, train
    from mp_jax.models import recurrent, recurrent_fast

    rng = np.random.default_rng(seed)
    n = s["n"] + s["n_val"]
    x = jnp.asarray(rng.normal(size=(n, s["steps"], 3)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, s["classes"], n).astype(np.int32))
    tr, va = (x[: s["n"]], y[: s["n"]]), (x[s["n"]:], y[s["n"]:])
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * s["members"])
    inits = [recurrent.init_params(k, s["cell"], 3, s["hidden"], s["mlp"], s["classes"]) for k in keys[::2]]
    fit_keys = keys[1::2]
    opt = train.sgd_momentum(s["lr"], s["momentum"], clip_norm=s["clip"])
    cfg = train.FitConfig(epochs=s["epochs"], batch_size=s["batch"])

    def vmapped(train_data, val_data, config):
        return sweep.fit_sweep(recurrent_fast.loss_and_grad, opt, sweep.stack(inits), train_data, config, keys=fit_keys,
                               val_data=val_data, metrics_fn=recurrent.metrics, progress=False)

    def sequential(train_data, val_data, config, members=s["members"]):
        return [train.fit(recurrent_fast.loss_and_grad_reusing, opt, p, train_data, config, key=k, val_data=val_data,
                          metrics_fn=recurrent.metrics, progress=False) for p, k in zip(inits[:members], fit_keys)]

    # both compile their epoch inside the call (and report it); a first call on one short batch
    # warms up what runs eagerly around the epoch (op-by-op dispatch compiles each op once)
    if warmup:
        tiny = lambda d: (d[0][: s["batch"], :2], d[1][: s["batch"]])  # noqa: E731
        vmapped(tiny(tr), tiny(va), train.FitConfig(epochs=1, batch_size=s["batch"]))
        sequential(tiny(tr), tiny(va), train.FitConfig(epochs=1, batch_size=s["batch"]), members=1)

    t = time.perf_counter()
    res = vmapped(tr, va, cfg)
    jax.block_until_ready(res.last_params)
    vmap_wall, vmap_compile = time.perf_counter() - t, res.compile_seconds

    t = time.perf_counter()
    alone = sequential(tr, va, cfg)
    jax.block_until_ready([a.last_params for a in alone])
    seq_wall, seq_compile = time.perf_counter() - t, sum(a.compile_seconds for a in alone)

    diff = sweep.max_abs_difference([sweep.unstack(res.last_params, i) for i in range(s["members"])],
                                    [a.last_params for a in alone])
    settings = dict(s)
    base = {"workload": "sweep_q3_seeds", "members": s["members"], "epochs": s["epochs"], "settings": settings}
    return [dict(base, implementation="vmap", seconds=vmap_wall - vmap_compile, wall_seconds=vmap_wall,
                 compile_seconds=vmap_compile, max_abs_param_difference=diff),
            dict(base, implementation="sequential", seconds=seq_wall - seq_compile, wall_seconds=seq_wall,
                 compile_seconds=seq_compile, max_abs_param_difference=diff)]


def time_q1_beta_rho(s: dict, seed: int = 0) -> list:
    """Rows for Q1's (β, ρ) study by L-BFGS, vmapped and sequential (see the module doc)."""
    import jax
    import jax.numpy as jnp

    from mp_jax.engine import lbfgs, sweep
    from mp_jax.models import autoencoder as ae

    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.uniform(0.1, 0.9, (s["n"], 256)).astype(np.float32))
    p0 = ae.init_params(jax.random.PRNGKey(seed), s["hidden"])
    hps = [ae.AEHyper(lam=jnp.float32(s["lam"]), beta=jnp.float32(b), rho=jnp.float32(r)) for b, r in s["beta_rho"]]
    m = len(hps)
    stacked_params = sweep.stack([p0] * m)
    stacked_hp = sweep.stack(hps)
    cfg = lbfgs.LbfgsConfig(max_iter=s["iters"], memory_size=s["memory"], chunk=s["chunk"])

    def vmapped(c):
        out = lbfgs.minimize_many(ae.loss_and_grad, stacked_params, x, c, fn_kwargs_stacked={"hp": stacked_hp},
                                  progress=False)
        jax.block_until_ready([r.params for r in out])
        return out

    def sequential(c):
        out = [lbfgs.minimize(ae.loss_and_grad, p0, x, c, fn_kwargs={"hp": hp}, progress=False) for hp in hps]
        jax.block_until_ready([r.params for r in out])
        return out

    warm = cfg._replace(max_iter=cfg.chunk)  # one chunk compiles each way's program (cached by shape)
    timed = {}
    for name, fn in (("vmap", vmapped), ("sequential", sequential)):
        t = time.perf_counter()
        fn(warm)
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        timed[name] = (fn(cfg), time.perf_counter() - t, compile_s)
    diff = sweep.max_abs_difference([r.params for r in timed["vmap"][0]],
                                    [r.params for r in timed["sequential"][0]])
    iters = [r.iterations for r in timed["sequential"][0]]
    base = {"workload": "sweep_q1_beta_rho", "members": m, "settings": dict(s)}
    return [dict(base, implementation=name, seconds=sec, warmup_seconds=warm_s, iterations=iters,
                 max_abs_param_difference=diff) for name, (_, sec, warm_s) in timed.items()]


def run(quick: bool = False, sizes: dict | None = None, warmup: bool = True) -> list:
    """Both sweeps' rows (``sizes``: {"q3": ..., "q1": ...} overrides FULL / QUICK), printed."""
    sizes = sizes or (QUICK if quick else FULL)
    rows = time_q3_seeds(sizes["q3"], warmup=warmup) + time_q1_beta_rho(sizes["q1"])
    by = {(r["workload"], r["implementation"]): r for r in rows}
    print(f"\nsweeps as one program ({'quick sizes' if quick else 'reduced sizes'}): seconds after compile")
    print(f"{'workload':<19} {'members':>7} {'vmap s':>8} {'sequential s':>13} {'vmap/seq':>9} {'max |Δparam|':>13}")
    for w in ("sweep_q3_seeds", "sweep_q1_beta_rho"):
        v, q = by[(w, "vmap")], by[(w, "sequential")]
        ratio = v["seconds"] / q["seconds"]
        v["ratio"] = q["ratio"] = ratio
        print(f"{w:<19} {v['members']:>7} {v['seconds']:>8.2f} {q['seconds']:>13.2f} {ratio:>9.2f} "
              f"{v['max_abs_param_difference']:>13.1e}")
    return rows


def write_rows(path, rows: list, keep_existing: bool) -> None:
    """Write ``rows`` as a JSON list to ``path``, after the rows already there when
    ``keep_existing`` (the per-epoch benchmark's, written by the same command)."""
    path = Path(path)
    old = json.loads(path.read_text()) if keep_existing and path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(old + rows, indent=2) + "\n")


def main(argv=None) -> int:
    from mp_jax.runtime import cli

    p = cli.Parser(prog="python -m benchmarks.sweeps", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = run(args.quick)
    if args.json:
        write_rows(args.json, rows, keep_existing=False)
    return 0


if __name__ == "__main__":
    from mp_jax.runtime import cli

    raise SystemExit(cli.run_main(main))
