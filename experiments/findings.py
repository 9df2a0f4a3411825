"""The findings paragraphs of REPORT.md, written from a run's own numbers.

Each function takes one question's ``metrics.json`` (a dict) and returns sentences. Every
comparison a sentence makes ("higher", "within the spread", "six times ρ") is computed
from the numbers it quotes, so another data set or seed gives other words, never a false
claim; a number a run did not record gives no sentence. ``tests/test_report.py`` builds
the paragraphs from two different runs and checks each claim against its numbers.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np


def _num(x, nd: int = 3) -> str:
    """A number in prose: 3 significant digits (``nd``), no exponent for ordinary sizes."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "?"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{max(nd - 1, 1)}e}"
    return f"{x:.{nd}g}"


def _pct(x) -> str:
    return f"{100 * x:.1f} %"


def compare(a: float, b: float, more: str = "higher", less: str = "lower", rel: float = 1e-9) -> str:
    """The word for ``a`` against ``b``: ``more``, ``less`` or "the same as"."""
    if abs(a - b) <= rel * max(abs(a), abs(b), 1e-300):
        return "the same as"
    return more if a > b else less


def times(ratio: float) -> str:
    """ "6.2 times", "about the same as" or "0.3 times" for a ratio."""
    return f"{ratio:.1f} times" if ratio >= 0.1 else f"{ratio:.2g} times"


# ----------------------------------------------------------------------------- Q1
def _q(x, nd: int = 3) -> str:
    """A Q1 number in prose: as :func:`_num`, but 1000 ≤ |x| < 1e5 as a whole number (1860, not 1.86e+03)."""
    return f"{x:.0f}" if _is_num(x) and 1e3 <= abs(x) < 1e5 else _num(x, nd)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _weight_norm(r: dict) -> Optional[float]:
    """‖W‖_F² of a tied Q1 model: its weight-decay term λ‖W‖² (AE8) over λ."""
    decay, lam = (r.get("cost_terms") or {}).get("weight_decay"), r.get("lam")
    return decay / lam if _is_num(decay) and _is_num(lam) and lam > 0 else None


def _lbfgs_records(m: dict) -> list:
    """Every L-BFGS run of a Q1 metrics dict: the default model's and the studies' members (once each)."""
    seen, out = set(), []
    for r in [*(m.get("optimizers") or {}).values(), *(m.get("beta_rho") or []), *(m.get("sweep") or [])]:
        if isinstance(r, dict) and r.get("optimizer") == "lbfgs" and r.get("name") not in seen:
            seen.add(r.get("name"))
            out.append(r)
    return out


def q1_training(m: dict) -> list:
    """Part (b): the two optimisers' final costs, whether L-BFGS stopped at its iteration cap
    (in this and every L-BFGS run of the question) and what that does to the comparison, and
    the default model's reconstruction."""
    out = []
    opts = m.get("optimizers") or {}
    lb, sg = opts.get("lbfgs") or {}, opts.get("sgd") or {}
    a, b = lb.get("final_cost"), sg.get("final_cost")
    if _is_num(a) and _is_num(b):
        out.append(f"Full-batch L-BFGS ends at J = {_num(a)}, {compare(a, b)} than minibatch SGD with momentum "
                   f"({_num(b)}).")
        its, reason, evals, epochs = (lb.get(k) for k in ("iterations", "stop_reason", "function_evaluations", "epochs"))
        epochs = sg.get("epochs")
        if isinstance(its, int) and reason and isinstance(evals, int) and isinstance(epochs, int) and epochs > 0:
            how = ("at its iteration cap" if reason == "max_iter"
                   else "at a tolerance (" + {"gtol": "the gradient norm", "ftol": "the relative decrease"}.get(
                       reason, reason) + ")")
            out.append(f"L-BFGS stopped {how} after {its} iterations, {evals} evaluations of J and its gradient on "
                       f"the whole training set; SGD's {epochs} epochs are {epochs} passes over it: L-BFGS computed "
                       f"{times(evals / epochs)} as much.")
            fair = _equal_cost(lb, b, epochs)
            if reason == "max_iter" and a < b:
                out.append("Stopped short of a tolerance, L-BFGS's J is where it was still descending, not where "
                           "it would settle: the cap does not favour it" + (f"; {fair}" if fair else "") + ".")
            elif fair:
                out.append(cap(fair) + ".")
    runs = _lbfgs_records(m)
    capped = [r for r in runs if r.get("stop_reason") == "max_iter"]
    if len(runs) > 1:
        out.append(f"Of this question's {len(runs)} L-BFGS runs, {len(capped)} stopped at the iteration cap and "
                   f"{len(runs) - len(capped)} at a tolerance"
                   + ("; their costs are those of the cap, not of convergence" if capped else "") + ".")
    ratio = m.get("heldout_mse_ratio")
    if _is_num(ratio):
        better = "better" if ratio < 1 else "no better"
        out.append(f"On held-out patches the default model's reconstruction error is {_num(ratio)} of the error of "
                   f"predicting the mean patch: {better} than that trivial reconstruction.")
    rho, rho_hat = m.get("rho"), m.get("mean_hidden_activation")
    if _is_num(rho) and _is_num(rho_hat) and rho > 0:
        out.append(f"Its mean hidden activation is ρ̂ = {_num(rho_hat)}, {times(rho_hat / rho)} the target "
                   f"ρ = {_num(rho)}.")
    return out


def _equal_cost(lb: dict, sgd_cost: float, epochs: int) -> Optional[str]:
    """L-BFGS's J once it had computed as many whole-set gradients as SGD's epochs (its curve's
    ``evaluations``), against SGD's final J; None when the curve does not say."""
    curve = lb.get("curve") or {}
    values, evals = curve.get("train") or [], curve.get("evaluations") or []
    if not values or len(evals) != len(values) or evals[-1] < epochs:
        return None
    k = next(i for i, e in enumerate(evals) if e >= epochs)
    # values[i] is J before iteration i + 1; evals[k] counts the evaluations up to the end of iteration k + 1
    j = values[k + 1] if k + 1 < len(values) else lb.get("final_cost")
    if not _is_num(j):
        return None
    return (f"at equal cost, after {evals[k]} evaluations (iteration {k + 1}), its J was {_num(j)}, "
            f"{compare(j, sgd_cost)} than SGD's final {_num(sgd_cost)}")


def _units(r: dict) -> str:
    """ "3 noise units, 2 dead, 1 duplicate pair-member of 64" from a Q1 record."""
    h = r.get("hidden")
    parts = [f"{r[k]} {w}" for k, w in (("noise_units", "noise"), ("dead_units", "dead"),
                                         ("duplicate_units", "duplicate")) if isinstance(r.get(k), int)]
    return (", ".join(parts) + f" units of {h}") if parts and h else ""


SPARSE_CODE = 0.1  # a mean activation at most this is a sparse code; above DENSE_CODE a dense one
DENSE_CODE = 0.5


def sparsity_phrase(rho_hat: float, rho: float) -> str:
    """What ρ̂ says: against its target ρ ("close to" within a factor 2, else "above" or
    "below"), and as a code (ρ̂ ≤ 0.1 "a sparse code", ρ̂ > 0.5 "a dense code", else "not a
    sparse code")."""
    ratio = rho_hat / rho
    where = "close to the target" if 0.5 <= ratio <= 2 else "above the target" if ratio > 2 else "below the target"
    code = ("a sparse code" if rho_hat <= SPARSE_CODE else "a dense code" if rho_hat > DENSE_CODE
            else "not a sparse code")
    return f"ρ̂ = {_num(rho_hat)} is {times(ratio)} ρ, {where}: {code}"


def _trained(records) -> list:
    return [r for r in records or [] if isinstance(r, dict) and not r.get("diverged")
            and all(_is_num(r.get(k)) for k in ("beta", "rho", "mean_hidden_activation"))]


def q1_beta_rho(m: dict, other: Optional[dict] = None) -> list:
    """Part (c) as an argument from the run's numbers: what β does to ρ̂ at the default ρ,
    each setting's code, why the smallest ρ leaves units dead, the strongest β under SGD
    against L-BFGS (:func:`q1_strong_sparsity`; ``other`` is the other recipe's Q1 metrics,
    when it ran), the members that diverged, and the choice."""
    out = []
    records = m.get("beta_rho") or []
    ok = _trained(records)
    rho0 = (m.get("settings") or {}).get("hp", {}).get("rho", m.get("rho"))
    same_rho = sorted((r for r in ok if _is_num(rho0) and r["rho"] == rho0), key=lambda r: r["beta"])
    if len(same_rho) >= 2:
        gaps = [abs(math.log(r["mean_hidden_activation"] / r["rho"])) if r["mean_hidden_activation"] > 0 else math.inf
                for r in same_rho]
        closer = all(g2 <= g1 for g1, g2 in zip(gaps, gaps[1:]))
        listed = ", ".join(f"ρ̂ = {_num(r['mean_hidden_activation'])} at β = {_num(r['beta'])}" for r in same_rho)
        out.append(f"At ρ = {_num(rho0)}, β is the weight of the KL term's pull of ρ̂ towards ρ against the "
                   f"reconstruction, which gains from active units: {listed}"
                   + (", the larger β the closer to ρ." if closer else "; ρ̂ does not approach ρ steadily as β grows."))
    smallest = _smallest_rho(ok, m)
    low = min((r["rho"] for r in ok), default=None) if smallest else None
    for r in ok:
        if not (_is_num(rho0) and r["rho"] == rho0) and r["rho"] != low:
            units = _units(r)
            out.append(f"β = {_num(r['beta'])}, ρ = {_num(r['rho'])}: {sparsity_phrase(r['mean_hidden_activation'], r['rho'])}"
                       + (f"; {units}" if units else "") + ".")
    out += smallest
    out += q1_strong_sparsity(m, other)
    for r in records:
        if isinstance(r, dict) and r.get("diverged"):
            out.append(f"β = {_num(r.get('beta'))}, ρ = {_num(r.get('rho'))} diverged "
                       f"({r['diverged'].get('reason', 'a non-finite value')}): a result of the study, left out of "
                       f"the choice.")
    choice = m.get("beta_rho_choice")
    if isinstance(choice, dict) and choice.get("rule"):
        out.append(f"Chosen: {_choice(choice)}.")
    return out


