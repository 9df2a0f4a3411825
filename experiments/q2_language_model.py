"""Q2: next word from a trigram — the neural language model against a Kneser-Ney baseline.

Trains (D, P) ∈ {(32, 256), (16, 128), (8, 64)} with SPEC.md's settings (SGD, learning rate
0.15, momentum 0.85, batch 200, at most 50 epochs, N(0, 0.01²) init, early stopping on the
validation cross-entropy with patience 5, keeping the best epoch's parameters); fits an
interpolated modified Kneser-Ney 4-gram model on the same training split; mixes the
(32, 256) network with it, the weight chosen on the validation split.

Writes to ``<results-dir>/q2/``: ``metrics.json``, ``table.txt`` (test cross-entropy in nats,
perplexity, top-1 / top-10 accuracy per model), ``loss_D32_P256.png`` … (training and
validation cross-entropy per epoch), ``samples.txt`` and ``samples.png`` (five random test
trigrams: the network's top-10 fourth words beside the true one), ``neighbours.txt`` (the 10
nearest words in embedding space) and ``anchors.txt`` (the report's trigrams).
"""
from __future__ import annotations

import logging
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, plotting, runner
from mp_jax import train
from mp_jax.data import load_ngrams
from mp_jax.models import kneser_ney
from mp_jax.models import language_model as lm

QUESTION = "q2"
SETTINGS = ((32, 256), (16, 128), (8, 64))
LEARNING_RATE = 0.15
MOMENTUM = 0.85
BATCH_SIZE = 200
EPOCHS = 50
PATIENCE = 5
INIT_STD = 0.01
N_SAMPLES = 5
TOP_K = 10
QUERY_WORDS = ("he", "could", "day", "money", "three", "good", "said", "king", "house", "god")
N_QUERIES = 5
ANCHORS = ("what does new", "but it 's", "nt get it")
QUICK = dict(n_train=20_000, n_eval=4_000, epochs=3)

log = logging.getLogger("experiments.q2")


def setting_name(d: int, p: int) -> str:
    return f"D={d},P={p}"


# ----------------------------------------------------------------------------- scoring helpers
def target_ranks(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """How many words score strictly higher than the target (0 = top-1)."""
    pt = probs[np.arange(len(targets)), targets]
    return np.sum(probs > pt[:, None], axis=1)


def score(probs: np.ndarray, targets: np.ndarray) -> dict:
    """Cross-entropy (nats), perplexity and top-1 / top-10 accuracy of full distributions."""
    pt = probs[np.arange(len(targets)), targets]
    ce = float(-np.mean(np.log(np.maximum(pt, 1e-300))))
    ranks = target_ranks(probs, targets)
    return {"test_cross_entropy": ce, "perplexity": math.exp(ce),
            "top1_accuracy": float(np.mean(ranks < 1)), "top10_accuracy": float(np.mean(ranks < TOP_K))}


def choose_mixture_weight(p_nn: np.ndarray, p_kn: np.ndarray, grid: int = 101) -> tuple[float, float]:
    """λ minimising −mean log(λ p_nn + (1 − λ) p_kn) over a grid on [0, 1]; returns (λ, loss)."""
    lams = np.linspace(0.0, 1.0, grid)
    losses = [-np.mean(np.log(np.maximum(lam * p_nn + (1 - lam) * p_kn, 1e-300))) for lam in lams]
    i = int(np.argmin(losses))
    return float(lams[i]), float(losses[i])


_predict_proba = jax.jit(lm.predict_proba)


def neural_proba(params: lm.LMParams, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """<float64>[N, V] probabilities of the network, in chunks of one padded shape (one compile)."""
    n = len(x)
    size = min(chunk, n)
    pad = (-n) % size
    xp = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)]) if pad else x
    out = [np.asarray(_predict_proba(params, jnp.asarray(xp[s:s + size])), np.float64)
           for s in range(0, len(xp), size)]
    return np.concatenate(out)[:n]


def top_words(p: np.ndarray, words, k: int = TOP_K) -> list:
    order = np.argsort(-p, kind="stable")[:k]
    return [[words[i], float(p[i])] for i in order]


def nearest_words(emb: np.ndarray, words, query: str, k: int = 10) -> list:
    """The k words with the highest cosine similarity to ``query``'s embedding."""
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    i = words.index(query)
    sims = e @ e[i]
    sims[i] = -np.inf
    order = np.argsort(-sims, kind="stable")[:k]
    return [[words[j], float(sims[j])] for j in order]


# ----------------------------------------------------------------------------- figures and text
def loss_figure(history: dict, best_epoch: int, path, title: str):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], marker=".", label="training (mean over the epoch)")
    ax.plot(epochs, history["val_loss"], marker=".", label="validation")
    ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best epoch ({best_epoch})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return plotting.save(fig, path)


def samples_figure(samples: list, path, title: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 4.2), squeeze=False)
    for ax, s in zip(axes[0], samples):
        names = [w for w, _ in s["top10"]][::-1]
        probs = [p for _, p in s["top10"]][::-1]
        colors = ["tab:green" if w == s["true"] else "tab:blue" for w in names]
        ax.barh(range(len(names)), probs, color=colors)
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
    return plotting.save(fig, path)


