"""Exact allocation of extra rollouts with integer costs: a knapsack over the budget.

The unit-cost and greedy allocations live in :mod:`bayes_regimes.allocation`; this
module solves ``max sum_i G_i(m_i)`` subject to ``sum_i cost_i m_i <= budget`` exactly
by dynamic programming, one max-plus convolution per item (``O(budget log budget)``
for a concave gain curve).

Examples
--------
>>> import numpy as np
>>> allocate_knapsack([np.array([0.0, 0.5, 0.6]), np.array([0.0, 0.3, 0.55])], [3, 1], 4).extra
array([1, 1])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from bayes_regimes.allocation import Allocation, _check_budget, _int_vector

__all__ = ["allocate_knapsack"]


def _maxplus_dense(best: np.ndarray, gain: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """new[b] = max_m best[b - m c] + gain[m] (smallest m on ties), for any gain."""
    new, choice = best.copy(), np.zeros(best.size, dtype=np.int32)
    for m in range(1, gain.size):
        shift = m * c
        cand = best[: best.size - shift] + gain[m]
        better = cand > new[shift:]
        new[shift:][better] = cand[better]
        choice[shift:][better] = m
    return new, choice


def _maxplus_concave(best: np.ndarray, gain: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`_maxplus_dense` for concave ``gain``, in O(B log B).

    Within a residue class ``b = r + t c`` write ``s = t - m``. With gain concave the
    array ``best[r + s c] + gain[t - s]`` is inverse Monge, so the best s (the
    largest one on ties) is non-decreasing in t and rows can be solved by divide and
    conquer; each recursion level is one vectorised pass over all residues.
    """
    top_m = gain.size - 1
    new, choice = np.empty(best.size), np.empty(best.size, dtype=np.int32)
    res = np.arange(min(c, best.size))
    lo, hi = np.zeros(res.size, dtype=np.int64), (best.size - 1 - res) // c
    slo, shi = lo.copy(), hi.copy()
    while res.size:
        mid = (lo + hi) // 2
        s0 = np.maximum(slo, mid - top_m)
        length = np.minimum(shi, mid) - s0 + 1  # >= 1 by monotonicity
        offsets = np.concatenate([[0], np.cumsum(length)[:-1]])
        seg = np.repeat(np.arange(res.size), length)
        s = s0[seg] + np.arange(seg.size) - offsets[seg]
        vals = best[res[seg] + s * c] + gain[mid[seg] - s]
        top = np.maximum.reduceat(vals, offsets)
        pick = np.maximum.reduceat(np.where(vals == top[seg], np.arange(seg.size), -1), offsets)
        opt = s[pick]
        new[res + mid * c] = top
        choice[res + mid * c] = mid - opt
        left, right = lo < mid, mid < hi
        pairs = ((lo, mid + 1), (mid - 1, hi), (slo, opt), (opt, shi), (res, res))
        lo, hi, slo, shi, res = [np.concatenate([u[left], v[right]]) for u, v in pairs]
    return new, choice


def allocate_knapsack(gain_curves: Sequence[ArrayLike], cost: ArrayLike, budget: int) -> Allocation:
    """Exact allocation with integer costs by dynamic programming over the budget.

    Maximises ``sum_i G_i(m_i)`` subject to ``sum_i cost_i m_i <= budget`` and
    ``m_i <= M_i`` exactly, for any curves. For a concave curve each item's step (a
    max-plus convolution) takes ``O(budget log budget)`` work by divide and conquer;
    other curves take ``O(budget * min(M_i, budget / cost_i))``. Memory is
    ``items * budget`` int32 for the back-pointers, so use it for moderate
    ``items * budget`` (up to ~1e7) and :func:`allocate_greedy_cost` beyond. Ties keep
    the smaller allocation, so zero-gain rollouts are never bought.

    Parameters
    ----------
    gain_curves : sequence of array_like
        ``G_i(0), ..., G_i(M_i)`` per item (item = cell here).
    cost : int or array_like of int
        Cost of one rollout per item (>= 1).
    budget : int
        Total cost available.

    Returns
    -------
    Allocation
        With ``bound = tight_bound = 0.0`` (exact).

    Examples
    --------
    >>> import numpy as np
    >>> curves = [np.array([0.0, 0.5, 0.6]), np.array([0.0, 0.3, 0.55])]
    >>> res = allocate_knapsack(curves, [3, 1], 4)
    >>> res.extra.tolist(), round(res.objective, 10)
    ([1, 1], 0.8)
    >>> allocate_knapsack(curves, [3, 1], 2).extra.tolist()
    [0, 2]
    """
    budget = _check_budget(budget)
    curves = [np.asarray(g, dtype=float).ravel() for g in gain_curves]
    n_items = len(curves)
    if any(g.size == 0 for g in curves):
        raise ValueError("every gain curve needs at least G(0)")
    cost_arr = _int_vector("cost", cost, n_items, 1)
    best = np.zeros(budget + 1)  # best gain with total cost <= b
    choice = np.zeros((n_items, budget + 1), dtype=np.int32)
    for i, g in enumerate(curves):
        ci = int(cost_arr[i])
        gain = g[: budget // ci + 1] - g[0]
        d2 = np.diff(gain, 2)
        concave = np.all(d2 <= 1e-12 * max(float(np.abs(gain).max()), 1e-300))
        step = _maxplus_concave if concave and gain.size > 2 else _maxplus_dense
        best, choice[i] = step(best, gain, ci)
    extra = np.zeros(n_items, dtype=np.int64)
    b = budget
    for i in range(n_items - 1, -1, -1):
        extra[i] = choice[i, b]
        b -= int(extra[i] * cost_arr[i])
    spent = int((extra * cost_arr).sum())
    objective = float(sum(g[m] - g[0] for g, m in zip(curves, extra, strict=True)))
    return Allocation(extra, objective, spent, budget - spent, 0.0, 0.0)
