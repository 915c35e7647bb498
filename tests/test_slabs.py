"""Slab families: closed forms against quadrature and Monte Carlo (no sampling)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import expit, log_expit

from bayes_regimes import closed_form as cf
from bayes_regimes import queries as q
from bayes_regimes.ppc import ppc_table
from bayes_regimes.slabs import SLAB_FAMILIES, BetaSlab, LogitNormalSlab, get_slab

LN = LogitNormalSlab()
BETA = BetaSlab()


def _quad(g, k, n, loc, scale, upper=np.inf):
    """int g(t) sigmoid(t)^k sigmoid(-t)^(n-k) N(t; loc, scale) dt, by adaptive quadrature
    on a fine partition around the integrand's bulk (scaled by its maximum)."""

    def log_f(t):
        return k * log_expit(t) + (n - k) * log_expit(-t) - 0.5 * ((t - loc) / scale) ** 2

    grid = np.linspace(loc - 15 * scale - 30, loc + 15 * scale + 30, 20001)
    vals = log_f(grid)
    top, mode = vals.max(), grid[np.argmax(vals)]
    hi = min(upper, grid[-1])
    if hi <= grid[0]:
        return 0.0, top
    pts = np.concatenate([np.linspace(grid[0], hi, 300), mode + np.linspace(-5, 5, 101)])
    pts = np.unique(np.clip(pts, grid[0], hi))
    total = sum(
        integrate.quad(lambda t: g(t) * np.exp(log_f(t) - top), a, b, epsabs=0, epsrel=1e-11)[0]
        for a, b in zip(pts[:-1], pts[1:], strict=True)
    )
    return total, top


def _quad_log_moment(k, n, loc, scale):
    total, top = _quad(lambda t: 1.0, k, n, loc, scale)
    return np.log(total) + top - np.log(scale * np.sqrt(2 * np.pi))


CASES = [
    (k, n, loc, scale)
    for k, n in [(0, 3), (0, 10), (1, 10), (10, 10), (3, 30), (0, 10_000), (7, 10_000)]
    for loc, scale in [(-8.0, 3.0), (-4.0, 1.5), (-1.0, 0.4), (1.5, 3.0), (-6.0, 5.0)]
]


@pytest.mark.parametrize("k, n, loc, scale", CASES)
def test_logitnormal_log_moment_matches_quadrature(k, n, loc, scale):
    assert LN.log_moment(k, n, loc, scale) == pytest.approx(
        _quad_log_moment(k, n, loc, scale), abs=1e-7
    )


@pytest.mark.parametrize("k, n, loc, scale", CASES[::3])
def test_logitnormal_posterior_quantities_match_quadrature(k, n, loc, scale):
    z, _ = _quad(lambda t: 1.0, k, n, loc, scale)
    for eps in (1e-4, 1e-2, 0.3):
        below, _ = _quad(lambda t: 1.0, k, n, loc, scale, upper=np.log(eps / (1 - eps)))
        assert LN.slab_prob_below(eps, k, n, loc, scale) == pytest.approx(below / z, abs=1e-6)
    for m in (1, 90, 9_990, 10**6):
        rest, _ = _quad(lambda t, m=m: np.exp(m * log_expit(-t)), k, n, loc, scale)
        assert LN.expected_gain(k, n, m, 0.0, loc, scale) == pytest.approx(1 - rest / z, abs=1e-6)
    mean, _ = _quad(expit, k, n, loc, scale)
    assert LN.posterior_mean_p(k, n, 0.0, loc, scale) == pytest.approx(mean / z, rel=1e-6)


@pytest.mark.parametrize("n", [1, 10, 30, 400])
def test_logitnormal_pmf_sums_to_one(n):
    k = np.arange(n + 1)
    for pi, loc, scale in [(0.0, -2.0, 1.0), (0.4, -5.0, 3.0), (0.1, 1.0, 0.3)]:
        assert np.exp(LN.logpmf(k, n, pi, loc, scale)).sum() == pytest.approx(1.0, abs=1e-8)
    assert LN.logpmf(n + 1, n, 0.2, -1.0, 1.0) == -np.inf


def _monte_carlo(pi, loc, scale, n, size, rng):
    z = rng.random(size) < pi
    p = np.where(z, 0.0, expit(rng.normal(loc, scale, size)))
    return p, rng.binomial(n, p)


