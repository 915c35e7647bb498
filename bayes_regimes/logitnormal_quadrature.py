"""Adaptive Gaussian quadrature in t = logit p for the logit-normal slab.

The integrand of the slab's log moment, ``p^k (1 - p)^(n - k) N(t; loc, scale)`` with
``p = sigmoid(t)``, is log-concave in t. Its nodes sit on a Gaussian centred on the
mode (found by Newton's method from the best of three starting points) and
:data:`_WIDTH` times as wide as the integrand's wider side, and the integral is a
Gauss-Legendre rule on that Gaussian's probability scale (see
:mod:`bayes_regimes.slabs` for the accuracy). The node placement is a short scalar
loop per element, compiled by numba on first use (:func:`compiled_proposal`); the
integral itself is written once against a small array namespace, numpy
(:data:`_NP`) or PyTensor (:func:`_pt_namespace`), so the fit's log-likelihood and
the queries share it.

Examples
--------
>>> import numpy as np
>>> centre, width = _proposal(np.array([0.0]), np.array([10.0]), np.array([-2.0]), np.array([1.0]))
>>> bool(centre[0] < -2.0 and width[0] > 0)
True
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
from scipy.special import log_expit, log_ndtr, logsumexp, ndtri_exp

_NODES = 32  # Gauss-Legendre nodes per side of the split
_WIDTH = 2.5  # the nodes' Gaussian is this many times the wider side of the integrand
_SIR_WIDTH = 1.5  # the same for the proposal of the posterior draws of p
_NEWTON_STEPS = 5
_NEWTON_MAX_STEP = 3.0
_SIDE_PROBE = 2.0  # side widths are matched at this many standard deviations
_SIR_CANDIDATES = 64


def _log_sigmoid1(t):
    return min(t, 0.0) - math.log1p(math.exp(-abs(t)))


def _sigmoid1(t):
    e = math.exp(-abs(t))
    return (1.0 if t >= 0 else e) / (1.0 + e)


def _log_f1(t, k, n, loc, scale):
    """:func:`_log_f` of one element."""
    z = (t - loc) / scale
    return k * _log_sigmoid1(t) + (n - k) * _log_sigmoid1(-t) - 0.5 * z * z


def _one_sided_mode1(k, n, loc, s2):
    """Mode of the integrand when p is small there (sigmoid(t) ~ exp(t)).

    Solves n e^t = k + (loc - t) / s2: with y = loc + k s2 - t, y e^y = n s2 e^(loc + k s2),
    i.e. log y + y = L, by Newton's method on l = log y (convex and increasing in l,
    started to the right of the root, so it converges monotonically).
    """
    big = math.log(max(n * s2, 1e-300)) + loc + k * s2
    ell = math.log1p(big) if big > 0 else big + 1.0
    for _ in range(6):
        e = math.exp(ell)
        ell = ell - (e + ell - big) / (e + 1.0)
    return loc + k * s2 - math.exp(ell)


def _side_width1(top, t, s, sign, k, n, loc, scale):
    """Width of a Gaussian matching the integrand's fall-off on one side of its mode."""
    sd = s
    for _ in range(3):
        drop = top - _log_f1(t + sign * _SIDE_PROBE * sd, k, n, loc, scale)
        ratio = 0.5 * _SIDE_PROBE * _SIDE_PROBE / max(drop, 1e-12)
        sd = sd * math.sqrt(min(max(ratio, 0.25), 16.0))
    return sd


def _proposal1(k, n, loc, scale, factor):
    """Centre (the integrand's mode in t) and width of the Gaussian carrying the nodes.

    The integrand ``exp(_log_f)`` is log-concave in t. Its mode: the best of three
    starting points (a Gaussian approximation, and the one-sided solutions for small
    and for large p), then Newton steps. Its width: the wider of the two sides'
    fall-off, times ``factor``.
    """
    prec0 = 1.0 / (scale * scale)
    kh, fh = k + 0.5, n - k + 0.5
    prec_lik = kh * fh / (n + 1.0)
    t = (prec0 * loc + prec_lik * math.log(kh / fh)) / (prec0 + prec_lik)
    best = _log_f1(t, k, n, loc, scale)
    for c in (
        _one_sided_mode1(k, n, loc, scale * scale),
        -_one_sided_mode1(n - k, n, -loc, scale * scale),
    ):
        lf = _log_f1(c, k, n, loc, scale)
        if lf > best:
            t, best = c, lf
    for _ in range(_NEWTON_STEPS):
        sig, sig_c = _sigmoid1(t), _sigmoid1(-t)
        step = (k - n * sig - (t - loc) * prec0) / (n * sig * sig_c + prec0)
        t = t + min(max(step, -_NEWTON_MAX_STEP), _NEWTON_MAX_STEP)
    s = 1.0 / math.sqrt(n * _sigmoid1(t) * _sigmoid1(-t) + prec0)
    top = _log_f1(t, k, n, loc, scale)
    left = _side_width1(top, t, s, -1.0, k, n, loc, scale)
    right = _side_width1(top, t, s, 1.0, k, n, loc, scale)
    return t, factor * max(left, right)


def _proposal_flat(k, n, loc, scale, factor):
    """:func:`_proposal1` over flat float arrays of one length: (centre, width)."""
    centre = np.empty(k.size)
    width = np.empty(k.size)
    for i in range(k.size):
        centre[i], width[i] = _proposal1(k[i], n[i], loc[i], scale[i], factor)
    return centre, width


