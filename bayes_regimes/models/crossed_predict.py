"""Posterior predictive of the crossed model for cells without data.

A cell never attempted -- a known problem for a known model, a new problem, a new
model (drawn from the population of models, or placed by its covariates) -- gets
its (pi, a, b) per posterior draw from :func:`new_cell_hyper`, integrated over the
unknown logit mean by Gauss-Hermite quadrature; :func:`predict_new_cell` turns them
into p, the structural probability and pass@k with credible intervals.
``CrossedRegimeModel.pattern_posterior().population()`` (a new problem for each
stratum) is built from the same function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayes_regimes import queries as q
from bayes_regimes.diagnostics import tag
from bayes_regimes.models.crossed_covariates import standardise_new
from bayes_regimes.models.crossed_draws import PROPENSITY_NODES, gauss_hermite, slab_shapes

if TYPE_CHECKING:
    from bayes_regimes.models.crossed import CrossedRegimeModel


def new_cell_hyper(
    fitted: CrossedRegimeModel, dr: dict, problems: list, models: list, conditions
) -> tuple:
    """(pi, a, b), each (samples, cells, GH_NODES), of cells without data.

    ``problems`` / ``models`` hold indices, or None for a new problem / model
    (drawn from its population); a model may also be given by its standardised
    covariates (a vector: a new model of known covariates, whose terms are the
    fitted trends plus a residual from its population). eta ~ Normal(loc, sd) per
    sample; pi does not depend on eta, so it is constant over the nodes and every
    query (affine in pi given a, b) is the weighted average over the nodes.
    """
    n_s = dr["ability"].shape[0]
    zeros = np.zeros(n_s)
    ones = np.ones(n_s)
    loc, var, kappa, u_loc, u_sd, log_q = [], [], [], [], [], []
    log_w = np.log(gauss_hermite(PROPENSITY_NODES)[1])
    coef = dr.get("coef", {})

    def trend(term, x):
        return coef[term] @ x if term in coef else zeros

    for i, m, c in zip(problems, models, conditions, strict=True):
        # A new model gets the median discrimination (1) and concentration.
        if isinstance(m, np.ndarray):
            ab, v, kap, u, us, lam = (
                dr["ability_loc"] + trend("ability", m),
                dr["ability_sd"] ** 2,
                dr["kappa_loc"] * np.exp(trend("kappa", m)),
                trend("structural", m),
                dr["u_sd"],
                ones,
            )
        elif m is None:
            ab, v, kap, u, us, lam = (
                dr["ability_loc"],
                dr["ability_pop_sd"] ** 2,
                dr["kappa_loc"],
                zeros,
                dr["u_pop_sd"],
                ones,
            )
        else:
            ab, v, kap, u, us, lam = (
                dr["ability"][:, m],
                zeros,
                dr["kappa"][:, m],
                dr["u"][:, m],
                zeros,
                dr["disc"][:, m],
            )
        if i is None:
            d, v = zeros, v + (lam * dr["difficulty_sd"]) ** 2
            lq = np.broadcast_to(log_w, (n_s, len(log_w)))
        else:
            d = lam * dr["difficulty"][:, i]
            lq = dr["problem_ll"][:, i, :] + log_w if "problem_ll" in dr else None
        loc.append(ab - d + dr["condition"][:, c])
        var.append(v)
        kappa.append(kap)
        u_loc.append(u)
        u_sd.append(us)
        log_q.append(lq)
    x, _ = gauss_hermite()
    loc, var, kappa = (np.stack(v, axis=1) for v in (loc, var, kappa))
    a, b = slab_shapes(
        loc[..., None] - np.sqrt(var)[..., None] * x, kappa[..., None], fitted.config["slab"]
    )
    if not fitted.config["structural"]:
        return np.zeros_like(a), a, b
    pi = fitted._pi_given(
        dr, np.stack(log_q, axis=1), np.stack(u_loc, axis=1), np.stack(u_sd, axis=1)
    )
    return np.broadcast_to(pi[..., None], a.shape), a, b


def predict_new_cell(
    fitted: CrossedRegimeModel,
    problem,
    model,
    *,
    condition: str | None = None,
    ks=(1, 10, 100, 1000),
    ci_prob: float = q.CI_PROB,
    model_covariates: pd.DataFrame | dict | None = None,
) -> pd.DataFrame:
    """Posterior predictive for cells never attempted: (problem, model) pairs.

    A known problem and a known model use their posterior difficulty, ability and
    propensity (the problem's propensity given all its observed cells); an
    unknown problem (or model) is a new draw from its population, integrated by
    Gauss-Hermite quadrature. Intervals are over the posterior of the parameters.

    Parameters
    ----------
    fitted : CrossedRegimeModel
        A fitted crossed model.
    problem, model : str or sequence of str
        Labels: one each, or equal-length sequences of pairs.
    condition : str, optional
        Condition label (default: the first condition).
    ks : sequence of int
        pass@k of a fresh run of k attempts on the new cell.
    model_covariates : DataFrame or dict, optional
        For a fit with ``model_covariates``: the covariates of the models unknown to
        the fit (one row each, every column of the fit). Such a model gets the fitted
        trends at its covariates plus a residual from the population (e.g. a larger
        model of the same family before it is run). Without it, an unknown model is a
        draw from the whole population of models.

    Returns
    -------
    pandas.DataFrame
        One row per pair: problem, model, condition, known_problem, known_model,
        from_covariates (a new model placed by its covariates), p_mean, p_zero
        (structural probability), p_structural (P(p < epsilon)),
        and ``pass@{k}_mean`` / ``_low`` / ``_high``.
    """
    problems = np.atleast_1d(np.asarray(problem, dtype=object)).astype(str)
    models = np.atleast_1d(np.asarray(model, dtype=object)).astype(str)
    problems, models = np.broadcast_arrays(problems, models)
    cond = fitted.conditions[0] if condition is None else str(condition)
    if cond not in fitted.conditions:
        raise ValueError(f"unknown condition {cond!r}; known: {fitted.conditions}")
    p_pos = {p: j for j, p in enumerate(fitted.problems)}
    m_pos = {p: j for j, p in enumerate(fitted.models)}
    new_models = [str(m) for m in dict.fromkeys(models) if m not in m_pos]
    spec: dict = {}
    if model_covariates is not None:
        if fitted.model_covariates is None:
            raise ValueError("model_covariates given, but the fit has none")
        stored = fitted.config["model_covariates"]
        x = standardise_new(model_covariates, stored, new_models)
        spec = {m: x.loc[m].to_numpy(dtype=float) for m in new_models}
    pi, a, b = new_cell_hyper(
        fitted,
        fitted._draws(),
        [p_pos.get(p) for p in problems],
        [m_pos[m] if m in m_pos else spec.get(m) for m in models],
        [fitted.conditions.index(cond)] * len(problems),
    )
    w = gauss_hermite()[1]
    eps, fam = fitted.config["epsilon"], fitted._family
    out = pd.DataFrame(
        {
            "problem": problems,
            "model": models,
            "condition": cond,
            "known_problem": [p in p_pos for p in problems],
            "known_model": [m in m_pos for m in models],
            "p_mean": (fam.posterior_mean_p(0, 0, pi, a, b) @ w).mean(axis=0),
            "p_zero": (pi @ w).mean(axis=0),
            "p_structural": (fam.prob_below(eps, 0, 0, pi, a, b) @ w).mean(axis=0),
        }
    )
    out["from_covariates"] = [m in spec for m in models]
    for kk in np.atleast_1d(ks).astype(np.int64):
        passk = fam.pass_at_k_new_problem(kk, pi, a, b) @ w
        mean, low, high = q.summarise_draws(passk, ci_prob)
        out[f"pass@{kk}_mean"], out[f"pass@{kk}_low"], out[f"pass@{kk}_high"] = mean, low, high
    return tag(out, fitted.diagnostics())
