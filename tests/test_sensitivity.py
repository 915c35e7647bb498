"""Power-scaling prior sensitivity: the DataTree handed to ArviZ (log prior,
count-weighted log-likelihood, derived quantities), the output table, and that a
conflicting prior is flagged while the default prior on plenty of data is not."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_regimes import RegimeModel, RolloutData, simulate_benchmark
from bayes_regimes import closed_form as cf
from bayes_regimes.sensitivity import (
    THRESHOLD,
    _prior_vars,
    plot_prior_sensitivity,
    prior_sensitivity,
    sensitivity_datatree,
)

matplotlib.use("Agg")

QUANTITIES = ["pi", "mu", "kappa", "structural_fraction", "gain_100", "gain_1000"]


def _fit(priors=None):
    # Plenty of data with a well-separated slab (mu 0.3, kappa 5, n 20).
    sim = simulate_benchmark(2000, n=20, pi=0.3, mu=0.3, kappa=5.0, random_seed=0)
    model = RegimeModel(RolloutData.from_counts(sim.counts), slab="beta", priors=priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=400, tune=400, chains=2, random_seed=1, progressbar=False)
    return model


@pytest.fixture(scope="module")
def default_fit():
    return _fit()


@pytest.fixture(scope="module")
def default_table(default_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prior_sensitivity(default_fit)


@pytest.fixture(scope="module")
def tree(default_fit):
    return sensitivity_datatree(default_fit)


def test_table_structure(default_table):
    assert list(default_table.columns) == [
        "quantity",
        "variable",
        "group",
        "prior",
        "likelihood",
        "diagnosis",
    ]
    assert default_table["variable"].tolist() == QUANTITIES
    assert default_table["quantity"].iloc[3] == "structural_fraction[all]"
    assert (default_table[["prior", "likelihood"]] >= 0).all().all()
    assert set(default_table["diagnosis"]) <= {
        "ok",
        "prior-data conflict",
        "strong prior / weak likelihood",
        "n/a",
    }
    assert default_table.attrs["diagnostics"] == "ok"


def test_default_prior_on_plenty_of_data_is_not_sensitive(default_table):
    assert (default_table["prior"] < THRESHOLD).all()
    assert (default_table["likelihood"] >= THRESHOLD).all()  # the data are informative
    assert (default_table["diagnosis"] == "ok").all()


def test_conflicting_prior_is_flagged(default_fit):
    # logit(mu) ~ N(4, 0.05) puts mu near 0.98; the data say 0.3.
    conflict = _fit(priors={"logit_mu": (4.0, 0.05)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = conflict.prior_sensitivity().set_index("variable")
    assert table.loc["mu", "prior"] > 10 * THRESHOLD
    assert table.loc["mu", "diagnosis"] == "prior-data conflict"
    # What users act on moves with the prior too.
    assert table.loc["gain_100", "prior"] >= THRESHOLD


def test_log_likelihood_is_count_weighted_total(default_fit, tree):
    # Summed over patterns, it is the log-likelihood of every cell (what psense scales).
    ll = tree["log_likelihood"]["k"].sum("pattern").values.ravel()
    post = default_fit.posterior.stack(s=("chain", "draw")).isel(s=slice(0, 5))
    cells = default_fit.data.cells
    for j in range(5):
        pi, mu, kappa = (float(post[v].values[0, j]) for v in ("pi", "mu", "kappa"))
        direct = cf.zibb_logpmf(
            cells["k"].to_numpy(), cells["n"].to_numpy(), pi, mu * kappa, (1 - mu) * kappa
        ).sum()
        assert ll[j] == pytest.approx(direct, rel=1e-9)


def test_log_prior_is_the_documented_prior(default_fit, tree):
    lp = tree["log_prior"].to_dataset()
    assert set(lp.data_vars) == {"logit_pi", "logit_mu", "log_kappa"}
    post = default_fit.posterior
    for name, (loc, scale) in [
        ("logit_pi", (-1.0, 1.5)),
        ("logit_mu", (0.0, 1.5)),
        ("log_kappa", (1.0, 1.5)),
    ]:
        np.testing.assert_allclose(
            lp[name].values, stats.norm.logpdf(post[name].values, loc, scale), rtol=1e-7
        )


def test_grouped_models_scale_only_top_level_priors():
    sim = simulate_benchmark(30, n=5, groups={"a": {}, "b": {}}, random_seed=0)
    data = RolloutData.from_counts(sim.counts, group="group")
    pm_model = RegimeModel(data, slab="beta").build_model()
    names = set(_prior_vars(pm_model))
    assert names == {
        f"{p}_{s}" for p in ("logit_mu", "log_kappa", "logit_pi") for s in ("loc", "sd")
    }


def test_derived_quantities_match_the_queries(default_fit, tree):
    post = tree["posterior"].to_dataset()
    reg = default_fit.regimes()
    failed = reg["k"].to_numpy() == 0
    # Mean over draws of the per-draw failed-cell average = mean of the per-cell means.
    assert float(post["structural_fraction"].mean()) == pytest.approx(
        reg.loc[failed, "p_structural"].mean(), rel=1e-9
    )
    gain = default_fit.expected_gain(100)
    assert float(post["gain_100"].mean()) == pytest.approx(
        gain.loc[failed, "gain_mean"].mean(), rel=1e-9
    )


def test_plot(default_fit):
    fig = plot_prior_sensitivity(default_fit, m=(100,))
    assert len(fig.axes) == 5  # pi, mu, kappa, structural_fraction, gain_100
    with pytest.raises(ValueError, match="component"):
        plot_prior_sensitivity(default_fit, component="posterior")


def test_one_prior_component_alone(default_fit):
    # Scaling only the prior of logit_pi: its log-prior is the only term, the
    # quantities it drives (pi) move at least as much as under the slab's priors alone.
    tree_pi = sensitivity_datatree(default_fit, prior_vars=["logit_pi"])
    assert set(tree_pi["log_prior"].to_dataset().data_vars) == {"logit_pi"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = prior_sensitivity(default_fit, prior_vars=["logit_pi"]).set_index("variable")
        slab = prior_sensitivity(default_fit, prior_vars=["logit_mu", "log_kappa"])
    assert alone.loc["pi", "prior"] >= slab.set_index("variable").loc["pi", "prior"]
    with pytest.raises(ValueError, match="not free variables"):
        sensitivity_datatree(default_fit, prior_vars=["slab_loc"])


@pytest.mark.slow
def test_benchmark_script_runs(tmp_path, monkeypatch, shared_data):
    import json
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    sys.modules.pop("sensitivity", None)
    import sensitivity as bench  # benchmarks/sensitivity.py

    out = tmp_path / "sens"
    args = ["--slabs", "beta", "--draws", "100", "--tune", "100", "--out", str(out)]
    results = bench.main(args)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert set(saved["slabs"]) == {"beta"} and results["settings"]["m"] == 10
    table = pd.DataFrame(saved["slabs"]["beta"]["sensitivity"])
    assert {"structural_fraction", "gain_100", "gain_1000"} <= set(table["variable"])
    # The held-out truth: fractions in [0, 1], one row per model (7 Pythia models).
    truth = pd.DataFrame(saved["heldout_truth"])
    assert len(truth) == 7 and truth.drop(columns="group").stack().between(0, 1).all()
    assert (tmp_path / "sens_prior_beta.png").exists()
    assert (tmp_path / "sens_likelihood_beta.png").exists()
