"""Q3's LSTM at tiny sizes, float64, trained by :func:`mp_jax.engine.train.fit` on a 2-device mesh:
one process with 2 CPU devices, or each of 2 processes with 1 (``--coordinator`` ...).

Process 0 checkpoints after every epoch (``<out>/checkpoint.h5``, then a marker file
``<out>/epoch-<E>``) and at the end writes the parameters (``<out>/params.npz``) and one
line ``RESULT {json}``; a rerun resumes from the checkpoint (read by process 0, handed to
the others by :func:`mp_jax.engine.distributed.share_fit_state`). ``--hold-after E``: the other
processes wait after epoch E until they are killed (the test of a lost process).

``python distributed_training.py --out DIR --cpu-devices K [--coordinator HOST:PORT
--num-processes N --process-id I] [--epochs E] [--hold-after E]``
"""
import argparse
import json
import time
from pathlib import Path

from mp_jax.runtime import cli
from mp_jax.engine import distributed, parallel

N, N_VAL, T, D, H, M, C, BATCH = 27, 10, 6, 3, 6, 5, 4, 8  # 27 = 3 batches of 8 and a remainder of 3
HOLD_GUARD_S = 1800  # a held process that is never killed gives up after this (a guard only)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="distributed_training.py")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cpu-devices", type=cli.positive_int, required=True)
    p.add_argument("--epochs", type=cli.positive_int, default=2)
    p.add_argument("--hold-after", type=cli.positive_int, default=None)
    distributed.add_arguments(p)
    args = p.parse_args(argv)
    parallel.use_cpu_cores(args.cpu_devices)
    distributed.initialize_from_args(args, p)  # before any JAX computation

    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from mp_jax.engine import checkpoint, train
    from mp_jax.models import recurrent_fast as rec

    kx, ky, kv, kw, kp, kt = jax.random.split(jax.random.PRNGKey(0), 6)
    data = (np.asarray(jax.random.normal(kx, (N, T, D), jnp.float64)), np.asarray(jax.random.randint(ky, (N,), 0, C)))
    val = (np.asarray(jax.random.normal(kv, (N_VAL, T, D), jnp.float64)),
           np.asarray(jax.random.randint(kw, (N_VAL,), 0, C)))
    params = rec.init_params(kp, "lstm", D, H, M, C, dtype=jnp.float64)
    opt = train.sgd_momentum(0.1, 0.9)
    mesh = train.make_mesh()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "checkpoint.h5"

    template = train.init_fit_state(params, opt, kt)
    state = None
    if distributed.is_writer() and path.exists():
        state, _ = checkpoint.load_state(path, template)
    state = distributed.share_fit_state(state, template)
    start_epoch = 0 if state is None else state.epoch

    def on_epoch_end(s):
        if distributed.is_writer():
            checkpoint.save_state(path, s, {"name": "lstm"})
            (args.out / f"epoch-{s.epoch}").write_text("")
        elif args.hold_after == s.epoch:
            time.sleep(HOLD_GUARD_S)
            raise SystemExit(3)

    res = train.fit(rec.loss_and_grad_reusing, opt, params, data, train.FitConfig(epochs=args.epochs, batch_size=BATCH),
                    key=kt, val_data=val, metrics_fn=rec.metrics, state=state, on_epoch_end=on_epoch_end,
                    progress=False, mesh=mesh, per_example_mean=True)
    feed = None  # one process: the data lives on its devices, the epoch permutes it
    if parallel.spans_processes(mesh):  # the rows of each full minibatch this process puts on its devices
        full = train.feed(kt, data, BATCH, mesh).full
        feed = (sum(sh.data.shape[1] for sh in jax.tree.leaves(full)[0].addressable_shards), BATCH)
    if distributed.is_writer():
        leaves = [np.asarray(a) for a in jax.tree.leaves(res.last_params)]
        np.savez(args.out / "params.npz", *leaves)
    print("RESULT " + json.dumps({
        "process": distributed.process_id(), "processes": jax.process_count(), "mesh_devices": mesh.size,
        "local_devices": jax.local_device_count(), "start_epoch": start_epoch, "epochs_run": res.epochs_run,
        "fed_rows": None if feed is None else list(feed), "train_loss": res.history["train_loss"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(distributed.guarded(main)))
