"""Q3: activity recognition with an RNN, an LSTM and a GRU (manual BPTT, docs/recurrent.md),
beside a non-neural baseline (multinomial logistic regression on per-window statistics).

H = 128 units, a ReLU layer of 128 on h_T, softmax; SGD with momentum 0.9, batch 32, global-norm
clipping at 1.0, 30 epochs with one epoch of warm-up and a cosine decay of the learning rate,
the last iterate kept; every training window randomly rotated and scaled each epoch; inputs
standardized with training statistics. The protocol (docs/training.md, "Q3's protocol"): a
validation run on the training part, scored on whole held-out subjects (20 % of the training
windows), then a refit on every training window for each of ``--seeds`` seeds (default 3),
scored once on the test windows. ``--impl fast`` (the default) trains on
:mod:`mp_jax.models.recurrent_fast`, ``--impl reference`` on :mod:`mp_jax.models.recurrent`:
the same function, the same parameters.

``--seeds K`` refits each model for seeds S … S+K−1 (S = ``--seed``): member j's parameters,
shuffling and augmentation as ``--seed S+j`` draws them, the data side from S. The members
train one after another on a CPU (each checkpointed per epoch), as one vmapped program on an
accelerator (saved when finished); ``--vmap`` / ``--no-vmap`` override. Writes
``<results-dir>/q3/``: ``metrics.json``, ``comparison.md``, per model ``<model>_confusion.png``
and ``<model>_loss.png``, ``baseline_confusion.png`` and ``loss_all.png``.

``--recipe handout`` trains with the course handout's settings instead (:attr:`Q3Config.HANDOUT`:
η 0.1 for every model, constant, momentum 0.85, batch 32, 50 epochs, no clipping, no
augmentation, a random 10 % validation split with the best epoch kept, one run per model, no
refit; docs/recipes.md) and writes ``<results-dir>/q3_handout/`` beside the default results.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, plotting, runner, tables
from mp_jax import augment, cli, distributed, metrics, train
from mp_jax.data import load_activity, splits
from mp_jax.errors import UserError
from mp_jax.models import logistic, recurrent, recurrent_fast

log = logging.getLogger("experiments.q3")
MODELS = ("rnn", "lstm", "gru")


@dataclasses.dataclass(frozen=True)
class Q3Config(common.RunOptions):
    """Q3's settings (the defaults are the report's; :meth:`quick` the tiny ones).

    The peak learning rates and epochs were chosen on the stand-in by validation accuracy
    alone (``python -m experiments.q3_activity --select 0.01,0.03,0.1 --epochs 30``, then
    ``--select 0.03,0.1 --epochs 60``; seed 0, the training part of 2673 windows, validation
    subjects 4 and 7, 703 windows; the other settings as here)::

        model  rate   30 epochs   60 epochs
        RNN    0.01   68.0 %
        RNN    0.03   66.9 %      62.2 %
        RNN    0.1    57.8 %      63.2 %
        LSTM   0.01   72.0 %
        LSTM   0.03   74.7 %      80.1 %
        LSTM   0.1    72.0 %      82.4 %
        GRU    0.01   69.7 %
        GRU    0.03   76.5 %      82.1 %
        GRU    0.1    80.1 %      84.4 %

    Kept: RNN 0.01 for 30 epochs (longer training lowered its validation accuracy), LSTM 0.1
    for 60 epochs, GRU 0.1 for 30. Sixty epochs help both gated cells, but the main job keeps
    Q3 within about 8 minutes on 2 CPU cores, so they go to the cell that gains most from
    them (LSTM +7.7 points, GRU +4.3 points at each one's best rate); ``--epochs 60`` trains
    every model for 60. One validation run per cell is a noisy judge: the same setting
    trained on one device and on two (the same maths, sums in another order) can end points
    apart (LSTM, 0.1, 30 epochs: 82.2 % and 72.0 %); ``--select`` with ``--seeds 2`` or more
    averages over seeds.
    """

    FLAGS = ("epochs", "seeds", "impl", "models", "learning_rates", "augment", "select")
    # The course handout's recipe (``--recipe handout``, docs/recipes.md): its learning rate, momentum,
    # batch, epochs and 10 % random validation split with early stopping; a constant rate, no
    # clipping, no augmentation, one run per model on the training part (no refit over seeds).
    HANDOUT = dict(batch_size=32, momentum=0.85, epochs=50, epochs_per_model=(),
                   learning_rates=(("rnn", 0.1), ("lstm", 0.1), ("gru", 0.1)), schedule="constant", warmup_epochs=0.0,
                   clip_norm=None, keep="best", patience=None, val_fraction=0.1, validation="random", augment=False,
                   seeds=1, refit=False)
    models: tuple = MODELS
    hidden: int = 128
    mlp: int = 128
    batch_size: int = 32
    epochs: int = 30  # every run's epochs, except those of epochs_per_model ...
    epochs_per_model: tuple = (("lstm", 60),)  # ... (``--epochs N`` sets every model's to N)
    momentum: float = 0.9
    clip_norm: Optional[float] = 1.0  # global-norm clipping of the gradient (None: none)
    schedule: str = "warmup_cosine"  # or "constant": the peak rate throughout
    warmup_epochs: float = 1.0  # then a cosine decay to 0 at the last epoch (train.warmup_cosine)
    patience: Optional[int] = None  # the schedule runs to its end: no early stopping ...
    keep: str = "last"  # ... and the last iterate is the model ("best": the epoch of lowest validation loss)
    val_fraction: float = 0.2  # whole subjects when the file has subject ids (two on the stand-in) ...
    validation: str = "subject"  # ... or "random": a random share of the windows
    refit: bool = True  # after validation, refit on every training window per seed (False: the validation run is the model)
    augment: bool = True  # a random rotation and gain of every training window, each epoch
    rotation_degrees: float = 20.0
    gain_range: tuple = (0.9, 1.1)
    # peak learning rates chosen by validation accuracy (the table above; docs/training.md, "Q3's protocol")
    learning_rates: tuple = (("rnn", 0.01), ("lstm", 0.1), ("gru", 0.1))
    seeds: int = 3  # members per model: seeds S … S+K−1
    select: tuple = ()  # peak learning rates to compare on validation (run_selection) instead of the protocol
    impl: str = "fast"  # the recurrences' gradients: "fast" or "reference" (common.IMPLS)
    n_train: Optional[int] = None  # a random subset of the windows (None: all)
    n_test: Optional[int] = None
    baseline_lr: float = 0.1
    baseline_momentum: float = 0.9
    baseline_batch: int = 32
    baseline_epochs: int = 200
    baseline_patience: int = 20
    baseline_l2: float = 1e-4

    @classmethod
    def quick(cls, **changes) -> "Q3Config":
        return cls(**{**dict(is_quick=True, hidden=16, mlp=16, epochs=2, epochs_per_model=(), seeds=1, n_train=320,
                             n_test=120, baseline_epochs=5), **changes})

    def batch_sizes(self) -> dict:
        return {"q3 batch": self.batch_size, "q3 baseline batch": self.baseline_batch}

    def usage_errors(self) -> list:
        if not self.refit and self.seeds > 1 and not self.select:
            return [f"argument --seeds: the {self.recipe} recipe trains one run per model and refits none, so "
                    f"--seeds {self.seeds} would train no more; leave --seeds out (or use --recipe default)"]
        last = self.seed + self.seeds - 1
        if last > cli.SEED_MAX:
            return [f"argument --seeds: the seeds run from --seed {self.seed} to {last}, past {cli.SEED_MAX} (the "
                    f"largest seed); give --seed {cli.SEED_MAX - self.seeds + 1} or lower, or fewer --seeds"]
        return []

    @classmethod
    def from_args(cls, args) -> "Q3Config":
        c = super().from_args(args)
        return dataclasses.replace(c, epochs_per_model=()) if getattr(args, "epochs", None) else c

    def n_epochs(self, cell: str) -> int:
        """The epochs of ``cell``'s runs."""
        return int(dict(self.epochs_per_model).get(cell, self.epochs))

    def lr(self, cell: str) -> float:
        return dict(self.learning_rates)[cell]

    def augmentation(self, mean, std):
        """The training windows' random transform, for windows standardized with ``mean`` and
        ``std`` <float>[D] (None when ``augment`` is off or the windows are not tri-axial)."""
        if not self.augment or len(mean) != 3:
            return None
        return augment.RotationGain(self.rotation_degrees, tuple(self.gain_range), tuple(float(v) for v in mean),
                                    tuple(float(v) for v in std))

    def fit(self, cell: str, n_train: int, augmentation=None) -> tuple:
        """(optimizer, FitConfig) of a recurrent model trained on ``n_train`` windows: SGD
        with momentum after global-norm clipping, the learning rate warmed up for
        ``warmup_epochs`` and decayed on a cosine to 0 at the last epoch."""
        epochs = self.n_epochs(cell)
        schedule = (self.lr(cell) if self.schedule == "constant" else
                    train.warmup_cosine(self.lr(cell), train.steps_per_epoch(n_train, self.batch_size), epochs,
                                        self.warmup_epochs))
        return (train.sgd_momentum(schedule, self.momentum, clip_norm=self.clip_norm),
                train.FitConfig(epochs=epochs, batch_size=self.batch_size, patience=self.patience, keep=self.keep,
                                augment=augmentation))

    def member_key(self, data: str, split, cell: str, seed: int, data_seed: Optional[int] = None, **run) -> dict:
        """The checkpoint key of ``cell``'s run for ``seed`` (:meth:`run_key`; ``data_seed``, the
        seed of the data side, only when it is not ``seed``)."""
        more = {} if data_seed in (None, seed) else {"data_seed": data_seed}
        return self.run_key(data=data, split=split, model=cell, seed=seed, **more, **run)


Config = Q3Config


class Activity(NamedTuple):
    path: Any
    attrs: dict
    data_id: str
    names: tuple  # class names
    sets: splits.ActivitySets  # standardized training, validation and test windows

    xy = property(lambda self: (self.sets.train, self.sets.val, self.sets.test))  # (x, y) of each split


# What the stand-in's class codes stand for (Burns et al. 2018, shoulder physiotherapy), and WISDM's.
CLASS_DESCRIPTIONS = {
    "PEN": "pendulum", "ABD": "abduction", "FEL": "forward elevation",
    "IR": "internal rotation with a resistance band", "ER": "external rotation with a resistance band",
    "TRAP": "lower trapezius row with a resistance band", "ROW": "bent-over row with a 3 lb dumbbell",
}


def class_descriptions(names, attrs: dict) -> dict:
    """``{code: what it stands for}`` for the class names this file uses that have one
    (the course file's and WISDM's names are words already: themselves)."""
    return {n: CLASS_DESCRIPTIONS.get(n, n) for n in names}


def protocol_text(c: Q3Config, d: "Activity") -> dict:
    """The selection protocol in numbers, for ``metrics.json`` and REPORT.md."""
    how = d.sets.how
    schedule = ("a constant learning rate" if c.schedule == "constant" else
                f"{c.warmup_epochs:g} epoch of linear warm-up, then a cosine decay to 0")
    kept = "the last iterate kept" if c.keep == "last" else "the epoch of lowest validation loss kept"
    return {"validation": (f"whole subjects {how['subjects']}" if how["subjects"] else f"a random {c.val_fraction:.0%}")
            + f" of the training windows ({how['n_val']} windows); the training part {len(d.sets.train[1])} windows",
            "selection": ("peak learning rates chosen per model by validation accuracy (Q3Config); the test windows "
                          "choose nothing") if c.recipe == "default" else
                         f"the course handout's recipe (Q3Config.HANDOUT): rates {dict(c.learning_rates)}",
            "training": (f"SGD, momentum {c.momentum}, "
                         + (f"global-norm clipping at {c.clip_norm}" if c.clip_norm is not None else "no clipping")
                         + f", batch {c.batch_size}, " + ", ".join(f"{m.upper()} {c.n_epochs(m)}" for m in c.models)
                         + f" epochs: {schedule}; {kept}"),
            "augmentation": (f"each epoch, every training window rotated by N(0, {c.rotation_degrees:g}°) about a "
                             f"random axis and scaled by U({c.gain_range[0]:g}, {c.gain_range[1]:g})"
                             if c.augmentation(d.sets.mean, d.sets.std) is not None else "none"),
            "refit": (f"after validation, each seed trained on all {len(d.sets.train_all[1])} training windows with "
                      "the same settings, then scored once on the test windows") if c.refit else
                     "none: the validation run (seed S, the training part) is the model, scored once on the test "
                     "windows"}


def load(c: Q3Config) -> Activity:
    path = common.resolve_data("q3", c.data_dir)
    data = load_activity(path)
    if c.validation == "random":  # a random share of the windows, not whole subjects
        data = data._replace(train_subjects=None)
    sets = splits.activity_sets(data, c.val_fraction, np.random.default_rng(c.seed), n_train=c.n_train,
                                n_test=c.n_test, batch_size=c.batch_size if c.is_quick else None)
    return Activity(path, data.attrs, common.file_digest(path), tuple(data.class_names), sets)


def member_key(seed: int, cell: str) -> jax.Array:
    """The key of ``cell``'s run with ``--seed seed``: ``PRNGKey(seed)`` split into one key
    for the baseline and one per model of ``MODELS`` (split again into init and shuffling)."""
    return jax.random.split(jax.random.PRNGKey(seed), 1 + len(MODELS))[1 + MODELS.index(cell)]


def member_init(cell: str, key: jax.Array, n_in: int, c: Q3Config, n_classes: int, dtype=jnp.float32):
    """(initial parameters, shuffling key) of one run from its model key."""
    k_init, k_fit = jax.random.split(key)
    return recurrent.init_params(k_init, cell, n_in, c.hidden, c.mlp, n_classes, dtype), k_fit


def gradients(impl: str) -> tuple:
    """(loss_and_grad for a run alone, loss_and_grad for a vmapped sweep) that ``impl`` names."""
    if impl == "fast":
        return recurrent_fast.loss_and_grad_reusing, recurrent_fast.loss_and_grad
    if impl == "reference":
        return recurrent.loss_and_grad, recurrent.loss_and_grad
    raise ValueError(f"--impl must be one of {common.IMPLS}, found {impl!r}")


def split_key(d: "Activity", stage: str) -> dict:
    """Which windows a run of ``stage`` trains on, for its checkpoint key: the training part
    (validation runs) or every training window (refits), with the validation split."""
    s = d.sets
    n = len(s.train[1]) if stage == "validation" else len(s.train_all[1])
    return {"stage": stage, "n_train": int(n), "validation": s.how}


def train_seeds(ctx: runner.RunContext, cell: str, seeds: list, train_data, val_data, c: Q3Config, n_classes: int, *,
                vmap: bool, data_seed: Optional[int] = None, data_id: Optional[str] = None, split=None,
                augmentation=None, stage: str = "refit", keep_diverged: bool = False) -> list:
    """``cell`` trained once per seed on the same data: [:class:`experiments.runner.Member`] in
    the order of ``seeds``. Member j is the run ``--seed seeds[j]`` trains (:func:`member_key`);
    ``vmap``: see :func:`experiments.runner.fit_members`; ``data_id`` (None: no checkpoints) and
    ``split`` (:func:`split_key`): the data's part of the runs' checkpoint keys;
    ``augmentation``: :meth:`Q3Config.augmentation`; ``stage``: "validation" (the selection
    run on the training part) or "refit" (on every training window), part of the run's name.
    A run that diverges raises :class:`mp_jax.train.NonFiniteError` naming it, unless
    ``keep_diverged`` (:func:`experiments.runner.fit_member`)."""
    data_seed = seeds[0] if data_seed is None else data_seed
    n_in, dtype = train_data[0].shape[-1], train_data[0].dtype
    (opt, fit_config), (alone, vmapped) = c.fit(cell, len(train_data[1]), augmentation), gradients(c.impl)
    base = f"q3_{cell}" if stage == "refit" else f"q3_{cell}_{stage}"
    training = runner.Training(alone, opt, fit_config, metrics_fn=recurrent.metrics, split_over_cpu_cores=True,
                               vmapped_loss_and_grad=vmapped)
    return runner.fit_members(
        ctx, [base if seed == data_seed else f"{base}_seed{seed}" for seed in seeds],
        [None if data_id is None else c.member_key(data_id, split, cell, seed, data_seed, stage=stage)
         for seed in seeds],
        [member_init(cell, member_key(seed, cell), n_in, c, n_classes, dtype) for seed in seeds], training, train_data,
        vmap=vmap, group=f"{base}_seeds{seeds[0]}-{seeds[-1]}_vmap", val_data=val_data, keep_diverged=keep_diverged)


@functools.lru_cache(maxsize=None)
def _eval_fn(metrics_fn):
    """One jitted evaluation per metrics function, so its compiled programs serve every seed."""
    return train.make_eval_fn(metrics_fn, 1024)


def evaluate(metrics_fn, params, data) -> dict:
    """``{"loss", "accuracy"}`` of ``params`` on a split ``data`` = (x, y), as Python floats."""
    return {k: float(v) for k, v in _eval_fn(metrics_fn)(params, data).items()}


def timing(m: runner.Member) -> dict:
    """A run's recorded time: ``seconds`` (compilation included), ``seconds_per_epoch`` (mean)."""
    secs = m.history.get("epoch_seconds", [])
    return {"seconds": float(m.seconds), "seconds_per_epoch": float(np.mean(secs)) if secs else float("nan")}


def run_model(ctx: runner.RunContext, cell: str, d: Activity, c: Q3Config, out) -> dict:
    """``cell`` under the protocol of :class:`Q3Config`: one validation run (seed S, the
    training part, scored on the validation subjects), then a refit on every training
    window for each seed, scored on the test windows. Returns its ``metrics.json`` record:
    the test accuracy and loss over seeds (:func:`mp_jax.metrics.mean_std`), every seed's
    numbers, the validation run's, and seed S's confusion matrices and history."""
    seeds = [c.seed + j for j in range(c.seeds)]
    vmap = common.use_vmap(c.vmap) and len(seeds) > 1
    s, n_classes = d.sets, len(d.names)
    as_jax = lambda xy: (jnp.asarray(xy[0]), jnp.asarray(xy[1]))  # noqa: E731
    sel = train_seeds(ctx, cell, [c.seed], as_jax(s.train), as_jax(s.val), c, n_classes, vmap=False,
                      data_id=d.data_id, split=split_key(d, "validation"),
                      augmentation=c.augmentation(s.mean, s.std), stage="validation",
                      keep_diverged=c.recipe != "default")[0]  # the handout's recipe may diverge: a finding
    val = evaluate(recurrent.metrics, sel.params, as_jax(s.val))
    validation = {"seed": c.seed, "subjects": s.how["subjects"], "n_windows": int(len(s.val[1])),
                  "n_train_windows": int(len(s.train[1])), "val_accuracy": val["accuracy"], "val_loss": val["loss"],
                  "best_epoch": int(sel.best_epoch), "epochs_run": int(sel.epochs_run), "history": sel.history,
                  **timing(sel)}
    predict = jax.jit(recurrent.predict)
    if c.refit:
        members = train_seeds(ctx, cell, seeds, as_jax(s.train_all), None, c, n_classes, vmap=vmap, data_seed=c.seed,
                              data_id=d.data_id, split=split_key(d, "refit"),
                              augmentation=c.augmentation(s.mean_all, s.std_all), stage="refit")
        fit_xy, test_xy = s.train_all, s.test_all
    else:  # the validation run is the model (the handout's recipe: one seed, no refit)
        seeds, vmap, members, fit_xy, test_xy = [c.seed], False, [sel], s.train, s.test
    rows = [member_row(seed, m, recurrent.metrics, predict, as_jax(fit_xy), as_jax(test_xy), n_classes)
            for seed, m in zip(seeds, members)]
    res = seed_summary(rows)
    res.update(learning_rate=c.lr(cell), epochs=c.n_epochs(cell), validation=validation, val_accuracy=val["accuracy"],
               val_loss=val["loss"], seconds=float(sum(r["seconds"] for r in rows)
                                                   + (validation["seconds"] if c.refit else 0.0)),
               seed_sweep={"mode": "vmap" if vmap else "sequential", "members": len(seeds),
                           "loaded_members": sum(r["loaded"] for r in rows)},
               **({"diverged": sel.diverged} if sel.diverged else {}))
    first = rows[0]
    init_params, _ = member_init(cell, member_key(seeds[0], cell), fit_xy[0].shape[-1], c, n_classes)
    res["gradient_flow"] = {"init": gradient_flow(init_params, fit_xy),
                            "trained": gradient_flow(members[0].params, fit_xy),
                            "n_windows": int(min(256, len(fit_xy[1]))), "seed": seeds[0]}
    res.update(confusion_test=first["confusion_test"], confusion_train=first["confusion_train"],
               test_recall_per_class=np.diag(metrics.row_normalized(np.asarray(first["confusion_test"]))).tolist(),
               history=first["history"])
    what = f"H={c.hidden}, peak lr={c.lr(cell)}, seed {seeds[0]}"
    plotting.q3_model_figures(cell, {"train": np.asarray(first["confusion_train"]),
                                     "test": np.asarray(first["confusion_test"])},
                              validation["history"], first["history"], d.names, what, out)
    log.info("%s: test accuracy %s (mean %.3f ± %.3f), validation %.3f, %.2f s/epoch, %s", cell,
             ", ".join(f"{r['test_accuracy']:.3f}" for r in rows), res["test_accuracy"], res["test_accuracy_std"],
             val["accuracy"], first["seconds_per_epoch"],
             plotting.time_label(res["seconds"], all(r["loaded"] for r in rows)))
    return res


def gradient_flow(params, data, n_windows: int = 256) -> list:
    """g_t = mean over windows n of ‖∂ℓ_n/∂h_t‖ for t = 1 … T: how much of the loss's gradient
    reaches step t through backpropagation through time (the manual BPTT,
    :func:`mp_jax.models.recurrent.hidden_state_grads`, docs/recurrent.md BPTT3). ``data``:
    (x, y); the first ``n_windows`` windows are used. Returns T floats."""
    x, y = data
    x, y = jnp.asarray(x[:n_windows]), jnp.asarray(y[:n_windows])
    dh = jax.jit(recurrent.hidden_state_grads)(params, (x, y))  # [T, N, H] of the batch-mean loss
    return (jnp.linalg.norm(dh, axis=-1).mean(axis=1) * x.shape[0]).tolist()  # × N: per-window losses


def member_row(seed: int, m: runner.Member, metrics_fn, predict, train_xy, test_xy, n_classes: int) -> dict:
    """One refit member's numbers for ``metrics.json``: test and training accuracy and loss,
    both confusion matrices, epochs, time, history. ``predict``: the model's jitted predict."""
    te, tr = evaluate(metrics_fn, m.params, test_xy), evaluate(metrics_fn, m.params, train_xy)
    cm = {split: metrics.confusion(np.asarray(xy[1]), metrics.chunked(predict, m.params, np.asarray(xy[0]), 1024),
                                   n_classes).tolist() for split, xy in (("train", train_xy), ("test", test_xy))}
    return {"seed": seed, "test_accuracy": te["accuracy"], "test_loss": te["loss"], "train_accuracy": tr["accuracy"],
            "train_loss": tr["loss"], "epochs_run": int(m.epochs_run), "loaded": bool(m.loaded),
            "confusion_test": cm["test"], "confusion_train": cm["train"], "history": m.history, **timing(m)}


def seed_summary(rows: list) -> dict:
    """A model's test numbers over seeds from its per-seed ``rows`` (dicts with ``seed``,
    ``test_accuracy``, ``test_loss``, ``train_accuracy``...): ``test_accuracy`` and
    ``test_loss`` as the mean over seeds, with ``_std`` (sample standard deviation, 0 for
    one seed) and ``_per_seed``; ``train_accuracy`` likewise; ``members`` the rows."""
    out = {"seeds": [r["seed"] for r in rows], "members": rows}
    for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "seconds_per_epoch"):
        ms = metrics.mean_std([r[key] for r in rows])
        out.update({key: ms["mean"], f"{key}_std": ms["std"], f"{key}_per_seed": ms["per_seed"]})
    out["epochs_run"] = int(max(r["epochs_run"] for r in rows))
    return out


