"""Seconds per training epoch of each model, five ways, side by side in one run.

``python -m benchmarks [--quick] [--json PATH] [--models ae,lm,rnn,lstm,gru] [--impls ...]``

Implementations (same data, same initial parameters, same optimizer settings):

* ``manual``   — the hand-derived fast path, in the engine's one-jit epoch, set up as the
  experiments train it: the recurrences' :mod:`mp_jax.models.recurrent_fast` with each
  batch split over the CPU cores as devices (:mod:`mp_jax.engine.parallel`; their scans run on
  one core each) and the GRU's and LSTM's scan buffers reused from one batch to the next
  (``recurrent_fast.loss_and_grad_reusing``, :class:`mp_jax.models.recurrent_fast.BufferReuse`); the language model's
  :mod:`mp_jax.models.language_model_fast` and the autoencoder on one device;
* ``manual_reference`` — the readable hand-derived reference with the same parameters
  (:mod:`mp_jax.models.recurrent`, :mod:`mp_jax.models.language_model`), in the same
  epoch on the same devices; the autoencoder has one manual path only, so no such row;
* ``jax_grad`` — ``jax.value_and_grad`` of the model's ``loss``, in the same one-jit
  epoch (same data, same optimizer, same jit structure, same devices);
* ``manual_one_device``, ``jax_grad_one_device`` — the recurrences again on one device,
  to show what the split buys each;
* ``numpy``    — from-scratch numpy, Python loops over minibatches and time steps
  (:mod:`benchmarks.numpy_impl`);
* ``torch``    — PyTorch eager CPU with autograd and fused kernels
  (:mod:`benchmarks.torch_impl`), when torch is installed (``pip install -e '.[bench]'``).

Before timing, every implementation's loss and gradients on one batch are compared with
the ``manual`` ones (a benchmark of a wrong model is worthless). Each (workload,
implementation) then runs in its own process, in alternating order over ``--rounds``
rounds; a process compiles/warms up once and times ``--reps`` epochs; the table shows the
median. One more process per workload and round compiles ``manual``, ``manual_reference``
and ``jax_grad`` together and times 2 × ``--reps`` epochs of each in turn (who goes first
rotates): the ratios of neighbouring epochs, free of the machine's drift between
processes, are printed after the table, manual / jax_grad (fast / ``jax.grad``) and
manual_reference / manual (reference / fast), each with its range over the pairs (JSON
rows of kind ``interleaved``). GFLOP/s counts the model's matmul FLOPs (forward +
backward) per epoch; ``peak_fraction`` divides by a large float32 matmul's rate measured
the same way.

On a GPU (JAX's default backend is not the CPU) the JAX implementations run on it, one
device, nothing split (the ``*_one_device`` rows would repeat ``manual`` / ``jax_grad``
and are left out); PyTorch runs on CUDA when it sees a GPU; numpy stays on the CPU; the
matmul peak is the GPU's. Every float32 matmul runs at full precision, as the experiments
train by default (``--matmul-precision``; JAX's default on Ampere and later GPUs would be
TensorFloat-32). Every row names its ``platform``. ``--impls`` times a subset.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np

from benchmarks import workloads

IMPLS = ("manual", "manual_reference", "jax_grad", "numpy", "torch")
ONE_DEVICE = ("manual_one_device", "jax_grad_one_device")  # the recurrences only
JAX_IMPLS = ("manual", "manual_reference", "jax_grad") + ONE_DEVICE
#: compiled together in one process per workload and round, epochs timed in turn
INTERLEAVED = ("manual", "manual_reference", "jax_grad")
#: the ratios printed from those epochs, (numerator, denominator): fast / jax.grad, reference / fast
RATIOS = (("manual", "jax_grad"), ("manual_reference", "manual"))
ALL_WORKLOADS = ("ae", "lm", "rnn", "lstm", "gru")
RECURRENT = ("rnn", "lstm", "gru")

# the settings of the experiments' configs (benchmarks/workloads.py), at the stand-in data's sizes
FULL = {
    "ae": dict(n=workloads.N["ae"], **workloads.q1_sgd()),
    "lm": dict(n=workloads.N["lm"], **workloads.q2()),
    **{cell: dict(n=workloads.N["seq"], **workloads.q3(cell)) for cell in RECURRENT},
}
QUICK = {
    "ae": dict(FULL["ae"], n=2048),
    "lm": dict(FULL["lm"], n=20000),
    **{cell: dict(FULL[cell], n=256) for cell in RECURRENT},
}


def settings(workload: str, quick: bool) -> dict:
    return dict((QUICK if quick else FULL)[workload])


def has_reference(workload: str) -> bool:
    """Whether the workload has a second, reference manual path (all but the autoencoder)."""
    return workload != "ae"


def implementations(workload: str, impls) -> list:
    """``impls`` that exist for ``workload``: no ``manual_reference`` for the autoencoder,
    ``*_one_device`` for the recurrences only."""
    return [i for i in impls if (i != "manual_reference" or has_reference(workload))
            and (i not in ONE_DEVICE or workload in RECURRENT)]


def gate_count(workload: str) -> int:
    return {"rnn": 1, "lstm": 4, "gru": 3}[workload]


def flops_per_epoch(workload: str, s: dict) -> float:
    """Matmul FLOPs of forward + backward over one epoch (2 per multiply-add)."""
    n = s["n"]
    if workload == "ae":
        return 5 * 2.0 * n * 256 * s["hidden"]  # 2 forward, 3 backward matmuls
    if workload == "lm":
        return 3 * 2.0 * n * (3 * s["dim"] * s["hidden"] + s["hidden"] * s["vocab"])
    g, H, T = gate_count(workload), s["hidden"], s["steps"]
    cell = 3 * 2.0 * n * T * (3 + H) * g * H
    head = 3 * 2.0 * n * (H * s["mlp"] + s["mlp"] * s["classes"])
    return cell + head


# ----------------------------------------------------------------------------- problem set-up
def make_problem(workload: str, s: dict, seed: int = 0):
    """Synthetic data of the assignment's shapes and initial parameters.

    Returns (jax_params, numpy_params (the names of :mod:`benchmarks.numpy_impl`), data
    tuple of numpy arrays, hyper dict).
    """
    import jax

    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    if workload == "ae":
        from mp_jax.models import autoencoder as ae

        p = ae.init_params(key, s["hidden"])
        data = (rng.uniform(0.1, 0.9, (s["n"], 256)).astype(np.float32),)
        np_p = {"W": np.array(p.w_enc), "b1": np.array(p.b_hid), "b2": np.array(p.b_out)}
        return p, np_p, data, {k: s[k] for k in ("lam", "beta", "rho")}
    if workload == "lm":
        from mp_jax.models import language_model as lm

        p = lm.init_params(key, s["vocab"], s["dim"], s["hidden"])
        x = rng.integers(0, s["vocab"], (s["n"], 3)).astype(np.int32)
        y = rng.integers(0, s["vocab"], (s["n"],)).astype(np.int32)
        np_p = {"R": p.emb, "W1": p.w_hid, "b1": p.b_hid, "W2": p.w_out, "b2": p.b_out}
        return p, {k: np.array(v) for k, v in np_p.items()}, (x, y), {}
    from mp_jax.models import recurrent as rec

    p = rec.init_params(key, workload, 3, s["hidden"], s["mlp"], s["classes"])
    x = rng.normal(size=(s["n"], s["steps"], 3)).astype(np.float32)
    y = rng.integers(0, s["classes"], (s["n"],)).astype(np.int32)
    np_p = {"Wx": p.cell.w_x, "Wh": p.cell.w_h, "b": p.cell.b, "W3": p.w_mlp, "b3": p.b_mlp,
            "W4": p.w_out, "b4": p.b_out}
    return p, {k: np.array(v) for k, v in np_p.items()}, (x, y), {}


class JaxFns(NamedTuple):
    """A workload's JAX functions, hyperparameters bound: ``manual`` the fast path as
    training runs it, ``reference`` the reference manual path (None: the autoencoder has
    one manual path only), ``loss`` the loss ``jax_grad`` differentiates."""

    manual: Callable
    reference: Optional[Callable]
    loss: Callable


def jax_fns(workload: str, hyper: dict) -> JaxFns:
    """The workload's :class:`JaxFns`, read from the registry (:mod:`mp_jax.checks.registry`): the
    implementation training uses, the readable reference where a fast path exists, the loss."""
    from mp_jax.checks import registry

    spec = registry.get(workload)
    reference = spec.impls["reference"].loss_and_grad if "fast" in spec.impls else None
    if workload == "ae":  # the registry's functions take the default hyperparameters; these are the run's
        from mp_jax.models import autoencoder as ae

        hp = ae.AEHyper(**hyper)
        return JaxFns(lambda p, b: ae.loss_and_grad(p, b[0], hp), None, lambda p, b: ae.loss(p, b[0], hp))
    # as the experiments train: for the recurrences the fast path with its scan buffers reused
    return JaxFns(registry.training_loss_and_grad(workload), reference, spec.loss)


def loss_and_grad_of(fns: JaxFns, impl: str) -> Callable:
    """The ``loss_and_grad`` that the JAX implementation ``impl`` trains with."""
    import jax

    if impl in ("manual", "manual_one_device"):
        return fns.manual
    if impl == "manual_reference":
        if fns.reference is None:
            raise ValueError("manual_reference: this workload has one manual path only (the autoencoder)")
        return fns.reference
    if impl in ("jax_grad", "jax_grad_one_device"):
        return jax.value_and_grad(fns.loss)
    raise ValueError(f"unknown JAX implementation {impl!r}; choose from {', '.join(JAX_IMPLS)}")


def numpy_fn(workload: str, hyper: dict):
    from benchmarks import numpy_impl as bn

    if workload == "ae":
        return lambda p, x: bn.ae_loss_and_grad(p, x, hyper["lam"], hyper["beta"], hyper["rho"])
    if workload == "lm":
        return bn.lm_loss_and_grad
    return bn.RECURRENT[workload]


def jax_platform() -> str:
    """JAX's default backend: ``"cpu"``, ``"gpu"``, ``"tpu"``."""
    import jax

    return jax.default_backend()


