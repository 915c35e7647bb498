"""Multi-condition model: each failure's success probability under retry and interventions.

Data are cells (problem, group, condition) with ``k`` successes of ``n`` trials.
A trial is either one rollout (``attempts = 1``) or one *repair context* rescued
when one of ``r`` attempts succeeds (best-of-r, the paper's rescue@3): then
``k`` is the number K of D contexts rescued and the context-level probability is
``q = 1 - (1 - p)^r`` with p the per-attempt success probability.

Model
-----
For problem i (a (group, problem) unit) and condition c, with standardised
features ``x_i``::

    u_i ~ Normal(0, 1)                                   latent ability, shared
    logit mu_ic = alpha_gc + loading_c * u_i + x_i . gamma_c
    logit pi_ic = lam_gc   - rho * u_i     + x_i . delta_c   structural propensity
    z_ic ~ Bernoulli(pi_ic);  p_ic = 0 if z_ic else p_ic ~ Beta(mu_ic kappa_c, (1 - mu_ic) kappa_c)
    K_ic ~ Binomial(D_ic, 1 - (1 - p_ic)^r_c)

The conditions are correlated through ``u_i`` (positive loadings: a problem that is
easier under one condition is easier under all), each has its own point mass at
p = 0, and the features shift both the slab mean and the structural propensity of
every condition: that regression is what routes a *new* failure from its features.
Given ``u_i``, p_ic is integrated out exactly: the best-of-r marginal under the
zero-inflated Beta slab is the all-positive sum of
:func:`bayes_regimes.best_of_r.best_of_r_zi_logpmf`, here in pytensor
(:func:`best_of_r_zi_logp`). The only latent dimension is one ``u_i`` per problem.

Why this design: the Beta slab keeps the best-of-r likelihood exact (no quadrature
in p) and makes every conditional posterior of p a finite Beta mixture, so
regimes and expected rescue come from closed forms per draw; one scalar factor
``u_i`` is the smallest structure that correlates the conditions. With several
groups, ``alpha`` and ``lam`` are partially pooled over groups (``alpha``
centred: each group holds many failures; ``lam`` non-centred: a zero count is
explained either by the point mass or by a small slab mean, so the structural
propensities are weakly identified and the centred funnel with ``lam_sd`` gave
ESS < 400 on the paper's table), so a new group draws its intercepts from that
population. The selection condition (below) depends on the features only through
u unless ``selection_features=True``.

Sampling geometry. The likelihood is invariant to the location and scale of the
u's and to their in-sample correlation with the features when alpha, the
loadings and gamma move with them; with a diagonal mass matrix these ridges cost
an order of magnitude in ESS. The model therefore samples u ~ Normal(0, 1) iid in
pieces that are independent for iid normals
(:func:`~bayes_regimes.models.interventions_blocks.latent_abilities`): group
means, the projection on the group-centred features, the residual sum of squares
and the residual direction; the likelihood sees only the standardised
direction and *effective* parameters (``alpha_eff``, ``loading_eff``,
``gamma_eff``, ...). The true parameters (``alpha``, ``loading``, ``gamma``,
``lam``, ``rho``, ``delta``: intercepts at u = 0, loadings per unit of u) are
deterministic functions of them and are what every query uses. The priors below
are placed on the effective parameters (they differ from the true ones by the
sample's mean, scale and feature correlation of u, of order 1 / sqrt(n)).
Diagnostics check ``u`` and every other variable except the raw ``u_direction``,
whose norm and projection on the group/feature basis are prior-only.

Selection
---------
The paper's table holds only problems that failed at least once. With
``selection=`` naming a condition of per-rollout counts (``attempts = 1``: ``n``
rollouts, ``k`` successes, for example the original rollouts ``n_failed`` failed of
``N``), every problem is known to have ``k < n`` there, and the likelihood is the
conditional one given that selection: ``u_i ~ Normal(0, 1)`` describes *all*
problems, and each unit's term is divided by
``P(at least one failure | theta, x_i) = E_u[1 - (1 - pi) E(p^N | u)]``, computed by
Gauss-Hermite quadrature over u (``n_nodes``). New failures are then drawn from
the selected population (``route_new``). Without a selection condition the rows
are treated as a random sample of problems.

Priors (override with ``priors=``): ``alpha ~ N(0, 1.5)``, ``lam ~ N(-2, 1.5)``
(group values ~ N(location, HalfNormal(1)) with several groups),
``loading ~ HalfNormal(1)``, ``rho ~ HalfNormal(1)``, ``log kappa ~ N(1.5, 0.5)``,
``gamma, delta ~ N(0, 0.5)`` per standardised feature.

Sampling: use the default ``target_accept=0.95`` of :meth:`BaseModel.fit` (also the
default of ``bayes-regimes route``). At 0.9 the fit of the whole paper table has no
divergences, but fits that leave one of its cells out had 10-21 sporadic ones, at
large ``lam_sd``; at 0.95 the same fits had none and took no longer
(benchmarks/results/router_loco_tune1000.md, router_loco_ta095.md). nutpie adapts a
diagonal mass matrix for this model (:attr:`InterventionModel.nutpie_low_rank`): with
the low-rank adaptation that the other models use, a chain sometimes got stuck at the
end of tuning (its step size collapsed ~10x and it diverged on every draw). Should a
chain still get stuck, the diagnostics name it: refit with another ``random_seed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from bayes_regimes import best_of_r as bor
from bayes_regimes.data import RolloutData
from bayes_regimes.errors import DataError
from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.interventions_blocks import (
    check_selection,
    condition_hyper,
    condition_options,
    condition_order,
    grouped_intercept,
    latent_abilities,
    log_selection,
    merged_priors,
)
from bayes_regimes.models.interventions_tools import (
    Layout,
    best_of_r_zi_logp,
    simulate_interventions,
)

__all__ = ["DEFAULT_PRIORS", "InterventionModel", "best_of_r_zi_logp", "simulate_interventions"]

DEFAULT_PRIORS: dict[str, Any] = {
    "alpha": [0.0, 1.5],
    "lam": [-2.0, 1.5],
    "loading": 1.0,
    "rho": 1.0,
    # sd 0.5, not 1: the paper's intervention slabs sit at log kappa ~ 4.3 either way,
    # and the wider prior let chains settle in tighter slabs, where the point mass and
    # a near-zero slab trade off (leave-cell-out without sft0p6b|gpqa: R-hat 2.29 with
    # sd 1, 1.012 with sd 0.5). An occasional stuck chain remains (2 of 14 router
    # fits): the diagnostics name it.
    "log_kappa": [1.5, 0.5],
    "coef": 0.5,
    "group_sd": 1.0,
}


class InterventionModel(BaseModel):
    """Joint hierarchical model of each failure's p under retry and every intervention.

    Parameters
    ----------
    data : RolloutData
        Cells with a condition column (problem, group, condition, n, k, features).
    baseline : str, optional
        The plain-resampling condition (default ``"retry"`` when present, else the
        first condition).
    attempts : int or dict
        Attempts per trial r (best-of-r), one for all conditions or per condition
        (missing ones get 1). 1 means k counts successful rollouts.
    costs : dict, optional
        Cost per trial of each condition (default 1), used by :meth:`route`.
    features : list of str, optional
        Per-problem feature columns of ``data`` used in the regression (default:
        all of ``data.features``); standardised over the units of ``data``.
    selection : str, optional
        Condition of per-rollout counts on which every problem failed at least once
        (the rows were selected on it); see the module notes.
    epsilon : float
        "p < epsilon" defines "beyond reach" (as in the core model, default 1e-3).
    tau_steer, tau_hard : float
        Regime thresholds mirroring the paper's Eq. 2 (defaults 0.05 and 0.5).
    group_effects : bool
        Partially pooled group offsets of alpha and lam when there are several groups.
    selection_features : bool
        Regress the selection condition on the features too (default False: it
        depends on them only through u, which makes the selection normaliser one
        quadrature per (group, N) instead of one per problem).
    n_nodes : int
        Gauss-Hermite nodes over u of the selection normaliser.
    priors : dict, optional
        Overrides of :data:`DEFAULT_PRIORS`.

    Examples
    --------
    >>> from bayes_regimes.models.interventions import InterventionModel, simulate_interventions
    >>> counts, truth = simulate_interventions(n_problems=60, random_seed=1)
    >>> data = RolloutData.from_counts(counts, condition="condition", features=["x0"])
    >>> model = InterventionModel(data, attempts=3)
    >>> model.fit(draws=150, tune=150, chains=2, progressbar=False)  # doctest: +SKIP
    >>> model.route().head()  # doctest: +SKIP
    """

    def __init__(
        self,
        data: RolloutData,
        baseline: str | None = None,
        attempts: int | Mapping[str, int] = 1,
        costs: Mapping[str, float] | None = None,
        features: Sequence[str] | None = None,
        selection: str | None = None,
        epsilon: float = 1e-3,
        tau_steer: float = 0.05,
        tau_hard: float = 0.5,
        group_effects: bool = True,
        selection_features: bool = False,
        n_nodes: int = 12,
        priors: Mapping[str, Any] | None = None,
    ) -> None:
        order, baseline = condition_order(data, baseline, selection)
        feats = list(data.features) if features is None else [str(f) for f in features]
        missing = [f for f in feats if f not in data.features]
        if missing:
            raise DataError(f"feature(s) {missing} not among the data's features {data.features}")
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
        merged = merged_priors(DEFAULT_PRIORS, priors)
        att, cost = condition_options(order, selection, attempts, costs)
        super().__init__(
            data,
            baseline=baseline,
            attempts=att,
            costs=cost,
            features=feats,
            selection=selection,
            epsilon=float(epsilon),
            tau_steer=float(tau_steer),
            tau_hard=float(tau_hard),
            group_effects=bool(group_effects),
            selection_features=bool(selection_features),
            n_nodes=int(n_nodes),
            priors=merged,
        )
        self._conditions = order
        self.layout = Layout(data, order, feats)
        lay = self.layout
        # features are z-scored within each group (population SD) when groups have
        # their own intercepts, else over all failures: the regression then acts on
        # a failure's features relative to its cell, as the paper's rule does
        cg = lay.group if self._multi_group else np.zeros_like(lay.group)
        n_c = int(cg.max()) + 1
        self._x_mean = np.stack([lay.X[cg == j].mean(axis=0) for j in range(n_c)])
        sd = np.stack([lay.X[cg == j].std(axis=0) for j in range(n_c)])
        self._x_sd = np.where(sd > 0, sd, 1.0)
        self.Z = (lay.X - self._x_mean[cg]) / self._x_sd[cg]
        self.r = np.array([att[c] for c in order], dtype=np.int64)
        if selection is not None:
            check_selection(lay, order.index(selection), selection)

    # -- structure -----------------------------------------------------------------------
    @property
    def conditions(self) -> list[str]:
        """Conditions in model order: baseline, interventions, then the selection one."""
        return list(self._conditions)

    @property
    def candidates(self) -> list[str]:
        """Conditions a failure can be routed to: the baseline and the interventions."""
        return [c for c in self.conditions if c != self.config["selection"]]

    @property
    def interventions(self) -> list[str]:
        """The candidates other than the baseline."""
        return self.candidates[1:]

    @property
    def _multi_group(self) -> bool:
        return self.config["group_effects"] and len(self.layout.groups) > 1

    def standardise(self, X: np.ndarray, groups: Sequence[str]) -> np.ndarray:
        """Standardised features of new failures, as in training.

        A known group uses its training mean and SD. Failures of a group unseen in
        training are z-scored among themselves (all rows of ``X`` with that label;
        a single one gets zeros: its features say nothing relative to its group).
        """
        X = np.asarray(X, dtype=float)
        groups = np.asarray(groups, dtype=object)
        if not self._multi_group:
            return (X - self._x_mean[0]) / self._x_sd[0]
        Z = np.zeros_like(X)
        known = self.layout.groups
        for g in dict.fromkeys(groups):
            rows = groups == g
            if g in known:
                j = known.index(g)
                Z[rows] = (X[rows] - self._x_mean[j]) / self._x_sd[j]
            else:
                sd = X[rows].std(axis=0)
                Z[rows] = (X[rows] - X[rows].mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        return Z

    def _nodes(self, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Gauss-Hermite nodes and log weights of u ~ Normal(0, 1)."""
        x, w = np.polynomial.hermite_e.hermegauss(count or self.config["n_nodes"])
        return x, np.log(w / w.sum())

    def build_model(self):
        """The PyMC model (Potentials on the exact best-of-r likelihood given u)."""
        import pymc as pm
        import pytensor.tensor as pt

        lay, pr, C = self.layout, self.config["priors"], len(self.conditions)
        coords = {
            "problem": list(lay.labels),
            "condition": self.conditions,
            "group": lay.groups,
            "feature": self.config["features"],
            "regressed": [c for c in self.conditions if c != self.config["selection"]],
        }
        with pm.Model(coords=coords) as model:
            multi, G = self._multi_group, len(lay.groups)
            alpha_eff = grouped_intercept(pm, "alpha", pr["alpha"], G, multi, pr["group_sd"])
            lam_eff = grouped_intercept(pm, "lam", pr["lam"], G, multi, pr["group_sd"])
            loading_eff = pm.HalfNormal("loading_eff", pr["loading"], dims="condition")
            rho_eff = pm.HalfNormal("rho_eff", pr["rho"])
            log_kappa = pm.Normal("log_kappa", *pr["log_kappa"], dims="condition")
            cg = lay.group if multi else np.zeros_like(lay.group)  # centring groups
            ustd, u_scale, u_mean, u_b, zbar = latent_abilities(
                pm, pt, cg, self.Z, G if multi else 1
            )
            # centring group of each group (all groups share one without group effects)
            gmap = np.arange(len(lay.groups)) if multi else np.zeros(len(lay.groups), int)
            loading = pm.Deterministic("loading", loading_eff / u_scale, dims="condition")
            rho = pm.Deterministic("rho", rho_eff / u_scale)
            sel = self.config["selection"]
            F = self.Z.shape[1]
            if F:
                gamma_eff, delta_eff = self._coefs(pm, pt, pr["coef"], loading, rho, u_b)
                xg, xd = pt.dot(self.Z, gamma_eff.T), pt.dot(self.Z, delta_eff.T)  # (unit, cond)
                # true coefficients: u's in-sample projection on the features removed
                gamma_true = pm.Deterministic(
                    "gamma",
                    gamma_eff - loading[:, None] * u_b[None, :],
                    dims=("condition", "feature"),
                )
                delta_true = pm.Deterministic(
                    "delta", delta_eff + rho * u_b[None, :], dims=("condition", "feature")
                )
                zb = pt.dot(zbar, u_b)[gmap][:, None]  # (group, 1): group mean of Z . b
            else:
                xg = xd = pt.zeros((lay.n_units, C))
                zb = pt.zeros((len(lay.groups), 1))
            um = u_mean[gmap][:, None]
            alpha = pm.Deterministic(
                "alpha", alpha_eff - loading[None, :] * (um - zb), dims=("group", "condition")
            )
            lam = pm.Deterministic("lam", lam_eff + rho * (um - zb), dims=("group", "condition"))
            g = lay.group
            # dense (unit, condition) grid; cells with D = 0 contribute nothing
            alpha_g, lam_g = (alpha_eff[g], lam_eff[g]) if multi else (alpha_eff[0], lam_eff[0])
            eta = alpha_g + ustd[:, None] * loading_eff[None, :] + xg
            zeta = lam_g - rho_eff * ustd[:, None] + xd
            kappa = pt.exp(log_kappa)
            a = (kappa[None, :] * pt.sigmoid(eta)).ravel()
            b = (kappa[None, :] * pt.sigmoid(-eta)).ravel()
            lp = best_of_r_zi_logp(
                lay.K,
                lay.D,
                np.broadcast_to(self.r, lay.K.shape),
                a,
                b,
                -pt.softplus(-zeta).ravel(),
                -pt.softplus(zeta).ravel(),
                kappa=kappa,
                kappa_index=np.broadcast_to(np.arange(C), lay.K.shape),
                total=True,
            )
            pm.Potential("loglik", lp)
            if sel is not None:
                s = self.conditions.index(sel)
                node, logw = self._nodes()
                N = lay.D[:, s]
                if self.config["selection_features"]:
                    rows, count, gs = np.arange(lay.n_units), np.ones(lay.n_units), g
                    m_eta = alpha[g, s] + pt.dot(self.Z, gamma_true[s])
                    m_zeta = lam[g, s] + pt.dot(self.Z, delta_true[s])
                else:  # one quadrature per (group, N)
                    pairs, rows, count = np.unique(
                        np.stack([g, N], axis=1), axis=0, return_index=True, return_counts=True
                    )
                    gs = pairs[:, 0]
                    m_eta, m_zeta = alpha[gs, s], lam[gs, s]
                log_sel = log_selection(
                    pt, m_eta, m_zeta, loading[s], rho, kappa[s], N[rows], node, logw
                )
                pm.Potential("selection", -pt.sum(count * log_sel))
        return model

    def _coefs(self, pm, pt, scale: float, loading, rho, u_b):
        """Effective feature coefficients (condition, feature) seen by the likelihood.

        A selection condition that is not regressed has true coefficients 0, so its
        effective ones are ``loading * b`` and ``-rho * b``."""
        dims = ("condition", "feature")
        if self.config["selection"] is None or self.config["selection_features"]:
            gamma = pm.Normal("gamma_eff", 0.0, scale, dims=dims)
            delta = pm.Normal("delta_eff", 0.0, scale, dims=dims)
            return gamma, delta
        s = len(self.conditions) - 1  # the selection condition is last
        out = []
        for name, fixed in (("gamma", loading[s] * u_b), ("delta", -rho * u_b)):
            free = pm.Normal(f"{name}_free", 0.0, scale, dims=("regressed", "feature"))
            both = pt.concatenate([free, fixed[None, :]], axis=0)
            out.append(pm.Deterministic(f"{name}_eff", both, dims=dims))
        return out

    # -- draws ---------------------------------------------------------------------------
    def draws(self, posterior: xr.Dataset | None = None) -> dict[str, np.ndarray]:
        """Posterior draws flattened over (chain, draw): alpha, lam (S, G, C), loading,
        log_kappa (S, C), rho (S,), gamma, delta (S, C, F), u (S, units)."""
        post = self.posterior if posterior is None else posterior
        F = len(self.config["features"])

        def flat(name, dims):
            da = post[name].transpose("chain", "draw", *dims)
            return da.values.reshape(-1, *da.shape[2:])

        out = {
            "alpha": flat("alpha", ("group", "condition")),
            "lam": flat("lam", ("group", "condition")),
            "loading": flat("loading", ("condition",)),
            "log_kappa": flat("log_kappa", ("condition",)),
            "rho": flat("rho", ()),
            "u": flat("u", ("problem",)),
        }
        S, C = out["loading"].shape
        for name in ("gamma", "delta"):
            out[name] = flat(name, ("condition", "feature")) if F else np.zeros((S, C, 0))
        return out

    #: pi, a, b (S, n) of units at latent u under conditions (``condition_hyper``).
    hyper = staticmethod(condition_hyper)

    def _cell_hyper(self, dr: dict, iu: np.ndarray, ic: np.ndarray):
        return self.hyper(dr, self.layout.group[iu], self.Z[iu], dr["u"][:, iu], ic)

    @property
    def diagnostic_vars(self) -> list[str]:  # type: ignore[override]
        """Variables checked by :meth:`diagnostics`: every posterior variable but the
        raw ``u_direction`` (its norm and its projection on the group and feature
        basis never enter the likelihood, so they are prior-only); the identified
        latent abilities ``u`` built from it are checked instead."""
        if self.idata is None:
            return []
        return [v for v in self.posterior.data_vars if v != "u_direction"]

    #: Largest draws x problems array stored as the log-likelihood group.
    max_loglik_elements: ClassVar[int] = 1_500_000
    #: nutpie's diagonal mass matrix, not the low-rank one: with the abilities
    #: sampled in independent pieces there is no ridge left for a low-rank update to
    #: follow, and on the paper's table a late low-rank update sometimes collapsed one
    #: chain's step size ~10x, which then diverged on every draw (a "stuck chain").
    #: The diagonal adaptation had none and took half the time at the same ESS
    #: (benchmarks/results/router_adaptation.md).
    nutpie_low_rank: ClassVar[bool] = False

    def pointwise_log_likelihood(self, posterior: xr.Dataset) -> xr.DataArray | None:
        """Log-likelihood of each problem (all its cells, given its u), dims (chain, draw,
        pattern) with one pattern per problem; None when larger than
        :attr:`max_loglik_elements` (the fit then stores no log-likelihood)."""
        lay = self.layout
        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        if n_chain * n_draw * lay.n_units > self.max_loglik_elements:
            return None
        dr = self.draws(posterior)
        iu, ic = np.nonzero(lay.D > 0)
        out = np.zeros((dr["u"].shape[0], lay.n_units))
        step = max(1, 400_000 // out.shape[0])
        for lo in range(0, iu.size, step):
            sl = slice(lo, lo + step)
            pi, a, b = self._cell_hyper(dr, iu[sl], ic[sl])
            K, D, r = lay.K[iu[sl], ic[sl]], lay.D[iu[sl], ic[sl]], self.r[ic[sl]]
            np.add.at(out.T, iu[sl], bor.best_of_r_zi_logpmf(K, D, r, pi, a, b).T)
        return xr.DataArray(
            out.reshape(n_chain, n_draw, lay.n_units),
            dims=("chain", "draw", "pattern"),
            coords={
                "chain": posterior["chain"].values,
                "draw": posterior["draw"].values,
                "pattern": np.arange(lay.n_units),
            },
        )

    def observed_dataset(self) -> xr.Dataset:
        """Per problem (dim ``pattern``) and condition: contexts n, rescued k, attempts."""
        lay = self.layout
        return xr.Dataset(
            {
                "k": (("pattern", "condition"), lay.K),
                "n": (("pattern", "condition"), lay.D),
                "attempts": ("condition", self.r),
                "count": ("pattern", np.ones(lay.n_units, np.int64)),
                "group_index": ("pattern", lay.group),
            },
            coords={"pattern": np.arange(lay.n_units), "condition": self.conditions},
        )

    # -- queries (see bayes_regimes.routing) ----------------------------------------------
    def route(self, costs: Mapping[str, float] | None = None, **kwargs: Any) -> pd.DataFrame:
        """Per failure: regime probabilities, expected rescue per condition, recommendation.

        See :func:`bayes_regimes.routing.route_fitted` for the columns and options.
        """
        from bayes_regimes.routing import route_fitted

        return route_fitted(self, costs=costs, **kwargs)

    def route_new(
        self, new: pd.DataFrame, costs: Mapping[str, float] | None = None, **kwargs: Any
    ) -> pd.DataFrame:
        """Prospective routing of new failures from their features only.

        See :func:`bayes_regimes.routing.route_new` for the columns and options.
        """
        from bayes_regimes.routing import route_new

        return route_new(self, new, costs=costs, **kwargs)

    def regime_fractions(self, by: Mapping[str, str] | None = None, **kwargs: Any) -> pd.DataFrame:
        """Posterior of the fraction of failures in each regime, per group (or ``by``).

        See :func:`bayes_regimes.routing.regime_fractions`.
        """
        from bayes_regimes.routing import regime_fractions

        return regime_fractions(self, by=by, **kwargs)