def run_baseline(ctx: runner.RunContext, d: Activity, c: Q3Config, key, out) -> dict:
    """The logistic regression on window statistics under the same protocol: early stopping
    on the validation subjects chooses its number of epochs, then it is refit on every
    training window for that many epochs, once per seed, and scored on the test windows."""
    s = d.sets
    fit_config = train.FitConfig(epochs=c.baseline_epochs, batch_size=c.baseline_batch, patience=c.baseline_patience)
    hp = logistic.LogisticHP(l2=c.baseline_l2)

    def featurize(train_xy, *others):
        feats = [logistic.window_features(jnp.asarray(x)) for x, _ in (train_xy, *others)]
        st = logistic.fit_standardizer(feats[0])
        return [(logistic.standardize(f, st), jnp.asarray(y)) for f, (_, y) in zip(feats, (train_xy, *others))]

    def fit(name, stage, seed, data, epochs, seed_key, val_data=None, patience=c.baseline_patience):
        training = runner.Training(functools.partial(logistic.loss_and_grad, hp=hp),
                                   train.sgd_momentum(c.baseline_lr, c.baseline_momentum),
                                   dataclasses.replace(fit_config, epochs=epochs, patience=patience,
                                                       keep="best" if val_data is not None else "last"),
                                   metrics_fn=logistic.metrics)
        run_key = c.run_key(data=d.data_id, split=split_key(d, stage), model="logistic",
                            features=list(logistic.FEATURES), seed=seed, stage=stage, epochs=epochs)
        return runner.fit_member(ctx, name, training, logistic.init_params(seed_key, data[0].shape[1], len(d.names)),
                                 data, key=seed_key, run_key=run_key, val_data=val_data)

    tr, va = featurize(s.train, s.val)
    sel = fit("q3_baseline_logistic_validation", "validation", c.seed, tr, c.baseline_epochs, key, val_data=va)
    val = evaluate(logistic.metrics, sel.params, va)
    epochs = max(1, int(sel.best_epoch))
    all_tr, te = featurize(s.train_all, s.test_all)
    predict = jax.jit(logistic.predict)
    rows = []
    for j in range(c.seeds):
        k = key if j == 0 else jax.random.fold_in(key, j)
        m = fit("q3_baseline_logistic" + (f"_seed{c.seed + j}" if j else ""), "refit", c.seed + j, all_tr, epochs, k,
                patience=None)
        rows.append(member_row(c.seed + j, m, logistic.metrics, predict, all_tr, te, len(d.names)))
    res = seed_summary(rows)
    res.update(model="multinomial logistic regression on standardized per-axis mean, std, min, max, energy",
               learning_rate=c.baseline_lr, epochs=epochs, val_accuracy=val["accuracy"], val_loss=val["loss"],
               validation={"seed": c.seed, "best_epoch": int(sel.best_epoch), "epochs_run": int(sel.epochs_run),
                           "val_accuracy": val["accuracy"], "val_loss": val["loss"], **timing(sel)},
               confusion_test=rows[0]["confusion_test"], confusion_train=rows[0]["confusion_train"],
               seconds=float(sum(r["seconds"] for r in rows) + timing(sel)["seconds"]))
    plotting.confusions({"training": np.asarray(rows[0]["confusion_train"]),
                         "test": np.asarray(rows[0]["confusion_test"])}, d.names, out / "baseline_confusion.png",
                        "Q3 baseline (logistic regression on window statistics): confusion matrices")
    log.info("baseline: test accuracy %s, %d epochs chosen on validation",
             ", ".join(f"{r['test_accuracy']:.3f}" for r in rows), epochs)
    return res