def test_logitnormal_closed_forms_match_monte_carlo():
    """Condition simulated problems on what was seen; every query against the truth."""
    rng = np.random.default_rng(1)
    pi, loc, scale, n = 0.3, -4.0, 2.0, 10
    p, k = _monte_carlo(pi, loc, scale, n, 2_000_000, rng)
    for k_obs in (0, 1, 3):
        sel = p[k == k_obs]
        se = 4 / np.sqrt(sel.size)
        assert LN.structural_weight(k_obs, n, pi, loc, scale) == pytest.approx(
            np.mean(sel == 0), abs=se
        )
        for m in (10, 1000):
            truth = np.mean(1 - (1 - sel) ** m)
            assert LN.expected_gain(k_obs, n, m, pi, loc, scale) == pytest.approx(truth, abs=se)
        assert LN.prob_below(1e-2, k_obs, n, pi, loc, scale) == pytest.approx(
            np.mean(sel < 1e-2), abs=se
        )
        assert LN.posterior_mean_p(k_obs, n, pi, loc, scale) == pytest.approx(
            sel.mean(), abs=se * sel.std()
        )
    truth = np.mean(1 - (1 - p[:200_000]) ** 50)
    assert LN.pass_at_k_new_problem(50, pi, loc, scale) == pytest.approx(truth, abs=0.005)


def test_logitnormal_gain_shape_and_limits():
    m = np.array([0, 1, 10, 100, 10**4, 10**6, 10**9, 10**12])
    for k, n in [(0, 10), (2, 10), (0, 10_000)]:
        g = LN.expected_gain(k, n, m, 0.3, -5.0, 2.5)
        w = LN.structural_weight(k, n, 0.3, -5.0, 2.5)
        assert g[0] == 0.0 and np.all(np.diff(g) >= 0) and np.all(np.isfinite(g))
        assert LN.expected_gain(k, n, np.inf, 0.3, -5.0, 2.5) == pytest.approx(1 - w)
        assert g[-1] <= 1 - w + 1e-12
        j = np.arange(1, 40)
        delta = np.exp(LN.log_marginal_gain(k, n, j, 0.3, -5.0, 2.5))
        gj = LN.expected_gain(k, n, np.arange(40), 0.3, -5.0, 2.5)
        np.testing.assert_allclose(delta, np.diff(gj), rtol=1e-6, atol=1e-15)
        assert np.all(np.diff(delta) < 0)  # concave: greedy allocation is exact
    assert LN.prob_below(1.0, 0, 10, 0.3, -5.0, 2.5) == 1.0
    assert LN.prob_below(0.0, 0, 10, 0.3, -5.0, 2.5) == 0.0
    assert LN.structural_weight(1, 10, 0.3, -5.0, 2.5) == 0.0


def test_logitnormal_posterior_draws_match_closed_forms():
    rng = np.random.default_rng(2)
    for k, n in [(0, 10), (4, 10), (30, 10_000)]:
        draws = LN.sample_slab_p(rng, np.full(40_000, k), n, -4.0, 2.0)
        se = 4 * draws.std() / np.sqrt(draws.size)
        mean = np.exp(LN.log_moment(k + 1, n + 1, -4.0, 2.0) - LN.log_moment(k, n, -4.0, 2.0))
        assert draws.mean() == pytest.approx(mean, abs=se)
        for eps in np.quantile(draws, [0.1, 0.5, 0.9]):
            assert np.mean(draws < eps) == pytest.approx(
                LN.slab_prob_below(eps, k, n, -4.0, 2.0), abs=0.01
            )


def test_beta_slab_is_closed_form_bit_for_bit():
    rng = np.random.default_rng(3)
    k = rng.integers(0, 4, 50)
    n = np.full(50, 12)
    pi, a, b = rng.random(50) * 0.8, rng.gamma(1.0, 1.0, 50), rng.gamma(3.0, 2.0, 50)
    pairs = [
        (BETA.logpmf(k, n, pi, a, b), cf.zibb_logpmf(k, n, pi, a, b)),
        (BETA.log_structural_weight(k, n, pi, a, b), cf.log_structural_weight(k, n, pi, a, b)),
        (BETA.expected_gain(k, n, 77, pi, a, b), cf.expected_gain(k, n, 77, pi, a, b)),
        (BETA.log_marginal_gain(k, n, 3, pi, a, b), cf.log_marginal_gain(k, n, 3, pi, a, b)),
        (BETA.posterior_mean_p(k, n, pi, a, b), cf.posterior_mean_p(k, n, pi, a, b)),
        (BETA.prob_below(1e-3, k, n, pi, a, b), cf.prob_below(1e-3, k, n, pi, a, b)),
        (BETA.pass_at_k_new_problem(9, pi, a, b), cf.pass_at_k_new_problem(9, pi, a, b)),
    ]
    for ours, theirs in pairs:
        np.testing.assert_array_equal(ours, theirs)
    # The generic formulas of the base class agree with the Beta closed forms.
    generic = super(BetaSlab, BETA)
    np.testing.assert_allclose(
        generic.expected_gain(k, n, 77, pi, a, b), cf.expected_gain(k, n, 77, pi, a, b), rtol=1e-10
    )
    np.testing.assert_allclose(
        generic.prob_below(1e-3, k, n, pi, a, b), cf.prob_below(1e-3, k, n, pi, a, b), rtol=1e-10
    )
    np.testing.assert_allclose(
        generic.logpmf(k, n, pi, a, b), cf.zibb_logpmf(k, n, pi, a, b), rtol=1e-10
    )


