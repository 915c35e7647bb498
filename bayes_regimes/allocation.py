"""Optimal integer allocation of extra rollouts over concave gain curves.

An *item* is a group of ``counts[i]`` identical cells (e.g. one pattern with
``k = 0``). The j-th extra rollout of a cell of item i adds
``Delta_i(j) = G_i(j) - G_i(j - 1)``, positive and non-increasing in j (math.md,
"Budget allocation").

* Unit costs: :func:`allocate_greedy` is exactly optimal. It equals handing out
  rollouts one at a time to the largest next marginal, but finds the cut-off with a
  few vectorised ``log_delta`` calls over doubling blocks of levels (1e6 rollouts
  over 1e4 items take about a second).
* Integer costs: :func:`bayes_regimes.allocation_knapsack.allocate_knapsack` is
  exact (dynamic programming);
  :func:`allocate_greedy_cost` is greedy by ``Delta / cost`` with the bound
  ``greedy >= optimum - max_i Delta_i(1)``.

Zero marginals (``log Delta = -inf``, e.g. structural cells with ``w = 1``) never
receive rollouts; what is left of the budget stays unallocated.

Examples
--------
>>> import numpy as np
>>> from bayes_regimes.allocation import allocate_greedy, split_among_cells
>>> rates = np.array([0.5, 0.1])  # Delta_i(j) = r (1 - r)^(j - 1)
>>> def log_delta(items, j):
...     r = rates[items]
...     return np.log(r) + (j - 1) * np.log1p(-r)
>>> allocate_greedy(log_delta, counts=[1, 2], budget=5)
array([3, 2])
>>> split_among_cells(np.array([3, 2]), cell_item=np.array([1, 0, 1]))
array([1, 3, 1])
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Allocation",
    "LogDelta",
    "allocate_greedy",
    "allocate_greedy_cost",
    "log_delta_from_gain_curves",
    "split_among_cells",
]

#: ``log_delta(items, j) -> log Delta_items(j)``: int arrays of equal length in, float out.
LogDelta = Callable[[np.ndarray, np.ndarray], np.ndarray]

_MIN_BLOCK = 16


@dataclass(frozen=True)
class Allocation:
    """Result of an allocation with costs.

    Attributes
    ----------
    extra : numpy.ndarray
        Extra rollouts per item (int64), summed over the item's cells.
    objective : float
        Expected gain achieved, ``sum_i sum_cells G_i(m_cell) - G_i(0)``.
    spent, unspent : int
        Budget used (``sum cost_i * extra_i``) and left unallocated.
    bound : float
        Guaranteed ``optimum - objective <= bound``: 0.0 for the exact dynamic
        programme; ``max_i Delta_i(1)`` (over items that could take part) for greedy.
    tight_bound : float
        A sharper guarantee for greedy, the gain of the first unit that did not fit
        (0.0 when none was refused, in which case greedy is optimal).
    """

    extra: np.ndarray
    objective: float
    spent: int
    unspent: int
    bound: float
    tight_bound: float


def _int_vector(name: str, v: ArrayLike, size: int, minimum: int) -> np.ndarray:
    arr = np.asarray(v)
    if arr.ndim == 0:
        arr = np.full(size, arr)
    arr = np.asarray(arr, dtype=float)
    if arr.shape != (size,):
        raise ValueError(f"{name} must be a scalar or have one entry per item ({size})")
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < minimum):
        raise ValueError(f"{name} must hold integers >= {minimum}")
    return arr.astype(np.int64)


def _check_budget(budget: int) -> int:
    if isinstance(budget, bool) or int(budget) != budget or budget < 0:
        raise ValueError("budget must be a non-negative integer")
    return int(budget)


def _evaluate(log_delta: LogDelta, items: np.ndarray, j: np.ndarray) -> np.ndarray:
    out = np.asarray(log_delta(items, j), dtype=float)
    if out.shape != items.shape:
        raise ValueError("log_delta must return one value per (item, j) pair")
    if np.any(np.isnan(out)):
        raise ValueError("log_delta returned NaN")
    return out


@dataclass
class _State:
    """Running greedy state over items (cells of an item move level by level)."""

    counts: np.ndarray
    cost: np.ndarray
    caps: np.ndarray
    level: np.ndarray  # completed levels: every cell of the item got that many
    extra: np.ndarray  # rollouts given per item (levels * counts + a partial level)
    objective: float = 0.0
    first_gain: float = 0.0  # max_i Delta_i(1)
    tight: float = 0.0  # gain of the first unit refused for lack of budget
    critical: int = -1  # item of that unit; it takes no further rollouts


def _threshold_phase(log_delta: LogDelta, st: _State, active: np.ndarray, budget: int) -> int:
    """Take the greedy prefix (every unit before the first one that does not fit).

    Levels are evaluated in doubling blocks, vectorised over items; a unit can only
    enter the prefix when its key (log Delta - log cost) is at least the key T of
    the first unit that does not fit, so items whose last evaluated key is <= T are
    not extended and evaluated units below T are dropped. Returns the budget left.
    """
    log_cost = np.log(st.cost.astype(float))
    weight = st.counts * st.cost  # cost of one level of an item
    reach = -(-budget // np.maximum(weight, 1))
    lim = np.minimum(st.caps, reach)
    done = np.zeros(st.counts.size, dtype=np.int64)  # evaluated levels
    frontier = np.full(st.counts.size, np.inf)  # key of the last evaluated level
    guess = math.ceil(budget / max(int(weight[active].sum()), 1)) + 1
    target = np.minimum(lim, guess)
    keys, vals, items = np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    threshold = -np.inf
    grow = active
    while grow.size:
        sizes = target[grow] - done[grow]
        rep = np.repeat(grow, sizes)
        ends = np.cumsum(sizes)
        lev = np.arange(ends[-1], dtype=np.int64) - np.repeat(ends - sizes, sizes)
        lev += np.repeat(done[grow], sizes) + 1
        raw = _evaluate(log_delta, rep, lev)
        new = raw - log_cost[rep]
        if not done.any():
            st.first_gain = float(np.exp(np.max(raw[lev == 1])))
        frontier[grow] = new[ends - 1]
        done[grow] = target[grow]
        keep = (new >= threshold) & (new > -np.inf)
        order = np.lexsort((lev[keep], -new[keep]))
        keys = np.concatenate([keys, new[keep][order]])
        vals = np.concatenate([vals, raw[keep][order]])
        items = np.concatenate([items, rep[keep][order]])
        merged = np.argsort(-keys, kind="stable")  # two sorted runs: a linear merge
        keys, vals, items = keys[merged], vals[merged], items[merged]
        cum = np.cumsum(weight[items])
        n_fit = int(np.searchsorted(cum, budget, side="right"))
        if n_fit < keys.size:
            threshold = keys[n_fit]
            n_keep = int(np.searchsorted(-keys, -threshold, side="right"))
            keys, vals, items = keys[:n_keep], vals[:n_keep], items[:n_keep]
        grow = np.flatnonzero((done < lim) & (frontier > threshold) & (done > 0))
        target[grow] = np.minimum(2 * done[grow], lim[grow])
    cum = np.cumsum(weight[items])
    n_fit = int(np.searchsorted(cum, budget, side="right"))
    taken = items[:n_fit]
    st.level += np.bincount(taken, minlength=st.counts.size)
    st.extra += st.level * st.counts
    st.objective = float(np.sum(st.counts[taken] * np.exp(vals[:n_fit])))
    remaining = budget - (int(cum[n_fit - 1]) if n_fit else 0)
    if n_fit < keys.size:  # the first unit that does not fit: part of one level
        i = int(items[n_fit])
        gain = math.exp(float(vals[n_fit]))
        fit = remaining // int(st.cost[i])
        st.extra[i] += fit
        st.objective += fit * gain
        st.tight, st.critical = gain, i
        remaining -= fit * int(st.cost[i])
    return remaining


def _heap_phase(log_delta: LogDelta, st: _State, candidates: np.ndarray, budget: int) -> None:
    """Continue the greedy after the prefix, with a heap over (item, level).

    Only runs with unequal costs once a unit has been refused, so ``budget`` is
    below the largest cost and the loop is short.
    """
    cnt, cst, cap = st.counts.tolist(), st.cost.tolist(), st.caps.tolist()
    level, log_cost = st.level.tolist(), np.log(st.cost.astype(float)).tolist()
    blocks: dict[int, list[float]] = {}
    pos: dict[int, int] = {}

    def refill(i: int, size: int) -> None:
        js = np.arange(level[i] + 1, level[i] + size + 1, dtype=np.int64)
        blocks[i] = _evaluate(log_delta, np.full(size, i, dtype=np.int64), js).tolist()
        pos[i] = 0

    heap: list[tuple[float, int]] = []
    for i in candidates.tolist():
        refill(i, min(_MIN_BLOCK, cap[i] - level[i], max(budget // (cnt[i] * cst[i]), 1)))
        heap.append((log_cost[i] - blocks[i][0], i))
    heapq.heapify(heap)
    remaining = budget
    while heap and remaining > 0:
        key, i = heapq.heappop(heap)
        if key == math.inf:  # every remaining marginal is exactly zero
            break
        c, ci = cnt[i], cst[i]
        while True:
            gain = math.exp(blocks[i][pos[i]])
            fit = min(c, remaining // ci)
            st.extra[i] += fit
            remaining -= fit * ci
            st.objective += fit * gain
            if fit < c:  # the budget runs out inside this level: item i is done
                break
            level[i] += 1
            pos[i] += 1
            if level[i] >= cap[i]:
                break
            if pos[i] == len(blocks[i]):
                refill(i, min(2 * len(blocks[i]), cap[i] - level[i]))
            key = log_cost[i] - blocks[i][pos[i]]
            if key == math.inf:
                break
            if heap and key > heap[0][0]:
                heapq.heappush(heap, (key, i))
                break
    st.level[:] = level


def _greedy(
    log_delta: LogDelta,
    counts: np.ndarray,
    cost: np.ndarray,
    budget: int,
    caps: np.ndarray,
) -> _State:
    """Greedy by log Delta - log cost over (item, level)."""
    size = counts.size
    zeros = np.zeros(size, dtype=np.int64)
    st = _State(counts, cost, caps, zeros.copy(), zeros.copy())
    active = np.flatnonzero((counts > 0) & (caps > 0) & (cost <= budget))
    if active.size == 0 or budget == 0:
        return st
    remaining = _threshold_phase(log_delta, st, active, budget)
    if remaining > 0 and st.critical >= 0:  # unequal costs: cheaper cells may still fit
        ok = (counts > 0) & (st.level < caps) & (cost <= remaining)
        ok[st.critical] = False
        _heap_phase(log_delta, st, np.flatnonzero(ok), remaining)
    return st


def allocate_greedy(
    log_delta: LogDelta,
    counts: ArrayLike,
    budget: int,
    max_extra: ArrayLike | None = None,
) -> np.ndarray:
    """Exactly optimal allocation of ``budget`` unit-cost rollouts over items.

    Maximises ``sum_i sum_{cells of i} G_i(m_cell)`` subject to ``sum m <= budget``
    with the result of giving, one at a time, a rollout to the cell with the largest
    next marginal ``Delta_i(level + 1)`` (ties broken arbitrarily). The ``counts[i]``
    identical cells of an item move level by level, so an item's total splits evenly
    (see :func:`split_among_cells`).

    Parameters
    ----------
    log_delta : callable
        ``log_delta(items, j)`` returns ``log Delta_i(j)`` for int arrays ``items`` and
        ``j >= 1`` of equal length: the marginal gain of the j-th extra rollout to one
        cell of item i, non-increasing in j. ``-inf`` means zero gain. It is called a
        few times with long arrays (blocks of levels of many items), so it should be
        vectorised.
    counts : array_like of int
        Number of identical cells per item (0 leaves the item out).
    budget : int
        Rollouts to hand out.
    max_extra : int or array_like of int, optional
        Cap on the extra rollouts per *cell* (scalar or one per item).

    Returns
    -------
    numpy.ndarray
        Total extra rollouts per item (int64). ``budget - result.sum()`` is left
        unallocated: it is positive only when every remaining marginal is exactly
        zero or every cell is at its cap.

    Examples
    --------
    >>> import numpy as np
    >>> with np.errstate(divide="ignore"):  # log Delta_i(j), j = 1..3
    ...     ld = np.log(np.array([[0.4, 0.2, 0.1], [0.3, 0.25, 0.0]]))
    >>> def log_delta(items, j):
    ...     return ld[items, np.minimum(j, 3) - 1]
    >>> allocate_greedy(log_delta, counts=[1, 1], budget=4, max_extra=3)
    array([2, 2])
    >>> allocate_greedy(log_delta, counts=[1, 1], budget=10, max_extra=3)  # 0-gain unit unused
    array([3, 2])
    """
    budget = _check_budget(budget)
    counts_arr = np.atleast_1d(np.asarray(counts))
    size = counts_arr.size
    counts_arr = _int_vector("counts", counts_arr, size, 0)
    caps = _cap_vector(max_extra, size, budget)
    return _greedy(log_delta, counts_arr, np.ones(size, dtype=np.int64), budget, caps).extra


def _cap_vector(max_extra: ArrayLike | None, size: int, budget: int) -> np.ndarray:
    if max_extra is None:
        return np.full(size, budget, dtype=np.int64)
    return np.minimum(_int_vector("max_extra", max_extra, size, 0), budget)


def allocate_greedy_cost(
    log_delta: LogDelta,
    cost: ArrayLike,
    budget: int,
    counts: ArrayLike | None = None,
    max_extra: ArrayLike | None = None,
) -> Allocation:
    """Greedy allocation with integer costs per rollout, with its optimality bound.

    Repeatedly gives a rollout to the cell with the largest ``Delta_i(level + 1) /
    cost_i`` that still fits the remaining budget (``sum_i cost_i m_i <= budget``).
    Optimal for the continuous relaxation only; for the integer problem
    ``greedy >= optimum - max_i Delta_i(1)`` (``Allocation.bound``), and more
    sharply ``>= optimum - Delta`` of the first unit that did not fit
    (``Allocation.tight_bound``). With all costs 1 it equals :func:`allocate_greedy`.

    Parameters
    ----------
    log_delta : callable
        As in :func:`allocate_greedy`.
    cost : int or array_like of int
        Cost of one rollout of item i (>= 1).
    budget : int
        Total cost available.
    counts : array_like of int, optional
        Identical cells per item (default 1 each; then items are cells).
    max_extra : int or array_like of int, optional
        Cap on the extra rollouts per cell.

    Returns
    -------
    Allocation

    Examples
    --------
    >>> import numpy as np
    >>> curves = [np.array([0.0, 0.5, 0.6]), np.array([0.0, 0.3, 0.55])]
    >>> res = allocate_greedy_cost(log_delta_from_gain_curves(curves), [3, 1], 4)
    >>> res.extra.tolist(), round(res.objective, 10), res.unspent, res.tight_bound
    ([0, 2], 0.55, 2, 0.5)
    >>> from bayes_regimes.allocation_knapsack import allocate_knapsack
    >>> allocate_knapsack(curves, [3, 1], 4).objective  # optimum 0.8 <= 0.55 + 0.5
    0.8
    """
    budget = _check_budget(budget)
    size = np.size(cost) if counts is None else np.size(counts)
    cost_arr = _int_vector("cost", cost, size, 1)
    counts_arr = _int_vector("counts", 1 if counts is None else counts, size, 0)
    caps = _cap_vector(max_extra, size, budget)
    st = _greedy(log_delta, counts_arr, cost_arr, budget, caps)
    spent = int((st.extra * cost_arr).sum())
    return Allocation(st.extra, st.objective, spent, budget - spent, st.first_gain, st.tight)


def log_delta_from_gain_curves(gain_curves: Sequence[ArrayLike]) -> LogDelta:
    """A ``log_delta`` callable from tabulated gain curves ``G_i(0), ..., G_i(M_i)``.

    Marginals beyond ``M_i`` and non-positive differences count as zero gain.

    Examples
    --------
    >>> import numpy as np
    >>> ld = log_delta_from_gain_curves([[0.0, 0.5, 0.75]])
    >>> np.exp(ld(np.array([0, 0, 0]), np.array([1, 2, 3])))
    array([0.5 , 0.25, 0.  ])
    """
    curves = [np.asarray(g, dtype=float) for g in gain_curves]
    longest = max((g.size for g in curves), default=1)
    table = np.zeros((len(curves), longest))  # Delta_i(j) at column j - 1
    for i, g in enumerate(curves):
        table[i, : g.size - 1] = np.maximum(np.diff(g), 0.0)
    with np.errstate(divide="ignore"):
        log_table = np.log(table)

    def log_delta(items: np.ndarray, j: np.ndarray) -> np.ndarray:
        items, j = np.asarray(items), np.asarray(j)
        inside = j <= longest
        out = np.full(items.shape, -np.inf)
        out[inside] = log_table[items[inside], j[inside] - 1]
        return out

    return log_delta


def split_among_cells(total_per_item: ArrayLike, cell_item: ArrayLike) -> np.ndarray:
    """Per-cell extra rollouts from per-item totals.

    The c cells of an item receiving T get ``T // c`` each, and the first ``T % c`` of
    them (in input order) one more, matching the level-by-level greedy.

    Parameters
    ----------
    total_per_item : array_like of int
        Total extra rollouts per item.
    cell_item : array_like of int
        Item index of every cell, cells in input order.

    Returns
    -------
    numpy.ndarray
        Extra rollouts per cell (int64), in input order.

    Examples
    --------
    >>> split_among_cells([5, 0], [0, 1, 0, 0])
    array([2, 0, 2, 1])
    """
    cell_item = np.asarray(cell_item, dtype=np.int64).ravel()
    totals = np.atleast_1d(np.asarray(total_per_item)).ravel()
    totals = _int_vector("total_per_item", totals, totals.size, 0)
    if cell_item.size and (cell_item.min() < 0 or cell_item.max() >= totals.size):
        raise ValueError("cell_item holds an item index outside total_per_item")
    counts = np.bincount(cell_item, minlength=totals.size)
    if np.any((counts == 0) & (totals > 0)):
        raise ValueError("an item with no cells cannot receive rollouts")
    order = np.argsort(cell_item, kind="stable")
    sorted_items = cell_item[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(cell_item.size) - starts[sorted_items]
    c = np.maximum(counts, 1)
    per_sorted = totals[sorted_items] // c[sorted_items] + (
        rank < totals[sorted_items] % c[sorted_items]
    )
    out = np.empty(cell_item.size, dtype=np.int64)
    out[order] = per_sorted
    return out