def run_selection(ctx: runner.RunContext, c: Q3Config, d: Activity, out) -> dict:
    """The selection step alone: for each model of ``c.models`` and each peak learning rate
    of ``c.select``, the validation runs (seeds S … S+K−1, K = ``c.seeds``, on the training
    part, the model's epochs) scored on the validation subjects. The test windows are not
    touched. Writes ``selection.md`` and ``selection.json``; returns ``{model: [{"learning_rate",
    "epochs", "val_accuracy" (mean over seeds), "val_accuracy_per_seed", "val_loss", "diverged"}]}``,
    the best mean validation accuracy per model marked ``"best": True``.

    A rate whose run diverges for some seed (a non-finite loss or parameter) is a finding
    here: its row says so (``diverged``: when, per seed; no accuracy) and it is never the
    best; the others are still trained and written. Then the step ends with an error naming
    the runs that diverged (exit status 1)."""
    s = d.sets
    as_jax = lambda xy: (jnp.asarray(xy[0]), jnp.asarray(xy[1]))  # noqa: E731
    seeds = [c.seed + j for j in range(c.seeds)]
    table, failed = {}, []
    for cell in c.models:
        rows = []
        for lr in c.select:
            cc = dataclasses.replace(c, learning_rates=tuple({**dict(c.learning_rates), cell: float(lr)}.items()))
            ms = train_seeds(ctx, cell, seeds, as_jax(s.train), as_jax(s.val), cc, len(d.names), vmap=False,
                             data_seed=c.seed, data_id=d.data_id, split=split_key(d, "validation"),
                             augmentation=c.augmentation(s.mean, s.std),
                             stage="validation", keep_diverged=True)
            row = {"learning_rate": float(lr), "epochs": c.n_epochs(cell), "val_accuracy": None,
                   "val_accuracy_per_seed": None, "val_loss": None, "diverged": [m.diverged for m in ms], "best": False}
            bad = [f"seed {seed}: {m.diverged}" for seed, m in zip(seeds, ms) if m.diverged]
            if bad:
                failed.append(f"{cell.upper()} at rate {float(lr):g} ({', '.join(bad)})")
            else:
                vs = [evaluate(recurrent.metrics, m.params, as_jax(s.val)) for m in ms]
                acc, loss = metrics.mean_std([v["accuracy"] for v in vs]), metrics.mean_std([v["loss"] for v in vs])
                row.update(val_accuracy=acc["mean"], val_accuracy_per_seed=acc["per_seed"], val_loss=loss["mean"])
            rows.append(row)
        trained = [r for r in rows if r["val_accuracy"] is not None]
        if trained:
            max(trained, key=lambda r: r["val_accuracy"])["best"] = True
        table[cell] = rows
    how = s.how
    lines = [f"Validation runs (seeds {', '.join(map(str, seeds))}; training part {len(s.train[1])} windows; validation "
             + (f"subjects {how['subjects']}" if how["subjects"] else "windows") + f", {how['n_val']} windows):", "",
             "| model | peak learning rate | epochs | val. acc. (mean) | per seed | val. loss (mean) |",
             "|---|---|---|---|---|---|"]
    for cell, rows in table.items():
        for r in rows:
            head = f"| {cell.upper()} | {r['learning_rate']:g} | {r['epochs']} | "
            if r["val_accuracy"] is None:
                lines.append(head + "diverged | " + ", ".join(f"seed {sd}: {v}" for sd, v in zip(seeds, r["diverged"])
                                                             if v) + " | – |")
            else:
                lines.append(head + f"{r['val_accuracy']:.1%}{' (best)' if r['best'] else ''} | "
                             + ", ".join(f"{100 * v:.1f}" for v in r["val_accuracy_per_seed"])
                             + f" % | {r['val_loss']:.3f} |")
    text = "\n".join(lines) + "\n"
    common.write_text(out / "selection.md", text)
    common.write_json(out / "selection.json", {"validation": how, "seeds": seeds, "models": table})
    if distributed.is_writer():
        print(text + f"q3: wrote {out}/selection.md")
    if failed:
        raise UserError(f"training diverged: q3 --select: {'; '.join(failed)}; {out}/selection.md marks these rates "
                        f"as diverged and chooses among the others", hint="Leave them out, or lower them.")
    return table