def _smallest_rho(ok: list, m: dict) -> list:
    """Why the smallest target ρ leaves units dead, checked against the run's numbers: a unit
    that meets it responds to about ρ·N of the held-out patches, and either the decay term has
    shrunk its weights (‖W‖² far below the default ρ's) or the unit sits far below its target,
    where the KL term's pull on its bias is at most βρ (AE21)."""
    if len({r["rho"] for r in ok}) < 2:
        return []
    low = min(ok, key=lambda r: r["rho"])
    rho0 = (m.get("settings") or {}).get("hp", {}).get("rho")
    ref = next((r for r in ok if r["rho"] == rho0 and r["beta"] == low["beta"]), None)
    dead, h = low.get("dead_units"), low.get("hidden")
    n_held = (m.get("data") or {}).get("n_heldout")
    if not (isinstance(dead, int) and isinstance(h, int) and isinstance(n_held, int)):
        return []
    text = (f"ρ = {_num(low['rho'])} leaves {dead} of {h} units dead (activation varying by less than the dead "
            f"threshold over the held-out patches)")
    if dead * 2 <= h:
        return [text + "."]
    rho_hat, rho = low["mean_hidden_activation"], low["rho"]
    text += (f": a unit that meets that target responds to about ρ·N = {_num(rho * n_held)} of the {n_held} held-out "
             f"patches, so what it can add to the reconstruction is small")
    w_low, w_ref = _weight_norm(low), (_weight_norm(ref) if ref else None)
    if _is_num(w_low) and _is_num(w_ref) and 0 < w_low < 0.5 * w_ref:
        text += (f", while the decay term charges λ‖W‖² for its weights whatever they do: they shrink to "
                 f"‖W‖² = {_q(w_low)}, {times(w_ref / w_low)} smaller than at ρ = {_num(ref['rho'])}, until the "
                 f"units' activations hardly vary")
    elif rho_hat < 0.1 * rho:
        text += (f"; here the units sit far below even that target (ρ̂ = {_num(rho_hat)}, {times(rho_hat / rho)} ρ), "
                 f"where the KL term's pull on a unit's bias is at most βρ = {_num(low['beta'] * rho)} per unit "
                 f"(AE21), too weak to bring them back")
    ratio = low.get("heldout_mse_ratio")
    if _is_num(ratio):
        text += f"; the held-out error is {_num(ratio)} of the mean patch's"
    return [text + "."]


def _member(m: Optional[dict], beta: float, rho: float) -> Optional[dict]:
    if not isinstance(m, dict):
        return None
    return next((r for r in m.get("beta_rho") or [] if isinstance(r, dict) and r.get("beta") == beta
                 and r.get("rho") == rho and not r.get("diverged")), None)


def q1_strong_sparsity(m: dict, other: Optional[dict] = None) -> list:
    """The strongest β of the (β, ρ) study under SGD on 32-patch minibatches against full-batch
    L-BFGS, from the records' ``curve_summary`` and ``minibatch`` (:func:`mp_jax.models.
    autoencoder_measures.minibatch_costs`).

    For an SGD study: how noisily it trains; the reason, ρ̂ estimated from 32 patches and the
    KL term's curvature where ρ̂ ≪ ρ, each checked against the same numbers at the default β;
    and, where the other recipe's L-BFGS study ran (``other``), what L-BFGS reaches on the whole
    training set and what the same minibatches make of its weights. For an L-BFGS study: how
    steadily it trains, what 32-patch minibatches would make of its weights, and one line on
    the SGD study of the other recipe, whose section has the argument."""
    ok = _trained(m.get("beta_rho"))
    if len(ok) < 2:
        return []
    strong = max(ok, key=lambda r: r["beta"])
    beta, rho = strong["beta"], strong["rho"]
    hp = (m.get("settings") or {}).get("hp") or {}
    theirs = _member(other, beta, rho)
    where = f" (the {((other or {}).get('settings') or {}).get('recipe', 'other')} recipe's study)"
    if strong.get("optimizer") == "sgd":
        base = _member(m, hp.get("beta"), rho) if hp.get("beta") != beta else None
        out = _sgd_noise(strong, base)
        if theirs and theirs.get("optimizer") == "lbfgs":
            out += _lbfgs_steady(theirs, strong, where)
        return out
    if strong.get("optimizer") != "lbfgs":
        return []
    out = _lbfgs_steady(strong, None, "")
    if theirs and theirs.get("optimizer") == "sgd" and all(
            _is_num(theirs.get(k)) for k in ("final_cost", "heldout_mse_ratio", "mean_hidden_activation")):
        out.append(f"The same setting under SGD on 32-patch minibatches{where} ends at J = "
                   f"{_num(theirs['final_cost'])}, ρ̂ = {_num(theirs['mean_hidden_activation'])} and a held-out error "
                   f"{_num(theirs['heldout_mse_ratio'])} of the mean patch's; that section says why.")
    return out


def _spread_words(r: dict) -> Optional[str]:
    cs = r.get("curve_summary") or {}
    if not all(_is_num(cs.get(k)) for k in ("train_spread", "heldout_spread")):
        return None
    return f"{_pct(cs['train_spread'])} and {_pct(cs['heldout_spread'])}"


def _sgd_noise(r: dict, base: Optional[dict]) -> list:
    """The strongest β's SGD run: the noise, and ρ̂ from 32 patches and the KL term's
    curvature as its reason, each beside ``base`` (the default β's SGD run) when given."""
    mb = r.get("minibatch") or {}
    keys = ("batch_size", "active_per_batch", "rho_hat_spread", "sparsity_mean", "sparsity_whole", "cost_mean",
            "cost_std", "cost_whole")
    if not all(_is_num(mb.get(k)) for k in keys) or mb["sparsity_whole"] <= 0 or mb["cost_mean"] <= 0:
        return []
    beta, bs = _num(r["beta"]), mb["batch_size"]
    bmb = (base or {}).get("minibatch") or {}
    has_base = all(_is_num(bmb.get(k)) for k in keys) and bmb["sparsity_whole"] > 0 and bmb["cost_mean"] > 0
    bname = f"β = {_num(base['beta'])}" if has_base else ""
    noise = mb["cost_std"] / mb["cost_mean"]
    text = (f"Under SGD with {bs}-patch minibatches the strongest sparsity weight trains "
            + ("noisily" if not has_base or noise > bmb["cost_std"] / bmb["cost_mean"] else "no more noisily")
            + f": at β = {beta}'s final weights a minibatch's J is {_num(mb['cost_mean'])} ± {_num(mb['cost_std'])} "
            f"(± {_pct(noise)}; on the whole training set {_num(mb['cost_whole'])})")
    if has_base:
        text += f", at {bname}'s ± {_pct(bmb['cost_std'] / bmb['cost_mean'])}"
    spread, bspread = _spread_words(r), (_spread_words(base) if base else None)
    if spread:
        text += (f"; over the last half of the epochs the epoch's mean minibatch J and the held-out J vary by {spread}"
                 + (f" (at {bname} by {bspread})" if bspread else ""))
    out = [text + "."]
    gap = mb["sparsity_mean"] / mb["sparsity_whole"]
    gap_base = bmb["sparsity_mean"] / bmb["sparsity_whole"] if has_base else None
    text = (f"The reason is ρ̂ estimated from {bs} patches: at those weights a unit carries its mean activation in "
            f"about {_num(mb['active_per_batch'])} patches of a minibatch, and a minibatch's ρ̂ of a unit varies by "
            f"{_pct(mb['rho_hat_spread'])} of the whole set's (median over units)"
            + (f"; at {bname} by {_pct(bmb['rho_hat_spread'])}" if has_base else ""))
    text += (". Where ρ̂ ≪ ρ the KL term is steep and curved in ρ̂ (slope about −ρ/ρ̂, curvature ρ/ρ̂², AE12), "
             "and β = " + beta + " multiplies both: a minibatch that catches a unit low costs more than one that "
             f"catches it high saves, and the minibatches' mean sparsity term is {_num(mb['sparsity_mean'])} against "
             f"{_num(mb['sparsity_whole'])} on the whole set at the same weights, {times(gap)} as much")
    if has_base:
        text += f" ({times(gap_base)} at {bname}: {compare(gap, gap_base, 'more', 'less')} of a gap at β = {beta})"
    out.append(text + ".")
    ratio = r.get("heldout_mse_ratio")
    if _is_num(ratio):
        out.append(f"SGD follows that noisy cost and does not settle: it ends at ρ̂ = "
                   f"{_num(r['mean_hidden_activation'])} ({times(r['mean_hidden_activation'] / r['rho'])} ρ) with a "
                   f"held-out error {_num(ratio)} of the mean patch's"
                   + (", worse than predicting the mean patch" if ratio > 1 else "") + ".")
    return out


