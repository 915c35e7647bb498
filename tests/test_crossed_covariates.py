"""Model-level covariates of the crossed model: checks, likelihood, queries, I/O, recovery."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_regimes import RegimeModel, RolloutData
from bayes_regimes.errors import DataError, DiagnosticsWarning
from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.crossed_covariates import covariate_matrix
from bayes_regimes.models.crossed_tools import simulate_crossed

FAST = {"draws": 150, "tune": 150, "chains": 2, "progressbar": False}
SIZES = [7.8, 8.2, 8.6, 9.0, 9.4, 9.8]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)  # tiny settings
        yield


@pytest.fixture(scope="module")
def sim():
    return simulate_crossed(
        n_problems=40,
        n_models=len(SIZES),
        n=10,
        model_covariate=SIZES,
        ability_coef=1.0,
        model_propensity_coef=-1.0,
        random_seed=5,
    )


@pytest.fixture(scope="module")
def fitted(sim):
    data = RolloutData.from_counts(sim.counts, group="model")
    model = RegimeModel(data, pooling="crossed", model_covariates=sim.params["model_covariates"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        model.fit(random_seed=1, **FAST)
    return model


# -- checks on the table -------------------------------------------------------------------
def test_covariate_matrix_standardises_in_model_order():
    # Rows of models absent from the fit are unused; the index may hold non-strings.
    cov = pd.DataFrame({"size": [1.0, 2.0, 4.0, 100.0]}, index=["a", "b", "c", 7])
    x = covariate_matrix(cov, ["c", "a", "b"])
    raw = np.array([4.0, 1.0, 2.0])
    assert list(x.index) == ["c", "a", "b"]
    assert np.allclose(x["size"], (raw - raw.mean()) / raw.std())
    from_dict = covariate_matrix({"size": {"a": 1, "b": 2, "c": 4}}, ["c", "a", "b"])
    pd.testing.assert_frame_equal(from_dict, x)


@pytest.mark.parametrize(
    ("table", "models", "message"),
    [
        (
            pd.DataFrame({"x": [1.0, 2.0]}, index=["a", "b"]),
            ["a", "c"],
            r"no row for model\(s\) \['c'\]",
        ),
        (
            pd.DataFrame({"x": [1.0, np.nan, 3.0]}, index=list("abc")),
            list("abc"),
            "'x' is not a finite number for model\\(s\\) \\['b'\\]",
        ),
        (
            pd.DataFrame({"x": [1.0, "big", 3.0]}, index=list("abc")),
            list("abc"),
            "'x' is not a finite",
        ),
        (pd.DataFrame({"x": [2.0, 2.0, 2.0]}, index=list("abc")), list("abc"), "constant"),
        (pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=["a", "a", "b"]), ["a", "b"], "duplicate row"),
        (
            pd.DataFrame({"x": [1.0, 2.0], "y": [0.0, 1.0]}, index=["a", "b"]),
            ["a", "b"],
            "fewer covariates than models",
        ),
        (pd.DataFrame(index=["a", "b"]), ["a", "b"], "empty table"),
    ],
)
def test_bad_covariates_are_named(table, models, message):
    with pytest.raises(DataError, match=message):
        covariate_matrix(table, models)


def test_bad_covariates_reach_the_constructor_and_type(sim):
    data = RolloutData.from_counts(sim.counts, group="model")
    with pytest.raises(DataError, match="no row for model"):
        RegimeModel(data, pooling="crossed", model_covariates={"x": {"m00": 1.0}})
    with pytest.raises(TypeError, match="model_covariates must be"):
        RegimeModel(data, pooling="crossed", model_covariates=[1, 2, 3])


# -- the model --------------------------------------------------------------------------
def test_trend_enters_abilities_and_structural_terms(sim):
    """At any point of the parameter space, ability - (loc + x coef) is the residual
    (summing to zero over the models) and the structural term is x coef + residual."""
    import pytensor

    data = RolloutData.from_counts(sim.counts, group="model")
    model = RegimeModel(data, pooling="crossed", model_covariates=sim.params["model_covariates"])
    pm_model = model.build_model()
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in pm_model.initial_point().items()}
    names = ["ability", "ability_loc", "ability_coef", "model_propensity", "model_propensity_coef"]
    names += ["model_propensity_sd"]
    outs = pm_model.replace_rvs_by_values([pm_model[name] for name in names])
    fn = pytensor.function(pm_model.value_vars, outs, on_unused_input="ignore")
    v = dict(zip(names, fn(*[point[x.name] for x in pm_model.value_vars]), strict=True))
    x = model.model_covariates.to_numpy()
    resid = v["ability"] - v["ability_loc"] - x @ v["ability_coef"]
    assert abs(resid.sum()) < 1e-8 and np.std(resid) > 0
    u_resid = v["model_propensity"] - x @ v["model_propensity_coef"]
    z = point["model_propensity_z"]
    assert np.allclose(u_resid, v["model_propensity_sd"] * z)


def test_covariate_terms(sim):
    """The covariates inform the terms named (the slab concentration included), and
    terms the model does not have are refused."""
    import pytensor

    data = RolloutData.from_counts(sim.counts, group="model")
    cov = sim.params["model_covariates"]
    model = RegimeModel(
        data, pooling="crossed", model_covariates=cov, covariate_terms=["kappa", "ability"]
    )
    assert model.covariate_coefs == {"ability": "ability_coef", "kappa": "kappa_coef"}
    assert model.config["covariate_terms"] == ["ability", "kappa"]
    pm_model = model.build_model()
    assert "model_propensity_coef" not in pm_model.named_vars
    names = ["kappa", "log_kappa_loc", "kappa_coef", "kappa_sd"]
    outs = pm_model.replace_rvs_by_values([pm_model[name] for name in names])
    fn = pytensor.function(pm_model.value_vars, outs, on_unused_input="ignore")
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in pm_model.initial_point().items()}
    v = dict(zip(names, fn(*[point[x.name] for x in pm_model.value_vars]), strict=True))
    x = model.model_covariates.to_numpy()
    expected = v["log_kappa_loc"] + x @ v["kappa_coef"] + v["kappa_sd"] * point["kappa_z"]
    assert np.allclose(np.log(v["kappa"]), expected)
    assert "kappa_coef" in model.diagnostic_vars
    plain = {"pooling": "crossed", "model_covariates": cov}
    with pytest.raises(ValueError, match="needs kappa_by='model'"):
        RegimeModel(data, **plain, covariate_terms=["kappa"], kappa_by="global")
    with pytest.raises(ValueError, match="needs structural=True"):
        RegimeModel(data, **plain, covariate_terms=["structural"], model_propensity=False)
    with pytest.raises(ValueError, match="non-empty subset"):
        RegimeModel(data, **plain, covariate_terms=["size"])
    with pytest.raises(ValueError, match="covariate_terms needs model_covariates"):
        RegimeModel(data, pooling="crossed", covariate_terms=["ability"])
    # The default informs every per-model term the model has.
    assert list(RegimeModel(data, **plain).covariate_coefs) == ["ability", "structural", "kappa"]
    only = RegimeModel(data, **plain, model_propensity=False, kappa_by="global")
    assert only.covariate_coefs == {"ability": "ability_coef"}


def test_fit_queries_and_population_of_models(fitted):
    post = fitted.posterior
    assert post["ability_coef"].dims[-1] == "model_covariate"
    assert list(post["model_covariate"].values) == ["x"]
    assert {"ability_coef", "model_propensity_coef"} <= set(fitted.diagnostic_vars)
    reg = fitted.regimes()
    assert len(reg) == fitted.data.n_cells and reg["p_structural"].between(0, 1).all()
    # A new model is drawn from the whole population: residual plus the fitted trend.
    dr = fitted._draws()
    x = fitted.model_covariates.to_numpy()[:, 0]
    coef = post["ability_coef"].values.reshape(-1)
    expected = np.sqrt(dr["ability_sd"] ** 2 + coef**2 * np.mean(x**2))
    assert np.allclose(dr["ability_pop_sd"], expected)
    assert np.all(dr["ability_pop_sd"] >= dr["ability_sd"])
    assert np.all(dr["u_pop_sd"] >= dr["u_sd"])
    new = fitted.predict_new_cell(fitted.problems[0], "unseen model")
    assert not new["known_model"].iloc[0] and 0 < new["pass@10_mean"].iloc[0] < 1


def test_new_model_placed_by_its_covariates_matches_monte_carlo(fitted):
    """A new model of known size on a new problem: pass@k equals a Monte Carlo draw
    of its terms (fitted trends at its standardised covariate plus residuals)."""
    from scipy.special import expit

    from bayes_regimes.models.crossed_draws import PROPENSITY_NODES, gauss_hermite, slab_shapes

    new = fitted.predict_new_cell(
        "never-seen", "big model", ks=[1, 100], model_covariates={"x": {"big model": 10.5}}
    )
    assert new["from_covariates"].tolist() == [True]
    raw = np.array(SIZES)
    x_std = (10.5 - raw.mean()) / raw.std()
    dr = fitted._draws()
    post = fitted.posterior
    rng = np.random.default_rng(0)
    s = rng.integers(dr["gamma"].size, size=200_000)

    def coef(name):
        return post[name].values.reshape(-1)[s] * x_std

    ability = dr["ability_loc"][s] + coef("ability_coef")
    ability = ability + dr["ability_sd"][s] * rng.standard_normal(s.size)
    eta = ability - dr["difficulty_sd"][s] * rng.standard_normal(s.size)
    kappa = dr["kappa_loc"][s] * np.exp(coef("kappa_coef"))
    u = coef("model_propensity_coef") + dr["u_sd"][s] * rng.standard_normal(s.size)
    x, w = gauss_hermite(PROPENSITY_NODES)
    node = rng.choice(x, size=s.size, p=w)
    structural = rng.random(s.size) < expit(dr["gamma"][s] + dr["propensity_sd"][s] * node + u)
    a, b = slab_shapes(eta, kappa, fitted.config["slab"])
    p = np.where(structural, 0.0, rng.beta(a, b))
    for kk in (1, 100):
        mc = np.mean(1 - (1 - p) ** kk)
        assert new[f"pass@{kk}_mean"].iloc[0] == pytest.approx(mc, abs=0.006)
    # Known models ignore the table; a new model without a row is refused.
    mixed = fitted.predict_new_cell(
        ["never-seen"] * 2, [fitted.models[0], "big"], model_covariates={"x": {"big": 9.0}}
    )
    assert mixed["from_covariates"].tolist() == [False, True]
    with pytest.raises(DataError, match=r"no row for new model\(s\) \['other'\]"):
        fitted.predict_new_cell("q0000", "other", model_covariates={"x": {"big": 9.0}})
    with pytest.raises(DataError, match=r"no column\(s\) \['x'\]"):
        fitted.predict_new_cell("q0000", "big", model_covariates={"y": {"big": 9.0}})


def test_every_query_runs_on_a_covariate_fit(fitted):
    """The core model's queries, LOO, the comparison and the figures, unchanged."""
    import matplotlib

    matplotlib.use("Agg")
    gain = fitted.expected_gain(100)
    reg = fitted.regimes()
    failed = (gain["k"] == 0).to_numpy()
    assert np.all(gain["gain_mean"].to_numpy()[failed] <= 1 - reg["p_zero"].to_numpy()[failed])
    assert fitted.pass_at_k([1, 1000])["mean"].between(0, 1).all()
    alloc = fitted.allocate(40)
    assert alloc["extra"].sum() <= 40 and (alloc.loc[alloc["k"] > 0, "extra"] == 0).all()
    fractions, more = fitted.compare_structural()
    assert len(fractions) == len(fitted.models) and more.shape == (6, 6)
    assert "log_likelihood" in fitted.idata.children
    fitted.plot_difficulty_ability()
    summary = fitted.problem_summary()
    assert summary["p_zero_new_model"].between(0, 1).all()


