"""Prospective routing of new failures known by their features (and some outcomes).

u is integrated by Gauss-Hermite quadrature over the population of *selected*
failures of the failure's group; a group unseen in training draws its intercepts
from the fitted population of groups. Re-exported by :mod:`bayes_regimes.routing`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from bayes_regimes import closed_form as cf
from bayes_regimes.errors import DataError
from bayes_regimes.queries import CI_PROB
from bayes_regimes.routing_posterior import _CHUNK, _cell_posterior, _codes, _frame, _thin

if TYPE_CHECKING:
    from bayes_regimes.models.interventions import InterventionModel

__all__ = ["new_posterior_blocks", "route_new"]


def _new_draws(model: InterventionModel, dr: dict, groups: np.ndarray, rng) -> tuple:
    """Group indices of new failures; unseen groups get offsets drawn from the population."""
    known = model.layout.groups
    idx = np.array([known.index(g) if g in known else -1 for g in groups], dtype=np.int64)
    if (idx >= 0).all() or not model._multi_group:
        return dr, np.where(idx >= 0, idx, 0)
    post = model.posterior
    dr = dict(dr)
    nd = dr["alpha"].shape[0]

    def flat(name, *dims):
        return post[name].transpose("chain", "draw", *dims).values.reshape(nd, -1)

    # a new group's effective intercepts come from the fitted population of groups;
    # the shift to the intercept at u = 0 is the training groups' average shift
    for name in ("alpha", "lam"):
        loc, sd = flat(f"{name}_loc", "condition"), flat(f"{name}_sd")
        true = post[name].transpose("chain", "draw", "group", "condition").values
        eff = post[f"{name}_eff"].transpose("chain", "draw", "group", "condition").values
        shift = (true - eff).reshape(nd, *true.shape[2:]).mean(axis=1)
        new = loc + sd * rng.standard_normal(loc.shape) + shift
        dr[name] = np.concatenate([dr[name], new[:, None, :]], axis=1)
    return dr, np.where(idx >= 0, idx, len(known))


def route_new(
    model: InterventionModel,
    new: pd.DataFrame,
    costs: Mapping[str, float] | None = None,
    *,
    observed: pd.DataFrame | None = None,
    selection_rollouts: int | None = None,
    n_nodes: int = 40,
    n_samples: int = 4,
    max_draws: int | None = 1000,
    ci_prob: float = CI_PROB,
    random_seed: int = 0,
) -> pd.DataFrame:
    """Prospective routing of new failures from their features.

    Parameters
    ----------
    model : InterventionModel
        A fitted model.
    new : pandas.DataFrame
        One row per new failure with the model's feature columns; optional
        ``problem`` (or ``problem_id``) and ``group`` columns. A group unseen in
        training gets intercepts drawn from the fitted population of groups, and
        its features are z-scored among its rows of ``new``
        (:meth:`InterventionModel.standardise`).
    costs : dict, optional
        As in :func:`route_fitted`.
    observed : pandas.DataFrame, optional
        Outcomes already seen for the new failures: columns row (0-based position
        in ``new``), condition, n, k. They update the failure's u and, for their
        own condition, its p.
    selection_rollouts : int, optional
        With a selection condition not in ``observed``: rollouts N the new failure
        was selected from (failed at least once of N); default the median over the
        training failures of its group (of all groups for an unseen one).
    n_nodes : int
        Gauss-Hermite nodes over the new failure's u.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`route_fitted`, one row per row of ``new``.

    Examples
    --------
    >>> new = pd.DataFrame({"problem": ["a", "b"], "x0": [-1.0, 2.0]})
    >>> route_new(model, new)[["problem", "recommended"]]  # doctest: +SKIP
    """
    lay, cfg = model.layout, model.config
    feats = cfg["features"]
    miss = [f for f in feats if f not in new.columns]
    if miss:
        raise DataError(f"new failures: missing feature column(s) {miss}")
    X = new[feats].to_numpy(dtype=float) if feats else np.zeros((len(new), 0))
    if not np.all(np.isfinite(X)):
        row = int(np.argmax(~np.all(np.isfinite(X), axis=1)))
        raise DataError(f"new failures, row {row}: missing or non-finite feature value")
    pcol = "problem" if "problem" in new.columns else "problem_id"
    problem = new[pcol].astype(str).to_numpy() if pcol in new.columns else np.arange(len(new))
    groups = (
        new["group"].astype(str).to_numpy()
        if "group" in new.columns
        else np.full(len(new), lay.groups[0], dtype=object)
    )
    Z = model.standardise(X, groups)
    C, conds = len(model.conditions), model.conditions
    K = np.zeros((len(new), C), np.int64)
    D = np.zeros((len(new), C), np.int64)
    if observed is not None:
        for i, row in enumerate(observed.itertuples(index=False)):
            j, c = int(row.row), str(row.condition)
            if c not in conds or not 0 <= j < len(new) or not 0 <= row.k <= row.n:
                raise DataError(f"observed, row {i}: bad row/condition/counts {tuple(row)!r}")
            K[j, conds.index(c)], D[j, conds.index(c)] = int(row.k), int(row.n)
    sel = conds.index(cfg["selection"]) if cfg["selection"] else None
    N_new = np.zeros(len(new), np.int64)
    if sel is not None:
        med = {g: int(np.median(lay.D[lay.group == j, sel])) for j, g in enumerate(lay.groups)}
        fallback = int(np.median(lay.D[:, sel]))
        N_new = np.array(
            [selection_rollouts or med.get(g, fallback) for g in groups], dtype=np.int64
        )
    rng = np.random.default_rng(random_seed)
    dr, gidx = _new_draws(model, model.draws(), groups, rng)
    dr = _thin(dr, max_draws)
    node = model._nodes(n_nodes)[0]
    nd, n_cand = dr["loading"].shape[0], len(model.candidates)
    res, codes = [], []
    for un, rescue, W, _ in new_posterior_blocks(model, dr, gidx, Z, K, D, N_new, n_nodes):
        n = un.size
        res.append(rescue[..., :n_cand])
        p = np.empty((n_samples, nd, n, C))
        cum = np.cumsum(W, axis=-1)
        for m in range(n_samples):
            qi = np.minimum((rng.random((nd, n, 1)) > cum).sum(axis=-1), node.size - 1)
            u_m = node[qi]
            for c in range(C):
                cc = np.full(n, c)
                pi_c, a_c, b_c = model.hyper(dr, gidx[un], Z[un], u_m, cc)
                r_c = np.full(n, model.r[c])
                *_, smp = _cell_posterior(K[un, c], D[un, c], r_c, pi_c, a_c, b_c, 0.5, rng, 1)
                p[m, :, :, c] = smp[0]
        codes.append(_codes(model, p[..., :n_cand]))
    return _frame(
        model,
        problem,
        groups,
        np.concatenate(res, axis=1),
        np.concatenate(codes, axis=2),
        costs,
        ci_prob,
    )


def new_posterior_blocks(
    model: InterventionModel,
    dr: dict,
    gidx: np.ndarray,
    Z: np.ndarray,
    K: np.ndarray,
    D: np.ndarray,
    N_new: np.ndarray,
    n_nodes: int = 40,
    centre: np.ndarray | None = None,
    scale: np.ndarray | None = None,
):
    """Per draw, for failures known by features and optional outcomes, in blocks.

    The failure's u is integrated by Gauss-Hermite quadrature over its prior,
    weighted by the likelihood of its observed cells (``K``, ``D``: (n, C), D = 0
    where unobserved) and, when the selection condition is unobserved, by the
    probability of being selected (at least one failure of ``N_new`` rollouts).

    Yields
    ------
    (units, rescue, W, log_evidence)
        ``rescue`` (S, n, C): expected rescue of every condition given the draw;
        ``W`` (S, n, Q): posterior weights of the quadrature nodes;
        ``log_evidence`` (S, n): log of the integral of prior x likelihood (x the
        selection probability when the selection condition is unobserved); with
        no observed cell it is the log probability of being selected (0 without
        a selection condition).

    With ``centre`` and ``scale`` (n,), the nodes of failure i are
    ``centre_i + scale_i * x`` (adaptive Gauss-Hermite: accurate when many observed
    cells make the likelihood of u sharp, e.g. centred on a fitted failure's
    posterior mean of u); the weights carry the prior density ratio.
    """
    cfg, C = model.config, len(model.conditions)
    sel = model.conditions.index(cfg["selection"]) if cfg["selection"] else None
    node, logw = model._nodes(n_nodes)
    Q, nd = node.size, dr["loading"].shape[0]
    step = max(1, _CHUNK // (nd * C * Q))
    for lo in range(0, len(gidx), step):
        un = np.arange(lo, min(lo + step, len(gidx)))
        n = un.size
        iu = np.repeat(un, Q * C)
        iq = np.tile(np.repeat(np.arange(Q), C), n)
        ic = np.tile(np.arange(C), n * Q)
        lw = np.broadcast_to(logw, (n, Q))
        if centre is None:
            u = np.broadcast_to(node[iq], (nd, iu.size))
        else:
            uq = centre[un][:, None] + scale[un][:, None] * node[None, :]  # (n, Q)
            lw = lw + np.log(scale[un])[:, None] - 0.5 * (uq**2 - node[None, :] ** 2)
            u = np.broadcast_to(np.repeat(uq.ravel(), C), (nd, iu.size))
        pi, a, b = model.hyper(dr, gidx[iu], Z[iu], u, ic)
        rescue, _, logml, _ = _cell_posterior(K[iu, ic], D[iu, ic], model.r[ic], pi, a, b, 0.5)
        logW = lw[None] + logml.reshape(nd, n, Q, C).sum(axis=-1)
        if sel is not None:
            need = D[un, sel] == 0
            if need.any():
                m = np.flatnonzero(np.isin(iu, un[need]) & (ic == sel))
                Nm = N_new[iu[m]]
                _, _, lfull, _ = _cell_posterior(
                    Nm, Nm, np.ones(m.size, np.int64), pi[:, m], a[:, m], b[:, m], 0.5
                )
                trunc = cf._log1mexp(np.minimum(lfull, 0.0)).reshape(nd, -1, Q)
                logW[:, need] += trunc
        log_ev = logsumexp(logW, axis=-1)
        W = np.exp(logW - log_ev[..., None])  # (S, n, Q)
        rescue = np.einsum("snq,snqc->snc", W, rescue.reshape(nd, n, Q, C))
        yield un, rescue, W, log_ev
