"""The crossed problem x model model: dispatch, likelihood, queries, new cells, I/O, CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logsumexp
from scipy.stats import betabinom

from bayes_regimes import RegimeModel, RolloutData
from bayes_regimes import closed_form as cf
from bayes_regimes.errors import DataError, DiagnosticsWarning
from bayes_regimes.heldout_regime import posterior_p_draws
from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.crossed import CrossedRegimeModel
from bayes_regimes.models.crossed_draws import PROPENSITY_NODES, gauss_hermite, slab_shapes
from bayes_regimes.models.crossed_tools import (
    compare_structural,
    simulate_crossed,
    structural_fraction_draws,
)

FAST = {"draws": 150, "tune": 150, "chains": 2, "progressbar": False}


@pytest.fixture(scope="module")
def sim():
    return simulate_crossed(
        n_problems=40, n_models=4, n=10, condition_effects=[0.0, 0.8], random_seed=3
    )


@pytest.fixture(scope="module")
def data(sim):
    return RolloutData.from_counts(sim.counts, group="model", condition="condition")


@pytest.fixture(scope="module")
def fitted(data):
    model = RegimeModel(data, pooling="crossed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)  # tiny settings
        model.fit(random_seed=1, **FAST)
    return model


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        yield


# -- construction ------------------------------------------------------------------------
def test_pooling_dispatch(data):
    crossed = RegimeModel(data, pooling="crossed", slab="beta")
    assert type(crossed) is CrossedRegimeModel
    assert crossed.config["pooling"] == "crossed" and crossed.config["slab"] == "beta"
    plain = RegimeModel(data)
    assert type(plain) is RegimeModel and plain.config["pooling"] == "group"
    with pytest.raises(ValueError, match="pooling"):
        RegimeModel(data, pooling="nested")


def test_needs_two_models(sim):
    # The fixture has two conditions: keep one model and its condition column.
    one = sim.counts[sim.counts["model"] == "m00"]
    one = RolloutData.from_counts(one, group="model", condition="condition")
    with pytest.raises(DataError, match="column 'group'.*at least two models"):
        RegimeModel(one, pooling="crossed")
    both = RolloutData.from_counts(sim.counts, group="model", condition="condition")
    with pytest.raises(ValueError, match="slab"):
        CrossedRegimeModel(both, slab="gamma")
    with pytest.raises(ValueError, match="centered"):
        CrossedRegimeModel(both, centered="sometimes")


def _grid(models: int, problems: int, n: int, k: int) -> RolloutData:
    i, m = np.divmod(np.arange(models * problems), models)
    counts = pd.DataFrame(
        {"problem_id": [f"q{j}" for j in i], "model": [f"m{j}" for j in m], "n": n, "k": k}
    )
    return RolloutData.from_counts(counts, group="model")


def test_auto_centering_needs_members_and_both_outcomes():
    # 10 models x 30 problems x 10, half solved: 150 successes and failures per model,
    # 50 per problem -> both centred.
    assert CrossedRegimeModel(_grid(10, 30, 10, 5)).centering == (True, True)
    # Four models (as in the SBC design): the ability sd is weakly identified, so the
    # abilities stay non-centred however much data each model has.
    assert CrossedRegimeModel(_grid(4, 30, 10, 5)).centering == (False, True)
    # Nearly always solved: plenty of successes but 10 failures per problem (the logit
    # is not pinned down) -> non-centred difficulties; 30 failures per model suffice.
    assert CrossedRegimeModel(_grid(10, 30, 10, 9)).centering == (True, False)
    # The user's choice wins.
    assert CrossedRegimeModel(_grid(4, 30, 10, 5), centered=True).centering == (True, True)


def test_slab_shapes_mean():
    eta = np.linspace(-8, 5, 7)
    for slab in ("beta", "beta_logit"):
        a, b = slab_shapes(eta, 2.0, slab)
        assert np.allclose(a / (a + b), expit(eta))
    a, b = slab_shapes(eta, 2.0, "beta_logit")
    assert np.all(np.minimum(a, b) >= 2.0)  # constant logit-scale spread: no shape below kappa


@pytest.mark.parametrize("per_model", [False, True])
def test_potential_matches_numpy_likelihood(data, per_model):
    """The sampler's log-likelihood equals the one the queries use, at a random point
    (with and without the per-model structural term and slab concentration)."""
    kind = "model" if per_model else "global"
    model = CrossedRegimeModel(data, model_propensity=per_model, kappa_by=kind)
    import pytensor

    pm_model = model.build_model()
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in pm_model.initial_point().items()}
    names = ["ability", "difficulty", "condition_effect", "kappa", "logit_pi_loc"]
    names += ["propensity_sd", "loglik"] + (["model_propensity"] if per_model else [])
    outs = pm_model.replace_rvs_by_values([pm_model[name] for name in names])
    fn = pytensor.function(pm_model.value_vars, outs, on_unused_input="ignore")
    values = fn(*[point[v.name] for v in pm_model.value_vars])
    values = dict(zip(names, values, strict=True))
    dr = {
        "ability": values["ability"][None],
        "difficulty": values["difficulty"][None],
        "kappa": np.broadcast_to(values["kappa"], (1, len(model.models))),
        "condition": values["condition_effect"][None],
        "disc": np.ones((1, len(model.models))),
        "gamma": np.atleast_1d(values["logit_pi_loc"]),
        "propensity_sd": np.atleast_1d(values["propensity_sd"]),
        "u": values["model_propensity"][None] if per_model else np.zeros((1, len(model.models))),
    }
    per_problem = model._problem_loglik(dr)
    total = logsumexp(per_problem + np.log(gauss_hermite(PROPENSITY_NODES)[1]), axis=-1).sum()
    # The numpy pmf carries log C(n, k), a constant the sampler's potential leaves out.
    const = cf.log_binom(model._n, model._k).sum()
    assert total == pytest.approx(float(values["loglik"]) + const, rel=1e-9)


# -- the fit and its queries ----------------------------------------------------------
def test_structural_weight_matches_enumeration(fitted):
    """w from the per-cell (pi, a, b) equals P(z = 1 | all cells of the problem) by
    brute-force enumeration over the propensity nodes (scipy's beta-binomial)."""
    dr = fitted._draws()
    post = fitted.pattern_posterior()
    x, wq = gauss_hermite(PROPENSITY_NODES)
    for problem in range(3):
        cells = np.flatnonzero(fitted._problem == problem)
        pi_eff, a, b = post.hyper(cells)
        for s in (0, 7):
            u = dr["u"][s, fitted._model[cells]][:, None]  # 0 without model propensity
            pi_j = expit(dr["gamma"][s] + dr["propensity_sd"][s] * x + u)
            k, n = fitted._k[cells], fitted._n[cells]
            bb = betabinom.pmf(k[:, None], n[:, None], a[s][:, None], b[s][:, None])
            f = np.where(k[:, None] == 0, pi_j, 0.0) + (1 - pi_j) * bb
            node_post = wq * np.prod(f, axis=0)
            node_post /= node_post.sum()
            truth = (node_post * np.where(k[:, None] == 0, pi_j, 0.0) / f).sum(axis=1)
            got = cf.structural_weight(k, n, pi_eff[s], a[s], b[s])
            assert np.allclose(got, truth, rtol=1e-8, atol=1e-12)


def _reference_hyper(model, dr):
    """(pi, a, b) of every cell by the direct log-space formulas (the implementation
    before the linear-space speed-up): each cell's node log-likelihood, summed per
    problem, the cell's own term subtracted, softmax over the nodes."""
    x, w = gauss_hermite(PROPENSITY_NODES)
    i, m, c = model._problem, model._model, model._condition
    eta = dr["ability"][:, m] - dr["difficulty"][:, i] + dr["condition"][:, c]
    a, b = slab_shapes(eta, dr["kappa"][:, m], model.config["slab"])
    logit = dr["gamma"][:, None, None] + dr["propensity_sd"][:, None, None] * x
    logit = logit + dr["u"][:, m][..., None]
    slab = cf.zibb_logpmf(model._k, model._n, 0.0, a, b)[..., None]
    zero = (model._k == 0)[None, :, None]
    own = np.where(
        zero, np.logaddexp(-np.logaddexp(0, -logit), -np.logaddexp(0, logit) + slab), 0.0
    )
    own = np.where(zero, own, -np.logaddexp(0, logit) + slab)
    per_problem = np.zeros((own.shape[0], len(model.problems), len(x)))
    np.add.at(per_problem, (slice(None), i), own)
    log_q = per_problem[:, i] - own + np.log(w)
    pi = np.sum(np.exp(log_q - logsumexp(log_q, axis=-1, keepdims=True)) * expit(logit), -1)
    return pi, a, b


def test_fast_hyper_matches_log_space_reference(fitted):
    """The cached linear-space leave-one-out pi equals the direct log-space formula,
    also where node probabilities underflow (propensity_sd = 150: pi_j and 1 - pi_j
    reach 0 at the outer nodes, so the log-space fallback runs), and repeated cells
    (as the allocation asks for) give the same columns."""
    dr = fitted._draws()
    cells = np.arange(fitted.data.n_cells)
    ref = _reference_hyper(fitted, dr)
    got = fitted._cell_hyper(dr, cells, solved_pi=True)
    for g, r in zip(got, ref, strict=True):
        assert np.allclose(g, r, rtol=1e-10, atol=1e-300)
    failed = fitted._k == 0
    assert np.all(fitted._cell_hyper(dr, cells)[0][:, ~failed] == 0)
    stressed = {key: v for key, v in dr.items() if key not in ("nodes", "problem_ll")}
    stressed["propensity_sd"] = np.full_like(dr["propensity_sd"], 150.0)
    fitted._propensity_cache(stressed)
    assert np.any(stressed["nodes"]["pi_min"] == 0) and np.any(stressed["nodes"]["one_m_min"] == 0)
    ref_pi = _reference_hyper(fitted, stressed)[0]
    got_pi = fitted._cell_hyper(stressed, cells, solved_pi=True)[0]
    assert np.allclose(got_pi, ref_pi, rtol=1e-9, atol=1e-300)
    repeated = np.array([5, 3, 5, 5, 0, 3])
    once = fitted._cell_hyper(dr, np.array([0, 3, 5]))
    for g, r in zip(fitted._cell_hyper(dr, repeated), once, strict=True):
        assert np.array_equal(g, r[:, [2, 1, 2, 2, 0, 1]])


def test_queries_match_closed_form_slab(fitted):
    """The queries on the fast slab equal those of closed_form's Beta slab on the same
    hyper-parameter draws (pattern regimes, gains, pass@k, coverage, allocation)."""
    from dataclasses import replace

    from bayes_regimes import queries as q

    fast = fitted.pattern_posterior()
    ref = replace(fast, slab=None)
    pairs = np.arange(len(fast.n)), np.full(len(fast.n), 100)
    for got, want in [
        (q.pattern_regimes(fast, 1e-3), q.pattern_regimes(ref, 1e-3)),
        (q.pattern_gain(fast, *pairs, 0.89), q.pattern_gain(ref, *pairs, 0.89)),
        (q.coverage_draws(fast), q.coverage_draws(ref)),
    ]:
        for g, w in zip(
            *(v.to_numpy().T if isinstance(v, pd.DataFrame) else v for v in (got, want)),
            strict=True,
        ):
            assert np.allclose(g, w, rtol=1e-9, atol=1e-13)
    pk_fast, pk_ref = q.pass_at_k_all(fast, [1, 10, 1000]), q.pass_at_k_all(ref, [1, 10, 1000])
    for key, value in pk_ref.items():
        assert np.allclose(pk_fast[key], value, rtol=1e-9, atol=1e-13)
    cp = fitted._patterns.cell_pattern
    extra_fast = q.allocate_budget(fast, cp, 60)[0]
    assert np.array_equal(extra_fast, q.allocate_budget(ref, cp, 60)[0])


def test_queries_run_and_are_aligned(fitted, data):
    reg = fitted.regimes()
    assert len(reg) == data.n_cells
    assert reg["problem"].tolist() == data.cells["problem"].tolist()
    assert set(reg["label"]) <= {"solved", "recoverable", "structural", "uncertain"}
    gain = fitted.expected_gain(100)
    failed = (gain["k"] == 0).to_numpy()
    assert np.all(
        gain["gain_mean"].to_numpy()[failed] <= 1 - reg["p_zero"].to_numpy()[failed] + 1e-9
    )
    pk = fitted.pass_at_k([1, 10, 1000])
    assert set(pk["kind"]) == {"fresh_run", "solved_after_more", "new_problem"}
    assert pk["mean"].between(0, 1).all()
    cov = fitted.coverage_ceiling()
    assert cov["mean"].between(0, 1).all() and len(cov) == 2 * len(fitted.data.strata)
    ppc = fitted.ppc(max_draws=50)
    assert ppc.groupby("group")["observed"].sum().eq(40).all()
    alloc = fitted.allocate(50)
    assert alloc["extra"].sum() <= 50 and (alloc.loc[alloc["k"] > 0, "extra"] == 0).all()
    assert fitted.diagnostics().table["param"].str.startswith("difficulty[").any()


def test_failures_of_one_model_are_told_apart(fitted, sim):
    """Same (n, k = 0) under one model, different posteriors, and they rank the
    failures by their true p and true structural flag (a single-model fit gives every
    failure of a model the same numbers: AUROC 0.5 within a model)."""
    from bayes_regimes.metrics import auroc

    reg = fitted.regimes()
    gain = fitted.expected_gain(1000)["gain_mean"]
    failed = (reg["k"] == 0).to_numpy()
    for _, sub in reg[failed].groupby("group"):
        assert sub["p_structural"].std() > 0.01
    assert gain[failed].groupby(reg["group"][failed]).std().min() > 0.01
    truth = sim.truth[failed]
    assert auroc(truth["p"] > 1e-3, gain[failed]) > 0.6
    assert auroc(truth["structural"], reg["p_structural"][failed]) > 0.6


def test_new_problem_matches_population_and_monte_carlo(fitted):
    model = fitted.models[1]
    new = fitted.predict_new_cell("never-seen", model, condition="c1", ks=[1, 100])
    pop = fitted.pass_at_k([1, 100], kinds=("new_problem",)).set_index(["group", "k"])
    for kk in (1, 100):
        expected = pop.loc[(f"{model}|c1", kk), "mean"]
        assert new[f"pass@{kk}_mean"].iloc[0] == pytest.approx(expected)
    # Monte Carlo over the model's prior for a new problem, from the posterior draws.
    dr = fitted._draws()
    rng = np.random.default_rng(0)
    s = rng.integers(dr["gamma"].size, size=200_000)
    m = fitted.models.index(model)
    eta = dr["ability"][s, m] - dr["difficulty_sd"][s] * rng.standard_normal(s.size)
    eta += dr["condition"][s, fitted.conditions.index("c1")]
    x, w = gauss_hermite(PROPENSITY_NODES)
    node = rng.choice(x, size=s.size, p=w)  # the propensity's discretised prior
    logit_pi = dr["gamma"][s] + dr["propensity_sd"][s] * node + dr["u"][s, m]
    structural = rng.random(s.size) < expit(logit_pi)
    a, b = slab_shapes(eta, dr["kappa"][s, m], fitted.config["slab"])
    p = np.where(structural, 0.0, rng.beta(a, b))
    for kk in (1, 100):
        mc = np.mean(1 - (1 - p) ** kk)
        assert new[f"pass@{kk}_mean"].iloc[0] == pytest.approx(mc, abs=0.006)


def test_predict_new_cell_known_and_unknown(fitted):
    out = fitted.predict_new_cell([fitted.problems[0], "new"], ["new model", fitted.models[0]])
    assert out["known_problem"].tolist() == [True, False]
    assert out["known_model"].tolist() == [False, True]
    for kk in (1, 10, 100, 1000):
        col = out[f"pass@{kk}_mean"]
        assert np.all((out[f"pass@{kk}_low"] <= col) & (col <= out[f"pass@{kk}_high"]))
    assert np.all(out["pass@1000_mean"] >= out["pass@10_mean"])
    with pytest.raises(ValueError, match="condition"):
        fitted.predict_new_cell("new", "new", condition="nope")


def test_posterior_p_draws_and_comparison(fitted):
    p = posterior_p_draws(fitted, 300, random_seed=0)
    reg = fitted.regimes()
    assert p.shape == (300, len(reg))
    assert np.all(p[:, (reg["k"] > 0).to_numpy()] > 0)
    assert np.allclose(p.mean(axis=0), reg["p_mean"], atol=0.05)
    fractions, more = compare_structural(fitted)
    off = ~np.eye(len(more), dtype=bool)
    assert np.allclose(np.diag(more), 0) and np.allclose((more + more.T).to_numpy()[off], 1)
    assert (fractions["structural_low"] <= fractions["structural_mean"]).all()
    total = fractions["solved"] + fractions["structural_mean"] + fractions["recoverable_mean"]
    assert np.allclose(total, 1)


def test_comparison_matches_regimes(fitted):
    """The structural fraction of each stratum is the mean of its cells' P(p < eps),
    and P(A more structural than B) comes from the same draws."""
    fractions, more = fitted.compare_structural()
    reg = fitted.regimes()
    stratum = reg["group"] + "|" + reg["condition"]  # strata are "model|condition" here
    by_group = reg["p_structural"].groupby(stratum.to_numpy()).mean()
    got = fractions.set_index("group")["structural_mean"]
    assert np.allclose(got, by_group[fractions["group"]])
    a, b = fractions["group"].iloc[0], fractions["group"].iloc[1]
    draws = structural_fraction_draws(fitted)
    assert more.loc[a, b] == pytest.approx(np.mean(draws[:, 0] > draws[:, 1]))


def test_plots(fitted):
    import matplotlib

    matplotlib.use("Agg")

    fig = fitted.plot_difficulty_ability()
    reg = fitted.regimes()
    failed = (reg["k"] == 0).to_numpy()
    # The second scatter holds the failed cells, coloured by their P(p < epsilon).
    colours = fig.axes[0].collections[1].get_array()
    assert np.allclose(colours, reg["p_structural"].to_numpy()[failed])
    fig2 = fitted.plot_structural_comparison()
    fractions, more = fitted.compare_structural()
    assert np.allclose(fig2.axes[1].images[0].get_array(), more.to_numpy())


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "crossed.nc")
    loaded = BaseModel.load(path)
    assert type(loaded) is CrossedRegimeModel and loaded.config == fitted.config
    pd.testing.assert_frame_equal(loaded.regimes(), fitted.regimes())
    pd.testing.assert_frame_equal(
        loaded.predict_new_cell("x", fitted.models[0]),
        fitted.predict_new_cell("x", fitted.models[0]),
    )


