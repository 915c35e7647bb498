"""Fast closed forms of the crossed model's queries against closed_form (no fit)."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_regimes import closed_form as cf
from bayes_regimes.models.crossed_draws import FAST_BETA, log_beta_ratio
from bayes_regimes.slabs import BetaSlab

RTOL = 1e-9


def _close(got, ref, rtol=RTOL, atol=1e-300):
    got, ref = np.asarray(got, dtype=float), np.asarray(ref, dtype=float)
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    with np.errstate(invalid="ignore"):
        return bool(np.all(same | (np.abs(got - ref) <= atol + rtol * np.abs(ref))))


@pytest.fixture(scope="module")
def grid():
    """(x, y, m) over many orders of magnitude: tiny x (p near 0), y up to 1e7, m from
    0 to 1e6 and infinity, integer and not."""
    rng = np.random.default_rng(0)
    size = 40_000
    x = 10.0 ** rng.uniform(-9, 4, size)
    y = 10.0 ** rng.uniform(-3, 7, size)
    m = rng.choice([0, 1, 2, 10, 32, 33, 100, 1000, 10**6, 2.5, np.inf], size)
    return x, y, m


def test_log_beta_ratio_matches_closed_form(grid):
    x, y, m = grid
    got, ref = log_beta_ratio(x, y, m), cf._log_beta_ratio(x, y, m)
    assert np.all(got[m == 0] == 0.0) and np.all(got[np.isinf(m)] == -np.inf)
    assert _close(got, ref)
    # One m for all (the product form's uniform path) and scalars.
    for mm in (10.0, 1000.0):
        assert _close(log_beta_ratio(x, y, mm), cf._log_beta_ratio(x, y, mm))
    assert log_beta_ratio(2.0, 3.0, 4) == pytest.approx(float(cf._log_beta_ratio(2.0, 3.0, 4)))


@pytest.mark.parametrize("n", [10, 1000, 10**6])
def test_fast_beta_slab_matches_closed_form(n):
    """Every method the queries call, (draws x cells) arrays with k = 0, k = n and
    k in between, p near 0 (tiny a) and near 1, pi from 0 to 1."""
    rng = np.random.default_rng(n)
    draws, cells = 50, 400
    k = rng.choice([0, 0, 1, n // 2, n], cells)
    nn = np.full(cells, n)
    a = 10.0 ** rng.uniform(-6, 3, (draws, cells))
    b = 10.0 ** rng.uniform(-2, 5, (draws, cells))
    pi = rng.choice([0.0, 1e-12, 0.3, 0.999, 1.0], (draws, cells))
    ref = BetaSlab()
    pairs = [
        ("_log_weights", (k, nn, pi, a, b)),
        ("logpmf", (k, nn, pi, a, b)),
        ("log_structural_weight", (k, nn, pi, a, b)),
        ("log_no_success", (k, nn, 1000, a, b)),
        ("expected_gain", (k, nn, 100, pi, a, b)),
        ("log_marginal_gain", (k, nn, np.arange(1, cells + 1), pi, a, b)),
        ("posterior_mean_p", (k, nn, pi, a, b)),
        ("prob_below", (1e-3, k, nn, pi, a, b)),
        ("pass_at_k_new_problem", (100, pi, a, b)),
    ]
    for name, args in pairs:
        got, want = getattr(FAST_BETA, name)(*args), getattr(ref, name)(*args)
        for g, w in zip(*(v if isinstance(v, tuple) else (v,) for v in (got, want)), strict=True):
            assert _close(g, w, atol=1e-14 if name == "prob_below" else 1e-300), name
    # Other shapes: one cell, k broadcast against draws, eps outside (0, 1).
    assert _close(FAST_BETA.prob_below([0.0, 1.0], 0, 5, 0.2, 1.0, 2.0), [0.0, 1.0])
    lw = FAST_BETA._log_weights(np.zeros((3, 1)), 10, 0.4, np.ones((3, 4)), 2.0)
    assert _close(lw[0], cf._log_weights(0, 10, 0.4, np.ones((3, 4)), 2.0)[0])
    with pytest.raises(ValueError, match="pi"):
        FAST_BETA.posterior_mean_p(0, 10, 1.5, 1.0, 1.0)