_JITTED = ("_log_sigmoid1", "_sigmoid1", "_log_f1", "_one_sided_mode1", "_side_width1")
_JITTED += ("_proposal1", "_proposal_flat")


@functools.cache
def compiled_proposal():
    """:func:`_proposal_flat` compiled by numba (on first use, cached on disk).

    The scalar functions above are plain Python; here they are replaced, in this
    module's namespace, by their numba-compiled versions, which find each other there
    when compiled. Without numba they stay plain Python (slow, but correct). Compiling
    lazily keeps numba out of ``import bayes_regimes``.
    """
    try:
        from bayes_regimes._numba import jit
    except ImportError:  # pragma: no cover - numba comes with PyTensor
        return _proposal_flat
    namespace = globals()
    for name in _JITTED:
        namespace[name] = jit(namespace[name])
    return namespace["_proposal_flat"]


def _proposal(k, n, loc, scale, factor=_WIDTH):
    """Centre and width of the quadrature's Gaussian, numpy in (broadcast) and out."""
    args = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (k, n, loc, scale)))
    flat = [np.ascontiguousarray(v).ravel() for v in args]
    centre, width = compiled_proposal()(*flat, float(factor))
    return centre.reshape(args[0].shape), width.reshape(args[0].shape)


_NP = SimpleNamespace(
    log=np.log,
    log_sigmoid=log_expit,
    logsumexp=lambda x: logsumexp(x, axis=-1),
    newaxis=lambda x: x[..., None],
    stop_gradient=lambda x: x,
    proposal=_proposal,
)


def _pt_namespace():
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad

    from bayes_regimes.models.slab_ops import quadrature_proposal

    return SimpleNamespace(
        log=pt.log,
        log_sigmoid=lambda x: -pt.softplus(-x),
        logsumexp=lambda x: pt.logsumexp(x, axis=-1),
        newaxis=lambda x: x[..., None],
        stop_gradient=disconnected_grad,
        proposal=quadrature_proposal,
    )


# Gauss-Legendre on the probability scale u of a Gaussian: log nodes u / U and log weights.
_LEG_Y, _LEG_W = np.polynomial.legendre.leggauss(_NODES)
_LOG_FRAC = np.log((1.0 + _LEG_Y) / 2.0)
_LOG_LW = np.log(_LEG_W / 2.0)
# Split at the Gaussian's centre (u = 1/2): fixed nodes z and log weights of the whole line
# for the integral of g(z) phi(z) dz with g = f / phi.
_Z_HALF = ndtri_exp(math.log(0.5) + _LOG_FRAC)
_Z_MODE = np.concatenate([_Z_HALF, -_Z_HALF])
_LOGW_MODE = math.log(0.5) + np.concatenate([_LOG_LW, _LOG_LW]) + 0.5 * _Z_MODE**2


def _log_f(xp, t, k, n, loc, scale):
    """log of p^k (1 - p)^(n - k) exp(-(t - loc)^2 / (2 scale^2)), p = sigmoid(t)."""
    z = (t - loc) / scale
    return k * xp.log_sigmoid(t) + (n - k) * xp.log_sigmoid(-t) - 0.5 * z * z


def _ln_log_moment(xp, k, n, loc, scale):
    """M(k, n) of the logit-normal slab; arguments broadcast (a node axis is appended).

    ``exp(M) = (width / scale) * int_0^1 exp(log_f(t(u)) + z(u)^2 / 2) du`` with
    ``t = centre + width * z`` and ``u = Phi(z)``; Gauss-Legendre on each half of u.
    """
    # The nodes' placement is not differentiated: the integral does not depend on it
    # (beyond the quadrature error), and the gradient graph stays small.
    centre, width = (xp.stop_gradient(v) for v in xp.proposal(k, n, loc, scale))
    t = xp.newaxis(centre) + xp.newaxis(width) * _Z_MODE
    lf = _log_f(xp, t, xp.newaxis(k), xp.newaxis(n), xp.newaxis(loc), xp.newaxis(scale))
    return xp.logsumexp(_LOGW_MODE + lf) + xp.log(width) - xp.log(scale)


def _half_integral(log_mass, sign, k, n, loc, scale, centre, width):
    """log of the integral of the integrand over one side of a cut (up to a constant
    common to both sides), by Gauss-Legendre on the probability scale u of the
    Gaussian N(centre, width): ``sign=+1`` the lower side, whose Gaussian mass is
    ``exp(log_mass)``; ``sign=-1`` the upper side, mirrored."""
    log_u = log_mass[:, None] + _LOG_FRAC
    z = sign * ndtri_exp(log_u)
    t = centre[:, None] + width[:, None] * z
    lf = _log_f(_NP, t, k[:, None], n[:, None], loc[:, None], scale[:, None])
    log_ratio = lf + 0.5 * z * z  # f / q up to constants common to both sides
    return log_mass + logsumexp(_LOG_LW + log_ratio, axis=1)


def _ln_prob_below_flat(eps, k, n, loc, scale):
    centre, width = _proposal(k, n, loc, scale)
    e = np.clip(eps, 1e-300, 1.0 - 1e-16)
    z = (np.log(e) - np.log1p(-e) - centre) / width
    lower = _half_integral(log_ndtr(z), 1.0, k, n, loc, scale, centre, width)
    upper = _half_integral(log_ndtr(-z), -1.0, k, n, loc, scale, centre, width)
    out = np.exp(lower - np.logaddexp(lower, upper))
    return np.where(eps <= 0, 0.0, np.where(eps >= 1, 1.0, out))
