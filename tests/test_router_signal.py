"""Tests of benchmarks/router_signal.py: permutation tests of the features' routing
information (no model fits)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import router_signal as rsig  # noqa: E402
from router_scoring import INT  # noqa: E402

from bayes_regimes import paper  # noqa: E402


def _null_table(rng: np.random.Generator, cells=("c1", "c2"), per_cell: int = 40) -> pd.DataFrame:
    """Rates over 3 contexts, the cells' intervention means differ, features unrelated."""
    n = len(cells) * per_cell
    df = pd.DataFrame({"cell": np.repeat(cells, per_cell)})
    difficulty = rng.uniform(0, 1, n)  # moves every intervention together
    for j, col in enumerate(paper.RATES):
        p = np.clip(difficulty * (0.4 + 0.15 * j), 0, 1)
        df[col] = rng.binomial(3, p) / 3
    for col in paper.FEATURES:
        df[col] = rng.normal(size=n)
    return df


def _signal_table(rng: np.random.Generator, per_cell: int = 60) -> pd.DataFrame:
    """local_temp rescues exactly the failures with a positive first feature."""
    df = _null_table(rng, per_cell=per_cell)
    df["local_temp"] = (df[paper.FEATURES[0]] > 0).astype(float)
    return df


def test_interaction_removes_failure_and_cell_effects():
    rng = np.random.default_rng(0)
    v = rng.uniform(size=(12, 4))
    cell = np.repeat([0, 1, 2], 4)
    a = rsig.interaction(v, cell)
    assert np.allclose(a.sum(axis=1), 0.0)
    for c in range(3):
        assert np.allclose(a[cell == c].sum(axis=0), 0.0)
    # Adding a per-failure difficulty and a per-cell ranking changes nothing.
    shifted = v + rng.normal(size=(12, 1)) + rng.normal(size=(3, 4))[cell]
    assert np.allclose(rsig.interaction(shifted, cell), a)


def test_linear_share_is_the_r2_of_least_squares_within_cells():
    rng = np.random.default_rng(1)
    v = rng.uniform(size=(30, 4))
    z = rng.normal(size=(30, 3))
    cell = np.repeat([0, 1], 15)
    a = rsig.interaction(v, cell)
    explained = total = 0.0
    for c in (0, 1):
        m = cell == c
        x = np.column_stack([np.ones(m.sum()), z[m]])
        resid = a[m] - x @ np.linalg.lstsq(x, a[m], rcond=None)[0]
        explained += (a[m] ** 2).sum() - (resid**2).sum()
        total += (a[m] ** 2).sum()
    assert rsig.linear_share(a, z, cell) == pytest.approx(explained / total)


def test_linear_gain_is_zero_without_features_and_positive_with_a_signal():
    df = _signal_table(np.random.default_rng(2))
    v, cell = df[INT].to_numpy(float), df["cell"].to_numpy()
    assert rsig.linear_gain(v, np.zeros((len(df), 0)), cell) == pytest.approx(0.0)
    z = df[list(paper.FEATURES)].to_numpy(float)
    assert rsig.linear_gain(v, z, cell) > 0.05


def test_permutation_test_finds_a_real_signal():
    out = rsig.part_signal(_signal_table(np.random.default_rng(3)), seed=0, n_perm=99)
    res = out["populations"]["all"]
    assert res["n"] == 120
    for key in rsig.STATISTICS:
        assert res[key]["p_value"] == pytest.approx(0.01), key  # nothing permuted beats it
        assert res[key]["observed"] > res[key]["null_q95"], key
    assert set(res["cells_linear"]) == {"c1", "c2"}


def test_permutation_p_values_are_calibrated_without_a_signal():
    # Under the null the p-value is (super-)uniform: about 20 % of datasets fall below 0.2.
    rng = np.random.default_rng(4)
    cell = np.repeat([0, 1], 80)  # > knn_40's 40 neighbours, else it routes by the cell
    p = {k: [] for k in rsig.STATISTICS}
    for _ in range(60):
        df = _null_table(rng, per_cell=80)
        v = df[INT].to_numpy(float)
        z = df[list(paper.FEATURES)].to_numpy(float)
        fixed = np.full(len(df), int(np.argmax(v.mean(axis=0))))
        res = rsig.permutation_test(v, z, cell, fixed, n_perm=39, rng=rng)
        for k in p:
            p[k].append(res[k]["p_value"])
    for k, vals in p.items():
        share = np.mean(np.array(vals) <= 0.2)
        # Binomial(60, 0.2): sd 0.05; ties in the kNN gain make it a little conservative.
        assert 0.08 < share < 0.34, (k, share)


def test_docstring_examples_run():
    import doctest

    import router_bounds

    for module in (rsig, router_bounds):
        assert doctest.testmod(module, report=False).failed == 0, module.__name__
