"""The PyMC graph of :class:`~bayes_regimes.models.crossed.CrossedRegimeModel`.

One function, :func:`build_crossed_model`: the priors of the module docstring of
:mod:`bayes_regimes.models.crossed`, the beta-binomial (or logit-normal) slab of every
cell, and the structural mixture with the problem propensity integrated out by
Gauss-Hermite quadrature, as a Potential on the per-problem marginal log-likelihood.
Kept apart from the class so that the model file holds the API and this one the math.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bayes_regimes import logitnormal_quadrature as lnq
from bayes_regimes.models.crossed_covariates import COVARIATE_DIM
from bayes_regimes.models.crossed_draws import (
    LOG_SHAPE_BOUND,
    PROPENSITY_NODES,
    gauss_hermite,
    slab_shapes,
)

if TYPE_CHECKING:
    import pymc as pm

    from bayes_regimes.models.crossed import CrossedRegimeModel


def build_crossed_model(crossed: CrossedRegimeModel) -> pm.Model:
    """The PyMC model: a Potential on the per-problem marginal log-likelihood.

    Examples
    --------
    >>> from bayes_regimes import RegimeModel, RolloutData
    >>> from bayes_regimes.models.crossed_tools import simulate_crossed
    >>> sim = simulate_crossed(n_problems=5, n_models=2, n=4, random_seed=0)
    >>> data = RolloutData.from_counts(sim.counts, group="model")
    >>> model = build_crossed_model(RegimeModel(data, pooling="crossed"))
    >>> sorted(model.named_vars)[:3]
    ['ability', 'ability_loc', 'ability_sd']
    """
    import pymc as pm
    import pytensor.tensor as pt

    cfg, pr = crossed.config, crossed.config["priors"]
    i, m, c = crossed._problem, crossed._model, crossed._condition
    n, k = crossed._n.astype(float), crossed._k.astype(float)
    coords = {"problem": crossed.problems, "model": crossed.models, "condition": crossed.conditions}
    cov = crossed.model_covariates
    if cov is not None:
        coords[COVARIATE_DIM] = list(cov.columns)

    def trend(term):
        # x_m . coef on the standardised covariates (0 where they do not inform the term).
        if term not in crossed.covariate_coefs:
            return 0.0
        name = crossed.covariate_coefs[term]
        coef = pm.Normal(name, 0.0, pr["covariate_coef"], dims=COVARIATE_DIM)
        return pt.dot(cov.to_numpy(), coef)

    with pm.Model(coords=coords) as model:
        centre_models, centre_problems = crossed.centering
        loc = pm.Normal("ability_loc", *pr["ability_loc"]) + trend("ability")
        sd = pm.HalfNormal("ability_sd", pr["ability_sd"])
        if centre_models:
            offset = pm.ZeroSumNormal("ability_offset", sigma=sd, dims="model")
            ability = pm.Deterministic("ability", loc + offset, dims="model")
        else:
            z = pm.ZeroSumNormal("ability_z", sigma=1.0, dims="model")
            ability = pm.Deterministic("ability", loc + sd * z, dims="model")
        d_sd = pm.HalfNormal("difficulty_sd", pr["difficulty_sd"])
        if centre_problems:
            difficulty = pm.ZeroSumNormal("difficulty", sigma=d_sd, dims="problem")
        else:
            d_z = pm.ZeroSumNormal("difficulty_z", sigma=1.0, dims="problem")
            difficulty = pm.Deterministic("difficulty", d_sd * d_z, dims="problem")
        if cfg["discrimination"]:
            l_sd = pm.HalfNormal("discrimination_sd", pr["discrimination_sd"])
            l_z = pm.ZeroSumNormal("discrimination_z", sigma=1.0, dims="model")
            lam = pm.Deterministic("discrimination", pt.exp(l_sd * l_z), dims="model")
            eta = ability[m] - lam[m] * difficulty[i]
        else:
            eta = ability[m] - difficulty[i]
        if crossed._use_condition:
            c_sd = pm.HalfNormal("condition_sd", pr["condition_sd"])
            effect = pm.ZeroSumNormal("condition_effect", sigma=c_sd, dims="condition")
            eta = eta + effect[c]
        log_kappa = pm.Normal("log_kappa_loc", *pr["log_kappa"])
        if cfg["kappa_by"] == "model":
            k_sd = pm.HalfNormal("kappa_sd", 0.5)
            k_z = pm.Normal("kappa_z", 0.0, 1.0, dims="model")
            log_kappa = log_kappa + trend("kappa") + k_sd * k_z
        # Bounded before exp so that kappa (and its gradient) stay finite anywhere.
        kappa = pt.exp(pt.clip(log_kappa, -LOG_SHAPE_BOUND, LOG_SHAPE_BOUND))
        if cfg["kappa_by"] == "model":
            kappa_cell = pm.Deterministic("kappa", kappa, dims="model")[m]
        else:
            kappa_cell = pm.Deterministic("kappa", kappa)
        ops = (pt.softplus, pt.exp, pt.log, pt.clip)
        a, b = slab_shapes(eta, kappa_cell, cfg["slab"], *ops)
        z0, z1 = np.flatnonzero(k == 0), np.flatnonzero(k > 0)
        if cfg["slab"] == "logitnormal":
            ns = lnq._pt_namespace()
            slab0 = lnq._ln_log_moment(ns, k[z0], n[z0], a[z0], b[z0])
            slab1 = lnq._ln_log_moment(ns, k[z1], n[z1], a[z1], b[z1])
        else:
            g = pt.gammaln
            a0, b0, a1, b1, n1, k1 = a[z0], b[z0], a[z1], b[z1], n[z1], k[z1]
            slab0 = g(b0 + n[z0]) - g(b0) - g(a0 + b0 + n[z0]) + g(a0 + b0)
            slab1 = g(a1 + k1) - g(a1) + g(b1 + n1 - k1) - g(b1) - g(a1 + b1 + n1) + g(a1 + b1)
        if not cfg["structural"]:
            pm.Potential("loglik", pt.sum(slab0) + pt.sum(slab1))
            return model
        x, w = gauss_hermite(PROPENSITY_NODES)
        gamma = pm.Normal("logit_pi_loc", *pr["logit_pi"])
        s_sd = pm.HalfNormal("propensity_sd", pr["propensity_sd"])
        logit = (gamma + s_sd * x)[None, :]  # (1, nodes): one row for all models
        mi = np.zeros_like(m)
        if cfg["model_propensity"]:
            u_sd = pm.HalfNormal("model_propensity_sd", pr["model_propensity_sd"])
            u_z = pm.Normal("model_propensity_z", 0.0, 1.0, dims="model")
            u_trend = trend("structural")
            u = pm.Deterministic("model_propensity", u_trend + u_sd * u_z, dims="model")
            logit, mi = logit + u[:, None], m  # (models, nodes)
        # At every node a failed cell is a mixture, log(pi + (1 - pi) e^slab0) =
        # log pi + softplus(slab0 - logit pi); a solved one is log(1 - pi). The
        # log pi / log(1 - pi) terms depend on the cell only through its model, so
        # they enter as (problems x models) counts times (models x nodes) tables:
        # one softplus per failed cell and node is all that scales with the data.
        n_rows = len(crossed.problems), int(mi.max()) + 1
        failed = np.zeros(n_rows)
        np.add.at(failed, (i[z0], mi[z0]), 1.0)
        solved = np.zeros(n_rows)
        np.add.at(solved, (i[z1], mi[z1]), 1.0)
        per_problem = pt.dot(failed, -pt.softplus(-logit)) + pt.dot(solved, -pt.softplus(logit))
        mix = pt.softplus(slab0[:, None] - logit[mi[z0]])
        per_problem = pt.inc_subtensor(per_problem[i[z0]], mix)
        joint = per_problem + np.log(w)[None, :]
        total = pt.logsumexp(joint, axis=1)
        post_w = pt.exp(joint - total[:, None])
        pm.Deterministic("propensity", s_sd * (post_w @ x), dims="problem")
        pm.Potential("loglik", pt.sum(total) + pt.sum(slab1))
    return model
