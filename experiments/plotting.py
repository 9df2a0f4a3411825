"""Every figure of the report (matplotlib, Agg backend, PNG), question by question.

The functions take arrays and the records the experiments save (``metrics.json`` entries),
never a model: what a figure shows is computed by the experiment, and a figure can be
redrawn from saved numbers.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mp_jax.engine import distributed  # noqa: E402
from mp_jax.runtime import atomic  # noqa: E402
from mp_jax.engine.metrics import accuracy, row_normalized  # noqa: E402
from mp_jax.models.autoencoder_measures import unit_images  # noqa: E402


def save(fig, path: os.PathLike, dpi: int = 120) -> Path:
    """Save a figure as PNG atomically (:func:`mp_jax.runtime.atomic.save_figure`: rendered in
    memory, then a temporary file renamed over ``path``) and close it. In a distributed run
    only the writing process saves (:func:`mp_jax.engine.distributed.is_writer`)."""
    path = Path(path)
    if not distributed.is_writer():
        plt.close(fig)
        return path
    return atomic.save_figure(fig, path, dpi=dpi, bbox_inches="tight")


def time_label(seconds: float, loaded: bool = False) -> str:
    """ "trained in 27 s", or "loaded (trained in 27 s)" for a run read back from its checkpoint."""
    text = f"trained in {seconds:.0f} s" if math.isfinite(seconds) else "trained earlier"
    return f"loaded ({text})" if loaded else text


def loss_curves(history: dict, path: os.PathLike, title: str, ylabel: str = "cross-entropy",
                best_epoch: Optional[int] = None) -> Path:
    """Training (and validation, when present) loss per epoch; a dashed line at ``best_epoch``."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], marker=".", label="training (mean over the epoch)")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], marker=".", label="validation")
    if best_epoch:
        ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best epoch ({best_epoch})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


# ----------------------------------------------------------------------------- Q1
def mosaic(images: np.ndarray, cols: Optional[int] = None, pad: int = 1, normalise: bool = True) -> np.ndarray:
    """Tile <float>[K, h, w(, c)] into one image with a dark 1-pixel border.

    normalise: each tile minus its mean, divided by its max |value| (to [−1, 1]); the
    border is −1. Otherwise tiles are shown as they are and the border is 0.
    """
    k, h, w = images.shape[:3]
    cols = cols or int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    fill = -1.0 if normalise else 0.0
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad) + images.shape[3:], fill, dtype=np.float64)
    for i, im in enumerate(images):
        if normalise:
            im = im - im.mean()
            im = im / max(np.abs(im).max(), 1e-12)
        r, c = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return out


def feature_title(rec: dict, label: Optional[str] = None) -> str:
    """A feature panel's title from a Q1 record: the optimiser (when given), the setting,
    the units' census (duplicates, noise, dead, distinct structured; where the record has
    it), ρ̂ and the held-out MSE; for a run that diverged, where it did and which weights
    the panel shows instead."""
    head = f"{label}\n" if label else ""
    census = f"dup {rec['duplicate_units']}/{rec['hidden']}"
    if "noise_units" in rec:
        census = (f"of {rec['hidden']}: {rec['distinct_structured_units']} distinct, {rec['noise_units']} noise, "
                  f"{rec['dead_units']} dead, {rec['duplicate_units']} dup")
    setting = f"{head}$L_{{hid}}$={rec['hidden']}, λ={rec['lam']:g}, β={rec['beta']:g}, ρ={rec['rho']:g}\n"
    if rec.get("diverged"):  # a study member that diverged: where, and which weights are shown
        reason = rec["diverged"].get("reason", "")
        return setting + "DIVERGED: " + reason.replace("; ", "\n", 1)
    return (setting + f"{census}\nρ̂={rec['mean_hidden_activation']:.3f}, MSE {rec['heldout_reconstruction_mse']:.4f}")


def feature_figure(panels: list, path, suptitle: str, cols: Optional[int] = None, panel_size: float = 3.2) -> Path:
    """One grid of hidden-unit weight images per panel ``(w_enc <float>[256, L_hid], title)``,
    ``cols`` panels per row."""
    cols = cols or len(panels)
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(panel_size * cols, (panel_size + 0.7) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (w_enc, title) in zip(axes.flat, panels):
        ax.imshow(mosaic(unit_images(w_enc)), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / height))  # leave the suptitle its own line
    return save(fig, path)