def test_save_load_keeps_covariates(fitted, tmp_path):
    loaded = BaseModel.load(fitted.save(tmp_path / "cov.nc"))
    assert loaded.config == fitted.config
    pd.testing.assert_frame_equal(loaded.model_covariates, fitted.model_covariates)
    pd.testing.assert_frame_equal(loaded.regimes(), fitted.regimes())


def test_simulate_needs_one_value_per_model():
    with pytest.raises(ValueError, match="3 values"):
        simulate_crossed(n_problems=5, n_models=3, model_covariate=[1.0, 2.0], random_seed=0)


@pytest.mark.slow
def test_covariate_trends_recovered():
    """Known trends in ability (+1.2 per sd) and structural propensity (-1.5 per sd)
    are recovered: the sign is certain and the 94 % intervals hold the truth."""
    sizes = np.linspace(7.8, 10.1, 10)
    sim = simulate_crossed(
        n_problems=150,
        n_models=sizes.size,
        n=10,
        model_covariate=sizes,
        ability_coef=1.2,
        model_propensity_coef=-1.5,
        model_propensity_sd=0.2,
        ability_sd=0.3,
        random_seed=21,
    )
    data = RolloutData.from_counts(sim.counts, group="model")
    model = RegimeModel(data, pooling="crossed", model_covariates=sim.params["model_covariates"])
    model.fit(draws=500, tune=500, chains=2, random_seed=3, progressbar=False)
    for name, truth in (("ability_coef", 1.2), ("model_propensity_coef", -1.5)):
        draws = model.posterior[name].values.reshape(-1)
        lo, hi = np.quantile(draws, [0.03, 0.97])
        assert lo <= truth <= hi, (name, lo, hi)
        assert np.mean(np.sign(draws) == np.sign(truth)) > 0.97, name


