"""Smoke experiment: a small MLP with manual gradients on a generated two-spirals set.

Exercises the whole path (engine, early stopping, metrics, figures) in seconds.
Writes ``<results-dir>/smoke/metrics.json`` and ``loss.png``.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, plotting, runner
from mp_jax import train
from mp_jax.models import mlp


def spirals(key, n: int, noise: float = 0.15):
    """Two interleaved spirals: x <float32>[n, 2], y <int32>[n]."""
    k1, k2, k3 = jax.random.split(key, 3)
    t = jax.random.uniform(k1, (n,), minval=0.25, maxval=2.0 * jnp.pi)
    y = jax.random.bernoulli(k2, 0.5, (n,)).astype(jnp.int32)
    sign = 2.0 * y - 1.0
    x = jnp.stack([sign * t * jnp.cos(t), sign * t * jnp.sin(t)], axis=1) / (2.0 * jnp.pi)
    return x + noise * jax.random.normal(k3, x.shape) / 2.0, y


def run(args) -> dict:
    with common.session(args, "smoke") as (out, _):
        return _run(args, out)


def _run(args, out) -> dict:
    key = jax.random.PRNGKey(args.seed)
    k_data, k_init, k_fit = jax.random.split(key, 3)
    n = 600 if args.quick else 3000
    x, y = spirals(k_data, n + n // 5)
    train_data, val_data = (x[:n], y[:n]), (x[n:], y[n:])
    params = mlp.init_params(k_init, 2, 64, 2)
    cfg = train.FitConfig(epochs=60 if args.quick else 300, batch_size=32, patience=30)
    t = time.perf_counter()
    res = runner.fit_run("smoke_mlp", config={"hidden": 64, "lr": 0.05, "momentum": 0.9, "n": n}, data_id=f"spirals-{args.seed}",
                         loss_and_grad=mlp.loss_and_grad, optimizer=train.sgd_momentum(0.05, 0.9), params=params,
                         train_data=train_data, val_data=val_data, metrics_fn=mlp.metrics, fit_config=cfg, key=k_fit,
                         progress=common.progress_flag(args))
    seconds = time.perf_counter() - t
    final = train.make_eval_fn(mlp.metrics, 4096)(res.params, val_data)
    metrics = {
        "val_loss": float(final["loss"]),
        "val_accuracy": float(final["accuracy"]),
        "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run,
        "seconds": seconds,
        "history": res.history,
    }
    plotting.loss_curves(res.history, out / "loss.png", "smoke: MLP on two spirals")
    common.write_json(out / "metrics.json", metrics)
    print(f"smoke: val accuracy {metrics['val_accuracy']:.3f} (best epoch {res.best_epoch}) -> {out}")
    return metrics


def main(argv=None) -> int:
    args = common.base_parser("python -m experiments.smoke", __doc__).parse_args(argv)
    common.setup_logging()
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
