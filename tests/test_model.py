"""RegimeModel: likelihood, queries, diagnostics, save/load (tiny sampler settings)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_regimes import (
    DataError,
    DiagnosticsWarning,
    FormatVersionError,
    RegimeModel,
    RolloutData,
    simulate_benchmark,
)
from bayes_regimes import closed_form as cf
from bayes_regimes.models.base import BaseModel

pytestmark = pytest.mark.filterwarnings("ignore::bayes_regimes.errors.DiagnosticsWarning")

TINY = dict(draws=150, tune=150, chains=2, progressbar=False)


@pytest.fixture(scope="module")
def sim():
    return simulate_benchmark(
        groups={"a": dict(pi=0.3, mu=0.2, kappa=2.0), "b": dict(pi=0.1, mu=0.4, kappa=4.0)},
        n_problems=150,
        n=12,
        random_seed=3,
    )


@pytest.fixture(scope="module")
def fitted(sim):
    model = RegimeModel(RolloutData.from_counts(sim.counts, group="group"), slab="beta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        model.fit(random_seed=1, **TINY)
    return model


def test_pymc_likelihood_equals_closed_form(sim):
    """The PyMC potential is exactly the pattern-weighted closed-form log-likelihood."""
    model = RegimeModel(RolloutData.from_counts(sim.counts, group="group"), slab="beta")
    pm_model = model.build_model()
    point = pm_model.initial_point()
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in point.items()}
    fn = pm_model.compile_fn(
        [pm_model.potentials[0], pm_model["pi"], pm_model["alpha"], pm_model["beta"]],
        inputs=pm_model.value_vars,
        on_unused_input="ignore",
    )
    pot, pi, a, b = fn(point)
    pat = model.data.patterns().table
    s = pat["stratum"].to_numpy()
    ll = cf.zibb_logpmf(pat["k"].to_numpy(), pat["n"].to_numpy(), pi[s], a[s], b[s])
    np.testing.assert_allclose(pot, np.sum(pat["count"].to_numpy() * ll), rtol=1e-9)


def test_fit_returns_datatree_with_documented_groups(fitted):
    dt = fitted.idata
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "cells"):
        assert group in dt.children
    assert set(dt["posterior"]["pi"].dims) == {"chain", "draw", "group"}
    assert list(dt["posterior"]["group"].values) == ["a", "b"]
    ll = dt["log_likelihood"]["k"]
    assert ll.dims == ("chain", "draw", "pattern")
    assert int(dt["observed_data"]["count"].sum()) == fitted.data.n_cells
    # Per-pattern, never per-cell: far fewer entries than cells.
    assert ll.sizes["pattern"] < fitted.data.n_cells


def test_regimes_aligned_and_consistent(fitted, sim):
    reg = fitted.regimes()
    assert list(reg.columns[:5]) == ["problem", "group", "condition", "n", "k"]
    assert reg["problem"].tolist() == sim.counts["problem_id"].astype(str).tolist()
    solved = reg["k"] > 0
    assert (reg.loc[solved, "label"] == "solved").all()
    assert (reg.loc[solved, "p_zero"] == 0).all()
    assert (
        (reg["p_low"] <= reg["p_mean"] + 1e-12) & (reg["p_mean"] <= reg["p_high"] + 1e-12)
    ).all()
    assert (reg["p_zero"] <= reg["p_structural"] + 1e-12).all()
    failed = reg[~solved]
    assert set(failed["label"]) <= {"structural", "recoverable", "uncertain"}
    # A bigger epsilon can only add mass below it.
    wider = fitted.regimes(epsilon=0.05)
    assert (wider["p_structural"] >= reg["p_structural"] - 1e-12).all()
    assert np.allclose(fitted.regimes(budget=1000)["p_structural"], reg["p_structural"])


def test_expected_gain_forms(fitted):
    n_cells = fitted.data.n_cells
    g0 = fitted.expected_gain(0)
    assert np.all(g0["gain_mean"] == 0)
    g10 = fitted.expected_gain(10)
    g100 = fitted.expected_gain(100)
    assert (g100["gain_mean"] >= g10["gain_mean"] - 1e-12).all()
    assert ((g10["gain_low"] <= g10["gain_mean"]) & (g10["gain_mean"] <= g10["gain_high"])).all()
    m = np.arange(n_cells) % 5
    per_cell = fitted.expected_gain(m)
    for value in range(5):
        sel = m == value
        np.testing.assert_allclose(
            per_cell["gain_mean"][sel], fitted.expected_gain(value)["gain_mean"][sel]
        )
    shuffled = pd.Series(m, index=np.arange(n_cells)).sample(frac=1, random_state=0)
    np.testing.assert_allclose(fitted.expected_gain(shuffled)["gain_mean"], per_cell["gain_mean"])
    draws = fitted.expected_gain(10, summary=False)
    assert draws.dims == ("chain", "draw", "cell")
    np.testing.assert_allclose(draws.mean(("chain", "draw")).values, g10["gain_mean"])
    with pytest.raises(ValueError, match="non-negative"):
        fitted.expected_gain(-1)
    with pytest.raises(ValueError, match="one value per cell"):
        fitted.expected_gain(np.ones(3))


def test_gain_matches_monte_carlo_from_posterior(fitted):
    """Expected gain equals simulation from the posterior draws of (z, p)."""
    rng = np.random.default_rng(0)
    reg = fitted.regimes()
    cell = int(np.flatnonzero(reg["k"].to_numpy() == 0)[0])
    n, k = int(reg.loc[cell, "n"]), 0
    g = fitted.data.stratum_index[cell]
    post = fitted.pattern_posterior()
    pi, a, b = (x[:, g] for x in post.population())
    reps = 200
    w = np.exp(cf.log_structural_weight(k, n, pi, a, b))
    z = rng.random((reps, pi.size)) < w
    p = np.where(z, 0.0, rng.beta(a + k, b + n - k, size=(reps, pi.size)))
    hit = rng.binomial(50, p) > 0
    expected = fitted.expected_gain(50)["gain_mean"][cell]
    assert abs(hit.mean() - expected) < 4 * np.sqrt(expected * (1 - expected) / hit.size) + 1e-3


def test_pass_at_k_and_coverage(fitted):
    res = fitted.pass_at_k([1, 12, 1000, 10**6])
    assert set(res["kind"]) == {"fresh_run", "solved_after_more", "new_problem"}
    assert list(res.columns) == ["group", "k", "kind", "mean", "low", "high"]
    for (_, kind), sub in res.groupby(["group", "kind"]):
        assert sub["mean"].is_monotonic_increasing, kind
    ceiling = fitted.coverage_ceiling()
    fresh_big = res[(res["kind"] == "fresh_run") & (res["k"] == 10**6)].set_index("group")
    bench = ceiling[ceiling["kind"] == "benchmark"].set_index("group")
    assert (fresh_big["mean"] <= bench["mean"] + 1e-9).all()
    with pytest.raises(ValueError):
        fitted.pass_at_k([0])


def _cell_draws(model, fn):
    """fn(k, n, pi, a, b) evaluated cell by cell on the posterior draws: (draws, cells)."""
    pi, a, b = model.pattern_posterior().population()
    s = model.data.stratum_index
    k, n = model.data.cells["k"].to_numpy(), model.data.cells["n"].to_numpy()
    return fn(k, n, pi[:, s], a[:, s], b[:, s])


def test_regimes_match_per_cell_closed_forms(fitted):
    """Per-pattern evaluation broadcast to cells equals the closed forms cell by cell."""
    reg = fitted.regimes()
    eps = reg.attrs["epsilon"]
    expected = {
        "p_zero": _cell_draws(fitted, cf.structural_weight),
        "p_mean": _cell_draws(fitted, cf.posterior_mean_p),
        "p_structural": _cell_draws(fitted, lambda k, n, *h: cf.prob_below(eps, k, n, *h)),
        "p_fail_budget": 1 - _cell_draws(fitted, lambda k, n, *h: cf.expected_gain(k, n, 1000, *h)),
    }
    for column, draws in expected.items():
        np.testing.assert_allclose(reg[column], draws.mean(axis=0), rtol=1e-9, atol=1e-12)
    assert reg["label"].tolist() == [
        "solved"
        if k > 0
        else "structural"
        if p >= 0.9
        else "recoverable"
        if p <= 0.1
        else "uncertain"
        for k, p in zip(reg["k"], reg["p_structural"], strict=True)
    ]


def test_pass_at_k_kinds_match_per_cell_closed_forms(fitted):
    """The three pass@k kinds (gain draws shared by the first two) against closed forms."""
    ks = [1, 7, 500]
    res = fitted.pass_at_k(ks).set_index(["group", "k", "kind"])
    pi, a, b = fitted.pattern_posterior().population()
    cells = fitted.data.cells
    for g, group in enumerate(fitted.data.strata):
        sel = fitted.data.stratum_index == g
        k, n = cells["k"].to_numpy()[sel], cells["n"].to_numpy()[sel]
        for m in ks:
            gain = cf.expected_gain(k, n, m, pi[:, g, None], a[:, g, None], b[:, g, None])
            draws = {
                "fresh_run": gain.mean(axis=1),
                "solved_after_more": np.where(k > 0, 1.0, gain).mean(axis=1),
                "new_problem": cf.pass_at_k_new_problem(m, pi[:, g], a[:, g], b[:, g]),
            }
            for kind, values in draws.items():
                row = res.loc[(group, m, kind)]
                lo, hi = np.quantile(values, [0.055, 0.945])
                np.testing.assert_allclose(
                    [row["mean"], row["low"], row["high"]], [values.mean(), lo, hi], rtol=1e-9
                )
    bench = fitted.coverage_ceiling().set_index(["group", "kind"])
    one_minus_w = 1 - _cell_draws(fitted, cf.structural_weight)
    for g, group in enumerate(fitted.data.strata):
        values = one_minus_w[:, fitted.data.stratum_index == g].mean(axis=1)
        assert bench.loc[(group, "benchmark"), "mean"] == pytest.approx(values.mean(), rel=1e-9)


def test_allocation_spends_budget_on_failures(fitted):
    out = fitted.allocate(200)
    assert list(out.columns[:5]) == ["problem", "group", "condition", "n", "k"]
    assert out["extra"].sum() <= 200
    assert (out.loc[out["k"] > 0, "extra"] == 0).all()
    assert out["extra"].sum() > 0


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "fit.nc")
    loaded = BaseModel.load(path)
    assert isinstance(loaded, RegimeModel)
    assert loaded.config == fitted.config
    assert loaded.idata.identical(fitted.idata)
    pd.testing.assert_frame_equal(loaded.regimes(), fitted.regimes())
    pd.testing.assert_frame_equal(loaded.expected_gain(37), fitted.expected_gain(37))


def test_load_refuses_unknown_format(fitted, tmp_path):
    dt = fitted.idata.copy()
    dt.attrs["format_version"] = 999
    dt.to_netcdf(tmp_path / "future.nc", engine="h5netcdf")
    with pytest.raises(FormatVersionError, match="format version 999"):
        RegimeModel.load(tmp_path / "future.nc")


@pytest.fixture(scope="module")
def failed_fits(sim):
    """Two fits with the same seed and far too few draws (2 x 20) to pass diagnostics."""
    data = RolloutData.from_counts(sim.counts.head(60))
    fits = []
    for _ in range(2):
        model = RegimeModel(data, slab="beta")
        with pytest.warns(DiagnosticsWarning, match="FIT FAILED DIAGNOSTICS"):
            model.fit(draws=20, tune=20, chains=2, random_seed=11, progressbar=False)
        fits.append(model)
    return fits


def test_failed_diagnostics_warn_loudly(failed_fits):
    model = failed_fits[0]
    assert not model.diagnostics().ok
    with pytest.warns(DiagnosticsWarning):
        reg = model.regimes()
    assert reg.attrs["diagnostics"].startswith("FIT FAILED")


def test_plain_model_has_no_structural_mass(sim):
    model = RegimeModel(
        RolloutData.from_counts(sim.counts, group="group"), slab="beta", structural=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        model.fit(random_seed=2, **TINY)
        reg = model.regimes()
    assert "pi" not in model.posterior
    assert (reg["p_zero"] == 0).all()


def test_bad_arguments():
    data = RolloutData.from_counts(pd.DataFrame({"problem_id": ["a"], "n": [3], "k": [0]}))
    with pytest.raises(ValueError, match="slab"):
        RegimeModel(data, slab="cauchy")
    with pytest.raises(ValueError, match="epsilon"):
        RegimeModel(data, epsilon=0)
    with pytest.raises(ValueError, match="prior"):
        RegimeModel(data, priors={"nope": 1})
    with pytest.raises(TypeError, match="RolloutData"):
        RegimeModel(pd.DataFrame())
    with pytest.raises(RuntimeError, match="not fitted"):
        RegimeModel(data).regimes()
    with pytest.raises(DataError):
        RolloutData.from_counts(pd.DataFrame({"problem_id": ["a"], "n": [3], "k": [4]}))


def test_seed_reproducibility(failed_fits):
    a, b = failed_fits
    np.testing.assert_array_equal(a.posterior["mu"].values, b.posterior["mu"].values)


def test_nutpie_fits_run_the_adaptation_on_one_rayon_thread(monkeypatch, sim):
    # nutpie's low-rank adaptation sums on rayon threads in a varying order: the same
    # seed gave different draws in 2 of 15 processes until this was set.
    import pymc as pm

    class Stop(Exception):
        pass

    seen = []

    def sample(**kwargs):
        seen.append(os.environ.get("RAYON_NUM_THREADS"))
        raise Stop

    monkeypatch.setattr(pm, "sample", sample)
    model = RegimeModel(RolloutData.from_counts(sim.counts, group="group"))
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    with pytest.raises(Stop):
        model.fit(sampler="nutpie")
    monkeypatch.setenv("RAYON_NUM_THREADS", "3")  # a user's own choice is kept
    with pytest.raises(Stop):
        model.fit(sampler="nutpie")
    assert seen == ["1", "3"]


def test_numpyro_runs_chains_vectorised_unless_there_is_a_device_per_chain(monkeypatch):
    jax = pytest.importorskip("jax")
    from bayes_regimes.models.base import _numpyro_chain_method

    monkeypatch.setattr(jax, "local_device_count", lambda: 1)  # one GPU
    assert _numpyro_chain_method(4) == "vectorized"
    monkeypatch.setattr(jax, "local_device_count", lambda: 4)  # e.g. 4 host devices
    assert _numpyro_chain_method(4) == "parallel"
