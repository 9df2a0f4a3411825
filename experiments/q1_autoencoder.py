"""Q1: a sparse autoencoder on 16×16 natural-image patches, parts (a)-(d).

(a) 200 random patches in RGB and the same 200 preprocessed (grey, mean removed,
    clipped at ±3σ, mapped to [0.1, 0.9]).
(b) a tied-weight sparse autoencoder (L_hid = 64, λ = 5e-4, β = 2.2, ρ = 0.026) trained
    with the manual gradients, by full-batch L-BFGS (the default) and by the report's
    minibatch SGD with momentum (lr 0.075, momentum 0.9, batch 32, 200 epochs), compared.
(c) each hidden unit's weights as a 16×16 image, for the chosen setting and for the
    report's five (β, ρ).
(d) a 3 × 3 sweep over L_hid × λ, one figure of nine feature grids.

The (β, ρ) study and each L_hid row of the sweep (its three λ) are trained as one
program by default, ``jax.vmap`` over the members (``lbfgs.minimize_many`` or
``sweep.fit_sweep``); each member equals its run trained alone to round-off.
``--no-vmap`` trains them one by one; ``--compare-vmap`` trains them both ways and
records the seconds in ``metrics.json["sweep_timing"]``.

Quality measures, for every run: the fraction of hidden units whose weight image
correlates above 0.95 with another unit's (duplicates), the reconstruction MSE on
held-out patches against predicting the mean training patch, and the mean hidden
activation against ρ. 10 % of the patches are held out (never trained on); σ for the
preprocessing is taken over the whole set, as SPEC.md asks.

Why L-BFGS is the default: on the stand-in photos the report's SGD ends far from the
minimum of J and most of its units duplicate each other, while full-batch L-BFGS (the
original UFLDL exercise) reaches a lower J with distinct oriented edge detectors. The
numbers are in ``metrics.json["optimizers"]`` and ``features_optimizers.png``. The
culprit is the batch of 32: ρ̂ estimated on 32 patches (about one active patch per
unit at ρ = 0.026) makes the sparsity gradient noisy; the same SGD with batches of 256
gave no duplicates in a probe.

Writes ``<results-dir>/q1/metrics.json`` and PNGs.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, plotting, runner
from mp_jax import lbfgs, sweep, train
from mp_jax import preprocess as pp
from mp_jax.data import load_patches
from mp_jax.models import autoencoder as ae

plt = plotting.plt
log = logging.getLogger("experiments.q1")

OPTIMIZERS = ("lbfgs", "sgd")
OPTIMIZER_LABEL = {"lbfgs": "L-BFGS (full batch)", "sgd": "SGD+momentum (batch 32)"}


@dataclasses.dataclass(frozen=True)
class Settings:
    hidden: int = 64
    hp: ae.AEHyper = ae.AEHyper(lam=5e-4, beta=2.2, rho=0.026)
    optimizer: str = "lbfgs"  # the default; the other one is trained for the comparison
    # the report's SGD
    sgd_lr: float = 0.075
    sgd_momentum: float = 0.9
    sgd_batch: int = 32
    sgd_epochs: int = 200
    # full-batch L-BFGS (UFLDL used 400 iterations of minFunc's L-BFGS)
    lbfgs_iters: int = 400
    lbfgs_memory: int = 10
    lbfgs_chunk: int = 25
    # parts (c) and (d)
    beta_rho: tuple = ((2.2, 0.026), (10.0, 0.026), (0.01, 0.026), (2.2, 0.9), (2.2, 0.001))
    sweep_hidden: tuple = (25, 64, 100)
    sweep_lam: tuple = (1e-5, 5e-4, 1e-3)
    heldout_fraction: float = 0.1
    n_patches: Optional[int] = None  # None: every patch of the file
    duplicate_threshold: float = 0.95


QUICK = dict(hidden=16, sgd_epochs=2, lbfgs_iters=20, lbfgs_chunk=10, sweep_hidden=(4, 9, 16), n_patches=1200)


# ----------------------------------------------------------------------------- measures
def unit_images(w_enc) -> np.ndarray:
    """Each hidden unit's incoming weights as an image: <float>[L_hid, 16, 16]."""
    w = np.asarray(w_enc, dtype=np.float64)
    side = int(round(np.sqrt(w.shape[0])))
    return w.T.reshape(w.shape[1], side, side)


