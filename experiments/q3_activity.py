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
"""
from __future__ import annotations

import functools
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, plotting, runner
from mp_jax import train
from mp_jax.data.course import load_activity
from mp_jax.models import logistic, recurrent

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
         fit_config, key, args):
    """runner.fit_run, keeping the last finite state when a run diverges."""
    try:
        res = runner.fit_run(name, config=config, data_id=data_id, loss_and_grad=loss_and_grad,
                             optimizer=optimizer, params=params, train_data=train_data, fit_config=fit_config,
                             key=key, val_data=val_data, metrics_fn=metrics_fn,
                             progress=common.progress_flag(args))
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


def run_recurrent(cell, splits, names, s, lr, key, data_id, out, args) -> dict:
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
    k_init, k_fit = jax.random.split(key)
    params = recurrent.init_params(k_init, cell, x_tr.shape[-1], s["hidden"], s["mlp"], len(names))
    config = dict(model=cell, learning_rate=lr, **{k: s[k] for k in ("hidden", "mlp", "batch_size", "epochs",
                                                                    "momentum", "clip_norm", "patience")},
                  seed=args.seed, quick=bool(args.quick))
    t = time.perf_counter()
    best, history, epochs_run, best_epoch, stopped, compile_s, diverged = _fit(
        f"q3_{cell}", config=config, data_id=data_id, loss_and_grad=recurrent.loss_and_grad,
        optimizer=train.sgd_momentum(lr, s["momentum"], clip_norm=s["clip_norm"]), params=params,
        train_data=(jnp.asarray(x_tr), jnp.asarray(y_tr)), val_data=(jnp.asarray(x_va), jnp.asarray(y_va)),
        metrics_fn=recurrent.metrics,
        fit_config=train.FitConfig(epochs=s["epochs"], batch_size=s["batch_size"], patience=s["patience"]),
        key=k_fit, args=args)
    wall = time.perf_counter() - t
    predict = jax.jit(recurrent.predict)
    chunk = min(1024, max(len(y) for _, y in splits))
    cms = {split: confusion(y, batched_predict(predict, best, x, chunk), len(names))
           for split, (x, y) in (("train", (x_tr, y_tr)), ("validation", (x_va, y_va)), ("test", (x_te, y_te)))}
    res = _summary(cms, history, epochs_run, best_epoch, stopped, compile_s, lr, diverged)
    res["wall_seconds"] = wall
    plot_confusions({"training": cms["train"], "test": cms["test"]}, names, out / f"{cell}_confusion.png",
                    f"Q3 {cell.upper()} (H={s['hidden']}, lr={lr}): confusion matrices")
    if history.get("train_loss"):
        plotting.loss_curves(history, out / f"{cell}_loss.png", f"Q3 {cell.upper()}: loss per epoch (lr={lr})")
    log.info("%s: test accuracy %.3f, train %.3f, %.2f s/epoch, %d epochs", cell, res["test_accuracy"],
             res["train_accuracy"], res["seconds_per_epoch"], res["epochs_run"])
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
        key=key, args=args)
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
    rows = ["| model | learning rate | epochs (best) | train acc. | val. acc. | test acc. | s / epoch |",
            "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        label = "logistic baseline" if name == "baseline" else name.upper()
        rows.append(f"| {label} | {r['learning_rate']:g} | {r['epochs_run']} ({r['best_epoch']}) | "
                    f"{r['train_accuracy']:.1%} | {r['val_accuracy']:.1%} | {r['test_accuracy']:.1%} | "
                    f"{r['seconds_per_epoch']:.2f} |")
    rows.append(f"| chance (1/C) | | | | | {chance:.1%} | |")
    return "\n".join(rows) + "\n"


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
    common.write_json(out / "metrics.json", metrics)
    print(table, end="")
    print(f"q3: wrote {out}/metrics.json and figures")
    return metrics


def main(argv=None) -> int:
    p = common.base_parser("python -m experiments.q3_activity", __doc__)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of rnn,lstm,gru (default all)")
    p.add_argument("--lr", help="learning-rate overrides, e.g. 'rnn=0.01,gru=0.1' or 'all=0.1' "
                                f"(defaults {LEARNING_RATES})")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 50; --quick 2)")
    args = p.parse_args(argv)
    common.setup_logging()
    with common.session(args, "q3"):
        run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
