"""A fitted :class:`~bayes_regimes.models.regime.RegimeModel` as a held-out method.

:func:`heldout_method` has the contract of :mod:`bayes_regimes.baselines`: it fits on
the training counts of :func:`~bayes_regimes.heldout.holdout_split` and predicts the
held-out samples, so the Bayesian model is scored by the same
:func:`~bayes_regimes.heldout.score_heldout` as the baselines.
:func:`posterior_p_draws` gives the exact posterior draws of every cell's p behind
its predictive intervals.

Examples
--------
>>> from bayes_regimes.heldout import holdout_split
>>> from bayes_regimes.simulate import simulate_benchmark
>>> counts = simulate_benchmark(n_problems=30, n=20, random_seed=0).counts
>>> split = holdout_split(counts, 10, random_seed=0)
>>> pred = heldout_method(
...     split,
...     ks=(20, 100),
...     group=None,
...     random_seed=0,
...     n_draws=50,
...     fit={"draws": 200, "tune": 200, "chains": 2},
... )
>>> bool(((pred.rescue_prob >= 0) & (pred.rescue_prob <= 1)).all())
True
>>> pred.pass_at_k[["group", "k"]].values.tolist()
[['all', 20], ['all', 100], ['pooled', 20], ['pooled', 100]]
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bayes_regimes import queries as q
from bayes_regimes.baselines import _assemble, _train
from bayes_regimes.data import RolloutData
from bayes_regimes.heldout import HeldoutPrediction, predictive_intervals
from bayes_regimes.models.regime import RegimeModel


def posterior_p_draws(
    model: RegimeModel, n_draws: int = 200, random_seed: int | np.random.Generator | None = None
) -> np.ndarray:
    """Exact posterior draws of every cell's p, shape (n_draws, cells), cell order.

    Each row takes one hyper-parameter draw; given it, every cell's p is drawn
    independently: 0 with probability w, else from the slab posterior.
    """
    rng = np.random.default_rng(random_seed)
    post = model.pattern_posterior()
    slab = q.slab_of(post)
    cp = model._patterns.cell_pattern
    draws = rng.choice(post.n_draws, size=n_draws, replace=n_draws > post.n_draws)
    out = np.empty((n_draws, cp.size))
    order = np.argsort(cp, kind="stable")
    for idx in post.chunks():
        cells = order[np.isin(cp[order], idx)]
        pos = np.searchsorted(idx, cp[cells])
        pi, *theta = (x[draws][:, pos] for x in post.hyper(idx))
        k, n = post.k[cp[cells]], post.n[cp[cells]]
        w = np.exp(slab.log_structural_weight(k, n, pi, *theta))
        p = slab.sample_slab_p(rng, k, n, *theta)
        out[:, cells] = np.where(rng.random(p.shape) < w, 0.0, p)
    return out


def heldout_method(
    split: pd.DataFrame,
    ks=(100, 1000, 10000),
    *,
    group: str | None = "model",
    interval_prob: float = 0.89,
    random_seed: int | np.random.Generator | None = None,
    problem: str = "problem_id",
    n_draws: int = 200,
    fit: dict | None = None,
    record: dict | None = None,
    **model_kwargs,
) -> HeldoutPrediction:
    """A RegimeModel (``pooling=`` in ``model_kwargs``) as a held-out method.

    Same contract as :mod:`bayes_regimes.baselines`: fits on (n_train, k_train),
    returns a :class:`~bayes_regimes.heldout.HeldoutPrediction` with the posterior
    mean rescue probability ``G(n_test)`` of every training failure, the rescued
    fraction and fresh-run pass@k per group, and predictive intervals from exact
    posterior draws of p. ``record`` (a dict) receives the fitted model, its
    diagnostics summary and the fit time.
    """
    labels, n, k, n_test, ks_arr = _train(split, group, ks)
    rng = np.random.default_rng(random_seed)
    counts = pd.DataFrame({"problem": split[problem].to_numpy(), "n": n, "k": k})
    counts["group"] = labels
    data = RolloutData.from_counts(counts, problem="problem", group="group")
    model = RegimeModel(data, **model_kwargs)
    fit_kw = {"draws": 1000, "tune": 1000, "chains": 2, "progressbar": False}
    fit_kw |= {"random_seed": int(rng.integers(2**31))} | (fit or {})
    start = time.perf_counter()
    model.fit(**fit_kw)
    seconds = time.perf_counter() - start
    gain = model.expected_gain(n_test)["gain_mean"].to_numpy()
    passk = np.stack([model.expected_gain(int(kk))["gain_mean"].to_numpy() for kk in ks_arr], 1)
    intervals = None
    if n_draws:
        p_draws = posterior_p_draws(model, n_draws, rng)
        intervals = predictive_intervals(
            split, p_draws, ks_arr, group=group, interval_prob=interval_prob, random_seed=rng
        )
    if record is not None:
        record.update(model=model, diagnostics=model.diagnostics().summary(), fit_seconds=seconds)
    name = f"regime_{model.config.get('pooling', 'group')}"
    return _assemble(name, labels, k, gain, passk, ks_arr, intervals=intervals)
