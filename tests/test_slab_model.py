"""RegimeModel with the logit-normal slab: likelihood, fit, every query, save/load."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from bayes_regimes import DiagnosticsWarning, RegimeModel, RolloutData
from bayes_regimes.compare import candidate_models
from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.regime import SLABS
from bayes_regimes.slabs import LogitNormalSlab

pytestmark = pytest.mark.filterwarnings("ignore::bayes_regimes.errors.DiagnosticsWarning")

TINY = dict(draws=150, tune=150, chains=2, progressbar=False, sampler="pymc")  # compiles fastest


@pytest.fixture(scope="module")
def data():
    """Two groups; p logit-normal (wide, as on real benchmarks) or structurally zero."""
    rng = np.random.default_rng(5)
    frames = []
    for group, pi, loc, scale in (("a", 0.3, -3.0, 2.0), ("b", 0.1, -1.0, 1.5)):
        p = np.where(rng.random(150) < pi, 0.0, expit(rng.normal(loc, scale, 150)))
        frames.append(
            pd.DataFrame(
                {
                    "problem_id": [f"{group}{i}" for i in range(150)],
                    "model": group,
                    "n": 12,
                    "k": rng.binomial(12, p),
                }
            )
        )
    return RolloutData.from_counts(pd.concat(frames, ignore_index=True), group="model")


@pytest.fixture(scope="module")
def fitted(data):
    model = RegimeModel(data, slab="logitnormal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        model.fit(random_seed=2, **TINY)
    return model


def test_slab_is_offered_everywhere(data):
    assert "logitnormal" in SLABS
    assert {"zi_logitnormal", "plain_logitnormal"} <= set(candidate_models(data))
    model = RegimeModel(data, slab="logitnormal", priors={"slab_loc": (-3.0, 1.0)})
    assert model.config["priors"]["slab_loc"] == [-3.0, 1.0]
    assert model.diagnostic_vars == ["slab_loc", "slab_scale", "pi"]
    with pytest.raises(ValueError, match="unknown prior"):
        RegimeModel(data, slab="beta", priors={"slab_loc": (0.0, 1.0)})  # not a Beta prior
    # The logit-normal slab is the default.
    assert RegimeModel(data).slab.name == "logitnormal"
    assert RegimeModel(data, slab="beta").diagnostic_vars == ["mu", "kappa", "pi"]


def test_pymc_likelihood_equals_closed_form(data):
    """The PyMC potential is the pattern-weighted closed-form log-likelihood, and its
    gradient matches finite differences (the node placement itself has no gradient)."""
    model = RegimeModel(data, slab="logitnormal")
    pm_model = model.build_model()
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in pm_model.initial_point().items()}
    offset, start = 0, {}
    for v in pm_model.continuous_value_vars:  # the order of dlogp's flat gradient
        start[v.name] = offset
        offset += int(np.size(point[v.name]))
    fn = pm_model.compile_fn(
        [
            pm_model.potentials[0],
            pm_model["pi"],
            pm_model["slab_loc"],
            pm_model["slab_scale"],
            pm_model.logp(),
            pm_model.dlogp(),
        ],
        inputs=pm_model.value_vars,
        on_unused_input="ignore",
        mode="FAST_RUN",
    )
    pot, pi, loc, scale, _, grad = fn(point)
    pat = data.patterns().table
    s = pat["stratum"].to_numpy()
    ll = LogitNormalSlab().logpmf(pat["k"].to_numpy(), pat["n"].to_numpy(), pi[s], loc[s], scale[s])
    np.testing.assert_allclose(pot, np.sum(pat["count"].to_numpy() * ll), rtol=1e-10)
    h = 1e-5
    for name in ("slab_loc_loc", "log_slab_scale_loc"):
        up = fn({**point, name: point[name] + h})[4]
        down = fn({**point, name: point[name] - h})[4]
        g = grad[start[name]]  # a scalar value variable
        assert g == pytest.approx((up - down) / (2 * h), rel=1e-5)


def test_fit_and_every_query(fitted):
    dt = fitted.idata
    assert set(dt["posterior"]["slab_scale"].dims) == {"chain", "draw", "group"}
    assert dt["log_likelihood"]["k"].dims == ("chain", "draw", "pattern")
    reg = fitted.regimes()
    assert len(reg) == fitted.data.n_cells
    assert set(reg["label"]) <= {"solved", "recoverable", "structural", "uncertain"}
    failed = reg["k"] == 0
    assert (reg.loc[~failed, "p_zero"] == 0).all() and (reg.loc[failed, "p_zero"] > 0).all()
    gain = fitted.expected_gain(100)
    assert np.all((gain["gain_low"] <= gain["gain_mean"] + 1e-12) & (gain["gain_mean"] <= 1))
    draws = fitted.expected_gain(np.arange(fitted.data.n_cells) % 3, summary=False)
    assert draws.dims == ("chain", "draw", "cell")
    passk = fitted.pass_at_k([1, 10, 10_000])
    fresh = passk[passk["kind"] == "fresh_run"].set_index(["group", "k"])["mean"]
    assert fresh.loc[("a", 1)] < fresh.loc[("a", 10)] < fresh.loc[("a", 10_000)]
    cover = fitted.coverage_ceiling()
    bench = cover[cover["kind"] == "benchmark"].set_index("group")["mean"]
    assert fresh.loc[("a", 10_000)] <= bench.loc["a"] + 1e-9
    alloc = fitted.allocate(40)
    assert alloc["extra"].sum() == 40 and (alloc.loc[alloc["extra"] > 0, "k"] == 0).all()
    ppc = fitted.ppc()
    assert ppc.groupby("group")["observed"].sum().tolist() == [150, 150]


def test_structural_fraction_is_recovered(fitted):
    """The truth (pi = 0.3 and 0.1) lies within the posterior's bulk."""
    pi = fitted.posterior["pi"]
    for group, truth in (("a", 0.3), ("b", 0.1)):
        draws = pi.sel(group=group).values.ravel()
        assert np.quantile(draws, 0.005) < truth < np.quantile(draws, 0.995)


def test_save_load_round_trip(fitted, tmp_path):
    loaded = BaseModel.load(fitted.save(tmp_path / "fit.nc"))
    assert loaded.config == fitted.config and loaded.slab.name == "logitnormal"
    pd.testing.assert_frame_equal(loaded.expected_gain(37), fitted.expected_gain(37))


@pytest.mark.slow
def test_healthy_fit_on_the_heldout_monkeys_protocol(shared_data):
    """The zero-inflated logit-normal fit of the held-out benchmark (7 Pythia models,
    first m = 10 samples per problem, its settings: 2 chains x 2,000 draws) passes every
    diagnostic: R-hat <= 1.01, ESS >= 400, no divergences."""
    from bayes_regimes.datasets import source_path
    from bayes_regimes.heldout import holdout_split

    counts = pd.read_csv(source_path("monkeys"))
    split = holdout_split(counts, 10, random_seed=2)  # the hardest of the three splits
    train = split.assign(n=split["n_train"], k=split["k_train"])[["problem_id", "model", "n", "k"]]
    model = RegimeModel(RolloutData.from_counts(train, group="model"), slab="logitnormal")
    model.fit(draws=2000, tune=1000, chains=2, random_seed=2, progressbar=False)
    report = model.diagnostics().summary()
    assert model.diagnostics().ok, report["problems"]
    assert report["divergences"] == 0 and report["max_r_hat"] <= 1.01
    assert report["min_ess_bulk"] >= 400 and report["min_ess_tail"] >= 400
