"""Posterior draws of the crossed model and the per-cell quantities computed from them.

The numpy side of :class:`~bayes_regimes.models.crossed.CrossedRegimeModel` (a mixin):
flattened draws of the latent parameters; per-cell slab parameters; the propensity
integrated over its Gauss-Hermite nodes (per problem, then leaving one cell out);
and cells without data (a new problem and/or a new model). Nothing is held per
cell x draw beyond one block of ``_BLOCK`` elements, except the per-problem node
log-likelihood (samples x problems x nodes), cached once per fit.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

SLABS = ("beta", "beta_logit", "logitnormal")
#: Gauss-Hermite nodes of a new problem's (or model's) difficulty / ability.
GH_NODES = 24
#: Gauss-Hermite nodes of the problem propensity s_i (its discretised prior).
PROPENSITY_NODES = 16
#: Largest samples x cells x nodes array built at once.
_BLOCK = 4_000_000


def _softplus(x):
    return np.logaddexp(0.0, x)


def _expit(x):
    return np.exp(-_softplus(-x))


def slab_shapes(eta, kappa, slab: str, softplus=_softplus, exp=np.exp):
    """Slab parameters around the item-response mean ``eta`` (numpy by default,
    pytensor via the args): Beta (a, b) with mean sigmoid(eta), or the logit-normal
    (loc, scale) = (eta, kappa).

    Examples
    --------
    >>> a, b = slab_shapes(np.array([-2.0, 0.0]), 3.0, "beta_logit")
    >>> bool(np.allclose(a / (a + b), 1 / (1 + np.exp([2.0, 0.0]))))
    True
    """
    if slab == "beta":
        return kappa * exp(-softplus(-eta)), kappa * exp(-softplus(eta))
    if slab == "beta_logit":
        return kappa * exp(softplus(eta)), kappa * exp(softplus(-eta))
    if slab == "logitnormal":
        return eta, kappa + 0.0 * eta
    raise ValueError(f"unknown slab {slab!r}; available: {', '.join(SLABS)}")


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
        self._cache = (dt, out)
        if cfg["structural"]:
            out["problem_ll"] = self._problem_loglik(out)
        return out

    def _slab(self, dr: dict, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i, m, c = self._problem[idx], self._model[idx], self._condition[idx]
        eta = dr["ability"][:, m] - dr["disc"][:, m] * dr["difficulty"][:, i]
        eta = eta + dr["condition"][:, c]
        return slab_shapes(eta, dr["kappa"][:, m], self.config["slab"])

    def _logit_pi_nodes(self, dr: dict, u: np.ndarray) -> np.ndarray:
        """logit pi at the propensity nodes: (samples, len(u cols), nodes)."""
        x, _ = gauss_hermite(PROPENSITY_NODES)
        return dr["gamma"][:, None, None] + dr["propensity_sd"][:, None, None] * x + u[..., None]

    def _node_loglik(self, dr: dict, idx: np.ndarray, a, b) -> np.ndarray:
        """log P(k | n, s_i = node) per (sample, cell, node)."""
        slab = self._family.logpmf(self._k[idx], self._n[idx], 0.0, a, b)[..., None]
        logit = self._logit_pi_nodes(dr, dr["u"][:, self._model[idx]])
        log_pi, log_1m = -_softplus(-logit), -_softplus(logit)
        zero = (self._k[idx] == 0)[None, :, None]
        return np.where(zero, np.logaddexp(log_pi, log_1m + slab), log_1m + slab)

    def _problem_loglik(self, dr: dict) -> np.ndarray:
        """Sum over each problem's cells of the node log-likelihood: (samples, P, nodes)."""
        n_s = dr["ability"].shape[0]
        out = np.zeros((n_s, len(self.problems), PROPENSITY_NODES))
        order = np.argsort(self._problem, kind="stable")
        for idx in _blocks(order, n_s * PROPENSITY_NODES):
            probs = self._problem[idx]
            starts = np.flatnonzero(np.r_[True, probs[1:] != probs[:-1]])
            ll = self._node_loglik(dr, idx, *self._slab(dr, idx))
            out[:, probs[starts], :] += np.add.reduceat(ll, starts, axis=1)
        return out

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

    def _cell_hyper(self, dr: dict, idx: np.ndarray, solved_pi: bool = False):
        """(pi, a, b) of cells ``idx``, each (samples, len(idx)); pi given the other
        cells of each cell's problem (the cell's own data enters through w).

        A solved cell's structural weight is 0 whatever pi is, so its pi is only
        computed with ``solved_pi`` (for its log-likelihood) and is 0 otherwise.
        """
        a, b = self._slab(dr, idx)
        pi = np.zeros_like(a)
        if not self.config["structural"]:
            return pi, a, b
        log_w = np.log(gauss_hermite(PROPENSITY_NODES)[1])
        need = np.arange(len(idx)) if solved_pi else np.flatnonzero(self._k[idx] == 0)
        for sub in _blocks(need, a.shape[0] * PROPENSITY_NODES):
            cells = idx[sub]
            own = self._node_loglik(dr, cells, a[:, sub], b[:, sub])
            log_q = dr["problem_ll"][:, self._problem[cells], :] - own + log_w
            pi[:, sub] = self._pi_given(dr, log_q, dr["u"][:, self._model[cells]], 0.0)
        return pi, a, b

    def _new_cells(self, dr: dict, problems: list, models: list, conditions) -> tuple:
        """(pi, a, b), each (samples, cells, GH_NODES), of cells without data.

        ``problems`` / ``models`` hold indices, or None for a new problem / model
        (drawn from its population). eta ~ Normal(loc, sd) per sample; pi does not
        depend on eta, so it is constant over the nodes and every query (affine in pi
        given a, b) is the weighted average over the nodes.
        """
        n_s = dr["ability"].shape[0]
        zeros = np.zeros(n_s)
        ones = np.ones(n_s)
        loc, var, kappa, u_loc, u_sd, log_q = [], [], [], [], [], []
        log_w = np.log(gauss_hermite(PROPENSITY_NODES)[1])
        for i, m, c in zip(problems, models, conditions, strict=True):
            # A new model gets the median discrimination (1) and concentration.
            if m is None:
                ab, v, kap, u, us, lam = (
                    dr["ability_loc"],
                    dr["ability_sd"] ** 2,
                    dr["kappa_loc"],
                    zeros,
                    dr["u_sd"],
                    ones,
                )
            else:
                ab, v, kap, u, us, lam = (
                    dr["ability"][:, m],
                    zeros,
                    dr["kappa"][:, m],
                    dr["u"][:, m],
                    zeros,
                    dr["disc"][:, m],
                )
            if i is None:
                d, v = zeros, v + (lam * dr["difficulty_sd"]) ** 2
                lq = np.broadcast_to(log_w, (n_s, len(log_w)))
            else:
                d = lam * dr["difficulty"][:, i]
                lq = dr["problem_ll"][:, i, :] + log_w if "problem_ll" in dr else None
            loc.append(ab - d + dr["condition"][:, c])
            var.append(v)
            kappa.append(kap)
            u_loc.append(u)
            u_sd.append(us)
            log_q.append(lq)
        x, _ = gauss_hermite()
        loc, var, kappa = (np.stack(v, axis=1) for v in (loc, var, kappa))
        a, b = slab_shapes(
            loc[..., None] - np.sqrt(var)[..., None] * x, kappa[..., None], self.config["slab"]
        )
        if not self.config["structural"]:
            return np.zeros_like(a), a, b
        pi = self._pi_given(
            dr, np.stack(log_q, axis=1), np.stack(u_loc, axis=1), np.stack(u_sd, axis=1)
        )
        return np.broadcast_to(pi[..., None], a.shape), a, b
