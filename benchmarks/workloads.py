"""The benchmarks' workloads, built from the experiments' own configs, so that a setting the
experiments use is stated once (the dataclasses of ``experiments/``) and a benchmark times
what the main job trains. Only the data sizes are the benchmarks' own: the stand-in data's
(Q1 10240 patches, Q2 372500 trigrams over V = 250 words, Q3 2700 windows of 150 steps,
6 classes), which the benchmarks synthesise instead of loading."""
from __future__ import annotations

from experiments.q1_autoencoder import Q1Config
from experiments.q2_language_model import Q2Config
from experiments.q3_activity import Q3Config

Q1, Q2, Q3 = Q1Config(), Q2Config(), Q3Config()
VOCAB, STEPS, CLASSES = 250, 150, 6  # the data's V, T and C
N = {"ae": 10240, "lm": 372500, "seq": 2700}  # examples per epoch


def q1_sgd() -> dict:
    """Q1's SGD run: batch, L_hid, η, μ and (λ, β, ρ)."""
    return dict(batch=Q1.sgd_batch, hidden=Q1.hidden, lr=Q1.sgd_lr, momentum=Q1.sgd_momentum,
                lam=Q1.hp.lam, beta=Q1.hp.beta, rho=Q1.hp.rho)


def q1_lbfgs() -> dict:
    """Q1's L-BFGS studies: L_hid, λ, the memory and chunk, the (β, ρ) grid."""
    return dict(hidden=Q1.hidden, lam=Q1.hp.lam, memory=Q1.lbfgs_memory, chunk=Q1.lbfgs_chunk, beta_rho=Q1.beta_rho)


def q2() -> dict:
    """Q2's first (D, P) setting and its SGD."""
    dim, hidden = Q2.settings[0]
    return dict(batch=Q2.batch_size, vocab=VOCAB, dim=dim, hidden=hidden, lr=Q2.learning_rate, momentum=Q2.momentum)


def q3(cell: str) -> dict:
    """Q3's ``cell`` as the main job trains it: batch, H, M, its peak rate, μ, clipping."""
    return dict(batch=Q3.batch_size, steps=STEPS, hidden=Q3.hidden, mlp=Q3.mlp, classes=CLASSES,
                lr=dict(Q3.learning_rates)[cell], momentum=Q3.momentum, clip=Q3.clip_norm)
