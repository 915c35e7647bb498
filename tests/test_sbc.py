"""Simulation-based calibration: the rank machinery, the uniformity tests, the prior
draws, the compiled-model re-use, and (slow) a reduced SBC of every core model."""

from __future__ import annotations

import functools
import json
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logit

from bayes_regimes import RegimeModel, RolloutData, simulate_benchmark
from bayes_regimes.sbc import (
    SBCResult,
    _design,
    _Fitter,
    chi2_uniformity,
    ecdf_uniformity,
    prior_draws,
    rank_statistic,
    run_sbc,
    thin_draws,
)

matplotlib.use("Agg")

L = 99  # posterior draws per rank


# -- rank statistic and thinning ---------------------------------------------------------
def test_rank_counts_draws_below_truth():
    draws = np.array([[0.1, 5.0], [0.2, 6.0], [0.3, 7.0]])
    assert rank_statistic(np.array([0.25, 4.0]), draws).tolist() == [2, 0]
    assert rank_statistic(np.array([1.0, 8.0]), draws).tolist() == [3, 3]


def test_ties_are_broken_uniformly():
    # A truth equal to every draw must get a uniform rank on 0..L, not always 0.
    rng = np.random.default_rng(1)
    ranks = [rank_statistic(np.zeros(1), np.zeros((L, 1)), rng)[0] for _ in range(4000)]
    assert min(ranks) == 0 and max(ranks) == L
    assert abs(np.mean(ranks) - L / 2) < 3 * np.sqrt((L + 1) ** 2 / 12 / 4000)


def test_thin_draws_takes_even_shares_from_every_chain():
    values = np.arange(2 * 1000).reshape(2, 1000, 1)
    out = thin_draws(values, 99)
    assert out.shape == (99, 1)
    first, second = out[out < 1000], out[out >= 1000]
    assert {len(first), len(second)} == {49, 50}
    assert np.all(np.diff(first) >= 19)  # strided, not consecutive
    with pytest.raises(ValueError, match="cannot thin"):
        thin_draws(values, 2001)


