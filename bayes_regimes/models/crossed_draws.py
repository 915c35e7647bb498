"""Posterior draws of the crossed model and the per-cell quantities computed from them.

The numpy side of :class:`~bayes_regimes.models.crossed.CrossedRegimeModel` (a mixin):
flattened draws of the latent parameters; per-cell slab parameters; the propensity
integrated over its Gauss-Hermite nodes (per problem, then leaving one cell out);
and cells without data (a new problem and/or a new model).

Cost. Queries evaluate closed forms on every (draw, cell) pair (10^8 of them for 50
models x 500 problems x 4,000 draws), so three things are computed once per fit and
cached with the draws: the structural probability of every (draw, model) at every
propensity node, ``pi_j = sigmoid(gamma + propensity_sd x_j + u_m)`` (samples x
models x nodes); the per-problem node log-likelihood (samples x problems x nodes);
and its normalised node weights ``Q_j`` (the posterior of the propensity given all
the problem's cells). A cell's structural prior given the *other* cells of its
problem is then, in linear space, ``pi_eff = sum_j Q_j pi_j / f_j / sum_j Q_j / f_j``
with ``f_j = pi_j + (1 - pi_j) P(k = 0 | slab)`` its own likelihood at node j
(``1 - pi_j`` for a solved cell, whose slab term does not depend on the node): no
logarithm or exponential per node. Where an ``f_j`` is below ``_TINY`` (so that
linear space could underflow) the log-space form is used. Nothing is held per
cell x draw x node beyond one block of ``_BLOCK`` elements.

The queries' closed forms run on :class:`FastBetaSlab`: the Beta slab of
:mod:`bayes_regimes.closed_form` with the structural weight evaluated on failed cells
only (it is 0 where k > 0) and the log beta ratios by :func:`log_beta_ratio`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betainc, gammaln, logsumexp

from bayes_regimes import closed_form as cf
from bayes_regimes import slabs as sl

SLABS = ("beta", "beta_logit", "logitnormal")
#: Gauss-Hermite nodes of a new problem's (or model's) difficulty / ability.
GH_NODES = 24
#: Gauss-Hermite nodes of the problem propensity s_i (its discretised prior).
PROPENSITY_NODES = 16
#: Largest samples x cells x nodes array built at once.
_BLOCK = 1_000_000
#: Own-likelihood factors f_j below this take the log-space path.
_TINY = 1e-300
#: log_beta_ratio keeps its fast forms where their error bound is below this times
#: min(|result|, 1) (relative error of the ratio and of its exponential); elsewhere it
#: calls closed_form's stable form.
_RATIO_RTOL = 1e-10
#: log_beta_ratio multiplies out the ratio for integer m up to this.
_PRODUCT_MAX = 32
#: Relative rounding error of one log-gamma value (scipy's gammaln), with margin.
_GAMMALN_EPS = 1e-15


#: The Beta slab's log shapes, and log kappa, are kept within +-LOG_SHAPE_BOUND: beyond
#: it the log-gamma differences of the likelihood lose all precision and overflow to
#: inf or NaN (which stops ADVI). The prior puts no mass there: a or b > 7e10 makes the
#: slab a point at its mean for any count up to 10^6.
LOG_SHAPE_BOUND = 25.0


def _softplus(x):
    return np.logaddexp(0.0, x)


def _expit(x):
    return np.exp(-_softplus(-x))


def slab_shapes(eta, kappa, slab: str, softplus=_softplus, exp=np.exp, log=np.log, clip=np.clip):
    """Slab parameters around the item-response mean ``eta`` (numpy by default,
    pytensor via the args): Beta (a, b) with mean sigmoid(eta), or the logit-normal
    (loc, scale) = (eta, kappa). Beta shapes are computed in log space and kept
    within ``exp(+-LOG_SHAPE_BOUND)``, so they stay finite for any finite input.

    Examples
    --------
    >>> a, b = slab_shapes(np.array([-2.0, 0.0]), 3.0, "beta_logit")
    >>> bool(np.allclose(a / (a + b), 1 / (1 + np.exp([2.0, 0.0]))))
    True
    >>> a, b = slab_shapes(np.array([-80.0]), 1e30, "beta_logit")
    >>> bool(np.isfinite(a).all() and np.isfinite(b).all())
    True
    """
    if slab == "logitnormal":
        return eta, kappa + 0.0 * eta
    if slab not in ("beta", "beta_logit"):
        raise ValueError(f"unknown slab {slab!r}; available: {', '.join(SLABS)}")
    sign = -1.0 if slab == "beta" else 1.0
    log_kappa = log(kappa)
    log_a = log_kappa + sign * softplus(sign * eta)
    log_b = log_kappa + sign * softplus(-sign * eta)
    bound = LOG_SHAPE_BOUND
    return exp(clip(log_a, -bound, bound)), exp(clip(log_b, -bound, bound))


def gauss_hermite(n: int = GH_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and normalised weights: sum(w f(x)) ~ E[f(X)], X ~ Normal(0, 1).

    Examples
    --------
    >>> x, w = gauss_hermite(10)
    >>> round(float(w @ x**2), 12)
    1.0
    """
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


