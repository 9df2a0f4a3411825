"""Q3's protocol: activity recognition by an RNN, an LSTM and a GRU (manual BPTT,
docs/recurrent.md) beside a multinomial logistic regression on per-window statistics, each
under the same protocol (docs/training.md, "Q3's protocol"):

1. the split: the training windows into a training part and a validation part of whole
   subjects (or a random share), standardized with training statistics (:func:`split_data`);
2. the selection: one validation run per model (seed S, the training part), scored on the
   validation subjects; :func:`select_rates` compares peak learning rates this way;
3. the refit: each model trained on every training window once per seed S … S+K−1 (member
   j as ``--seed S+j`` draws it: :func:`member_key`), one after another or as one vmapped
   program, and scored once on the test windows (:func:`run_model`);
4. the baseline under the same protocol, its epochs chosen on validation (:func:`run_baseline`).

Beside the protocol: the gradient reaching each step, measured and predicted from the forward
pass (:func:`gradient_flow_record`; docs/recurrent.md, "Predicting the slope of the gradient
flow"), and the LSTM refit with another forget-gate bias (:func:`run_forget_bias_ablation`).

Every run trains through :mod:`mp_jax.protocols.runs` with the :class:`~mp_jax.protocols.runs.RunContext`
it is handed (checkpoints, mesh, progress). ``c`` is Q3's settings,
:class:`experiments.q3_activity.Q3Config` (its fields, and ``lr``, ``n_epochs``, ``fit``,
``augmentation`` and ``cell_run_key``). The functions return the records of ``metrics.json``;
the entry point draws the figures and writes the files.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from mp_jax.engine import metrics, train
from mp_jax.data import load_activity, splits
from mp_jax.models import logistic, recurrent, recurrent_fast
from mp_jax.protocols import runs

log = logging.getLogger("mp_jax.protocols.activity")
MODELS = ("rnn", "lstm", "gru")
IMPLS = ("fast", "reference")  # the recurrences' gradients: mp_jax.models.recurrent_fast or .recurrent


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


def split_data(path, data_id: str, c) -> Activity:
    """The activity file at ``path`` (content digest ``data_id``) split as ``c`` says: the
    validation part whole subjects (``c.validation`` "subject", when the file has subject
    ids) or a random share of the windows, ``c.val_fraction`` of the training windows, drawn
    with ``c.seed``; the first ``c.n_train`` / ``c.n_test`` windows of a random order when
    given; every split standardized with its training statistics."""
    data = load_activity(path)
    if c.validation == "random":  # a random share of the windows, not whole subjects
        data = data._replace(train_subjects=None)
    sets = splits.activity_sets(data, c.val_fraction, np.random.default_rng(c.seed), n_train=c.n_train,
                                n_test=c.n_test, batch_size=c.batch_size if c.is_quick else None)
    return Activity(path, data.attrs, data_id, tuple(data.class_names), sets)


def protocol_text(c, d: Activity) -> dict:
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


def member_key(seed: int, cell: str) -> jax.Array:
    """The key of ``cell``'s run with ``--seed seed``: ``PRNGKey(seed)`` split into one key
    for the baseline and one per model of ``MODELS`` (split again into init and shuffling)."""
    return jax.random.split(jax.random.PRNGKey(seed), 1 + len(MODELS))[1 + MODELS.index(cell)]


def member_init(cell: str, key: jax.Array, n_in: int, c, n_classes: int, dtype=jnp.float32):
    """(initial parameters, shuffling key) of one run from its model key; the LSTM's
    forget-gate bias is ``c.forget_bias``."""
    k_init, k_fit = jax.random.split(key)
    forget_bias = float(c.forget_bias) if cell == "lstm" else 0.0
    return recurrent.init_params(k_init, cell, n_in, c.hidden, c.mlp, n_classes, dtype, forget_bias=forget_bias), k_fit


def gradients(impl: str) -> tuple:
    """(loss_and_grad for a run alone, loss_and_grad for a vmapped sweep) that ``impl`` names."""
    if impl == "fast":
        return recurrent_fast.loss_and_grad_reusing, recurrent_fast.loss_and_grad
    if impl == "reference":
        return recurrent.loss_and_grad, recurrent.loss_and_grad
    raise ValueError(f"--impl must be one of {IMPLS}, found {impl!r}")


def split_key(d: Activity, stage: str) -> dict:
    """Which windows a run of ``stage`` trains on, for its checkpoint key: the training part
    (validation runs) or every training window (refits), with the validation split."""
    s = d.sets
    n = len(s.train[1]) if stage == "validation" else len(s.train_all[1])
    return {"stage": stage, "n_train": int(n), "validation": s.how}


def train_seeds(ctx: runs.RunContext, cell: str, seeds: list, train_data, val_data, c, n_classes: int, *,
                vmap: bool, data_seed: Optional[int] = None, data_id: Optional[str] = None, split=None,
                augmentation=None, stage: str = "refit", keep_diverged: bool = False,
                name: Optional[str] = None) -> list:
    """``cell`` trained once per seed on the same data: [:class:`mp_jax.protocols.runs.Member`] in
    the order of ``seeds``. Member j is the run ``--seed seeds[j]`` trains (:func:`member_key`);
    ``vmap``: see :func:`mp_jax.protocols.runs.fit_members`; ``data_id`` (None: no checkpoints) and
    ``split`` (:func:`split_key`): the data's part of the runs' checkpoint keys;
    ``augmentation``: ``c.augmentation(...)``; ``stage``: "validation" (the selection
    run on the training part) or "refit" (on every training window), part of the run's name;
    ``name``: the runs' name instead of ``q3_<cell>`` (an ablation's, apart from the default's).
    A run that diverges raises :class:`mp_jax.engine.train.NonFiniteError` naming it, unless
    ``keep_diverged`` (:func:`mp_jax.protocols.runs.fit_member`)."""
    data_seed = seeds[0] if data_seed is None else data_seed
    n_in, dtype = train_data[0].shape[-1], train_data[0].dtype
    (opt, fit_config), (alone, vmapped) = c.fit(cell, len(train_data[1]), augmentation), gradients(c.impl)
    name = name or f"q3_{cell}"
    base = name if stage == "refit" else f"{name}_{stage}"
    training = runs.Training(alone, opt, fit_config, metrics_fn=recurrent.metrics, split_over_cpu_cores=True,
                               vmapped_loss_and_grad=vmapped)
    return runs.fit_members(
        ctx, [base if seed == data_seed else f"{base}_seed{seed}" for seed in seeds],
        [None if data_id is None else c.cell_run_key(data_id, split, cell, seed, data_seed, stage=stage)
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


def timing(m: runs.Member) -> dict:
    """A run's recorded time: ``seconds`` (compilation included), ``seconds_per_epoch`` (mean)."""
    secs = m.history.get("epoch_seconds", [])
    return {"seconds": float(m.seconds), "seconds_per_epoch": float(np.mean(secs)) if secs else float("nan")}


