"""The RegimeModel as a held-out method (bayes_regimes.heldout_regime)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_regimes.errors import DataError
from bayes_regimes.heldout import POOLED, heldout_targets, holdout_split, run_heldout
from bayes_regimes.heldout_regime import heldout_method, posterior_p_draws

FIT = {"draws": 200, "tune": 200, "chains": 2}


@pytest.fixture(scope="module")
def split():
    # Two models with known p: structural (p = 0) with probability 0.8 for m1 and
    # 0.2 for m2, else p ~ Beta(1, 10).
    rng = np.random.default_rng(3)
    frames = []
    for model, pi in (("m1", 0.8), ("m2", 0.2)):
        p = np.where(rng.random(120) < pi, 0.0, rng.beta(1.0, 10.0, 120))
        n = 300
        frames.append(
            pd.DataFrame(
                {"model": model, "problem_id": np.arange(120), "n": n, "k": rng.binomial(n, p)}
            )
        )
    return holdout_split(pd.concat(frames, ignore_index=True), m=30, random_seed=0)


def test_heldout_method_predicts_rescues(split):
    record = {}
    pred = heldout_method(split, ks=(50, 500), random_seed=0, n_draws=100, fit=FIT, record=record)
    targets = heldout_targets(split)
    assert pred.rescue_prob.shape == (len(targets),)
    assert np.all((pred.rescue_prob >= 0) & (pred.rescue_prob <= 1))
    # Training failures all have k_train = 0 of 30, so they differ only by model:
    # m2 (mostly recoverable) must get higher rescue probabilities, and each
    # model's predicted rescued fraction must match the realised one.
    rescued = targets["rescued"].to_numpy()
    is_m2 = (split.loc[targets.index, "model"] == "m2").to_numpy()
    assert pred.rescue_prob[is_m2].min() > pred.rescue_prob[~is_m2].max() + 0.05
    frac = pred.rescued_fraction
    assert set(frac.index) == {"m1", "m2", POOLED}
    for label, mask in (("m1", ~is_m2), ("m2", is_m2), (POOLED, np.ones_like(is_m2))):
        assert abs(frac.loc[label, "estimate"] - rescued[mask].mean()) < 0.1, label
    assert (frac["low"] <= frac["estimate"]).all() and (frac["estimate"] <= frac["high"]).all()
    assert sorted(pred.pass_at_k["k"].unique().tolist()) == [50, 500]
    assert {"model", "diagnostics", "fit_seconds"} <= set(record)
    assert pred.method == "regime_group"


def test_heldout_method_runs_in_the_protocol_and_is_seeded(split):
    counts = split[["model", "problem_id", "n", "k"]]
    kw = {"n_draws": 50, "fit": FIT}
    a = run_heldout(counts, {"regime": heldout_method}, ks=(50,), method_kwargs={"regime": kw})
    b = run_heldout(counts, {"regime": heldout_method}, ks=(50,), method_kwargs={"regime": kw})
    pd.testing.assert_frame_equal(a["summary"], b["summary"])
    assert 0.5 < a["summary"].loc[0, "auroc"] <= 1.0


def test_posterior_p_draws_match_posterior_mean(split):
    from bayes_regimes import RegimeModel, RolloutData

    train = split.assign(n=split["n_train"], k=split["k_train"])
    model = RegimeModel(
        RolloutData.from_counts(train[["problem_id", "model", "n", "k"]], group="model")
    )
    model.fit(random_seed=1, progressbar=False, **FIT)
    draws = posterior_p_draws(model, 400, random_seed=0)
    assert draws.shape == (400, len(split))
    assert np.all((draws >= 0) & (draws <= 1))
    # Monte Carlo mean of 1 - (1 - p)^n_test equals the closed-form expected gain.
    n_test = split["n_test"].to_numpy()
    mc = (1 - (1 - draws) ** n_test).mean(axis=0)
    exact = model.expected_gain(n_test)["gain_mean"].to_numpy()
    assert np.max(np.abs(mc - exact)) < 0.1
    assert np.corrcoef(mc, exact)[0, 1] > 0.98


def test_heldout_method_rejects_a_plain_table():
    counts = pd.DataFrame({"problem_id": [0, 1], "model": "a", "n": [5, 5], "k": [0, 1]})
    with pytest.raises(DataError, match="n_train"):
        heldout_method(counts, fit=FIT)
