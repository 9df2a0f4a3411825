"""Figures (matplotlib, Agg backend, PNG)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save(fig, path: os.PathLike, dpi: int = 120) -> Path:
    """Save a figure as PNG (atomically) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    os.replace(tmp, path)
    plt.close(fig)
    return path


def loss_curves(history: dict, path: os.PathLike, title: str, ylabel: str = "cross-entropy") -> Path:
    """Training (and validation, when present) loss per epoch."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    epochs = range(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="training")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)
