"""Closed forms of best-of-r repair contexts (the paper's rescue@3), numpy / scipy only.

A context is rescued when one of ``r`` attempts succeeds: ``q = 1 - (1 - p)^r`` with
the per-attempt p shared across the context's D trials. Under a Beta(a, b) slab (and an
optional structural point mass ``pi`` at p = 0) the probability of K rescued contexts
of D is an exact all-positive sum of Beta-function ratios, evaluated by log-sum-exp
with the stable primitives of :mod:`bayes_regimes.closed_form`. The PyTensor version
used inside the InterventionModel is
:func:`bayes_regimes.models.interventions_tools.best_of_r_zi_logp`.

Examples
--------
>>> import numpy as np
>>> from bayes_regimes import best_of_r
>>> round(float(np.exp(best_of_r.best_of_r_zi_logpmf(np.arange(6), 5, 3, 0.4, 0.5, 8.0)).sum()), 12)
1.0
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp

from bayes_regimes.closed_form import (
    _arrays,
    _as_int_array,
    _check_hyper,
    _log_beta_shift,
    _zero_inflate,
    log_binom,
)

__all__ = ["best_of_r_logpmf", "best_of_r_zi_logpmf"]


@lru_cache(maxsize=4096)
def _log_window_coefs(K: int, r: int) -> np.ndarray:
    """log of the (positive integer) coefficients of (1 + x + ... + x^(r-1))^K."""
    poly = [1]
    for _ in range(K):
        prefix = [0]
        for c in poly:
            prefix.append(prefix[-1] + c)
        deg = len(poly) - 1 + r - 1
        poly = [
            prefix[min(s, len(poly) - 1) + 1] - prefix[max(s - r + 1, 0)] for s in range(deg + 1)
        ]
    out = np.array([math.log(c) for c in poly])
    out.setflags(write=False)
    return out


def _best_of_r_slab(K: int, D: int, r: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    coefs = _log_window_coefs(K, r)
    t = r * (D - K) + np.arange(coefs.size, dtype=float)
    terms = coefs[:, None] + _log_beta_shift(a[None, :], b[None, :], float(K), t[:, None])
    return logsumexp(terms, axis=0) + float(log_binom(D, K))


def _best_of_r(K, D, r, pi, a, b) -> np.ndarray:
    _check_hyper(pi, a, b)
    shape, (Kf, Df, rf, af, bf) = _arrays(
        *(_as_int_array(nm, v) for nm, v in (("K", K), ("D", D), ("r", r))), a, b
    )
    if np.any(Kf > Df) or np.any(rf < 1):
        raise ValueError("need 0 <= K <= D and r >= 1")
    out = np.empty(Kf.shape)
    triples = np.stack([Kf, Df, rf], axis=1).astype(np.int64)
    uniq, inverse = np.unique(triples, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(uniq) + 1))
    for g, (kk, dd, rr) in enumerate(uniq.tolist()):
        sel = order[bounds[g] : bounds[g + 1]]
        out[sel] = _best_of_r_slab(kk, dd, rr, af[sel], bf[sel])
    return out.reshape(shape)


def best_of_r_logpmf(
    K: ArrayLike, D: ArrayLike, r: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """log P(K of D contexts rescued | Beta(a, b) slab), best-of-r per context.

    A context is rescued when one of r attempts succeeds, ``q = 1 - (1 - p)^r``, with p
    shared across the D contexts. Expanding ``q = p (1 + (1 - p) + ... + (1 - p)^(r-1))``
    gives the exact all-positive sum ``sum_s c_s B(a + K, b + r(D - K) + s) / B(a, b)``
    (times ``C(D, K)``), where ``c_s`` are the coefficients of
    ``(1 + x + ... + x^(r-1))^K``. It is evaluated by log-sum-exp, never by the
    alternating expansion of ``q^K``. Loops over distinct (K, D, r) and vectorises
    over (a, b).

    Examples
    --------
    >>> lp = best_of_r_logpmf(np.arange(4), 3, 3, 1.0, 50.0)
    >>> round(float(np.exp(lp).sum()), 12)
    1.0
    >>> from bayes_regimes.closed_form import betabinom_logpmf
    >>> bool(np.isclose(best_of_r_logpmf(2, 5, 1, 2.0, 3.0), betabinom_logpmf(2, 5, 2.0, 3.0)))
    True
    """
    return _best_of_r(K, D, r, None, a, b)[()]


def best_of_r_zi_logpmf(
    K: ArrayLike, D: ArrayLike, r: ArrayLike, pi: ArrayLike, a: ArrayLike, b: ArrayLike
) -> np.ndarray:
    """:func:`best_of_r_logpmf` with a structural point mass ``pi`` at p = 0.

    A structural problem is never rescued (K = 0 with probability 1), so
    ``P(K) = pi 1[K = 0] + (1 - pi) P_slab(K)``.

    Examples
    --------
    >>> lp = best_of_r_zi_logpmf(np.arange(6), 5, 3, 0.4, 0.5, 8.0)
    >>> round(float(np.exp(lp).sum()), 12)
    1.0
    """
    return _zero_inflate(np.asarray(K) == 0, pi, _best_of_r(K, D, r, pi, a, b))