def torch_device() -> str:
    """Where the ``torch`` rows run: CUDA when JAX runs on a GPU and PyTorch sees one, else
    the CPU (so that both frameworks are timed on the same kind of processor)."""
    import torch

    return "cuda" if jax_platform() == "gpu" and torch.cuda.is_available() else "cpu"


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:  # noqa: BLE001 - missing or broken install: skipped with a note
        return False
    return True


# ----------------------------------------------------------------------------- correctness
def check_agreement(workload: str, s: dict, n_check: int = 64, rtol: float = 2e-3) -> dict:
    """Loss and gradients of every implementation on one batch vs the manual (fast) ones."""
    import jax

    small = dict(s, n=n_check)
    p, np_p, data, hyper = make_problem(workload, small, seed=1)
    fns = jax_fns(workload, hyper)
    batch = tuple(jax.numpy.asarray(d) for d in data)
    loss_m, g_m = fns.manual(p, batch)
    names = list(np_p)
    g_m = dict(zip(names, [np.asarray(x) for x in _spec_order(workload, g_m)]))
    results = {}

    def compare(label, loss, grads):
        err = max(np.max(np.abs(grads[k] - g_m[k])) / max(np.max(np.abs(g_m[k])), 1e-30) for k in names)
        lerr = abs(loss - float(loss_m)) / abs(float(loss_m))
        results[label] = {"loss_rel_err": float(lerr), "grad_rel_err": float(err), "ok": bool(err < rtol and lerr < rtol)}

    def compare_jax(label, loss, grads):
        compare(label, float(loss), dict(zip(names, [np.asarray(x) for x in _spec_order(workload, grads)])))

    if fns.reference is not None:
        compare_jax("manual_reference", *fns.reference(p, batch))
    compare_jax("jax_grad", *jax.value_and_grad(fns.loss)(p, batch))
    compare("numpy", *numpy_fn(workload, hyper)({k: v.astype(np.float64) for k, v in np_p.items()},
                                                 *[d.astype(np.float64) if d.dtype == np.float32 else d for d in data]))
    if torch_available():
        import torch

        from benchmarks import torch_impl as bt

        dev = torch_device()
        model = bt.build(workload, np_p, hyper, dev)
        tb = bt.to_torch(data, dev)
        loss_t, g_t = bt.loss_and_grad(model, tb)
        if getattr(model, "comparable", True):
            compare("torch", loss_t, g_t)
        else:
            results["torch"] = {"ok": None, "note": "nn.GRU uses the reset-after candidate, another function: not compared"}
    return results


