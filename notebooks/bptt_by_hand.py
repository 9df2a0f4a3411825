# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Backpropagation through time, by hand
#
# This walkthrough builds a small LSTM classifier, runs its backward pass one step at a time
# with the package's hand-derived step functions, checks every tensor against `jax.grad`, shows
# gradients vanishing and exploding through time, and trains the model on the manual gradients.
# The equations it cites are derived in `docs/recurrent.md`.
#
# Open it as a notebook with jupytext (`pip install jupytext notebook`, then
# `jupytext --to ipynb notebooks/bptt_by_hand.py` and open the `.ipynb`), or run it as a script:
# `python notebooks/bptt_by_hand.py` (figures go to `$MP_JAX_NOTEBOOK_OUT`, default
# `notebook_out/`).
#
# **Your own backward piece.** Give it an exercise file of `exercises/` that you have filled in,
# as the script's argument or in the environment variable `MP_JAX_EXERCISE` (the way to pass it
# to a notebook):
# `python notebooks/bptt_by_hand.py exercises/lstm_step.py`, or
# `MP_JAX_EXERCISE=exercises/lstm_step.py jupyter notebook`. Section 0 then swaps your function
# into its model, checks every tensor of the backward, and draws the relative error of each
# tensor at each time step as a heatmap beside the table of the other rows
# (`exercise_check.png`). `MP_JAX_NOTEBOOK_EXERCISE_ONLY=1` stops after that section.

# %%
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from mp_jax.checks import bugzoo, exercises, gradtable, offsets, registry  # noqa: E402
from mp_jax.models import recurrent as R  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64: every comparison below is exact to ~1e-15
OUT = Path(os.environ.get("MP_JAX_NOTEBOOK_OUT", "notebook_out"))
OUT.mkdir(parents=True, exist_ok=True)
QUICK = os.environ.get("MP_JAX_NOTEBOOK_QUICK") == "1"  # smaller runs (the test suite sets it)
# the exercise to check in section 0: the script's argument (a .py file; a notebook kernel's own
# arguments are not), else MP_JAX_EXERCISE
EXERCISE = next((a for a in sys.argv[1:] if a.endswith(".py")), os.environ.get("MP_JAX_EXERCISE") or None)

# %% [markdown]
# ## 0. Your own backward piece, tensor by tensor (with an exercise file)
#
# The exercise's function replaces the package's piece inside its model (as
# `python -m mp_jax.gradcheck --backward FILE` does) and every tensor of the backward is compared
# with `jax.grad` in a zero offset (section 4 explains the oracle). The heatmap shows the
# relative error of each per-step tensor at each step t (rows in the order the backward computes
# them); the table beside it, the tensors that have no time step (the head's and the weights').
# A right piece is uniformly dark (rounding, ~1e-16); a wrong one lights up from the first wrong
# tensor on, backwards in time. Without an exercise file this section does nothing.

# %%
if EXERCISE:
    ex_check = None
    try:
        ex = exercises.load(EXERCISE)
    except exercises.ExerciseError as error:  # one line, as the command line gives
        print(f"cannot check {EXERCISE}: {error}")
    else:
        try:
            with bugzoo.swapped(ex.module, ex.attribute, ex.replacement()):
                ex_check = gradtable.check_gradients(registry.get(ex.model), "reference", "float64",
                                                     registry.Size(batch=7, hidden=5, T=6))
        except Exception as error:  # the learner's code raised, or returned what does not fit
            print(exercises.explain_failure(ex, error))
    if ex_check is not None:
        step_rows = [r for r in ex_check.rows if r.step is not None]
        names = list(dict.fromkeys(r.name for r in step_rows)) or ["(none)"]
        steps = sorted({r.step for r in step_rows}) or [1]
        grid = np.full((len(names), len(steps)), np.nan)
        for r in step_rows:
            grid[names.index(r.name), steps.index(r.step)] = np.log10(max(min(r.rel_err, 1e3), 1e-17))
        other = [r for r in ex_check.rows if r.step is None and r.kind != "loss"]
        fig, (ax, tab) = plt.subplots(1, 2, figsize=(11, 0.45 * max(len(names), len(other)) + 2.2),
                                      gridspec_kw={"width_ratios": [1.1, 1]})
        image = ax.imshow(grid, cmap="magma", vmin=-17, vmax=1, aspect="auto")
        ax.set_xticks(range(len(steps)), [str(t) for t in steps])
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("time step t (T = last; the backward runs right to left)")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{int(round(v))}", ha="center", va="center", fontsize=7,
                        color="black" if v > -8 else "white")
        fig.colorbar(image, ax=ax, label="log10 relative error")
        wrong = ex_check.first_wrong()
        ax.set_title(f"{ex.attribute} in {ex_check.model}: " + ("every tensor right" if wrong is None else
                                                                 f"first wrong: {wrong.label}"), fontsize=9)
        tab.axis("off")
        cells = [[r.name, f"{r.rel_err:.1e}", "PASS" if r.passed else "FAIL"] for r in other]
        table = tab.table(cellText=cells, colLabels=["tensor", "rel. err", ""], loc="center")
        table.scale(1, 1.2)
        for k, r in enumerate(other, start=1):
            table[k, 2].set_facecolor("#c8f0c8" if r.passed else "#f6c0c0")
        fig.tight_layout()
        fig.savefig(OUT / "exercise_check.png", dpi=110)
        print(f"{ex.attribute}: " + ("every tensor matches jax.grad" if wrong is None else
                                     f"the first wrong tensor is {wrong.label} (rel. err {wrong.rel_err:.1e})"))
    if os.environ.get("MP_JAX_NOTEBOOK_EXERCISE_ONLY") == "1":
        raise SystemExit(0)

