"""Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=4.

Trains the same model on 1, 2 and 4 devices and checks the manual gradients under
sharding against jax.grad; prints one JSON line of results.

``python sharded_training.py [all|main|reuse]`` (default all): ``reuse`` is the check that
the GRU's and LSTM's reused scan buffers train bit for bit as without reuse, ``main`` is
everything else. The two take about the same time, nearly all of it XLA compiling one
program per (model, device count) pair on one core, so the test module runs them as two
processes side by side. Each property is checked on as few distinct programs as cover it:
every recurrent cell once with an even split and once with a remainder, the buffer reuse
once per cell (the GRU over 4 devices, the LSTM over 2).
"""
import json
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

from mp_jax.engine import train
from mp_jax.models import mlp

assert jax.device_count() == 4, jax.devices()
PART = sys.argv[1] if len(sys.argv) > 1 else "all"
assert PART in ("all", "main", "reuse"), PART


def blobs(n, key=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(key))
    y = jax.random.randint(k1, (n,), 0, 3)
    c = jnp.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return c[y] + 0.7 * jax.random.normal(k2, (n, 2)), y


def rel(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / np.max(np.abs(np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def check_mlp(out):
    """float32: 1, 2 and 4 devices train to the same parameters."""
    params = mlp.init_params(jax.random.PRNGKey(0), 2, 16, 3)
    data, val = blobs(300), blobs(100, 1)
    out.update({"devices": [], "max_diff": {}, "sharded_grad_rel_err": {}})
    ref = None
    batch = jax.tree.map(lambda a: a[:32], data)
    g_ref = jax.jit(jax.grad(mlp.loss))(params, batch)  # one device, one compiled program
    for n in (1, 2, 4):
        mesh = train.make_mesh(n)
        res = train.fit(mlp.loss_and_grad, train.sgd_momentum(0.05, 0.9), params, data,
                        train.FitConfig(epochs=1, batch_size=32), key=jax.random.PRNGKey(1),
                        val_data=val, metrics_fn=mlp.metrics, progress=False, mesh=mesh)
        leaves = [np.asarray(x) for x in jax.tree.leaves(res.last_params)]
        out["devices"].append(n)
        if ref is None:
            ref = leaves
        out["max_diff"][n] = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves, ref))

        # manual gradients of a batch split over the mesh vs jax.grad on one device
        spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        sharded = jax.device_put(batch, spec)
        _, g_man = jax.jit(mlp.loss_and_grad)(train.replicate(params, mesh), sharded)
        out["sharded_grad_rel_err"][n] = rel(g_man, g_ref)
        out.setdefault("rows_per_device", {})[n] = sorted({s.data.shape[0] for s in sharded[0].addressable_shards})

    try:
        train.fit(mlp.loss_and_grad, train.sgd_momentum(0.05, 0.9), params, data,
                  train.FitConfig(epochs=1, batch_size=30), key=jax.random.PRNGKey(1), progress=False,
                  mesh=train.make_mesh(4))
        out["indivisible_error"] = None
    except ValueError as e:
        out["indivisible_error"] = str(e)
    # per-example-mean data parallelism (shard_map + pmean): the same training as 1 device
    out["per_example_max_diff"] = {}
    for n in (2, 4):
        res = train.fit(mlp.loss_and_grad, train.sgd_momentum(0.05, 0.9), params, data,
                        train.FitConfig(epochs=1, batch_size=32), key=jax.random.PRNGKey(1),
                        val_data=val, metrics_fn=mlp.metrics, progress=False, mesh=train.make_mesh(n),
                        per_example_mean=True)
        leaves = [np.asarray(x) for x in jax.tree.leaves(res.last_params)]
        out["per_example_max_diff"][n] = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves, ref))


def check_recurrent(out):
    """float64: the manual RNN/LSTM/GRU gradients averaged over shards equal the full-batch
    ones; one all-reduce of one flat buffer per step, each leaf back in its own dtype."""
    out["recurrent_rel_err"] = {}
    even_split = {"rnn": 2, "lstm": 4, "gru": 4}  # each cell: 8 examples evenly over k devices, and 5 over 2
    for cell in rec.CELLS:
        p64 = rec.init_params(jax.random.PRNGKey(2), cell, 3, 8, 6, 4, dtype=jnp.float64)
        for n_ex, k in ((8, even_split[cell]), (5, 2)):  # 5 over 2: the remainder path, computed whole
            kx, ky = jax.random.split(jax.random.PRNGKey(n_ex))
            batch = (jax.random.normal(kx, (n_ex, 7, 3), jnp.float64), jax.random.randint(ky, (n_ex,), 0, 4))
            l1, g1 = jax.jit(rec.loss_and_grad)(p64, batch)
            l2, g2 = jax.jit(parallel.data_parallel(rec.loss_and_grad, train.make_mesh(k)))(p64, batch)
            out["recurrent_rel_err"][f"{cell} N={n_ex} k={k}"] = max(rel(g2, g1), abs(float(l2 - l1)) / abs(float(l1)))

    # one all-reduce of one flat buffer per step (each operand of an all-reduce costs the CPU
    # runtime a meeting of the devices), whatever the pytree of gradients
    p32 = rec.init_params(jax.random.PRNGKey(2), "gru", 3, 8, 6, 4)
    b32 = (jax.random.normal(jax.random.PRNGKey(5), (8, 7, 3)), jax.random.randint(jax.random.PRNGKey(6), (8,), 0, 4))
    hlo = jax.jit(parallel.data_parallel(rec.loss_and_grad, train.make_mesh(2))).lower(p32, b32).compile().as_text()
    out["all_reduce_operands"] = [len(re.findall(r"%[\w.-]+", line.split(" all-reduce(", 1)[1].split(")")[0]))
                                  for line in hlo.splitlines() if " all-reduce(" in line]

    def mixed(params, batch):  # leaves of several dtypes: each comes back in its own
        x = batch.astype(jnp.float64)
        return jnp.mean(x).astype(jnp.float32), {"a": jnp.mean(x, 0), "b": jnp.mean(x, 0).astype(jnp.float32)}

    xm = jnp.arange(8.0, dtype=jnp.float64).reshape(8, 1) ** 2
    lm_, gm = jax.jit(parallel.data_parallel(mixed, train.make_mesh(2)))(None, xm)
    out["mixed_dtypes"] = [str(lm_.dtype), str(gm["a"].dtype), str(gm["b"].dtype)]
    out["mixed_values"] = [float(lm_), float(gm["a"][0]), float(gm["b"][0])]