def duplicate_fraction(w_enc, threshold: float = 0.95) -> float:
    """Fraction of hidden units whose weight image correlates (Pearson) above
    ``threshold`` with some other unit's."""
    w = np.asarray(w_enc, dtype=np.float64).T
    if w.shape[0] < 2:
        return 0.0
    w = w - w.mean(axis=1, keepdims=True)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    c = w @ w.T
    np.fill_diagonal(c, -np.inf)
    return float(np.mean(c.max(axis=1) > threshold))


@jax.jit
def _measures(params: ae.AEParams, hp: ae.AEHyper, x_train, x_held) -> dict:
    return {
        "terms": ae.cost_terms(params, x_train, hp),
        "rho_hat": ae.mean_hidden_activation(params, x_train),
        "rho_hat_held": ae.mean_hidden_activation(params, x_held),
        "mse": jnp.mean(jnp.square(ae.reconstruct(params, x_held) - x_held)),
        "baseline": jnp.mean(jnp.square(x_held - jnp.mean(x_train, axis=0))),
    }


def evaluate(params: ae.AEParams, hp: ae.AEHyper, x_train, x_held, threshold: float) -> dict:
    """Every number reported for one trained model (J and ρ̂ over the whole training set)."""
    m = jax.device_get(_measures(params, hp, x_train, x_held))
    terms = {k: float(v) for k, v in m["terms"].items()}
    rho_hat, rho_hat_held = np.asarray(m["rho_hat"]), np.asarray(m["rho_hat_held"])
    mse, baseline = float(m["mse"]), float(m["baseline"])
    n_hidden = int(params.w_enc.shape[1])
    dup = duplicate_fraction(params.w_enc, threshold)
    return {
        "final_cost": sum(terms.values()),
        "cost_terms": terms,
        "rho": float(hp.rho),
        "mean_hidden_activation": float(rho_hat.mean()),
        "mean_hidden_activation_range": [float(rho_hat.min()), float(rho_hat.max())],
        "mean_hidden_activation_heldout": float(rho_hat_held.mean()),
        "heldout_reconstruction_mse": mse,
        "heldout_mean_patch_mse": baseline,
        "heldout_mse_ratio": mse / baseline,
        "duplicate_fraction": dup,
        "duplicate_units": int(round(dup * n_hidden)),
    }


# ----------------------------------------------------------------------------- training
# compiled once per shape (eager dispatch would compile every primitive separately)
_init = jax.jit(ae.init_params, static_argnums=(1, 2))
_preprocess = jax.jit(pp.preprocess)


def _config(s: Settings, optimizer: str, hidden: int, hp: ae.AEHyper) -> dict:
    cfg = {"model": "autoencoder", "tied": True, "hidden": hidden, "hp": {k: float(v) for k, v in hp._asdict().items()},
           "optimizer": optimizer}
    if optimizer == "sgd":
        cfg.update(lr=s.sgd_lr, momentum=s.sgd_momentum, batch=s.sgd_batch, epochs=s.sgd_epochs)
    else:
        cfg.update(iters=s.lbfgs_iters, memory=s.lbfgs_memory)
    return cfg


def _run_name(optimizer: str, hidden: int, hp: ae.AEHyper) -> str:
    return f"ae_{optimizer}_H{hidden}_lam{hp.lam:g}_beta{hp.beta:g}_rho{hp.rho:g}"


def _lbfgs_config(s: Settings) -> lbfgs.LbfgsConfig:
    return lbfgs.LbfgsConfig(max_iter=s.lbfgs_iters, memory_size=s.lbfgs_memory, chunk=s.lbfgs_chunk)


def _lbfgs_steps(res: lbfgs.LbfgsResult) -> tuple[dict, dict]:
    curve = {"x": "iteration", "train": res.history["value"]}
    steps = {"iterations": res.iterations, "converged": res.converged,
             "function_evaluations": res.iterations + int(sum(res.history["linesearch_steps"]))}
    return curve, steps