def run_model(ctx: runs.RunContext, cell: str, d: Activity, c, *, vmap: bool) -> dict:
    """``cell`` under the protocol: one validation run (seed S, the
    training part, scored on the validation subjects), then a refit on every training
    window for each seed, scored on the test windows. Returns its ``metrics.json`` record:
    the test accuracy and loss over seeds (:func:`mp_jax.engine.metrics.mean_std`), every seed's
    numbers, the validation run's, and seed S's confusion matrices and history. ``vmap``:
    the refit's members as one vmapped program (when there are several)."""
    seeds = [c.seed + j for j in range(c.seeds)]
    vmap = vmap and len(seeds) > 1
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
    res["n_params"] = int(sum(a.size for a in jax.tree.leaves(init_params)))
    res["gradient_flow"] = gradient_flow_record(init_params, members[0].params, fit_xy, seeds[0])
    res.update(confusion_test=first["confusion_test"], confusion_train=first["confusion_train"],
               test_recall_per_class=np.diag(metrics.row_normalized(np.asarray(first["confusion_test"]))).tolist(),
               history=first["history"])
    log.info("%s: test accuracy %s (mean %.3f ± %.3f), validation %.3f, %.2f s/epoch, %s", cell,
             ", ".join(f"{r['test_accuracy']:.3f}" for r in rows), res["test_accuracy"], res["test_accuracy_std"],
             val["accuracy"], first["seconds_per_epoch"],
             _time_label(res["seconds"], all(r["loaded"] for r in rows)))
    return res