def _lbfgs_steady(lb: dict, sgd: Optional[dict], source: str = "") -> list:
    """The strongest β's L-BFGS run: whole-set steps, how often J rose, where it ends, and what
    32-patch minibatches make of its weights (against ``sgd``'s, the same setting by SGD)."""
    cs, mb = lb.get("curve_summary") or {}, lb.get("minibatch") or {}
    if not all(_is_num(lb.get(k)) for k in ("final_cost", "mean_hidden_activation", "heldout_mse_ratio")):
        return []
    rises, steps = cs.get("rises"), cs.get("steps")
    text = (f"Full-batch L-BFGS at β = {_num(lb['beta'])}{source} computes ρ̂ over the whole training set at every "
            f"step, so its gradient has no minibatch noise, and its line search seeks a lower J at each step")
    if isinstance(rises, int) and isinstance(steps, int):
        text += (f": J fell at each of its {steps} iterations" if rises == 0 else
                 f": J rose at {rises} of its {steps} iterations")
        scs = (sgd or {}).get("curve_summary") or {}
        if isinstance(scs.get("rises"), int) and isinstance(scs.get("steps"), int):
            text += f" (SGD's epoch J rose at {scs['rises']} of its {scs['steps']} epochs)"
    text += (f". It ends at J = {_num(lb['final_cost'])}, ρ̂ = {_num(lb['mean_hidden_activation'])} "
             f"({times(lb['mean_hidden_activation'] / lb['rho'])} ρ) and a held-out error "
             f"{_num(lb['heldout_mse_ratio'])} of the mean patch's")
    if sgd and _is_num(sgd.get("final_cost")):
        text += f" (SGD: J = {_num(sgd['final_cost'])} on the same training set)"
    out = [text + "."]
    smb = (sgd or {}).get("minibatch") or {}
    if all(_is_num(mb.get(k)) for k in ("sparsity_mean", "sparsity_whole", "cost_mean", "active_per_batch")):
        text = (f"Its code is as sparse as ρ asks (a unit active in about {_num(mb['active_per_batch'])} patches of a "
                f"{mb.get('batch_size')}-patch minibatch), the kind of code minibatches misjudge most: at its weights "
                f"their mean sparsity term is {_num(mb['sparsity_mean'])} against {_num(mb['sparsity_whole'])} on the "
                f"whole set")
        if _is_num(smb.get("cost_mean")):
            text += (f"; their mean J is {_num(mb['cost_mean'])}, {compare(mb['cost_mean'], smb['cost_mean'])} than "
                     f"{_num(smb['cost_mean'])} at SGD's final weights")
            if mb["cost_mean"] < smb["cost_mean"]:
                text += ", so the minibatch cost itself would prefer L-BFGS's weights: SGD's noise, not its bias, keeps it away"
        out.append(text + ".")
    return out


def _choice(choice: dict) -> str:
    setting = choice.get("setting") or choice.get("chosen") or {}
    what = ", ".join(f"{k} = {_num(v) if isinstance(v, float) else v}" for k, v in setting.items()) \
        if isinstance(setting, dict) else str(setting)
    return f"{what} ({choice.get('rule')})"


def _sweep_rows(m: dict) -> dict:
    """{L_hid: [records by increasing λ]} of the sweep's members that trained."""
    rows = {}
    for r in m.get("sweep") or []:
        if isinstance(r, dict) and isinstance(r.get("hidden"), int) and _is_num(r.get("lam")) and not r.get("diverged"):
            rows.setdefault(r["hidden"], []).append(r)
    return {h: sorted(rs, key=lambda r: r["lam"]) for h, rs in sorted(rows.items()) if len(rs) >= 2}


def _trend(values: list) -> str:
    """ "rises", "falls" or "moves" (neither at every step) for a sequence of numbers."""
    d = np.diff(np.asarray(values, dtype=np.float64))
    return ("stays" if (d == 0).all() else "rises" if (d > 0).all() else "falls" if (d < 0).all()
            else "moves")


def _arrow(values: list, fmt=None) -> str:
    return " → ".join((fmt or _q)(v) for v in values)


def _across(name: str, series: dict, nd: int = 3) -> str:
    """How a quantity goes with λ at each L_hid, from {L_hid: values by increasing λ}: "‖W‖² falls
    at every L_hid (25: 990 → 185, 64: ...)", or grouped by trend, "... falls at L_hid 25 and 64
    (...) and moves up and down at 100 (100: 62 → 70 → 42)" (every value where it is not steady)."""
    words = {"rises": "rises", "falls": "falls", "stays": "stays the same", "moves": "moves up and down"}
    groups: dict = {}
    for h, v in series.items():
        groups.setdefault(_trend(v), []).append(h)

    def values(h):
        v = series[h]
        return f"{h}: " + (" → ".join(_q(x, nd) for x in v) if _trend(v) == "moves" else f"{_q(v[0], nd)} → {_q(v[-1], nd)}")

    if len(groups) == 1:
        (trend, hs), = groups.items()
        return f"{name} {words[trend]} at every L_hid ({', '.join(values(h) for h in hs)})"
    parts = [f"{words[t]} at L_hid {' and '.join(map(str, hs))} ({', '.join(values(h) for h in hs)})"
             for t, hs in groups.items()]
    return f"{name} " + " and ".join(parts)


def q1_sweep(m: dict) -> list:
    """Part (d) as an argument from the run's numbers: what λ does (the decay term against the
    reconstruction term: ‖W‖², the reconstruction term, the held-out error, the units'
    smoothness), what L_hid does at the smallest and largest λ, why duplicates rise with λ at
    the largest L_hid (a budget of ‖W‖² that more units share), and the choice."""
    out = []
    rows = {h: rs for h, rs in _sweep_rows(m).items()
            if all(_is_num(r.get(k)) for r in rs for k in ("heldout_mse_ratio", "mean_smoothness"))
            and all(_is_num(_weight_norm(r)) and _is_num((r.get("cost_terms") or {}).get("reconstruction"))
                    for r in rs)}
    if not rows:
        return out
    lams = [r["lam"] for r in next(iter(rows.values()))]
    if any([r["lam"] for r in rs] != lams for rs in rows.values()):
        return out
    series = {k: {h: [f(r) for r in rs] for h, rs in rows.items()} for k, f in (
        ("w", _weight_norm), ("rec", lambda r: r["cost_terms"]["reconstruction"]),
        ("err", lambda r: r["heldout_mse_ratio"]), ("smooth", lambda r: r["mean_smoothness"]))}
    text = (f"Raising λ from {lams[0]:g} to {lams[-1]:g} makes the decay term λ‖W‖² weigh more against the "
            f"reconstruction term: {_across('‖W‖²', series['w'])}, {_across('the reconstruction term', series['rec'], 4)}"
            f", {_across('the held-out error ratio', series['err'])} and "
            f"{_across('the units’ mean smoothness', series['smooth'])}")
    if all(_trend(v) == "falls" for v in series["w"].values()) and all(
            _trend(v) == "rises" for k in ("err", "smooth") for v in series[k].values()):
        text += (". The decay gradient λW pulls every weight towards 0, and what the reconstruction defends least is "
                 "fine detail, which needs large weights of alternating sign: smoother features, a worse "
                 "reconstruction")
    out.append(text + ".")
    hs = list(rows)
    if len(hs) >= 2:
        for j, which in ((0, "smallest"), (len(lams) - 1, "largest")):
            err = [rows[h][j]["heldout_mse_ratio"] for h in hs]
            dist = [rows[h][j].get("distinct_structured_units") for h in hs]
            if all(isinstance(d, int) for d in dist):
                how = {"moves": "moves up and down", "stays": "stays the same"}.get(_trend(err), _trend(err))
                out.append(f"At the {which} λ ({lams[j]:g}), L_hid {_arrow(hs, str)} give held-out error ratios "
                           f"{_arrow(err)} (the error {how} with more units) and {_arrow(dist, str)} distinct "
                           f"structured units.")
        top = hs[-1]
        dup = [r.get("duplicate_units") for r in rows[top]]
        w_last = [series["w"][h][-1] for h in hs]
        w_first = [series["w"][h][0] for h in hs]
        if all(isinstance(d, int) for d in dup) and dup[-1] > dup[0]:
            text = (f"Duplicates rise with λ at the largest L_hid ({top}: {_arrow(dup, str)} of {top} units)")
            budget, budget_first = max(w_last) / min(w_last), max(w_first) / min(w_first)
            if budget < budget_first:
                text += (f": at λ = {lams[-1]:g} the total ‖W‖² hardly depends on L_hid ({_arrow(w_last)} for "
                         f"L_hid {_arrow(hs, str)}, within a factor {budget:.2f}), while at λ = {lams[0]:g} it "
                         f"grows with it ({_arrow(w_first)}, a factor {budget_first:.2f}). A strong decay term sets a "
                         f"budget of weight that more units share rather than extend: each unit's share falls from "
                         f"{_q(w_last[0] / hs[0])} to {_q(w_last[-1] / top)}, and units repeat features instead "
                         f"of learning new ones")
            else:
                text += (f"; the total ‖W‖² at λ = {lams[-1]:g} grows with L_hid as much as at λ = "
                         f"{lams[0]:g} ({_arrow(w_last)} against {_arrow(w_first)}), so a budget of weight does "
                         f"not explain it here")
            out.append(text + ".")
    choice = m.get("sweep_choice")
    if isinstance(choice, dict) and choice.get("rule"):
        out.append(f"Chosen: {_choice(choice)}.")
    return out


