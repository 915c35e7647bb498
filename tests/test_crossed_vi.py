"""ADVI on the crossed model: restart at a smaller learning rate when the ELBO turns NaN."""

from __future__ import annotations

import json

import numpy as np
import pymc as pm
import pytest

from bayes_regimes import RegimeModel, RolloutData
from bayes_regimes.errors import FitError
from bayes_regimes.models import crossed_vi
from bayes_regimes.models.crossed_tools import simulate_crossed


@pytest.fixture(scope="module")
def data():
    sim = simulate_crossed(n_problems=20, n_models=2, n=10, random_seed=0)
    return RolloutData.from_counts(sim.counts, group="model")


def _record_fit(monkeypatch, fail_first: int):
    """Patch pm.fit: the first ``fail_first`` calls raise PyMC's NaN error."""
    calls, real_fit = [], pm.fit

    def fake_fit(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) <= fail_first:
            raise FloatingPointError("NaN occurred in optimization.")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(pm, "fit", fake_fit)
    return calls


def test_nan_objective_restarts_at_a_smaller_learning_rate(data, monkeypatch):
    calls = _record_fit(monkeypatch, fail_first=1)
    model = RegimeModel(data, pooling="crossed")
    model.fit(method="advi", draws=50, n_steps=300, random_seed=0, progressbar=False, n_khat=0)
    assert len(calls) == 2
    assert "total_grad_norm_constraint" not in calls[0]
    assert calls[1]["total_grad_norm_constraint"] == crossed_vi.GRAD_NORM_MAX
    info = json.loads(model.idata.attrs["fit"])
    assert info["learning_rate"] == crossed_vi.LEARNING_RATES[1]
    assert info["nan_at_learning_rates"] == [crossed_vi.LEARNING_RATES[0]]
    assert model.idata["posterior"].sizes["draw"] == 50


def test_nan_at_every_learning_rate_is_a_one_line_fit_error(data, monkeypatch):
    calls = _record_fit(monkeypatch, fail_first=len(crossed_vi.LEARNING_RATES))
    model = RegimeModel(data, pooling="crossed")
    with pytest.raises(FitError, match=r"fullrank_advi diverged .* \(0\.001, 0\.0001, 1e-05\)"):
        model.fit(method="fullrank_advi", draws=50, n_steps=300, progressbar=False)
    assert len(calls) == len(crossed_vi.LEARNING_RATES)


@pytest.mark.parametrize("slab", ["beta_logit", "beta"])
def test_log_density_is_finite_far_in_the_tails(data, slab):
    # Full-rank ADVI draws far from the mode early on; an overflowing kappa or Beta
    # shape used to give a log density of +inf or NaN there, and a NaN objective.
    model = RegimeModel(data, pooling="crossed", slab=slab).build_model()
    logp = model.compile_logp(jacobian=True)
    dlogp = model.compile_dlogp(jacobian=True)
    start = model.initial_point()
    rng = np.random.default_rng(0)
    for scale in (3.0, 10.0, 30.0):
        for _ in range(10):
            point = {k: v + scale * rng.standard_normal(np.shape(v)) for k, v in start.items()}
            value = logp(point)
            assert np.isfinite(value) and value < 0
            assert np.isfinite(dlogp(point)).all()
