"""The matmul floor: how far the manual fast path is from its own matmuls, against ``jax.grad``.

``python -m benchmarks.floor [--quick] [--reps N] [--json PATH] [--models gru,lm]``

How much room a hand-written backward has at all: for each workload this compiles, in one
process, three programs over the same minibatches (a ``lax.scan`` over the batches with
the parameters fixed, every gradient summed into the carry so that no work is dropped;
with the parameters fixed, XLA may hoist work on them alone, such as the manual path's
transposed weights, out of that loop, in all three programs alike, which training cannot,
its parameters changing every step):

* ``manual``   — the model's fast hand-derived ``loss_and_grad``
  (:mod:`mp_jax.models.recurrent_fast`, :mod:`mp_jax.models.language_model_fast`), with
  fresh scan buffers per minibatch;
* ``jax_grad`` — ``jax.value_and_grad`` of the model's ``loss`` (the reference modules'
  :mod:`mp_jax.models.recurrent`, :mod:`mp_jax.models.language_model`);
* ``floor``    — only the manual path's matmuls, of the same shapes and in the same order
  and dependencies, with nothing between them: no activations, no gate factors, no
  embedding gather or scatter, and the weight-gradient operands given (the manual GRU's
  scans write them in place). For the GRU: the step's two chained matmuls forward and two
  backward in ``lax.scan``s that save blocks of the manual scans' sizes, the two
  weight-gradient matmuls in the manual path's form and the MLP head's six; for the
  language model its six matmuls. The floor's matmul FLOPs equal the manual
  path's (checked before timing, and by a test on the jaxprs).

The floor is not a model (its numbers mean nothing); it bounds what any rewrite of the
manual elementwise work could reach with XLA's CPU matmuls. The three programs are timed
in turn, ``--reps`` rounds, and the medians are printed as milliseconds per minibatch with
the ratios. Sizes are the per-core work of training: the GRU's batch of 32 is split over
the two cores (:mod:`mp_jax.engine.parallel`), so its worker is pinned to one core and times
16 sequences of 150 steps, H = 128; the language model trains on one device with both
cores, batch 200, D = 32, P = 256, V = 250. Each workload runs in its own process.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from benchmarks import workloads

WORKLOADS = ("gru", "lm")
_GRU, _LM = workloads.q3("gru"), workloads.q2()
FULL = {  # Q3's GRU on one core: half its batch of 32, as split over two devices; Q2's first setting
    "gru": dict(batch=_GRU["batch"] // 2, steps=_GRU["steps"], inputs=3, hidden=_GRU["hidden"], mlp=_GRU["mlp"],
                classes=_GRU["classes"], batches=8, one_core=True),
    "lm": dict(batch=_LM["batch"], vocab=_LM["vocab"], dim=_LM["dim"], hidden=_LM["hidden"], batches=100, one_core=False),
}
QUICK = {"gru": dict(FULL["gru"], batches=4), "lm": dict(FULL["lm"], batches=40)}


# ----------------------------------------------------------------------------- floors
def gru_floor(params, batch):
    """The manual fast GRU path's matmuls alone. batch: (x <[N, T, D]>, y, aug <[T, N, H+D+1]>),
    aug standing for the [h, x, 1] operands the manual scans write in place.

    Returns (a scalar, gradients-shaped pytree) like ``loss_and_grad``.
    """
    import jax
    import jax.numpy as jnp

    from mp_jax.models import recurrent_fast as rec

    x, _, aug = batch
    cell = params.cell
    hdim = cell.w_h.shape[0]
    u_zr, u_n = rec._transposed(cell.w_h[:, : 2 * hdim], cell.w_h[:, 2 * hdim:])
    u_zrT, u_nT = rec._transposed(u_zr.T, u_n.T)
    h0 = jnp.broadcast_to(x[:, 0, :1], (x.shape[0], hdim))

    def forward_step(h, _):
        a = h @ u_zr  # [N, 2H], the gates' matmul
        b = a[:, hdim:] @ u_n  # [N, H], the candidate's matmul on a gate-sized block
        return b, (a, b, h)  # saved blocks of the manual scan's sizes (u, n, h_{t−1})

    h_t, _ = jax.lax.scan(forward_step, h0, None, length=x.shape[1])
    m = h_t @ params.w_mlp
    z = m @ params.w_out
    dm, dw_out = z @ params.w_out.T, m.T @ z
    dh_t, dw_mlp = dm @ params.w_mlp.T, h_t.T @ dm

    def backward_step(d, _):
        a = d @ u_nT  # [N, H]
        dzr = jnp.concatenate([a, d], axis=-1)  # [N, 2H]
        return dzr @ u_zrT, (dzr, a)

    _, (d_zr, d_n) = jax.lax.scan(backward_step, dh_t, None, length=x.shape[1], reverse=True)
    g_zr = rec._weight_grads_augmented(aug, d_zr, hdim)  # the manual path's dot form
    g_n = rec._weight_grads_augmented(aug, d_n, hdim)
    return jnp.sum(z), (g_zr, g_n, dw_mlp, dw_out)


def lm_floor(params, batch):
    """The manual (fast) language model's six matmuls alone. batch: (ids, y, e <[N, 3D]>)."""
    import jax.numpy as jnp

    _, _, e = batch
    a = e @ params.w_hid
    z = a @ params.w_out
    dw_out, da = a.T @ z, z @ params.w_out.T
    dw_hid, de = e.T @ da, da @ params.w_hid.T
    return jnp.sum(z), (dw_out, dw_hid, de)