# ----------------------------------------------------------------------------- Q2
Q2_ORDER = ((32, 256), (16, 128), (8, 64))


def q2_settings(m: dict) -> list:
    """The (D, P) keys of Q2's metrics in the course's order (32, 256), (16, 128), (8, 64),
    then any others as recorded."""
    names = [k for k in m if k.startswith("D=") and isinstance(m[k], dict)]
    order = [f"D={d},P={p}" for d, p in (m.get("settings", {}).get("settings") or Q2_ORDER)]
    first = [k for k in order if k in names]
    return first + [k for k in names if k not in first]


def q2_chosen(m: dict) -> Optional[str]:
    """The (D, P) with the lowest validation cross-entropy (the model-selection rule)."""
    names = [k for k in q2_settings(m) if isinstance(m[k].get("val_cross_entropy"), (int, float))]
    return min(names, key=lambda k: m[k]["val_cross_entropy"]) if names else None


def q2_training(m: dict) -> list:
    """Part (a): the validation cross-entropies that chose the model, and the baseline."""
    out = []
    names = q2_settings(m)
    best = q2_chosen(m)
    if best:
        vals = ", ".join(f"({k[2:].replace(',P=', ', ')}) {_num(m[k]['val_cross_entropy'], 4)}" for k in names
                         if isinstance(m[k].get("val_cross_entropy"), (int, float)))
        out.append(f"Validation cross-entropy (nats) at each setting's best epoch: {vals}. The rule keeps the lowest: "
                   f"({best[2:].replace(',P=', ', ')}).")
    kn = m.get("kneser_ney") or {}
    if best and isinstance(kn.get("test_cross_entropy"), (int, float)):
        a, b = m[best]["test_cross_entropy"], kn["test_cross_entropy"]
        out.append(f"On the test trigrams the chosen network's cross-entropy is {_num(a, 4)} (perplexity "
                   f"{_num(math.exp(a))}), {compare(a, b)} than the Kneser-Ney trigram baseline's {_num(b, 4)} "
                   f"(perplexity {_num(math.exp(b))}).")
    return out


def _real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _dp(name: str) -> str:
    """ "D=32,P=256" -> "(32, 256)"."""
    return f"({name[2:].replace(',P=', ', ')})"


def q2_n_params(m: dict, name: str) -> Optional[int]:
    """A (D, P) network's parameter count: recorded, or V·D + 3D·P + P + P·V + V."""
    r = m.get(name) or {}
    if isinstance(r.get("n_params"), int):
        return r["n_params"]
    v = (m.get("data") or {}).get("vocab_size", 250)
    try:
        d, p = (int(x) for x in name[2:].split(",P="))
    except ValueError:
        return None
    return v * d + 3 * d * p + p + p * v + v


def q2_gap(r: dict) -> Optional[float]:
    """Validation minus training cross-entropy of a network's kept parameters (recorded), else of
    its history at the best epoch (the training loss there is the mean over that epoch)."""
    if _real(r.get("val_cross_entropy")) and _real(r.get("train_cross_entropy")):
        return r["val_cross_entropy"] - r["train_cross_entropy"]
    h, e = r.get("history") or {}, r.get("best_epoch")
    tr, va = h.get("train_loss"), h.get("val_loss")
    if tr and va and isinstance(e, int) and 1 <= e <= min(len(tr), len(va)):
        return va[e - 1] - tr[e - 1]
    return None


def q2_overfitting(m: dict) -> list:
    """Part (a): where each (D, P) starts to overfit (its best epoch, the validation curve after
    it, the validation-training gap), and whether the largest network does so first, as its
    parameters per training 4-gram predict."""
    out, rows = [], []
    n_train = (m.get("data") or {}).get("n_train")
    for k in q2_settings(m):
        r = m[k]
        h = r.get("history") or {}
        tr, va, e = h.get("train_loss") or [], h.get("val_loss") or [], r.get("best_epoch")
        if not (isinstance(e, int) and 1 <= e <= len(va) == len(tr)):
            continue
        last, gap = len(va), q2_gap(r)
        rows.append((k, e, last, gap, q2_n_params(m, k)))
        gap_text = f"; the validation-training gap of its kept parameters is {_num(gap)} nats" if _real(gap) else ""
        if e < last:
            rise, fall = va[-1] - va[e - 1], tr[e - 1] - tr[-1]
            trend = (f"while its training loss keeps falling (by {_num(fall)})" if fall > 0 else
                     f"and its training loss does not fall either (it changes by {_num(-fall)})")
            out.append(f"{_dp(k)} starts to overfit after epoch {e} of {last}: its validation cross-entropy is "
                       f"lowest there and {'rises' if rise > 0 else 'does not fall below it again'} over the "
                       f"{last - e} epoch{'s' if last - e > 1 else ''} after (by {_num(abs(rise))}) {trend}{gap_text}.")
        else:
            out.append(f"{_dp(k)} does not overfit within its {last} epochs: its validation cross-entropy is lowest at "
                       f"the last one, still falling when training stops{gap_text}.")
    if len(rows) >= 2 and all(n for *_, n in rows):
        rows.sort(key=lambda r: -r[4])
        big = rows[0]
        per = (lambda n: f", {_num(n / n_train, 2)} per training 4-gram") if isinstance(n_train, int) and n_train else (
            lambda n: "")
        sizes = "; ".join(f"{_dp(k)} {n:,}{per(n)}" for k, *_, n in rows)
        # the turn comes no later for a larger network; a capped run turns "after" its last epoch
        turn = [e if e < last else last + 1 for _, e, last, _, _ in rows]
        earlier = all(a <= b for a, b in zip(turn, turn[1:]))
        gaps = [g for *_, g, _ in rows]
        wider = all(_real(g) for g in gaps) and all(a >= b for a, b in zip(gaps, gaps[1:]))
        verdict = ("bears this out" if earlier and wider else "only partly bears this out" if earlier or wider else
                   "does not bear this out")
        text = (f"Parameters: {sizes}. A network with more parameters per training example can fit the accidents of "
                f"the training 4-grams (which words happened to follow a context) sooner, so the largest should overfit "
                f"first and widest. The run {verdict}: "
                f"from the largest to the smallest, the best epochs are "
                f"{', '.join(str(e) + ('' if e < last else ' (the last)') for _, e, last, _, _ in rows)} "
                f"({'no later for a larger network' if earlier else 'not in the order of size'})")
        if all(_real(g) for g in gaps):
            text += (f" and the gaps {', '.join(_num(g) for g in gaps)} nats "
                     f"({'wider for a larger network' if wider else 'not in the order of size'})")
        out.append(text + f"; {_dp(big[0])} is the largest.")
    return out


def _setting_text(s: dict) -> str:
    opt = {"adam": "Adam", "sgd": "SGD with momentum"}.get(s.get("optimizer"), str(s.get("optimizer")))
    wd = s.get("weight_decay")
    rate = (f"a constant rate of {_num(s.get('lr'))}" if s.get("schedule") == "constant" else
            f"a peak rate of {_num(s.get('lr'))} ({_num(s.get('warmup', 0.5))} epoch of warm-up, then a cosine decay)")
    return (f"D = {s.get('D')}, P = {s.get('P')}; dropout {_num(s.get('dropout'))} on the hidden layer, {opt} at "
            f"{rate} for {s.get('epochs')} epochs, batch {s.get('batch')}"
            + (f", weight decay {_num(wd)}" if _real(wd) and wd > 0 else ""))


def _over_seeds(r: dict, key: str = "test_cross_entropy") -> str:
    """ "2.601 nats (± 0.0045 over 3 seeds: 2.600, 2.605, 2.596)", or "2.601 nats" for one seed."""
    per = r.get(f"{key}_per_seed") or []
    if len(per) < 2:
        return f"{_num(r[key], 4)} nats"
    return (f"{_num(r[key], 4)} nats (± {_num(r[f'{key}_std'], 2)} over {len(per)} seeds: "
            f"{', '.join(_num(v, 4) for v in per)})")