def _blocks(idx: np.ndarray, per_item: int):
    step = max(1, _BLOCK // max(per_item, 1))
    for start in range(0, len(idx), step):
        yield idx[start : start + step]


def log_beta_ratio(x, y, m) -> np.ndarray:
    """log B(x, y + m) / B(x, y) (x >= 0, y > 0, m >= 0), broadcasting.

    For integer m <= ``_PRODUCT_MAX`` (the n of a suite, small budgets) the log of
    ``prod_{j < m} (y + j) / (x + y + j)``, otherwise ``lgamma(y + m) - lgamma(y) -
    lgamma(x + y + m) + lgamma(x + y)``: each kept where a bound on its rounding error
    (the product's length; the log-gammas' size and their arguments' rounding) is
    below ``_RATIO_RTOL`` times min(|result|, 1), so the ratio and its exponential
    agree with closed_form to that relative error. That is most (draw, cell) pairs
    of a suite with small n, three to ten times faster than the stable form; the
    others (tiny x, large y against m, infinite m) take
    :func:`bayes_regimes.closed_form._log_beta_ratio`.

    Examples
    --------
    >>> x, y, m = np.array([0.5, 2.0, 1e-9]), np.array([3.0, 1e6, 2.0]), 10.0
    >>> bool(np.allclose(log_beta_ratio(x, y, m), cf._log_beta_ratio(x, y, m), rtol=1e-10))
    True
    """
    x, y, m = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, y, m)))
    if x.ndim == 0:
        return log_beta_ratio(x[None], y[None], m[None])[0]
    z = x + y
    top = m.max(initial=0.0)
    with np.errstate(all="ignore"):
        if top <= _PRODUCT_MAX and np.all(m == np.round(m)):
            prod = np.ones(m.shape)
            uniform = bool(np.all(m == top))
            for j in range(int(top)):
                factor = (y + j) / (z + j)
                prod *= factor if uniform else np.where(j < m, factor, 1.0)
            out = np.log(prod)
            err = (2.0 * m + 2.0) * np.finfo(float).eps
            ok = (err <= _RATIO_RTOL * np.minimum(np.abs(out), 1.0)) & (prod > _TINY)
        else:
            terms = [gammaln(t) for t in (y + m, y, z + m, z)]
            out = (terms[0] - terms[1]) - (terms[2] - terms[3])
            size = sum(np.abs(t) for t in terms) + (y + m) * np.log1p(y + m)
            err = _GAMMALN_EPS * (size + (z + m) * np.log1p(z + m))
            ok = (err <= _RATIO_RTOL * np.minimum(np.abs(out), 1.0)) & np.isfinite(out)
    zero = (m == 0) & ~np.isnan(z)
    out[zero] = 0.0
    hard = ~(ok | zero)
    if hard.any():
        out[hard] = cf._log_beta_ratio(x[hard], y[hard], m[hard])
    return out[()]


