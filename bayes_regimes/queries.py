"""Posterior queries, computed exactly from hyper-parameter draws.

Given one draw of a pattern's hyper-parameters (pi, a, b), the posterior of p for a
cell with k successes in n rollouts is a point mass at zero with weight w plus
Beta(a + k, b + n - k) (see ``closed_form``). Every query below evaluates those
closed forms per (draw, pattern), summarises over draws, and broadcasts the result
to cells. Nothing is ever held per cell x draw: patterns are processed in chunks so
that at most ``MAX_ELEMENTS`` draw x pattern values exist at a time.

The models supply a :class:`PatternPosterior`: the draws of (pi, a, b) for any
subset of patterns. With another slab family (``PatternPosterior.slab``, see
:mod:`bayes_regimes.slabs`) the draws are ``(pi, *theta)`` and the same queries use
that slab's closed forms; the Beta slab's are those of ``closed_form`` exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from bayes_regimes import closed_form as cf
from bayes_regimes import slabs as sl

CI_PROB = 0.89
MAX_ELEMENTS = 2_000_000
PASS_AT_K_KINDS = ("fresh_run", "solved_after_more", "new_problem")
REGIME_LABELS = ("solved", "structural", "recoverable", "uncertain")


@dataclass(frozen=True)
class PatternPosterior:
    """Hyper-parameter draws per sufficient-statistic pattern.

    Attributes
    ----------
    n, k, count, stratum : numpy.ndarray
        Per pattern: rollouts, successes, number of cells, stratum index.
    hyper : callable
        ``hyper(idx) -> (pi, a, b)``, each of shape (draws, len(idx)).
    population : callable
        ``population() -> (pi, a, b)``, each of shape (draws, n_strata): the
        stratum-level prior of a new problem.
    strata : list of str
        Stratum labels.
    population_weights : numpy.ndarray, optional
        When given, ``population()`` arrays carry a trailing axis of mixture nodes
        with these weights (a population that is a mixture of zero-inflated betas,
        as in the crossed model); population queries average over it.
    slab : bayes_regimes.slabs.Slab, optional
        The slab family of p. None (the default) is the Beta slab, and ``hyper`` /
        ``population`` return ``(pi, a, b)``; otherwise they return ``(pi, *theta)``
        with the slab's parameters (see :mod:`bayes_regimes.slabs`).
    """

    n: np.ndarray
    k: np.ndarray
    count: np.ndarray
    stratum: np.ndarray
    hyper: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    population: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]
    strata: list[str]
    n_draws: int
    population_weights: np.ndarray | None = None
    slab: sl.Slab | None = None

    def chunks(self, idx: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Pattern indices in chunks that keep draws x chunk <= MAX_ELEMENTS."""
        idx = np.arange(len(self.n)) if idx is None else np.asarray(idx)
        step = max(1, MAX_ELEMENTS // max(self.n_draws, 1))
        for start in range(0, len(idx), step):
            yield idx[start : start + step]


def population_expect(post: PatternPosterior, fn: Callable) -> np.ndarray:
    """``fn(pi, a, b)`` of the population, averaged over mixture nodes if any."""
    pi, a, b = post.population()
    w = post.population_weights
    if w is None:
        return fn(pi, a, b)
    return sum(wj * fn(pi[..., j], a[..., j], b[..., j]) for j, wj in enumerate(w))


def slab_of(post: PatternPosterior) -> sl.Slab:
    """The slab family of a pattern posterior (Beta when none is set)."""
    return sl.BetaSlab() if post.slab is None else post.slab


def _bounds(ci_prob: float) -> tuple[float, float]:
    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
    return (1 - ci_prob) / 2, (1 + ci_prob) / 2


def pattern_regimes(
    post: PatternPosterior,
    epsilon: float,
    *,
    ci_prob: float = CI_PROB,
    random_seed: int | None = 0,
) -> pd.DataFrame:
    """Per-pattern posterior summaries of p.

    Columns: ``p_mean`` (exact), ``p_low``/``p_high`` (equal-tailed interval of the
    marginal posterior of p, from one exact posterior draw of p per hyper-parameter
    draw), ``p_zero`` (mass of the point at zero), ``p_structural`` = P(p < epsilon),
    and ``p_fail_budget`` = P(no success in 1/epsilon more attempts).
    """
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    lo, hi = _bounds(ci_prob)
    budget = np.ceil(1.0 / epsilon)
    rng = np.random.default_rng(random_seed)
    out = {
        c: np.empty(len(post.n))
        for c in ("p_mean", "p_low", "p_high", "p_zero", "p_structural", "p_fail_budget")
    }
    for idx in post.chunks():
        c = _Chunk(post, idx)
        out["p_zero"][idx] = c.w.mean(axis=0)
        out["p_mean"][idx] = c.slab.posterior_mean_p(c.k, c.n, c.pi, *c.theta).mean(axis=0)
        below = c.slab.prob_below(epsilon, c.k, c.n, c.pi, *c.theta)
        out["p_structural"][idx] = below.mean(axis=0)
        out["p_fail_budget"][idx] = 1 - c.gain(budget).mean(axis=0)
        # One draw of p per hyper-parameter draw: point mass or the slab's posterior.
        p = c.slab.sample_slab_p(rng, c.k, c.n, *c.theta)
        p = np.where(rng.random(p.shape) < c.w, 0.0, p)
        q = np.quantile(p, [lo, hi], axis=0)
        out["p_low"][idx], out["p_high"][idx] = q[0], q[1]
    return pd.DataFrame(out)


def label_regimes(
    k: np.ndarray, p_structural: np.ndarray, threshold: float
) -> pd.api.extensions.ExtensionArray:
    """Regime labels: solved (k > 0), structural, recoverable or uncertain.

    A failure is *structural* when P(p < epsilon) >= threshold, *recoverable* when
    P(p >= epsilon) >= threshold, and *uncertain* otherwise. Returned as a pandas
    string array (built by index, so 10^6 labels cost milliseconds).

    Examples
    --------
    >>> label_regimes(np.array([2, 0, 0, 0]), np.array([0.0, 0.95, 0.01, 0.5]), 0.9).tolist()
    ['solved', 'structural', 'recoverable', 'uncertain']
    """
    if not 0.5 < threshold < 1:
        raise ValueError(f"threshold must be in (0.5, 1), got {threshold}")
    conditions = [k > 0, p_structural >= threshold, p_structural <= 1 - threshold]
    return pd.array(REGIME_LABELS, dtype="str").take(np.select(conditions, [0, 1, 2], 3))


class _Chunk:
    """One chunk of patterns: hyper-parameter draws and the structural weights.

    The weight w = P(structural | k of n) is zero whenever k > 0, so it is evaluated
    only on the chunk's k = 0 patterns, once, and shared by every query on the chunk.
    """

    def __init__(self, post: PatternPosterior, idx: np.ndarray) -> None:
        self.slab = slab_of(post)
        self.k, self.n = post.k[idx], post.n[idx]
        self.pi, *theta = post.hyper(idx)
        self.theta = tuple(theta)
        self.w, self.one_m_w = np.zeros(self.pi.shape), np.ones(self.pi.shape)
        zero = np.flatnonzero(self.k == 0)
        if zero.size:
            th = (t[:, zero] for t in self.theta)
            log_w, log_1mw = self.slab._log_weights(0, self.n[zero], self.pi[:, zero], *th)
            self.w[:, zero], self.one_m_w[:, zero] = np.exp(log_w), np.exp(log_1mw)

    def gain(self, m: np.ndarray | int) -> np.ndarray:
        """G(m | theta) per (draw, pattern): the slab's ``expected_gain``, term for term."""
        log_none = self.slab.log_no_success(self.k, self.n, m, *self.theta)
        return self.one_m_w * cf._one_minus_exp(log_none)


def gain_draws(post: PatternPosterior, idx: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Conditional gain G(m | theta) per draw for patterns ``idx``: (draws, len(idx))."""
    return _Chunk(post, np.asarray(idx)).gain(m)


def pattern_gain(
    post: PatternPosterior, pairs_pattern: np.ndarray, pairs_m: np.ndarray, ci_prob: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and interval over draws of G(m) for (pattern, m) pairs."""
    lo, hi = _bounds(ci_prob)
    mean = np.empty(len(pairs_pattern))
    low, high = np.empty_like(mean), np.empty_like(mean)
    for sel in post.chunks(np.arange(len(pairs_pattern))):
        g = gain_draws(post, pairs_pattern[sel], pairs_m[sel])
        mean[sel] = g.mean(axis=0)
        q = np.quantile(g, [lo, hi], axis=0)
        low[sel], high[sel] = q[0], q[1]
    return mean, low, high


def pattern_gain_draws(
    post: PatternPosterior, pairs_pattern: np.ndarray, pairs_m: np.ndarray
) -> np.ndarray:
    """G(m) per draw for (pattern, m) pairs, shape (draws, pairs)."""
    return gain_draws(post, pairs_pattern, pairs_m)


def _stratum_sums(post: PatternPosterior, values: Callable[[np.ndarray], list]) -> list:
    """Per draw, the cell-weighted means over each stratum's patterns of several values.

    ``values(idx)`` returns a list of (draws, len(idx)) arrays for the patterns ``idx``;
    the result is the list of their (draws, strata) cell-weighted means.
    """
    n_strata = len(post.strata)
    cells = np.bincount(post.stratum, weights=post.count, minlength=n_strata)
    totals: list = []
    for idx in post.chunks():
        # count x one-hot stratum: sums a chunk's weighted values into their strata.
        weights = post.count[idx, None] * (post.stratum[idx, None] == np.arange(n_strata))
        parts = [v @ weights for v in values(idx)]
        totals = parts if not totals else [t + v for t, v in zip(totals, parts, strict=True)]
    return [t / cells for t in totals]


def _stratum_average(post: PatternPosterior, values: Callable[[np.ndarray], np.ndarray]):
    """Per draw, the cell-weighted mean over each stratum's patterns: (draws, strata)."""
    return _stratum_sums(post, lambda idx: [values(idx)])[0]


def pass_at_k_all(
    post: PatternPosterior, ks, kinds: tuple[str, ...] = PASS_AT_K_KINDS
) -> dict[tuple[str, int], np.ndarray]:
    """Per-draw pass@k per stratum, (draws, strata), for every (kind, k) pair.

    kinds
    -----
    fresh_run
        Expected fraction of these problems solved by a fresh run of k attempts.
    solved_after_more
        Fraction of these problems solved after k more attempts (solved cells stay
        solved).
    new_problem
        pass@k of a new problem from the stratum's population.

    The gain draws G(k) per (draw, pattern) are computed once per k and shared by
    the first two kinds; the structural weights once for all k.
    """
    unknown = [kind for kind in kinds if kind not in PASS_AT_K_KINDS]
    if unknown:
        raise ValueError(
            f"unknown pass@k kind {unknown[0]!r}; choose from {', '.join(PASS_AT_K_KINDS)}"
        )
    ks = [int(k) for k in np.atleast_1d(ks)]
    on_cells = [kind for kind in PASS_AT_K_KINDS[:2] if kind in kinds]

    def per_cell(idx: np.ndarray) -> list:
        chunk, out = _Chunk(post, idx), []
        for k in ks:
            g = chunk.gain(k)
            out += [
                g if kind == "fresh_run" else np.where(chunk.k > 0, 1.0, g) for kind in on_cells
            ]
        return out

    draws = iter(_stratum_sums(post, per_cell) if on_cells else [])
    result = {(kind, k): next(draws) for k in ks for kind in on_cells}
    if "new_problem" in kinds:
        slab = slab_of(post)
        for k in ks:
            result["new_problem", k] = population_expect(
                post, lambda pi, *th, k=k: slab.pass_at_k_new_problem(k, pi, *th)
            )
    return result


def pass_at_k_draws(post: PatternPosterior, k: int, kind: str) -> np.ndarray:
    """Per-draw pass@k of one ``kind`` (see :func:`pass_at_k_all`) per stratum."""
    return pass_at_k_all(post, [k], (kind,))[kind, int(k)]


def pass_at_k_summary(
    post: PatternPosterior,
    ks,
    kinds: tuple[str, ...] = PASS_AT_K_KINDS,
    ci_prob: float = CI_PROB,
) -> pd.DataFrame:
    """Tidy pass@k table (group, k, kind, mean, low, high), kind by kind, k by k.

    The table of :meth:`bayes_regimes.RegimeModel.pass_at_k`, whose tests check it
    against the closed forms cell by cell.
    """
    draws = pass_at_k_all(post, ks, kinds)
    rows = []
    for kind in kinds:
        for k in np.atleast_1d(ks).astype(np.int64):
            mean, low, high = summarise_draws(draws[kind, int(k)], ci_prob)
            rows += [(g, int(k), kind, mean[i], low[i], high[i]) for i, g in enumerate(post.strata)]
    return pd.DataFrame(rows, columns=["group", "k", "kind", "mean", "low", "high"])


def coverage_draws(post: PatternPosterior) -> tuple[np.ndarray, np.ndarray]:
    """Per-draw coverage ceilings: benchmark (mean 1 - w) and population (1 - pi)."""
    bench = _stratum_sums(post, lambda idx: [_Chunk(post, idx).one_m_w])[0]
    return bench, population_expect(post, lambda pi, *theta: 1 - pi)


def summarise_draws(draws: np.ndarray, ci_prob: float) -> tuple[np.ndarray, ...]:
    """Mean, low, high over axis 0."""
    lo, hi = _bounds(ci_prob)
    q = np.quantile(draws, [lo, hi], axis=0)
    return draws.mean(axis=0), q[0], q[1]


def mean_log_delta(post: PatternPosterior) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """log of the posterior-mean marginal gain of the j-th extra rollout per pattern.

    Averaging over draws happens before allocation (the average of concave gain
    curves is concave), as in math.md.
    """
    log_s = np.log(post.n_draws)

    def log_delta(items: np.ndarray, j: np.ndarray) -> np.ndarray:
        items = np.asarray(items)
        j = np.asarray(j)
        out = np.empty(len(items))
        for sel in post.chunks(np.arange(len(items))):
            pi, *theta = post.hyper(items[sel])
            ld = slab_of(post).log_marginal_gain(
                post.k[items[sel]], post.n[items[sel]], j[sel], pi, *theta
            )
            out[sel] = logsumexp(ld, axis=0) - log_s
        return out

    return log_delta


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique integer pairs (a_i, b_i), sorted, and the index of each input pair.

    Same result as ``np.unique(np.stack([a, b]), axis=1, return_inverse=True)``,
    computed on one int64 key: ``np.unique`` with ``axis`` sorts a structured
    dtype and takes seconds for 10^6 cells, this takes tens of milliseconds.

    Examples
    --------
    >>> pairs, inverse = unique_pairs(np.array([1, 0, 1]), np.array([5, 7, 5]))
    >>> pairs.tolist(), inverse.tolist()
    ([[0, 1], [7, 5]], [1, 0, 1])
    """
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.size == 0:
        return np.empty((2, 0), dtype=np.int64), np.empty(0, dtype=np.int64)
    b_values, b_code = np.unique(b, return_inverse=True)
    a_min, width = a.min(), len(b_values)
    keys, inverse = np.unique((a - a_min) * width + b_code.ravel(), return_inverse=True)
    pairs = np.stack([keys // width + a_min, b_values[keys % width]])
    return pairs, inverse.ravel().astype(np.int64)


def to_dataarray(draws: np.ndarray, n_chains: int, cells: pd.DataFrame, name: str) -> xr.DataArray:
    """Wrap (samples, cell) values as a DataArray with dims (chain, draw, cell)."""
    n_draws = draws.shape[0] // n_chains
    return xr.DataArray(
        draws.reshape(n_chains, n_draws, draws.shape[1]),
        dims=("chain", "draw", "cell"),
        coords={
            "chain": np.arange(n_chains),
            "draw": np.arange(n_draws),
            "cell": np.arange(draws.shape[1]),
            "problem": ("cell", cells["problem"].to_numpy()),
            "group": ("cell", cells["group"].to_numpy()),
            "condition": ("cell", cells["condition"].to_numpy()),
        },
        name=name,
    )


def _cell_costs(cost, n_cells: int) -> np.ndarray:
    if cost is None:
        return np.ones(n_cells, dtype=np.int64)
    values = cost.to_numpy() if isinstance(cost, pd.Series) else np.asarray(cost)
    values = np.full(n_cells, values) if values.ndim == 0 else values
    if values.shape != (n_cells,):
        raise ValueError(f"cost must be a scalar or have one value per cell ({n_cells})")
    if not np.all(np.isfinite(values)) or np.any(values < 1) or np.any(values != np.round(values)):
        raise ValueError("cost must hold integers >= 1 (cost of one rollout)")
    return values.astype(np.int64)


def allocate_budget(
    post: PatternPosterior,
    cell_pattern: np.ndarray,
    budget: int,
    cost=None,
    *,
    exact_limit: int = 2_000_000,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Optimal extra rollouts per cell, maximising the expected newly solved problems.

    Only failed cells (k = 0) take part: more successes on a solved problem solve
    nothing new. Unit costs use the exact greedy; unequal costs use exact dynamic
    programming when ``budget x failed cells <= exact_limit``, else greedy by
    gain / cost with its bound (returned in the info dict).

    Returns
    -------
    extra, gain : numpy.ndarray
        Per cell: extra rollouts and the posterior-mean gain G(extra).
    info : dict
        method, objective, spent, unspent, bound.
    """
    from bayes_regimes import allocation as al
    from bayes_regimes.allocation_knapsack import allocate_knapsack

    if isinstance(budget, bool) or int(budget) != budget or budget < 0:
        raise ValueError(f"budget must be a non-negative integer, got {budget!r}")
    budget = int(budget)
    n_cells = len(cell_pattern)
    costs = _cell_costs(cost, n_cells)
    failed = np.flatnonzero(post.k[cell_pattern] == 0)
    log_delta = mean_log_delta(post)
    extra = np.zeros(n_cells, dtype=np.int64)
    info: dict = {"bound": 0.0}
    if cost is None or np.all(costs == 1):
        items, cell_item = np.unique(cell_pattern[failed], return_inverse=True)
        counts = np.bincount(cell_item, minlength=len(items))
        totals = al.allocate_greedy(lambda i, j: log_delta(items[i], j), counts, budget)
        extra[failed] = al.split_among_cells(totals, cell_item)
        info["method"] = "greedy (exact for unit costs)"
    elif budget * len(failed) <= exact_limit:
        curves = []
        for c in failed:
            steps = np.arange(1, budget // costs[c] + 1)
            d = np.exp(log_delta(np.full(steps.size, cell_pattern[c]), steps))
            curves.append(np.concatenate([[0.0], np.cumsum(d)]))
        res = allocate_knapsack(curves, costs[failed], budget)
        extra[failed] = res.extra
        info.update(method="dynamic programming (exact)", bound=res.bound)
    else:
        uniq, cell_item = unique_pairs(cell_pattern[failed], costs[failed])
        counts = np.bincount(cell_item, minlength=uniq.shape[1])
        res = al.allocate_greedy_cost(
            lambda i, j: log_delta(uniq[0, i], j), uniq[1], budget, counts=counts
        )
        extra[failed] = al.split_among_cells(res.extra, cell_item)
        info.update(method="greedy by gain/cost (bounded)", bound=res.bound)
    gain = np.zeros(n_cells)
    if failed.size:
        pairs, inv = unique_pairs(cell_pattern[failed], extra[failed])
        mean, _, _ = pattern_gain(post, pairs[0], pairs[1], CI_PROB)
        gain[failed] = mean[inv]
    spent = int((extra * costs).sum())
    info.update(objective=float(gain.sum()), spent=spent, unspent=budget - spent)
    return extra, gain, info
