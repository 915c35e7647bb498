"""Allocation of extra rollouts: greedy and knapsack against brute force (math.md)."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_regimes import allocation_knapsack as ak
from bayes_regimes import closed_form as cf
from bayes_regimes.allocation import (
    Allocation,
    allocate_greedy,
    allocate_greedy_cost,
    log_delta_from_gain_curves,
    split_among_cells,
)
from bayes_regimes.allocation_knapsack import allocate_knapsack


def _concave_curve(rng: np.random.Generator, length: int, zero_tail: int = 0) -> np.ndarray:
    delta = np.sort(rng.exponential(1.0, length))[::-1]
    if zero_tail:
        delta[-zero_tail:] = 0.0
    return np.concatenate([[0.0], np.cumsum(delta)])


def _brute_force(curves: list[np.ndarray], cost: np.ndarray, budget: int) -> float:
    """Best sum_i G_i(m_i) - G_i(0) with sum_i cost_i m_i <= budget, by enumeration."""
    if not curves:
        return 0.0
    g, c = curves[0], int(cost[0])
    return max(
        g[m] - g[0] + _brute_force(curves[1:], cost[1:], budget - m * c)
        for m in range(min(len(g) - 1, budget // c) + 1)
    )


def _reference_greedy(curves: list[np.ndarray], cost: np.ndarray, budget: int) -> np.ndarray:
    """One unit at a time: the fitting cell with the largest Delta / cost."""
    m = np.zeros(len(curves), dtype=int)
    remaining = budget
    while True:
        best, arg = 0.0, -1
        for i, g in enumerate(curves):
            if m[i] + 1 < len(g) and cost[i] <= remaining:
                ratio = (g[m[i] + 1] - g[m[i]]) / cost[i]
                if ratio > best:
                    best, arg = ratio, i
        if arg < 0:
            return m
        m[arg] += 1
        remaining -= cost[arg]


def _closed_form_curves(rng: np.random.Generator, n_items: int, length: int) -> list[np.ndarray]:
    n = rng.integers(0, 30, n_items)
    pi, a, b = (
        rng.uniform(0, 0.8, n_items),
        rng.uniform(0.05, 2, n_items),
        rng.uniform(1, 30, n_items),
    )
    m = np.arange(length + 1)
    return [cf.expected_gain(0, n[i], m, pi[i], a[i], b[i]) for i in range(n_items)]


def _objective(curves, per_cell):
    return sum(g[m] - g[0] for g, m in zip(curves, per_cell, strict=True))


# ----------------------------------------------------------------------------- unit costs
@pytest.mark.parametrize("seed", range(12))
def test_greedy_equals_brute_force_unit_costs(seed):
    rng = np.random.default_rng(seed)
    n_items = int(rng.integers(1, 4))
    counts = rng.integers(1, 3, n_items)
    item_curves = (
        _closed_form_curves(rng, n_items, 7)
        if seed % 2
        else [_concave_curve(rng, 7, zero_tail=int(rng.integers(0, 4))) for _ in range(n_items)]
    )
    cell_item = np.repeat(np.arange(n_items), counts)
    rng.shuffle(cell_item)
    cell_curves = [item_curves[i] for i in cell_item]
    ld = log_delta_from_gain_curves(item_curves)
    for budget in range(0, 9):
        totals = allocate_greedy(ld, counts, budget)
        assert totals.dtype == np.int64 and totals.sum() <= budget
        per_cell = split_among_cells(totals, cell_item)
        got = _objective(cell_curves, per_cell)
        best = _brute_force(cell_curves, np.ones(len(cell_curves), dtype=int), budget)
        assert got == pytest.approx(best, rel=1e-12, abs=1e-15)
        res = allocate_greedy_cost(ld, 1, budget, counts=counts)
        assert res.objective == pytest.approx(best, rel=1e-12, abs=1e-15)
        assert res.tight_bound <= res.bound


def test_greedy_matches_reference_on_larger_instances():
    rng = np.random.default_rng(7)
    n_items = 60
    counts = rng.integers(1, 6, n_items)
    curves = _closed_form_curves(rng, n_items, 400)
    cell_curves = [curves[i] for i in np.repeat(np.arange(n_items), counts)]
    ld = log_delta_from_gain_curves(curves)
    for budget in (1, 37, 500, 3000):
        totals = allocate_greedy(ld, counts, budget)
        assert totals.sum() == budget
        got = _objective(
            cell_curves, split_among_cells(totals, np.repeat(np.arange(n_items), counts))
        )
        ref = _objective(
            cell_curves, _reference_greedy(cell_curves, np.ones(len(cell_curves), int), budget)
        )
        assert got == pytest.approx(ref, rel=1e-12)


def test_closed_form_marginals_vectorised_calls():
    rng = np.random.default_rng(8)
    n_items = 1000
    n, a, b = (
        rng.integers(1, 50, n_items),
        rng.uniform(0.05, 2, n_items),
        rng.uniform(1, 40, n_items),
    )
    calls = []

    def log_delta(items, j):
        calls.append(items.size)
        return cf.log_marginal_gain(0, n[items], j, 0.3, a[items], b[items])

    counts = rng.integers(1, 4, n_items)
    totals = allocate_greedy(log_delta, counts, 100_000)
    assert totals.sum() == 100_000
    assert len(calls) <= 40  # vectorised: a few doubling rounds, not one call per unit
    # optimality certificate: every marginal given >= every marginal not given
    level = totals // counts  # full levels (a partial level has the threshold value)
    given_min = np.where(
        totals > 0, cf.log_marginal_gain(0, n, np.maximum(level, 1), 0.3, a, b), np.inf
    )
    next_best = cf.log_marginal_gain(0, n, level + 1, 0.3, a, b)
    assert next_best.max() <= given_min.min() + 1e-12


# ----------------------------------------------------------------------------- zero gain and caps
def test_zero_gain_items_get_nothing_and_budget_is_left():
    def log_delta(items, j):  # item 0 structural (w = 1), item 1 gains only 2 rollouts
        out = np.where(j <= 2, np.log(0.1) - j, -np.inf)
        return np.where(items == 0, -np.inf, out)

    totals = allocate_greedy(log_delta, [3, 2], budget=100)
    assert totals.tolist() == [0, 4]
    res = allocate_greedy_cost(log_delta, [1, 2], 100, counts=[3, 2])
    assert res.extra.tolist() == [0, 4] and res.unspent == 92 and res.tight_bound == 0.0
    # closed forms with pi = 1 give exactly zero gain for unsolved cells
    structural = cf.log_marginal_gain(0, 10, np.arange(1, 5), 1.0, 1.0, 2.0)
    assert np.all(structural == -np.inf)
    curves = [np.zeros(6), _concave_curve(np.random.default_rng(0), 3)]
    knap = allocate_knapsack(curves, [1, 1], 10)
    assert knap.extra.tolist() == [0, 3] and knap.unspent == 7


def test_max_extra_caps_each_cell():
    ld = log_delta_from_gain_curves([_concave_curve(np.random.default_rng(1), 50)] * 2)
    totals = allocate_greedy(ld, [2, 1], 40, max_extra=[3, 5])
    assert totals.tolist() == [6, 5]
    assert allocate_greedy(ld, [2, 1], 40, max_extra=0).tolist() == [0, 0]
    assert allocate_greedy(ld, [0, 1], 4).tolist() == [0, 4]


def test_greedy_validates_inputs():
    ld = log_delta_from_gain_curves([[0.0, 0.5]])
    with pytest.raises(ValueError):
        allocate_greedy(ld, [1], -1)
    with pytest.raises(ValueError):
        allocate_greedy(ld, [1.5], 3)
    with pytest.raises(ValueError):
        allocate_greedy(lambda i, j: np.full(i.shape, np.nan), [1], 3)
    with pytest.raises(ValueError):
        allocate_greedy_cost(ld, [0], 3)


# ----------------------------------------------------------------------------- unequal costs
@pytest.mark.parametrize("seed", range(15))
def test_knapsack_equals_brute_force_and_greedy_bound_holds(seed):
    rng = np.random.default_rng(100 + seed)
    n_items = int(rng.integers(1, 5))
    concave = seed % 3 != 0
    curves = [
        _concave_curve(rng, int(rng.integers(1, 6)), zero_tail=int(rng.integers(0, 2)))
        if concave
        else np.concatenate([[0.0], rng.uniform(0, 3, int(rng.integers(1, 5)))])
        for _ in range(n_items)
    ]
    cost = rng.integers(1, 5, n_items)
    ld = log_delta_from_gain_curves(curves)
    for budget in range(0, 13):
        best = _brute_force(curves, cost, budget)
        dp = allocate_knapsack(curves, cost, budget)
        assert isinstance(dp, Allocation)
        assert dp.objective == pytest.approx(best, abs=1e-12)
        assert dp.spent == int(np.dot(dp.extra, cost)) <= budget
        assert dp.objective == pytest.approx(_objective(curves, dp.extra), abs=1e-12)
        if not concave:
            continue
        gr = allocate_greedy_cost(ld, cost, budget)
        assert gr.spent == int(np.dot(gr.extra, cost)) <= budget
        assert gr.objective == pytest.approx(_objective(curves, gr.extra), abs=1e-12)
        assert gr.objective >= best - gr.tight_bound - 1e-12
        assert gr.tight_bound <= gr.bound + 1e-15
        fits = [g[1] - g[0] for g, c in zip(curves, cost, strict=True) if c <= budget]
        assert gr.bound == pytest.approx(max(fits, default=0.0)) or budget == 0
        ref = _reference_greedy(curves, cost, budget)
        assert gr.objective == pytest.approx(_objective(curves, ref), abs=1e-12)


@pytest.mark.parametrize("c", [1, 2, 5, 40])
def test_concave_maxplus_step_equals_dense(c):
    rng = np.random.default_rng(c)
    for trial in range(20):
        best = rng.uniform(0, 3, int(rng.integers(1, 200)))  # arbitrary, not monotone
        if trial % 2:
            best = np.round(best, 1)  # ties
        gain = _concave_curve(rng, int(rng.integers(1, 60)), zero_tail=int(rng.integers(0, 5)))
        gain = gain[: (best.size - 1) // c + 1]
        dense = ak._maxplus_dense(best, gain, c)
        fast = ak._maxplus_concave(best, gain, c)
        np.testing.assert_allclose(fast[0], dense[0], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(fast[1], dense[1])


def test_knapsack_handles_large_concave_instances():
    rng = np.random.default_rng(11)
    curves = _closed_form_curves(rng, 40, 5000)
    cost = rng.integers(1, 4, 40)
    res = allocate_knapsack(curves, cost, 5000)
    assert res.spent <= 5000
    greedy = allocate_greedy_cost(log_delta_from_gain_curves(curves), cost, 5000)
    assert greedy.objective <= res.objective + 1e-12
    assert res.objective <= greedy.objective + greedy.tight_bound + 1e-12


def test_greedy_cost_with_counts_matches_reference():
    rng = np.random.default_rng(9)
    n_items = 25
    counts, cost = rng.integers(1, 4, n_items), rng.integers(1, 6, n_items)
    curves = _closed_form_curves(rng, n_items, 200)
    cells = np.repeat(np.arange(n_items), counts)
    ld = log_delta_from_gain_curves(curves)
    for budget in (3, 50, 401, 2000):
        res = allocate_greedy_cost(ld, cost, budget, counts=counts)
        ref = _reference_greedy([curves[i] for i in cells], cost[cells], budget)
        assert res.objective == pytest.approx(
            _objective([curves[i] for i in cells], ref), rel=1e-12
        )
        assert res.spent == int(np.dot(res.extra, cost)) <= budget


# ----------------------------------------------------------------------------- splitting
def test_split_among_cells():
    cell_item = np.array([2, 0, 2, 1, 2, 0])
    out = split_among_cells([3, 0, 7], cell_item)
    assert out.tolist() == [3, 2, 2, 0, 2, 1]
    assert out.dtype == np.int64
    for item, total in enumerate([3, 0, 7]):
        cells = out[cell_item == item]
        assert cells.sum() == total and cells.max() - cells.min() <= 1
        assert np.all(np.diff(cells) <= 0)  # the first cells in input order get the extra one
    assert split_among_cells([0], []).tolist() == []
    with pytest.raises(ValueError):
        split_among_cells([1, 2], [0, 0])  # item 1 has no cells
    with pytest.raises(ValueError):
        split_among_cells([1], [0, 1])