def ablation_name(forget_bias: float) -> str:
    """``metrics.json``'s key (and the runs' and figures' stem) of the forget-bias ablation:
    "lstm_forget_bias_1" for b_f = 1."""
    return f"lstm_forget_bias_{forget_bias:g}".replace(".", "p").replace("-", "minus")


def run_forget_bias_ablation(ctx: runs.RunContext, d: Activity, c, *, vmap: bool) -> Optional[dict]:
    """The LSTM refit again with its forget-gate bias at ``c.ablation_forget_bias`` instead of
    ``c.forget_bias``, for seeds S … S+K−1 (K = ``c.ablation_seeds``): each member drawn with
    the key of the default LSTM's member of that seed (:func:`member_key`: the same weights,
    shuffling and augmentation), so that b_f is the only difference; the LSTM's rate and
    epochs, no validation run of its own. Returns its ``metrics.json`` record (as
    :func:`run_model`'s: the test numbers over its seeds, seed S's gradient flow, history and
    confusion matrices, with ``forget_bias`` and ``forget_bias_default``), or None when
    there is no ablation to run (K = 0, no LSTM in ``c.models``, or the two biases equal)."""
    if c.ablation_seeds < 1 or "lstm" not in c.models or c.ablation_forget_bias == c.forget_bias:
        return None
    cc = dataclasses.replace(c, forget_bias=float(c.ablation_forget_bias))
    seeds = [c.seed + j for j in range(c.ablation_seeds)]
    s, n_classes = d.sets, len(d.names)
    as_jax = lambda xy: (jnp.asarray(xy[0]), jnp.asarray(xy[1]))  # noqa: E731
    members = train_seeds(ctx, "lstm", seeds, as_jax(s.train_all), None, cc, n_classes, vmap=vmap and len(seeds) > 1,
                          data_seed=c.seed, data_id=d.data_id, split=split_key(d, "refit"),
                          augmentation=cc.augmentation(s.mean_all, s.std_all), stage="refit",
                          name=f"q3_{ablation_name(cc.forget_bias)}")
    predict = jax.jit(recurrent.predict)
    rows = [member_row(seed, m, recurrent.metrics, predict, as_jax(s.train_all), as_jax(s.test_all), n_classes)
            for seed, m in zip(seeds, members)]
    res = seed_summary(rows)
    init_params, _ = member_init("lstm", member_key(seeds[0], "lstm"), s.train_all[0].shape[-1], cc, n_classes)
    res.update(forget_bias=cc.forget_bias, forget_bias_default=float(c.forget_bias), learning_rate=c.lr("lstm"),
               epochs=c.n_epochs("lstm"), seconds=float(sum(r["seconds"] for r in rows)),
               seed_sweep={"mode": "vmap" if vmap and len(seeds) > 1 else "sequential", "members": len(seeds),
                           "loaded_members": sum(r["loaded"] for r in rows)},
               n_params=int(sum(a.size for a in jax.tree.leaves(init_params))),
               gradient_flow=gradient_flow_record(init_params, members[0].params, s.train_all, seeds[0]),
               confusion_test=rows[0]["confusion_test"], confusion_train=rows[0]["confusion_train"],
               history=rows[0]["history"])
    log.info("lstm, forget bias %g: test accuracy %s (mean %.3f), %s", cc.forget_bias,
             ", ".join(f"{r['test_accuracy']:.3f}" for r in rows), res["test_accuracy"],
             _time_label(res["seconds"], all(r["loaded"] for r in rows)))
    return res


