"""Q1's findings: training, the (β, ρ) study, the strongest sparsity weight, the (L_hid, λ) sweep."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from experiments.findings.common import _num, _pct, compare, times, cap


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
