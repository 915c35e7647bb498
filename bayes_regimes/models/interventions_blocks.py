"""PyMC building blocks and numpy hyper-parameters of the intervention model.

Self-contained pieces of :class:`bayes_regimes.models.interventions.InterventionModel`:

* :func:`condition_order`: the model's condition order (baseline, interventions,
  selection condition last), validated against the data;
* :func:`merged_priors`, :func:`condition_options`, :func:`check_selection`: the
  checks of the model's options and of the selection condition;
* :func:`latent_abilities`: ``u ~ Normal(0, 1)`` iid per problem, sampled in
  independent pieces (group means, feature projection, scale, direction);
* :func:`grouped_intercept`: (group, condition) intercepts, partially pooled;
* :func:`log_selection`: log P(at least one failure in N rollouts) by Gauss-Hermite
  quadrature over u (the selection normaliser);
* :func:`condition_hyper`: pi, a, b per posterior draw from flattened draws.

Examples
--------
>>> import numpy as np
>>> dr = {
...     "alpha": np.zeros((1, 1, 2)),
...     "lam": np.full((1, 1, 2), -1.0),
...     "loading": np.ones((1, 2)),
...     "rho": np.ones(1),
...     "log_kappa": np.zeros((1, 2)),
...     "gamma": np.zeros((1, 2, 0)),
...     "delta": np.zeros((1, 2, 0)),
... }
>>> pi, a, b = condition_hyper(dr, np.array([0]), np.zeros((1, 0)), np.zeros((1, 1)), np.array([1]))
>>> [round(float(x[0, 0]), 4) for x in (pi, a, b)]
[0.2689, 0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import expit

from bayes_regimes.data import RolloutData
from bayes_regimes.errors import DataError
from bayes_regimes.models.interventions_tools import Layout, as_condition_map

__all__ = [
    "check_selection",
    "condition_hyper",
    "condition_options",
    "condition_order",
    "grouped_intercept",
    "latent_abilities",
    "log_selection",
    "merged_priors",
]


def condition_order(
    data: RolloutData, baseline: str | None, selection: str | None
) -> tuple[list[str], str]:
    """Conditions in model order (baseline, interventions, selection) and the baseline.

    The baseline defaults to ``"retry"`` when present, else the first condition.

    Examples
    --------
    >>> import pandas as pd
    >>> counts = pd.DataFrame(
    ...     {"problem_id": ["p"] * 3, "condition": ["orig", "retry", "steer"], "n": 5, "k": 1}
    ... )
    >>> condition_order(RolloutData.from_counts(counts, condition="condition"), None, "orig")
    (['retry', 'steer', 'orig'], 'retry')
    """
    conds = list(dict.fromkeys(data.cells["condition"].astype(str)))
    if baseline is None:
        baseline = "retry" if "retry" in conds else conds[0]
    if baseline not in conds:
        raise DataError(f"baseline condition {baseline!r} not in the data ({conds})")
    if selection is not None and selection not in conds:
        raise DataError(f"selection condition {selection!r} not in the data ({conds})")
    if selection == baseline:
        raise ValueError("the selection condition must differ from the baseline")
    order = [baseline] + [c for c in conds if c not in (baseline, selection)]
    order += [selection] if selection else []
    if len(order) - (selection is not None) < 2:
        raise DataError(f"need a baseline and at least one intervention; found {conds}")
    return order, baseline


def merged_priors(defaults: Mapping[str, Any], priors: Mapping[str, Any] | None) -> dict:
    """``defaults`` updated with ``priors`` (sequences as lists); unknown names raise.

    Examples
    --------
    >>> merged_priors({"a": (0.0, 1.0), "b": 1.0}, {"b": 2.0})
    {'a': [0.0, 1.0], 'b': 2.0}
    """
    unknown = set(priors or {}) - set(defaults)
    if unknown:
        raise ValueError(f"unknown prior(s) {sorted(unknown)}; known: {list(defaults)}")
    merged = {k: list(v) if isinstance(v, tuple | list) else v for k, v in defaults.items()}
    merged.update(
        {k: list(v) if isinstance(v, tuple | list) else v for k, v in (priors or {}).items()}
    )
    return merged


def condition_options(
    order: list[str], selection: str | None, attempts, costs
) -> tuple[dict[str, int], dict[str, float]]:
    """Attempts (>= 1; 1 for the selection condition) and costs (> 0) per condition.

    Examples
    --------
    >>> condition_options(["retry", "steer"], None, {"steer": 3}, None)
    ({'retry': 1, 'steer': 3}, {'retry': 1.0, 'steer': 1.0})
    """
    att = as_condition_map(attempts, order, "attempts", int)
    if any(v < 1 for v in att.values()):
        raise ValueError("attempts must be >= 1")
    cost = as_condition_map(costs or 1.0, order, "costs", float)
    if any(not v > 0 for v in cost.values()):
        raise ValueError("costs must be positive")
    if selection is not None and att[selection] != 1:
        raise ValueError("the selection condition must count single rollouts (attempts 1)")
    return att, cost


def check_selection(lay: Layout, s: int, selection: str) -> None:
    """Every problem has a cell in the selection condition (index ``s``) and failed there."""
    missing_sel = lay.D[:, s] == 0
    full = (lay.K[:, s] == lay.D[:, s]) & ~missing_sel
    for bad, what in ((missing_sel, "has no cell"), (full, "never failed")):
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"problem {lay.labels[i]!r}: {what} in selection condition {selection!r}"
            )


def latent_abilities(pm, pt, group: np.ndarray, Z: np.ndarray, n_groups: int):
    """u ~ Normal(0, 1) iid per problem, decomposed into independent pieces.

    For iid standard normals, the group means (``u_mean``, Normal(0, 1/n_g)),
    the projection on the group-centred features (``b``, Normal(0, (X'X)^-1)),
    the residual sum of squares (``u_ss``, chi-square with n - G - F degrees)
    and the residual's direction are independent. The likelihood sees u only
    through the standardised residual direction ``ustd``, the effective
    intercepts, loadings and feature coefficients; the location, scale and
    feature projection of u, which would otherwise form ridges with alpha, the
    loadings and gamma, are explicit low-dimensional parameters.

    Parameters
    ----------
    pm, pt : modules
        ``pymc`` and ``pytensor.tensor`` (called inside a model context).
    group : ndarray of int
        Centring group of each problem (all zeros without group effects).
    Z : ndarray
        Standardised features (problem, feature).
    n_groups : int
        Number of centring groups G.

    Returns
    -------
    tuple
        (ustd, u_scale, u_mean, b, group means of Z); records ``u`` itself.
    """
    n, F = Z.shape
    G = n_groups
    cg = group
    n_g = np.bincount(cg, minlength=G).astype(float)
    ind = np.zeros((n, G))
    ind[np.arange(n), cg] = 1.0
    zbar = (ind.T @ Z) / np.maximum(n_g, 1.0)[:, None]  # (G, F)
    xc = Z - zbar[cg]
    basis = np.column_stack([ind, xc])
    q, rdiag = np.linalg.qr(basis)
    rank = int(np.sum(np.abs(np.diag(rdiag)) > 1e-9 * max(1.0, np.abs(rdiag).max())))
    if rank < basis.shape[1]:
        raise DataError("features are collinear with the groups; drop or combine some")
    dof = n - rank
    if dof < 2:
        raise DataError(f"need more problems than groups + features + 1, got {n}")
    w = pm.Normal("u_direction", 0.0, 1.0, dims="problem")
    wr = w - pt.dot(q, pt.dot(q.T, w))
    ustd = wr / pt.sqrt(pt.mean(wr**2))
    u_mean = pm.Normal("u_mean", 0.0, 1.0 / np.sqrt(n_g), shape=G)
    u_ss = pm.ChiSquared("u_ss", nu=dof)
    u_scale = pm.Deterministic("u_scale", pt.sqrt(u_ss / n))
    if F:
        chol = np.linalg.cholesky(np.linalg.inv(xc.T @ xc))
        u_b = pm.Deterministic(
            "u_b", pt.dot(chol, pm.Normal("u_b_z", 0.0, 1.0, dims="feature")), dims="feature"
        )
        proj = pt.dot(xc, u_b)
    else:
        u_b, proj = pt.zeros(0), 0.0
    pm.Deterministic("u", u_mean[cg] + proj + u_scale * ustd, dims="problem")
    return ustd, u_scale, u_mean, u_b, zbar


def grouped_intercept(pm, name: str, prior, n_groups: int, multi_group: bool, group_sd: float):
    """(group, condition) intercept at the sample's mean ability: condition location
    plus pooled group offsets (``<name>_eff``); one shared value without group effects."""
    loc = pm.Normal(f"{name}_loc", *prior, dims="condition")
    dims = ("group", "condition")
    if not multi_group:
        return pm.Deterministic(f"{name}_eff", pm.math.stack([loc] * n_groups), dims=dims)
    sd = pm.HalfNormal(f"{name}_sd", group_sd)
    if name == "alpha":
        # centred: each group holds hundreds of failures, so its slab intercepts
        # are well identified and the non-centred form would make a ridge with
        # the location
        return pm.Normal(f"{name}_eff", loc[None, :], sd, dims=dims)
    # non-centred: the structural propensities are weakly identified (a zero
    # count fits the point mass or a small slab mean), and the centred funnel
    # with lam_sd gave ESS < 400 for lam_sd on the paper's table
    offset = pm.Normal(f"{name}_offset", 0.0, 1.0, dims=dims)
    return pm.Deterministic(f"{name}_eff", loc[None, :] + sd * offset, dims=dims)


def log_selection(pt, m_eta, m_zeta, loading, rho, kappa, N, node, logw):
    """log P(at least one failure in N rollouts) per row, integrated over u.

    ``E_u[1 - (1 - pi) E(p^N | u)]`` by Gauss-Hermite quadrature (``node``, log
    weights ``logw``) with ``logit mu = m_eta + loading u``, ``logit pi = m_zeta - rho
    u`` and slab concentration ``kappa``; ``N`` holds each row's rollout count.
    """
    Nr = N.astype(float)[:, None]
    eta_q = m_eta[:, None] + loading * node[None, :]
    zeta_q = m_zeta[:, None] - rho * node[None, :]
    aq = kappa * pt.sigmoid(eta_q)
    # log E[p^N] = log B(a + N, b) - log B(a, b), with a + b = kappa
    log_pn = pt.gammaln(aq + Nr) - pt.gammaln(aq) - pt.gammaln(kappa + Nr) + pt.gammaln(kappa)
    log_all_succeed = -pt.softplus(zeta_q) + log_pn
    return pt.logsumexp(logw[None, :] + pt.log1mexp(log_all_succeed), axis=1)


def condition_hyper(dr: dict, g: np.ndarray, Z: np.ndarray, u: np.ndarray, c: np.ndarray):
    """pi, a, b of shape (S, n) for units (group index ``g``, standardised features
    ``Z``) at latent ``u`` (S, n) under condition indices ``c`` (n,)."""
    eta = dr["alpha"][:, g, c] + dr["loading"][:, c] * u
    zeta = dr["lam"][:, g, c] - dr["rho"][:, None] * u
    eta = eta + np.einsum("nf,snf->sn", Z, dr["gamma"][:, c, :])
    zeta = zeta + np.einsum("nf,snf->sn", Z, dr["delta"][:, c, :])
    kappa = np.exp(dr["log_kappa"][:, c])
    a = np.maximum(kappa * expit(eta), 1e-300)
    b = np.maximum(kappa * expit(-eta), 1e-300)
    return expit(zeta), a, b
