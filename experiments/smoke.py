"""Smoke experiment: a small MLP with manual gradients on a generated two-spirals set.

Exercises the whole path (engine, early stopping, metrics, figures) in seconds.
Writes ``<results-dir>/smoke/metrics.json`` and ``loss.png`` (``smoke_quick/`` with ``--quick``).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from experiments import common, files, plotting
from experiments.config import RunOptions
from mp_jax.protocols import runs
from mp_jax.runtime import cli
from mp_jax.engine import distributed, train
from mp_jax.models import mlp


def spirals(key, n: int, noise: float = 0.15):
    """Two interleaved spirals: x <float32>[n, 2], y <int32>[n]."""
    k1, k2, k3 = jax.random.split(key, 3)
    t = jax.random.uniform(k1, (n,), minval=0.25, maxval=2.0 * jnp.pi)
    y = jax.random.bernoulli(k2, 0.5, (n,)).astype(jnp.int32)
    sign = 2.0 * y - 1.0
    x = jnp.stack([sign * t * jnp.cos(t), sign * t * jnp.sin(t)], axis=1) / (2.0 * jnp.pi)
    return x + noise * jax.random.normal(k3, x.shape) / 2.0, y


@dataclasses.dataclass(frozen=True)
class SmokeConfig(RunOptions):
    """The smoke run's settings (:meth:`quick`: fewer examples and epochs)."""

    n: int = 3000  # training examples (a fifth as many more for validation)
    hidden: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    batch_size: int = 32
    epochs: int = 300
    patience: int = 30

    @classmethod
    def quick(cls, **changes) -> "SmokeConfig":
        return cls(**{**dict(is_quick=True, n=600, epochs=60), **changes})

    def batch_sizes(self) -> dict:
        return {"smoke batch": self.batch_size}


Config = SmokeConfig


def run(config: SmokeConfig, ctx: Optional[runs.RunContext] = None) -> dict:
    c, out = config, files.question_dir(config.results_dir, config.results_name("smoke"))
    ctx = ctx or runs.RunContext(progress=c.progress)
    k_data, k_init, k_fit = jax.random.split(jax.random.PRNGKey(c.seed), 3)
    x, y = spirals(k_data, c.n + c.n // 5)
    train_data, val_data = (x[:c.n], y[:c.n]), (x[c.n:], y[c.n:])
    training = runs.Training(mlp.loss_and_grad, train.sgd_momentum(c.learning_rate, c.momentum),
                               train.FitConfig(epochs=c.epochs, batch_size=c.batch_size, patience=c.patience),
                               metrics_fn=mlp.metrics)
    res = runs.fit_run(ctx, "smoke_mlp", training, mlp.init_params(k_init, 2, c.hidden, 2), train_data, key=k_fit,
                         val_data=val_data, run_key=c.run_key(data=f"spirals-{c.seed}", split=f"{c.n} training, "
                                                              f"{c.n // 5} validation", model="mlp"))
    final = train.make_eval_fn(mlp.metrics, 4096)(res.params, val_data)
    metrics = {"val_loss": float(final["loss"]), "val_accuracy": float(final["accuracy"]), "best_epoch": res.best_epoch,
               "epochs_run": res.epochs_run, "seconds": res.seconds, "loaded": res.loaded, "history": res.history}
    plotting.loss_curves(res.history, out / "loss.png", "smoke: MLP on two spirals", best_epoch=res.best_epoch)
    files.write_metrics(out, metrics, c, "smoke", data=f"spirals-{c.seed}", ctx=ctx)
    print(f"smoke: val accuracy {metrics['val_accuracy']:.3f} (best epoch {res.best_epoch}) -> {out}")
    return metrics


def main(argv=None) -> int:
    return common.run_main("smoke", common.base_parser("python -m experiments.smoke", __doc__), SmokeConfig.from_args,
                           run, argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(distributed.guarded(main)))