def q2_tuned(m: dict) -> list:
    """The tuned network against Kneser-Ney and the course's networks, its mixture with the
    counts, and why it beats the counts where the course's networks do not: its capacity, and
    its validation-training gap under dropout."""
    t, kn = m.get("tuned") or {}, m.get("kneser_ney") or {}
    if not (_real(t.get("test_cross_entropy")) and _real(kn.get("test_cross_entropy"))):
        return []
    a, b = t["test_cross_entropy"], kn["test_cross_entropy"]
    per = t.get("test_cross_entropy_per_seed") or [a]
    below = sum(v < b for v in per)
    spread = t.get("test_cross_entropy_std") or 0.0
    out = [f"The tuned network ({_setting_text(t.get('setting') or {})}; chosen on the validation split) reaches a test "
           f"cross-entropy of {_over_seeds(t)}, {compare(a, b)} than Kneser-Ney's {_num(b, 4)} by "
           f"{_num(abs(a - b), 2)} nats"
           + (f", {'more than' if abs(a - b) > spread else 'within'} the spread over seeds; {below} of {len(per)} "
              f"seeds are below Kneser-Ney." if len(per) > 1 else ".")]
    mix = m.get("interpolated_tuned") or {}
    if _real(mix.get("test_cross_entropy")):
        c = mix["test_cross_entropy"]
        lower = c < min(a, b)
        out.append(f"Mixed with Kneser-Ney (the network's weight {_num(mix.get('weight'), 2)}, chosen on validation) it "
                   f"reaches {_over_seeds(mix)}, "
                   + ("lower still than either alone: the two models err on different trigrams (the next finding says "
                      "which)." if lower else f"{compare(c, min(a, b))} than the better of the two alone."))
    names = [k for k in q2_settings(m) if _real(m[k].get("test_cross_entropy"))]
    if names:
        big = max(names, key=lambda k: q2_n_params(m, k) or 0)
        n_t, n_b = t.get("n_params"), q2_n_params(m, big)
        g_t, g_b = q2_gap({"val_cross_entropy": t.get("val_cross_entropy"),
                           "train_cross_entropy": t.get("train_cross_entropy")}), q2_gap(m[big])
        best_course = min(m[k]["test_cross_entropy"] for k in names)
        text = (f"The course's networks reach {_num(best_course, 4)} at best ({compare(best_course, b)} than "
                f"Kneser-Ney). What the tuned network adds is capacity, held back by dropout")
        if isinstance(n_t, int) and n_b:
            text += f": {n_t:,} parameters, {_num(n_t / n_b, 2)} times {_dp(big)}'s"
        if _real(g_t) and _real(g_b):
            text += f". Its validation-training gap at its kept epoch is {_num(g_t)} nats against {_dp(big)}'s {_num(g_b)}"
            v_t, v_b = t.get("val_cross_entropy"), m[big].get("val_cross_entropy")
            tr_t, tr_b = t.get("train_cross_entropy"), m[big].get("train_cross_entropy")
            if g_t <= g_b:
                text += ": dropout keeps the larger network from overfitting more than the small one"
            elif _real(v_t) and _real(v_b) and _real(tr_t) and _real(tr_b):
                text += (f": it overfits more, but fits the training 4-grams so much "
                         f"{'better' if tr_t < tr_b else 'worse'} (training cross-entropy {_num(tr_t, 4)} against "
                         f"{_num(tr_b, 4)}) that its validation cross-entropy is {compare(v_t, v_b)} "
                         f"({_num(v_t, 4)} against {_num(v_b, 4)})")
        out.append(text + ".")
    return out


FREQ_WORDS = {"0": "never seen in training", "1-5": "seen 1-5 times", "6-50": "seen 6-50 times",
              ">50": "seen more than 50 times"}


def q2_context_frequency(m: dict) -> list:
    """Where each model wins by how often the test trigram was a training context: the network
    against Kneser-Ney per frequency group, whether the difference rises as the counts grow (the
    reason: a count model has only shorter contexts to back off to for a trigram it never saw, the
    network scores every trigram through its words' embeddings), and which groups make the chosen
    course network's gap to Kneser-Ney."""
    f = m.get("by_context_frequency") or {}
    ce, bins, share = f.get("cross_entropy") or {}, f.get("bins") or [], f.get("share") or []
    kn = ce.get("kneser_ney")
    if not kn or len(bins) != len(share):
        return []
    out = ["By how often the test trigram was the context of a training 4-gram: "
           + ", ".join(f"{FREQ_WORDS.get(b, b)} for {_pct(s)} of the test rows" for b, s in zip(bins, share)) + "."]
    diffs = {n: [None if a is None or k is None else a - k for a, k in zip(ce[n], kn)] for n in ce}
    for name in [n for n in ("tuned", q2_chosen(m)) if n and n in ce]:
        d = diffs[name]
        who = "The tuned network" if name == "tuned" else f"The chosen course network {_dp(name)}"
        wins = [FREQ_WORDS.get(b, b) + f" (by {_num(-x, 2)})" for b, x in zip(bins, d) if x is not None and x < 0]
        loses = [FREQ_WORDS.get(b, b) + f" (by {_num(x, 2)})" for b, x in zip(bins, d) if x is not None and x >= 0]
        if wins:
            text = f"{who} is lower than Kneser-Ney in contexts {'; '.join(wins)}"
            text += f" and higher in contexts {'; '.join(loses)}" if loses else ": in every group"
        else:
            text = f"{who} is higher than Kneser-Ney in every group: contexts {'; '.join(loses)}"
        seen = [(b, x) for b, x in zip(bins, d) if x is not None]
        if name == "tuned":
            lead = min(seen, key=lambda bx: bx[1])
            if lead[0] == bins[0] and lead[1] < 0:
                text += (f". Its lead is largest in the contexts {FREQ_WORDS.get(lead[0], lead[0])}, as the reason "
                         "predicts: for a trigram it never saw a count model can only back off to the last two words, "
                         "then one, while the network scores every trigram through the embeddings of its words, which "
                         "words used in similar places share; where a context was seen, its counts are evidence the "
                         "network has to match")
            else:
                text += (f". Its lead is largest in contexts {FREQ_WORDS.get(lead[0], lead[0])}, not in the unseen "
                         "ones, against the reason one would give (a count model backs off to shorter contexts for a "
                         "trigram it never saw, the network generalises through its words' embeddings)")
        else:
            parts = [(b, x * s) for b, x, s in zip(bins, d, share) if x is not None]
            total = sum(x for _, x in parts)
            worst = max(parts, key=lambda p: p[1])
            text += (f". Weighted by each group's share of the test rows, the differences add up to its whole gap of "
                     f"{_num(total, 2)} nats, and contexts {FREQ_WORDS.get(worst[0], worst[0])} contribute the most "
                     f"({_num(worst[1], 2)})")
            seen_part = sum(x for b, x in parts if b != bins[0])
            unseen = d[0]
            if seen_part > total - seen_part:
                text += (f"; contexts seen in training, whose continuations the counts record and a network has to "
                         f"fit, make {_num(seen_part, 2)} of it")
                if unseen is not None and unseen <= 0:
                    text += (f", while in unseen contexts it is {'level with' if unseen == 0 else 'below'} Kneser-Ney: "
                             f"its gap is one of fitting, not of generalising")
                t, r = m.get("tuned") or {}, m.get(name) or {}
                td = diffs.get("tuned")
                if td and _real(t.get("train_cross_entropy")) and _real(r.get("train_cross_entropy")):
                    below = [b for b, x in zip(bins[1:], td[1:]) if x is not None and x < 0]
                    text += (f". The tuned network fits the training 4-grams "
                             f"{'more' if t['train_cross_entropy'] < r['train_cross_entropy'] else 'less'} closely "
                             f"(training cross-entropy {_num(t['train_cross_entropy'], 4)} against "
                             f"{_num(r['train_cross_entropy'], 4)}) and is below Kneser-Ney in {len(below)} of the "
                             f"{len(bins) - 1} groups of seen contexts")
            else:
                text += (f"; contexts never seen in training make the larger part ({_num(total - seen_part, 2)}): it "
                         f"generalises worse than the counts' back-off")
        out.append(text + ".")
    return out


def q2_predictions(m: dict) -> list:
    """Part (b): the top prediction after each anchor trigram, beside Kneser-Ney's."""
    out = []
    for tri, a in (m.get("anchors") or {}).items():
        if not isinstance(a, dict) or not a.get("neural"):
            continue
        w, p = a["neural"][0]
        used = a.get("trigram", tri)
        role = a.get("role")
        sub = a.get("stands_for", tri) if a.get("source") == "substitute" else None
        lead = f"“{used}”" + (f" ({role}" + (f", standing in for “{sub}”" if sub else "") + ")" if role else "")
        text = f"After {lead} the network's top word is “{w}” (p = {_num(p)})"
        kn = a.get("kneser_ney")
        if kn:
            text += (", as Kneser-Ney's" if kn[0][0] == w else f"; Kneser-Ney's is “{kn[0][0]}”")
        out.append(text + ".")
    ranks = [s.get("rank_true") for s in m.get("samples") or [] if isinstance(s.get("rank_true"), int)]
    if ranks:
        top10 = sum(r < 10 for r in ranks)
        out.append(f"Of the {len(ranks)} random test trigrams, the true fourth word is among the network's top 10 "
                   f"in {top10}.")
    return out