# -- uniformity tests --------------------------------------------------------------------
def test_chi2_matches_scipy_with_equal_bins():
    ranks = np.random.default_rng(2).integers(0, L + 1, size=300)
    stat, df, p = chi2_uniformity(ranks, L, bins=10)
    ref = stats.chisquare(np.bincount(ranks // 10, minlength=10))
    assert df == 9
    np.testing.assert_allclose([stat, p], [ref.statistic, ref.pvalue])


def test_chi2_uses_exact_expected_counts_for_unequal_bins():
    # 0..9 in 3 bins holds 4, 3, 3 rank values: uniform ranks give a statistic of 0.
    ranks = np.repeat(np.arange(10), 3)
    stat, df, p = chi2_uniformity(ranks, 9, bins=3)
    assert stat == pytest.approx(0.0) and df == 2 and p == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ranks must lie"):
        chi2_uniformity(np.array([10]), 9)


def test_ecdf_test_has_nominal_size_and_power():
    rng = np.random.default_rng(3)
    pvals = np.array([ecdf_uniformity(rng.random(100)) for _ in range(300)])
    assert np.all((pvals > 0) & (pvals <= 1))
    # Size: about 5 % rejections at 0.05 under uniformity (binomial 99.9 % range).
    assert 4 <= np.sum(pvals < 0.05) <= 29
    # Power: a mild shift of 100 PIT values is detected.
    assert ecdf_uniformity(rng.random(100) ** 1.6) < 0.01


def _conjugate_sbc(posterior: str, n_sims: int = 400, seed: int = 4) -> SBCResult:
    """SBC of theta ~ Beta(2, 2), k ~ Binomial(20, theta), with exact posterior draws."""
    rng = np.random.default_rng(seed)
    theta = rng.beta(2, 2, size=n_sims)
    k = rng.binomial(20, theta)
    a, b = 2 + k, 2 + 20 - k
    if posterior == "biased":  # as if two extra successes had been seen
        a = a + 2
    if posterior == "overconfident":  # five times too concentrated
        a, b = 5 * a, 5 * b
    ranks = [
        rank_statistic(theta[i : i + 1], rng.beta(a[i], b[i], size=(L, 1)), rng)
        for i in range(n_sims)
    ]
    return SBCResult.from_arrays(
        np.stack(ranks), theta[:, None], n_rank_draws=L, parameters=["theta"], label=posterior
    )


def test_exact_posterior_passes_and_wrong_posteriors_fail():
    good = _conjugate_sbc("exact").uniformity().loc["theta"]
    assert good["chi2_pvalue"] > 0.01 and good["ecdf_pvalue"] > 0.01
    assert good["mean_pit"] == pytest.approx(0.5, abs=0.05)
    assert good["sd_pit"] == pytest.approx(np.sqrt(1 / 12), abs=0.03)
    biased = _conjugate_sbc("biased").uniformity().loc["theta"]
    assert biased["chi2_pvalue"] < 1e-4 and biased["ecdf_pvalue"] < 1e-3
    assert biased["mean_pit"] < 0.4  # truth below most draws: posterior too high
    over = _conjugate_sbc("overconfident").uniformity().loc["theta"]
    assert over["chi2_pvalue"] < 1e-4 and over["ecdf_pvalue"] < 1e-3
    assert over["sd_pit"] > 0.33  # U-shaped ranks


def test_failed_fits_are_kept_and_counted():
    res = _conjugate_sbc("exact", n_sims=40)
    fits = pd.DataFrame(
        {
            "ok": np.arange(40) % 4 != 0,
            "problems": np.where(np.arange(40) % 4 != 0, "", "2 divergent transition(s)"),
        }
    )
    res = SBCResult.from_arrays(
        res.ranks.values, res.truth.values, n_rank_draws=L, parameters=["theta"], fits=fits
    )
    assert res.n_failed == 10
    assert res.failure_reasons()["divergences"] == 10
    assert res.uniformity().loc["theta", "n_sims"] == 40
    assert res.uniformity(exclude_failed=True).loc["theta", "n_sims"] == 30


def test_plot_and_json():
    res = _conjugate_sbc("exact", n_sims=60)
    fig = res.plot()
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1
    out = json.loads(json.dumps(res.to_dict()))
    assert out["n_sims"] == 60 and out["parameters"] == ["theta"]
    assert len(out["ranks"]) == 60


# -- the core model ----------------------------------------------------------------------
def test_prior_draws_are_the_model_prior():
    data = _design(1, 20, 5)
    draws = prior_draws(RegimeModel(data, slab="beta"), 3000, random_seed=5)
    assert set(draws.data_vars) == {"pi", "mu", "kappa"}
    assert draws.sizes == {"simulation": 3000, "group": 1}
    for name, transform, (loc, scale) in [
        ("pi", logit, (-1.0, 1.5)),
        ("mu", logit, (0.0, 1.5)),
        ("kappa", np.log, (1.0, 1.5)),
    ]:
        x = transform(draws[name].values.ravel())
        assert stats.kstest(x, stats.norm(loc, scale).cdf).pvalue > 1e-3, name
    # Prior overrides are honoured; the plain model has no pi.
    plain = RegimeModel(data, slab="beta", structural=False, priors={"logit_mu": (2.0, 0.1)})
    mu = prior_draws(plain, 2000, random_seed=6)
    assert "pi" not in mu
    assert logit(mu["mu"].values).mean() == pytest.approx(2.0, abs=0.02)


def test_logitnormal_prior_draws_and_simulation():
    model = RegimeModel(_design(1, 20, 5), slab="logitnormal")
    draws = prior_draws(model, 3000, random_seed=9)
    assert set(draws.data_vars) == {"pi", "slab_loc", "slab_scale"}
    loc, log_scale = draws["slab_loc"].values.ravel(), np.log(draws["slab_scale"].values.ravel())
    assert stats.kstest(loc, stats.norm(-2.0, 2.0).cdf).pvalue > 1e-3
    mu_s, sd_s = model.slab.default_priors["log_slab_scale"]
    assert stats.kstest(log_scale, stats.norm(mu_s, sd_s).cdf).pvalue > 1e-3
    # The simulator draws k from the zero-inflated logit-normal binomial: the share of
    # each k matches the slab's closed-form pmf.
    spec = {"pi": 0.2, "slab_loc": -1.0, "slab_scale": 1.5}
    data = _design(1, 40_000, 6, {"all": spec}, seed=10, slab="logitnormal")
    freq = np.bincount(data.cells["k"], minlength=7) / 40_000
    pmf = np.exp(model.slab.logpmf(np.arange(7), 6, 0.2, -1.0, 1.5))
    se = np.sqrt(pmf * (1 - pmf) / 40_000)
    assert np.all(np.abs(freq - pmf) <= 4 * se + 1e-4), (freq, pmf)


def test_grouped_prior_draws_are_partially_pooled():
    draws = prior_draws(RegimeModel(_design(3, 20, 5), slab="beta"), 4000, random_seed=7)
    assert list(draws["group"].values) == ["g0", "g1", "g2"]
    x = logit(draws["mu"].values)
    # loc ~ N(0, 1.5), sd ~ HalfNormal(1), z ~ N(0, 1): marginal variance 1.5^2 + 1.
    assert x.var() == pytest.approx(1.5**2 + 1, rel=0.1)
    # Groups share loc: correlation 1.5^2 / (1.5^2 + 1).
    assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] == pytest.approx(2.25 / 3.25, abs=0.05)


def test_compiled_model_reuse_gives_the_same_draws_as_fit():
    # The SBC loop re-uses one compiled model; it must equal a plain fit exactly,
    # on data with a different number of patterns than the template.
    fit_kw = {"draws": 60, "tune": 60, "chains": 2}
    fitter = _Fitter(RegimeModel(_design(1, 30, 10), slab="beta"), "nutpie", fit_kw)
    n = np.arange(80) % 7 + 3
    data = RolloutData.from_counts(simulate_benchmark(80, n, pi=0.3, random_seed=3).counts)
    reused, fresh = RegimeModel(data, slab="beta"), RegimeModel(data, slab="beta")
    fitter(reused, 11)
    assert fitter.reused == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh.fit(draws=60, tune=60, chains=2, random_seed=11, progressbar=False)
    for name in ("pi", "mu", "kappa"):
        np.testing.assert_array_equal(reused.posterior[name].values, fresh.posterior[name].values)
    assert reused.diagnostics().summary() == fresh.diagnostics().summary()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("structural", "n_groups", "slab"),
    [
        (True, 1, "beta"),
        (False, 1, "beta"),
        (True, 3, "beta"),
        (False, 3, "beta"),
        (True, 1, "logitnormal"),
        (False, 1, "logitnormal"),
        (True, 3, "logitnormal"),
    ],
)
def test_reduced_sbc_of_core_models(structural, n_groups, slab):
    make = functools.partial(RegimeModel, structural=structural, slab=slab)
    res = run_sbc(
        make, 40, n_groups=n_groups, n_problems=60, n=10, draws=400, tune=300, random_seed=8
    )
    n_params = (3 if structural else 2) * n_groups
    assert res.ranks.sizes == {"simulation": 40, "parameter": n_params}
    assert len(res.fits) == 40 and res.fits["divergences"].ge(0).all()
    assert res.settings["target_accept"] == 0.95
    table = res.uniformity()
    # Bonferroni over parameters and both tests: a miscalibrated model fails this.
    assert table[["chi2_pvalue", "ecdf_pvalue"]].min().min() > 0.001 / (2 * n_params)
    # Fits are not wildly off either: PIT means near 0.5.
    assert table["mean_pit"].between(0.3, 0.7).all()


