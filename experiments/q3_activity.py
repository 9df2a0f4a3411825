"""Q3: activity recognition with an RNN, an LSTM and a GRU (manual BPTT), beside a
non-neural baseline (multinomial logistic regression on per-window statistics).

Settings (SPEC.md, Q3): H = 128 recurrent units, a ReLU layer of 128 on h_T, softmax
over the classes; SGD with momentum 0.85, batch 32, at most 50 epochs, Xavier-uniform
init; inputs standardized per channel with training statistics; about 10 % of the
training windows held out for validation — whole subjects when the file has subject ids
(the subject set closest to 10 %: one subject, 7 % of the windows, on the default
stand-in), else a random 10 % — and early stopping on the validation loss (patience 10,
best parameters kept); global-norm
clipping at 1.0; per-model learning rates (see ``LEARNING_RATES``).

Writes ``<results-dir>/q3/``: ``metrics.json``, ``comparison.md``, per model
``<model>_confusion.png`` (training and test, counts and row-normalized) and
``<model>_loss.png``, ``baseline_confusion.png`` and ``loss_all.png``.

Repeated seeds (``--seeds K``, default 1): each selected recurrent model is trained K
times, with seeds S, S+1, …, S+K−1 (S = ``--seed``): member j's initial parameters and
shuffling keys come from seed S+j exactly as a run with ``--seed S+j`` would draw them, so
member 0 is the single run of ``--seed S``. The data side stays fixed for every member:
the quick subset, the validation split and the normalisation are drawn from S. By default
the K members train as one program, ``jax.vmap`` over them inside one jit
(:func:`mp_jax.sweep.fit_sweep`, early stopping per member); each member equals its run
trained alone to round-off (``tests/test_q3_experiment.py``). ``--no-vmap`` trains them
one by one (each through the engine, checkpointed per epoch like the single run, so
member 0 reuses the single run's checkpoint); ``--compare-vmap`` trains them both ways,
without checkpoints, and records both wall times. The vmapped sweep is saved once it has
finished, so running again skips it, but it is not resumed epoch by epoch: an interrupted
sweep starts over. ``metrics.json`` then gives, per model, the test accuracy's mean and
sample standard deviation (ddof 1) over the seeds, every member's accuracies, epochs and
history, and the sweep's wall time (``seed_sweep``); the other per-model fields, the
figures and the confusion matrices are member 0's.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, plotting, runner
from mp_jax import sweep, train
from mp_jax.data.course import load_activity
from mp_jax.models import logistic, recurrent, recurrent_fast

log = logging.getLogger("experiments.q3")

MODELS = ("rnn", "lstm", "gru")
SETTINGS = dict(hidden=128, mlp=128, batch_size=32, epochs=50, momentum=0.85, clip_norm=1.0, patience=10,
                val_fraction=0.1)
QUICK = dict(hidden=16, mlp=16, batch_size=32, epochs=2, momentum=0.85, clip_norm=1.0, patience=10,
             val_fraction=0.1, n_train=320, n_test=120)
# Chosen on the stand-in by the best validation loss (the early-stopping monitor) of full
# runs (≤ 50 epochs, patience 10, clipping 1.0, seed 0) at several rates; nothing diverged
# (the clipping prevents it), but 0.1 was the worst rate for the RNN and the GRU:
#   RNN  0.1: erratic in 6-epoch probes        0.01: 1.20   0.001: 1.04  <- chosen
#   LSTM 0.1: 0.746                           0.01: 0.725  <- chosen
#   GRU  0.1: 0.935   0.03: 0.772             0.01: 0.675  <- chosen
# (the report's rates were RNN 0.001, LSTM 0.01, GRU 0.1).
LEARNING_RATES = {"rnn": 0.001, "lstm": 0.01, "gru": 0.01}
BASELINE = dict(learning_rate=0.1, momentum=0.9, batch_size=32, epochs=200, patience=20, l2=1e-4)
BASELINE_QUICK = dict(BASELINE, epochs=5)


# ----------------------------------------------------------------------------- data steps
def validation_split(subjects, n: int, fraction: float, rng: np.random.Generator):
    """Indices (train, val) and a description.

    With subject ids, whole subjects are held out: in a seeded random order, a subject is
    added to validation while that brings the held-out share closer to ``fraction`` (at
    least one subject, never all). Otherwise a random ``fraction`` of the windows.
    """
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


def channel_stats(x: np.ndarray):
    """Per-channel mean and standard deviation over windows and time: <float>[D] each."""
    return x.mean(axis=(0, 1)), x.std(axis=(0, 1)) + 1e-8


def confusion(y_true: np.ndarray, y_pred: np.ndarray, c: int) -> np.ndarray:
    """Counts <int>[C, C]: row = true class, column = predicted class."""
    cm = np.zeros((c, c), np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def row_normalized(cm: np.ndarray) -> np.ndarray:
    return cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)


def batched_predict(predict_fn, params, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Predictions in chunks of ``batch`` rows (padded: one compiled shape for every split)."""
    n = x.shape[0]
    out = []
    for s in range(0, n, batch):
        chunk = x[s: s + batch]
        pad = batch - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
        out.append(np.asarray(predict_fn(params, jnp.asarray(chunk)))[: batch - pad])
    return np.concatenate(out)