# ----------------------------------------------------------------------------- problems
def make_problem(workload: str, s: dict, seed: int = 0):
    """(params, stacked batches for the models, stacked batches for the floor, manual, jax_grad, floor)."""
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(seed)
    kx, ky, ka = jax.random.split(key, 3)
    nb, n = s["batches"], s["batch"]
    if workload == "gru":
        from mp_jax.models import recurrent as reference
        from mp_jax.models import recurrent_fast as rec

        p = reference.init_params(key, "gru", s["inputs"], s["hidden"], s["mlp"], s["classes"])
        x = jax.random.normal(kx, (nb, n, s["steps"], s["inputs"]))
        y = jax.random.randint(ky, (nb, n), 0, s["classes"])
        aug = jax.random.normal(ka, (nb, s["steps"], n, s["hidden"] + s["inputs"] + 1))
        return p, (x, y), (x, y, aug), rec.loss_and_grad, jax.value_and_grad(reference.loss), gru_floor
    if workload == "lm":
        from mp_jax.models import language_model as lm
        from mp_jax.models import language_model_fast as lm_fast

        p = lm.init_params(key, s["vocab"], s["dim"], s["hidden"])
        ids = jax.random.randint(kx, (nb, n, 3), 0, s["vocab"])
        y = jax.random.randint(ky, (nb, n), 0, s["vocab"])
        e = jax.random.normal(ka, (nb, n, 3 * s["dim"]), jnp.float32)
        return p, (ids, y), (ids, y, e), lm_fast.loss_and_grad, jax.value_and_grad(lm.loss), lm_floor
    raise ValueError(f"unknown workload {workload!r}; choose from {WORKLOADS}")


def over_batches(loss_and_grad):
    """jit(params, batches) → a scalar: ``loss_and_grad`` on each stacked batch in a scan,
    the value and every gradient summed into the carry (nothing is dead code)."""
    import jax
    import jax.numpy as jnp

    def run(params, batches):
        def body(acc, batch):
            value, grads = loss_and_grad(params, batch)
            return acc + value + sum(jnp.sum(g) for g in jax.tree.leaves(grads)), None

        return jax.lax.scan(body, jnp.zeros((), jnp.float32), batches)[0]

    return jax.jit(run)


def matmul_flops(fn, *args) -> int:
    """FLOPs of every ``dot_general`` in ``fn``'s jaxpr (2 per multiply-add), scans counted
    ``length`` times: what the floor and the manual path must have in common."""
    import math

    import jax
    from jax.extend.core import jaxprs_in_params

    def walk(jaxpr) -> int:
        total = 0
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                (lc, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval.shape
                total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in lc)
            for sub in jaxprs_in_params(eqn.params):
                total += walk(sub) * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
        return total

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