def _sgd_steps(s: Settings, history: dict, epochs_run: int, n_train: int) -> tuple[dict, dict]:
    curve = {"x": "epoch", "train": history["train_loss"], "heldout": history.get("val_loss", [])}
    steps = {"epochs": epochs_run, "updates": epochs_run * -(-n_train // s.sgd_batch)}
    return curve, steps


def _finish(s: Settings, optimizer: str, hidden: int, hp: ae.AEHyper, params, curve: dict, steps: dict,
            seconds: float, x_train, x_held) -> tuple[ae.AEParams, dict]:
    name = _run_name(optimizer, hidden, hp)
    record = {"name": name, "optimizer": optimizer, "hidden": hidden, "lam": float(hp.lam), "beta": float(hp.beta),
              **evaluate(params, hp, x_train, x_held, s.duplicate_threshold), **steps, "seconds": seconds}
    log.info("%s: J %.4f, held-out MSE %.5f (mean patch %.5f), ρ̂ %.4f (ρ %g), duplicates %d/%d, %.1fs",
             name, record["final_cost"], record["heldout_reconstruction_mse"], record["heldout_mean_patch_mse"],
             record["mean_hidden_activation"], hp.rho, record["duplicate_units"], hidden, seconds)
    return params, {**record, "curve": curve}


def train_model(s: Settings, optimizer: str, hidden: int, hp: ae.AEHyper, x_train, x_held, *,
                key_init, key_fit, data_id: str, progress) -> tuple[ae.AEParams, dict]:
    """Train one autoencoder; returns its parameters and a record (settings, measures, curve)."""
    name = _run_name(optimizer, hidden, hp)
    config = _config(s, optimizer, hidden, hp)
    params = _init(key_init, hidden, x_train.shape[1])
    t = time.perf_counter()
    if optimizer == "sgd":
        res = runner.fit_run(
            name, config=config, data_id=data_id,
            loss_and_grad=functools.partial(ae.loss_and_grad, hp=hp),
            optimizer=train.sgd_momentum(s.sgd_lr, s.sgd_momentum),
            params=params, train_data=x_train,
            fit_config=train.FitConfig(epochs=s.sgd_epochs, batch_size=s.sgd_batch),
            key=key_fit, val_data=x_held, metrics_fn=functools.partial(ae.metrics, hp=hp), progress=progress,
        )
        params = res.last_params  # the report keeps the weights after the last epoch
        curve, steps = _sgd_steps(s, res.history, res.epochs_run, x_train.shape[0])
    elif optimizer == "lbfgs":
        def compute():
            res = lbfgs.minimize(ae.loss_and_grad, params, x_train, _lbfgs_config(s), fn_kwargs={"hp": hp},
                                 progress=progress, desc=f"{name} (L-BFGS iterations)")
            curve, steps = _lbfgs_steps(res)
            return res.params, {"curve": curve, "steps": steps}

        # saved when finished, so that running the job again skips it
        params, saved = runner.cached_run(name, config=config, data_id=data_id, template=params, compute=compute)
        curve, steps = saved["curve"], saved["steps"]
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {OPTIMIZERS}")
    return _finish(s, optimizer, hidden, hp, params, curve, steps, time.perf_counter() - t, x_train, x_held)


def train_many(s: Settings, optimizer: str, hidden: int, hps: list, x_train, x_held, *,
               key_init, key_fit, progress, data_id: Optional[str] = None) -> list:
    """Train one autoencoder per hyperparameter setting in ``hps`` (same ``hidden``) as one
    program, ``jax.vmap`` over the members; each member is the run :func:`train_model` would
    train alone (same initial parameters, same key), to round-off. Returns
    ``[(params, record), ...]``; a record's ``seconds`` is its share (1/M) of the program."""
    m = len(hps)
    params = sweep.stack([_init(key_init, hidden, x_train.shape[1])] * m)
    stacked = ae.AEHyper(*(jnp.asarray([float(getattr(hp, f)) for hp in hps], dtype=x_train.dtype)
                           for f in ae.AEHyper._fields))
    desc = f"{m} × ae_{optimizer}_H{hidden} (vmapped)"
    t = time.perf_counter()
    if optimizer == "sgd":
        res = sweep.fit_sweep(
            ae.loss_and_grad, train.sgd_momentum(s.sgd_lr, s.sgd_momentum), params, x_train,
            train.FitConfig(epochs=s.sgd_epochs, batch_size=s.sgd_batch), keys=jnp.stack([key_fit] * m), hps=stacked,
            val_data=x_held, metrics_fn=ae.metrics, progress=progress, desc=desc)
        members = [(sweep.unstack(res.last_params, i), *_sgd_steps(s, res.histories[i], res.epochs_run[i], x_train.shape[0]))
                   for i in range(m)]
    elif optimizer == "lbfgs":
        def compute():
            results = lbfgs.minimize_many(ae.loss_and_grad, params, x_train, _lbfgs_config(s),
                                          fn_kwargs_stacked={"hp": stacked}, progress=progress, desc=desc)
            return sweep.stack([r.params for r in results]), {"members": [_lbfgs_steps(r) for r in results]}

        if data_id is None:
            stacked_params, saved = compute()
        else:  # the whole program is saved when finished, so that running the job again skips it
            group = f"ae_lbfgs_H{hidden}_vmap{m}"
            config = {**_config(s, optimizer, hidden, hps[0]), "hps": [[float(v) for v in hp] for hp in hps]}
            stacked_params, saved = runner.cached_run(group, config=config, data_id=data_id, template=params,
                                                      compute=compute)
        members = [(sweep.unstack(stacked_params, i), *saved["members"][i]) for i in range(m)]
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {OPTIMIZERS}")
    share = (time.perf_counter() - t) / m
    return [_finish(s, optimizer, hidden, hp, p, curve, steps, share, x_train, x_held)
            for hp, (p, curve, steps) in zip(hps, members)]


# ----------------------------------------------------------------------------- figures
def mosaic(images: np.ndarray, cols: Optional[int] = None, pad: int = 1, normalise: bool = True) -> np.ndarray:
    """Tile <float>[K, h, w] into one 2-D image with a dark 1-pixel border.

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


def _feature_title(rec: dict, optimizer: bool = True) -> str:
    head = (OPTIMIZER_LABEL[rec["optimizer"]] + "\n") if optimizer else ""
    return (f"{head}$L_{{hid}}$={rec['hidden']}, λ={rec['lam']:g}, β={rec['beta']:g}, ρ={rec['rho']:g}\n"
            f"dup {rec['duplicate_units']}/{rec['hidden']}, ρ̂={rec['mean_hidden_activation']:.3f}, "
            f"MSE {rec['heldout_reconstruction_mse']:.4f}")


def draw_features(ax, params: ae.AEParams, title: str) -> None:
    ax.imshow(mosaic(unit_images(params.w_enc)), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def feature_figure(panels: list, path, suptitle: str, cols: Optional[int] = None, panel_size: float = 3.2):
    """One feature grid per panel ((params, title)), laid out ``cols`` per row."""
    cols = cols or len(panels)
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(panel_size * cols, (panel_size + 0.7) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (params, title) in zip(axes.flat, panels):
        draw_features(ax, params, title)
    fig.suptitle(suptitle, fontsize=10)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / height))  # leave the suptitle its own line
    return plotting.save(fig, path)


def patch_figures(rgb: np.ndarray, gray: np.ndarray, idx: np.ndarray, out, source: str) -> None:
    cols = 20
    fig, ax = plt.subplots(figsize=(12, 6.4))
    ax.imshow(np.clip(mosaic(rgb[idx].transpose(0, 2, 3, 1), cols, normalise=False), 0, 1), interpolation="nearest")
    ax.set_title(f"(a) {len(idx)} random 16×16 RGB patches ({source})", fontsize=9)
    ax.axis("off")
    plotting.save(fig, out / "patches_rgb.png")
    fig, ax = plt.subplots(figsize=(12, 6.4))
    ax.imshow(mosaic(gray[idx].reshape(-1, 16, 16), cols, normalise=False), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(f"(a) the same {len(idx)} patches preprocessed: grey, patch mean removed, "
                 f"clipped at ±3σ, mapped to [0.1, 0.9]", fontsize=9)
    ax.axis("off")
    plotting.save(fig, out / "patches_preprocessed.png")


def reconstruction_figure(params: ae.AEParams, x_held, rec: dict, path, n: int = 12) -> None:
    """The n held-out patches of highest contrast among the first 5n, and their reconstructions."""
    pool = np.asarray(x_held[: 5 * n])
    x = pool[np.sort(np.argsort(-pool.std(axis=1))[:n])]
    o = np.asarray(ae.reconstruct(params, jnp.asarray(x)))
    tiles = np.concatenate([x, o]).reshape(-1, 16, 16)
    fig, ax = plt.subplots(figsize=(1.0 * n, 2.6))
    ax.imshow(mosaic(tiles, n, normalise=False), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"held-out patches of higher contrast (top) and their reconstructions (bottom): {OPTIMIZER_LABEL[rec['optimizer']]}, "
                 f"$L_{{hid}}$={rec['hidden']}\nall held-out patches: MSE {rec['heldout_reconstruction_mse']:.4f} per pixel "
                 f"vs {rec['heldout_mean_patch_mse']:.4f} for predicting the mean training patch", fontsize=9)
    ax.axis("off")
    plotting.save(fig, path)


def optimizer_curves(records: dict, path) -> None:
    fig, axes = plt.subplots(1, len(records), figsize=(5.2 * len(records), 3.6), squeeze=False)
    for ax, (opt, rec) in zip(axes.flat, records.items()):
        c = rec["curve"]
        steps = np.arange(1, len(c["train"]) + 1)
        ax.plot(steps, c["train"], label="training J" + (" (mean over minibatches)" if opt == "sgd" else ""))
        if c.get("heldout"):
            ax.plot(steps, c["heldout"], label="held-out J")
        ax.set_xlabel(c["x"])
        ax.set_ylabel("J")
        ax.set_yscale("log")
        ax.set_title(f"{OPTIMIZER_LABEL[opt]}: final J {rec['final_cost']:.3f}, {rec['seconds']:.0f}s", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plotting.save(fig, path)


# ----------------------------------------------------------------------------- run
def short_source(attrs: dict) -> str:
    """A figure-title line: the stand-in's photo names, or "course file"."""
    if attrs.get("source_kind") != "stand-in":
        return "course file"
    names = [part.split(" (")[0].rsplit("/", 1)[-1].rsplit(".", 1)[0] for part in str(attrs.get("source", "")).split("; ")]
    return "stand-in from " + ", ".join(n for n in names if n)


def settings_from_args(args) -> Settings:
    s = Settings(**QUICK) if args.quick else Settings()
    changes = {}
    if getattr(args, "optimizer", None):
        changes["optimizer"] = args.optimizer
    if getattr(args, "lbfgs_iters", None):
        changes["lbfgs_iters"] = args.lbfgs_iters
    if getattr(args, "sgd_epochs", None):
        changes["sgd_epochs"] = args.sgd_epochs
    return dataclasses.replace(s, **changes)


def run(args) -> dict:
    s = settings_from_args(args)
    out = common.question_dir(args.results_dir, "q1")
    progress = common.progress_flag(args)
    t_start = time.perf_counter()

    path = common.resolve_data("q1", args.data_dir)
    data = load_patches(path)
    source = common.describe_source(data.attrs)
    short = short_source(data.attrs)
    log.info("q1: %s, %s", path, source)
    rgb = data.patches
    rng = np.random.default_rng(args.seed)
    if s.n_patches is not None and s.n_patches < len(rgb):
        rgb = rgb[np.sort(rng.choice(len(rgb), s.n_patches, replace=False))]
    x = np.asarray(_preprocess(rgb), dtype=np.float32)  # σ over the whole set

    # (a)
    shown = rng.choice(len(rgb), min(200, len(rgb)), replace=False)
    patch_figures(rgb, x, shown, out, short)

    perm = rng.permutation(len(x))
    n_held = max(1, int(round(s.heldout_fraction * len(x))))
    x_held, x_train = jnp.asarray(x[perm[:n_held]]), jnp.asarray(x[perm[n_held:]])
    data_id = f"{common.file_digest(path)}:n{len(x)}:heldout{n_held}:seed{args.seed}"
    key_init, key_fit = jax.random.split(jax.random.PRNGKey(args.seed))

    trained: dict = {}

    def get(optimizer: str, hidden: int, hp: ae.AEHyper):
        k = (optimizer, hidden, tuple(float(v) for v in hp))
        if k not in trained:
            trained[k] = train_model(s, optimizer, hidden, hp, x_train, x_held, key_init=key_init, key_fit=key_fit,
                                     data_id=data_id, progress=progress)
        return trained[k]

    # (b) the chosen setting, by both optimizers
    other = [o for o in OPTIMIZERS if o != s.optimizer]
    comparison = {opt: get(opt, s.hidden, s.hp) for opt in [s.optimizer, *other]}
    params, rec = comparison[s.optimizer]
    feature_figure([(params, _feature_title(rec))], out / "features.png",
                   "(c) hidden-unit weights (each unit normalised), default setting", panel_size=5.0)
    feature_figure([(p, _feature_title(r)) for p, r in comparison.values()], out / "features_optimizers.png",
                   "the same model and settings, trained by each optimiser", panel_size=4.2)
    optimizer_curves({k: r for k, (_, r) in comparison.items()}, out / "optimizer_curves.png")
    reconstruction_figure(params, x_held, rec, out / "reconstructions.png")

    # (c) the report's five (β, ρ) and (d) L_hid × λ: each a vmapped program per L_hid by default
    vmapped = not getattr(args, "no_vmap", False)
    compare = bool(getattr(args, "compare_vmap", False))

    def train_programs(programs: list, vmap: bool, cached: bool) -> tuple[list, float, list]:
        """programs: [(hidden, [hp, ...]), ...] -> ([[(params, record), ...] per program], seconds, per program)."""
        out_, per = [], []
        t0 = time.perf_counter()
        for hidden, hps in programs:
            t1 = time.perf_counter()
            if vmap:
                out_.append(train_many(s, s.optimizer, hidden, hps, x_train, x_held, key_init=key_init,
                                       key_fit=key_fit, progress=progress,
                                       data_id=None if compare else data_id))  # a timed comparison retrains
            elif cached:
                out_.append([get(s.optimizer, hidden, hp) for hp in hps])
            else:  # the comparison: every member trained alone, none reused
                out_.append([train_model(s, s.optimizer, hidden, hp, x_train, x_held, key_init=key_init,
                                         key_fit=key_fit, data_id=data_id, progress=progress) for hp in hps])
            per.append({"hidden": hidden, "members": len(hps), "seconds": time.perf_counter() - t1})
        return out_, time.perf_counter() - t0, per

    studies = {
        "beta_rho": [(s.hidden, [s.hp._replace(beta=beta, rho=rho) for beta, rho in s.beta_rho])],
        "sweep": [(h, [s.hp._replace(lam=lam) for lam in s.sweep_lam]) for h in s.sweep_hidden],
    }
    timing: dict = {"mode": "vmap" if vmapped else "sequential", "optimizer": s.optimizer,
                    "compared": bool(compare)}
    trained_studies = {}
    for study, programs in studies.items():
        runs, seconds, per = train_programs(programs, vmapped, cached=True)
        trained_studies[study] = runs
        entry = {"members": sum(len(h) for _, h in programs), "programs": len(programs) if vmapped else None,
                 "vmapped_seconds": seconds if vmapped else None, "sequential_seconds": None if vmapped else seconds,
                 "per_program": per}
        if compare:
            other, other_seconds, _ = train_programs(programs, not vmapped, cached=False)
            entry["vmapped_seconds" if not vmapped else "sequential_seconds"] = other_seconds
            a = [r["final_cost"] for row in runs for _, r in row]
            b = [r["final_cost"] for row in other for _, r in row]
            entry["max_rel_final_cost_difference"] = float(np.max(np.abs(np.subtract(a, b)) / np.abs(b)))
        if entry["vmapped_seconds"] and entry["sequential_seconds"]:
            entry["speedup"] = entry["sequential_seconds"] / entry["vmapped_seconds"]
        timing[study] = entry
    if not vmapped and not compare:
        timing["note"] = "sequential members reuse runs already trained (e.g. the default setting)"
    elif compare:
        timing["note"] = ("seconds include compilation; the sequential comparison trains every member alone "
                          "(none reused) after the vmapped programs"
                          + ("; SGD runs alone go through runner.fit_run and may be skipped by its checkpoints"
                             if s.optimizer == "sgd" else ""))
    beta_rho = trained_studies["beta_rho"][0]
    feature_figure([(p, _feature_title(r, optimizer=False)) for p, r in beta_rho], out / "features_beta_rho.png",
                   f"(c) hidden-unit weights for five (β, ρ): {OPTIMIZER_LABEL[s.optimizer]}, "
                   f"$L_{{hid}}$={s.hidden}, λ={s.hp.lam:g}", cols=len(beta_rho))

    # (d) L_hid × λ
    sweep = trained_studies["sweep"]
    feature_figure([(p, _feature_title(r, optimizer=False)) for row in sweep for p, r in row],
                   out / "features_sweep.png",
                   f"(d) hidden-unit weights, rows $L_{{hid}}$ ∈ {list(s.sweep_hidden)}, columns λ ∈ "
                   f"{[f'{v:g}' for v in s.sweep_lam]}: {OPTIMIZER_LABEL[s.optimizer]}, β={s.hp.beta:g}, ρ={s.hp.rho:g}",
                   cols=len(s.sweep_lam))

    def strip(r):
        return {k: v for k, v in r.items() if k != "curve"}

    metrics = {
        **strip(rec),
        "data": {"path": str(path), "source": source, "n_patches": len(x), "n_train": int(x_train.shape[0]),
                 "n_heldout": n_held, "sigma": float(jax.jit(pp.patch_sigma)(rgb))},
        "settings": {k: (v._asdict() if isinstance(v, tuple) and hasattr(v, "_asdict") else v)
                     for k, v in dataclasses.asdict(s).items()},
        "optimizers": {k: {**strip(r), "curve": r["curve"]} for k, (_, r) in comparison.items()},
        "beta_rho": [strip(r) for _, r in beta_rho],
        "sweep": [strip(r) for row in sweep for _, r in row],
        "sweep_timing": timing,
        "total_seconds": time.perf_counter() - t_start,
    }
    metrics["settings"]["hp"] = {k: float(v) for k, v in s.hp._asdict().items()}
    common.write_json(out / "metrics.json", metrics)
    o = metrics["optimizers"]
    print(f"q1 ({source}): {OPTIMIZER_LABEL[s.optimizer]} J {rec['final_cost']:.4f} "
          f"(recon {rec['cost_terms']['reconstruction']:.4f}, decay {rec['cost_terms']['weight_decay']:.4f}, "
          f"sparsity {rec['cost_terms']['sparsity']:.4f}); held-out MSE {rec['heldout_reconstruction_mse']:.5f} vs "
          f"mean patch {rec['heldout_mean_patch_mse']:.5f}; ρ̂ {rec['mean_hidden_activation']:.4f} vs ρ {rec['rho']:g}; "
          f"duplicates {rec['duplicate_units']}/{rec['hidden']}")
    for k, r in o.items():
        print(f"  {k}: J {r['final_cost']:.4f}, duplicates {r['duplicate_units']}/{r['hidden']}, "
              f"held-out MSE {r['heldout_reconstruction_mse']:.5f}, ρ̂ {r['mean_hidden_activation']:.4f}, "
              f"{r['seconds']:.1f}s")
    for study in studies:
        e = timing[study]
        line = f"  {study} ({e['members']} members, {timing['optimizer']}): "
        parts = [f"{k.split('_')[0]} {e[k]:.1f}s" for k in ("vmapped_seconds", "sequential_seconds") if e[k] is not None]
        if "speedup" in e:
            parts.append(f"speed-up ×{e['speedup']:.2f}, max rel. ΔJ {e['max_rel_final_cost_difference']:.1e}")
        print(line + ", ".join(parts))
    print(f"q1: done in {metrics['total_seconds']:.0f}s -> {out}")
    return metrics


def main(argv=None) -> int:
    p = common.base_parser("python -m experiments.q1_autoencoder", __doc__.split("\n\n")[0])
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="optimiser for the default run and parts (c)-(d) "
                   "(default lbfgs; the other one is trained too, for the comparison)")
    p.add_argument("--lbfgs-iters", type=int, help="L-BFGS iterations per run (default 400)")
    p.add_argument("--sgd-epochs", type=int, help="SGD epochs per run (default 200)")
    p.add_argument("--no-vmap", action="store_true", help="train the (β, ρ) study and the sweep's λ values one "
                   "run at a time instead of as one jax.vmap program per L_hid")
    p.add_argument("--compare-vmap", action="store_true", help="also train the (β, ρ) study and the sweep the "
                   "other way (sequential / vmapped) and record both times in metrics.json['sweep_timing']")
    args = p.parse_args(argv)
    common.start_devices(args)
    common.setup_logging()
    with common.session(args, "q1"):
        run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