def _time_label(seconds: float, loaded: bool) -> str:
    text = f"trained in {seconds:.0f} s" if math.isfinite(seconds) else "trained earlier"
    return f"loaded ({text})" if loaded else text


def _norms(dh):
    """‖dh‖ over the last axis without squaring underflow: a float32 component of 10⁻²⁰ squares
    to 0, so each row is scaled by its largest |component| first."""
    m = jnp.max(jnp.abs(dh), axis=-1, keepdims=True)
    return m[..., 0] * jnp.linalg.norm(dh / jnp.where(m > 0, m, 1.0), axis=-1)


@jax.jit
def _flow(params, batch):
    """‖∂ℓ_n/∂h_t‖ <float>[T, N] of the per-window losses, and dL/dh_t <float>[T, N, H] of their sum."""
    dh = recurrent.hidden_state_grads(params, batch) * batch[0].shape[0]  # × N: per-window losses
    return _norms(dh), dh


def gradient_flow(params, data, n_windows: int = 256) -> list:
    """γ_t = mean over windows n of ‖∂ℓ_n/∂h_t‖ for t = 1 … T (BPTT6): how much of the loss's gradient
    reaches step t through backpropagation through time (the manual BPTT,
    :func:`mp_jax.models.recurrent.hidden_state_grads`, docs/recurrent.md BPTT3). ``data``:
    (x, y); the first ``n_windows`` windows are used. Returns T floats, 0 only where every
    component of a window's gradient is below float32's range."""
    x, y = data
    norms, _ = _flow(params, (jnp.asarray(x[:n_windows]), jnp.asarray(y[:n_windows])))
    return norms.mean(axis=1).tolist()


#: What carries the gradient back one step along the path of (BPTT7), per cell.
PATHS = {"rnn": "the spectral radius λ of diag(mean tanh') W_hᵀ (RNN8)",
         "lstm": "the forget gate f on the cell path (LSTM12)", "gru": "the update gate z on the direct path (GRU11)"}
FIT_FLOOR = 1e-30  # γ_t fitted only above this: 10⁸ above float32's smallest normal, where no term has underflowed
BURN_IN = 10  # steps back from T left out of the whole step's mean log-growth (BPTT8): the random start aligns


def _path_log_flow(log_a, entry, dh):
    """log γ̂_t <float>[T] of (BPTT7): each window's ‖dh_T‖ carried back unit by unit by the
    path's factors a (``log_a`` <float>[T, N, H] or [T, N, 1]), the units weighted by their share
    of the gradient ``entry`` ⊙ dh_T entering the path at T; in logs, so that nothing underflows."""
    s = jnp.cumsum(log_a[::-1], axis=0)[::-1] - log_a  # S_t = Σ_{s=t+1}^{T} log a_s
    e2 = (dh[-1] * entry) ** 2  # [N, H]
    log_w = jnp.log(e2) - jnp.log(jnp.sum(e2, axis=-1, keepdims=True))
    log_r = 0.5 * jax.scipy.special.logsumexp(2.0 * s + log_w, axis=-1)  # [T, N]
    log_r = jnp.where(jnp.isfinite(log_r), log_r, 0.0)  # a window whose dh_T is 0 adds nothing below
    log_g = jax.scipy.special.logsumexp(jnp.log(_norms(dh[-1])) + log_r, axis=-1)
    return log_g - jnp.log(dh.shape[1])


@jax.jit
def _whole_step_log_growth(params, x, key):
    """log(‖u_{t−1}‖ / ‖u_t‖) <float>[T, N] of (BPTT8): a random vector (for the LSTM a random
    pair (dh, dc)) carried back by each step's own backward, renormalized at every step."""
    cell = params.cell
    kind = recurrent.cell_name(cell)
    _, caches = recurrent.encode_forward(cell, x)
    _, step_backward = recurrent.step_functions(kind)
    shape = (x.shape[0], cell.w_h.shape[0])
    k1, k2 = jax.random.split(key)
    u = (jax.random.normal(k1, shape), jax.random.normal(k2, shape)) if kind == "lstm" else jax.random.normal(k1, shape)
    norm = lambda st: jnp.sqrt(sum(jnp.sum(a * a, axis=-1) for a in jax.tree.leaves(st)))  # noqa: E731

    def step(st, cache):
        n = norm(st)
        prev, _, _ = step_backward(cell, jax.tree.map(lambda a: a / n[:, None], st), cache)
        return prev, jnp.log(norm(prev))

    _, logs = jax.lax.scan(step, u, caches, reverse=True)  # logs[t − 1]: step t's growth, t = 1 … T
    return logs


