"""Closed forms of the zero-inflated beta-binomial (numpy / scipy only, no sampling).

A cell has ``k`` successes in ``n`` rollouts; its success probability ``p`` is
structurally zero with probability ``pi`` and otherwise drawn from a Beta(a, b) slab
(``a = mu * kappa``, ``b = (1 - mu) * kappa``); ``pi = 0`` is the plain beta-binomial.
Every function broadcasts over all of its arguments, so hyper-parameter draws shaped
``(draw, 1)`` combine with patterns shaped ``(pattern,)``; scalars give scalars.

Nothing forms a Beta function. The key primitive, ``log B(x, y + m) / B(x, y)``
(``log E[(1 - p)^m]`` under Beta(x, y)), takes per element the one of three equal
forms (a Stirling form with ``log1p(u) - u`` pieces for ``x << y``, or differences
of log-Pochhammer symbols) in which no large terms cancel. It stays accurate to
~1e-10 relative for ``n, m`` up to 1e12, ``a, b`` from 1e-3 to 1e4, ``k = 0, n``.

Examples
--------
>>> import numpy as np
>>> from bayes_regimes import closed_form as cf
>>> round(float(np.exp(cf.zibb_logpmf(np.arange(11), 10, 0.3, 0.5, 4.0)).sum()), 12)
1.0
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betainc, gammaln

__all__ = [
    "betabinom_logpmf",
    "expected_gain",
    "log_binom",
    "log_expected_gain",
    "log_marginal_gain",
    "log_no_success",
    "log_structural_weight",
    "pass_at_k_fresh",
    "pass_at_k_new_problem",
    "posterior_mean_p",
    "prob_below",
    "structural_weight",
    "unbiased_pass_at_k",
    "zibb_logpmf",
]

# Below this argument log-gamma differences come from scipy directly; above it from
# Stirling's series, whose tail S(t) below is accurate to ~1e-17 for t >= 10.
_STIRLING_MIN = 10.0
_STIRLING_COEF = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)


def _arrays(*args: ArrayLike) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """Broadcast to a common shape and return flat float copies."""
    arrs = np.broadcast_arrays(*[np.asarray(x, dtype=float) for x in args])
    return arrs[0].shape, [np.array(x).ravel() for x in arrs]


def _done(out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return out.reshape(shape)[()]


def _stirling_tail(t: np.ndarray) -> np.ndarray:
    """S(t) = lgamma(t) - (t - 1/2) log t + t - log(2 pi)/2, for t >= 10."""
    inv = 1.0 / t
    inv2 = inv * inv
    acc = np.full_like(t, _STIRLING_COEF[-1])
    for c in _STIRLING_COEF[-2::-1]:
        acc = c + inv2 * acc
    return inv * acc


def _log1pmx(u: np.ndarray) -> np.ndarray:
    """log1p(u) - u without cancellation for small |u| (u > -1)."""
    small = np.abs(u) < 0.1
    # Directly where |u| >= 0.1 (loses at most ~5 bits); by the atanh series below.
    out = np.empty(u.shape) if small.all() else np.log1p(u) - u
    us = u[small]
    s = us / (2.0 + us)  # log1p(u) = 2 atanh(s), |s| < 0.053
    s2 = s * s
    acc = np.full_like(s, 1.0 / 17.0)
    for j in range(7, 0, -1):
        acc = 1.0 / (2 * j + 1) + s2 * acc
    out[small] = -us * us / (2.0 + us) + 2.0 * s * s2 * acc
    return out


def _log_poch(t: np.ndarray, d: np.ndarray) -> np.ndarray:
    """log Gamma(t + d) - log Gamma(t) for flat arrays t > 0, d >= 0."""
    out = np.empty(t.shape)
    big = t >= _STIRLING_MIN
    tb, db = t[big], d[big]
    u = db / tb
    out[big] = (
        tb * _log1pmx(u)
        - 0.5 * np.log1p(u)
        + db * np.log(tb + db)
        + _stirling_tail(tb + db)
        - _stirling_tail(tb)
    )
    small = ~big
    out[small] = gammaln(t[small] + d[small]) - gammaln(t[small])
    return out


def _log_beta_ratio_flat(x: np.ndarray, y: np.ndarray, m: np.ndarray) -> np.ndarray:
    """log B(x, y + m) - log B(x, y) for flat arrays (x >= 0, y > 0, m >= 0).

    Three equal forms; each element takes the one whose rounding error (roughly the
    size of the terms that cancel, estimated below) is smallest.
    """
    out = np.full(x.shape, np.nan)
    z = x + y
    fin = np.isfinite(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_size = np.log(2.0 + z + m)
        err_a = (x * x + 1.0) / y + x * np.minimum(m / z, log_size)
        err_bc = np.minimum(x, m) * log_size
    # A: Stirling form with every large term cancelled analytically (best for x << y).
    a = fin & (y >= _STIRLING_MIN) & (err_a <= err_bc)
    xa, ya, ma, za = x[a], y[a], m[a], z[a]
    out[a] = (
        ya * _log1pmx(xa / ya)
        - (ya + ma) * _log1pmx(xa / (ya + ma))
        - 0.5 * np.log1p((xa / ya) * (ma / (za + ma)))
        - xa * np.log1p(ma / za)
        + _stirling_tail(ya + ma)
        - _stirling_tail(ya)
        - _stirling_tail(za + ma)
        + _stirling_tail(za)
    )
    # B: difference of log-Pochhammer symbols of length x (best for small x).
    b = fin & ~a & (x <= m)
    out[b] = _log_poch(y[b], x[b]) - _log_poch(y[b] + m[b], x[b])
    # C: difference of log-Pochhammer symbols of length m (best for small m).
    c = fin & ~a & ~b
    out[c] = _log_poch(y[c], m[c]) - _log_poch(z[c], m[c])
    inf_m = np.isinf(m) & (m > 0)
    out[inf_m] = np.where(x[inf_m] > 0, -np.inf, 0.0)
    out[(m == 0) & ~np.isnan(x + y)] = 0.0
    return out


def _log_beta_ratio(x: ArrayLike, y: ArrayLike, m: ArrayLike) -> np.ndarray:
    """log B(x, y + m) / B(x, y), broadcasting."""
    shape, (xf, yf, mf) = _arrays(x, y, m)
    return _done(_log_beta_ratio_flat(xf, yf, mf), shape)


def _log_beta_shift(a: ArrayLike, b: ArrayLike, da: ArrayLike, db: ArrayLike) -> np.ndarray:
    """log B(a + da, b + db) / B(a, b) as two stable one-argument ratios."""
    a, b, da, db = (np.asarray(v, dtype=float) for v in (a, b, da, db))
    return _log_beta_ratio(b + db, a, da) + _log_beta_ratio(a, b, db)


def _check_hyper(pi: ArrayLike | None, a: ArrayLike, b: ArrayLike) -> None:
    if pi is not None:
        pi_arr = np.asarray(pi, dtype=float)
        if np.any(pi_arr < 0) or np.any(pi_arr > 1):
            raise ValueError("pi must lie in [0, 1]")
    if np.any(np.asarray(a, dtype=float) <= 0) or np.any(np.asarray(b, dtype=float) <= 0):
        raise ValueError("the slab parameters a and b must be positive")


def _check_counts(k: ArrayLike, n: ArrayLike) -> None:
    k_arr, n_arr = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError("need 0 <= k <= n")


def _log_pi_pair(pi: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pi = np.asarray(pi, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(pi), np.log1p(-pi)


def _zero_inflate(zero: ArrayLike, pi: ArrayLike, slab: np.ndarray) -> np.ndarray:
    """log(pi 1[zero] + (1 - pi) exp(slab))."""
    log_pi, log_1m_pi = _log_pi_pair(pi)
    with np.errstate(invalid="ignore"):
        return np.where(zero, np.logaddexp(log_pi, log_1m_pi + slab), log_1m_pi + slab)[()]


def _log_weights(k, n, pi, a, b) -> tuple[np.ndarray, np.ndarray]:
    """(log w, log(1 - w)) of the structural indicator given (k, n)."""
    _check_hyper(pi, a, b)
    _check_counts(k, n)
    return _structural_log_weights(k, pi, _log_beta_ratio(a, b, n))


def _structural_log_weights(k, pi, slab0) -> tuple[np.ndarray, np.ndarray]:
    """(log w, log(1 - w)) from pi and any slab's log P(k = 0 | n) (``slab0``).

    Shared by every slab family (:mod:`bayes_regimes.slabs`): only ``slab0`` differs.
    """
    log_pi, log_1m_pi = _log_pi_pair(pi)
    with np.errstate(invalid="ignore"):
        denom = np.logaddexp(log_pi, log_1m_pi + slab0)
        zero = np.asarray(k) == 0
        log_w = np.where(zero, log_pi - denom, -np.inf)
        log_1mw = np.where(zero, log_1m_pi + slab0 - denom, 0.0)
    return log_w[()], log_1mw[()]


def _one_minus_exp(x: ArrayLike) -> np.ndarray:
    """1 - exp(x) via expm1, with +0.0 rather than -0.0 at x = 0."""
    return -np.expm1(x) + 0.0


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x <= 0."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(x > -math.log(2), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))[()]


def log_binom(n: ArrayLike, k: ArrayLike) -> np.ndarray:
    """log C(n, k), stable for n up to 1e9 and beyond; -inf outside 0 <= k <= n.

    Examples
    --------
    >>> round(float(log_binom(10, 3)), 10) == round(float(np.log(120)), 10)
    True
    """
    shape, (nf, kf) = _arrays(n, k)
    out = np.full(nf.shape, -np.inf)
    ok = (kf >= 0) & (kf <= nf)
    j = np.minimum(kf[ok], nf[ok] - kf[ok])
    out[ok] = _log_poch(nf[ok] - j + 1.0, j) - gammaln(j + 1.0)
    out[np.isnan(nf + kf)] = np.nan
    return _done(out, shape)


def betabinom_logpmf(k: ArrayLike, n: ArrayLike, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """log P(k | n) of the beta-binomial with slab Beta(a, b); -inf outside the support.

    Examples
    --------
    >>> from scipy.stats import betabinom
    >>> bool(np.isclose(betabinom_logpmf(3, 10, 2.0, 5.0), betabinom.logpmf(3, 10, 2.0, 5.0)))
    True
    """
    _check_hyper(None, a, b)
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    inside = (k >= 0) & (k <= n)
    kc = np.clip(k, 0, None)
    nk = np.clip(n - k, 0, None)
    out = log_binom(n, k) + _log_beta_shift(a, b, kc, nk)
    return np.where(inside | np.isnan(out), out, -np.inf)[()]


def zibb_logpmf(
    k: ArrayLike, n: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """log P(k | n) of the zero-inflated beta-binomial.

    ``P(k | n) = pi * 1[k = 0] + (1 - pi) * C(n, k) B(a + k, b + n - k) / B(a, b)``;
    the ``k = 0`` term is combined with ``logaddexp``. ``pi = 0`` gives the plain
    beta-binomial.

    Examples
    --------
    >>> p0 = float(np.exp(zibb_logpmf(0, 5, 0.2, 1.0, 1.0)))  # 0.2 + 0.8 / 6
    >>> round(p0, 12) == round(0.2 + 0.8 / 6, 12)
    True
    """
    _check_hyper(pi, a, b)
    return _zero_inflate(np.asarray(k) == 0, pi, betabinom_logpmf(k, n, a, b))


def log_structural_weight(
    k: ArrayLike, n: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """log w, w = P(z = 1 | k, n): the posterior probability that p is structurally 0.

    ``-inf`` where ``k > 0`` and ``0`` where ``pi = 1`` and ``k = 0``.

    Examples
    --------
    >>> w = np.exp(log_structural_weight(0, 4, 0.5, 1.0, 1.0))  # 0.5 / (0.5 + 0.5 / 5)
    >>> round(float(w), 12)
    0.833333333333
    """
    return _log_weights(k, n, pi, a, b)[0]


def structural_weight(
    k: ArrayLike, n: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """w = P(z = 1 | k, n), the exponential of :func:`log_structural_weight`.

    Examples
    --------
    >>> float(structural_weight(2, 4, 0.5, 1.0, 1.0))
    0.0
    """
    return np.exp(log_structural_weight(k, n, pi, a, b))


def log_no_success(
    k: ArrayLike, n: ArrayLike, m: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """log E[(1 - p)^m] under the slab posterior Beta(a + k, b + n - k).

    Equals ``betaln(a + k, b + n - k + m) - betaln(a + k, b + n - k)``; exactly 0 at
    ``m = 0``.

    Examples
    --------
    >>> bool(np.isclose(log_no_success(0, 0, 1, 1.0, 1.0), np.log(0.5)))
    True
    """
    _check_hyper(None, a, b)
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    return _log_beta_ratio(np.asarray(a) + k, np.asarray(b) + n - k, m)


def log_expected_gain(
    k: ArrayLike, n: ArrayLike, m: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """log G(m), the log of :func:`expected_gain` (``-inf`` at ``m = 0``).

    Examples
    --------
    >>> bool(np.isclose(np.exp(log_expected_gain(0, 0, 1, 0.0, 1.0, 1.0)), 0.5))
    True
    """
    _, log_1mw = _log_weights(k, n, pi, a, b)
    return log_1mw + _log1mexp(log_no_success(k, n, m, a, b))


def expected_gain(
    k: ArrayLike, n: ArrayLike, m: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """G(m) = P(at least one success in m more rollouts | k of n).

    ``G(m) = (1 - w) (1 - B(a + k, b + n - k + m) / B(a + k, b + n - k))``. ``G(0) = 0``,
    G is increasing and concave in m and tends to ``1 - w``.

    Examples
    --------
    >>> g = expected_gain(0, 10, np.array([0, 1, 100, 10**12]), 0.2, 2.0, 3.0)
    >>> bool(g[0] == 0 and np.all(np.diff(g) > 0))
    True
    """
    _, log_1mw = _log_weights(k, n, pi, a, b)
    return np.exp(log_1mw) * _one_minus_exp(log_no_success(k, n, m, a, b))


def log_marginal_gain(
    k: ArrayLike, n: ArrayLike, j: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """log Delta(j) = log(G(j) - G(j - 1)), the gain of the j-th extra rollout (j >= 1).

    Uses ``B(x, y) - B(x, y + 1) = B(x + 1, y)``:
    ``Delta(j) = (1 - w) B(a + k + 1, b + n - k + j - 1) / B(a + k, b + n - k)``.
    Decreasing in j, so G is concave.

    Examples
    --------
    >>> d = np.exp(log_marginal_gain(0, 10, np.arange(1, 6), 0.2, 2.0, 3.0))
    >>> g = expected_gain(0, 10, np.arange(6), 0.2, 2.0, 3.0)
    >>> bool(np.allclose(d, np.diff(g)))
    True
    """
    if np.any(np.asarray(j, dtype=float) < 1):
        raise ValueError("the rollout index j must be >= 1")
    _, log_1mw = _log_weights(k, n, pi, a, b)
    k, n, j = (np.asarray(v, dtype=float) for v in (k, n, j))
    x = np.asarray(a, dtype=float) + k
    y = np.asarray(b, dtype=float) + n - k
    return log_1mw + np.log(x) - np.log(x + y + j - 1) + _log_beta_ratio(x, y, j - 1)


def prob_below(
    eps: ArrayLike, k: ArrayLike, n: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """P(p < eps | k of n) = w + (1 - w) I_eps(a + k, b + n - k).

    A statement about p, not about a budget: "no success within B more attempts" is
    ``1 - expected_gain(k, n, B, ...)``. Exactly 0 for eps <= 0 and 1 for eps >= 1.

    Examples
    --------
    >>> float(prob_below(1.0, 3, 10, 0.2, 1.0, 1.0))
    1.0
    >>> bool(np.isclose(prob_below(0.5, 0, 0, 0.0, 1.0, 1.0), 0.5))
    True
    """
    log_w, log_1mw = _log_weights(k, n, pi, a, b)
    w, one_m_w = np.exp(log_w), np.exp(log_1mw)
    eps = np.asarray(eps, dtype=float)
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    x = np.asarray(a, dtype=float) + k
    y = np.asarray(b, dtype=float) + n - k
    shape, (e, x, y, w, one_m_w) = _arrays(eps, x, y, w, one_m_w)
    out = np.minimum(w + one_m_w * betainc(x, y, np.clip(e, 0.0, 1.0)), 1.0)
    out[e <= 0] = 0.0
    out[e >= 1] = 1.0
    return _done(out, shape)


def posterior_mean_p(
    k: ArrayLike, n: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """E[p | k of n] = (1 - w) (a + k) / (a + b + n).

    Examples
    --------
    >>> float(posterior_mean_p(3, 10, 0.5, 1.0, 1.0))  # w = 0 since k > 0
    0.3333333333333333
    """
    _, log_1mw = _log_weights(k, n, pi, a, b)
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.exp(log_1mw) * (a + k) / (a + b + n)


def pass_at_k_fresh(
    k_obs: ArrayLike, n: ArrayLike, k: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """Per-cell pass@k of a fresh run: P(at least one success in k new attempts | data).

    One of three pass@k notions (always say which one is meant):

    * this one, a fresh run of k on *these* problems given what was seen (average it
      over cells for the benchmark number); equal to ``expected_gain`` with ``m = k``;
    * the solved fraction after m more samples, ``1[k_obs > 0] + 1[k_obs = 0] G(m)``;
    * pass@k of a *new* problem from the population, :func:`pass_at_k_new_problem`.

    Examples
    --------
    >>> bool(np.isclose(pass_at_k_fresh(0, 0, 1, 0.0, 1.0, 1.0), 0.5))
    True
    """
    return expected_gain(k_obs, n, k, pi, a, b)


def pass_at_k_new_problem(k: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """pass@k of a new problem from the population: (1 - pi) (1 - B(a, b + k) / B(a, b)).

    Examples
    --------
    >>> float(pass_at_k_new_problem(1, 0.5, 1.0, 1.0))  # (1 - 0.5) * 1 / 2
    0.25
    """
    _check_hyper(pi, a, b)
    pi = np.asarray(pi, dtype=float)
    return (1.0 - pi) * _one_minus_exp(_log_beta_ratio(a, b, k))


def _as_int_array(name: str, v: ArrayLike) -> np.ndarray:
    arr = np.asarray(v, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must hold non-negative integers")
    return arr


def unbiased_pass_at_k(n: ArrayLike, c: ArrayLike, k: ArrayLike) -> np.ndarray:
    """Chen et al. (2021) unbiased pass@k: 1 - C(n - c, k) / C(n, k) from c of n correct.

    Computed as ``1 - exp(sum_{j=n-c+1..n} log1p(-k / j))``, with the sum in closed
    form (a ratio of Beta functions, evaluated stably). Exactly 1.0 when
    ``n - c < k <= n``. NaN when ``k > n``, where the estimator is undefined (the
    common shortcut that returns 1.0 there, even for ``c = 0``, is a bug).

    Raises
    ------
    ValueError
        If an argument is not a non-negative integer or ``c > n``.

    Examples
    --------
    >>> unbiased_pass_at_k(10, [0, 3, 10], 2)  # 1 - C(7, 2) / C(10, 2) = 1 - 21 / 45
    array([0.        , 0.53333333, 1.        ])
    >>> float(unbiased_pass_at_k(5, 0, 6))
    nan
    """
    nn, cc, kk = (_as_int_array(name, v) for name, v in (("n", n), ("c", c), ("k", k)))
    if np.any(cc > nn):
        raise ValueError("c (correct samples) must not exceed n")
    shape, (nf, cf_, kf) = _arrays(nn, cc, kk)
    out = np.full(nf.shape, np.nan)
    sure = (nf - cf_ < kf) & (kf <= nf)
    out[sure] = 1.0
    reg = nf - cf_ >= kf
    log_ratio = _log_beta_ratio_flat(kf[reg], nf[reg] - cf_[reg] - kf[reg] + 1.0, cf_[reg])
    out[reg] = _one_minus_exp(log_ratio)
    return _done(out, shape)
