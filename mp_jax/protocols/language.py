"""Q2's tuned network: its training over seeds and the search that chose its settings.

The tuned network is the assignment's (three words → a shared embedding of width D → one
sigmoid layer of P units → a softmax over the vocabulary), trained with dropout on its hidden
layer (:mod:`mp_jax.models.language_model_dropout`, docs/language_model.md LM11-LM14), Adam
(Kingma and Ba 2015) or SGD with momentum, the rate warmed up then decayed on a cosine to 0
(docs/training.md, LR1), optionally with decoupled weight decay on W1 and W2
(``optax.adamw``; for SGD ``optax.add_decayed_weights``), the epoch of lowest validation
cross-entropy kept.

* :func:`tuned_fit` — the optimizer and the engine's settings of one run;
* :func:`train_tuned` — one seed's run through the checkpointed door
  (:func:`mp_jax.protocols.runs.fit_run`); :func:`train_tuned_seeds` — seeds S … S+K−1;
* :func:`selection_grid`, :func:`select_tuned` — the search: every point of a grid over the
  tuned settings (:data:`SELECT_KEYS`) trained on the training split and scored on the
  validation split; the test split is not touched.

``c`` is Q2's settings, :class:`experiments.q2_language_model.Q2Config` (its ``tuned_*``
fields, ``seed``, ``seeds``, ``select``, ``init_std``, ``tuned_run_key``).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from typing import Optional

import jax
import optax

from mp_jax.engine import metrics as metrics_lib, train
from mp_jax.models import language_model as lm
from mp_jax.models import language_model_dropout as lm_dropout
from mp_jax.models import language_model_fast as lm_fast
from mp_jax.protocols import runs

log = logging.getLogger("mp_jax.protocols.language")

#: ``--select KEY=V1,V2`` keys: the field of the configuration each one sets, and its kind
SELECT_KEYS = {"D": ("tuned_embed", int), "P": ("tuned_hidden", int), "dropout": ("tuned_dropout", float),
               "lr": ("tuned_lr", float), "epochs": ("tuned_epochs", int), "batch": ("tuned_batch", int),
               "weight_decay": ("tuned_weight_decay", float), "warmup": ("tuned_warmup_epochs", float),
               "optimizer": ("tuned_optimizer", str), "schedule": ("tuned_schedule", str)}
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("warmup_cosine", "constant")
TUNED_STREAM = 1000  # the tuned runs' PRNG stream: PRNGKey(seed) folded with this (the course's use 0, 1, 2)
DECAYED = lm.LMParams(emb=False, w_hid=True, b_hid=False, w_out=True, b_out=False)  # the leaves weight decay shrinks


def tuned_setting(c) -> dict:
    """The tuned network's settings by :data:`SELECT_KEYS` name."""
    return {k: getattr(c, field) for k, (field, _) in SELECT_KEYS.items()}


def n_params(vocab: int, d: int, p: int) -> int:
    """Parameters of the network: V·D + 3D·P + P + P·V + V."""
    return vocab * d + 3 * d * p + p + p * vocab + vocab


def tuned_fit(c, n_train: int) -> tuple:
    """(optimizer, :class:`mp_jax.engine.train.FitConfig`) of a tuned run on ``n_train`` examples:
    the peak rate ``c.tuned_lr`` reached after ``c.tuned_warmup_epochs`` and decayed on a cosine to
    0 at the last epoch (``c.tuned_schedule`` "warmup_cosine"; "constant": ``c.tuned_lr`` throughout); Adam (``c.tuned_optimizer`` "adam") or SGD with ``c.momentum``; decoupled
    weight decay ``c.tuned_weight_decay`` on W1 and W2; fresh dropout seeds every epoch; no early
    stop (the schedule runs to its end) and the epoch of lowest validation loss kept."""
    if c.tuned_schedule not in SCHEDULES:
        raise ValueError(f"tuned_schedule must be one of {SCHEDULES}, found {c.tuned_schedule!r}")
    schedule = c.tuned_lr if c.tuned_schedule == "constant" else train.warmup_cosine(
        c.tuned_lr, train.steps_per_epoch(n_train, c.tuned_batch), c.tuned_epochs, c.tuned_warmup_epochs)
    wd = c.tuned_weight_decay
    if c.tuned_optimizer == "adam":
        opt = optax.adamw(schedule, weight_decay=wd, mask=DECAYED) if wd else optax.adam(schedule)
    elif c.tuned_optimizer == "sgd":
        opt = train.sgd_momentum(schedule, c.momentum)
        opt = optax.chain(optax.add_decayed_weights(wd, DECAYED), opt) if wd else opt
    else:
        raise ValueError(f"tuned_optimizer must be one of {OPTIMIZERS}, found {c.tuned_optimizer!r}")
    augment = lm_dropout.FreshSeeds() if c.tuned_dropout > 0 else None
    return opt, train.FitConfig(epochs=c.tuned_epochs, batch_size=c.tuned_batch, patience=None, keep="best",
                                augment=augment)


def tuned_loss_and_grad(c):
    """The manual gradient a tuned run trains on: with dropout ``c.tuned_dropout``
    (:func:`mp_jax.models.language_model_dropout.loss_and_grad`, batches (ids, y, seeds)), or at
    0 the plain network's fast path (batches (ids, y))."""
    if c.tuned_dropout > 0:
        return functools.partial(lm_dropout.loss_and_grad, rate=float(c.tuned_dropout))
    return lm_fast.loss_and_grad