def _whole_log_flow(logs, dh):
    """log γ̂_t <float>[T] of (BPTT8): each window's ‖dh_T‖ times the growth of the random
    vector from T back to t (the burn-in's steps at their mean growth), mean over windows."""
    t_len = logs.shape[0]
    late = jnp.arange(t_len)[:, None] >= t_len - BURN_IN  # the first BURN_IN steps back from T
    mean_late = jnp.sum(jnp.where(late, 0.0, logs), axis=0) / (t_len - BURN_IN)  # [N]
    logs = jnp.where(late, mean_late, logs)
    s = jnp.cumsum(logs[::-1], axis=0)[::-1] - logs  # Σ_{s=t+1}^{T}
    return jax.scipy.special.logsumexp(jnp.log(_norms(dh[-1])) + s, axis=-1) - jnp.log(dh.shape[1])


def gradient_prediction(params, data, measured: list, n_windows: int = 256) -> dict:
    """The slope of the measured gradient flow ``measured`` (:func:`gradient_flow` of ``params``
    on the same windows) predicted from the forward pass (docs/recurrent.md, "Predicting the
    slope of the gradient flow"), for ``metrics.json``:

    - ``path``: what carries the gradient back along the path of (BPTT7); ``mean_gate``: the
      mean of f (LSTM) or z (GRU) over windows, steps and units; for the RNN
      ``mean_tanh_prime`` (1 − h², the same mean) and ``w_h_spectral_radius``;
    - ``log10_predicted``: log10 γ̂_t of (BPTT7) for t = 1 … T (may lie below float32's range);
    - ``fit_steps``: [first, last] step of the fits, the steps t < T with g_t ≥ ``FIT_FLOOR``;
    - ``factor_measured``, ``factor_path``: exp(−slope) of the least-squares line of log g_t
      and of log γ̂_t over those steps, the factor per step back in time; for the RNN
      ``factor_path`` is λ of (RNN8) itself;
    - ``factor_whole``: the whole step's factor of (BPTT8), every path of the step together."""
    x, y = data
    x, y = jnp.asarray(x[:n_windows]), jnp.asarray(y[:n_windows])
    kind = recurrent.cell_name(params.cell)
    _, dh = _flow(params, (x, y))
    _, cache = jax.jit(recurrent.encode_forward)(params.cell, x)
    if kind == "rnn":
        tau = np.asarray(jnp.mean(1.0 - cache.h * cache.h, axis=(0, 1)), dtype=float)  # unit j's mean tanh'
        w_h = np.asarray(params.cell.w_h, dtype=float)
        lam = float(np.max(np.abs(np.linalg.eigvals(tau[:, None] * w_h.T))))  # (RNN8)
        log_a, entry = jnp.full((x.shape[1], x.shape[0], 1), math.log(max(lam, 1e-30))), jnp.ones((1, 1))
        explain = {"mean_tanh_prime": float(tau.mean()),
                   "w_h_spectral_radius": float(np.max(np.abs(np.linalg.eigvals(w_h))))}
    else:
        gate = cache.f if kind == "lstm" else cache.z
        log_a = jnp.log(jnp.maximum(gate, jnp.finfo(gate.dtype).tiny))
        if kind == "lstm":  # the cell path starts at (LSTM6): dc_T = dh_T ⊙ o_T ⊙ (1 − tanh² c_T)
            entry = cache.o[-1] * (1.0 - jnp.tanh(cache.c[-1]) ** 2)
        else:
            entry = jnp.ones((1, 1))
        explain = {"mean_gate": float(jnp.mean(gate))}
    log_g = np.asarray(jax.jit(_path_log_flow)(log_a, entry, dh), dtype=float)
    log_whole = np.asarray(jax.jit(_whole_log_flow)(_whole_step_log_growth(params, x, jax.random.PRNGKey(0)), dh),
                           dtype=float)
    g = np.asarray(measured, dtype=float)
    t = np.arange(1, g.size + 1)
    fit = (g >= FIT_FLOOR) & np.isfinite(g) & (t < g.size)
    ln10 = math.log(10.0)
    out = {"path": PATHS[kind], **explain, "log10_predicted": (log_g / ln10).tolist(),
           "log10_whole": (log_whole / ln10).tolist()}
    if fit.sum() >= 2:
        tf = t[fit]
        factor = lambda v: math.exp(-float(np.polyfit(tf.astype(float), v[fit], 1)[0]))  # noqa: E731
        out.update(fit_steps=[int(tf[0]), int(tf[-1])], factor_measured=factor(np.log(np.maximum(g, FIT_FLOOR))),
                   factor_path=lam if kind == "rnn" else factor(log_g), factor_whole=factor(log_whole))
    return out


