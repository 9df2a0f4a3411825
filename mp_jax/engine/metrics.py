"""Evaluation helpers shared by the experiments: predictions over a whole split in chunks of
one compiled shape, confusion matrices, and a mean ± standard deviation over seeds.

Everything returns NumPy arrays or Python numbers (results to report, not to train on).
"""
from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
import numpy as np


def chunked(fn: Callable, params: Any, x: np.ndarray, chunk: int = 1024, dtype=None) -> np.ndarray:
    """``fn(params, x)`` for every row of ``x``, ``chunk`` rows at a time.

    The last chunk is padded with zero rows to the same shape, so a jitted ``fn`` compiles
    once for every split (the padded rows' outputs are dropped). ``chunk`` larger than
    ``len(x)`` shrinks to it.

    Args:
      fn: ``(params, <[chunk, ...]>) -> <[chunk, ...]>`` (e.g. a model's ``predict``).
      x: <[N, ...]> inputs (NumPy or JAX).
      dtype: the result's NumPy dtype (default: as ``fn`` returns).
    Returns:
      <[N, ...]> NumPy array.
    """
    x = np.asarray(x)
    n = x.shape[0]
    if n == 0:
        raise ValueError("chunked: x has no rows")
    size = max(1, min(int(chunk), n))
    out = []
    for start in range(0, n, size):
        part = x[start:start + size]
        pad = size - part.shape[0]
        if pad:
            part = np.concatenate([part, np.zeros((pad,) + part.shape[1:], part.dtype)])
        out.append(np.asarray(fn(params, jnp.asarray(part)), dtype=dtype)[: size - pad])
    return np.concatenate(out)


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts <int64>[C, C]: row = true class, column = predicted class."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def row_normalized(cm: np.ndarray) -> np.ndarray:
    """Each row of a confusion matrix divided by its sum (a row of zeros stays zeros):
    entry [i, j] is the fraction of class i predicted as j; the diagonal is each class's recall."""
    cm = np.asarray(cm)
    return cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)


def accuracy(cm: np.ndarray) -> float:
    """The fraction on the diagonal of a confusion matrix (0 for an empty one)."""
    cm = np.asarray(cm)
    return float(np.trace(cm) / max(cm.sum(), 1))


def mean_std(values) -> dict:
    """``{"mean", "std", "per_seed"}`` of a list of numbers; std is the sample standard
    deviation (ddof 1), 0 for a single value."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "per_seed": v.tolist()}


def compare_over_seeds(a, b) -> dict:
    """Whether the mean of ``a`` (numbers over seeds) differs from the mean of ``b`` by more
    than their spread: ``{"gap": mean(a) − mean(b), "spread": std(a) + std(b), "exceeds":
    |gap| > spread}`` (sample standard deviations; a rule of thumb, stated where it is used,
    not a significance test)."""
    ma, mb = mean_std(a), mean_std(b)
    gap, spread = ma["mean"] - mb["mean"], ma["std"] + mb["std"]
    return {"gap": gap, "spread": spread, "exceeds": bool(abs(gap) > spread)}


def classification_summary(cms: dict) -> dict:
    """A classifier's numbers from its confusion matrices per split (``cms``: ``{"train",
    "validation", "test"}`` -> <int>[C, C]): ``<split>_accuracy`` (``val_accuracy`` for the
    validation split), ``confusion_<split>`` as nested lists, and the test recall per class."""
    short = {"train": "train", "validation": "val", "test": "test"}
    out = {f"{short.get(k, k)}_accuracy": accuracy(v) for k, v in cms.items()}
    out.update({f"confusion_{short.get(k, k)}": np.asarray(v).tolist() for k, v in cms.items()})
    if "test" in cms:
        out["test_recall_per_class"] = np.diag(row_normalized(cms["test"])).tolist()
    return out