def _pattern_posterior(slab, n_draws=300, seed=4):
    rng = np.random.default_rng(seed)
    n = np.array([10, 10, 10, 10, 30])
    k = np.array([0, 1, 5, 10, 0])
    stratum = np.array([0, 0, 1, 1, 1])
    pi = rng.uniform(0.1, 0.5, (n_draws, 2))
    if slab is None or slab.name == "beta":
        theta = (rng.gamma(2.0, 0.3, (n_draws, 2)), rng.gamma(5.0, 1.0, (n_draws, 2)))
    else:
        theta = (rng.normal(-3.0, 0.5, (n_draws, 2)), rng.uniform(1.0, 2.5, (n_draws, 2)))
    return q.PatternPosterior(
        n=n,
        k=k,
        count=np.array([5, 2, 3, 1, 4]),
        stratum=stratum,
        hyper=lambda idx: (pi[:, stratum[idx]], *(x[:, stratum[idx]] for x in theta)),
        population=lambda: (pi, *theta),
        strata=["a", "b"],
        n_draws=n_draws,
        slab=slab,
    )


def test_queries_with_default_slab_are_unchanged():
    """slab=None (the interface other models use) and the Beta slab give equal results."""
    old, new = _pattern_posterior(None), _pattern_posterior(BETA)
    pd.testing.assert_frame_equal(q.pattern_regimes(old, 1e-3), q.pattern_regimes(new, 1e-3))
    idx, m = np.arange(5), np.full(5, 40)
    np.testing.assert_array_equal(q.gain_draws(old, idx, m), q.gain_draws(new, idx, m))
    pi, a, b = old.hyper(idx)
    np.testing.assert_array_equal(
        q.gain_draws(old, idx, m), cf.expected_gain(old.k, old.n, m, pi, a, b)
    )
    for kind in q.PASS_AT_K_KINDS:
        np.testing.assert_array_equal(
            q.pass_at_k_draws(old, 100, kind), q.pass_at_k_draws(new, 100, kind)
        )
    pd.testing.assert_frame_equal(ppc_table(old), ppc_table(new))


def test_every_query_runs_on_the_logitnormal_slab():
    post = _pattern_posterior(LN)
    reg = q.pattern_regimes(post, 1e-3)
    assert reg.notna().all().all()
    assert np.all((reg["p_low"] <= reg["p_mean"]) & (reg["p_mean"] <= reg["p_high"] + 1e-12))
    assert np.all(reg["p_structural"] >= reg["p_zero"] - 1e-12)
    idx = np.arange(5)
    gain = q.gain_draws(post, idx, np.full(5, 1000))
    pi, loc, scale = post.hyper(idx)
    np.testing.assert_allclose(gain, LN.expected_gain(post.k, post.n, 1000, pi, loc, scale))
    fresh = q.pass_at_k_draws(post, 1000, "fresh_run")
    weights = post.count[:, None] * (post.stratum[:, None] == np.arange(2))
    np.testing.assert_allclose(fresh, gain @ weights / weights.sum(axis=0))
    assert q.pass_at_k_draws(post, 50, "new_problem").shape == (post.n_draws, 2)
    bench, pop = q.coverage_draws(post)
    assert np.all((bench > 0) & (bench <= 1)) and np.allclose(pop, 1 - post.population()[0])
    ppc = ppc_table(post)
    assert ppc["observed"].sum() == post.count.sum()
    extra, g, info = q.allocate_budget(post, np.repeat(idx, post.count), 30)
    assert extra.sum() == 30 and info["objective"] == pytest.approx(g.sum())


def test_slab_registry_and_bad_parameters():
    assert set(SLAB_FAMILIES) >= {"beta", "logitnormal"}
    assert get_slab("logitnormal") is SLAB_FAMILIES["logitnormal"]
    assert get_slab(LN) is LN
    with pytest.raises(ValueError, match="unknown slab"):
        get_slab("cauchy")
    with pytest.raises(ValueError, match="scale"):
        LN.log_moment(0, 10, -1.0, 0.0)
    with pytest.raises(ValueError, match="pi"):
        LN.expected_gain(0, 10, 5, 1.5, -1.0, 1.0)
    with pytest.raises(ValueError, match="k <= n"):
        LN.expected_gain(11, 10, 5, 0.1, -1.0, 1.0)
