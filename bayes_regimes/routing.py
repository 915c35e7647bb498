"""Routing failures to interventions from a fitted :class:`InterventionModel`.

Given a posterior draw and a failure's latent ability ``u``, the success
probability p under each condition is a zero-inflated Beta mixture (its
best-of-r outcome integrated exactly, see :mod:`bayes_regimes.closed_form`).
Everything here evaluates that conditional posterior per (draw, failure,
condition), then averages over draws:

* **expected rescue** of a condition: ``E[1 - (1 - p)^r]``, the probability that
  one fresh repair context (r attempts) is rescued, the quantity the paper's
  rates estimate;
* **regimes** (latent version of the paper's Eq. 2, with q the rescue probability
  of a condition and ``best`` the largest q over the interventions, baseline
  excluded): *steerable* if ``best - q_baseline >= tau_steer`` and
  ``1 - q_baseline >= tau_hard``; *beyond reach* if not steerable and every
  intervention has ``p < epsilon``; *resample* otherwise. Their probabilities are
  Monte Carlo averages over joint draws of all conditions' p (conditionally
  independent given u), so they sum to one;
* the **recommendation**: the condition with the largest expected rescue per unit
  cost.

:func:`route_new` does the same for new failures known only by their features
(and optionally some outcomes), integrating u by Gauss-Hermite quadrature over
the population of *selected* failures.

The paper's failure profiles become condition cells with
:func:`profiles_to_counts` (in :mod:`bayes_regimes.routing_input`, re-exported).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import betainc, logsumexp

from bayes_regimes import closed_form as cf
from bayes_regimes import paper
from bayes_regimes.diagnostics import tag
from bayes_regimes.errors import DataError
from bayes_regimes.queries import CI_PROB, summarise_draws
from bayes_regimes.routing_input import profiles_to_counts, read_route_input, total_rollouts

if TYPE_CHECKING:
    from bayes_regimes.models.interventions import InterventionModel

__all__ = [
    "REGIME_COLUMNS",
    "latent_regimes",
    "new_posterior_blocks",
    "profiles_to_counts",
    "read_route_input",
    "regime_fractions",
    "route_fitted",
    "route_new",
    "total_rollouts",
]

REGIME_COLUMNS = ("p_resample", "p_steerable", "p_beyond_reach")
_CHUNK = 300_000  # draws x cells per block


# ---------------------------------------------------------- conditional posteriors of p
def _cell_posterior(K, D, r, pi, a, b, eps, rng=None, n_samples=0, r_rescue=None):
    """Per (draw, cell): rescue E[1-(1-p)^m], P(p < eps), log P(data), samples of p.

    ``K, D, r`` have shape (n,), ``pi, a, b`` shape (S, n); D = 0 means no data (the
    posterior is the prior). The rescue uses m = ``r_rescue`` attempts (default r).
    """
    r_rescue = r if r_rescue is None else np.broadcast_to(r_rescue, np.shape(K))
    nd, n = a.shape
    rescue, below, logml = (np.empty((nd, n)) for _ in range(3))
    samples = np.empty((n_samples, nd, n))
    keys = np.stack([K, D, r, r_rescue], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    for gi, (kk, dd, rr, mm) in enumerate(uniq.tolist()):
        sel = np.flatnonzero(inv == gi)
        A, B, P = a[:, sel], b[:, sel], pi[:, sel]
        logc = cf._log_window_coefs(kk, rr)
        t = (rr * (dd - kk) + np.arange(logc.size, dtype=float))[:, None, None]
        terms = logc[:, None, None] + cf._log_beta_shift(A[None], B[None], float(kk), t)
        lse = logsumexp(terms, axis=0)
        mix = np.exp(terms - lse)  # (T, S, n) component weights
        x, y = A[None] + kk, B[None] + t
        with np.errstate(divide="ignore"):
            log_pi, log_1m = np.log(P), np.log1p(-P)
        slab = lse + float(cf.log_binom(dd, kk))
        if kk == 0:
            logml[:, sel] = np.logaddexp(log_pi, log_1m + slab)
            w = np.exp(log_pi - logml[:, sel])
        else:
            logml[:, sel] = log_1m + slab
            w = np.zeros_like(A)
        none = np.sum(mix * np.exp(cf._log_beta_ratio(x, y, float(mm))), axis=0)
        rescue[:, sel] = (1.0 - w) * (1.0 - none)
        below[:, sel] = w + (1.0 - w) * np.sum(mix * betainc(x, y, eps), axis=0)
        for m in range(n_samples):
            u = rng.random(A.shape)
            comp = np.zeros(A.shape, np.int64)
            acc = np.zeros(A.shape)
            for s in range(logc.size - 1):
                acc += mix[s]
                comp += u > acc
            p = rng.beta(A + kk, B + rr * (dd - kk) + comp)
            samples[m][:, sel] = np.where(rng.random(A.shape) < w, 0.0, p)
    return rescue, below, logml, samples


def latent_regimes(q, p, eps: float, tau_steer: float = 0.05, tau_hard: float = 0.5):
    """Regime codes (0 resample, 1 steerable, 2 beyond reach) from joint draws.

    Parameters
    ----------
    q, p : numpy.ndarray
        Rescue probabilities and per-attempt p, last axis = candidates with the
        baseline first.

    Examples
    --------
    >>> q = np.array([[0.2, 0.3], [0.6, 0.9], [0.0, 0.0005]])
    >>> latent_regimes(q, q, eps=1e-3).tolist()
    [1, 0, 2]
    """
    base, best = q[..., 0], q[..., 1:].max(axis=-1)
    steer = ((best - base) >= tau_steer) & ((1.0 - base) >= tau_hard)
    beyond = ~steer & np.all(p[..., 1:] < eps, axis=-1)
    return np.where(steer, 1, np.where(beyond, 2, 0))


def _thin(dr: dict, max_draws: int | None) -> dict:
    nd = dr["loading"].shape[0]
    if max_draws is None or nd <= max_draws:
        return dr
    idx = np.linspace(0, nd - 1, max_draws).round().astype(int)
    return {k: v[idx] for k, v in dr.items()}


def _unit_blocks(model: InterventionModel, dr: dict, units: np.ndarray, rng, n_samples: int):
    """Yield (units, rescue (S, n, Ccand), codes (M, S, n)) for fitted units, in blocks."""
    lay, C = model.layout, len(model.conditions)
    cand = np.arange(len(model.candidates))
    nd = dr["u"].shape[0]
    step = max(1, _CHUNK // (nd * C))
    for lo in range(0, units.size, step):
        un = units[lo : lo + step]
        iu, ic = np.repeat(un, C), np.tile(np.arange(C), un.size)
        pi, a, b = model._cell_hyper(dr, iu, ic)
        rescue, _, _, smp = _cell_posterior(
            lay.K[iu, ic],
            lay.D[iu, ic],
            model.r[ic],
            pi,
            a,
            b,
            model.config["epsilon"],
            rng,
            n_samples,
        )
        rescue = rescue.reshape(nd, un.size, C)[..., cand]
        p = smp.reshape(n_samples, nd, un.size, C)[..., cand]
        yield un, rescue, _codes(model, p)


def _codes(model: InterventionModel, p: np.ndarray) -> np.ndarray:
    cfg = model.config
    r = model.r[: len(model.candidates)]
    with np.errstate(divide="ignore"):  # p = 1 gives q = 1
        q = -np.expm1(r * np.log1p(-np.minimum(p, 1.0)))
    return latent_regimes(q, p, cfg["epsilon"], cfg["tau_steer"], cfg["tau_hard"])


def _frame(model, problem, group, rescue, codes, costs, ci_prob) -> pd.DataFrame:
    out = pd.DataFrame({"problem": problem, "group": group})
    probs = np.stack([(codes == j).mean(axis=(0, 1)) for j in range(3)], axis=1)
    for j, col in enumerate(REGIME_COLUMNS):
        out[col] = probs[:, j]
    out["regime"] = np.array(paper.REGIMES, dtype=object)[np.argmax(probs, axis=1)]
    cands = model.candidates
    cost_map = dict(model.config["costs"]) if costs is None else {**model.config["costs"], **costs}
    unknown = set(cost_map) - set(model.conditions)
    if unknown:
        raise ValueError(f"costs for unknown condition(s) {sorted(unknown)}")
    mean, low, high = summarise_draws(rescue, ci_prob)
    for j, c in enumerate(cands):
        out[f"rescue_{c}"], out[f"rescue_{c}_low"], out[f"rescue_{c}_high"] = (
            mean[:, j],
            low[:, j],
            high[:, j],
        )
    cost = np.array([cost_map[c] for c in cands], dtype=float)
    if np.any(~(cost > 0)):
        raise ValueError("costs must be positive")
    best = np.argmax(mean / cost, axis=1)
    out["recommended"] = np.array(cands, dtype=object)[best]
    out["recommended_rescue"] = mean[np.arange(len(out)), best]
    out["recommended_cost"] = cost[best]
    out.attrs.update(ci_prob=ci_prob, costs={c: float(cost_map[c]) for c in cands})
    return tag(out, model.diagnostics())


def route_fitted(
    model: InterventionModel,
    costs: Mapping[str, float] | None = None,
    *,
    n_samples: int = 4,
    max_draws: int | None = 1000,
    ci_prob: float = CI_PROB,
    random_seed: int = 0,
) -> pd.DataFrame:
    """Per failure of the fitted data: regime probabilities, rescue, recommendation.

    Parameters
    ----------
    model : InterventionModel
        A fitted model.
    costs : dict, optional
        Cost per trial of each condition (default: the model's ``costs``, 1 each);
        the recommendation maximises expected rescue per unit cost.
    n_samples : int
        Joint draws of p per posterior draw for the regime probabilities.
    max_draws : int, optional
        Thin the posterior to at most this many draws (evenly spaced).
    ci_prob : float
        Mass of the equal-tailed intervals of the expected rescue over draws.
    random_seed : int
        Seed of the Monte Carlo draws.

    Returns
    -------
    pandas.DataFrame
        One row per failure (units in first-appearance order): problem, group,
        p_resample, p_steerable, p_beyond_reach (they sum to 1), regime (most
        probable), ``rescue_<c>``, ``rescue_<c>_low``, ``rescue_<c>_high`` per
        candidate condition c (baseline first), recommended, recommended_rescue,
        recommended_cost.

    Examples
    --------
    >>> from bayes_regimes.data import RolloutData
    >>> from bayes_regimes.models.interventions import InterventionModel, simulate_interventions
    >>> counts, _ = simulate_interventions(n_problems=60, random_seed=1)
    >>> data = RolloutData.from_counts(counts, condition="condition", features=["x0"])
    >>> model = InterventionModel(data, attempts=3)
    >>> _ = model.fit(draws=200, tune=200, chains=2, progressbar=False)  # doctest: +SKIP
    >>> routes = route_fitted(model, costs={"steer": 2.0})  # doctest: +SKIP
    >>> routes[["problem", "p_steerable", "recommended"]].head()  # doctest: +SKIP
    """
    lay = model.layout
    dr = _thin(model.draws(), max_draws)
    rng = np.random.default_rng(random_seed)
    units = np.arange(lay.n_units)
    res, codes = [], []
    for _, rescue, code in _unit_blocks(model, dr, units, rng, n_samples):
        res.append(rescue)
        codes.append(code)
    return _frame(
        model,
        lay.problem,
        lay.group_label,
        np.concatenate(res, axis=1),
        np.concatenate(codes, axis=2),
        costs,
        ci_prob,
    )


def regime_fractions(
    model: InterventionModel,
    by: Mapping[str, str] | None = None,
    *,
    n_samples: int = 4,
    max_draws: int | None = 1000,
    ci_prob: float = CI_PROB,
    random_seed: int = 0,
) -> pd.DataFrame:
    """Posterior of the share of failures in each regime, per group and overall.

    Parameters
    ----------
    by : dict, optional
        Group label -> reporting label (e.g. cell -> post-training method); default
        each group on its own. A row ``"all"`` (every failure) is added.

    Returns
    -------
    pandas.DataFrame
        by, regime, n (failures), mean, low, high (equal-tailed ``ci_prob``
        interval over joint posterior draws of every failure's regime).

    Examples
    --------
    >>> fractions = regime_fractions(model, by={"sft|gsm8k": "SFT"})  # doctest: +SKIP
    """
    lay = model.layout
    mapping = {g: g for g in lay.groups} if by is None else dict(by)
    missing = set(lay.groups) - set(mapping)
    if missing:
        raise ValueError(f"by: no label for group(s) {sorted(missing)}")
    labels = list(dict.fromkeys(mapping[g] for g in lay.groups))
    unit_label = np.array([labels.index(mapping[g]) for g in lay.group_label])
    dr = _thin(model.draws(), max_draws)
    rng = np.random.default_rng(random_seed)
    L = len(labels)
    total = L > 1 or labels[0] != "all"  # add an "all" row unless it is the only group
    counts = np.zeros((n_samples, dr["u"].shape[0], L + 1, 3))
    for un, _, code in _unit_blocks(model, dr, np.arange(lay.n_units), rng, n_samples):
        for j in range(3):
            hit = (code == j).astype(float)
            for li in range(L):
                counts[:, :, li, j] += hit[..., unit_label[un] == li].sum(axis=-1)
            counts[:, :, L, j] += hit.sum(axis=-1)
    sizes = np.array([np.sum(unit_label == li) for li in range(L)] + [lay.n_units])
    frac = (counts / sizes[None, None, :, None]).reshape(-1, L + 1, 3)
    mean, low, high = summarise_draws(frac, ci_prob)
    rows = []
    for li, lab in enumerate([*labels, "all"][: L + total]):
        for j, regime in enumerate(paper.REGIMES):
            rows.append((lab, regime, int(sizes[li]), mean[li, j], low[li, j], high[li, j]))
    out = pd.DataFrame(rows, columns=["by", "regime", "n", "mean", "low", "high"])
    return tag(out, model.diagnostics())


# ------------------------------------------------------------------ new failures
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