# %% [markdown]
# ## 1. A small LSTM and a batch
#
# N = 4 sequences of T = 6 steps of D = 3 inputs; H = 5 hidden units; a ReLU layer of M = 6 units
# and C = 4 classes on the last state h_T. The registry builds the instance (random weights and
# biases, so that no gradient is zero by construction).

# %%
spec = registry.get("lstm")
params, (x, y) = spec.instance(registry.Size(batch=4, hidden=5, T=6))
N, T, D = x.shape
H = params.cell.w_h.shape[0]
print(f"x {x.shape}, y {y.shape}, W_x {params.cell.w_x.shape}, W_h {params.cell.w_h.shape}")

# %% [markdown]
# ## 2. The forward pass, keeping what the backward needs
#
# `encode_forward` scans `lstm_step_forward` over time (LSTM1-LSTM4) and stacks each step's cache:
# its input, h_{t−1}, c_{t−1}, the gates i, f, g, o and c_t. The head (HEAD1-HEAD2) gives the
# logits z, and the loss is the mean cross-entropy (HEAD3).

# %%
h_T, caches = R.encode_forward(params.cell, x)
z, head_cache = R.head_forward(params, h_T)
loss, dz = R._cross_entropy(z, y)
print(f"loss {float(loss):.6f}; the reference loss for jax.grad: {float(spec.loss(params, (x, y))):.6f}")

# %% [markdown]
# ## 3. The backward pass, one step at a time
#
# The head comes first: dz = (softmax(z) − onehot(y))/N (HEAD4), then through the ReLU layer to
# dL/dh_T (HEAD5-HEAD6). Then the LSTM, from t = T down to 1: each `lstm_step_backward` takes the
# gradient reaching (h_t, c_t), returns the gradient reaching (h_{t−1}, c_{t−1}) (LSTM11-LSTM12),
# this step's share of the weight gradients (LSTM10) and its named deltas (LSTM5-LSTM9). The
# weights serve every step, so their gradients add up (BPTT2). Written here as a plain Python
# loop so that every tensor can be looked at; the package runs the same steps as a reverse
# `lax.scan`.

# %%
dh, head_grads, da = R.head_backward(head_cache, dz)
dstate = (dh, jnp.zeros_like(dh))  # nothing reaches c_T but through h_T: dc from "step T + 1" is 0
total = jax.tree.map(jnp.zeros_like, params.cell)
manual = {name: [None] * T for name in ("dh_t",) + R.STEP_DELTAS["lstm"]}
for t in reversed(range(T)):
    cache_t = jax.tree.map(lambda a: a[t], caches)
    manual["dh_t"][t] = dstate[0]
    dstate, grads_t, deltas = R.lstm_step_backward(params.cell, dstate, cache_t)
    total = jax.tree.map(jnp.add, total, grads_t)
    for name, value in deltas.items():
        manual[name][t] = value
manual = {name: jnp.stack(v) for name, v in manual.items()}
print("dW_h from the loop:", total.w_h.shape, "| ‖dc_t‖ per step:",
      np.round([float(jnp.linalg.norm(manual["dc_t"][t])) for t in range(T)], 4))

# %% [markdown]
# ## 4. Every tensor against `jax.grad`
#
# `jax.grad` of the loss gives the parameter gradients. For an intermediate such as δ_f at step t
# there is no parameter to differentiate; instead `mp_jax.checks.offsets` writes the loss again with a
# zero offset ε added where the tensor is produced (a_f + ε for δ_f, c_t + ε for dc_t). At ε = 0
# the loss is unchanged and ∂L/∂ε is exactly that tensor's gradient.

# %%
grads_ref = jax.grad(spec.loss)(params, (x, y))
eps = spec.offsets_at_zero(params, (x, y), jnp.float64)
named_ref = jax.grad(offsets.recurrent, argnums=2)(params, (x, y), eps)


def rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))


for name, value in [("dz", dz), ("da", da)]:
    print(f"{name:5s} rel. error {rel(value, named_ref[name]):.1e}")
