"""Pattern-weighted LOO equals LOO over the expanded cells, and model comparison."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from bayes_regimes import DiagnosticsWarning, RegimeModel, RolloutData, simulate_benchmark
from bayes_regimes.compare import compare, loo

pytestmark = pytest.mark.filterwarnings("ignore::bayes_regimes.errors.DiagnosticsWarning")


@pytest.fixture(scope="module")
def models():
    sim = simulate_benchmark(n_problems=120, n=8, pi=0.4, mu=0.3, kappa=2.0, random_seed=5)
    data = RolloutData.from_counts(sim.counts)
    out = {
        "zi_beta": RegimeModel(data, slab="beta"),
        "plain_beta": RegimeModel(data, slab="beta", structural=False),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        for m in out.values():
            m.fit(draws=200, tune=200, chains=2, random_seed=4, progressbar=False)
    return out


def test_weighted_loo_equals_expanded_loo(models):
    model = models["zi_beta"]
    res = loo(model)
    ll = model.idata["log_likelihood"]["k"]
    cell_pattern = model.data.patterns().cell_pattern
    expanded = ll.isel(pattern=xr.DataArray(cell_pattern, dims="cell"))
    dt = xr.DataTree.from_dict(
        {
            "posterior": model.idata["posterior"].to_dataset(),
            "log_likelihood": expanded.to_dataset(name="k"),
        }
    )
    full = az.loo(dt, pointwise=True)
    assert res.n_cells == model.data.n_cells
    np.testing.assert_allclose(res.elpd, full.elpd, rtol=1e-8)
    np.testing.assert_allclose(res.se, full.se, rtol=1e-6)


def test_compare_ranks_and_reports(models):
    table = compare(models)
    assert list(table.index) == sorted(models, key=lambda n: -loo(models[n]).elpd)
    assert table["elpd_diff"].iloc[0] == 0
    assert (table["elpd_diff"] >= 0).all()
    assert np.isclose(table["pseudo_bma_weight"].sum(), 1)
    # Simulated with a real point mass (pi = 0.4): zero inflation should not lose.
    assert table.loc["zi_beta", "elpd_diff"] <= 2 * table.loc["zi_beta", "dse"] + 1e-9


def test_compare_refuses_different_data(models):
    other = RegimeModel(
        RolloutData.from_counts(simulate_benchmark(n_problems=30).counts), slab="beta"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        other.fit(draws=50, tune=50, chains=2, random_seed=0, progressbar=False)
    with pytest.raises(ValueError, match="same data"):
        compare({"a": models["zi_beta"], "b": other})