# ----------------------------------------------------------------------------- worker
def worker(workload: str, quick: bool, reps: int, sizes: dict | None = None) -> dict:
    """Compile manual, jax_grad and floor in this process and time them in turn."""
    s = dict(sizes or (QUICK if quick else FULL)[workload])
    if s["one_core"] and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import jax

    p, batches, floor_batches, manual, jax_grad, floor = make_problem(workload, s)
    one = jax.tree.map(lambda a: a[0], batches)
    flops = {"manual": matmul_flops(manual, p, one),
             "floor": matmul_flops(floor, p, jax.tree.map(lambda a: a[0], floor_batches))}
    if flops["manual"] != flops["floor"]:
        raise RuntimeError(f"{workload}: the floor's matmuls ({flops['floor']:,} FLOPs) are not the manual "
                           f"path's ({flops['manual']:,}); fix the floor before timing it")
    progs = {"manual": (over_batches(manual), batches), "jax_grad": (over_batches(jax_grad), batches),
             "floor": (over_batches(floor), floor_batches)}
    for fn, data in progs.values():
        jax.block_until_ready(fn(p, data))
    times = {k: [] for k in progs}
    for r in range(reps):
        for k in (list(progs) if r % 2 == 0 else list(progs)[::-1]):
            fn, data = progs[k]
            t = time.perf_counter()
            jax.block_until_ready(fn(p, data))
            times[k].append((time.perf_counter() - t) / s["batches"] * 1e3)
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {"workload": workload, "batch": s["batch"], "one_core": bool(s["one_core"] and hasattr(os, "sched_setaffinity")),
            "matmul_flops_per_batch": flops["manual"], "reps": reps,
            **{f"{k}_ms": round(v, 4) for k, v in ms.items()},
            "manual_over_jax_grad": round(ms["manual"] / ms["jax_grad"], 3),
            "floor_over_jax_grad": round(ms["floor"] / ms["jax_grad"], 3),
            "floor_over_manual": round(ms["floor"] / ms["manual"], 3)}


def spawn(workload: str, quick: bool, reps: int) -> dict:
    from benchmarks.epochs import run_worker

    return run_worker("benchmarks.floor", [workload], quick, reps)


def print_rows(rows) -> None:
    print("matmul floor: ms per minibatch, median of the rounds, the three timed in turn in one process")
    print(f"{'workload':9s}{'batch':>6s} {'cores':>5s} {'manual':>8s} {'jax_grad':>9s} {'floor':>8s}"
          f" {'manual/jax_grad':>16s} {'floor/jax_grad':>15s} {'floor/manual':>13s}")
    for r in rows:
        print(f"{r['workload']:9s}{r['batch']:6d} {'1' if r['one_core'] else 'all':>5s} {r['manual_ms']:8.3f}"
              f" {r['jax_grad_ms']:9.3f} {r['floor_ms']:8.3f} {r['manual_over_jax_grad']:16.2f}"
              f" {r['floor_over_jax_grad']:15.2f} {r['floor_over_manual']:13.2f}")


def main(argv=None) -> int:
    from mp_jax.runtime import cli

    p = cli.Parser(prog="python -m benchmarks.floor", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer minibatches per timed program")
    p.add_argument("--reps", type=cli.positive_int, default=None, help="timed rounds (default 15, quick 5)")
    p.add_argument("--models", default=",".join(WORKLOADS), help="comma-separated: gru,lm")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    p.add_argument("--worker", metavar="WORKLOAD", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    reps = args.reps or (5 if args.quick else 15)
    if args.worker:
        print(json.dumps(worker(args.worker, args.quick, reps)))
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in WORKLOADS]
    if bad or not models:
        p.error(f"argument --models: expected a comma-separated subset of {','.join(WORKLOADS)}, found "
                f"{args.models!r}" + (f" (unknown {', '.join(map(repr, bad))})" if bad else ""))
    if args.json and args.json.exists():
        p.error(f"argument --json: {args.json} exists; give a new path (results are never overwritten)")
    rows = [spawn(m, args.quick, reps) for m in models]
    print_rows(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from mp_jax.runtime import cli

    raise SystemExit(cli.run_main(main))