class FastBetaSlab(sl.BetaSlab):
    """The Beta slab's closed forms (:mod:`bayes_regimes.closed_form`), faster on
    (draw, cell) arrays: the structural weights are evaluated on failed cells only
    (w = 0 where k > 0) and the log beta ratios by :func:`log_beta_ratio`. Same
    formulas, same results up to rounding (relative 1e-10).

    Examples
    --------
    >>> fast, ref = FastBetaSlab(), sl.BetaSlab()
    >>> k, n, pi, a, b = np.array([0, 3]), np.array([10, 10]), 0.3, 2.0, 5.0
    >>> bool(
    ...     np.allclose(
    ...         fast.expected_gain(k, n, 50, pi, a, b),
    ...         ref.expected_gain(k, n, 50, pi, a, b),
    ...         rtol=1e-10,
    ...     )
    ... )
    True
    """

    def log_moment(self, k, n, a, b) -> np.ndarray:
        # log B(a + k, b + n - k) / B(a, b) as closed_form._log_beta_shift splits it.
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        out = log_beta_ratio(a, b, n - k)
        return out + log_beta_ratio(b + (n - k), a, k) if np.any(k != 0) else out

    def _log_weights(self, k, n, pi, a, b) -> tuple[np.ndarray, np.ndarray]:
        cf._check_hyper(pi, a, b)
        cf._check_counts(k, n)
        k, n, pi, a, b = (np.asarray(v, dtype=float) for v in (k, n, pi, a, b))
        shape = np.broadcast_shapes(k.shape, n.shape, pi.shape, a.shape, b.shape)
        log_w, log_1mw = np.full(shape, -np.inf), np.zeros(shape)
        if k.ndim == 1 and n.ndim <= 1 and shape[-1:] == k.shape:
            # Counts per cell along the last axis (draws x cells): take failed columns.
            cols = np.flatnonzero(k == 0)
            sel = (..., cols)
        else:
            zero = np.broadcast_to(k == 0, shape)
            cols, sel = np.flatnonzero(zero), zero
        if cols.size:
            pi0, a0, b0, n0 = (np.broadcast_to(v, shape)[sel] for v in (pi, a, b, n))
            slab0 = log_beta_ratio(a0, b0, n0)
            log_w[sel], log_1mw[sel] = cf._structural_log_weights(0, pi0, slab0)
        return log_w[()], log_1mw[()]

    logpmf = sl.Slab.logpmf
    log_structural_weight = sl.Slab.log_structural_weight
    expected_gain = sl.Slab.expected_gain

    def log_no_success(self, k, n, m, a, b) -> np.ndarray:
        cf._check_hyper(None, a, b)
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        return log_beta_ratio(np.asarray(a) + k, np.asarray(b) + n - k, m)

    def log_marginal_gain(self, k, n, j, pi, a, b) -> np.ndarray:
        if np.any(np.asarray(j, dtype=float) < 1):
            raise ValueError("the rollout index j must be >= 1")
        _, log_1mw = self._log_weights(k, n, pi, a, b)
        k, n, j = (np.asarray(v, dtype=float) for v in (k, n, j))
        x, y = np.asarray(a, dtype=float) + k, np.asarray(b, dtype=float) + n - k
        return log_1mw + np.log(x) - np.log(x + y + j - 1) + log_beta_ratio(x, y, j - 1)

    def posterior_mean_p(self, k, n, pi, a, b) -> np.ndarray:
        _, log_1mw = self._log_weights(k, n, pi, a, b)
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return np.exp(log_1mw) * (a + k) / (a + b + n)

    def prob_below(self, eps, k, n, pi, a, b) -> np.ndarray:
        log_w, log_1mw = self._log_weights(k, n, pi, a, b)
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        x, y = np.asarray(a, dtype=float) + k, np.asarray(b, dtype=float) + n - k
        eps = np.asarray(eps, dtype=float)
        below = betainc(x, y, np.clip(eps, 0.0, 1.0))
        out = np.minimum(np.exp(log_w) + np.exp(log_1mw) * below, 1.0)
        if eps.ndim == 0 and 0 < eps < 1:
            return out[()]
        return np.where(eps <= 0, 0.0, np.where(eps >= 1, 1.0, out))[()]

    def pass_at_k_new_problem(self, k, pi, a, b) -> np.ndarray:
        cf._check_hyper(pi, a, b)
        return (1.0 - np.asarray(pi, dtype=float)) * cf._one_minus_exp(log_beta_ratio(a, b, k))


