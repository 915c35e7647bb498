"""Checks of the zero-inflated beta-binomial closed forms (math.md, "Checks that must hold")."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import product

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import betainc, betaln, logsumexp

from bayes_regimes import best_of_r as bor
from bayes_regimes import closed_form as cf

HYPER = [(1e-3, 1e-3), (0.5, 4.0), (2.0, 3.0), (1e-3, 1e4), (1e4, 1e4), (30.0, 0.2)]


def _log_ratio_ref(u: float, d: float) -> float:
    """log(u / (u + d)) accurately."""
    f = d / (u + d)
    return math.log1p(-f) if f < 0.5 else math.log(u) - math.log(u + d)


# ----------------------------------------------------------------------------- primitives
@pytest.mark.parametrize("y", [1e-3, 0.5, 3.0, 9.99, 10.0, 50.0, 1e4, 1e6, 1e9, 1e12])
def test_log_beta_ratio_matches_exact_products(y):
    """B(x, y + m) / B(x, y) is a finite product when x or m is an integer."""
    for x, m in product([1, 2, 7, 50], [0.5, 1.0, 7.3, 1e3, 1e9, 1e12]):
        ref = math.fsum(_log_ratio_ref(y + i, m) for i in range(x))
        assert cf._log_beta_ratio(x, y, m) == pytest.approx(ref, rel=1e-9)
    for x, m in product([1e-3, 0.3, 2.5, 1e4, 1e9], [1, 2, 5, 100]):
        ref = math.fsum(_log_ratio_ref(y + i, x) for i in range(m))
        assert cf._log_beta_ratio(x, y, m) == pytest.approx(ref, rel=1e-9)


def test_log_binom_exact_and_huge():
    for n in range(0, 61, 7):
        for k in range(n + 1):
            assert cf.log_binom(n, k) == pytest.approx(math.log(math.comb(n, k)), abs=1e-12)
    n = 1e9
    assert cf.log_binom(n, 0) == 0.0
    assert cf.log_binom(n, n) == 0.0
    assert cf.log_binom(n, 2) == pytest.approx(math.log(n * (n - 1) / 2), rel=1e-14)
    assert cf.log_binom(5, 6) == -np.inf
    assert cf.log_binom(5, -1) == -np.inf


# ----------------------------------------------------------------------------- pmf
@pytest.mark.parametrize(("a", "b"), HYPER)
def test_betabinom_matches_scipy(a, b):
    for n in [0, 1, 7, 60, 500]:
        k = np.arange(n + 1)
        ref = stats.betabinom.logpmf(k, n, a, b)
        np.testing.assert_allclose(cf.betabinom_logpmf(k, n, a, b), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("a", "b"), HYPER)
@pytest.mark.parametrize("pi", [0.0, 0.3, 1.0])
def test_zibb_sums_to_one(pi, a, b):
    for n in [0, 1, 5, 100, 10_000]:
        lp = cf.zibb_logpmf(np.arange(n + 1), n, pi, a, b)
        assert logsumexp(lp) == pytest.approx(0.0, abs=1e-10)


def test_zibb_edges():
    k = np.arange(6)
    np.testing.assert_array_equal(
        cf.zibb_logpmf(k, 5, 0.0, 2.0, 3.0), cf.betabinom_logpmf(k, 5, 2.0, 3.0)
    )
    lp = cf.zibb_logpmf(k, 5, 1.0, 2.0, 3.0)
    assert lp[0] == 0.0 and np.all(lp[1:] == -np.inf)
    assert cf.zibb_logpmf(6, 5, 0.2, 2.0, 3.0) == -np.inf
    assert cf.zibb_logpmf(0, 5, 0.2, 1.0, 1.0) == pytest.approx(math.log(0.2 + 0.8 / 6))


# ----------------------------------------------------------------------------- weight
def test_structural_weight_formula_and_edges():
    for (a, b), n, pi in product(HYPER[:4], [0, 3, 40], [0.1, 0.6]):
        ratio = math.exp(betaln(a, b + n) - betaln(a, b))
        assert cf.structural_weight(0, n, pi, a, b) == pytest.approx(pi / (pi + (1 - pi) * ratio))
        # Bayes: w = pi / P(k = 0 | n)
        assert cf.log_structural_weight(0, n, pi, a, b) == pytest.approx(
            math.log(pi) - cf.zibb_logpmf(0, n, pi, a, b)
        )
    assert cf.log_structural_weight(2, 10, 0.5, 1.0, 1.0) == -np.inf
    assert cf.log_structural_weight(0, 10, 1.0, 1.0, 1.0) == 0.0
    assert cf.log_structural_weight(0, 10, 0.0, 1.0, 1.0) == -np.inf
    assert cf.structural_weight(0, 0, 0.37, 2.0, 5.0) == pytest.approx(0.37)


# ----------------------------------------------------------------------------- gain
@pytest.mark.parametrize(("a", "b"), [(2.0, 3.0), (1.5, 40.0), (5.0, 0.7)])
@pytest.mark.parametrize(("k", "n"), [(0, 0), (0, 10), (3, 10), (10, 10), (0, 1000)])
def test_gain_zero_monotone_and_limit(k, n, a, b):
    pi = 0.3
    m = np.unique(np.concatenate([[0], np.geomspace(1, 1e12, 60).round()]))
    g = cf.expected_gain(k, n, m, pi, a, b)
    assert g[0] == 0.0
    assert np.all(np.diff(g) >= 0)
    w = cf.structural_weight(k, n, pi, a, b)
    assert g[-1] == pytest.approx(1 - w, abs=1e-9)
    assert cf.expected_gain(k, n, np.inf, pi, a, b) == pytest.approx(1 - w, rel=1e-15)
    j = np.arange(1, 201)
    delta = np.exp(cf.log_marginal_gain(k, n, j, pi, a, b))
    g200 = cf.expected_gain(k, n, np.arange(201), pi, a, b)
    np.testing.assert_allclose(np.cumsum(delta), g200[1:], rtol=1e-10)
    assert np.all(np.diff(delta) <= 0)
    assert cf.log_expected_gain(k, n, 77, pi, a, b) == pytest.approx(
        math.log(cf.expected_gain(k, n, 77, pi, a, b))
    )


def test_gain_slow_tail_for_tiny_a():
    # B(x, y + m) / B(x, y) ~ m^-x: with a = 1e-3 the limit 1 - w is approached slowly
    g = cf.expected_gain(0, 10, [1e3, 1e12, 1e300], 0.2, 1e-3, 5.0)
    w = cf.structural_weight(0, 10, 0.2, 1e-3, 5.0)
    assert g[0] < g[1] < g[2] < 1 - w


def test_gain_and_weight_match_prior_simulation():
    """Simulate (z, p, k) from the prior, condition on k, compare every posterior query."""
    rng = np.random.default_rng(1)
    pi, a, b, n, m, eps = 0.3, 0.8, 3.0, 5, 7, 0.05
    size = 400_000
    z = rng.random(size) < pi
    p = np.where(z, 0.0, rng.beta(a, b, size))
    k_obs = rng.binomial(n, p)
    more = rng.binomial(m, p) > 0
    for k in (0, 2):
        sel = k_obs == k
        cnt = sel.sum()

        def close(sample, value, sd, cnt=cnt):
            assert abs(sample - value) < 4.5 * sd / math.sqrt(cnt)

        g = cf.expected_gain(k, n, m, pi, a, b)
        close(more[sel].mean(), g, math.sqrt(g * (1 - g)))
        w = cf.structural_weight(k, n, pi, a, b)
        close(z[sel].mean(), w, math.sqrt(max(w * (1 - w), 1e-12)))
        pb = cf.prob_below(eps, k, n, pi, a, b)
        close((p[sel] < eps).mean(), pb, math.sqrt(pb * (1 - pb)))
        close(p[sel].mean(), cf.posterior_mean_p(k, n, pi, a, b), p[sel].std())


def test_gain_matches_posterior_draws_large_n():
    rng = np.random.default_rng(2)
    pi, a, b, k, n, m = 0.4, 0.3, 2.0, 0, 10_000, 30_000
    w = cf.structural_weight(k, n, pi, a, b)
    size = 200_000
    p = np.where(rng.random(size) < w, 0.0, rng.beta(a + k, b + n - k, size))
    hit = rng.binomial(m, p) > 0
    g = cf.expected_gain(k, n, m, pi, a, b)
    assert abs(hit.mean() - g) < 4.5 * math.sqrt(g * (1 - g) / size)


def test_total_expectation_identities():
    """Averaging posterior queries over P(k | n) gives the prior quantities exactly."""
    for (a, b), pi, n in product(HYPER[:4], [0.0, 0.35], [0, 4, 50]):
        k = np.arange(n + 1)
        pk = np.exp(cf.zibb_logpmf(k, n, pi, a, b))
        for m in (1, 9, 1000):
            fresh = np.sum(pk * cf.pass_at_k_fresh(k, n, m, pi, a, b))
            assert fresh == pytest.approx(cf.pass_at_k_new_problem(m, pi, a, b), rel=1e-9)
        below = np.sum(pk * cf.prob_below(0.1, k, n, pi, a, b))
        assert below == pytest.approx(pi + (1 - pi) * betainc(a, b, 0.1), rel=1e-9)
        mean = np.sum(pk * cf.posterior_mean_p(k, n, pi, a, b))
        assert mean == pytest.approx((1 - pi) * a / (a + b), rel=1e-9)


# ----------------------------------------------------------------------------- P(p < eps)
def test_prob_below_edges():
    for (a, b), (k, n), pi in product(HYPER, [(0, 0), (0, 20), (5, 20), (20, 20)], [0, 0.4, 1]):
        assert cf.prob_below(1.0, k, n, pi, a, b) == 1.0
        assert cf.prob_below(1.5, k, n, pi, a, b) == 1.0
        assert cf.prob_below(0.0, k, n, pi, a, b) == 0.0
        vals = cf.prob_below(np.linspace(0.01, 0.99, 50), k, n, pi, a, b)
        assert np.all(np.diff(vals) >= 0) and np.all((vals >= 0) & (vals <= 1))
    w = cf.structural_weight(0, 20, 0.4, 0.5, 4.0)
    assert cf.prob_below(1e-300, 0, 20, 0.4, 0.5, 4.0) == pytest.approx(w, rel=1e-12)


# ----------------------------------------------------------------------------- extremes
def test_extreme_numerics_are_finite_and_ordered():
    n = np.array([1e6, 1e9])[:, None]
    for frac, (a, b), pi in product([0.0, 1e-9, 1.0], HYPER, [0.0, 0.5, 1.0]):
        k = np.round(frac * n)
        lp = cf.zibb_logpmf(k, n, pi, a, b)
        assert not np.any(np.isnan(lp)) and np.all(lp <= 1e-12)
        if pi < 1:
            assert np.all(np.isfinite(lp))
        w = cf.structural_weight(k, n, pi, a, b)
        assert np.all((w >= 0) & (w <= 1))
        g = cf.expected_gain(k, n, [0.0, 1.0, 1e3, 1e9], pi, a, b)
        assert np.all(np.isfinite(g)) and np.all(g[:, 0] == 0) and np.all(np.diff(g, axis=1) >= 0)
        assert np.all(g <= 1 - w + 1e-12)
        ld = cf.log_marginal_gain(k, n, [1.0, 1e3, 1e9], pi, a, b)
        assert not np.any(np.isnan(ld)) and np.all(ld <= 0)
        if pi < 1:
            assert np.all(np.isfinite(ld))
        pb = cf.prob_below(1e-6, k, n, pi, a, b)
        assert np.all((pb >= 0) & (pb <= 1))
        pm = cf.posterior_mean_p(k, n, pi, a, b)
        assert np.all((pm >= 0) & (pm <= 1))


@pytest.mark.parametrize("n", [1e6, 1e9])
def test_uniform_slab_exact_values_at_huge_n(n):
    # Beta(1, 1) slab, k = 0: posterior Beta(1, n + 1)
    assert cf.expected_gain(0, n, 1, 0.0, 1.0, 1.0) == pytest.approx(1 / (n + 2), rel=1e-12)
    for j in (1.0, 1e3, n):
        ref = math.log(n + 1) - math.log(n + j) - math.log(n + j + 1)
        assert cf.log_marginal_gain(0, n, j, 0.0, 1.0, 1.0) == pytest.approx(ref, rel=1e-12)
    pi = 0.5
    assert cf.structural_weight(0, n, pi, 1.0, 1.0) == pytest.approx(
        pi / (pi + (1 - pi) / (n + 1)), rel=1e-12
    )
    # k = n: posterior Beta(n + 1, 1), no structural mass
    assert cf.expected_gain(n, n, 1, 0.5, 1.0, 1.0) == pytest.approx(1 - 1 / (n + 2), rel=1e-14)
    assert -np.expm1(cf.log_no_success(n, n, 1, 1.0, 1.0)) == pytest.approx(1 - 1 / (n + 2))
    assert cf.log_no_success(n, n, 1, 1.0, 1.0) == pytest.approx(-math.log(n + 2), rel=1e-12)


def test_broadcasting_draws_by_patterns():
    rng = np.random.default_rng(3)
    pi, a, b = rng.uniform(0, 0.9, (5, 1)), rng.uniform(0.1, 3, (5, 1)), rng.uniform(1, 9, (5, 1))
    k, n = np.array([0, 0, 3, 7]), np.array([4, 10, 10, 7])
    for fn in (cf.zibb_logpmf, cf.structural_weight, cf.posterior_mean_p):
        out = fn(k, n, pi, a, b)
        assert out.shape == (5, 4)
        assert out[2, 1] == pytest.approx(fn(k[1], n[1], pi[2, 0], a[2, 0], b[2, 0]))
    out = cf.expected_gain(k, n, 25, pi, a, b)
    assert out.shape == (5, 4)
    assert out[4, 2] == pytest.approx(cf.expected_gain(3, 10, 25, pi[4, 0], a[4, 0], b[4, 0]))
    assert cf.log_marginal_gain(k, n, np.array([1, 2, 3, 4]), pi, a, b).shape == (5, 4)
    assert cf.prob_below(0.01, k, n, pi, a, b).shape == (5, 4)
    assert np.ndim(cf.expected_gain(0, 5, 3, 0.2, 1.0, 2.0)) == 0


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        cf.expected_gain(0, 5, 3, 1.2, 1.0, 2.0)
    with pytest.raises(ValueError):
        cf.zibb_logpmf(0, 5, 0.2, 0.0, 2.0)
    with pytest.raises(ValueError):
        cf.structural_weight(6, 5, 0.2, 1.0, 2.0)
    with pytest.raises(ValueError):
        cf.log_marginal_gain(0, 5, 0, 0.2, 1.0, 2.0)


# ----------------------------------------------------------------------------- pass@k
def test_unbiased_pass_at_k_exact_combinatorics():
    for n in range(0, 13):
        for c in range(n + 1):
            for k in range(0, n + 3):
                got = cf.unbiased_pass_at_k(n, c, k)
                if k > n:
                    assert np.isnan(got)
                elif n - c < k:
                    assert got == 1.0
                else:
                    ref = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                    assert got == pytest.approx(float(ref), rel=1e-12, abs=1e-15)


def test_unbiased_pass_at_k_rules():
    assert np.isnan(cf.unbiased_pass_at_k(10, 0, 11))  # not the buggy 1.0
    np.testing.assert_allclose(
        cf.unbiased_pass_at_k(10**6, [0, 1, 7], 1), [0, 1e-6, 7e-6], rtol=1e-12
    )
    out = cf.unbiased_pass_at_k(np.array([5, 10])[:, None], 2, np.array([1, 4, 9]))
    assert out.shape == (2, 3) and np.isnan(out[0, 2]) and out[0, 1] == 1.0
    for bad in [(5, 6, 1), (5, -1, 1), (5, 1.5, 1), (-1, 0, 1), (5, 1, np.nan)]:
        with pytest.raises(ValueError):
            cf.unbiased_pass_at_k(*bad)


def test_pass_at_n_matches_unbiased_estimator_on_simulated_data():
    rng = np.random.default_rng(4)
    pi, a, b, n, size = 0.25, 0.6, 2.5, 8, 200_000
    p = np.where(rng.random(size) < pi, 0.0, rng.beta(a, b, size))
    truth = cf.pass_at_k_new_problem(n, pi, a, b)
    est = cf.unbiased_pass_at_k(2 * n, rng.binomial(2 * n, p), n)
    assert abs(est.mean() - truth) < 4.5 * est.std() / math.sqrt(size)
    fresh = cf.pass_at_k_fresh(rng.binomial(n, p), n, n, pi, a, b)
    assert abs(fresh.mean() - truth) < 4.5 * fresh.std() / math.sqrt(size)


def test_pass_at_k_new_problem_values():
    assert cf.pass_at_k_new_problem(1, 0.5, 1.0, 1.0) == pytest.approx(0.25)
    assert cf.pass_at_k_new_problem(0, 0.5, 1.0, 1.0) == 0.0
    assert cf.pass_at_k_new_problem(1e15, 0.3, 2.0, 2.0) == pytest.approx(0.7)


# ----------------------------------------------------------------------------- best-of-r
def _quad_best_of_r(K: int, D: int, r: int, a: float, b: float) -> float:
    """log P(K of D) by quadrature over u = log p, with a stable log integrand."""

    def log_f(u):
        p = np.exp(u)
        l1mp = np.log1p(-p)
        logq = np.log(-np.expm1(r * l1mp))
        return K * logq + (D - K) * r * l1mp + a * u + (b - 1) * l1mp

    grid = np.linspace(-80, -1e-9, 40_001)
    vals = log_f(grid)
    peak = float(np.max(vals))
    u0 = float(grid[np.argmax(vals)])
    val, _ = integrate.quad(
        lambda u: math.exp(log_f(u) - peak), -80, 0, points=[u0], limit=400, epsabs=0, epsrel=1e-12
    )
    return math.log(val) + peak - betaln(a, b) + math.log(math.comb(D, K))


@pytest.mark.parametrize(
    ("K", "D", "r", "a", "b"),
    [
        (30, 40, 3, 1.0, 50.0),
        (0, 5, 3, 0.5, 4.0),
        (3, 5, 3, 0.5, 4.0),
        (5, 5, 2, 2.0, 1.0),
        (12, 20, 10, 0.3, 8.0),
        (50, 60, 4, 1.0, 50.0),
    ],
)
def test_best_of_r_matches_quadrature(K, D, r, a, b):
    assert bor.best_of_r_logpmf(K, D, r, a, b) == pytest.approx(
        _quad_best_of_r(K, D, r, a, b), rel=1e-7
    )


def test_best_of_r_normalised_and_reduces_to_betabinom():
    K = np.arange(9)
    for r in (1, 3, 7):
        assert logsumexp(bor.best_of_r_logpmf(K, 8, r, 0.7, 5.0)) == pytest.approx(0.0, abs=1e-12)
        assert logsumexp(bor.best_of_r_zi_logpmf(K, 8, r, 0.3, 0.7, 5.0)) == pytest.approx(
            0.0, abs=1e-12
        )
    np.testing.assert_allclose(
        bor.best_of_r_logpmf(K, 8, 1, 0.7, 5.0), cf.betabinom_logpmf(K, 8, 0.7, 5.0)
    )
    np.testing.assert_allclose(
        bor.best_of_r_zi_logpmf(K, 8, 3, 0.0, 0.7, 5.0), bor.best_of_r_logpmf(K, 8, 3, 0.7, 5.0)
    )
    zi = bor.best_of_r_zi_logpmf(K, 8, 3, 1.0, 0.7, 5.0)
    assert zi[0] == 0.0 and np.all(zi[1:] == -np.inf)


def test_best_of_r_vectorises_over_draws():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.2, 3, (6, 1)), rng.uniform(1, 60, (6, 1))
    K, D, r = np.array([0, 3, 3, 30]), np.array([4, 4, 4, 40]), np.array([3, 3, 3, 3])
    out = bor.best_of_r_logpmf(K, D, r, a, b)
    assert out.shape == (6, 4)
    assert out[3, 3] == pytest.approx(bor.best_of_r_logpmf(30, 40, 3, a[3, 0], b[3, 0]))
    np.testing.assert_array_equal(out[:, 1], out[:, 2])
    with pytest.raises(ValueError):
        bor.best_of_r_logpmf(5, 4, 3, 1.0, 1.0)
    with pytest.raises(ValueError):
        bor.best_of_r_logpmf(1, 4, 0, 1.0, 1.0)