# ----------------------------------------------------------------------------- Q3
def label(name: str) -> str:
    return "the logistic baseline" if name == "baseline" else name.upper()


def cap(text: str) -> str:
    """``text`` with its first letter upper-case (a label opening a sentence)."""
    return text[:1].upper() + text[1:]


def q3_gradients(m: dict) -> list:
    """Part (a): how much of the gradient reaches the first step, at initialisation and trained."""
    out = []
    flows = {k: m[k]["gradient_flow"] for k in ("rnn", "lstm", "gru") if isinstance(m.get(k), dict)
             and m[k].get("gradient_flow")}
    for when, word in (("init", "At initialisation"), ("trained", "After training")):
        decay = {k: f[when][0] / f[when][-1] for k, f in flows.items() if f.get(when) and f[when][-1] > 0}
        if not decay:
            continue
        t = len(next(iter(flows.values()))[when])
        parts = ", ".join(f"{k.upper()} 10^{np.log10(v):.1f}" if v > 0 else f"{k.upper()} 0 (below float32's range)"
                          for k, v in decay.items())
        most = max(decay, key=decay.get)
        out.append(f"{word}, the gradient reaching step 1 is, relative to the one at step {t}: {parts}; "
                   f"{most.upper()} carries the most of it back through the {t} steps.")
    return out


def q3_results(m: dict) -> list:
    """Part (b): the ranking, each gap against the spread over seeds, the gated cells against
    the baseline, and how validation tracked test."""
    from experiments import tables

    models = [k for k in ("rnn", "lstm", "gru", "baseline") if isinstance(m.get(k), dict)
              and "test_accuracy_per_seed" in m[k]]
    if not models:
        return []
    out = []
    seeds = m[models[0]].get("seeds", [])
    ranked = sorted(models, key=lambda k: -m[k]["test_accuracy"])
    ranking = label(ranked[0]) + f" {_pct(m[ranked[0]]['test_accuracy'])}"
    for prev, k in zip(ranked, ranked[1:]):
        same = _pct(m[prev]["test_accuracy"]) == _pct(m[k]["test_accuracy"])
        ranking += (" = " if same else " > ") + f"{label(k)} {_pct(m[k]['test_accuracy'])}"
    out.append("Mean test accuracy over " + (f"{len(seeds)} seeds" if len(seeds) != 1 else "one seed") + ": "
               + ranking + ".")
    if len(seeds) > 1:
        out.append("A gap counts as larger than the seeds explain when it exceeds the spread, the sum of the two "
                   "models' standard deviations over seeds.")
        for a, b, g in tables.seed_gaps({k: m[k] for k in ranked}):
            out.append(f"{cap(label(a))} exceeds {label(b)} by {100 * g['gap']:.1f} points, "
                       + ("more than" if g["exceeds"] else "within") + f" the spread of {100 * g['spread']:.1f}.")
    else:
        out.append("With one seed there is no spread to tell a gap from noise.")
    for k in ("rnn", "lstm", "gru"):
        r = m.get(k)
        if not isinstance(r, dict) or "members" not in r or not r["members"]:
            continue
        v, t = r.get("val_accuracy"), r["members"][0].get("test_accuracy")
        if isinstance(v, (int, float)) and isinstance(t, (int, float)):
            out.append(f"{k.upper()}: validation accuracy (training part, seed {r['members'][0].get('seed')}) "
                       f"{_pct(v)}, test accuracy after the refit {_pct(t)}.")
    return out


def q3_confusions(m: dict) -> list:
    """Part (c): each model's most confused pair of classes (seed S, test windows) and the time per epoch."""
    out = []
    names = (m.get("data") or {}).get("class_names") or []
    desc = (m.get("data") or {}).get("class_descriptions") or {}
    for k in ("rnn", "lstm", "gru", "baseline"):
        r = m.get(k)
        if not isinstance(r, dict) or not r.get("confusion_test") or not names:
            continue
        cm = np.asarray(r["confusion_test"], dtype=float)
        off = cm.copy()
        np.fill_diagonal(off, 0)
        i, j = np.unravel_index(int(np.argmax(off)), off.shape)
        if off[i, j] == 0:
            out.append(f"{cap(label(k))}: no test window is misclassified.")
            continue
        share = off[i, j] / max(cm[i].sum(), 1)
        out.append(f"{cap(label(k))}: the most frequent error puts {int(off[i, j])} {names[i]} windows "
                   f"({desc.get(names[i], names[i])}; {_pct(share)} of them) into {names[j]} "
                   f"({desc.get(names[j], names[j])}).")
    secs = {k: m[k].get("seconds_per_epoch") for k in ("rnn", "lstm", "gru") if isinstance(m.get(k), dict)}
    if secs.get("rnn") and all(isinstance(v, (int, float)) for v in secs.values()):
        out.append("Time per epoch of the refits: " + ", ".join(f"{k.upper()} {v:.2f} s" for k, v in secs.items())
                   + "; " + ", ".join(f"{k.upper()} {secs[k] / secs['rnn']:.1f} × the RNN" for k in secs if k != "rnn")
                   + ".")
    return out


# ----------------------------------------------------------------------------- Q3: why the gradient flows as it does
AGREE_DECADES = 1.0  # a predicted line agrees with the measured one when they part by at most a factor 10 over the fit
GATED = ("lstm", "gru")
GATE_NAME = {"lstm": "forget gate", "gru": "update gate"}


def q3_ablations(m: dict) -> list:
    """The keys of Q3's forget-bias ablations in ``m`` ("lstm_forget_bias_1", ...)."""
    return [k for k in m if k.startswith("lstm_forget_bias_") and isinstance(m[k], dict)]


def _forget_bias(m: dict) -> float:
    b = (m.get("settings") or {}).get("forget_bias", 0.0)
    return float(b) if isinstance(b, (int, float)) else 0.0


def flow_label(m: dict, k: str) -> str:
    """ "RNN", "GRU", "LSTM" ("LSTM (b_f = 0)" beside an ablation) or "LSTM with b_f = 1"."""
    if k.startswith("lstm_forget_bias_"):
        return f"LSTM with b_f = {m[k].get('forget_bias', '?'):g}"
    if k == "lstm" and q3_ablations(m):
        return f"LSTM (b_f = {_forget_bias(m):g})"
    return k.upper()


def _prediction(m: dict, k: str, when: str) -> Optional[dict]:
    """The recorded prediction of ``k``'s gradient flow ``when`` ("init", "trained") with its
    span: None unless the three factors and the fitted steps are numbers."""
    r = m.get(k)
    p = ((r or {}).get("gradient_flow") or {}).get("predicted", {}).get(when) if isinstance(r, dict) else None
    if not isinstance(p, dict) or not all(isinstance(p.get(f), (int, float)) and p[f] > 0
                                          for f in ("factor_measured", "factor_path", "factor_whole")):
        return None
    steps = p.get("fit_steps")
    if not (isinstance(steps, list) and len(steps) == 2 and steps[1] > steps[0]):
        return None
    return {**p, "span": steps[1] - steps[0]}


def decades(factor: float, span: int) -> float:
    """log10 of ``factor`` to the power ``span``: the decades a line of that factor per step
    falls (negative) or rises over ``span`` steps."""
    return span * math.log10(factor)


def agreement(predicted: float, measured: float, span: int) -> str:
    """Whether a predicted factor per step agrees with the measured one over ``span`` steps:
    "agrees (within 0.3 decades)" when the two lines part by at most :data:`AGREE_DECADES`
    decades, else whether the prediction under- or overestimates what reaches the first
    fitted step, and by how much."""
    off = decades(predicted, span) - decades(measured, span)
    if abs(off) <= AGREE_DECADES:
        return f"agrees (within {abs(off):.1f} decades)"
    return f"{'under' if off < 0 else 'over'}estimates what reaches the early steps (by {abs(off):.1f} decades)"


def _flow_keys(m: dict) -> list:
    return [k for k in ("rnn", "lstm", "gru", *q3_ablations(m)) if isinstance(m.get(k), dict)]


def _reach(m: dict, k: str, when: str) -> Optional[float]:
    """log10 of g_1 / g_T: the share of the gradient at T that reaches step 1 (None when not recorded or 0)."""
    g = ((m.get(k) or {}).get("gradient_flow") or {}).get(when)
    if not g or not all(isinstance(v, (int, float)) for v in (g[0], g[-1])) or g[0] <= 0 or g[-1] <= 0:
        return None
    return math.log10(g[0] / g[-1])


