"""Q2: next word from a trigram — the neural language model against a Kneser-Ney baseline.

Trains (D, P) ∈ {(32, 256), (16, 128), (8, 64)} by SGD (learning rate 0.15, momentum 0.85,
batch 200, at most 50 epochs, N(0, 0.01²) init, early stopping on the validation
cross-entropy with patience 5, keeping the best epoch's parameters; docs/language_model.md
and docs/training.md); fits an interpolated modified Kneser-Ney 4-gram model on the same
training split; picks the network of lowest validation cross-entropy (``model_selection`` in
``metrics.json``) and mixes it with the count model, the weight chosen on the validation split.
``--impl fast`` (the default) trains on :mod:`mp_jax.models.language_model_fast`'s
gradients, ``--impl reference`` on :mod:`mp_jax.models.language_model`'s: the same function.

Writes to ``<results-dir>/q2/``: ``metrics.json``, ``table.txt`` (test cross-entropy in nats,
perplexity, top-1 / top-10 accuracy per model), ``loss_D32_P256.png`` … (training and
validation cross-entropy per epoch), ``samples.txt`` and ``samples.png`` (five random test
trigrams: the network's top-10 fourth words beside the true one), ``neighbours.txt`` (the 10
nearest words in embedding space) and ``anchors.txt``: the course report's six sample trigrams,
each where its words are in the vocabulary, otherwise a test trigram playing the same role
(:func:`mp_jax.models.language_model_scoring.anchor_trigrams`).

``--recipe handout`` trains with the course handout's settings (:attr:`Q2Config.HANDOUT`, the
defaults' values already) under its own name, in ``<results-dir>/q2_handout/`` (docs/recipes.md).
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, files, plotting, tables
from experiments.config import IMPLS, RunOptions
from mp_jax.protocols import runs
from mp_jax.runtime import cli
from mp_jax.engine import distributed, train
from mp_jax.data import load_ngrams
from mp_jax.models import kneser_ney
from mp_jax.models import language_model as lm
from mp_jax.models import language_model_scoring as scoring

log = logging.getLogger("experiments.q2")


@dataclasses.dataclass(frozen=True)
class Q2Config(RunOptions):
    """Q2's settings (the defaults are the report's; :meth:`quick` the tiny ones).

    The defaults are the course handout's training settings already (η 0.15, α 0.85, batch 200,
    at most 50 epochs, N(0, 0.01²) init, early stopping on the validation cross-entropy keeping
    the best epoch): :attr:`HANDOUT` restates them, so ``--recipe handout`` trains the same
    networks under its own name and checkpoints (docs/recipes.md). The one setting the handout
    leaves open is the patience of the early stopping (5 here, in both recipes)."""

    HANDOUT = dict(learning_rate=0.15, momentum=0.85, batch_size=200, epochs=50, init_std=0.01)

    settings: tuple = ((32, 256), (16, 128), (8, 64))  # (D, P): embedding size, hidden units
    learning_rate: float = 0.15
    momentum: float = 0.85
    batch_size: int = 200
    epochs: int = 50
    patience: int = 5
    init_std: float = 0.01
    impl: str = "fast"  # "fast" or "reference" gradients (IMPLS)
    n_train: Optional[int] = None  # None: every example of each split
    n_eval: Optional[int] = None
    n_samples: int = 5
    top_k: int = 10
    query_words: tuple = ("he", "could", "day", "money", "three", "good", "said", "king", "house", "god")
    n_queries: int = 5
    anchors: tuple = scoring.COURSE_TRIGRAMS  # (trigram, role, the report's top word) each
    anchor_min_count: int = 5  # a substitute is seen at least this often in training (where any is)

    @classmethod
    def quick(cls, **changes) -> "Q2Config":
        return cls(**{**dict(is_quick=True, n_train=20_000, n_eval=4_000, epochs=3), **changes})

    def batch_sizes(self) -> dict:
        return {"q2 batch": self.batch_size}

    @classmethod
    def from_args(cls, args) -> "Q2Config":
        return cls.make(**dict(cls.options_from_args(args), impl=getattr(args, "impl", "fast")))


Config = Q2Config
COURSE_ORDER = ((32, 256), (16, 128), (8, 64))  # the (D, P) settings in the order of the course's figures
SELECTION_RULE = "lowest validation cross-entropy"


def model_selection(records: dict, settings) -> dict:
    """The network the rule picks, and the numbers it used.

    Args:
      records: name ("D=32,P=256") -> record with ``val_cross_entropy``.
      settings: the trained (D, P), in training order (the names' order).
    Returns:
      ``rule`` ("lowest validation cross-entropy"; a tie goes to the first in ``settings``),
      ``val_cross_entropy`` per name, ``chosen`` (its name) and ``chosen_setting`` {D, P}.
    """
    names = [f"D={d},P={p}" for d, p in settings]
    val = {n: float(records[n]["val_cross_entropy"]) for n in names}
    i = min(range(len(names)), key=lambda j: (val[names[j]], j))
    return {"rule": SELECTION_RULE, "val_cross_entropy": val, "chosen": names[i],
            "chosen_setting": {"D": int(settings[i][0]), "P": int(settings[i][1])}}


def course_order(settings) -> list:
    """The trained (D, P) in the course's order (:data:`COURSE_ORDER`; others after, as trained):
    ``[{"D", "P", "name", "loss_figure"}]``, for laying out the loss figures."""
    rank = {dp: i for i, dp in enumerate(COURSE_ORDER)}
    ordered = sorted(settings, key=lambda dp: (rank.get(tuple(dp), len(rank)), list(settings).index(dp)))
    return [{"D": int(d), "P": int(p), "name": f"D={d},P={p}", "loss_figure": f"loss_D{d}_P{p}.png"}
            for d, p in ordered]


def loss_and_grad(impl: str):
    """The manual ``loss_and_grad`` that ``impl`` names ("fast" or "reference")."""
    if impl not in IMPLS:
        raise ValueError(f"--impl must be one of {IMPLS}, found {impl!r}")
    module = "mp_jax.models.language_model_fast" if impl == "fast" else "mp_jax.models.language_model"
    return importlib.import_module(module).loss_and_grad


def train_setting(ctx: runs.RunContext, c: Q2Config, i: int, d: int, p: int, vocab: int, data_id: str, train_data,
                  val_data):
    """One (D, P) network through the checkpointed engine: its :class:`mp_jax.engine.train.FitResult`."""
    k_init, k_fit = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(c.seed), i))
    split = {"train": int(len(train_data[1])), "val": int(len(val_data[1])), "rows": "the first of each split"}
    training = runs.Training(loss_and_grad(c.impl), train.sgd_momentum(c.learning_rate, c.momentum),
                               train.FitConfig(epochs=c.epochs, batch_size=c.batch_size, patience=c.patience),
                               metrics_fn=lm.metrics, per_example_mean=True)
    return runs.fit_run(ctx, f"lm_D{d}_P{p}", training, lm.init_params(k_init, vocab, d, p, std=c.init_std),
                          train_data, key=k_fit, val_data=val_data,
                          run_key=c.run_key(data=data_id, split=split, model="language_model", D=d, P=p, vocab=vocab,
                                            index=i))


def _numbers(why: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.3f}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                     for k, v in why.items() if k != "rule")


def anchors_text(c: Q2Config, words: list, best, kn, weight: float, split: dict) -> tuple[dict, str]:
    """The course report's sample trigrams, or a test trigram in the role of each one whose words
    are not all in the vocabulary (:func:`mp_jax.models.language_model_scoring.anchor_trigrams`,
    on the training counts of ``split``): the network's top 10, Kneser-Ney's and the mixture's
    top 5. Returns ({course trigram: entry}, the text of ``anchors.txt``)."""
    picks = scoring.anchor_trigrams(words, *split["train"], split["test"][0], c.anchors, c.anchor_min_count)
    anchors = {}
    lines = ["The course report's sample trigrams (Q2 b), in its order. One whose words are all in this vocabulary",
             "is shown as it is; otherwise a test trigram that plays the same role stands in for it, picked by the",
             "rule given from the training counts.", ""]
    for a in picks:
        entry, course = dict(a), f"“{a['stands_for']}”"
        missing = ", ".join(f"“{w}”" for w in a["missing"])
        reported = "the course report's network: {} {:.3f}".format(*a["course_report_top"])
        if a["source"] == "course":
            lines += [f"“{a['trigram']}” — the course's own trigram, seen {a['why']['training_count']} times in the "
                      f"training data; {reported}", f"  role: {a['role_description']}"]
        elif a["source"] == "substitute":
            lines += [f"“{a['trigram']}” — a substitute for the course's {course} (not in this vocabulary: "
                      f"{missing}); {reported}",
                      f"  role: {a['role_description']}",
                      f"  picked as {a['why']['rule']}: {_numbers(a['why'])}"]
        else:
            lines += [f"{course}: not in this vocabulary (missing {missing}), and no test trigram plays its role",
                      f"  role: {a['role_description']}", f"  rule: {a['why']['rule']}", ""]
        if a["ids"] is not None:
            ctx = np.array([a["ids"]])
            p_nn, p_kn = scoring.probabilities(best, ctx)[0], kneser_ney.predict_proba(kn, ctx)[0]
            p_mix = weight * p_nn + (1 - weight) * p_kn
            entry.update(neural=scoring.top_words(p_nn, words, c.top_k), kneser_ney=scoring.top_words(p_kn, words, 5),
                         interpolated=scoring.top_words(p_mix, words, 5))
            lines += [f"  {label:<13}" + ", ".join(f"{w} {pr:.3f}" for w, pr in entry[k])
                      for label, k in (("network", "neural"), ("Kneser-Ney", "kneser_ney"),
                                       ("interpolated", "interpolated"))] + [""]
        anchors[a["stands_for"]] = entry
    return anchors, "\n".join(lines)


def load(c: Q2Config):
    """The file, its digest, the vocabulary and the three splits ((x, y) each; the first
    ``n_train`` / ``n_eval`` rows with ``quick``)."""
    path = files.resolve_data("q2", c.data_dir)
    data = load_ngrams(path)
    files.announce_data("q2", path, data.attrs)
    sizes = {"train": c.n_train, "val": c.n_eval, "test": c.n_eval}
    split = {k: (getattr(data, f"{k}_x")[:n], getattr(data, f"{k}_y")[:n]) for k, n in sizes.items()}
    return path, data.attrs, files.file_digest(path), list(data.words), split


def train_networks(ctx: runs.RunContext, c: Q2Config, words: list, data_id: str, split: dict,
                   out) -> tuple[dict, dict]:
    """Every (D, P) network: ({name: record}, {name: best parameters}), and its loss figure."""
    evaluate = train.make_eval_fn(lm.metrics, 4096)
    jx = {k: (jnp.asarray(x), jnp.asarray(y)) for k, (x, y) in split.items()}
    records, nets = {}, {}
    for i, (d, p) in enumerate(c.settings):
        name = f"D={d},P={p}"
        res = train_setting(ctx, c, i, d, p, len(words), data_id, jx["train"], jx["val"])
        test, val = ({k: float(v) for k, v in evaluate(res.params, jx[s]).items()} for s in ("test", "val"))
        records[name] = {"test_cross_entropy": test["loss"], "perplexity": math.exp(test["loss"]),
                         "top1_accuracy": test["top1"], "top10_accuracy": test["top10"], "val_cross_entropy": val["loss"],
                         "best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "stopped_early": res.stopped_early,
                         "seconds": res.seconds, "loaded": res.loaded, "history": res.history}
        nets[name] = res.params
        plotting.loss_curves(res.history, out / f"loss_D{d}_P{p}.png", f"Q2 language model, D={d}, P={p}",
                             "cross-entropy (nats)", best_epoch=res.best_epoch)
        log.info("%s: test CE %.4f (ppl %.2f), top-1 %.2f%%, top-10 %.2f%%, best epoch %d/%d, %s", name, test["loss"],
                 math.exp(test["loss"]), 100 * test["top1"], 100 * test["top10"], res.best_epoch, res.epochs_run,
                 plotting.time_label(res.seconds, res.loaded))
    return records, nets


def run(config: Q2Config, ctx: Optional[runs.RunContext] = None) -> dict:
    """Q2 end to end under ``ctx`` (default: no checkpoints, the default devices)."""
    ctx = ctx or runs.RunContext(progress=config.progress)
    c, out = config, files.question_dir(config.results_dir, config.results_name("q2"))
    path, attrs, data_id, words, split = load(c)
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = split["train"], split["val"], split["test"]
    metrics, nets = train_networks(ctx, c, words, data_id, split, out)
    # the count baseline, and its mixture with the largest network (the weight chosen on validation)
    t = time.perf_counter()
    kn = kneser_ney.fit(tr_x, tr_y, len(words))
    kn_val, kn_test = kneser_ney.predict_proba(kn, va_x), kneser_ney.predict_proba(kn, te_x)
    metrics["kneser_ney"] = {**scoring.score(kn_test, te_y),
                             "val_cross_entropy": scoring.score(kn_val, va_y)["test_cross_entropy"],
                             "discounts": {f"order{k + 1}": kn.discounts[k, 1:].tolist() for k in range(4)},
                             "seconds": time.perf_counter() - t}
    selection = model_selection(metrics, c.settings)
    main_name = selection["chosen"]
    best = nets[main_name]
    nn_val, nn_test = scoring.probabilities(best, va_x), scoring.probabilities(best, te_x)
    rows = np.arange(len(va_y))
    weight, mix_val_ce = scoring.choose_mixture_weight(nn_val[rows, va_y], kn_val[rows, va_y])
    metrics["interpolated"] = {**scoring.score(weight * nn_test + (1 - weight) * kn_test, te_y), "weight": weight,
                               "val_cross_entropy": mix_val_ce, "components": [main_name, "kneser_ney"]}
    table = tables.q2_table(dict(metrics))
    files.write_text(out / "table.txt", table)
    # five random test trigrams (a fixed seed), the nearest words, the course's sample trigrams
    idx = np.sort(np.random.default_rng(c.seed).choice(len(te_y), size=min(c.n_samples, len(te_y)), replace=False))
    samples = [{"index": int(j), "trigram": " ".join(words[w] for w in te_x[j]), "true": words[te_y[j]],
                "p_true": float(nn_test[j, te_y[j]]), "rank_true": int(r),
                "p_true_kneser_ney": float(kn_test[j, te_y[j]]), "top10": scoring.top_words(nn_test[j], words, c.top_k)}
               for j, r in zip(idx, scoring.target_ranks(nn_test[idx], te_y[idx]))]
    files.write_text(out / "samples.txt", tables.q2_samples(samples))
    plotting.samples_figure(samples, out / "samples.png",
                            f"Q2: top-10 fourth words of the network {main_name} (green: the true word)")
    queries = [w for w in c.query_words if w in words][:c.n_queries]
    neighbours = {q: scoring.nearest_words(best.emb, words, q) for q in queries}
    files.write_text(out / "neighbours.txt", f"10 nearest words by cosine similarity of the {main_name} embedding\n"
                      + "".join(f"{q:<8} " + ", ".join(f"{w} ({s:.2f})" for w, s in nb) + "\n"
                                for q, nb in neighbours.items()))
    anchors, anchor_text = anchors_text(c, words, best, kn, weight, split)
    files.write_text(out / "anchors.txt", anchor_text)
    metrics.update({
        "samples": samples, "neighbours": neighbours, "anchors": anchors,
        "model_selection": selection, "settings_course_order": course_order(c.settings),
        "settings": {**dataclasses.asdict(c), "max_epochs": c.epochs,
                     "early_stopping": "validation cross-entropy, best epoch's parameters kept"},
        "data": {"path": str(path), "digest": data_id, "source": files.describe_source(attrs),
                 "vocab_size": len(words), "n_train": int(len(tr_y)), "n_val": int(len(va_y)), "n_test": int(len(te_y))},
        "training": ctx.summary(), "quick": bool(c.is_quick)})
    files.write_metrics(out, metrics, c, "q2", data=data_id, ctx=ctx)
    print(table + anchor_text + f"q2: results in {out}")
    return metrics


def main(argv=None) -> int:
    return common.run_main("q2", common.base_parser("python -m experiments.q2_language_model", __doc__),
                           Q2Config.from_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(distributed.guarded(main)))