# ----------------------------------------------------------------------------- figures
def plot_confusions(cms: dict, names, path, title: str):
    """2 × 2 grid: rows = the splits in ``cms`` (e.g. training, test), columns = counts and
    row-normalized; class names on both axes."""
    import matplotlib.pyplot as plt

    splits = list(cms)
    c = len(names)
    fig, axes = plt.subplots(len(splits), 2, figsize=(10.5, 4.6 * len(splits)), squeeze=False)
    for r, split in enumerate(splits):
        cm = np.asarray(cms[split])
        for col, (mat, fmt, label) in enumerate(((cm, "d", "count"), (row_normalized(cm), ".2f", "fraction of row"))):
            ax = axes[r, col]
            im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=(mat.max() if col == 0 else 1.0))
            for i in range(c):
                for j in range(c):
                    v = mat[i, j]
                    ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=8,
                            color="white" if v > 0.6 * (mat.max() if col == 0 else 1.0) else "black")
            ax.set_xticks(range(c), names, rotation=45, ha="right")
            ax.set_yticks(range(c), names)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            acc = np.trace(cm) / max(cm.sum(), 1)
            ax.set_title(f"{split}: {'counts' if col == 0 else 'row-normalized'} (accuracy {acc:.1%})", fontsize=10)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    fig.suptitle(title)
    fig.tight_layout()
    return plotting.save(fig, path)


