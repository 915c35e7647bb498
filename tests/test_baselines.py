"""Tests of the held-out protocol (bayes_regimes.heldout) and the baselines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bayes_regimes import baselines as bl
from bayes_regimes import datasets
from bayes_regimes.closed_form import expected_gain, unbiased_pass_at_k
from bayes_regimes.errors import DataError
from bayes_regimes.heldout import (
    POOLED,
    heldout_targets,
    holdout_split,
    pass_at_k_truth,
    predictive_intervals,
    run_heldout,
    score_pass_at_k,
    score_predictions,
)


def _simulated_counts(n_problems=200, n=2000, a=0.3, b=4.0, models=("m1", "m2"), seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for model in models:
        p = rng.beta(a, b, size=n_problems)
        frames.append(
            pd.DataFrame(
                {
                    "model": model,
                    "problem_id": np.arange(n_problems),
                    "n": n,
                    "k": rng.binomial(n, p),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def sim_split():
    return holdout_split(_simulated_counts(), m=10, random_seed=1)


# ---------------------------------------------------------------------------
# held-out protocol
# ---------------------------------------------------------------------------
def test_holdout_split_totals_and_reproducible():
    counts = _simulated_counts()
    s1 = holdout_split(counts, 10, random_seed=3)
    s2 = holdout_split(counts, 10, random_seed=3)
    s3 = holdout_split(counts, 10, random_seed=4)
    pd.testing.assert_frame_equal(s1, s2)
    assert not s1["k_train"].equals(s3["k_train"])
    assert (s1["n_train"] + s1["n_test"] == s1["n"]).all()
    assert (s1["k_train"] + s1["k_test"] == s1["k"]).all()
    assert (s1["n_train"] == 10).all()
    assert (s1["k_train"].between(0, 10)).all() and (s1["k_test"] >= 0).all()
    assert (s1["k_train"] <= s1["k"]).all()
    assert list(s1.columns) == [*counts.columns, "n_train", "k_train", "n_test", "k_test"]


def test_holdout_split_hypergeometric_moments():
    n, k, m, rows = 1000, 300, 10, 20_000
    counts = pd.DataFrame({"n": np.full(rows, n), "k": np.full(rows, k)})
    k_train = holdout_split(counts, m, random_seed=0)["k_train"].to_numpy()
    mean = m * k / n
    var = m * (k / n) * (1 - k / n) * (n - m) / (n - 1)
    assert abs(k_train.mean() - mean) < 4 * math.sqrt(var / rows)
    assert k_train.var() == pytest.approx(var, rel=0.05)


@pytest.mark.parametrize(
    ("counts", "m", "match"),
    [
        (pd.DataFrame({"n": [10, 5], "k": [1, 1]}), 5, "n > m"),
        (pd.DataFrame({"n": [10], "k": [11]}), 5, "outside"),
        (pd.DataFrame({"n": [10], "k": [1]}), 0, "positive integer"),
        (pd.DataFrame({"n": [10.0], "k": [1]}), 5, "integers"),
        (pd.DataFrame({"k": [1]}), 5, "'n' is missing"),
    ],
)
def test_holdout_split_validation(counts, m, match):
    with pytest.raises(DataError, match=match):
        holdout_split(counts, m, random_seed=0)


def test_targets_truth_and_scoring_hand_case():
    split = pd.DataFrame(
        {
            "model": ["a", "a", "a", "b", "b"],
            "n": [10] * 5,
            "k": [1, 0, 3, 4, 0],
            "n_train": [5] * 5,
            "k_train": [0, 0, 1, 0, 0],
            "n_test": [5] * 5,
            "k_test": [1, 0, 2, 4, 0],
        }
    )
    targets = heldout_targets(split)
    assert targets.index.tolist() == [0, 1, 3, 4]
    assert targets["rescued"].tolist() == [True, False, True, False]

    truth = pass_at_k_truth(split, [10, 11])
    at_n = truth[truth["k"] == 10].set_index("group")["truth"]
    assert at_n.to_dict() == {"a": 2 / 3, "b": 0.5, POOLED: 0.6}
    assert truth[truth["k"] == 11]["truth"].isna().all()
    assert truth["n_problems"].tolist() == [3, 3, 2, 2, 5, 5]

    interval = pd.DataFrame({"low": [0.4, 0.0], "high": [0.6, 0.1]}, index=["a", "b"])
    tab = score_predictions(split, [0.8, 0.2, 0.6, 0.4], interval=interval)
    assert tab.index.tolist() == ["a", "b", POOLED]
    assert tab.loc["a", "auroc"] == 1.0 and tab.loc["b", "auroc"] == 1.0
    assert tab.loc[POOLED, "auroc"] == 1.0
    assert tab.loc["a", "brier"] == pytest.approx((0.04 + 0.04) / 2)
    assert tab.loc["a", "frac_pred"] == pytest.approx(0.5)
    assert tab.loc["a", "frac_covered"] == 1.0
    assert tab.loc["b", "frac_covered"] == 0.0
    assert math.isnan(tab.loc[POOLED, "frac_covered"])
    assert tab.loc[POOLED, ["n_problems", "n_failures", "n_rescued"]].tolist() == [5, 4, 2]

    # a method without per-problem predictions: NaN metrics, aggregate fraction only
    agg = score_predictions(split, None, rescued_fraction=pd.Series({"a": 0.2, "b": 0.6}))
    assert agg[["auroc", "brier", "ece"]].isna().all().all()
    assert agg.loc[POOLED, "frac_pred"] == pytest.approx(0.4)
    assert agg.loc["a", "frac_abs_error"] == pytest.approx(0.3)
    with pytest.raises(DataError, match="partly NaN"):
        score_predictions(split, [0.1, np.nan, 0.2, 0.3])
    with pytest.raises(DataError, match="training failures"):
        score_predictions(split, [0.1, 0.2])


def test_score_pass_at_k():
    truth = pd.DataFrame({"group": ["a", "a"], "k": [1, 2], "truth": [0.5, np.nan]})
    pred = pd.DataFrame({"group": ["a", "a"], "k": [1, 2], "estimate": [0.7, 0.8]})
    out = score_pass_at_k(pred, truth)
    assert out["error"].iloc[0] == pytest.approx(0.2)
    assert math.isnan(out["error"].iloc[1]) and out["covered"].isna().all()


def test_predictive_intervals_cover_simulated_truth():
    # p known exactly: the predictive interval of the realised fraction should cover
    # the realised fraction in about 89% of replications.
    rng = np.random.default_rng(5)
    hits = []
    for _ in range(60):
        p = rng.beta(0.3, 4.0, size=150)
        k = rng.binomial(400, p)
        split = holdout_split(pd.DataFrame({"n": 400, "k": k}), 10, rng)
        frac, passk = predictive_intervals(
            split, np.tile(p, (400, 1)), [400], group=None, random_seed=rng
        )
        realised = heldout_targets(split)["rescued"].mean()
        hits.append(frac.loc["all", "low"] <= realised <= frac.loc["all", "high"])
        assert passk.loc[0, "low"] <= passk.loc[0, "high"]
    assert 0.75 <= np.mean(hits) <= 0.98


def test_predictive_spread_is_the_calibrated_absolute_error():
    """``spread`` = E|F - E F| over the predictive draws of the rescued fraction F: with
    p either 0 or 1 for every failure (half the draws each), F is 0 or 1, spread 0.5;
    with p known exactly it is the mean absolute error of the predictive mean against
    replications of the held-out data."""
    split = holdout_split(pd.DataFrame({"n": [50] * 6, "k": [0] * 6}), 10, 0)
    draws = np.repeat([[0.0] * 6, [1.0] * 6], 100, axis=0)
    frac, _ = predictive_intervals(split, draws, [20], group=None, random_seed=0)
    assert frac.loc["all", "spread"] == pytest.approx(0.5)
    rng = np.random.default_rng(2)
    p = rng.beta(0.3, 3.0, size=200)
    split = holdout_split(pd.DataFrame({"n": 60, "k": rng.binomial(60, p)}), 10, rng)
    frac, _ = predictive_intervals(split, np.tile(p, (4000, 1)), [20], group=None, random_seed=3)
    fail = split["k_train"].to_numpy() == 0
    replicas = (rng.binomial(50, p[fail], size=(4000, fail.sum())) > 0).mean(axis=1)
    mean = 1 - np.mean((1 - p[fail]) ** 50)
    assert frac.loc["all", "spread"] == pytest.approx(np.mean(np.abs(replicas - mean)), rel=0.08)


# ---------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------
def test_registry_keys():
    assert list(bl.BASELINES) == [
        "no_extrapolation",
        "unbiased_estimator",
        "beta_binomial_mle",
        "power_law",
        "bayes_at_n",
    ]


def test_fit_beta_binomial_recovers_parameters():
    rng = np.random.default_rng(0)
    a, b, n = 0.4, 3.0, 20
    k = rng.binomial(n, rng.beta(a, b, size=5000))
    a_hat, b_hat = bl.fit_beta_binomial(np.full(5000, n), k)
    assert a_hat == pytest.approx(a, rel=0.1)
    assert b_hat == pytest.approx(b, rel=0.15)


def test_no_extrapolation(sim_split):
    pred = bl.no_extrapolation(sim_split, [5, 10, 1000])
    assert (pred.rescue_prob == 0).all()
    assert len(pred.rescue_prob) == len(heldout_targets(sim_split))
    est = pred.pass_at_k.set_index(["group", "k"])["estimate"]
    solved = (sim_split["k_train"] > 0).groupby(sim_split["model"]).mean()
    for model in ("m1", "m2"):
        assert est[(model, 10)] == pytest.approx(solved[model])
        assert est[(model, 1000)] == pytest.approx(solved[model])
    assert (pred.rescued_fraction["estimate"] == 0).all()


def test_unbiased_estimator(sim_split):
    pred = bl.unbiased_estimator(sim_split, [5, 11])
    assert np.isnan(pred.rescue_prob).all()
    est = pred.pass_at_k.set_index(["group", "k"])["estimate"]
    m1 = sim_split[sim_split["model"] == "m1"]
    direct = np.mean(unbiased_pass_at_k(m1["n_train"], m1["k_train"], 5))
    assert est[("m1", 5)] == pytest.approx(direct)
    assert np.isnan(est.xs(11, level="k")).all()
    tab = score_predictions(sim_split, pred.rescue_prob)
    assert tab[["auroc", "brier", "ece", "frac_pred"]].isna().all().all()


def test_bayes_at_n_closed_form():
    split = holdout_split(pd.DataFrame({"n": [100, 100], "k": [0, 40]}), 10, random_seed=0)
    pred = bl.bayes_at_n(split, [100], group=None, n_draws=200, random_seed=0)
    assert pred.rescue_prob == pytest.approx([90 / 101])
    # pass@k of a k = 0 problem under Beta(1, 1 + n) is k / (n + k + 1)
    row = pred.pass_at_k.iloc[0]
    k_train = split["k_train"].to_numpy()
    expected = np.mean(expected_gain(k_train, 10, 100, 0.0, 1.0, 1.0))
    assert row["estimate"] == pytest.approx(expected)
    assert row["low"] <= row["high"]


def test_beta_binomial_mle(sim_split):
    pred = bl.beta_binomial_mle(sim_split, [100, 1000], n_draws=30, random_seed=0)
    m1 = sim_split[sim_split["model"] == "m1"]
    a, b = bl.fit_beta_binomial(m1["n_train"], m1["k_train"])
    targets = heldout_targets(sim_split)
    first = targets["model"].to_numpy() == "m1"
    assert pred.rescue_prob[first] == pytest.approx(expected_gain(0, 10, 1990, 0.0, a, b))
    frac = pred.rescued_fraction
    assert frac.index.tolist() == ["m1", "m2", POOLED]
    assert (frac["low"] <= frac["high"]).all() and frac[["low", "high"]].notna().all().all()
    passk = pred.pass_at_k
    assert len(passk) == 6 and (passk["low"] <= passk["high"]).all()
    assert passk["estimate"].between(0, 1).all()


def test_fit_power_law_exact_extrapolation():
    ks = np.arange(1, 11)
    c, b = 1.7, 0.35
    fit = bl.fit_power_law(ks, np.exp(-c * ks**-b))
    assert fit == pytest.approx((c, b))
    big = np.array([100, 1000, 10000])
    np.testing.assert_allclose(np.exp(-fit[0] * big ** -fit[1]), np.exp(-c * big**-b))
    assert bl.fit_power_law([1, 2], [0.0, 0.0]) is None


def test_power_law_baseline_uses_curve(sim_split):
    pred = bl.power_law(sim_split, [5, 100, 10000])
    assert np.isnan(pred.rescue_prob).all()
    m1 = sim_split[sim_split["model"] == "m1"]
    grid = np.arange(1, 11)
    observed = unbiased_pass_at_k(
        m1["n_train"].to_numpy()[:, None], m1["k_train"].to_numpy()[:, None], grid
    ).mean(0)
    c, b = bl.fit_power_law(grid, observed)
    est = pred.pass_at_k.set_index(["group", "k"])["estimate"]
    assert est[("m1", 5)] == pytest.approx(observed[4])
    assert est[("m1", 10000)] == pytest.approx(np.exp(-c * 10000.0**-b))
    solved = float(np.mean(m1["k_train"] > 0))
    frac = (np.exp(-c * 2000.0**-b) - solved) / (1 - solved)
    assert pred.rescued_fraction.loc["m1", "estimate"] == pytest.approx(np.clip(frac, 0, 1))
    assert pred.rescued_fraction[["low", "high"]].isna().all().all()


@pytest.mark.parametrize("name", list(bl.BASELINES))
def test_baselines_ignore_heldout_columns(sim_split, name):
    blind = sim_split.drop(columns=["k", "n"]).assign(k_test=-1)
    kwargs = {"n_draws": 5, "random_seed": 0}
    p1 = bl.BASELINES[name](sim_split, [100], **kwargs)
    p2 = bl.BASELINES[name](blind, [100], **kwargs)
    np.testing.assert_array_equal(p1.rescue_prob, p2.rescue_prob)
    pd.testing.assert_frame_equal(p1.pass_at_k, p2.pass_at_k)


def test_run_heldout_simulated():
    counts = _simulated_counts(n_problems=100, n=1000)
    res = run_heldout(
        counts,
        ms=(5, 10),
        ks=(100, 1000),
        method_kwargs={"beta_binomial_mle": {"n_draws": 10}, "bayes_at_n": {"n_draws": 50}},
    )
    assert set(res) == {"rescue", "pass_at_k", "summary"}
    assert len(res["summary"]) == 2 * len(bl.BASELINES)
    assert len(res["rescue"]) == 2 * len(bl.BASELINES) * 3
    # k = 1000 = n: the truth is the solved fraction on the full data
    truth = res["pass_at_k"].query("k == 1000 and group == 'm1'")["truth"].iloc[0]
    assert truth == pytest.approx(np.mean(counts.query("model == 'm1'")["k"] > 0))
    bbm = res["summary"].set_index(["method", "m"]).loc[("beta_binomial_mle", 10)]
    # one Beta per group and a common n_train: every failure of a group gets the same
    # probability, so the AUROC only separates groups
    assert 0 <= bbm["auroc"] <= 1 and 0 <= bbm["brier"] <= 1


# ---------------------------------------------------------------------------
# real data
# ---------------------------------------------------------------------------
def test_monkeys_smoke(shared_data):
    counts = datasets.load_source("monkeys")
    res = run_heldout(
        counts,
        ms=(10,),
        ks=(100, 1000, 10000),
        random_seed=0,
        method_kwargs={"beta_binomial_mle": {"n_draws": 20}, "bayes_at_n": {"n_draws": 100}},
    )
    rescue, passk, summary = res["rescue"], res["pass_at_k"], res["summary"]
    n_models = counts["model"].nunique()
    assert len(summary) == 5
    assert len(rescue) == 5 * (n_models + 1)
    assert len(passk) == 5 * (n_models + 1) * 3
    for col in ("auroc", "brier", "ece", "frac_true", "frac_pred"):
        vals = rescue[col].dropna()
        assert vals.between(0, 1).all(), col
    assert rescue.query("method == 'beta_binomial_mle'")["auroc"].notna().all()
    assert rescue.query("method == 'unbiased_estimator'")["auroc"].isna().all()
    assert passk["truth"].between(0, 1).all()
    ok = passk.dropna(subset=["estimate"])
    assert ok["estimate"].between(0, 1).all()
    assert passk.query("method == 'unbiased_estimator'")["estimate"].isna().all()
    covered = passk.query("method == 'bayes_at_n'")["covered"]
    assert covered.notna().all()


def test_joint_bootstrap_fit_matches_single_fits():
    rng = np.random.default_rng(2)
    n = np.full(128, 10)
    k = rng.binomial(n, rng.beta(0.2, 3.0, size=(5, 128)))
    a_many, b_many = bl._fit_many(n, k)
    for i in range(5):
        a, b = bl.fit_beta_binomial(n, k[i])
        assert a_many[i] == pytest.approx(a, rel=1e-3)
        assert b_many[i] == pytest.approx(b, rel=1e-3)