def test_cli_model_covariates(fitted, sim, tmp_path, monkeypatch, capsys):
    """``fit --pooling crossed --model-covariates CSV`` passes the table to the model
    (the fit itself is replaced by the module's fit of the same data)."""
    from bayes_regimes import cli
    from bayes_regimes.models.crossed import CrossedRegimeModel

    def fake_fit(self, **kwargs):
        self.idata = fitted.idata
        return self.idata

    monkeypatch.setattr(CrossedRegimeModel, "fit", fake_fit)
    counts = tmp_path / "counts.csv"
    sim.counts.to_csv(counts, index=False)
    cov = tmp_path / "models.csv"
    sim.params["model_covariates"].rename_axis("model").reset_index().to_csv(cov, index=False)
    out = tmp_path / "out"
    args = ["fit", str(counts), "--group", "model", "--pooling", "crossed", "--out", str(out)]
    assert cli.main([*args, "--model-covariates", str(cov), "--no-report", "--quiet"]) == 0
    loaded = BaseModel.load(out / "fit.nc")
    pd.testing.assert_frame_equal(loaded.model_covariates, fitted.model_covariates)
    # Errors are one line, exit code 2.
    capsys.readouterr()
    pd.DataFrame({"name": ["m00"], "x": [1.0]}).to_csv(cov, index=False)
    assert cli.main([*args, "--model-covariates", str(cov), "--quiet"]) == 2
    assert "no column 'model'" in capsys.readouterr().err
    plain = ["fit", str(counts), "--group", "model", "--out", str(out)]
    assert cli.main([*plain, "--model-covariates", str(cov), "--quiet"]) == 2
    assert "needs --pooling crossed" in capsys.readouterr().err