def plot_all_losses(histories: dict, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        ep = range(1, len(h["train_loss"]) + 1)
        ax.plot(ep, h["train_loss"], color=color, ls="--", label=f"{name} training")
        if "val_loss" in h:
            ax.plot(ep, h["val_loss"], color=color, label=f"{name} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title("Q3: training (dashed) and validation loss per model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return plotting.save(fig, path)


# ----------------------------------------------------------------------------- runs
def _fit(name, *, config, data_id, loss_and_grad, optimizer, params, train_data, val_data, metrics_fn,
         fit_config, key, progress, checkpointed: bool = True, split_over_cpu_cores: bool = False):
    """runner.fit_run (or, with ``checkpointed=False``, train.fit without checkpoints or
    mesh: one device, as the vmapped sweep it is compared with), keeping the last finite
    state when a run diverges. Every Q3 loss is a mean cross-entropy over examples (plus
    weight decay), so on a mesh each device computes its shard's gradient;
    ``split_over_cpu_cores``: see :func:`experiments.runner.run_mesh`."""
    try:
        if checkpointed:
            res = runner.fit_run(name, config=config, data_id=data_id, loss_and_grad=loss_and_grad,
                                 optimizer=optimizer, params=params, train_data=train_data, fit_config=fit_config,
                                 key=key, val_data=val_data, metrics_fn=metrics_fn, progress=progress,
                                 per_example_mean=True, split_over_cpu_cores=split_over_cpu_cores)
        else:
            res = train.fit(loss_and_grad, optimizer, params, train_data, fit_config, key=key, val_data=val_data,
                            metrics_fn=metrics_fn, progress=progress, desc=name)
        return res.params, res.history, res.epochs_run, res.best_epoch, res.stopped_early, res.compile_seconds, None
    except train.NonFiniteError as e:
        log.warning("%s: %s", name, e)
        st = e.last_good
        return (st.best_params, st.history, st.epoch, st.best_epoch, True, float("nan"),
                f"non-finite at epoch {e.epoch}")


def _summary(cms, history, epochs_run, best_epoch, stopped_early, compile_seconds, lr, diverged):
    acc = {k: float(np.trace(v) / max(v.sum(), 1)) for k, v in cms.items()}
    secs = history.get("epoch_seconds", [])
    return {
        "test_accuracy": acc["test"],
        "train_accuracy": acc["train"],
        "val_accuracy": acc["validation"],
        "confusion_test": cms["test"].tolist(),
        "confusion_train": cms["train"].tolist(),
        "confusion_val": cms["validation"].tolist(),
        "test_recall_per_class": np.diag(row_normalized(cms["test"])).tolist(),
        "seconds_per_epoch": float(np.mean(secs)) if secs else float("nan"),
        "seconds_per_epoch_median": float(np.median(secs)) if secs else float("nan"),
        "compile_seconds": compile_seconds,
        "epochs_run": int(epochs_run),
        "best_epoch": int(best_epoch),
        "stopped_early": bool(stopped_early),
        "learning_rate": lr,
        "diverged": diverged,
        "history": history,
    }


def member_key(seed: int, cell: str) -> jax.Array:
    """The key of ``cell``'s run with ``--seed seed``: ``PRNGKey(seed)`` split into one key
    for the baseline and one per model in ``MODELS`` (split again into init and shuffling)."""
    _, *k_models = jax.random.split(jax.random.PRNGKey(seed), 1 + len(MODELS))
    return k_models[MODELS.index(cell)]


def member_init(cell: str, key: jax.Array, n_in: int, s: dict, n_classes: int, dtype=jnp.float32):
    """(initial parameters, shuffling key) of one run from its model key."""
    k_init, k_fit = jax.random.split(key)
    return recurrent.init_params(k_init, cell, n_in, s["hidden"], s["mlp"], n_classes, dtype), k_fit


def run_config(cell: str, s: dict, lr: float, seed: int, quick: bool, data_seed: Optional[int] = None) -> dict:
    """The settings that key a run's checkpoint. ``data_seed`` (the seed of the quick subset
    and the validation split) is added only when it differs from ``seed``, so a single run's
    configuration is unchanged."""
    config = dict(model=cell, learning_rate=lr, **{k: s[k] for k in ("hidden", "mlp", "batch_size", "epochs",
                                                                    "momentum", "clip_norm", "patience")},
                  seed=seed, quick=bool(quick))
    if data_seed is not None and data_seed != seed:
        config["data_seed"] = data_seed
    return config


def _optimizer(s: dict, lr: float):
    return train.sgd_momentum(lr, s["momentum"], clip_norm=s["clip_norm"])


def _fit_config(s: dict) -> train.FitConfig:
    return train.FitConfig(epochs=s["epochs"], batch_size=s["batch_size"], patience=s["patience"])


class Member(NamedTuple):
    """One trained member of a seed sweep."""

    seed: int
    params: Any  # the best parameters by the validation loss
    history: dict
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    compile_seconds: float  # 0.0 when skipped (finished earlier)
    diverged: Optional[str]


def train_seeds(cell: str, seeds: list, train_data, val_data, s: dict, lr: float, n_classes: int, *,
                vmap: bool = True, data_seed: Optional[int] = None, data_id: Optional[str] = None,
                quick: bool = False, progress: Optional[bool] = None) -> tuple[list, dict]:
    """Train ``cell`` once per seed in ``seeds`` on the same data.

    Member j is the run that ``--seed seeds[j]`` trains (parameters and shuffling key from
    :func:`member_key`). ``vmap``: all members as one program (:func:`mp_jax.sweep.fit_sweep`,
    early stopping per member; if it becomes non-finite, the members are retrained one by
    one so that each keeps its last finite state); else one after another with the engine.
    ``data_id``: None trains without checkpoints; a string checkpoints each run alone per
    epoch (:func:`runner.fit_run`), or saves the finished vmapped sweep
    (:func:`runner.cached_run`: skipped when called again, not resumed mid-way).

    Args:
      train_data, val_data: (<float>[N, T, D], <int>[N]) each.
    Returns:
      ([Member, ...] in the order of ``seeds``, {"mode", "seconds", "compile_seconds", "skipped"}).
    """
    data_seed = seeds[0] if data_seed is None else data_seed
    n_in, dtype = train_data[0].shape[-1], train_data[0].dtype
    inits = [member_init(cell, member_key(seed, cell), n_in, s, n_classes, dtype) for seed in seeds]
    opt, fit_config = _optimizer(s, lr), _fit_config(s)

    def stopped(epochs_run, best_epoch):  # as train.fit: patience epochs without improvement
        return bool(s["patience"]) and epochs_run - best_epoch >= s["patience"]

    t = time.perf_counter()
    if not vmap:
        members = []
        for seed, (params, k_fit) in zip(seeds, inits):
            name = f"q3_{cell}" if seed == data_seed else f"q3_{cell}_seed{seed}"
            out = _fit(name, config=run_config(cell, s, lr, seed, quick, data_seed), data_id=data_id,
                       loss_and_grad=recurrent_fast.loss_and_grad_reusing, optimizer=opt, params=params, train_data=train_data,
                       val_data=val_data, metrics_fn=recurrent.metrics, fit_config=fit_config, key=k_fit,
                       progress=progress, checkpointed=data_id is not None, split_over_cpu_cores=True)
            members.append(Member(seed, *out))
        compile_s = [m.compile_seconds for m in members]
        return members, {"mode": "sequential", "seconds": time.perf_counter() - t,
                         "compile_seconds": float(np.nansum(compile_s)),
                         "skipped": sum(c == 0.0 for c in compile_s)}

    stacked = sweep.stack([p for p, _ in inits])
    trained = []

    def compute():
        r = sweep.fit_sweep(recurrent_fast.loss_and_grad, opt, stacked, train_data, fit_config,
                            keys=jnp.stack([k for _, k in inits]), val_data=val_data, metrics_fn=recurrent.metrics,
                            progress=progress, desc=f"q3_{cell} x {len(seeds)} seeds (vmapped)")
        trained.append(True)
        return r.params, {"histories": r.histories, "best_epochs": [int(e) for e in r.best_epochs],
                          "epochs_run": [int(e) for e in r.epochs_run], "compile_seconds": r.compile_seconds}

    try:
        if data_id is None:
            best, rec = compute()
        else:
            config = dict(run_config(cell, s, lr, data_seed, quick), seeds=list(seeds), data_seed=data_seed)
            del config["seed"]
            best, rec = runner.cached_run(f"q3_{cell}_seeds{seeds[0]}-{seeds[-1]}_vmap", config=config,
                                          data_id=data_id, template=stacked, compute=compute)
    except FloatingPointError as e:
        log.warning("%s: %s; training the members one by one instead", cell, e)
        members, info = train_seeds(cell, seeds, train_data, val_data, s, lr, n_classes, vmap=False,
                                    data_seed=data_seed, data_id=data_id, quick=quick, progress=progress)
        return members, dict(info, mode="sequential (the vmapped sweep became non-finite)",
                             seconds=time.perf_counter() - t)
    compile_s = rec["compile_seconds"] if trained else 0.0
    members = [Member(seed, sweep.unstack(best, j), rec["histories"][j], rec["epochs_run"][j], rec["best_epochs"][j],
                      stopped(rec["epochs_run"][j], rec["best_epochs"][j]), compile_s, None)
               for j, seed in enumerate(seeds)]
    return members, {"mode": "vmap", "seconds": time.perf_counter() - t, "compile_seconds": compile_s,
                     "skipped": 0 if trained else len(seeds)}


def _confusions(predict, params, splits, n_classes: int) -> dict:
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
    chunk = min(1024, max(len(y) for _, y in splits))
    return {split: confusion(y, batched_predict(predict, params, x, chunk), n_classes)
            for split, (x, y) in (("train", (x_tr, y_tr)), ("validation", (x_va, y_va)), ("test", (x_te, y_te)))}


def _figures(cell, cms, history, names, s, lr, out, suffix: str = ""):
    plot_confusions({"training": cms["train"], "test": cms["test"]}, names, out / f"{cell}_confusion.png",
                    f"Q3 {cell.upper()} (H={s['hidden']}, lr={lr}{suffix}): confusion matrices")
    if history.get("train_loss"):
        plotting.loss_curves(history, out / f"{cell}_loss.png",
                             f"Q3 {cell.upper()}: loss per epoch (lr={lr}{suffix})")


def run_recurrent(cell, splits, names, s, lr, key, data_id, out, args) -> dict:
    if int(getattr(args, "seeds", 1) or 1) > 1:
        return run_seed_sweep(cell, splits, names, s, lr, data_id, out, args)
    (x_tr, y_tr), (x_va, y_va), _ = splits
    params, k_fit = member_init(cell, key, x_tr.shape[-1], s, len(names))
    t = time.perf_counter()
    best, history, epochs_run, best_epoch, stopped, compile_s, diverged = _fit(
        f"q3_{cell}", config=run_config(cell, s, lr, args.seed, args.quick), data_id=data_id,
        loss_and_grad=recurrent_fast.loss_and_grad_reusing, optimizer=_optimizer(s, lr), params=params,
        train_data=(jnp.asarray(x_tr), jnp.asarray(y_tr)), val_data=(jnp.asarray(x_va), jnp.asarray(y_va)),
        metrics_fn=recurrent.metrics, fit_config=_fit_config(s), key=k_fit, progress=common.progress_flag(args),
        split_over_cpu_cores=True)
    wall = time.perf_counter() - t
    cms = _confusions(jax.jit(recurrent.predict), best, splits, len(names))
    res = _summary(cms, history, epochs_run, best_epoch, stopped, compile_s, lr, diverged)
    res["wall_seconds"] = wall
    _figures(cell, cms, history, names, s, lr, out)
    log.info("%s: test accuracy %.3f, train %.3f, %.2f s/epoch, %d epochs", cell, res["test_accuracy"],
             res["train_accuracy"], res["seconds_per_epoch"], res["epochs_run"])
    return res


def _mean_std(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "per_seed": v.tolist()}


def run_seed_sweep(cell, splits, names, s, lr, data_id, out, args) -> dict:
    """``--seeds K``: K members of ``cell`` (seeds S … S+K−1), as one vmapped program by default.
    The result is member 0's summary (as a single run's) plus the statistics over seeds."""
    seeds = [args.seed + j for j in range(int(args.seeds))]
    vmapped = not getattr(args, "no_vmap", False)
    compare = bool(getattr(args, "compare_vmap", False))
    (x_tr, y_tr), (x_va, y_va), _ = splits
    kwargs = dict(train_data=(jnp.asarray(x_tr), jnp.asarray(y_tr)), val_data=(jnp.asarray(x_va), jnp.asarray(y_va)),
                  s=s, lr=lr, n_classes=len(names), data_seed=args.seed, quick=bool(args.quick),
                  progress=common.progress_flag(args))
    if vmapped and runner.current_mesh() is not None:
        log.info("%s: the vmapped seed sweep trains on one device (--devices applies to runs trained alone)", cell)
    # a timed comparison trains both ways from scratch, without checkpoints
    members, info = train_seeds(cell, seeds, vmap=vmapped, data_id=None if compare else data_id, **kwargs)
    predict = jax.jit(recurrent.predict)
    cms = [_confusions(predict, m.params, splits, len(names)) for m in members]
    summaries = [_summary(c, m.history, m.epochs_run, m.best_epoch, m.stopped_early, m.compile_seconds, lr, m.diverged)
                 for c, m in zip(cms, members)]
    timing = {"mode": info["mode"], "members": len(seeds), "seconds": info["seconds"],
              "compile_seconds": info["compile_seconds"], "skipped_members": info["skipped"], "compared": compare,
              "vmapped_seconds": info["seconds"] if info["mode"] == "vmap" else None,
              "sequential_seconds": None if info["mode"] == "vmap" else info["seconds"]}
    if compare:
        others, other_info = train_seeds(cell, seeds, vmap=not vmapped, data_id=None, **kwargs)
        timing["vmapped_seconds" if other_info["mode"] == "vmap" else "sequential_seconds"] = other_info["seconds"]
        timing["other_compile_seconds"] = other_info["compile_seconds"]
        other_acc = [float(np.mean(np.asarray(batched_predict(predict, m.params, splits[2][0],
                                                              min(1024, len(splits[2][1])))) == splits[2][1]))
                     for m in others]
        timing["max_abs_param_difference"] = sweep.max_abs_difference([m.params for m in members], [m.params for m in others])
        timing["max_abs_test_accuracy_difference"] = float(np.max(np.abs(
            np.subtract(other_acc, [r["test_accuracy"] for r in summaries]))))
        timing["same_epochs"] = [m.epochs_run for m in members] == [m.epochs_run for m in others]
    if timing["vmapped_seconds"] and timing["sequential_seconds"]:
        timing["speedup"] = timing["sequential_seconds"] / timing["vmapped_seconds"]
    res = dict(summaries[0])
    res["wall_seconds"] = info["seconds"]
    res["over_seeds"] = {"seeds": seeds, "std_ddof": 1,
                         **{k: _mean_std([r[k] for r in summaries])
                            for k in ("test_accuracy", "train_accuracy", "val_accuracy")},
                         "epochs_run": [r["epochs_run"] for r in summaries],
                         "best_epoch": [r["best_epoch"] for r in summaries]}
    res["test_accuracy_mean"] = res["over_seeds"]["test_accuracy"]["mean"]
    res["test_accuracy_std"] = res["over_seeds"]["test_accuracy"]["std"]
    res["members"] = [{"seed": m.seed, **{k: r[k] for k in ("test_accuracy", "train_accuracy", "val_accuracy",
                                                            "epochs_run", "best_epoch", "stopped_early", "diverged",
                                                            "confusion_test", "history")}}
                      for m, r in zip(members, summaries)]
    res["seed_sweep"] = timing
    _figures(cell, cms[0], members[0].history, names, s, lr, out,
             suffix=f", seed {seeds[0]} of {len(seeds)}")
    log.info("%s: test accuracy %.3f ± %.3f over seeds %s (%s), %s sweep %.1fs", cell, res["test_accuracy_mean"],
             res["test_accuracy_std"], seeds, ", ".join(f"{r['test_accuracy']:.3f}" for r in summaries),
             info["mode"], info["seconds"])
    return res


def run_baseline(splits, names, b, key, data_id, out, args) -> dict:
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
    feats = [np.asarray(logistic.window_features(jnp.asarray(x))) for x in (x_tr, x_va, x_te)]
    st = logistic.fit_standardizer(jnp.asarray(feats[0]))
    f_tr, f_va, f_te = (np.asarray(logistic.standardize(jnp.asarray(f), st)) for f in feats)
    hp = logistic.LogisticHP(l2=b["l2"])
    params = logistic.init_params(key, f_tr.shape[1], len(names))
    config = dict(model="logistic", features=list(logistic.FEATURES), seed=args.seed, quick=bool(args.quick),
                  **{k: v for k, v in b.items()})
    best, history, epochs_run, best_epoch, stopped, compile_s, diverged = _fit(
        "q3_baseline_logistic", config=config, data_id=data_id,
        loss_and_grad=functools.partial(logistic.loss_and_grad, hp=hp),
        optimizer=train.sgd_momentum(b["learning_rate"], b["momentum"]), params=params,
        train_data=(jnp.asarray(f_tr), jnp.asarray(y_tr)), val_data=(jnp.asarray(f_va), jnp.asarray(y_va)),
        metrics_fn=logistic.metrics,
        fit_config=train.FitConfig(epochs=b["epochs"], batch_size=b["batch_size"], patience=b["patience"]),
        key=key, progress=common.progress_flag(args))
    predict = jax.jit(logistic.predict)
    cms = {split: confusion(y, np.asarray(predict(best, jnp.asarray(f))), len(names))
           for split, (f, y) in (("train", (f_tr, y_tr)), ("validation", (f_va, y_va)), ("test", (f_te, y_te)))}
    res = _summary(cms, history, epochs_run, best_epoch, stopped, compile_s, b["learning_rate"], diverged)
    res["model"] = "multinomial logistic regression on standardized per-axis mean, std, min, max, energy"
    plot_confusions({"training": cms["train"], "test": cms["test"]}, names, out / "baseline_confusion.png",
                    "Q3 baseline (logistic regression on window statistics): confusion matrices")
    log.info("baseline: test accuracy %.3f, train %.3f", res["test_accuracy"], res["train_accuracy"])
    return res


def comparison_table(results: dict, chance: float) -> str:
    """The Markdown table of the models. With repeated seeds (``over_seeds`` in a result) two
    columns are added, the test accuracy's mean ± std over seeds and each seed's; the other
    columns are then the first seed's run."""
    seeds = next((r["over_seeds"]["seeds"] for r in results.values() if "over_seeds" in r), None)
    head = "| model | learning rate | epochs (best) | train acc. | val. acc. | test acc. | s / epoch |"
    if seeds:
        head += (f" test acc. over {len(seeds)} seeds (mean ± std) |"
                 f" test acc. per seed ({', '.join(map(str, seeds))}) |")
    rows = [head, "|---" * head.count(" | ") + "|---|"]
    for name, r in results.items():
        label = "logistic baseline" if name == "baseline" else name.upper()
        row = (f"| {label} | {r['learning_rate']:g} | {r['epochs_run']} ({r['best_epoch']}) | "
               f"{r['train_accuracy']:.1%} | {r['val_accuracy']:.1%} | {r['test_accuracy']:.1%} | "
               f"{r['seconds_per_epoch']:.2f} |")
        if seeds:
            acc = r.get("over_seeds", {}).get("test_accuracy")
            row += (f" {100 * acc['mean']:.1f} ± {100 * acc['std']:.1f} % | "
                    + ", ".join(f"{100 * v:.1f}" for v in acc["per_seed"]) + " % |") if acc else " | |"
        rows.append(row)
    rows.append(f"| chance (1/C) | | | | | {chance:.1%} | |" + (" | |" if seeds else ""))
    table = "\n".join(rows) + "\n"
    if seeds:
        sweep_modes = {r["seed_sweep"]["mode"] for r in results.values() if "seed_sweep" in r}
        how = {"vmap": "as one vmapped program", "sequential": "one after another"}
        table += (f"\nEach recurrent model trained with seeds {', '.join(map(str, seeds))} (initial parameters and "
                  f"shuffling; the same data split), {' / '.join(how.get(m, m) for m in sorted(sweep_modes))}; "
                  f"std is the sample standard "
                  f"deviation. The other columns are seed {seeds[0]}'s run"
                  + ("; its s / epoch is its share of the vmapped program" if "vmap" in sweep_modes else "")
                  + ". The baseline is trained once.\n")
    return table


def parse_models(text: str) -> list[str]:
    models = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise SystemExit(f"--models: unknown model(s) {bad or text!r}; choose from {','.join(MODELS)}")
    return models


def parse_lrs(text: str | None) -> dict:
    lrs = dict(LEARNING_RATES)
    if not text:
        return lrs
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip().lower()
        targets = MODELS if name == "all" else (name,)
        if name != "all" and name not in MODELS or not value:
            raise SystemExit(f"--lr: expected MODEL=VALUE items (MODEL in {','.join(MODELS)} or all), found {item!r}")
        for t in targets:
            lrs[t] = float(value)
    return lrs


# ----------------------------------------------------------------------------- main
def run(args) -> dict:
    out = common.question_dir(args.results_dir, "q3")
    models = parse_models(getattr(args, "models", ",".join(MODELS)))
    lrs = parse_lrs(getattr(args, "lr", None))
    s = dict(QUICK if args.quick else SETTINGS)
    b = dict(BASELINE_QUICK if args.quick else BASELINE)
    if getattr(args, "epochs", None):
        s["epochs"] = args.epochs
    path = common.resolve_data("q3", args.data_dir)
    data = load_activity(path)
    data_id = common.file_digest(path)
    names = data.class_names
    rng = np.random.default_rng(args.seed)
    x_all, y_all, subj = data.train_x, data.train_y, data.train_subjects
    x_te, y_te = data.test_x, data.test_y
    if args.quick:  # a small random subset, every step unchanged
        keep = rng.permutation(x_all.shape[0])[: s["n_train"]]
        x_all, y_all = x_all[keep], y_all[keep]
        subj = subj[keep] if subj is not None else None
        keep_te = rng.permutation(x_te.shape[0])[: s["n_test"]]
        x_te, y_te = x_te[keep_te], y_te[keep_te]
    tr_idx, va_idx, how = validation_split(subj, x_all.shape[0], s["val_fraction"], rng)
    if args.quick and tr_idx.size > s["batch_size"]:  # whole batches only: one compiled step
        tr_idx = tr_idx[: tr_idx.size - tr_idx.size % s["batch_size"]]
    mean, std = channel_stats(x_all[tr_idx])
    norm = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    splits = ((norm(x_all[tr_idx]), y_all[tr_idx]), (norm(x_all[va_idx]), y_all[va_idx]), (norm(x_te), y_te))
    log.info("q3: %s; %d train / %d validation (%s%s) / %d test windows, classes %s", common.describe_source(data.attrs),
             tr_idx.size, va_idx.size, how["kind"] + "-wise", f", subjects {how['subjects']}" if how["subjects"] else "",
             x_te.shape[0], list(names))

    key = jax.random.PRNGKey(args.seed)
    k_base, *k_models = jax.random.split(key, 1 + len(MODELS))
    results = {}
    for cell, k in zip(MODELS, k_models):
        if cell in models:
            results[cell] = run_recurrent(cell, splits, names, s, lrs[cell], k, data_id, out, args)
    results["baseline"] = run_baseline(splits, names, b, k_base, data_id, out, args)
    plot_all_losses({m.upper(): r["history"] for m, r in results.items()
                     if m != "baseline" and r["history"].get("train_loss")}, out / "loss_all.png")
    chance = 1.0 / len(names)
    table = comparison_table(results, chance)
    (out / "comparison.md").write_text(table)
    metrics = {
        "question": "q3",
        "data": {
            "path": str(path), "digest": data_id, "source": common.describe_source(data.attrs),
            "recipe": data.attrs.get("recipe"), "class_names": list(names),
            "n_train": int(tr_idx.size), "n_val": int(va_idx.size), "n_test": int(x_te.shape[0]),
            "validation": how, "channel_mean": mean.tolist(), "channel_std": std.tolist(),
        },
        "settings": dict(s, learning_rates={m: lrs[m] for m in models}, baseline=b, quick=bool(args.quick),
                         seed=args.seed, devices=[str(d) for d in jax.devices()]),
        "chance_accuracy": chance,
        "majority_test_accuracy": float(np.bincount(y_te, minlength=len(names)).max() / y_te.size),
        **results,
    }
    n_seeds = int(getattr(args, "seeds", 1) or 1)
    if n_seeds > 1:
        metrics["settings"].update(seeds=n_seeds, vmap=not getattr(args, "no_vmap", False),
                                   compare_vmap=bool(getattr(args, "compare_vmap", False)))
    common.write_json(out / "metrics.json", metrics)
    print(table, end="")
    for m in models:
        t = results[m].get("seed_sweep")
        if t:
            parts = [f"{k.split('_')[0]} {t[k]:.1f}s" for k in ("vmapped_seconds", "sequential_seconds")
                     if t[k] is not None]
            if "speedup" in t:
                parts.append(f"speed-up x{t['speedup']:.2f}")
            if "max_abs_param_difference" in t:
                parts.append(f"max |Δparam| {t['max_abs_param_difference']:.1e}, "
                             f"max |Δtest acc.| {t['max_abs_test_accuracy_difference']:.3f}")
            skipped = t["skipped_members"]
            print(f"  {m} seed sweep ({t['members']} members, {t['mode']}"
                  + (f", {skipped} skipped: finished earlier" if skipped else "") + "): " + ", ".join(parts))
    print(f"q3: wrote {out}/metrics.json and figures")
    return metrics


def main(argv=None) -> int:
    p = common.base_parser("python -m experiments.q3_activity", __doc__)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of rnn,lstm,gru (default all)")
    p.add_argument("--lr", help="learning-rate overrides, e.g. 'rnn=0.01,gru=0.1' or 'all=0.1' "
                                f"(defaults {LEARNING_RATES})")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 50; --quick 2)")
    p.add_argument("--seeds", type=int, default=1, help="train each recurrent model K times, seeds S..S+K-1 "
                   "(S = --seed; initial parameters and shuffling; the same data split), as one jax.vmap program, "
                   "and report the test accuracy's mean and std over seeds (default 1)")
    p.add_argument("--no-vmap", action="store_true", help="with --seeds K > 1: train the K members one by one")
    p.add_argument("--compare-vmap", action="store_true", help="with --seeds K > 1: train the members both ways "
                   "(vmapped and one by one, without checkpoints) and record both times in metrics.json")
    args = p.parse_args(argv)
    common.start_devices(args)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    common.setup_logging()
    with common.session(args, "q3"):
        run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