@pytest.mark.slow
def test_benchmark_script_runs(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    sys.modules.pop("sbc", None)
    import sbc as bench  # benchmarks/sbc.py

    out = tmp_path / "sbc_smoke"
    args = ["--n-sims", "3", "--n-problems", "20", "--draws", "100", "--tune", "100"]
    results = bench.main([*args, "--variants", "plain", "--out", str(out)])
    assert set(results["variants"]) == {"plain"}
    assert json.loads(out.with_suffix(".json").read_text())["variants"]["plain"]["n_sims"] == 3
    assert (tmp_path / "sbc_smoke_ecdf.png").exists()
    # --append keeps the variants already saved and adds the new one.
    bench.main([*args, "--variants", "zi", "--out", str(out), "--append"])
    saved = json.loads(out.with_suffix(".json").read_text())["variants"]
    assert set(saved) == {"plain", "zi"}
    assert "| plain |" in out.with_suffix(".md").read_text()


def test_result_round_trips_through_its_dict():
    rng = np.random.default_rng(5)
    res = SBCResult.from_arrays(
        rng.integers(0, L + 1, size=(30, 2)),
        rng.normal(size=(30, 2)),
        n_rank_draws=L,
        parameters=["pi[all]", "mu[all]"],
        fits=pd.DataFrame({"ok": rng.random(30) < 0.8, "problems": "", "seconds": 1.0}),
        label="x",
        settings={"draws": 10},
    )
    back = SBCResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.label == "x" and back.settings == {"draws": 10} and back.n_failed == res.n_failed
    np.testing.assert_array_equal(back.ranks.values, res.ranks.values)
    pd.testing.assert_frame_equal(back.uniformity(), res.uniformity())