def q3_gradient_slopes(m: dict) -> list:
    """Figure 13 checked, one sentence per cell (and ablation): what sets its path's factor
    (the RNN's λ from W_h and the mean tanh', (RNN8); the mean forget or update gate), the
    factor per step back predicted by the path alone (BPTT7) and by the whole step (BPTT8)
    against the measured one, at initialisation and after training, and whether each
    prediction agrees over the fitted steps (:func:`agreement`)."""
    out = []
    for k in _flow_keys(m):
        ps = [(w, p) for w, p in (("at initialisation", _prediction(m, k, "init")),
                                  ("after training", _prediction(m, k, "trained"))) if p is not None]
        if not ps:
            continue
        arrow = lambda f: " → ".join(f(p) for _, p in ps)  # noqa: E731
        if k == "rnn" and all(isinstance(p.get(f), (int, float)) for _, p in ps
                              for f in ("w_h_spectral_radius", "mean_tanh_prime")):
            why = (f"W_h's spectral radius {arrow(lambda p: format(p['w_h_spectral_radius'], '.3f'))} and the mean "
                   f"tanh' {arrow(lambda p: format(p['mean_tanh_prime'], '.3f'))}, so λ (RNN8) "
                   f"{arrow(lambda p: format(p['factor_path'], '.3f'))}")
        elif all(isinstance(p.get("mean_gate"), (int, float)) for _, p in ps):
            why = (f"mean {GATE_NAME['lstm' if k.startswith('lstm') else k]} "
                   f"{arrow(lambda p: format(p['mean_gate'], '.3f'))}")
        else:
            why = ""
        steps = sorted({f"{p['fit_steps'][0]}-{p['fit_steps'][1]}" for _, p in ps})
        text = (f"{flow_label(m, k)}, {' → '.join(w for w, _ in ps)}: " + (f"{why}; " if why else "")
                + f"factor per step back measured {arrow(lambda p: format(p['factor_measured'], '.3f'))} "
                f"(fitted over steps {', '.join(steps)}), predicted by the path alone (BPTT7) "
                f"{arrow(lambda p: format(p['factor_path'], '.3f'))} and by the whole step (BPTT8) "
                f"{arrow(lambda p: format(p['factor_whole'], '.3f'))}: ")
        for name, key in (("the path alone", "factor_path"), ("the whole step", "factor_whole")):
            text += name + " " + " and ".join(f"{agreement(p[key], p['factor_measured'], p['span'])} {w}"
                                              for w, p in ps) + ("; " if key == "factor_path" else ".")
        out.append(text)
    return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def q3_gradient_reasons(m: dict) -> list:
    """Why Figure 13 looks as it does, each reason checked against the run's numbers: the
    gates at initialisation against σ(bias) and what their paths alone would keep; whether
    the other paths of the step carry what the gated paths lose (the whole step agrees where
    the path alone does not); the RNN's λ against 1; and after training, the measured factor,
    the mean gate and the path's factor against their values at initialisation."""
    out = []
    init = {k: _prediction(m, k, "init") for k in ("rnn", *GATED)}
    gated = {k: p for k, p in init.items() if k in GATED and p and isinstance(p.get("mean_gate"), (int, float))}
    if gated:
        bias = {"lstm": _forget_bias(m), "gru": 0.0}
        parts = []
        for k, p in gated.items():
            s, steps = _sigmoid(bias[k]), len(m[k]["gradient_flow"]["init"]) - 1
            near = "near" if abs(p["mean_gate"] - s) <= 0.05 else "away from"
            parts.append(f"the {k.upper()}'s mean {GATE_NAME[k]} is {p['mean_gate']:.3f}, {near} σ({bias[k]:g}) = "
                         f"{s:.3f}, and a path that multiplies by it at every step keeps {p['mean_gate']:.2f}^{steps} "
                         f"≈ 10^{decades(p['mean_gate'], steps):.0f} of the gradient over the window")
        out.append("At initialisation the gates' pre-activations are centred near their biases, so "
                   + "; ".join(parts) + ".")
        slow = {k: p for k, p in gated.items()
                if decades(p["factor_path"], p["span"]) - decades(p["factor_measured"], p["span"]) < -AGREE_DECADES
                and abs(decades(p["factor_whole"], p["span"]) - decades(p["factor_measured"], p["span"]))
                <= AGREE_DECADES}
        if slow:
            out.append("The measured gradient of the " + " and the ".join(k.upper() for k in slow)
                       + " keeps more than its gated path alone predicts ("
                       + ", ".join(f"{k.upper()} {p['factor_measured']:.3f} against {p['factor_path']:.3f} per step"
                                   for k, p in slow.items())
                       + ") and as the whole step (BPTT8) predicts: the gradient also returns through h_{t−1} and "
                         "W_h (LSTM11; the last two terms of GRU11), and these paths carry what the gate loses.")
    p = init.get("rnn")
    if p and isinstance(p.get("w_h_spectral_radius"), (int, float)):
        off = decades(p["factor_measured"], p["span"])
        what = ("keeps its gradient" if off >= -AGREE_DECADES else "loses its gradient geometrically")
        out.append(f"The RNN {what} at initialisation (10^{off:.1f} over {p['span']} steps): Xavier's W_h "
                   f"(entries of variance 1/H) has spectral radius {p['w_h_spectral_radius']:.3f}, the mean tanh' "
                   f"{p['mean_tanh_prime']:.3f} scales it to λ = {p['factor_path']:.3f}, "
                   + ("near 1." if abs(decades(p["factor_path"], p["span"])) <= 2 * AGREE_DECADES
                      else "away from 1."))
    for k in (*GATED, *q3_ablations(m)):
        a, b = _prediction(m, k, "init"), _prediction(m, k, "trained")
        if not (a and b and isinstance(a.get("mean_gate"), (int, float)) and isinstance(b.get("mean_gate"),
                                                                                      (int, float))):
            continue
        carries = "carries more of its gradient" if b["factor_measured"] > a["factor_measured"] else \
            "carries less of its gradient"
        gate = GATE_NAME["lstm" if k.startswith("lstm") else k]
        moved = abs(b["mean_gate"] - a["mean_gate"])
        text = (f"After training the {flow_label(m, k)} {carries}: {b['factor_measured']:.3f} per step against "
                f"{a['factor_measured']:.3f} at initialisation; its mean {gate} moved from {a['mean_gate']:.3f} to "
                f"{b['mean_gate']:.3f} while its path's factor (BPTT7) went from {a['factor_path']:.3f} to "
                f"{b['factor_path']:.3f}")
        path_up = b["factor_path"] - a["factor_path"]
        if path_up > 2 * moved and path_up > 0:
            text += (": the gradient travels on the units and windows whose gates stay near 1, which the product of "
                     "(BPTT7) weights and the mean gate hides")
        out.append(text + ".")
    return out


def q3_forget_bias(m: dict) -> list:
    """The forget-gate bias ablation against the default LSTM: its gate and gradient flow at
    initialisation and after training, and its test accuracy on the same seeds against the
    spread over seeds (twice the default's standard deviation when the ablation has one
    seed), reported whichever way it comes out."""
    out = []
    d = m.get("lstm")
    for k in q3_ablations(m):
        r = m[k]
        if not isinstance(d, dict):
            continue
        seeds = r.get("seeds") or []
        b, b0 = r.get("forget_bias"), _forget_bias(m)
        if not isinstance(b, (int, float)):
            continue
        many = (m.get("settings") or {}).get("seeds")
        head = (f"The LSTM with its forget-gate bias at b_f = {b:g} instead of {b0:g} ("
                + (f"seed {seeds[0]} only; `--ablation-seeds {many}` trains all {many} seeds" if len(seeds) == 1
                   and isinstance(many, int) and many > 1 else f"seed {seeds[0]}" if len(seeds) == 1
                   else f"seeds {', '.join(map(str, seeds))}")
                + ", each from the default's initial weights, so that b_f is the only difference)")
        pa, pd = _prediction(m, k, "init"), _prediction(m, "lstm", "init")
        ra, rd = _reach(m, k, "init"), _reach(m, "lstm", "init")
        if pa and pd and isinstance(pa.get("mean_gate"), (int, float)) and isinstance(pd.get("mean_gate"),
                                                                                        (int, float)):
            head += (f": at initialisation its mean forget gate is {pa['mean_gate']:.3f} (σ({b:g}) = "
                     f"{_sigmoid(b):.3f}) against {pd['mean_gate']:.3f}, and its gradient's factor per step back is "
                     f"{pa['factor_measured']:.3f} against {pd['factor_measured']:.3f}")
            if ra is not None and rd is not None:
                head += f", so step 1 receives 10^{ra:.1f} of the gradient at T against 10^{rd:.1f}"
        ta, td = _prediction(m, k, "trained"), _prediction(m, "lstm", "trained")
        if ta and td:
            head += (f"; after training the factor is {ta['factor_measured']:.3f} against "
                     f"{td['factor_measured']:.3f}")
        out.append(head + ".")
        la, ld = ((x.get("history") or {}).get("train_loss") for x in (r, d))
        if la and ld and len(la) == len(ld):
            out.append(f"Its training loss (seed {seeds[0]}, mean over the last epoch) ends at {_num(la[-1])} against "
                       f"the default's {_num(ld[-1])}: {compare(la[-1], ld[-1])}.")
        acc_a = r.get("test_accuracy_per_seed") or []
        by_seed = {mm.get("seed"): mm for mm in d.get("members") or []}
        same = [by_seed[s] for s in seeds if s in by_seed]
        if len(same) != len(seeds) or not acc_a:
            continue
        acc_d = [mm["test_accuracy"] for mm in same]
        gap = float(np.mean(acc_a) - np.mean(acc_d))
        if len(seeds) > 1:
            spread = float(np.std(acc_a, ddof=1) + np.std(acc_d, ddof=1))
            spread_text = "the sum of the two standard deviations over these seeds"
        elif len(d.get("test_accuracy_per_seed") or []) > 1:
            spread = 2.0 * float(d["test_accuracy_std"])
            spread_text = (f"twice the default's standard deviation over its {len(d['test_accuracy_per_seed'])} "
                           "seeds; one ablation seed has none of its own")
        else:
            spread = None
        text = (f"Its test accuracy is {_pct(float(np.mean(acc_a)))} against the default LSTM's "
                f"{_pct(float(np.mean(acc_d)))} on the same seed{'s' if len(seeds) > 1 else ''}")
        loss_a, loss_d = r.get("test_loss"), (float(np.mean([mm["test_loss"] for mm in same]))
                                              if all("test_loss" in mm for mm in same) else None)
        if isinstance(loss_a, (int, float)) and loss_d is not None:
            text += f" (test loss {_num(loss_a)} against {_num(loss_d)})"
        text += f": {compare(gap, 0.0, 'higher', 'lower')} by {abs(100 * gap):.1f} points"
        if spread is None:
            text += ", with no spread over seeds to weigh the gap against."
        else:
            within = abs(gap) <= spread
            text += (f", {'within' if within else 'more than'} the spread of {100 * spread:.1f} ({spread_text}): "
                     + ("the seeds alone move the accuracy as much, so this run does not show that the bias changes it."
                        if within else "a change the seeds do not explain."))
        out.append(text)
    return out