def seed_keys(seed: int) -> tuple:
    """(init key, shuffling key) of the tuned run with seed ``seed``."""
    return tuple(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), TUNED_STREAM)))


def run_name(c, seed: int) -> str:
    return f"lm_tuned_D{c.tuned_embed}_P{c.tuned_hidden}_seed{seed}"


def train_tuned(ctx: runs.RunContext, c, seed: int, vocab: int, data_id: str, train_data, val_data,
                split: dict) -> train.FitResult:
    """One tuned run with seed ``seed`` (its initial parameters, shuffling and dropout masks) on
    ``train_data`` (ids, y), the epoch kept by ``val_data``; checkpointed under
    ``c.tuned_run_key`` (every setting, the data's digest ``data_id`` and ``split``)."""
    k_init, k_fit = seed_keys(seed)
    opt, fit_config = tuned_fit(c, len(train_data[1]))
    data = lm_dropout.with_seeds(*train_data) if c.tuned_dropout > 0 else train_data
    training = runs.Training(tuned_loss_and_grad(c), opt, fit_config, metrics_fn=lm.metrics, per_example_mean=True)
    params = lm.init_params(k_init, vocab, c.tuned_embed, c.tuned_hidden, std=c.init_std)
    return runs.fit_run(ctx, run_name(c, seed), training, params, data, key=k_fit, val_data=val_data,
                        run_key=c.tuned_run_key(data=data_id, split=split, seed=seed, vocab=vocab))


def train_tuned_seeds(ctx: runs.RunContext, c, vocab: int, data_id: str, train_data, val_data, split: dict,
                      seeds: Optional[list] = None) -> list:
    """:func:`train_tuned` for each seed of ``seeds`` (default S … S+K−1, K = ``c.seeds``), one
    after another: ``[(seed, FitResult)]``."""
    seeds = [c.seed + j for j in range(c.seeds)] if seeds is None else seeds
    return [(s, train_tuned(ctx, c, s, vocab, data_id, train_data, val_data, split)) for s in seeds]


def member_record(seed: int, res: train.FitResult, evaluate, splits: dict) -> dict:
    """A tuned run's numbers: cross-entropy and accuracies of its kept parameters on each split of
    ``splits`` ({name: (ids, y)}), its epochs, time and history."""
    out = {"seed": seed, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "seconds": res.seconds,
           "loaded": res.loaded, "history": res.history}
    for name, data in splits.items():
        m = {k: float(v) for k, v in evaluate(res.params, data).items()}
        out.update({f"{name}_cross_entropy": m["loss"], f"{name}_top1_accuracy": m["top1"],
                    f"{name}_top10_accuracy": m["top10"]})
    return out


def selection_grid(c) -> list:
    """Every point of the grid ``c.select`` ((key, (values...)) pairs, :data:`SELECT_KEYS`) as
    ``{key: value}``, the last key varying fastest; the settings not named are ``c``'s."""
    axes = [(k, tuple(v)) for k, v in c.select]
    return [dict(zip([k for k, _ in axes], point)) for point in itertools.product(*[v for _, v in axes])]


def at(c, point: dict):
    """``c`` with the tuned settings of ``point`` ({:data:`SELECT_KEYS` name: value})."""
    return dataclasses.replace(c, **{SELECT_KEYS[k][0]: v for k, v in point.items()})


def select_tuned(ctx: runs.RunContext, c, vocab: int, data_id: str, train_data, val_data, split: dict) -> list:
    """The search alone: every point of :func:`selection_grid` trained for seeds S … S+K−1 on
    ``train_data`` and scored on ``val_data`` (its kept epoch's cross-entropy); the test split is
    not touched. Returns one row per point, in grid order: ``setting`` (every tuned setting),
    ``point`` (the ones the grid sets), ``val_cross_entropy`` (mean over seeds),
    ``val_cross_entropy_per_seed``, ``best_epoch`` per seed, ``seconds``, ``diverged`` (per seed,
    the reason or None) and ``best`` (True for the lowest mean; a tie goes to the first)."""
    evaluate = train.make_eval_fn(lm.metrics, 4096)
    seeds = [c.seed + j for j in range(c.seeds)]
    rows = []
    for point in selection_grid(c):
        cc = at(c, point)
        row = {"point": point, "setting": tuned_setting(cc), "n_params": n_params(vocab, cc.tuned_embed, cc.tuned_hidden),
               "val_cross_entropy": None, "val_cross_entropy_per_seed": [], "best_epoch": [], "seconds": 0.0,
               "diverged": [None] * len(seeds), "best": False}
        for j, s in enumerate(seeds):
            try:
                res = train_tuned(ctx, cc, s, vocab, data_id, train_data, val_data, split)
            except train.NonFiniteError as e:
                row["diverged"][j] = f"non-finite at epoch {e.epoch}"
                continue
            row["val_cross_entropy_per_seed"].append(float(evaluate(res.params, val_data)["loss"]))
            row["best_epoch"].append(int(res.best_epoch))
            row["seconds"] += float(res.seconds)
        if not any(row["diverged"]):
            row["val_cross_entropy"] = metrics_lib.mean_std(row["val_cross_entropy_per_seed"])["mean"]
        log.info("q2 --select %s: validation cross-entropy %s", point,
                 "diverged" if row["val_cross_entropy"] is None else f"{row['val_cross_entropy']:.4f}")
        rows.append(row)
    done = [r for r in rows if r["val_cross_entropy"] is not None]
    if done:
        min(done, key=lambda r: r["val_cross_entropy"])["best"] = True
    return rows
