"""Conditional posteriors of p behind :mod:`bayes_regimes.routing`.

Per (draw, failure, condition) the success probability p given the latent ability
is a zero-inflated Beta mixture; :func:`_cell_posterior` gives its expected rescue,
P(p < eps), the log marginal likelihood and joint samples of p, and
:func:`latent_regimes` turns rescue probabilities into the latent regimes. Shared
by :func:`~bayes_regimes.routing.route_fitted` and
:func:`~bayes_regimes.routing_new.route_new`.

Examples
--------
>>> q = np.array([[0.1, 0.6], [0.5, 0.5]])
>>> latent_regimes(q, q, 1e-3).tolist()
[1, 0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import betainc, logsumexp

from bayes_regimes import best_of_r as bor
from bayes_regimes import closed_form as cf
from bayes_regimes import paper
from bayes_regimes.diagnostics import tag
from bayes_regimes.queries import summarise_draws

if TYPE_CHECKING:
    from bayes_regimes.models.interventions import InterventionModel

__all__ = ["REGIME_COLUMNS", "latent_regimes"]

REGIME_COLUMNS = ("p_resample", "p_steerable", "p_beyond_reach")
_CHUNK = 300_000  # draws x cells per block


# ---------------------------------------------------------- conditional posteriors of p
def _cell_posterior(K, D, r, pi, a, b, eps, rng=None, n_samples=0, r_rescue=None):
    """Per (draw, cell): rescue E[1-(1-p)^m], P(p < eps), log P(data), samples of p.

    ``K, D, r`` have shape (n,), ``pi, a, b`` shape (S, n); D = 0 means no data (the
    posterior is the prior). The rescue uses m = ``r_rescue`` attempts (default r).
    """
    r_rescue = r if r_rescue is None else np.broadcast_to(r_rescue, np.shape(K))
    nd, n = a.shape
    rescue, below, logml = (np.empty((nd, n)) for _ in range(3))
    samples = np.empty((n_samples, nd, n))
    keys = np.stack([K, D, r, r_rescue], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    for gi, (kk, dd, rr, mm) in enumerate(uniq.tolist()):
        sel = np.flatnonzero(inv == gi)
        A, B, P = a[:, sel], b[:, sel], pi[:, sel]
        logc = bor._log_window_coefs(kk, rr)
        t = (rr * (dd - kk) + np.arange(logc.size, dtype=float))[:, None, None]
        terms = logc[:, None, None] + cf._log_beta_shift(A[None], B[None], float(kk), t)
        lse = logsumexp(terms, axis=0)
        mix = np.exp(terms - lse)  # (T, S, n) component weights
        x, y = A[None] + kk, B[None] + t
        with np.errstate(divide="ignore"):
            log_pi, log_1m = np.log(P), np.log1p(-P)
        slab = lse + float(cf.log_binom(dd, kk))
        if kk == 0:
            logml[:, sel] = np.logaddexp(log_pi, log_1m + slab)
            w = np.exp(log_pi - logml[:, sel])
        else:
            logml[:, sel] = log_1m + slab
            w = np.zeros_like(A)
        none = np.sum(mix * np.exp(cf._log_beta_ratio(x, y, float(mm))), axis=0)
        rescue[:, sel] = (1.0 - w) * (1.0 - none)
        below[:, sel] = w + (1.0 - w) * np.sum(mix * betainc(x, y, eps), axis=0)
        for m in range(n_samples):
            u = rng.random(A.shape)
            comp = np.zeros(A.shape, np.int64)
            acc = np.zeros(A.shape)
            for s in range(logc.size - 1):
                acc += mix[s]
                comp += u > acc
            p = rng.beta(A + kk, B + rr * (dd - kk) + comp)
            samples[m][:, sel] = np.where(rng.random(A.shape) < w, 0.0, p)
    return rescue, below, logml, samples


def latent_regimes(q, p, eps: float, tau_steer: float = 0.05, tau_hard: float = 0.5):
    """Regime codes (0 resample, 1 steerable, 2 beyond reach) from joint draws.

    Parameters
    ----------
    q, p : numpy.ndarray
        Rescue probabilities and per-attempt p, last axis = candidates with the
        baseline first.

    Examples
    --------
    >>> q = np.array([[0.2, 0.3], [0.6, 0.9], [0.0, 0.0005]])
    >>> latent_regimes(q, q, eps=1e-3).tolist()
    [1, 0, 2]
    """
    base, best = q[..., 0], q[..., 1:].max(axis=-1)
    steer = ((best - base) >= tau_steer) & ((1.0 - base) >= tau_hard)
    beyond = ~steer & np.all(p[..., 1:] < eps, axis=-1)
    return np.where(steer, 1, np.where(beyond, 2, 0))


def _thin(dr: dict, max_draws: int | None) -> dict:
    nd = dr["loading"].shape[0]
    if max_draws is None or nd <= max_draws:
        return dr
    idx = np.linspace(0, nd - 1, max_draws).round().astype(int)
    return {k: v[idx] for k, v in dr.items()}


def _codes(model: InterventionModel, p: np.ndarray) -> np.ndarray:
    cfg = model.config
    r = model.r[: len(model.candidates)]
    with np.errstate(divide="ignore"):  # p = 1 gives q = 1
        q = -np.expm1(r * np.log1p(-np.minimum(p, 1.0)))
    return latent_regimes(q, p, cfg["epsilon"], cfg["tau_steer"], cfg["tau_hard"])


def _frame(model, problem, group, rescue, codes, costs, ci_prob) -> pd.DataFrame:
    out = pd.DataFrame({"problem": problem, "group": group})
    probs = np.stack([(codes == j).mean(axis=(0, 1)) for j in range(3)], axis=1)
    for j, col in enumerate(REGIME_COLUMNS):
        out[col] = probs[:, j]
    out["regime"] = np.array(paper.REGIMES, dtype=object)[np.argmax(probs, axis=1)]
    cands = model.candidates
    cost_map = dict(model.config["costs"]) if costs is None else {**model.config["costs"], **costs}
    unknown = set(cost_map) - set(model.conditions)
    if unknown:
        raise ValueError(f"costs for unknown condition(s) {sorted(unknown)}")
    mean, low, high = summarise_draws(rescue, ci_prob)
    for j, c in enumerate(cands):
        out[f"rescue_{c}"], out[f"rescue_{c}_low"], out[f"rescue_{c}_high"] = (
            mean[:, j],
            low[:, j],
            high[:, j],
        )
    cost = np.array([cost_map[c] for c in cands], dtype=float)
    if np.any(~(cost > 0)):
        raise ValueError("costs must be positive")
    best = np.argmax(mean / cost, axis=1)
    out["recommended"] = np.array(cands, dtype=object)[best]
    out["recommended_rescue"] = mean[np.arange(len(out)), best]
    out["recommended_cost"] = cost[best]
    out.attrs.update(ci_prob=ci_prob, costs={c: float(cost_map[c]) for c in cands})
    return tag(out, model.diagnostics())
