"""Held-out splits of a training set, and statistics taken from the training part only.

* :func:`holdout_split` — a random fraction of the examples held out (Q1's patches).
* :func:`validation_split` — whole subjects held out when the file has subject ids (Q3),
  else a random fraction: a model is then validated on people it never saw.
* :func:`channel_stats` — per-channel mean and standard deviation of sequences, for
  standardising every split with the training split's statistics.
* :func:`patch_sets` (Q1) and :func:`activity_sets` (Q3) — a loaded course file turned into
  what a question trains on: an optional random subset, the held-out part, the
  preprocessing or standardisation.

Every function takes the NumPy generator it draws from, so a seed fixes the split.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from mp_jax.data.course import ActivityData, PatchData


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), found {fraction}")


def holdout_split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held)`` of ``n`` examples: ``held`` the first max(1, round(fraction·n))
    of a random permutation, ``train`` the rest, both in that permutation's order."""
    _check_fraction(fraction)
    if n < 2:
        raise ValueError(f"holdout_split needs at least 2 examples, found {n}")
    perm = rng.permutation(n)
    n_held = max(1, int(round(fraction * n)))
    return perm[n_held:], perm[:n_held]


def validation_split(subjects: Optional[np.ndarray], n: int, fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Indices ``(train, val)`` (ascending) and a description of the split.

    With subject ids (<int>[n], at least two distinct), whole subjects are held out: in a
    seeded random order, a subject is added to validation while that brings the held-out
    share closer to ``fraction`` (at least one subject, never all). Otherwise a random
    ``fraction`` of the examples.

    Returns:
      ``(train, val, how)`` with ``how = {"kind": "subject" | "random", "subjects": sorted
      held-out ids or None, "n_val": int}``.
    """
    _check_fraction(fraction)
    if subjects is not None and len(subjects) != n:
        raise ValueError(f"validation_split: {len(subjects)} subject ids for {n} examples")
    if subjects is not None and len(np.unique(subjects)) >= 2:
        order = rng.permutation(np.unique(subjects))
        target = fraction * n
        chosen, held = [], 0
        for s in order[:-1]:
            size = int(np.sum(subjects == s))
            if chosen and abs(held + size - target) >= abs(held - target):
                continue
            chosen.append(int(s))
            held += size
        is_val = np.isin(subjects, chosen)
        how = {"kind": "subject", "subjects": sorted(chosen)}
    else:
        is_val = np.zeros(n, bool)
        is_val[rng.permutation(n)[: max(1, int(round(fraction * n)))]] = True
        how = {"kind": "random", "subjects": None}
    how["n_val"] = int(is_val.sum())
    return np.flatnonzero(~is_val), np.flatnonzero(is_val), how


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (+1e-8, never 0) of sequences
    <float>[N, T, D] over windows and time: <float>[D] each."""
    x = np.asarray(x)
    return x.mean(axis=(0, 1)), x.std(axis=(0, 1)) + 1e-8


class PatchSets(NamedTuple):
    """Q1's patches, preprocessed (:func:`mp_jax.preprocess.preprocess`, σ over the whole set)."""

    x_train: np.ndarray  # <float32>[N_train, 256]
    x_held: np.ndarray  # <float32>[N_held, 256], never trained on
    shown_rgb: np.ndarray  # <float32>[K, 3, 16, 16]: K random patches to show, in RGB
    shown: np.ndarray  # <float32>[K, 256]: the same, preprocessed
    sigma: float  # σ of the preprocessing


def patch_sets(data: PatchData, heldout_fraction: float, rng: np.random.Generator, *,
               n_patches: Optional[int] = None, n_shown: int = 200) -> PatchSets:
    """A random ``n_patches`` of the file's patches (all when None), preprocessed with σ over
    that set, ``n_shown`` of them picked to show, then split by :func:`holdout_split`.
    Draws from ``rng`` in that order."""
    import jax

    from mp_jax import preprocess as pp

    rgb = data.patches
    if n_patches is not None and n_patches < len(rgb):
        rgb = rgb[np.sort(rng.choice(len(rgb), n_patches, replace=False))]
    x = np.asarray(jax.jit(pp.preprocess)(rgb), dtype=np.float32)
    shown = rng.choice(len(rgb), min(n_shown, len(rgb)), replace=False)
    train, held = holdout_split(len(x), heldout_fraction, rng)
    return PatchSets(x[train], x[held], rgb[shown], x[shown], float(jax.jit(pp.patch_sigma)(rgb)))


class ActivitySets(NamedTuple):
    """Q3's windows in two views: the selection view (training part, validation subjects,
    test; standardized per channel with the training part's statistics) and the refit
    view (every training window, test; standardized with all the training windows'
    statistics). The test windows are in both, never used to choose anything."""

    train: tuple  # (x <float32>[N, T, D], y <int>[N]): the training part
    val: tuple  # the held-out subjects
    test: tuple
    how: dict  # the validation split (:func:`validation_split`)
    mean: np.ndarray  # <float>[D], of the training part
    std: np.ndarray  # <float>[D]
    train_all: tuple  # (x, y): the training part and the validation subjects together
    test_all: tuple  # the test windows, standardized like train_all
    mean_all: np.ndarray  # <float>[D], of train_all
    std_all: np.ndarray


def activity_sets(data: ActivityData, val_fraction: float, rng: np.random.Generator, *,
                  n_train: Optional[int] = None, n_test: Optional[int] = None,
                  batch_size: Optional[int] = None) -> ActivitySets:
    """A random ``n_train`` of the training windows and ``n_test`` of the test windows (all
    when None), the validation split of :func:`validation_split` (by subject when the file
    has subject ids), and each split standardized with the training split's
    :func:`channel_stats`; and the refit view, every training window kept (training part
    and validation subjects) and standardized with their statistics. ``batch_size``: the
    training part is cut to whole batches of it (the quick settings: one compiled step).
    Draws from ``rng`` in that order."""
    x, y, subj, x_te, y_te = data.train_x, data.train_y, data.train_subjects, data.test_x, data.test_y
    if n_train is not None:
        keep = rng.permutation(len(x))[:n_train]
        x, y, subj = x[keep], y[keep], (subj[keep] if subj is not None else None)
    if n_test is not None:
        keep = rng.permutation(len(x_te))[:n_test]
        x_te, y_te = x_te[keep], y_te[keep]
    tr, va, how = validation_split(subj, len(x), val_fraction, rng)
    if batch_size and tr.size > batch_size:
        tr = tr[: tr.size - tr.size % batch_size]
    mean, std = channel_stats(x[tr])
    everything = np.sort(np.concatenate([tr, va]))
    if batch_size and everything.size > batch_size:
        everything = everything[: everything.size - everything.size % batch_size]
    mean_all, std_all = channel_stats(x[everything])

    def norm(a, m=mean, s=std):
        return ((a - m) / s).astype(np.float32)

    return ActivitySets((norm(x[tr]), y[tr]), (norm(x[va]), y[va]), (norm(x_te), y_te), how, mean, std,
                        (norm(x[everything], mean_all, std_all), y[everything]), (norm(x_te, mean_all, std_all), y_te),
                        mean_all, std_all)
