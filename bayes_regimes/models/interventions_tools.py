"""Building blocks of :mod:`bayes_regimes.models.interventions`.

* :func:`best_of_r_zi_logp`: the exact best-of-r, zero-inflated Beta marginal
  likelihood in pytensor (the same sum as
  :func:`bayes_regimes.best_of_r.best_of_r_zi_logpmf`);
* :func:`simulate_interventions`: data from the model's generative story, with
  known truth;
* :class:`Layout`: the (problem x condition) grid of a RolloutData.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayes_regimes import best_of_r as bor
from bayes_regimes import closed_form as cf
from bayes_regimes.data import RolloutData
from bayes_regimes.errors import DataError

__all__ = ["Layout", "as_condition_map", "best_of_r_zi_logp", "simulate_interventions"]


def _buckets(nterm: np.ndarray) -> list[np.ndarray]:
    """Cells with more than one positive term, grouped by powers of two of their count."""
    out = []
    top = int(nterm.max()) if nterm.size else 1
    lo = 1
    while lo < top:
        hi = 2 * lo
        idx = np.flatnonzero((nterm > lo) & (nterm <= hi))
        if idx.size:
            out.append(idx)
        lo = hi
    return out


def _pad_coefs(K: np.ndarray, r: np.ndarray, width: int) -> np.ndarray:
    """Coefficients of (1 + x + ... + x^(r-1))^K per cell, zero-padded to ``width``."""
    out = np.zeros((K.size, width))
    for row, (kk, rr) in enumerate(zip(K, r, strict=True)):
        c = np.exp(bor._log_window_coefs(int(kk), int(rr)))
        out[row, : c.size] = c
    return out


def best_of_r_zi_logp(
    K, D, r, a, b, log_pi, log_1m_pi, *, kappa=None, kappa_index=None, total: bool = False
):
    """Pytensor log P(K of D contexts | best-of-r, zero-inflated Beta(a, b) slab), per cell.

    The same all-positive sum as :func:`bayes_regimes.best_of_r.best_of_r_zi_logpmf`:
    ``C(D, K) sum_s c_s B(a + K, b + t + s) / B(a, b)`` with ``t = r (D - K)`` and
    ``c_s`` the coefficients of ``(1 + x + ... + x^(r-1))^K``. It is evaluated as
    ``log C(D, K) + log B(a + K, b + t) / B(a, b) + log sum_s c_s R_s`` where
    ``R_s = prod_{j < s} (b + t + j) / (a + b + K + t + j)`` is a ratio of Beta
    functions below 1 (a cumulative product, no alternating signs, ``R_0 = 1``).

    Parameters
    ----------
    K, D, r : numpy.ndarray of int
        Data per cell (constants, 1-D); cells with D = 0 contribute 0.
    a, b, log_pi, log_1m_pi : pytensor vectors
        Slab shapes and log structural weights per cell.
    kappa, kappa_index : pytensor vector and int array, optional
        When every cell's ``a + b`` equals ``kappa[kappa_index]``, the log-gamma
        terms of ``a + b`` are computed once per (kappa entry, K + t) instead of
        per cell.
    total : bool
        Return the sum over cells (cheaper: no scatter of the multi-term cells).

    Examples
    --------
    >>> import numpy as np, pytensor.tensor as pt
    >>> K, D, r = np.array([0, 2]), np.array([5, 5]), np.array([3, 3])
    >>> a, b = pt.as_tensor([1.0, 1.0]), pt.as_tensor([4.0, 4.0])
    >>> lp, l1 = pt.as_tensor(np.log([0.2, 0.2])), pt.as_tensor(np.log([0.8, 0.8]))
    >>> out = best_of_r_zi_logp(K, D, r, a, b, lp, l1).eval()
    >>> bool(np.allclose(out, bor.best_of_r_zi_logpmf(K, D, r, 0.2, 1.0, 4.0)))
    True
    """
    import pytensor.tensor as pt

    K, D, r = (np.asarray(v, dtype=np.int64).ravel() for v in (K, D, r))
    t = r * (D - K)
    M = K + t
    nterm = np.where(K > 0, K * (r - 1) + 1, 1)
    if np.any(np.log(np.maximum(nterm, 1)) + K * np.log(np.maximum(r, 1)) > 600):
        raise ValueError("K * log(r) too large for the linear-space sum of terms")
    # log B(a + K, b + t) / B(a, b) = [lg(a+K) - lg(a)] + [lg(b+t) - lg(b)] - [lg(kab+M) - lg(kab)]
    base = pt.as_tensor(cf.log_binom(D, K))
    pos = np.flatnonzero(K > 0)
    if pos.size:
        base = pt.inc_subtensor(base[pos], pt.gammaln(a[pos] + K[pos]) - pt.gammaln(a[pos]))
    tp = np.flatnonzero(t > 0)
    if tp.size:
        base = pt.inc_subtensor(base[tp], pt.gammaln(b[tp] + t[tp]) - pt.gammaln(b[tp]))
    if kappa is None:
        kab = a + b
        base = base - (pt.gammaln(kab + M) - pt.gammaln(kab))
    else:
        kidx = np.asarray(kappa_index, dtype=np.int64).ravel()
        pairs, inv = np.unique(np.stack([kidx, M], axis=1), axis=0, return_inverse=True)
        kp = kappa[pairs[:, 0]]
        table = pt.gammaln(kp + pairs[:, 1]) - pt.gammaln(kp)
        base = base - table[inv.ravel()]
        kab = kappa[kidx]
    extras = []
    for idx in _buckets(nterm):
        width = int(nterm[idx].max())
        coef = _pad_coefs(K[idx], r[idx], width)
        j = np.arange(width - 1, dtype=float)[None, :]
        y = (b[idx] + t[idx])[:, None]
        ratio = (y + j) / (kab[idx][:, None] + M[idx][:, None] + j)
        R = pt.concatenate([pt.ones((idx.size, 1)), pt.cumprod(ratio, axis=1)], axis=1)
        extras.append((idx, pt.log(pt.sum(coef * R, axis=1))))
    zero = K == 0
    if total:
        w0 = np.where(zero & (D > 0), 1.0, 0.0)
        w1 = np.where(zero, 0.0, 1.0)
        out = pt.sum(w0 * pt.logaddexp(log_pi, log_1m_pi + base))
        out += pt.sum(w1 * (log_1m_pi + base))
        return out + sum((pt.sum(e) for _, e in extras), pt.constant(0.0))
    slab = base
    for idx, e in extras:
        slab = pt.inc_subtensor(slab[idx], e)
    return pt.switch(zero, pt.logaddexp(log_pi, log_1m_pi + slab), log_1m_pi + slab)


def as_condition_map(value, conditions: list[str], name: str, cast) -> dict[str, Any]:
    if isinstance(value, Mapping):
        unknown = set(value) - set(conditions)
        if unknown:
            raise ValueError(f"{name}: unknown condition(s) {sorted(unknown)}; known {conditions}")
        default = 1
        return {c: cast(value.get(c, default)) for c in conditions}
    return {c: cast(value) for c in conditions}


class Layout:
    """Units (group, problem) x conditions grid of the data (D = 0 where not observed)."""

    def __init__(self, data: RolloutData, conditions: list[str], features: list[str]):
        cells = data.cells
        key = cells["group"].astype(str) + "\x1f" + cells["problem"].astype(str)
        unit_code, uniq = pd.factorize(key, sort=False)
        first = np.unique(unit_code, return_index=True)[1]
        self.problem = cells["problem"].to_numpy()[first].astype(str)
        self.group_label = cells["group"].to_numpy()[first].astype(str)
        self.groups = list(dict.fromkeys(self.group_label))
        self.group = np.array([self.groups.index(g) for g in self.group_label], dtype=np.int64)
        cond = cells["condition"].astype(str).map({c: j for j, c in enumerate(conditions)})
        self.cell_unit = unit_code.astype(np.int64)
        self.cell_cond = cond.to_numpy().astype(np.int64)
        shape = (len(uniq), len(conditions))
        self.K = np.zeros(shape, np.int64)
        self.D = np.zeros(shape, np.int64)
        self.K[self.cell_unit, self.cell_cond] = cells["k"].to_numpy()
        self.D[self.cell_unit, self.cell_cond] = cells["n"].to_numpy()
        self.X = np.zeros((len(uniq), len(features)))
        for f, name in enumerate(features):
            values = cells[name].to_numpy(dtype=float)
            ref = values[first][self.cell_unit]
            bad = values != ref
            if bad.any():
                row = int(np.argmax(bad))
                raise DataError(
                    f"column {name!r}, row {row}: feature differs between conditions of problem "
                    f"{cells['problem'].iloc[row]!r}; features must be per problem"
                )
            self.X[:, f] = values[first]
        self.labels = (
            self.problem
            if len(self.groups) == 1
            else np.array([f"{g}/{p}" for g, p in zip(self.group_label, self.problem, strict=True)])
        )

    @property
    def n_units(self) -> int:
        return self.K.shape[0]


def simulate_interventions(
    n_problems: int = 200,
    conditions: Sequence[str] = ("retry", "hint", "steer"),
    contexts: int = 10,
    attempts: int = 3,
    alpha: Sequence[float] = (-1.5, -1.0, -2.0),
    loading: Sequence[float] = (1.5, 1.5, 1.5),
    kappa: Sequence[float] = (5.0, 5.0, 5.0),
    lam: Sequence[float] = (-2.0, -2.0, -2.0),
    rho: float = 1.0,
    gamma: Sequence[float] = (0.0, 0.0, 1.0),
    delta: Sequence[float] = (0.0, 0.0, 0.0),
    selection_rollouts: int | None = None,
    random_seed: int | None = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate the generative model of :class:`InterventionModel` with one feature ``x0``.

    Parameters
    ----------
    n_problems : int
        Problems simulated (before selection).
    conditions : sequence of str
        Condition names, the first is the baseline.
    contexts, attempts : int
        D contexts per cell, each rescued by best-of-``attempts``.
    alpha, loading, kappa, lam, gamma, delta : sequence of float
        One value per condition (``gamma``, ``delta``: coefficient of the feature).
    rho : float
        Loading of the structural propensity on ``-u``.
    selection_rollouts : int, optional
        Add an ``"original"`` condition of this many single rollouts (its
        parameters: the baseline's) and keep only problems with a failure there.

    Returns
    -------
    counts : pandas.DataFrame
        problem_id, condition, n, k, x0.
    truth : pandas.DataFrame
        problem_id, condition, p, structural, u (selected problems only).

    Examples
    --------
    >>> counts, truth = simulate_interventions(n_problems=5, random_seed=0)
    >>> sorted(counts["condition"].unique())
    ['hint', 'retry', 'steer']
    """
    from scipy.special import expit

    rng = np.random.default_rng(random_seed)
    conds = list(conditions)
    pars = [np.asarray(v, float) for v in (alpha, loading, kappa, lam, gamma, delta)]
    if selection_rollouts:
        conds.append("original")
        pars = [np.append(v, v[0]) for v in pars]
    al, lo, ka, la, ga, de = pars
    u = rng.normal(size=n_problems)
    x = rng.normal(size=n_problems)
    mu = expit(al[None, :] + lo[None, :] * u[:, None] + ga[None, :] * x[:, None])
    pi = expit(la[None, :] - rho * u[:, None] + de[None, :] * x[:, None])
    z = rng.random(mu.shape) < pi
    p = np.where(z, 0.0, rng.beta(mu * ka, (1 - mu) * ka))
    r = np.full(len(conds), attempts)
    D = np.full(len(conds), contexts)
    if selection_rollouts:
        r[-1], D[-1] = 1, selection_rollouts
    q = 1.0 - (1.0 - p) ** r[None, :]
    k = rng.binomial(D[None, :], q)
    keep = np.ones(n_problems, bool) if not selection_rollouts else k[:, -1] < D[-1]
    ids = np.array([f"p{i}" for i in range(n_problems)])
    rows, truth = [], []
    for i in np.flatnonzero(keep):
        for j, c in enumerate(conds):
            rows.append((ids[i], c, int(D[j]), int(k[i, j]), x[i]))
            truth.append((ids[i], c, p[i, j], bool(z[i, j]), u[i]))
    counts = pd.DataFrame(rows, columns=["problem_id", "condition", "n", "k", "x0"])
    truth_df = pd.DataFrame(truth, columns=["problem_id", "condition", "p", "structural", "u"])
    return counts, truth_df