def run(config: Q3Config, ctx: Optional[runner.RunContext] = None) -> dict:
    """Q3 end to end under ``ctx`` (default: no checkpoints, the default devices)."""
    c, out = config, common.question_dir(config.results_dir, config.results_name("q3"))
    ctx = ctx or runner.RunContext(progress=c.progress)
    d = load(c)
    common.announce_data("q3", d.path, d.attrs)
    if c.select:
        return run_selection(ctx, c, d, out)
    s, how = d.sets, d.sets.how
    log.info("q3: %d training windows (%d in the training part, %d of %s-wise validation%s) / %d test, classes %s",
             len(s.train_all[1]), len(s.train[1]), len(s.val[1]), how["kind"],
             f", subjects {how['subjects']}" if how["subjects"] else "", len(s.test[1]), list(d.names))
    results = {cell: run_model(ctx, cell, d, c, out) for cell in MODELS if cell in c.models}
    k_base = jax.random.split(jax.random.PRNGKey(c.seed), 1 + len(MODELS))[0]  # the models': member_key
    results["baseline"] = run_baseline(ctx, d, c, k_base, out)
    plotting.all_losses({m.upper(): r["validation"]["history"] for m, r in results.items() if m != "baseline"},
                        out / "loss_all.png", f"Q3: training (dashed) and validation loss per model (validation "
                        f"runs, seed {c.seed})")
    flows = {m: r["gradient_flow"] for m, r in results.items() if "gradient_flow" in r}
    if flows:
        plotting.gradient_flow(flows, out / "gradient_flow.png")
    chance = 1.0 / len(d.names)
    table = tables.q3_comparison(results, chance)
    common.write_text(out / "comparison.md", table)
    y_te = s.test[1]
    metrics_ = {
        "question": "q3",
        "data": {"path": str(d.path), "digest": d.data_id, "source": common.describe_source(d.attrs),
                 "recipe": d.attrs.get("recipe"), "class_names": list(d.names),
                 "class_descriptions": class_descriptions(d.names, d.attrs),
                 "n_train": int(len(s.train_all[1])), "n_train_part": int(len(s.train[1])),
                 "n_val": int(len(s.val[1])), "n_test": int(len(y_te)), "validation": how,
                 "channel_mean": s.mean_all.tolist(), "channel_std": s.std_all.tolist()},
        "settings": {**dataclasses.asdict(c), "learning_rates": dict(c.learning_rates), "vmap": common.use_vmap(c.vmap),
                     "devices": [str(x) for x in jax.devices()]},
        "protocol": protocol_text(c, d),
        "chance_accuracy": chance,
        "majority_test_accuracy": float(np.bincount(y_te, minlength=len(d.names)).max() / len(y_te)),
        "training": ctx.summary(),
        **results,
    }
    common.write_json(out / "metrics.json", metrics_)
    if distributed.is_writer():
        print(table + f"q3: wrote {out}/metrics.json and figures")
    return metrics_


