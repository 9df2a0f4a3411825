"""One named training run: the single door every experiment trains through.

``fit_run`` wraps :func:`mp_jax.train.fit` so that the main job can add what runs need
around it (checkpoints after every epoch, resumption, skipping finished runs, progress)
without the experiments changing.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import optax

from mp_jax import train


def fit_run(
    name: str,
    *,
    config: dict,
    data_id: str,
    loss_and_grad,
    optimizer: optax.GradientTransformation,
    params: Any,
    train_data: Any,
    fit_config: train.FitConfig,
    key: jax.Array,
    val_data: Any = None,
    metrics_fn=None,
    progress: Optional[bool] = None,
) -> train.FitResult:
    """Train one run.

    Args:
      name: a short unique name within the question, e.g. ``"lm_D32_P256"``.
      config: every setting that defines the run (JSON-serialisable: numbers, strings,
        lists); together with ``data_id`` it keys the run's checkpoint.
      data_id: a string identifying the data (e.g. a content hash of the file).
      The rest as :func:`mp_jax.train.fit`.
    """
    return train.fit(
        loss_and_grad, optimizer, params, train_data, fit_config,
        key=key, val_data=val_data, metrics_fn=metrics_fn, progress=progress, desc=name,
    )