def table_text(rows: dict) -> str:
    head = f"{'model':<24}{'test CE':>9}{'perplexity':>12}{'top-1':>8}{'top-10':>8}  notes"
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        note = ""
        if "best_epoch" in m:
            note = f"best epoch {m['best_epoch']} of {m['epochs_run']}"
        if "weight" in m:
            note = f"weight of the network {m['weight']:.2f} (chosen on validation)"
        lines.append(f"{name:<24}{m['test_cross_entropy']:>9.4f}{m['perplexity']:>12.3f}"
                     f"{100 * m['top1_accuracy']:>7.2f}%{100 * m['top10_accuracy']:>7.2f}%  {note}")
    return "\n".join(lines) + "\n"


def samples_text(samples: list) -> str:
    out = []
    for i, s in enumerate(samples, 1):
        out.append(f"sample {i} (test row {s['index']}): “{s['trigram']}” → true “{s['true']}” "
                   f"p={s['p_true']:.4f}, rank {s['rank_true'] + 1}; Kneser-Ney p={s['p_true_kneser_ney']:.4f}")
        for j, (w, p) in enumerate(s["top10"], 1):
            mark = "  ← true" if w == s["true"] else ""
            out.append(f"  {j:>2}. {w:<12} {p:.4f}{mark}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- the experiment
def run(args) -> dict:
    out = common.question_dir(args.results_dir, QUESTION)
    path = common.resolve_data(QUESTION, args.data_dir)
    data = load_ngrams(path)
    data_id = common.file_digest(path)
    words = list(data.words)
    vocab = len(words)
    log.info("q2: %s, V=%d, train %d / val %d / test %d (%s)", path, vocab, len(data.train_y), len(data.val_y),
             len(data.test_y), common.describe_source(data.attrs))

    splits = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y),
              "test": (data.test_x, data.test_y)}
    epochs = EPOCHS
    if args.quick:
        sizes = {"train": QUICK["n_train"], "val": QUICK["n_eval"], "test": QUICK["n_eval"]}
        splits = {k: (x[:sizes[k]], y[:sizes[k]]) for k, (x, y) in splits.items()}
        epochs = QUICK["epochs"]
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = splits["train"], splits["val"], splits["test"]
    train_data = (jnp.asarray(tr_x), jnp.asarray(tr_y))
    val_data = (jnp.asarray(va_x), jnp.asarray(va_y))
    test_data = (jnp.asarray(te_x), jnp.asarray(te_y))

    fit_config = train.FitConfig(epochs=epochs, batch_size=BATCH_SIZE, patience=PATIENCE)
    evaluate = train.make_eval_fn(lm.metrics, fit_config.eval_batch_size)
    key = jax.random.PRNGKey(args.seed)
    metrics: dict = {}
    params_by_setting = {}
    for i, (d, p) in enumerate(SETTINGS):
        name = setting_name(d, p)
        k_init, k_fit = jax.random.split(jax.random.fold_in(key, i))
        params = lm.init_params(k_init, vocab, d, p, std=INIT_STD)
        config = {"model": "language_model", "D": d, "P": p, "vocab": vocab, "init_std": INIT_STD,
                  "learning_rate": LEARNING_RATE, "momentum": MOMENTUM, "seed": args.seed, "quick": bool(args.quick)}
        t = time.perf_counter()
        res = runner.fit_run(f"lm_D{d}_P{p}", config=config, data_id=data_id, loss_and_grad=lm.loss_and_grad,
                             optimizer=train.sgd_momentum(LEARNING_RATE, MOMENTUM), params=params,
                             train_data=train_data, fit_config=fit_config, key=k_fit, val_data=val_data,
                             metrics_fn=lm.metrics, progress=common.progress_flag(args),
                             per_example_mean=True)
        seconds = time.perf_counter() - t
        test = {k: float(v) for k, v in evaluate(res.params, test_data).items()}
        val = {k: float(v) for k, v in evaluate(res.params, val_data).items()}
        metrics[name] = {
            "test_cross_entropy": test["loss"], "perplexity": math.exp(test["loss"]),
            "top1_accuracy": test["top1"], "top10_accuracy": test["top10"],
            "val_cross_entropy": val["loss"], "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
            "stopped_early": res.stopped_early, "seconds": seconds, "history": res.history,
        }
        params_by_setting[name] = res.params
        loss_figure(res.history, res.best_epoch, out / f"loss_D{d}_P{p}.png",
                    f"Q2 language model, D={d}, P={p}")
        log.info("%s: test CE %.4f (ppl %.2f), top-1 %.2f%%, top-10 %.2f%%, best epoch %d/%d, %.0fs", name,
                 test["loss"], math.exp(test["loss"]), 100 * test["top1"], 100 * test["top10"],
                 res.best_epoch, res.epochs_run, seconds)

    # The count baseline and the mixture with the largest network.
    t = time.perf_counter()
    kn = kneser_ney.fit(tr_x, tr_y, vocab)
    kn_val = kneser_ney.predict_proba(kn, va_x)
    kn_test = kneser_ney.predict_proba(kn, te_x)
    kn_seconds = time.perf_counter() - t
    metrics["kneser_ney"] = {**score(kn_test, te_y), "val_cross_entropy": score(kn_val, va_y)["test_cross_entropy"],
                             "discounts": {f"order{k + 1}": kn.discounts[k, 1:].tolist() for k in range(4)},
                             "seconds": kn_seconds}
    main_name = setting_name(*SETTINGS[0])
    best = params_by_setting[main_name]
    nn_val, nn_test = neural_proba(best, va_x), neural_proba(best, te_x)
    rows = np.arange(len(va_y))
    weight, mix_val_ce = choose_mixture_weight(nn_val[rows, va_y], kn_val[rows, va_y])
    mix_test = weight * nn_test + (1 - weight) * kn_test
    metrics["interpolated"] = {**score(mix_test, te_y), "weight": weight, "val_cross_entropy": mix_val_ce,
                               "components": [main_name, "kneser_ney"]}

    table = {k: metrics[k] for k in [setting_name(*s) for s in SETTINGS]}
    table["kneser_ney"] = metrics["kneser_ney"]
    table["interpolated"] = metrics["interpolated"]
    text = table_text(table)
    (out / "table.txt").write_text(text)

    # Five random test trigrams (fixed seed).
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(te_y), size=min(N_SAMPLES, len(te_y)), replace=False))
    ranks = target_ranks(nn_test[idx], te_y[idx])
    samples = []
    for j, r in zip(idx, ranks):
        samples.append({"index": int(j), "trigram": " ".join(words[w] for w in te_x[j]), "true": words[te_y[j]],
                        "p_true": float(nn_test[j, te_y[j]]), "rank_true": int(r),
                        "p_true_kneser_ney": float(kn_test[j, te_y[j]]), "top10": top_words(nn_test[j], words)})
    (out / "samples.txt").write_text(samples_text(samples))
    samples_figure(samples, out / "samples.png", f"Q2: top-10 fourth words of the network {main_name} "
                                                 f"(green: the true word)")

    # Nearest words in embedding space.
    emb = np.asarray(best.emb, np.float64)
    queries = [w for w in QUERY_WORDS if w in words][:N_QUERIES]
    neighbours = {q: nearest_words(emb, words, q) for q in queries}
    nb_lines = [f"{q:<8} " + ", ".join(f"{w} ({s:.2f})" for w, s in nb) for q, nb in neighbours.items()]
    (out / "neighbours.txt").write_text(f"10 nearest words by cosine similarity of the {main_name} embedding\n"
                                        + "\n".join(nb_lines) + "\n")

    # The report's anchor trigrams, where their words are in the vocabulary.
    anchors = {}
    an_lines = []
    for tri in ANCHORS:
        toks = tri.split()
        if not all(t in words for t in toks):
            an_lines.append(f"“{tri}”: not in this vocabulary (missing {[t for t in toks if t not in words]})")
            continue
        ctx = np.array([[words.index(t) for t in toks]])
        p_nn = neural_proba(best, ctx)[0]
        p_kn = kneser_ney.predict_proba(kn, ctx)[0]
        p_mix = weight * p_nn + (1 - weight) * p_kn
        anchors[tri] = {"neural": top_words(p_nn, words), "kneser_ney": top_words(p_kn, words, 5),
                        "interpolated": top_words(p_mix, words, 5)}
        an_lines.append(f"“{tri}”")
        for label, key_ in (("network", "neural"), ("Kneser-Ney", "kneser_ney"), ("interpolated", "interpolated")):
            an_lines.append(f"  {label:<13}" + ", ".join(f"{w} {pr:.3f}" for w, pr in anchors[tri][key_]))
    (out / "anchors.txt").write_text("\n".join(an_lines) + "\n")

    metrics.update({
        "samples": samples, "neighbours": neighbours, "anchors": anchors,
        "settings": {"learning_rate": LEARNING_RATE, "momentum": MOMENTUM, "batch_size": BATCH_SIZE,
                     "max_epochs": epochs, "patience": PATIENCE, "init_std": INIT_STD,
                     "early_stopping": "validation cross-entropy, best epoch's parameters kept"},
        "data": {"path": str(path), "digest": data_id, "source": common.describe_source(data.attrs),
                 "vocab_size": vocab, "n_train": int(len(tr_y)), "n_val": int(len(va_y)), "n_test": int(len(te_y))},
        "quick": bool(args.quick),
    })
    common.write_json(out / "metrics.json", metrics)
    print(text, end="")
    print("\n".join(an_lines))
    print(f"q2: results in {out}")
    return metrics


def main(argv=None) -> int:
    args = common.base_parser("python -m experiments.q2_language_model", __doc__).parse_args(argv)
    common.start_devices(args)
    common.setup_logging()
    with common.session(args, QUESTION):
        run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