def parse_rates(text: str) -> tuple:
    """``"0.01,0.03"`` -> ``(0.01, 0.03)``, each a finite number > 0 (argparse ``type=``)."""
    try:
        rates = tuple(float(v) for v in text.split(","))
    except ValueError:
        rates = ()
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise argparse.ArgumentTypeError(f"expected comma-separated learning rates, each a finite number > 0, found "
                                         f"{text!r} (--select)")
    return rates


parse_models = functools.partial(common.parse_names, choices=MODELS, flag="--models")
parse_lrs = functools.partial(common.parse_assignments, choices=MODELS, flag="--lr", defaults=Q3Config.learning_rates,
                              number=cli.positive_number, what="RATE", allowed="a finite number > 0")


def main(argv=None) -> int:
    p = common.base_parser("python -m experiments.q3_activity", __doc__.split("\n\n")[0])
    p.add_argument("--models", type=parse_models, help="comma-separated subset of rnn,lstm,gru (default all)")
    p.add_argument("--lr", dest="learning_rates", type=parse_lrs, metavar="MODEL=RATE,...", help="learning rates, e.g. "
                   f"'rnn=0.01,gru=0.1' or 'all=0.1' (defaults {dict(Q3Config.learning_rates)})")
    p.add_argument("--epochs", type=cli.positive_int, help="epochs of every run (default 30; --quick 2)")
    p.add_argument("--seeds", type=cli.positive_int, help="refit each model K times, seeds S..S+K-1 "
                   "(S = --seed; initial parameters, shuffling and augmentation; the same data split), and report "
                   "the test accuracy's and loss's mean and std over seeds (default 3; --quick 1)")
    p.add_argument("--select", type=parse_rates, metavar="RATE,...", help="the selection step alone: one "
                   "validation run per model and peak learning rate (e.g. 0.01,0.03,0.1), written to selection.md; "
                   "no refit, no test windows")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="rotate and scale every training window at random each epoch (default on)")
    return common.run_main("q3", p, Q3Config.from_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(distributed.guarded(main)))