# ----------------------------------------------------------------------------- Q3: overfitting and the choice
def _val_turn(r: dict) -> Optional[dict]:
    """The validation run's turn: the epoch of lowest validation loss, its loss, the last
    epoch's, the training loss at both, and the validation accuracy at both (None when the
    history lacks them)."""
    h = (r.get("validation") or {}).get("history") or {}
    vl, tl = h.get("val_loss"), h.get("train_loss")
    if not vl or not tl or len(vl) != len(tl):
        return None
    e = int(np.argmin(vl)) + 1
    va = h.get("val_accuracy")
    return {"epoch": e, "epochs": len(vl), "val_min": vl[e - 1], "val_last": vl[-1], "train_at": tl[e - 1],
            "train_last": tl[-1], "acc_at": va[e - 1] if va else None, "acc_last": va[-1] if va else None}


def q3_overfitting(m: dict) -> list:
    """Per recurrent model: training against test accuracy and loss (means over the refit's
    seeds), the epoch where its validation run's validation loss turns upwards and what the
    training loss and validation accuracy do after it, which iterate the refit keeps, and
    its parameters per training window."""
    out = []
    keep = (m.get("settings") or {}).get("keep")
    n_train = (m.get("data") or {}).get("n_train")
    for k in ("rnn", "lstm", "gru"):
        r = m.get(k)
        if not isinstance(r, dict) or not all(isinstance(r.get(f), (int, float)) for f in
                                              ("train_accuracy", "test_accuracy", "train_loss", "test_loss")):
            continue
        n = len(r.get("seeds") or [])
        gap = r["train_accuracy"] - r["test_accuracy"]
        text = (f"{k.upper()}: training accuracy {_pct(r['train_accuracy'])} against {_pct(r['test_accuracy'])} on "
                f"the test windows (loss {_num(r['train_loss'])} against {_num(r['test_loss'])}; "
                + (f"means over {n} seeds" if n > 1 else "one seed") + f"), a gap of {100 * gap:.1f} points")
        turn = _val_turn(r)
        if turn:
            e, last = turn["epoch"], turn["epochs"]
            if e < last:
                rise = turn["val_last"] - turn["val_min"]
                text += (f". In its validation run the validation loss is lowest at epoch {e} of {last} "
                         f"({_num(turn['val_min'])}) and ends {_num(rise)} above it, while the training loss goes "
                         f"from {_num(turn['train_at'])} to {_num(turn['train_last'])}")
                acc = [turn[a] for a in ("acc_at", "acc_last") if isinstance(turn[a], (int, float))]
                if len(acc) == 2:
                    text += f"; its validation accuracy goes from {_pct(acc[0])} at epoch {e} to {_pct(acc[1])}"
                if turn["train_last"] < turn["train_at"]:
                    if len(acc) == 2 and acc[1] > acc[0]:
                        text += (f": after epoch {e} it fits the training subjects more closely and still classifies "
                                 "more held-out windows right, but gives the true class of some of them less "
                                 "probability, so the overfitting shows in the validation loss before the accuracy")
                    else:
                        text += (f": after epoch {e} it fits the training subjects more closely without classifying "
                                 "the held-out subjects better")
            else:
                text += (f". Its validation run's validation loss is lowest at its last epoch, {last}: no turn, no "
                         "sign of overfitting within its epochs")
        if keep == "last" and isinstance(r.get("epochs"), int):
            text += (f". The refit keeps the last iterate, epoch {r['epochs']}"
                     + (", so the test numbers include the epochs after the turn" if turn and turn["epoch"] < last
                        else ""))
        if isinstance(r.get("n_params"), int) and isinstance(n_train, int) and n_train > 0:
            text += (f"; its {r['n_params']:,} parameters are {r['n_params'] / n_train:.0f} per training window "
                     f"({n_train:,})")
        out.append(text + ".")
    return out


def q3_choice(m: dict) -> list:
    """The final choice between the three cells: the highest mean test accuracy; among the
    cells whose gap to it is within the spread over seeds, the one that trains in the least
    time (epochs × seconds per epoch); with the overfitting of the chosen one and the
    baseline for scale. Says that the choice reads the test windows."""
    cells = [k for k in ("rnn", "lstm", "gru") if isinstance(m.get(k), dict) and m[k].get("test_accuracy_per_seed")]
    if len(cells) < 2:
        return []
    from mp_jax.engine import metrics

    best = max(cells, key=lambda k: m[k]["test_accuracy"])
    n = len(m[best]["test_accuracy_per_seed"])
    gaps = {k: metrics.compare_over_seeds(m[best]["test_accuracy_per_seed"], m[k]["test_accuracy_per_seed"])
            for k in cells if k != best}
    tied = [k for k, g in gaps.items() if not g["exceeds"]] if n > 1 else []

    def cost(k):
        r = m[k]
        return r["epochs"] * r["seconds_per_epoch"] if isinstance(r.get("epochs"), int) and isinstance(
            r.get("seconds_per_epoch"), (int, float)) else math.inf

    pick = min([best, *tied], key=cost)
    parts = [f"{k.upper()} {_pct(m[k]['test_accuracy'])}" for k in sorted(cells, key=lambda k: -m[k]["test_accuracy"])]
    text = f"Final choice: the {pick.upper()}. Mean test accuracy: " + ", ".join(parts)
    if n < 2:
        text += "; with one seed there is no spread, so the choice rests on these point estimates"
    elif not tied:
        text += (f"; the {best.upper()} exceeds " + " and ".join(
            f"the {k.upper()} by {100 * g['gap']:.1f} points (spread {100 * g['spread']:.1f})" for k, g in gaps.items())
            + ", more than the seeds explain")
    else:
        text += ("; " + " and ".join(f"the {k.upper()}'s gap of {100 * gaps[k]['gap']:.1f} points to the "
                                     f"{best.upper()} is within the spread of {100 * gaps[k]['spread']:.1f}"
                                     for k in tied)
                 + ", so the seeds do not separate " + ("them" if len(tied) == 1 else "these"))
    if pick != best or tied:
        text += ("; among those the " + pick.upper() + " trains in the least time: "
                 + ", ".join(f"{k.upper()} {m[k]['epochs']} epochs × {m[k]['seconds_per_epoch']:.2f} s = "
                             f"{cost(k):.0f} s" for k in [best, *tied] if math.isfinite(cost(k))))
    out = [text + "."]
    r = m[pick]
    if isinstance(r.get("train_accuracy"), (int, float)):
        out.append(f"Its training accuracy is {_pct(r['train_accuracy'])} against {_pct(r['test_accuracy'])} on the "
                   f"test windows, a gap of {100 * (r['train_accuracy'] - r['test_accuracy']):.1f} points (overfitting "
                   "above).")
    base = m.get("baseline")
    if isinstance(base, dict) and isinstance(base.get("test_accuracy"), (int, float)):
        out.append(f"The logistic baseline on window statistics reaches {_pct(base['test_accuracy'])}, "
                   f"{compare(base['test_accuracy'], r['test_accuracy'])} than the chosen cell's "
                   f"{_pct(r['test_accuracy'])}.")
    out.append("The choice reads the test windows (the protocol's selection of rates and epochs did not), so "
               "the chosen cell's test accuracy is slightly optimistic as an estimate for new subjects.")
    return out
