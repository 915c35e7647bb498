"""Simulated crossed suites, new-cell predictions and regime comparisons between models.

Examples
--------
>>> sim = simulate_crossed(n_problems=3, n_models=2, n=4, random_seed=0)
>>> sim.counts.shape
(6, 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayes_regimes import queries as q
from bayes_regimes.diagnostics import tag
from bayes_regimes.models.crossed_draws import PROPENSITY_NODES, _expit, gauss_hermite, slab_shapes
from bayes_regimes.models.regime import RegimeModel

if TYPE_CHECKING:
    from bayes_regimes.models.crossed import CrossedRegimeModel


@dataclass(frozen=True)
class CrossedBenchmark:
    """A simulated crossed suite: ``counts`` (problem_id, model, n, k), ``truth``
    (aligned with counts: p, structural, eta) and the true ``params``."""

    counts: pd.DataFrame
    truth: pd.DataFrame
    params: dict


def simulate_crossed(
    n_problems: int = 100,
    n_models: int = 5,
    n: int = 10,
    *,
    slab: str = "beta_logit",
    ability_loc: float = -1.0,
    ability_sd: float = 1.0,
    difficulty_sd: float = 1.5,
    kappa: float = 1.0,
    logit_pi: float = -2.0,
    propensity_sd: float = 1.5,
    model_propensity_sd: float = 0.5,
    condition_effects=None,
    model_covariate=None,
    ability_coef: float = 0.0,
    model_propensity_coef: float = 0.0,
    random_seed: int | None = None,
) -> CrossedBenchmark:
    """Simulate the crossed model (every problem attempted n times by every model).

    With ``condition_effects`` (logit shifts, one per condition), every (problem,
    model) pair is run under every condition, and ``counts`` has a ``condition``
    column. With ``model_covariate`` (one value per model), the abilities and the
    per-model structural terms get the trends ``ability_coef x_m`` and
    ``model_propensity_coef x_m`` on the covariate standardised over the models (as
    in ``model_covariates``), and ``params["model_covariates"]`` holds the table.

    Examples
    --------
    >>> sim = simulate_crossed(n_problems=3, n_models=2, n=4, random_seed=0)
    >>> sim.counts.shape, list(sim.truth.columns)
    ((6, 4), ['problem_id', 'model', 'eta', 'p', 'structural'])
    """
    rng = np.random.default_rng(random_seed)
    ability = ability_loc + ability_sd * rng.standard_normal(n_models)
    difficulty = difficulty_sd * rng.standard_normal(n_problems)
    propensity = propensity_sd * rng.standard_normal(n_problems)
    model_prop = model_propensity_sd * rng.standard_normal(n_models)
    if model_covariate is not None:
        x = np.asarray(model_covariate, dtype=float)
        if x.shape != (n_models,):
            raise ValueError(f"model_covariate needs {n_models} values, got shape {x.shape}")
        x_std = (x - x.mean()) / x.std()
        ability = ability + ability_coef * x_std
        model_prop = model_prop + model_propensity_coef * x_std
    effects = np.zeros(1) if condition_effects is None else np.asarray(condition_effects, float)
    i, m, c = np.unravel_index(
        np.arange(n_problems * n_models * effects.size), (n_problems, n_models, effects.size)
    )
    eta = ability[m] - difficulty[i] + effects[c]
    structural = rng.random(eta.size) < _expit(logit_pi + propensity[i] + model_prop[m])
    a, b = slab_shapes(eta, kappa, slab)
    slab_p = (
        _expit(a + b * rng.standard_normal(a.size)) if slab == "logitnormal" else rng.beta(a, b)
    )
    p = np.where(structural, 0.0, slab_p)
    problems = np.array([f"q{j:04d}" for j in range(n_problems)])
    models = np.array([f"m{j:02d}" for j in range(n_models)])
    counts = pd.DataFrame({"problem_id": problems[i], "model": models[m]})
    if condition_effects is not None:
        counts["condition"] = np.array([f"c{j}" for j in range(effects.size)])[c]
    counts["n"], counts["k"] = n, rng.binomial(n, p)
    truth = pd.DataFrame(
        {
            "problem_id": problems[i],
            "model": models[m],
            "eta": eta,
            "p": p,
            "structural": structural,
        }
    )
    params = {
        "ability": dict(zip(models, ability, strict=True)),
        "difficulty": dict(zip(problems, difficulty, strict=True)),
        "propensity": dict(zip(problems, propensity, strict=True)),
        "model_propensity": dict(zip(models, model_prop, strict=True)),
        "kappa": kappa,
        "logit_pi_loc": logit_pi,
        "slab": slab,
    }
    if model_covariate is not None:
        params["model_covariates"] = pd.DataFrame({"x": x}, index=models)
        params["ability_coef"] = ability_coef
        params["model_propensity_coef"] = model_propensity_coef
    return CrossedBenchmark(counts, truth, params)


def structural_fraction_draws(model: RegimeModel, epsilon: float | None = None) -> np.ndarray:
    """Per draw and stratum, the expected fraction of cells with p < epsilon.

    Works for any fitted RegimeModel (crossed or not): the mean over a stratum's
    cells of P(p < epsilon | data, draw); shape (samples, strata).
    """
    eps = model.config["epsilon"] if epsilon is None else float(epsilon)
    post = model.pattern_posterior()

    slab = q.slab_of(post)

    def below(idx):
        pi, *theta = post.hyper(idx)
        return slab.prob_below(eps, post.k[idx], post.n[idx], pi, *theta)

    return q._stratum_average(post, below)


def compare_structural(
    model: RegimeModel, epsilon: float | None = None, ci_prob: float = q.CI_PROB
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Regime fractions per group with credible intervals, and P(A more structural than B).

    Returns
    -------
    fractions : pandas.DataFrame
        One row per stratum: cells, solved (observed fraction), structural_mean /
        _low / _high (fraction of cells with p < epsilon) and recoverable_mean / _low
        / _high (failed cells that are not structural).
    prob_more : pandas.DataFrame
        Strata x strata: posterior probability that the row's structural fraction
        exceeds the column's.
    """
    draws = structural_fraction_draws(model, epsilon)
    post = model.pattern_posterior()
    cells = np.bincount(post.stratum, weights=post.count)
    solved = np.bincount(post.stratum, weights=post.count * (post.k > 0)) / cells
    mean, low, high = q.summarise_draws(draws, ci_prob)
    rec_mean, rec_low, rec_high = q.summarise_draws((1 - solved) - draws, ci_prob)
    fractions = pd.DataFrame(
        {
            "group": post.strata,
            "cells": cells.astype(int),
            "solved": solved,
            "structural_mean": mean,
            "structural_low": low,
            "structural_high": high,
            "recoverable_mean": rec_mean,
            "recoverable_low": rec_low,
            "recoverable_high": rec_high,
        }
    )
    more = (draws[:, :, None] > draws[:, None, :]).mean(axis=0)
    prob_more = pd.DataFrame(more, index=post.strata, columns=post.strata)
    return tag(fractions, model.diagnostics()), prob_more


def problem_summary(fitted: CrossedRegimeModel, ci_prob: float = q.CI_PROB) -> pd.DataFrame:
    """Per problem: difficulty (mean and interval), propensity (posterior mean) and
    ``p_zero_new_model``, the structural probability of a new model on it."""
    dr = fitted._draws()
    mean, low, high = q.summarise_draws(dr["difficulty"], ci_prob)
    out = pd.DataFrame({"problem": fitted.problems, "difficulty": mean, "difficulty_low": low})
    out["difficulty_high"] = high
    if fitted.config["structural"]:
        out["propensity"] = fitted.posterior["propensity"].mean(("chain", "draw")).values
        log_w = np.log(gauss_hermite(PROPENSITY_NODES)[1])
        zeros = np.zeros((len(dr["gamma"]), 1))  # broadcast over problems
        pi = fitted._pi_given(dr, dr["problem_ll"] + log_w, zeros, zeros + dr["u_pop_sd"][:, None])
        out["p_zero_new_model"] = pi.mean(axis=0)
    return tag(out, fitted.diagnostics())