def patch_figures(rgb: np.ndarray, gray: np.ndarray, out: Path, source: str, cols: int = 20) -> None:
    """(a) ``patches_rgb.png`` and ``patches_preprocessed.png``: the same patches
    <float>[K, 3, 16, 16] in RGB and preprocessed <float>[K, 256]."""
    fig, ax = plt.subplots(figsize=(12, 6.4))
    ax.imshow(np.clip(mosaic(rgb.transpose(0, 2, 3, 1), cols, normalise=False), 0, 1), interpolation="nearest")
    ax.set_title(f"(a) {len(rgb)} random 16×16 RGB patches ({source})", fontsize=9)
    ax.axis("off")
    save(fig, out / "patches_rgb.png")
    fig, ax = plt.subplots(figsize=(12, 6.4))
    ax.imshow(mosaic(gray.reshape(-1, 16, 16), cols, normalise=False), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(f"(a) the same {len(gray)} patches preprocessed: grey, patch mean removed, "
                 f"clipped at ±3σ, mapped to [0.1, 0.9]", fontsize=9)
    ax.axis("off")
    save(fig, out / "patches_preprocessed.png")


def reconstruction_figure(x: np.ndarray, o: np.ndarray, rec: dict, label: str, path) -> Path:
    """Held-out patches ``x`` <float>[n, 256] (top row) and their reconstructions ``o`` (bottom)."""
    n = len(x)
    fig, ax = plt.subplots(figsize=(1.0 * n, 2.6))
    ax.imshow(mosaic(np.concatenate([x, o]).reshape(-1, 16, 16), n, normalise=False), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(f"held-out patches of higher contrast (top) and their reconstructions (bottom): {label}, "
                 f"$L_{{hid}}$={rec['hidden']}\nall held-out patches: MSE {rec['heldout_reconstruction_mse']:.4f} per "
                 f"pixel vs {rec['heldout_mean_patch_mse']:.4f} for predicting the mean training patch", fontsize=9)
    ax.axis("off")
    return save(fig, path)


def optimizer_curves(records: dict, labels: dict, path) -> Path:
    """J per step of each optimiser's run (``records``: optimiser -> record with a ``curve``)."""
    fig, axes = plt.subplots(1, len(records), figsize=(5.2 * len(records), 3.6), squeeze=False)
    for ax, (opt, rec) in zip(axes.flat, records.items()):
        c = rec["curve"]
        steps = np.arange(1, len(c["train"]) + 1)
        ax.plot(steps, c["train"], label="training J" + (" (mean over minibatches)" if c["x"] == "epoch" else ""))
        if c.get("heldout"):
            ax.plot(steps, c["heldout"], label="held-out J")
        ax.set_xlabel(c["x"])
        ax.set_ylabel("J")
        ax.set_yscale("log")
        ax.set_title(f"{labels[opt]}: final J {rec['final_cost']:.3f}, "
                     f"{time_label(rec['seconds'], rec.get('loaded', False))}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


# ----------------------------------------------------------------------------- Q2
def samples_figure(samples: list, path, title: str) -> Path:
    """Each sample's top-10 next words as bars (green: the true word)."""
    fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 4.2), squeeze=False)
    for ax, s in zip(axes[0], samples):
        names = [w for w, _ in s["top10"]][::-1]
        probs = [p for _, p in s["top10"]][::-1]
        ax.barh(range(len(names)), probs, color=["tab:green" if w == s["true"] else "tab:blue" for w in names])
        for y, pr in enumerate(probs):
            ax.text(pr, y, f" {pr:.3f}", va="center", fontsize=7)
        ax.set_xlim(0, 1.25 * max(probs))
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([repr(w)[1:-1] for w in names])
        ax.set_xlabel("p(4th word)")
        ax.set_title(f"“{s['trigram']}”\ntrue: “{s['true']}” p={s['p_true']:.3f} (rank {s['rank_true'] + 1})",
                     fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


# ----------------------------------------------------------------------------- Q3
def confusions(cms: dict, names, path, title: str) -> Path:
    """One row per split in ``cms`` (e.g. training, test), columns counts and row-normalized,
    class names on both axes."""
    c = len(names)
    fig, axes = plt.subplots(len(cms), 2, figsize=(10.5, 4.6 * len(cms)), squeeze=False)
    for r, (split, cm) in enumerate(cms.items()):
        cm = np.asarray(cm)
        for col, (mat, fmt, label) in enumerate(((cm, "d", "count"), (row_normalized(cm), ".2f", "fraction of row"))):
            ax, top = axes[r, col], (mat.max() if col == 0 else 1.0)
            im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=top)
            for i in range(c):
                for j in range(c):
                    ax.text(j, i, format(mat[i, j], fmt), ha="center", va="center", fontsize=8,
                            color="white" if mat[i, j] > 0.6 * top else "black")
            ax.set_xticks(range(c), names, rotation=45, ha="right")
            ax.set_yticks(range(c), names)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            ax.set_title(f"{split}: {'counts' if col == 0 else 'row-normalized'} (accuracy {accuracy(cm):.1%})",
                         fontsize=10)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def all_losses(histories: dict, path, title: str) -> Path:
    """Every model's training (dashed) and validation loss per epoch on one plot."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (name, h) in enumerate(histories.items()):
        ep = range(1, len(h["train_loss"]) + 1)
        ax.plot(ep, h["train_loss"], color=f"C{i}", ls="--", label=f"{name} training")
        if "val_loss" in h:
            ax.plot(ep, h["val_loss"], color=f"C{i}", label=f"{name} validation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def q1_default_figures(comparison: dict, labels: dict, default: str, x_show: np.ndarray, o_show: np.ndarray,
                       out: Path) -> None:
    """Q1 (b)-(c) for the default setting: ``features.png``, ``features_optimizers.png``,
    ``optimizer_curves.png`` and ``reconstructions.png``. ``comparison``: optimiser ->
    (parameters, record); ``default``: the optimiser of the default run; ``x_show``,
    ``o_show``: held-out patches and the default model's reconstructions."""
    params, rec = comparison[default]
    feature_figure([(params.w_enc, feature_title(rec, labels[default]))], out / "features.png",
                   "(c) hidden-unit weights (each unit normalised), default setting", panel_size=5.0)
    feature_figure([(p.w_enc, feature_title(r, labels[o])) for o, (p, r) in comparison.items()],
                   out / "features_optimizers.png", "the same model and settings, trained by each optimiser",
                   panel_size=4.2)
    optimizer_curves({o: r for o, (_, r) in comparison.items()}, labels, out / "optimizer_curves.png")
    reconstruction_figure(x_show, o_show, rec, labels[default], out / "reconstructions.png")


def q1_study_figures(beta_rho: list, grid: list, label: str, out: Path, chosen: tuple = ()) -> None:
    """Q1 (c) ``features_beta_rho.png`` (one panel per (β, ρ)) and (d) ``features_sweep.png``
    (rows L_hid, columns λ); each entry a (parameters, record). ``chosen``: the names of the
    settings (c)'s and (d)'s rules pick, in that order; the picked panel of each figure says
    so in its title (one setting can sit in both studies: it is marked only where chosen)."""
    pick_c, pick_d = (tuple(chosen) + (None, None))[:2]

    def title(r, pick):
        return feature_title(r) + (" — chosen" if r["name"] == pick else "")

    first = beta_rho[0][1]
    feature_figure([(p.w_enc, title(r, pick_c)) for p, r in beta_rho], out / "features_beta_rho.png",
                   f"(c) hidden-unit weights for {len(beta_rho)} settings of (β, ρ): {label}, $L_{{hid}}$={first['hidden']}, "
                   f"λ={first['lam']:g}", cols=len(beta_rho))
    rows, cols = [row[0][1]["hidden"] for row in grid], [r["lam"] for _, r in grid[0]]
    mid = grid[0][0][1]
    feature_figure([(p.w_enc, title(r, pick_d)) for row in grid for p, r in row], out / "features_sweep.png",
                   f"(d) hidden-unit weights, rows $L_{{hid}}$ ∈ {{{', '.join(map(str, rows))}}}, columns λ ∈ "
                   f"{{{', '.join(f'{v:g}' for v in cols)}}}: "
                   f"{label}, β={mid['beta']:g}, ρ={mid['rho']:g}", cols=len(cols))


def q3_model_figures(cell: str, cms: dict, validation_history: dict, refit_history: dict, names, what: str,
                     out: Path) -> None:
    """Q3 ``<cell>_confusion.png`` (training and test windows, the refit of one seed) and
    ``<cell>_loss.png``: the validation run's training and validation loss per epoch and the
    refit's training loss; ``what`` describes the run in the titles (size, rate, seed)."""
    confusions({"training": cms["train"], "test": cms["test"]}, names, out / f"{cell}_confusion.png",
               f"Q3 {cell.upper()} ({what}): confusion matrices")
    fig, ax = plt.subplots(figsize=(5.8, 3.9))
    for h, key, label, style in ((validation_history, "train_loss", "validation run: training part", "--"),
                                 (validation_history, "val_loss", "validation run: validation subjects", "-"),
                                 (refit_history, "train_loss", "refit: every training window", ":")):
        if h.get(key):
            ax.plot(np.arange(1, len(h[key]) + 1), h[key], ls=style, marker=".", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title(f"Q3 {cell.upper()}: loss per epoch ({what})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out / f"{cell}_loss.png")


def gradient_flow(flows: dict, path, labels: Optional[dict] = None) -> Path:
    """Q3 ``gradient_flow.png``: ‖∂ℓ/∂h_t‖ (mean over windows) against the step t, log scale,
    one column per model, at initialisation (top row) and after training (bottom row); over
    each measured curve (solid) its predictions when recorded: the path alone (dashed, BPTT7)
    and the whole step (dotted, BPTT8), each legend entry with its factor per step.
    ``flows``: model -> :func:`mp_jax.protocols.activity.gradient_flow_record`'s record
    ({"init": [T], "trained": [T], "n_windows", "seed", optionally "predicted"}); ``labels``:
    model -> column title (default the name in capitals)."""
    labels = labels or {}
    fig, axes = plt.subplots(2, len(flows), figsize=(3.4 * len(flows) + 0.6, 7.4), sharey="row", squeeze=False)
    for col, (name, f) in enumerate(flows.items()):
        for row, (key, when) in enumerate((("init", "at initialisation"), ("trained", "after training"))):
            ax = axes[row, col]
            g = np.asarray(f[key], dtype=float)
            t = np.arange(1, g.size + 1)
            pred = (f.get("predicted") or {}).get(key) or {}
            per = (lambda k: f" ({pred[k]:.3f} per step)" if isinstance(pred.get(k), float) else "")  # noqa: E731
            ax.semilogy(t[g > 0], g[g > 0], color=f"C{col}", lw=1.8, label="measured" + per("factor_measured"))
            if pred.get("log10_predicted"):
                ax.semilogy(t, 10.0 ** np.asarray(pred["log10_predicted"]), color=f"C{col}", ls="--", lw=1.2,
                            label="path alone (BPTT7)" + per("factor_path"))
            if pred.get("log10_whole"):
                ax.semilogy(t, 10.0 ** np.asarray(pred["log10_whole"]), color="0.35", ls=":", lw=1.4,
                            label="whole step (BPTT8)" + per("factor_whole"))
            ax.set_title(f"{labels.get(name, name.upper())}, {when}", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7, loc="lower right")
            if row == 1:
                ax.set_xlabel("time step t (T = last)")
    for row in axes:
        row[0].set_ylabel(r"$\gamma_t$ = mean $\Vert \partial \ell / \partial h_t \Vert$ (BPTT6)")
    first = next(iter(flows.values()))
    fig.suptitle(f"Q3: the gradient reaching each step through time, measured and predicted ({first['n_windows']} "
                 f"training windows, seed {first['seed']}; docs/recurrent.md)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


Q2_MODEL_LABELS = {"kneser_ney": "Kneser-Ney", "tuned": "tuned network", "interpolated": "chosen network + Kneser-Ney",
                   "interpolated_tuned": "tuned network + Kneser-Ney"}


def q2_model_label(name: str, seeds: int = 1) -> str:
    """ "tuned network (mean of 3 seeds)", "network (32, 256)", ... for a Q2 model's key."""
    base = Q2_MODEL_LABELS.get(name) or (f"network ({name[2:].replace(',P=', ', ')})" if name.startswith("D=") else name)
    return base + (f" (mean of {seeds} seeds)" if seeds > 1 else "")


def q2_context_frequency(freq: dict, path) -> Path:
    """Q2: each model's test cross-entropy by how often the test trigram was a training context
    (``freq``: :func:`experiments.q2_language_model.context_frequency`'s record). Left: the
    cross-entropy per frequency group; right: each model minus Kneser-Ney (below 0: the model
    wins there). Each group's share of the test rows is under its label."""
    names = list(freq["cross_entropy"])
    bins, seeds = freq["bins"], freq.get("seeds", {})
    kn = freq["cross_entropy"].get("kneser_ney")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4))
    x = np.arange(len(bins))
    labels = [f"{b}\n({100 * s:.0f} %)" for b, s in zip(bins, freq["share"])]
    others = [n for n in names if n != "kneser_ney"]
    width = 0.8 / max(len(others), 1)
    for i, name in enumerate(names):
        vals = np.array([np.nan if v is None else v for v in freq["cross_entropy"][name]])
        ax.plot(x, vals, marker="o", color=f"C{i}", label=q2_model_label(name, seeds.get(name, 1)))
        if name != "kneser_ney" and kn:
            j = others.index(name)
            diff = vals - np.array([np.nan if v is None else v for v in kn])
            bx.bar(x - 0.4 + (j + 0.5) * width, diff, width, color=f"C{i}")
    ax.set_xticks(x, labels)
    ax.set_ylabel("test cross-entropy (nats)")
    ax.set_title("cross-entropy by context frequency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    bx.axhline(0.0, color="black", lw=0.8)
    bx.set_xticks(x, labels)
    bx.set_ylabel("model minus Kneser-Ney (nats)")
    bx.set_title("below 0: the model beats the counts there")
    bx.grid(alpha=0.3, axis="y")
    for a in (ax, bx):
        a.set_xlabel("times the test trigram was a training context (share of the test rows)")
    fig.suptitle("Q2: where the networks and Kneser-Ney win")
    return save(fig, path)