FAST_BETA = FastBetaSlab()


class CrossedDrawsMixin:
    """Draws and per-cell computations; expects the attributes set by CrossedRegimeModel."""

    def _draws(self) -> dict[str, np.ndarray]:
        """Flattened posterior draws (samples first), cached per fit."""
        dt = self._require_fit()
        if self._cache is not None and self._cache[0] is dt:
            return self._cache[1]
        post = self.posterior

        def flat(name):
            da = post[name]
            other = [d for d in da.dims if d not in ("chain", "draw")]
            vals = da.transpose("chain", "draw", *other).values
            return vals.reshape(-1, *vals.shape[2:])

        names = ("ability", "difficulty", "ability_loc", "ability_sd", "difficulty_sd")
        out = {name: flat(name) for name in names}
        n_s = out["ability"].shape[0]
        kappa = flat("kappa")
        out["kappa"] = kappa if kappa.ndim == 2 else np.repeat(kappa[:, None], len(self.models), 1)
        # An unknown model gets the median concentration of the models' population.
        out["kappa_loc"] = np.exp(flat("log_kappa_loc"))
        out["condition"] = (
            flat("condition_effect")
            if self._use_condition
            else np.zeros((n_s, len(self.conditions)))
        )
        cfg = self.config
        out["disc"] = (
            flat("discrimination") if cfg["discrimination"] else np.ones((n_s, len(self.models)))
        )
        out["gamma"] = flat("logit_pi_loc") if cfg["structural"] else np.full(n_s, -np.inf)
        out["propensity_sd"] = flat("propensity_sd") if cfg["structural"] else np.zeros(n_s)
        use_u = cfg["structural"] and cfg["model_propensity"]
        out["u"] = flat("model_propensity") if use_u else np.zeros((n_s, len(self.models)))
        out["u_sd"] = flat("model_propensity_sd") if use_u else np.zeros(n_s)
        # A model unknown to the fit is drawn from the population of models: with
        # covariates, the spread of the fitted trend x_m . coef adds to the residual
        # sd (x is centred, so the trend averages 0 over the models).
        out["ability_pop_sd"], out["u_pop_sd"] = out["ability_sd"], out["u_sd"]
        coefs = self.covariate_coefs
        if coefs:
            x = self.model_covariates.to_numpy()

            out["coef"] = {term: flat(name) for term, name in coefs.items()}

            def pop_sd(term, resid):
                return np.sqrt(resid**2 + np.mean((out["coef"][term] @ x.T) ** 2, axis=1))

            if "ability" in coefs:
                out["ability_pop_sd"] = pop_sd("ability", out["ability_sd"])
            if "structural" in coefs:
                out["u_pop_sd"] = pop_sd("structural", out["u_sd"])
        self._cache = (dt, out)
        if cfg["structural"]:
            self._propensity_cache(out)
        return out

    def _propensity_cache(self, dr: dict) -> None:
        """Add to the draws: the node arrays of pi_j, the per-problem node
        log-likelihood and its normalised node weights Q_j."""
        dr["nodes"] = self._node_pi(dr)
        dr["problem_ll"] = self._problem_loglik(dr)
        joint = dr["problem_ll"] + np.log(gauss_hermite(PROPENSITY_NODES)[1])
        dr["problem_q"] = np.exp(joint - joint.max(axis=-1, keepdims=True))

    def _slab(self, dr: dict, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def take(name, codes):
            return np.take(dr[name], codes[idx], axis=1)

        diff = take("difficulty", self._problem)
        if self.config["discrimination"]:
            diff = take("disc", self._model) * diff
        eta = take("ability", self._model) - diff
        if self._use_condition:
            eta += take("condition", self._condition)
        kappa, slab = take("kappa", self._model), self.config["slab"]
        if slab == "logitnormal":
            return slab_shapes(eta, kappa, slab)
        # slab_shapes' forms (exp of softplus) with one exponential each, same values.
        with np.errstate(over="ignore"):
            up, down = 1.0 + np.exp(eta), 1.0 + np.exp(-eta)
        return (kappa * up, kappa * down) if slab == "beta_logit" else (kappa / down, kappa / up)

    def _logit_pi_nodes(self, dr: dict, u: np.ndarray) -> np.ndarray:
        """logit pi at the propensity nodes: (samples, len(u cols), nodes)."""
        x, _ = gauss_hermite(PROPENSITY_NODES)
        return dr["gamma"][:, None, None] + dr["propensity_sd"][:, None, None] * x + u[..., None]

    def _node_pi(self, dr: dict) -> dict[str, np.ndarray]:
        """pi_j, 1 - pi_j and their logs per (sample, model, node)."""
        logit = self._logit_pi_nodes(dr, dr["u"])
        log_pi, log_1m = -_softplus(-logit), -_softplus(logit)
        out = {"pi": np.exp(log_pi), "one_m": np.exp(log_1m), "log_pi": log_pi, "log_1m": log_1m}
        out["pi_min"], out["one_m_min"] = out["pi"].min(axis=-1), out["one_m"].min(axis=-1)
        return out

    def _own_factor(self, dr: dict, cells: np.ndarray, a, b):
        """A cell's own likelihood per node, up to a node-free factor, in linear space:
        f_j = pi_j + (1 - pi_j) P(k = 0) for a failed cell, 1 - pi_j for a solved one,
        shape (samples, cells, nodes); also log P(k = 0 | slab) (-inf when solved) and
        pi_j of the cell's model."""
        nodes = dr["nodes"] if "nodes" in dr else self._node_pi(dr)
        m = self._model[cells]
        zero = self._k[cells] == 0
        slab0 = np.full(a.shape, -np.inf)
        if zero.any():
            n0 = self._n[cells][zero]
            slab0[:, zero] = self._family.log_moment(0.0, n0, a[:, zero], b[:, zero])
        pi, f = np.take(nodes["pi"], m, axis=1), np.take(nodes["one_m"], m, axis=1)
        if zero.all():
            f *= np.exp(slab0)[..., None]
            f += pi
        elif zero.any():
            f[:, zero, :] = pi[:, zero, :] + f[:, zero, :] * np.exp(slab0[:, zero])[..., None]
        return f, slab0, pi

    def _exact_rows(self, dr: dict, cells: np.ndarray, slab0: np.ndarray):
        """(sample, cell) pairs whose f_j could be below _TINY (pi_j, or 1 - pi_j for a
        solved cell, is), with their log f_j computed in log space."""
        nodes = dr["nodes"] if "nodes" in dr else self._node_pi(dr)
        m, zero = self._model[cells], self._k[cells] == 0
        low = np.where(zero, np.take(nodes["pi_min"], m, axis=1), 0.0)
        low = low + np.where(zero, 0.0, np.take(nodes["one_m_min"], m, axis=1))
        rows = np.nonzero(low < _TINY)
        if not rows[0].size:
            return rows, None
        s, m = rows[0], m[rows[1]]
        mixed = np.logaddexp(nodes["log_pi"][s, m], nodes["log_1m"][s, m] + slab0[rows][:, None])
        return rows, np.where(zero[rows[1]][:, None], mixed, nodes["log_1m"][s, m])

    def _problem_loglik(self, dr: dict) -> np.ndarray:
        """Sum over each problem's cells of the node log-likelihood: (samples, P, nodes)."""
        n_s = dr["ability"].shape[0]
        nodes = dr["nodes"] if "nodes" in dr else self._node_pi(dr)
        solved = self._k > 0
        # A solved cell contributes log(1 - pi_j) of its model (summed as problem x model
        # counts) plus its slab log-pmf, which does not depend on the node.
        counts = np.zeros((len(self.problems), len(self.models)))
        np.add.at(counts, (self._problem[solved], self._model[solved]), 1.0)
        out = np.matmul(counts, nodes["log_1m"])
        for idx, probs, starts in self._by_problem(np.flatnonzero(solved), n_s):
            ll = self._family.logpmf(self._k[idx], self._n[idx], 0.0, *self._slab(dr, idx))
            out[:, probs, :] += np.add.reduceat(ll, starts, axis=1)[..., None]
        for idx, probs, starts in self._by_problem(np.flatnonzero(~solved), n_s * PROPENSITY_NODES):
            f, slab0, _ = self._own_factor(dr, idx, *self._slab(dr, idx))
            with np.errstate(divide="ignore"):
                ll = np.log(f)
            rows, exact = self._exact_rows(dr, idx, slab0)
            if exact is not None:  # linear space could underflow: log space for these
                ll[rows] = exact
            out[:, probs, :] += np.add.reduceat(ll, starts, axis=1)
        return out

    def _by_problem(self, cells: np.ndarray, per_cell: int):
        """Blocks of ``cells`` sorted by problem: (cells, their problems, segment starts)."""
        order = cells[np.argsort(self._problem[cells], kind="stable")]
        for idx in _blocks(order, per_cell):
            probs = self._problem[idx]
            starts = np.flatnonzero(np.r_[True, probs[1:] != probs[:-1]])
            yield idx, probs[starts], starts

    def _pi_given(self, dr: dict, log_q: np.ndarray, u_loc, u_sd) -> np.ndarray:
        """Structural probability given node log-weights log_q (samples, cells, nodes)
        of the propensity and a model term u ~ Normal(u_loc, u_sd) (samples, cells)."""
        q_w = np.exp(log_q - logsumexp(log_q, axis=-1, keepdims=True))
        if not np.any(u_sd):
            return np.sum(q_w * _expit(self._logit_pi_nodes(dr, u_loc)), axis=-1)
        xu, wu = gauss_hermite(PROPENSITY_NODES)
        pi = sum(
            wl * _expit(self._logit_pi_nodes(dr, u_loc + u_sd * xl))
            for xl, wl in zip(xu, wu, strict=True)
        )
        return np.sum(q_w * pi, axis=-1)

    def _loo_pi(self, dr: dict, cells: np.ndarray, a, b) -> np.ndarray:
        """Structural prior of each cell given the other cells of its problem."""
        f, slab0, pi_nodes = self._own_factor(dr, cells, a, b)
        r = np.take(dr["problem_q"], self._problem[cells], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # rows redone below
            r /= f
            pi = np.einsum("scj,scj->sc", r, pi_nodes) / np.einsum("scj->sc", r)
        rows, exact = self._exact_rows(dr, cells, slab0)
        if exact is not None:  # linear space could underflow: log space for these
            log_q = dr["problem_ll"][rows[0], self._problem[cells][rows[1]], :] - exact
            log_q = log_q + np.log(gauss_hermite(PROPENSITY_NODES)[1])
            q_w = np.exp(log_q - logsumexp(log_q, axis=-1, keepdims=True))
            pi[rows] = np.sum(q_w * pi_nodes[rows], axis=-1)
        return pi

    def _cell_hyper(self, dr: dict, idx: np.ndarray, solved_pi: bool = False):
        """(pi, a, b) of cells ``idx``, each (samples, len(idx)); pi given the other
        cells of each cell's problem (the cell's own data enters through w).

        A solved cell's structural weight is 0 whatever pi is, so its pi is only
        computed with ``solved_pi`` (for its log-likelihood) and is 0 otherwise.
        Repeated cells (as the allocation asks for) are computed once.
        """
        idx = np.asarray(idx)
        uniq, inverse = np.unique(idx, return_inverse=True)
        if uniq.size < idx.size:
            return tuple(v[:, inverse] for v in self._cell_hyper(dr, uniq, solved_pi))
        a, b = self._slab(dr, idx)
        pi = np.zeros_like(a)
        if not self.config["structural"]:
            return pi, a, b
        need = np.arange(len(idx)) if solved_pi else np.flatnonzero(self._k[idx] == 0)
        for sub in _blocks(need, a.shape[0] * PROPENSITY_NODES):
            pi[:, sub] = self._loo_pi(dr, idx[sub], a[:, sub], b[:, sub])
        return pi, a, b
