"""Slab families: the prior of ``p`` for non-structural problems, and its closed forms.

A problem is structural (``p = 0``) with probability ``pi``; otherwise ``p`` is drawn
from the *slab*. Every query of the core model follows from one primitive of the
slab, its log moment ``M(k, n) = log E_slab[p^k (1 - p)^(n - k)]``::

    marginal pmf         P(k | n)   = pi 1[k = 0] + (1 - pi) C(n, k) exp(M(k, n))
    structural weight    w          = pi / (pi + (1 - pi) exp(M(0, n)))   (k = 0; else 0)
    no success in m more E[(1 - p)^m | k of n, slab] = exp(M(k, n + m) - M(k, n))
    expected gain        G(m)       = (1 - w) (1 - exp(M(k, n + m) - M(k, n)))
    marginal gain        Delta(j)   = (1 - w) exp(M(k + 1, n + j) - M(k, n))
    posterior mean       E[p | data] = (1 - w) exp(M(k + 1, n + 1) - M(k, n))
    new-problem pass@k   (1 - pi) (1 - exp(M(0, k)))
    mass below eps       P(p < eps | data) = w + (1 - w) P_slab(p < eps | k of n)

Families (:data:`SLAB_FAMILIES`)
--------------------------------
``beta``
    ``p ~ Beta(a, b)``; ``M = log B(a + k, b + n - k) / B(a, b)``. Every method
    delegates to :mod:`bayes_regimes.closed_form`, so results are those of the
    original model bit for bit.
``logitnormal``
    ``logit p ~ Normal(loc, scale)``: mass spread evenly over orders of magnitude of
    ``p``, a heavier left tail than a Beta fitted to the same solved problems. ``M`` is
    an adaptive Gaussian quadrature in ``t = logit p``, in log space (log-sum-exp):
    the nodes sit on a Gaussian centred on the integrand's mode (found by Newton's
    method, the integrand being log-concave in t) and 2.5 times as wide as its wider
    side (matched to its fall-off left and right of the mode), and the integral is a
    Gauss-Legendre rule on that Gaussian's probability scale, 32 nodes on each side of
    the mode. ``n`` and ``m`` up to 1e12 are handled. ``P_slab(p < eps)`` is the same
    rule split at ``logit eps``. (A plain adaptive Gauss-Hermite rule with 32 nodes is
    accurate to 1e-12 on symmetric integrands but only to ~1e-3 in ``M`` on the skewed
    ones of failed problems under a wide slab; this rule stays within ~1e-6.) The same
    algorithm, written once against a small array namespace, gives the PyTensor
    log-likelihood of the fit.

Everything broadcasts over all arguments (hyper-parameter draws ``(draw, 1)`` against
patterns ``(pattern,)``) and is numpy / scipy; the logit-normal node placement (a short
scalar loop per element) is compiled by numba on first use and cached on disk, and
only :meth:`Slab.pymc_logpmf` imports PyTensor.

Examples
--------
>>> import numpy as np
>>> from bayes_regimes.slabs import get_slab
>>> slab = get_slab("logitnormal")
>>> pmf = np.exp(slab.logpmf(np.arange(11), 10, 0.3, -2.0, 1.5))
>>> round(float(pmf.sum()), 6)
1.0
>>> g = slab.expected_gain(0, 10, [0, 100, 10**6], 0.3, -2.0, 1.5)
>>> bool(g[0] == 0 and g[0] < g[1] < g[2] < 1 - slab.structural_weight(0, 10, 0.3, -2.0, 1.5))
True
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import (
    betainc,
    betaincc,
    expit,
)

from bayes_regimes import closed_form as cf
from bayes_regimes.logitnormal_quadrature import (
    _NP,
    _SIR_CANDIDATES,
    _SIR_WIDTH,
    _ln_log_moment,
    _ln_prob_below_flat,
    _log_f,
    _proposal,
    _pt_namespace,
)

__all__ = ["SLAB_FAMILIES", "BetaSlab", "LogitNormalSlab", "Slab", "get_slab"]

_BLOCK = 1 << 14  # elements per block of the quadratures (x nodes in memory)


class Slab:
    """A slab family; subclasses implement :meth:`log_moment` and the slab-only parts.

    Attributes
    ----------
    name : str
        Name used by ``RegimeModel(slab=...)``.
    params : tuple of str
        Posterior variables (dim ``group``) holding the slab parameters, in the order
        the methods take them after ``pi``.
    diagnostic_vars : tuple of str
        Posterior variables checked by the fit diagnostics.
    default_priors : dict
        Priors of the slab parameters, merged into ``RegimeModel``'s priors.
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[str, ...]] = ()
    diagnostic_vars: ClassVar[tuple[str, ...]] = ()
    default_priors: ClassVar[dict[str, Any]] = {}

    # -- to implement -------------------------------------------------------------
    def check(self, *theta: ArrayLike) -> None:
        """Raise ValueError for invalid slab parameters."""

    def log_moment(self, k: ArrayLike, n: ArrayLike, *theta: ArrayLike) -> np.ndarray:
        """M(k, n) = log E_slab[p^k (1 - p)^(n - k)]."""
        raise NotImplementedError  # pragma: no cover - abstract

    def slab_prob_below(self, eps, k, n, *theta) -> np.ndarray:
        """P(p < eps | k of n, not structural)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def sample_slab_p(self, rng: np.random.Generator, k, n, *theta) -> np.ndarray:
        """One draw of p from the slab posterior given k of n, per element."""
        raise NotImplementedError  # pragma: no cover - abstract

    def pymc_logpmf(self, param, n: np.ndarray, k: np.ndarray, s: np.ndarray):
        """Slab log-pmf of each pattern as a PyTensor expression.

        ``param(name)`` creates a per-group parameter with the prior ``priors[name]``
        (hierarchical when there are several groups) and returns its tensor; ``s`` is
        each pattern's group.
        """
        raise NotImplementedError  # pragma: no cover - abstract

    # -- generic closed forms -------------------------------------------------------
    def _log_weights(self, k, n, pi, *theta) -> tuple[np.ndarray, np.ndarray]:
        cf._check_hyper(pi, 1.0, 1.0)
        self.check(*theta)
        cf._check_counts(k, n)
        return cf._structural_log_weights(k, pi, self.log_moment(0.0, n, *theta))

    def logpmf(self, k, n, pi, *theta) -> np.ndarray:
        """log P(k | n) of the zero-inflated slab-binomial (-inf outside 0 <= k <= n)."""
        cf._check_hyper(pi, 1.0, 1.0)
        self.check(*theta)
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        inside = (k >= 0) & (k <= n)
        kc = np.clip(k, 0, None)
        slab = cf.log_binom(n, k) + self.log_moment(kc, np.maximum(n, kc), *theta)
        slab = np.where(inside, slab, -np.inf)
        return cf._zero_inflate(k == 0, pi, slab)

    def log_structural_weight(self, k, n, pi, *theta) -> np.ndarray:
        """log w, w = P(structural | k of n)."""
        return self._log_weights(k, n, pi, *theta)[0]

    def structural_weight(self, k, n, pi, *theta) -> np.ndarray:
        """w = P(structural | k of n)."""
        return np.exp(self.log_structural_weight(k, n, pi, *theta))

    def log_no_success(self, k, n, m, *theta) -> np.ndarray:
        """log E[(1 - p)^m] under the slab posterior given k of n (0 at m = 0)."""
        self.check(*theta)
        k, n, m = (np.asarray(v, dtype=float) for v in (k, n, m))
        finite = np.isfinite(m) & (m > 0)
        mf = np.where(finite, m, 0.0)
        diff = self.log_moment(k, n + mf, *theta) - self.log_moment(k, n, *theta)
        return np.where(m == 0, 0.0, np.where(finite, diff, -np.inf))[()]

    def expected_gain(self, k, n, m, pi, *theta) -> np.ndarray:
        """G(m) = P(at least one success in m more rollouts | k of n)."""
        _, log_1mw = self._log_weights(k, n, pi, *theta)
        return np.exp(log_1mw) * cf._one_minus_exp(self.log_no_success(k, n, m, *theta))

    def log_marginal_gain(self, k, n, j, pi, *theta) -> np.ndarray:
        """log Delta(j) = log(G(j) - G(j - 1)) for j >= 1."""
        if np.any(np.asarray(j, dtype=float) < 1):
            raise ValueError("the rollout index j must be >= 1")
        _, log_1mw = self._log_weights(k, n, pi, *theta)
        k, n, j = (np.asarray(v, dtype=float) for v in (k, n, j))
        return log_1mw + self.log_moment(k + 1, n + j, *theta) - self.log_moment(k, n, *theta)

    def posterior_mean_p(self, k, n, pi, *theta) -> np.ndarray:
        """E[p | k of n]."""
        _, log_1mw = self._log_weights(k, n, pi, *theta)
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        return np.exp(
            log_1mw + self.log_moment(k + 1, n + 1, *theta) - self.log_moment(k, n, *theta)
        )

    def prob_below(self, eps, k, n, pi, *theta) -> np.ndarray:
        """P(p < eps | k of n) = w + (1 - w) P_slab(p < eps | k of n)."""
        log_w, log_1mw = self._log_weights(k, n, pi, *theta)
        w, one_m_w = np.exp(log_w), np.exp(log_1mw)
        eps = np.asarray(eps, dtype=float)
        lower = self.slab_prob_below(np.clip(eps, 0.0, 1.0), k, n, *theta)
        out = np.where(lower <= 0.5, w + one_m_w * lower, 1.0 - one_m_w * (1.0 - lower))
        return np.where(eps <= 0, 0.0, np.where(eps >= 1, 1.0, out))[()]

    def pass_at_k_new_problem(self, k, pi, *theta) -> np.ndarray:
        """pass@k of a new problem: (1 - pi) (1 - exp(M(0, k)))."""
        cf._check_hyper(pi, 1.0, 1.0)
        self.check(*theta)
        pi = np.asarray(pi, dtype=float)
        return (1.0 - pi) * cf._one_minus_exp(self.log_moment(0.0, k, *theta))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BetaSlab(Slab):
    """``p ~ Beta(a, b)`` (parameters ``alpha``, ``beta``): :mod:`closed_form` exactly.

    Examples
    --------
    >>> from bayes_regimes import closed_form as cf
    >>> bool(
    ...     BetaSlab().expected_gain(0, 10, 50, 0.2, 0.5, 3.0)
    ...     == cf.expected_gain(0, 10, 50, 0.2, 0.5, 3.0)
    ... )
    True
    """

    name = "beta"
    params = ("alpha", "beta")
    diagnostic_vars = ("mu", "kappa")

    def check(self, a, b) -> None:
        cf._check_hyper(None, a, b)

    def log_moment(self, k, n, a, b) -> np.ndarray:
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        return cf._log_beta_shift(a, b, k, n - k)

    def slab_prob_below(self, eps, k, n, a, b) -> np.ndarray:
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        x, y = np.asarray(a, dtype=float) + k, np.asarray(b, dtype=float) + n - k
        e = np.clip(np.asarray(eps, dtype=float), 0.0, 1.0)
        return np.where(betainc(x, y, e) <= 0.5, betainc(x, y, e), 1.0 - betaincc(x, y, e))[()]

    def sample_slab_p(self, rng, k, n, a, b) -> np.ndarray:
        return rng.beta(a + k, b + n - k)

    # Exact delegation, so that results are those of closed_form bit for bit.
    def logpmf(self, k, n, pi, a, b):
        return cf.zibb_logpmf(k, n, pi, a, b)

    def log_structural_weight(self, k, n, pi, a, b):
        return cf.log_structural_weight(k, n, pi, a, b)

    def log_no_success(self, k, n, m, a, b):
        return cf.log_no_success(k, n, m, a, b)

    def expected_gain(self, k, n, m, pi, a, b):
        return cf.expected_gain(k, n, m, pi, a, b)

    def log_marginal_gain(self, k, n, j, pi, a, b):
        return cf.log_marginal_gain(k, n, j, pi, a, b)

    def posterior_mean_p(self, k, n, pi, a, b):
        return cf.posterior_mean_p(k, n, pi, a, b)

    def prob_below(self, eps, k, n, pi, a, b):
        return cf.prob_below(eps, k, n, pi, a, b)

    def pass_at_k_new_problem(self, k, pi, a, b):
        return cf.pass_at_k_new_problem(k, pi, a, b)

    def pymc_logpmf(self, param, n, k, s):  # pragma: no cover - the model keeps its own
        raise NotImplementedError("RegimeModel builds the beta slab itself")


def _blocked(fn, *args: ArrayLike) -> np.ndarray:
    """Apply ``fn`` to broadcast flat float arrays in blocks, keep the shape."""
    shape, flats = cf._arrays(*args)
    out = np.empty(flats[0].shape)
    for start in range(0, out.size, _BLOCK):
        sl = slice(start, start + _BLOCK)
        out[sl] = fn(*(f[sl] for f in flats))
    return cf._done(out, shape)


class LogitNormalSlab(Slab):
    """``logit p ~ Normal(loc, scale)`` (parameters ``slab_loc``, ``slab_scale``): the
    default slab of :class:`~bayes_regimes.RegimeModel`.

    Priors (weakly informative; override with ``priors=``): ``slab_loc ~
    Normal(-2, 2)`` (median slab p 0.12; 89 % of loc between logit 0.004 and 0.77),
    ``log(slab_scale) ~ Normal(1, 0.5)`` (median 2.7, 89 % between 1.2 and 6.1: p of
    the non-structural problems spread over several orders of magnitude, as on real
    benchmarks). With few rollouts per problem the data barely constrain the scale,
    and a narrower prior (median 1.65) let the point mass absorb recoverable
    failures: on the held-out Large Language Monkeys protocol this prior was chosen
    at m = 10 and confirmed at m = 3 and m = 30 (``benchmarks/heldout.py``).

    Examples
    --------
    >>> slab = LogitNormalSlab()
    >>> p = 1 / (1 + np.exp(-np.random.default_rng(0).normal(-3.0, 2.0, 400_000)))
    >>> mc = np.mean(p**2 * (1 - p) ** 8)
    >>> bool(np.isclose(np.exp(slab.log_moment(2, 10, -3.0, 2.0)), mc, rtol=0.02))
    True
    """

    name = "logitnormal"
    params = ("slab_loc", "slab_scale")
    diagnostic_vars = ("slab_loc", "slab_scale")
    default_priors: ClassVar[dict[str, Any]] = {
        "slab_loc": (-2.0, 2.0),
        "log_slab_scale": (1.0, 0.5),
    }

    def check(self, loc, scale) -> None:
        if np.any(~np.isfinite(np.asarray(loc, dtype=float))):
            raise ValueError("the slab location must be finite")
        if np.any(np.asarray(scale, dtype=float) <= 0):
            raise ValueError("the slab scale must be positive")

    def log_moment(self, k, n, loc, scale) -> np.ndarray:
        self.check(loc, scale)
        return _blocked(lambda *a: _ln_log_moment(_NP, *a), k, n, loc, scale)

    def slab_prob_below(self, eps, k, n, loc, scale) -> np.ndarray:
        self.check(loc, scale)
        return _blocked(_ln_prob_below_flat, eps, k, n, loc, scale)

    def sample_slab_p(self, rng, k, n, loc, scale) -> np.ndarray:
        """Sampling-importance-resampling: 64 candidates from a Gaussian at the mode."""
        self.check(loc, scale)
        shape, (kf, nf, lf_, sf) = cf._arrays(k, n, loc, scale)
        out = np.empty(kf.shape)
        for start in range(0, out.size, _BLOCK):
            sl = slice(start, start + _BLOCK)
            kk, nn, ll, ss = kf[sl], nf[sl], lf_[sl], sf[sl]
            centre, width = _proposal(kk, nn, ll, ss, _SIR_WIDTH)
            z = rng.standard_normal((kk.size, _SIR_CANDIDATES))
            t = centre[:, None] + width[:, None] * z
            logw = _log_f(_NP, t, kk[:, None], nn[:, None], ll[:, None], ss[:, None]) + 0.5 * z * z
            pick = np.argmax(logw + rng.gumbel(size=logw.shape), axis=1)
            out[sl] = expit(t[np.arange(kk.size), pick])
        return cf._done(out, shape)

    def pymc_logpmf(self, param, n, k, s):
        import pymc as pm
        import pytensor.tensor as pt

        loc = param("slab_loc")
        log_scale = param("log_slab_scale")
        scale = pm.Deterministic("slab_scale", pt.exp(log_scale), dims="group")
        kk, nn = pt.cast(k, "float64"), pt.cast(n, "float64")
        log_m = _ln_log_moment(_pt_namespace(), kk, nn, loc[s], scale[s])
        log_binom = pt.gammaln(nn + 1.0) - pt.gammaln(kk + 1.0) - pt.gammaln(nn - kk + 1.0)
        return log_binom + log_m


#: The slab families by name.
SLAB_FAMILIES: dict[str, Slab] = {"beta": BetaSlab(), "logitnormal": LogitNormalSlab()}


def get_slab(name: str | Slab) -> Slab:
    """The slab family called ``name`` (a :class:`Slab` is returned as is).

    Examples
    --------
    >>> get_slab("beta").params
    ('alpha', 'beta')
    """
    if isinstance(name, Slab):
        return name
    if name not in SLAB_FAMILIES:
        raise ValueError(f"unknown slab {name!r}; available: {', '.join(SLAB_FAMILIES)}")
    return SLAB_FAMILIES[name]