for t in reversed(range(T)):
    print(f"t = {t + 1}: " + "  ".join(f"{n} {rel(manual[n][t], named_ref[n][t]):.0e}" for n in manual))
worst = max(rel(a, b) for a, b in zip(jax.tree.leaves(total), jax.tree.leaves(grads_ref.cell)))
print(f"cell weights, summed over the loop: worst rel. error {worst:.1e}")
assert worst < 1e-10 and all(rel(manual[n], named_ref[n]) < 1e-10 for n in manual)

# %% [markdown]
# ## 5. Gradients vanish and explode
#
# ∂L/∂h_{t−1} = ∂L/∂h_t · ∂h_t/∂h_{t−1} (BPTT3): the gradient reaching an early step is a
# product of T − t Jacobians. For the tanh RNN each factor is diag(1 − h_t²) W_hᵀ: with small
# weights the product shrinks geometrically (vanishing), with large ones it can grow (exploding).
# The LSTM's cell path multiplies by f instead (LSTM12). At initialisation f = σ(a_f) is near
# σ(0) = ½, so that path vanishes too; a forget-gate bias of +3 (f ≈ 0.95; Gers et al. 2000
# argue for a positive one) keeps the gradient alive over many more steps.
# `recurrent.hidden_state_grads` returns dL/dh_t for every step from the manual BPTT.

# %%
T_LONG = 30 if QUICK else 60
flows = {}
for label, cell, scale, forget_bias in (("RNN, W ~ N(0, 0.3²)", "rnn", 0.3, None),
                                        ("RNN, W ~ N(0, 1.2²)", "rnn", 1.2, None),
                                        ("LSTM, W ~ N(0, 0.3²)", "lstm", 0.3, None),
                                        ("LSTM, W ~ N(0, 0.3²), forget bias +3", "lstm", 0.3, 3.0)):
    p, (xs, ys) = registry.get(cell).instance(registry.Size(batch=8, hidden=16, T=T_LONG), seed=1)
    p = p._replace(cell=jax.tree.map(lambda a: a * scale / 0.6, p.cell))  # the instance draws N(0, 0.6²)
    if forget_bias is not None:  # the f block is the second of [i, f, g, o]
        p = p._replace(cell=p.cell._replace(b=p.cell.b.at[16:32].set(forget_bias)))
    dh_all = jax.jit(R.hidden_state_grads)(p, (xs, ys))
    flows[label] = np.asarray(jnp.linalg.norm(dh_all, axis=(1, 2)))
fig, ax = plt.subplots(figsize=(7, 3.6))
for label, g in flows.items():
    ax.semilogy(np.arange(1, g.size + 1), g, label=label)
ax.set_xlabel("time step t (T = last)")
ax.set_ylabel(r"$\Vert \partial L / \partial h_t \Vert$")
ax.set_title("The gradient reaching each step through time")
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "gradient_flow.png", dpi=110)
for label, g in flows.items():
    print(f"{label}: ‖dL/dh_1‖ / ‖dL/dh_T‖ = {g[0] / g[-1]:.2e}")

# %% [markdown]
# ## 6. Training on the manual gradients
#
# A task that needs memory: the class is the sign of the FIRST input of a sequence of T = 12
# steps, the rest is noise, so the gradient has to travel back to t = 1. The forget gate starts
# with a bias of +1 (so that it does); the optimiser is optax's global-norm clipping and SGD with
# momentum, fed the manual gradients of `loss_and_grad`.

# %%
rng = np.random.default_rng(0)
T_TASK, N_TASK = 12, 256
xs = rng.normal(size=(N_TASK, T_TASK, 1))
ys = (xs[:, 0, 0] > 0).astype(np.int32)
p = R.init_params(jax.random.key(0), "lstm", 1, 16, 16, 2, dtype=jnp.float64)
p = p._replace(cell=p.cell._replace(b=p.cell.b.at[16:32].set(1.0)))  # forget-gate bias +1
opt = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9))
state = opt.init(p)


@jax.jit
def step(p, state, batch):
    value, grads = R.loss_and_grad(p, batch)
    updates, state = opt.update(grads, state, p)
    return optax.apply_updates(p, updates), state, value


losses = []
for it in range(250 if QUICK else 400):
    idx = rng.choice(N_TASK, 32, replace=False)
    p, state, value = step(p, state, (xs[idx], ys[idx]))
    losses.append(float(value))
accuracy = float(jnp.mean(R.predict(p, xs) == ys))
print(f"loss {np.mean(losses[:10]):.3f} → {np.mean(losses[-10:]):.3f}; training accuracy {accuracy:.2f}")
assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), "the LSTM did not learn the task"
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(losses)
ax.set_xlabel("update")
ax.set_ylabel("minibatch loss")
ax.set_title("LSTM on manual gradients: the sign of the first input")
fig.tight_layout()
fig.savefig(OUT / "training.png", dpi=110)
