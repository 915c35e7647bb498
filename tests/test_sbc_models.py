"""SBC of the crossed and intervention models: the simulators against the models'
closed-form marginals, the prior draws, the cell-level posterior draws, and (slow) a
reduced SBC of each model that passes with the model's prior and fails with a wrong one."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.special import expit

from bayes_regimes import RegimeModel
from bayes_regimes import best_of_r as bor
from bayes_regimes import closed_form as cf
from bayes_regimes.models.crossed_draws import PROPENSITY_NODES, gauss_hermite, slab_shapes
from bayes_regimes.sbc import run_sbc
from bayes_regimes.sbc_models import (
    CrossedDesign,
    InterventionDesign,
    _sample_cell,
    prior_sample,
    run_design_sbc,
)


def _within(freq: np.ndarray, pmf: np.ndarray, size: int) -> bool:
    """Observed frequencies within 4 binomial standard errors of the pmf."""
    se = np.sqrt(pmf * (1 - pmf) / size)
    return bool(np.all(np.abs(freq - pmf) <= 4 * se + 1e-4))


# -- simulators --------------------------------------------------------------------------
def test_crossed_simulator_matches_the_model_marginal():
    # Zero difficulties make a model's cells iid: each k follows the zero-inflated
    # beta-binomial mixed over the propensity nodes; two models' failures on one problem
    # are dependent through the shared propensity.
    n_prob, n = 6000, 5
    design = CrossedDesign(n_models=2, n_problems=n_prob, n=n)
    draw = xr.Dataset(
        {
            "ability": ("model", [0.5, -1.0]),
            "difficulty": ("problem", np.zeros(n_prob)),
            "kappa": ("model", [2.0, 0.7]),
            "logit_pi_loc": -0.5,
            "propensity_sd": 1.2,
            "model_propensity": ("model", [0.4, -0.4]),
        }
    )
    data, truth = design.simulate(draw, np.random.default_rng(0))
    k = data.cells["k"].to_numpy().reshape(n_prob, 2)
    x, w = gauss_hermite(PROPENSITY_NODES)
    pmf0 = []
    for m in range(2):
        a, b = slab_shapes(draw["ability"].values[m], draw["kappa"].values[m], "beta_logit")
        pi = expit(-0.5 + 1.2 * x + draw["model_propensity"].values[m])
        pmf = np.exp(cf.zibb_logpmf(np.arange(n + 1)[:, None], n, pi, a, b)) @ w
        assert _within(np.bincount(k[:, m], minlength=n + 1) / n_prob, pmf, n_prob), m
        pmf0.append(np.exp(cf.zibb_logpmf(0, n, pi, a, b)))
    both = np.mean((k[:, 0] == 0) & (k[:, 1] == 0))
    assert _within(np.array([both]), np.array([(pmf0[0] * pmf0[1]) @ w]), n_prob)
    assert both > np.mean(k[:, 0] == 0) * np.mean(k[:, 1] == 0) + 0.01  # dependent
    # The chosen failed cell failed; its truth is consistent.
    cell = truth["cells"][0]
    assert data.cells["k"].iloc[cell] == 0
    assert truth["p"][0] == 0 or truth["z"][0] == 0


def test_intervention_simulator_matches_best_of_r_pmf():
    # Zero feature coefficients; u = -1 or 1: the units sharing u are iid, and K follows
    # the zero-inflated best-of-r marginal at eta = alpha + loading u, zeta = lam - rho u.
    n_prob, D, r = 4000, 4, 3
    design = InterventionDesign(n_prob, ("retry", "hint"), contexts=D, attempts=r)
    g = design._template.layout.groups
    par = {
        "alpha": [-0.5, 0.5],
        "lam": [-1.0, -2.0],
        "loading": [1.0, 0.5],
        "log_kappa": [1.0, 2.0],
    }
    u = np.where(np.arange(n_prob) % 2 == 0, -1.0, 1.0)
    draw = xr.Dataset(
        {
            "alpha": (("group", "condition"), [par["alpha"]]),
            "lam": (("group", "condition"), [par["lam"]]),
            "loading": ("condition", par["loading"]),
            "log_kappa": ("condition", par["log_kappa"]),
            "rho": 0.8,
            "gamma": (("condition", "feature"), np.zeros((2, 1))),
            "delta": (("condition", "feature"), np.zeros((2, 1))),
            "u": ("problem", u),
        },
        coords={"group": g, "condition": ["retry", "hint"], "feature": ["x0"]},
    )
    data, truth = design.simulate(draw, np.random.default_rng(1))
    K = data.cells["k"].to_numpy().reshape(n_prob, 2)
    for c in range(2):
        kappa = np.exp(par["log_kappa"][c])
        for sign in (-1.0, 1.0):
            mu = expit(par["alpha"][c] + par["loading"][c] * sign)
            pi = expit(par["lam"][c] - 0.8 * sign)
            pmf = np.exp(
                bor.best_of_r_zi_logpmf(np.arange(D + 1), D, r, pi, kappa * mu, kappa - kappa * mu)
            )
            rows = u == sign
            freq = np.bincount(K[rows, c], minlength=D + 1) / rows.sum()
            assert _within(freq, pmf, int(rows.sum())), (c, sign)
    assert K[truth["unit"], 0] == 0


# -- prior draws and cell draws ----------------------------------------------------------
def test_prior_sample_is_each_models_prior():
    # Overrides reach the prior (the mis-specified SBC relies on them); the rest is
    # the crossed model's default prior.
    crossed = CrossedDesign(n_models=3, n_problems=5, n=4)
    wrong = crossed.build(crossed.template_data(), priors={"logit_pi": (2.0, 0.3)})
    prior = prior_sample(wrong, crossed.prior_vars, 2000, 3)
    assert stats.kstest(prior["logit_pi_loc"].values, stats.norm(2.0, 0.3).cdf).pvalue > 1e-3
    assert stats.kstest(prior["ability_loc"].values, stats.norm(0, 3).cdf).pvalue > 1e-3
    assert stats.kstest(prior["propensity_sd"].values, stats.halfnorm(0, 1.5).cdf).pvalue > 1e-3
    np.testing.assert_allclose(prior["difficulty"].sum("problem").values, 0.0, atol=1e-9)
    # The intervention model's decomposed latent u is iid Normal(0, 1) a priori.
    iv = InterventionDesign(12, ("retry", "hint"), contexts=4)
    u = prior_sample(iv.build(iv.template_data()), ["u"], 2000, 5)["u"].values
    assert stats.kstest(u[:, 0], stats.norm().cdf).pvalue > 1e-3
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.1


def test_cell_draws_follow_the_conditional_posterior():
    # z ~ Bernoulli(w) with w the closed-form structural weight; p | not z ~ Beta(a+k, b+n-k).
    rng = np.random.default_rng(6)
    size = 40_000
    k, n = np.array([0, 0, 3]), np.array([10, 10, 10])
    pi, a, b = (np.broadcast_to(v, (size, 3)) for v in ([0.3, 0.6, 0.3], [0.5, 2.0, 1.0], 4.0))
    z, p = _sample_cell(k, n, pi, a, b, rng)
    w = cf.structural_weight(k, n, pi[0], a[0], b[0])
    se = np.sqrt(w * (1 - w) / size) + 1e-12
    assert np.all(np.abs(z.mean(axis=0) - w) <= 4 * se)
    mean_p = (1 - w) * (a[0] + k) / (a[0] + b[0] + n)
    assert np.all(np.abs(p.mean(axis=0) - mean_p) <= 4 * p.std(axis=0) / np.sqrt(size))
    assert np.all(p[z == 1] == 0)


def test_designs_validate_their_options():
    assert CrossedDesign(3, 4, 5).quantities()[-3:] == [
        "z[failed cell]",
        "p[failed cell]",
        "p[cell 0]",
    ]
    plain = CrossedDesign(3, 4, 5, model_kwargs={"structural": False, "kappa_by": "global"})
    assert "logit_pi_loc" not in plain.quantities() and "kappa_sd" not in plain.quantities()
    assert plain.cell_labels == ["p[failed cell]", "p[cell 0]"]
    with pytest.raises(ValueError, match="Beta slabs"):
        CrossedDesign(3, 4, 5, model_kwargs={"slab": "logitnormal"})
    with pytest.raises(ValueError, match="selection"):
        InterventionDesign(10, model_kwargs={"selection": "retry"})
    iv = InterventionDesign(10, ("retry", "hint"))
    assert len(iv.quantities()) == 2 * 6 + 1 + 1 + 2


def _covariate_design(**kw) -> CrossedDesign:
    cov = {"x": {"m00": 0.0, "m01": 1.0, "m02": 3.0}}
    return CrossedDesign(3, kw.pop("n_problems", 5), 5, model_kwargs={"model_covariates": cov})


def test_covariate_design_ranks_the_trends():
    design = _covariate_design()
    names = design.quantities()
    assert "ability_coef[x]" in names and "model_propensity_coef[x]" in names
    # The prior draws of the abilities carry the trend: ability - loc - x coef is the
    # zero-sum residual.
    prior = prior_sample(design.build(design.template_data()), design.prior_vars, 500, 2)
    x = np.array([0.0, 1.0, 3.0])
    x = (x - x.mean()) / x.std()
    resid = (
        prior["ability"]
        - prior["ability_loc"]
        - prior["ability_coef"].sel(model_covariate="x")
        * xr.DataArray(x, dims="model", coords={"model": design.models})
    )
    np.testing.assert_allclose(resid.sum("model").values, 0.0, atol=1e-9)
    assert stats.kstest(prior["ability_coef"].values.ravel(), stats.norm(0, 1.5).cdf).pvalue > 1e-3


def test_fits_that_raise_are_reported(monkeypatch):
    design = CrossedDesign(3, 4, 5)

    class Broken:
        def __init__(self, *args, **kwargs):
            self.config = {}

        def fit(self, **kwargs):
            raise FloatingPointError("sampler blew up")

    monkeypatch.setattr(design, "build", lambda data, **kw: Broken())
    monkeypatch.setattr(design, "simulate", lambda draw, rng: (None, {}))
    prior = xr.Dataset(coords={"simulation": [0, 1]})
    monkeypatch.setattr("bayes_regimes.sbc_models.prior_sample", lambda *a, **k: prior)
    with pytest.raises(RuntimeError, match="every fit raised.*sampler blew up"):
        run_design_sbc(design, 2, draws=50, tune=50, n_rank_draws=9)


# -- reduced SBC (slow) --------------------------------------------------------------------
def _check(res, n_sims: int, wrong: str | None = None) -> None:
    assert len(res.fits) + len(res.settings["errored"]) == n_sims
    assert res.settings["errored"] == []
    table = res.uniformity()
    if wrong is None:
        # Bonferroni over quantities and both tests: a miscalibrated model fails this.
        assert res.bonferroni_pvalue() > 0.001, table
        assert table["mean_pit"].between(0.2, 0.8).all(), table
    else:
        # Truth from a prior far above the fitted one: the posterior is pulled down,
        # the true value sits above most draws.
        assert table.loc[wrong, "mean_pit"] > 0.75, table
        assert table.loc[wrong, "ecdf_pvalue"] < 0.01, table


_SLOW = {"draws": 300, "tune": 300, "n_rank_draws": 49}


@pytest.mark.slow
def test_reduced_sbc_of_the_crossed_model():
    design = CrossedDesign(n_models=3, n_problems=8, n=6)
    _check(run_design_sbc(design, 16, random_seed=1, **_SLOW), 16)
    wrong = {"priors": {"logit_pi": (2.0, 0.3)}}
    res = run_design_sbc(design, 10, random_seed=2, prior_overrides=wrong, **_SLOW)
    _check(res, 10, wrong="logit_pi_loc")


@pytest.mark.slow
def test_reduced_sbc_of_the_crossed_model_with_covariates():
    design = _covariate_design(n_problems=8)
    _check(run_design_sbc(design, 16, random_seed=3, **_SLOW), 16)


@pytest.mark.slow
def test_reduced_sbc_of_the_intervention_model():
    design = InterventionDesign(n_problems=12, conditions=("retry", "hint"), contexts=6)
    _check(run_design_sbc(design, 16, random_seed=1, **_SLOW), 16)
    wrong = {"priors": {"lam": (1.0, 0.3)}}
    res = run_design_sbc(design, 10, random_seed=2, prior_overrides=wrong, **_SLOW)
    _check(res, 10, wrong="lam[retry]")


@pytest.mark.slow
def test_misspecified_prior_of_the_default_model_is_rejected():
    # The default (logit-normal, zero-inflated) model: the calibrated run is in
    # test_sbc.py; here the truth comes from a structural prior far above the model's.
    res = run_sbc(
        RegimeModel,
        20,
        n_problems=60,
        n=10,
        draws=400,
        tune=300,
        random_seed=3,
        prior_from=functools.partial(RegimeModel, priors={"logit_pi": (2.0, 0.3)}),
    )
    assert res.settings["misspecified_prior"] is True
    table = res.uniformity()
    assert table.loc["pi[all]", "mean_pit"] > 0.75, table
    assert table.loc["pi[all]", "ecdf_pvalue"] < 0.01, table
    assert res.bonferroni_pvalue() < 0.01


@pytest.mark.slow
def test_benchmark_script_runs_the_design_variants(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    sys.modules.pop("sbc", None)
    import sbc as bench  # benchmarks/sbc.py

    out = tmp_path / "sbc_models_smoke"
    args = ["--n-sims", "2", "--crossed-models", "3", "--crossed-problems", "5", "--n", "4"]
    args += ["--draws", "100", "--tune", "100", "--n-rank-draws", "19", "--out", str(out)]
    bench.main([*args, "--variants", "crossed"])
    bench.main([*args, "--variants", "crossed", "--misspecify", "--append"])
    saved = json.loads(out.with_suffix(".json").read_text())["variants"]
    assert set(saved) == {"crossed", "crossed_misspecified"}
    assert saved["crossed_misspecified"]["settings"]["prior_overrides"]["priors"]["logit_pi"]
    assert "--misspecify" in saved["crossed_misspecified"]["command"]
    assert "Bonferroni p" in out.with_suffix(".md").read_text()
