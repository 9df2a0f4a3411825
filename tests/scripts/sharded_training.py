"""Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=4.

Trains the same model on 1, 2 and 4 devices and checks the manual gradients under
sharding against jax.grad; prints one JSON line of results.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np

from mp_jax import train
from mp_jax.models import mlp

assert jax.device_count() == 4, jax.devices()


def blobs(n, key=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(key))
    y = jax.random.randint(k1, (n,), 0, 3)
    c = jnp.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return c[y] + 0.7 * jax.random.normal(k2, (n, 2)), y


params = mlp.init_params(jax.random.PRNGKey(0), 2, 16, 3)
data, val = blobs(300), blobs(100, 1)
out = {"devices": [], "max_diff": {}, "sharded_grad_rel_err": {}}
ref = None
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
    batch = jax.tree.map(lambda a: a[:32], data)
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    sharded = jax.device_put(batch, spec)
    _, g_man = jax.jit(mlp.loss_and_grad)(train.replicate(params, mesh), sharded)
    g_ref = jax.grad(mlp.loss)(params, batch)
    out["sharded_grad_rel_err"][n] = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))
        for a, b in zip(jax.tree.leaves(g_man), jax.tree.leaves(g_ref)))
    out.setdefault("rows_per_device", {})[n] = sorted({s.data.shape[0] for s in sharded[0].addressable_shards})

try:
    train.fit(mlp.loss_and_grad, train.sgd_momentum(0.05, 0.9), params, data,
              train.FitConfig(epochs=1, batch_size=30), key=jax.random.PRNGKey(1), progress=False,
              mesh=train.make_mesh(4))
    out["indivisible_error"] = None
except ValueError as e:
    out["indivisible_error"] = str(e)
print("RESULT " + json.dumps(out))