def _spec_order(workload: str, g) -> list:
    if workload == "ae":
        return [g.w_enc, g.b_hid, g.b_out]
    if workload == "lm":
        return [g.emb, g.w_hid, g.b_hid, g.w_out, g.b_out]
    return [g.cell.w_x, g.cell.w_h, g.cell.b, g.w_mlp, g.b_mlp, g.w_out, g.b_out]


# ----------------------------------------------------------------------------- worker
def peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` (reset by exec) rather than
    ``ru_maxrss``, which a child inherits from the parent across fork + exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_epochs(run_epoch, reps: int) -> list:
    times = []
    for r in range(reps):
        t = time.perf_counter()
        run_epoch(r)
        times.append(time.perf_counter() - t)
    return times


def splits_over_cpu_cores(workload: str, impl: str, platform: str) -> bool:
    """Whether a JAX implementation spreads each batch over the CPU cores as devices: the
    recurrences' ``manual``, ``manual_reference`` and ``jax_grad`` rows on a CPU (see the
    module doc)."""
    return (workload in RECURRENT and impl in ("manual", "manual_reference", "jax_grad", "interleaved")
            and platform == "cpu")


def _jax_runner(workload: str, impl: str, s: dict, p, data, hyper, clip, split: bool):
    """(run_epoch(r), mesh) for a JAX implementation: the engine's one-jit epoch, compiled
    and warmed up on JAX's default device; ``split`` spreads each batch over the CPU
    devices instead (see the module doc)."""
    import jax

    from mp_jax.engine import parallel, train

    lag = loss_and_grad_of(jax_fns(workload, hyper), impl)
    opt = train.sgd_momentum(s["lr"], s["momentum"], clip)
    mesh = parallel.cpu_mesh(s["batch"]) if split else None
    epoch = train.make_epoch_fn(lag, opt, s["batch"], mesh=mesh, per_example_mean=True)
    jdata = tuple(jax.numpy.asarray(d) for d in data)
    state = {"p": p, "o": opt.init(p)}
    compiled = epoch.lower(p, state["o"], jax.random.PRNGKey(0), jdata).compile()

    def run_epoch(r):
        state["p"], state["o"], loss, _ = compiled(state["p"], state["o"], jax.random.PRNGKey(r), jdata)
        jax.block_until_ready(state["p"])

    run_epoch(1000)  # warm-up
    return run_epoch, mesh


def interleaved(workload: str, s: dict, reps: int, impls=INTERLEAVED) -> dict:
    """The JAX implementations ``impls`` (of :data:`INTERLEAVED`, as in their own rows)
    compiled in ONE process and timed epoch by epoch in turn (who goes first rotates), so
    that all see the same machine: on a shared VM whose speed drifts by tens of percent
    between processes, the ratio of two neighbouring epochs is the steadier measure.
    Returns ``times``: {impl: [seconds of epoch r, ...]}, epoch r of each timed in round r."""
    from mp_jax.engine import parallel

    impls = implementations(workload, [i for i in INTERLEAVED if i in impls])
    if len(impls) < 2:
        raise ValueError(f"interleaved {workload}: needs two of {', '.join(INTERLEAVED)}, found {impls}")
    parallel.use_cpu_cores(None if splits_over_cpu_cores(workload, "interleaved", "cpu") else 1)
    platform = jax_platform()
    split = splits_over_cpu_cores(workload, "interleaved", platform)
    p, np_p, data, hyper = make_problem(workload, s)
    clip = s.get("clip")
    runners = {impl: _jax_runner(workload, impl, s, p, data, hyper, clip, split) for impl in impls}
    times = {impl: [] for impl in impls}
    for r in range(reps):
        for impl in impls[r % len(impls):] + impls[: r % len(impls)]:
            t = time.perf_counter()
            runners[impl][0](r)
            times[impl].append(time.perf_counter() - t)
    mesh = runners[impls[0]][1]
    return {"workload": workload, "implementation": "interleaved", "times": times,
            "devices": 1 if mesh is None else mesh.size, "platform": platform}


def worker(workload: str, impl: str, quick: bool, reps: int, interleave=INTERLEAVED) -> dict:
    """One (workload, implementation)'s epochs, timed in this process (``interleave``: the
    implementations the ``"interleaved"`` worker compiles together)."""
    if impl == "matmul":
        return matmul_peak(reps)
    s = settings(workload, quick)
    if impl == "interleaved":
        return interleaved(workload, s, reps, interleave)
    if impl == "manual_reference" and not has_reference(workload):
        raise SystemExit(f"--worker {workload} manual_reference: the autoencoder has one manual path only")
    mesh = None  # one device unless a JAX implementation splits the batch below
    if impl in JAX_IMPLS:  # before any JAX computation: the CPU as one device per core, or one
        from mp_jax.engine import parallel

        parallel.use_cpu_cores(None if splits_over_cpu_cores(workload, impl, "cpu") else 1)
    platform = jax_platform() if impl in JAX_IMPLS else "cpu"
    split = splits_over_cpu_cores(workload, impl, platform)
    p, np_p, data, hyper = make_problem(workload, s)
    clip = s.get("clip")
    if impl in JAX_IMPLS:
        run_epoch, mesh = _jax_runner(workload, impl, s, p, data, hyper, clip, split)
    elif impl == "numpy":
        from benchmarks import numpy_impl as bn

        fn = numpy_fn(workload, hyper)
        vel = {k: np.zeros_like(v) for k, v in np_p.items()}

        def run_epoch(r):
            bn.sgd_epoch(fn, np_p, vel, data, s["batch"], s["lr"], s["momentum"], np.random.default_rng(r), clip)
    elif impl == "torch":
        import torch

        from benchmarks import torch_impl as bt

        torch.set_num_threads(os.cpu_count() or 1)
        platform = torch_device()
        model = bt.build(workload, np_p, hyper, platform)
        tdata = bt.to_torch(data, platform)
        ep = bt.make_epoch(model, s["lr"], s["momentum"], clip)

        def run_epoch(r):
            ep(tdata, s["batch"], r)

        run_epoch(1000)
    else:
        raise SystemExit(f"--worker {workload} {impl}: unknown implementation; expected one of "
                         f"{', '.join(IMPLS + ONE_DEVICE)}, interleaved or matmul")
    times = time_epochs(run_epoch, reps)
    return {"workload": workload, "implementation": impl, "times": times, "peak_rss_mb": peak_rss_mb(),
            "devices": 1 if mesh is None else mesh.size, "platform": platform}


def matmul_peak(reps: int, n: int | None = None) -> dict:
    """A large float32 matmul's rate on JAX's default device (n = 2048 on a CPU, 8192 on
    an accelerator), at the process's matmul precision."""
    import jax
    import jax.numpy as jnp

    platform = jax_platform()
    n = n or (2048 if platform == "cpu" else 8192)

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    times = []
    for _ in range(max(reps, 3)):
        t = time.perf_counter()
        for _ in range(5):
            out = f(a)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t) / 5)
    sec = statistics.median(times)
    return {"workload": "matmul_peak", "gflops": 2.0 * n ** 3 / sec / 1e9, "seconds": sec, "platform": platform,
            "device_kind": jax.devices()[0].device_kind}


def run_worker(module: str, worker_args: list, quick: bool, reps: int) -> dict:
    """``python -m module --worker *worker_args --reps reps [--quick]`` in a fresh process;
    returns the JSON object the worker printed last."""
    cmd = [sys.executable, "-m", module, "--worker", *worker_args, "--reps", str(reps)]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} worker {'/'.join(worker_args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spawn(workload: str, impl: str, quick: bool, reps: int, interleave=None) -> dict:
    """:func:`worker` in a fresh process (``python -m benchmarks --worker ...``)."""
    extra = ["--interleave", ",".join(interleave)] if interleave else []
    return run_worker("benchmarks", [workload, impl, *extra], quick, reps)


# ----------------------------------------------------------------------------- memory
def memory_growth(workload: str = "lstm", steps=(50, 150, 300), batches=(32, 128), hidden: int = 128,
                  impls=("manual", "manual_reference")) -> list:
    """XLA's temporary buffer size for one manual ``loss_and_grad`` (fresh buffers), as T
    and N grow: the fast path's (``manual``) and the reference's (``manual_reference``).

    BPTT keeps one set of activations per time step; if they were copied per step the
    temporaries would grow faster than linearly in T. Rows: implementation, T, N, temp MB,
    bytes per (time step × example).
    """
    import jax
    import jax.numpy as jnp

    from mp_jax.models import recurrent as rec
    from mp_jax.models import recurrent_fast as rec_fast

    fns = {"manual": rec_fast.loss_and_grad, "manual_reference": rec.loss_and_grad}
    rows = []
    p = rec.init_params(jax.random.PRNGKey(0), workload, 3, hidden, 64, 6)
    for impl in [i for i in fns if i in impls]:
        for n in batches:
            for t in steps:
                batch = (jnp.zeros((n, t, 3), jnp.float32), jnp.zeros((n,), jnp.int32))
                stats = jax.jit(fns[impl]).lower(p, batch).compile().memory_analysis()
                temp = getattr(stats, "temp_size_in_bytes", None)
                if temp is None:
                    return []
                rows.append({"workload": workload, "implementation": impl, "steps": t, "batch": n,
                             "temp_mb": temp / 2**20, "bytes_per_step_example": temp / (t * n)})
    return rows


# ----------------------------------------------------------------------------- driver
def run(models, quick: bool, reps: int, rounds: int, json_path=None, check_only: bool = False,
        impls=None) -> dict:
    """Check, time and tabulate ``models`` × ``impls`` (default: every implementation)."""
    have_torch = torch_available()
    platform = jax_platform()
    wanted = list(impls) if impls is not None else list(IMPLS) + list(ONE_DEVICE)
    wanted = ["manual"] + [i for i in wanted if i != "manual"]  # every ratio is to the manual row
    impls = [i for i in wanted if (i != "torch" or have_torch) and (i not in ONE_DEVICE or platform == "cpu")]
    notes = [] if have_torch or "torch" not in wanted else ["torch not installed: PyTorch rows skipped (pip install -e '.[bench]')"]
    if "manual_reference" in impls and "ae" in models:
        notes.append("ae: one manual path only (no manual_reference row)")
    if platform != "cpu":
        import jax

        notes.append(f"JAX implementations on {jax.devices()[0].device_kind} ({platform}), one device"
                     + (f"; torch on {torch_device()}" if have_torch and "torch" in impls else "")
                     + "; numpy on the CPU")
    checks = {}
    for w in models:
        checks[w] = check_agreement(w, settings(w, quick))
        bad = {k: v for k, v in checks[w].items() if v.get("ok") is False}
        if bad:
            raise SystemExit(f"benchmark refused: {w} implementations disagree with the manual gradients: {bad}")
        for k, v in checks[w].items():
            if v.get("note"):
                notes.append(f"{w}/{k}: {v['note']}")
    print("agreement on one batch (relative error vs manual):")
    for w, res in checks.items():
        print("  " + w + ": " + ", ".join(
            f"{k} loss {v['loss_rel_err']:.1e} grad {v['grad_rel_err']:.1e}" if v.get("ok") is not None else f"{k} skipped"
            for k, v in res.items()))
    if check_only:
        return {"checks": checks}

    samples: dict = {}
    pairs: dict = {}  # workload -> {impl: [...]}, epochs timed in turn in one process
    rss: dict = {}
    n_devices: dict = {}
    platforms: dict = {}
    peaks = []
    peak_kind = {}
    for r in range(rounds):
        res = spawn("matmul", "matmul", quick, reps)
        peaks.append(res["gflops"])
        peak_kind = {k: res[k] for k in ("platform", "device_kind") if k in res}
        for w in models:
            mine = implementations(w, impls)
            order = mine[r % len(mine):] + mine[: r % len(mine)]  # alternate who goes first
            for impl in order:
                if impl == "numpy" and w in RECURRENT and r > 0 and not quick:
                    continue  # the slow Python-loop reference is timed in the first round only
                res = spawn(w, impl, quick, reps if impl != "numpy" else max(1, reps // 2))
                samples.setdefault((w, impl), []).extend(res["times"])
                rss[(w, impl)] = max(rss.get((w, impl), 0.0), res["peak_rss_mb"])
                n_devices[(w, impl)] = res.get("devices", 1)
                platforms[(w, impl)] = res.get("platform", "cpu")
            together = [i for i in INTERLEAVED if i in mine]
            if len(together) < 2:
                continue
            res = spawn(w, "interleaved", quick, 2 * reps, interleave=together)
            for impl in together:
                pairs.setdefault(w, {}).setdefault(impl, []).extend(res["times"][impl])
    peak = statistics.median(peaks)
    rows = [{"workload": "matmul_peak", "gflops": peak, **peak_kind}]
    for w in models:
        s = settings(w, quick)
        fl = flops_per_epoch(w, s)
        for impl in impls:
            if (w, impl) not in samples:
                continue
            sec = statistics.median(samples[(w, impl)])
            g = fl / sec / 1e9
            rows.append({"workload": w, "implementation": impl, "seconds_per_epoch": sec, "gflops": g,
                         "peak_fraction": g / peak, "peak_rss_mb": rss[(w, impl)], "n_samples": len(samples[(w, impl)]),
                         "devices": n_devices[(w, impl)], "platform": platforms[(w, impl)]})
    rows += interleaved_rows(pairs)
    mem = memory_growth(impls=impls) if "lstm" in models else []
    print_table(rows, notes, quick)
    if mem:
        print_memory(mem)
    out = {"rows": rows, "memory": mem, "checks": checks, "notes": notes, "quick": quick, "reps": reps, "rounds": rounds}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(rows + [dict(m, kind="memory") for m in mem], indent=2) + "\n")
    return out


def interleaved_rows(pairs: dict) -> list:
    """Rows of kind ``interleaved`` from {workload: {impl: [epoch seconds, ...]}}: for each
    of :data:`RATIOS` timed there, the median and range of the per-pair ratios (epoch r of
    the numerator over epoch r of the denominator, timed next to each other)."""
    rows = []
    for w, times in pairs.items():
        for num, den in RATIOS:
            if num not in times or den not in times:
                continue
            a, b = times[num], times[den]
            ratios = sorted(x / y for x, y in zip(a, b))
            rows.append({"workload": w, "kind": "interleaved", "numerator": num, "denominator": den,
                         "ratio": statistics.median(ratios), "ratio_range": [ratios[0], ratios[-1]],
                         "numerator_seconds_per_epoch": statistics.median(a),
                         "denominator_seconds_per_epoch": statistics.median(b), "n_pairs": len(ratios)})
    return rows


def print_table(rows, notes, quick):
    pairs = [r for r in rows if r.get("kind") == "interleaved"]
    rows = [r for r in rows if r.get("kind") != "interleaved"]
    peak = rows[0]["gflops"]
    print(f"\nseconds per epoch ({'quick sizes' if quick else 'assignment sizes'}); "
          f"large float32 matmul: {peak:.1f} GFLOP/s")
    print(f"{'workload':<9} {'impl':<19} {'s/epoch':>9} {'/manual':>8} {'GFLOP/s':>8} {'%peak':>6} {'RSS MB':>7} {'devices':>9}")
    manual = {r["workload"]: r["seconds_per_epoch"] for r in rows if r.get("implementation") == "manual"}
    for r in rows[1:]:
        ratio = r["seconds_per_epoch"] / manual[r["workload"]]
        print(f"{r['workload']:<9} {r['implementation']:<19} {r['seconds_per_epoch']:>9.3f} {ratio:>8.2f} "
              f"{r['gflops']:>8.2f} {100 * r['peak_fraction']:>5.1f}% {r['peak_rss_mb']:>7.0f} {r.get('devices', 1):>3} {r.get('platform', 'cpu'):<5}")
    print("\nmanual / other (≤ 1 means the manual fast path is faster):")
    for w in manual:
        parts = []
        for r in rows[1:]:
            if r["workload"] == w and r["implementation"] != "manual":
                parts.append(f"/{r['implementation']} {manual[w] / r['seconds_per_epoch']:.2f}")
        print(f"  {w:<5} " + "  ".join(parts))
    one = {(r["workload"], r["implementation"]): r["seconds_per_epoch"] for r in rows[1:]}
    for w in manual:
        if (w, "manual_one_device") in one and (w, "jax_grad_one_device") in one:
            print(f"  {w:<5} on one device: manual/jax_grad "
                  f"{one[(w, 'manual_one_device')] / one[(w, 'jax_grad_one_device')]:.2f}")
    if pairs:
        print("\ncompiled in ONE process, epochs timed in turn (median of the per-pair ratios; the steadier\n"
              "comparison on a machine whose speed drifts between processes): manual / jax_grad is\n"
              "fast / jax.grad, manual_reference / manual is reference / fast:")
        for r in pairs:
            lo, hi = r["ratio_range"]
            label = f"{r['numerator']} / {r['denominator']}"
            print(f"  {r['workload']:<5} {label:<27} {r['ratio']:.2f}   (pairs {lo:.2f}-{hi:.2f}; "
                  f"{r['numerator']} {r['numerator_seconds_per_epoch']:.3f} s, "
                  f"{r['denominator']} {r['denominator_seconds_per_epoch']:.3f} s, {r['n_pairs']} pairs)")
    for n in notes:
        print("note:", n)


def print_memory(mem) -> None:
    print("\nLSTM train step (one loss_and_grad, fresh buffers), XLA temporary buffers as T and batch grow:")
    print(f"{'impl':<17} {'T':>5} {'batch':>6} {'temp MB':>9} {'bytes/(T·N)':>12}")
    for m in mem:
        print(f"{m['implementation']:<17} {m['steps']:>5} {m['batch']:>6} {m['temp_mb']:>9.1f} "
              f"{m['bytes_per_step_example']:>12.0f}")


def _names(parser: argparse.ArgumentParser, flag: str, value: str, allowed, empty: Optional[str] = None) -> list:
    """A comma-separated flag value as a list, every name checked against ``allowed``; a bad
    name, or no name at all unless ``empty`` says what that means, is a usage error (exit
    status 2, one line naming the flag)."""
    names = [i.strip() for i in value.split(",") if i.strip()]
    unknown = [i for i in names if i not in allowed]
    if unknown:
        parser.error(f"argument {flag}: unknown {', '.join(map(repr, unknown))}; expected a comma-separated subset of "
                     f"{','.join(allowed)}")
    if not names and empty is None:
        parser.error(f"argument {flag}: expected at least one of {','.join(allowed)} (comma-separated), found "
                     f"{value!r}")
    return names


def main(argv=None) -> int:
    from mp_jax.runtime import cli

    p = cli.Parser(prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one round (a few minutes)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    p.add_argument("--models", default=",".join(ALL_WORKLOADS), help="comma-separated: ae,lm,rnn,lstm,gru")
    p.add_argument("--reps", type=cli.positive_int, default=None, help="timed epochs per process (default 3, quick 2)")
    p.add_argument("--rounds", type=cli.positive_int, default=None,
                   help="alternating rounds of processes (default 2, quick 1)")
    p.add_argument("--impls", default=None, help="comma-separated subset of " + ",".join(IMPLS + ONE_DEVICE)
                   + " (default: all; manual is always timed, the ratios need it)")
    p.add_argument("--check-only", action="store_true", help="only compare the implementations on one batch")
    p.add_argument("--sweeps", action="store_true", help="also time sweeps as one vmapped program against their "
                   "members one after another (benchmarks.sweeps); with --models '' only that")
    p.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "IMPL"), help=argparse.SUPPRESS)
    p.add_argument("--interleave", default=",".join(INTERLEAVED), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    # several processes share one GPU: none may take most of its memory up front (JAX's default)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from experiments.common import set_matmul_precision

    set_matmul_precision("highest")  # as the experiments train (on a CPU: no difference)
    reps = args.reps or (2 if args.quick else 3)
    if args.worker:
        together = _names(p, "--interleave", args.interleave, INTERLEAVED, empty="none")
        print(json.dumps(worker(args.worker[0], args.worker[1], args.quick, reps, together)))
        return 0
    models = _names(p, "--models", args.models, ALL_WORKLOADS, empty="the sweeps alone" if args.sweeps else None)
    impls = None if args.impls is None else _names(p, "--impls", args.impls, IMPLS + ONE_DEVICE)
    if models or not args.sweeps:
        run(models, args.quick, reps, args.rounds or (1 if args.quick else 2), args.json, args.check_only, impls)
    if args.sweeps and not args.check_only:
        from benchmarks import sweeps

        rows = sweeps.run(args.quick)
        if args.json:
            sweeps.write_rows(args.json, rows, keep_existing=bool(models))
    return 0


if __name__ == "__main__":
    from mp_jax.runtime import cli

    raise SystemExit(cli.run_main(main))