def check_reuse(out):
    """The GRU's and LSTM's scan buffers reused across minibatches, split over the devices with
    the batch: the same epoch as without reuse, bit for bit (20 examples: two split batches of
    8, and a remainder of 4 computed whole); the GRU over 4 devices, the LSTM over 2."""
    # split over the devices, the reusing form still carries its buffers (one part per device)
    split = train.per_device(rec.loss_and_grad_reusing, train.make_mesh(2))
    out["reusing_stays_carrying"] = isinstance(split, train.Carrying) and split.batch_axis == 1
    out["reusing_max_diff"] = {}
    bg = (jax.random.normal(jax.random.PRNGKey(10), (20, 7, 3), jnp.float32),
          jax.random.randint(jax.random.PRNGKey(11), (20,), 0, 4))
    opt_g = train.sgd_momentum(0.1, 0.9, clip_norm=1.0)
    for cell_kind, k in (("gru", 4), ("lstm", 2)):
        pg = rec.init_params(jax.random.PRNGKey(9), cell_kind, 3, 8, 6, 4)
        ends = []
        for lg in (rec.loss_and_grad, rec.loss_and_grad_reusing):
            ep = train.make_epoch_fn(lg, opt_g, 8, mesh=train.make_mesh(k), per_example_mean=True)
            pk, sk = pg, opt_g.init(pg)
            for e in range(2):
                pk, sk, _, _ = ep(pk, sk, jax.random.PRNGKey(e), bg)
            ends.append(pk)
        out["reusing_max_diff"][f"{cell_kind}{k}"] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                                         for a, b in zip(jax.tree.leaves(ends[0]), jax.tree.leaves(ends[1])))


def check_autoencoder_and_meshes(out):
    """Shard averaging is not the autoencoder's gradient (its sparsity penalty uses the
    batch-mean activation); which mesh a run gets; use_cpu_cores once JAX has started."""
    hp = ae.AEHyper(lam=5e-4, beta=3.0, rho=0.05)
    pa = jax.tree.map(lambda a: a.astype(jnp.float64), ae.init_params(jax.random.PRNGKey(3), 16))
    xa = jax.random.uniform(jax.random.PRNGKey(4), (8, 256), jnp.float64, 0.1, 0.9)
    _, ga1 = ae.loss_and_grad(pa, xa, hp)
    _, ga2 = jax.jit(parallel.data_parallel(lambda p, b: ae.loss_and_grad(p, b, hp), train.make_mesh(2)))(pa, xa)
    out["autoencoder_sharded_rel_err"] = rel(ga2, ga1)

    # which mesh a run gets: CPU cores (as many as divide the batch) only for runs that ask, and
    # only when --devices was not given
    from mp_jax.protocols.runs import RunContext

    def size(m):
        return None if m is None else m.size

    out["cpu_mesh"] = {b: size(parallel.cpu_mesh(b)) for b in (32, 6, 5)}
    ctx = RunContext.start(n_devices=None)
    out["run_mesh_default"] = [size(ctx.run_mesh(32, True)), size(ctx.run_mesh(32, False))]
    ctx = RunContext.start(n_devices=2)
    out["run_mesh_explicit"] = [size(ctx.run_mesh(32, True)), size(ctx.run_mesh(32, False))]
    out["use_cpu_cores_too_late"] = parallel.use_cpu_cores(2)


result = {}
if PART in ("all", "main"):
    check_mlp(result)  # float32, before float64 is switched on
# the rest in float64 (every part switches it on at the same point, as one process would)
jax.config.update("jax_enable_x64", True)
from mp_jax.engine import parallel  # noqa: E402
from mp_jax.models import autoencoder as ae  # noqa: E402
from mp_jax.models import recurrent_fast as rec  # noqa: E402

if PART in ("all", "main"):
    check_recurrent(result)
if PART in ("all", "reuse"):
    check_reuse(result)
if PART in ("all", "main"):
    check_autoencoder_and_meshes(result)
print("RESULT " + json.dumps(result))