def gradient_flow_record(init_params, trained_params, data, seed: int, n_windows: int = 256) -> dict:
    """``metrics.json``'s ``gradient_flow`` of a model: the measured g_t (:func:`gradient_flow`)
    at initialisation (``init``) and after training (``trained``), each one's prediction
    (:func:`gradient_prediction`) under ``predicted``, the number of windows and the seed."""
    rec = {"n_windows": int(min(n_windows, len(data[1]))), "seed": int(seed), "predicted": {}}
    for when, params in (("init", init_params), ("trained", trained_params)):
        rec[when] = gradient_flow(params, data, n_windows)
        rec["predicted"][when] = gradient_prediction(params, data, rec[when], n_windows)
    return rec


def member_row(seed: int, m: runs.Member, metrics_fn, predict, train_xy, test_xy, n_classes: int) -> dict:
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


def run_baseline(ctx: runs.RunContext, d: Activity, c, key) -> dict:
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
        training = runs.Training(functools.partial(logistic.loss_and_grad, hp=hp),
                                   train.sgd_momentum(c.baseline_lr, c.baseline_momentum),
                                   dataclasses.replace(fit_config, epochs=epochs, patience=patience,
                                                       keep="best" if val_data is not None else "last"),
                                   metrics_fn=logistic.metrics)
        run_key = c.run_key(data=d.data_id, split=split_key(d, stage), model="logistic",
                            features=list(logistic.FEATURES), seed=seed, stage=stage, epochs=epochs)
        return runs.fit_member(ctx, name, training, logistic.init_params(seed_key, data[0].shape[1], len(d.names)),
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
    log.info("baseline: test accuracy %s, %d epochs chosen on validation",
             ", ".join(f"{r['test_accuracy']:.3f}" for r in rows), epochs)
    return res


def select_rates(ctx: runs.RunContext, c, d: Activity) -> tuple:
    """The selection step alone: for each model of ``c.models`` and each peak learning rate
    of ``c.select``, the validation runs (seeds S … S+K−1, K = ``c.seeds``, on the training
    part, the model's epochs) scored on the validation subjects. The test windows are not
    touched. Returns ``({model: [{"learning_rate", "epochs", "val_accuracy" (mean over seeds),
    "val_accuracy_per_seed", "val_loss", "diverged", "best"}]}, [the runs that diverged])``,
    the best mean validation accuracy per model marked ``"best": True``.

    A rate whose run diverges for some seed (a non-finite loss or parameter) is a finding
    here: its row says so (``diverged``: when, per seed; no accuracy) and it is never the
    best; the others are still trained."""
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
    return table, failed


def baseline_key(seed: int) -> jax.Array:
    """The baseline's key with ``--seed seed``: the first of :func:`member_key`'s split."""
    return jax.random.split(jax.random.PRNGKey(seed), 1 + len(MODELS))[0]