# -- command line --------------------------------------------------------------------------
def test_cli_pooling_crossed(fitted, sim, tmp_path, monkeypatch):
    """``fit --pooling crossed`` builds the crossed model (the fit itself is replaced by
    the module's fit of the same data, to keep the test fast)."""
    from bayes_regimes import cli

    def fake_fit(self, **kwargs):
        self.idata = fitted.idata
        return self.idata

    monkeypatch.setattr(CrossedRegimeModel, "fit", fake_fit)
    path = tmp_path / "counts.csv"
    sim.counts.to_csv(path, index=False)
    out = tmp_path / "out"
    args = ["fit", str(path), "--group", "model", "--condition", "condition", "--out", str(out)]
    args += ["--pooling", "crossed"]
    assert cli.main([*args, "--no-report", "--quiet"]) == 0
    assert type(BaseModel.load(out / "fit.nc")) is CrossedRegimeModel
    assert len(pd.read_csv(out / "regimes.csv")) == len(sim.counts)
    assert cli.main(["fit", str(path), "--pooling", "crossed", "--out", str(out)]) == 2


# -- slow: parameter recovery and variational inference --------------------------------
@pytest.mark.slow
def test_parameter_recovery():
    sim = simulate_crossed(n_problems=200, n_models=12, n=10, random_seed=11)
    model = RegimeModel(RolloutData.from_counts(sim.counts, group="model"), pooling="crossed")
    model.fit(draws=500, tune=500, chains=2, random_seed=2, progressbar=False)
    post = model.posterior
    true_ability = pd.Series(sim.params["ability"])[model.models].to_numpy()
    est = post["ability"].mean(("chain", "draw")).values
    assert np.corrcoef(est, true_ability)[0, 1] > 0.97
    lo, hi = post["ability"].quantile([0.025, 0.975], ("chain", "draw")).values
    assert np.mean((lo <= true_ability) & (true_ability <= hi)) >= 0.75
    true_d = pd.Series(sim.params["difficulty"])[model.problems].to_numpy()
    assert np.corrcoef(post["difficulty"].mean(("chain", "draw")).values, true_d)[0, 1] > 0.8
    reg = model.regimes()
    failed = (reg["k"] == 0).to_numpy()
    from bayes_regimes.metrics import auroc

    truth = sim.truth["structural"].to_numpy()[failed]
    assert auroc(truth, reg["p_zero"].to_numpy()[failed]) > 0.75
    # Calibration of the structural probability: expected vs true number.
    assert reg["p_zero"].to_numpy()[failed].sum() == pytest.approx(truth.sum(), rel=0.25)


@pytest.mark.slow
def test_variational_fit(data):
    model = RegimeModel(data, pooling="crossed")
    model.fit(method="advi", draws=300, n_steps=5000, random_seed=0, progressbar=False)
    info = model.diagnostics().summary()
    assert info["n_draws"] == 300
    assert len(model.regimes()) == data.n_cells
