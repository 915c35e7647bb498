"""Do the features say *which* intervention rescues a failure? (part ``signal``).

A router can beat the cell's best fixed intervention only if the features predict
which intervention works for a failure beyond (a) how rescuable the failure is at
all, which moves every intervention together and cannot change the choice, and (b)
the cell's average ranking of the interventions, which the best fixed choice
already uses. What is left is the failure x intervention *interaction*:

    A_ij = V_ij - mean_j' V_ij'  - (its cell mean over failures),

the observed rate V of intervention j for failure i, centred per failure (removes
(a)) and then per cell and intervention (removes (b)). This part tests whether the
z-scored features carry any information on A, by permuting the features among the
failures of each cell (which keeps every cell's feature distribution and every
failure's outcomes, and breaks only their link):

* ``linear``: the share of the interaction's sum of squares explained by a linear
  regression on the three features within each cell, pooled over cells
  (``sum_c tr(A_c' H_c A_c) / sum_c tr(A_c' A_c)``, H_c the hat matrix of the
  cell's centred features); also per cell;
* ``linear_gain``: what that regression is worth for routing, *in sample* (fitted on
  the rows it routes, so optimistic: an upper bound for routers linear in the
  features): the mean observed rate of the intervention with the largest fitted
  rate minus that of the cell's in-sample best fixed intervention;
* ``knn_gain``: the routing gain of a non-linear router, honestly scored: the mean
  observed rate of the leave-one-out ``knn_40`` choice (router_bounds.py) minus
  that of the leave-one-out best fixed intervention. (In a cell of at most 41
  failures the 40 neighbours are the whole cell: the choice ignores the features.)

The p-value is the share of permutations (plus the observed one) with a statistic
at least as large as the observed. A large p-value with the permutation null's
spread narrow means the features are no better than random labels at routing.
No model fit; seconds.

Examples
--------
>>> import numpy as np
>>> v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
>>> z = np.array([[1.0], [-1.0], [1.0], [-1.0]])
>>> round(linear_share(interaction(v, np.zeros(4, int)), z, np.zeros(4, int)), 6)
1.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from router_bounds import knn_choice, zscores
from router_scoring import INT, loo_best_fixed, steerable

#: Permutations of the features within cells, and the kNN router that is permuted.
N_PERM = 999
KNN_K = 40
#: The pooled statistics, in the order :func:`permutation_test` computes them.
STATISTICS = ("linear", "linear_gain", "knn_gain")


def interaction(v: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The failure x intervention interaction of the rates ``v`` (failure, intervention):
    centred per failure, then per cell and intervention."""
    a = v - v.mean(axis=1, keepdims=True)
    for c in np.unique(cell):
        m = cell == c
        a[m] -= a[m].mean(axis=0)
    return a


def _projections(z: np.ndarray, cell: np.ndarray) -> dict:
    """Per cell: an orthonormal basis of its centred features (rank-revealing)."""
    out = {}
    for c in np.unique(cell):
        m = np.flatnonzero(cell == c)
        x = z[m] - z[m].mean(axis=0)
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        out[c] = (m, u[:, s > 1e-9 * max(1.0, s.max(initial=0.0))])
    return out


def _explained(a: np.ndarray, z: np.ndarray, cell: np.ndarray) -> dict:
    """Per cell: (sum of squares of the interaction explained by the features, total)."""
    out = {}
    for c, (m, q) in _projections(z, cell).items():
        am = a[m]
        out[c] = (float(((q.T @ am) ** 2).sum()), float((am**2).sum()))
    return out


def _share(parts) -> float:
    """Explained over total sum of squares of (explained, total) pairs (0 when empty)."""
    parts = list(parts)
    total = sum(t for _, t in parts)
    return sum(e for e, _ in parts) / total if total > 0 else 0.0


def linear_share(a: np.ndarray, z: np.ndarray, cell: np.ndarray) -> float:
    """Share of the interaction ``a`` explained by within-cell linear regressions on ``z``."""
    return _share(_explained(a, z, cell).values())


def linear_gain(v: np.ndarray, z: np.ndarray, cell: np.ndarray) -> float:
    """In-sample routing gain of per-cell least squares of ``v`` on ``z`` over the cell's
    in-sample best fixed column (mean over all rows)."""
    gain = 0.0
    for c in np.unique(cell):
        m = np.flatnonzero(cell == c)
        a = np.column_stack([np.ones(m.size), z[m]])
        fitted = a @ np.linalg.lstsq(a, v[m], rcond=None)[0]
        vm = v[m]
        gain += vm[np.arange(m.size), np.argmax(fitted, axis=1)].sum()
        gain -= vm[:, np.argmax(vm.mean(axis=0))].sum()
    return float(gain / len(v))


def knn_gain(v: np.ndarray, z: np.ndarray, cell: np.ndarray, fixed: np.ndarray) -> float:
    """Mean rate of the leave-one-out kNN choice minus that of the fixed choices."""
    got = np.empty(len(v))
    for c in np.unique(cell):
        m = np.flatnonzero(cell == c)
        pick = knn_choice(z, v, m, m, KNN_K)  # the row itself is never its own neighbour
        got[m] = v[m, pick]
    return float(got.mean() - v[np.arange(len(v)), fixed].mean())


def permutation_test(
    v: np.ndarray, z: np.ndarray, cell: np.ndarray, fixed: np.ndarray, n_perm: int, rng
) -> dict:
    """Observed statistics, permutation p-values and null quantiles (see module docs)."""
    a = interaction(v, cell)
    groups = [np.flatnonzero(cell == c) for c in np.unique(cell)]

    def stats(zz):
        per = _explained(a, zz, cell)
        return (_share(per.values()), linear_gain(v, zz, cell), knn_gain(v, zz, cell, fixed)), per

    obs, obs_cell = stats(z)
    null = np.empty((n_perm, 3))
    null_cell = {c: np.empty(n_perm) for c in obs_cell}
    perm = np.arange(len(z))
    for b in range(n_perm):
        for g in groups:
            perm[g] = rng.permutation(g)
        null[b], per = stats(z[perm])
        for c, et in per.items():
            null_cell[c][b] = _share([et])

    def summary(obs, draws):
        return {
            "observed": obs,
            "p_value": float((1 + np.sum(draws >= obs - 1e-12)) / (1 + draws.size)),
            "null_median": float(np.median(draws)),
            "null_q95": float(np.quantile(draws, 0.95)),
        }

    cells = {}
    for c, et in obs_cell.items():
        cells[str(c)] = {"n": int(np.sum(cell == c)), **summary(_share([et]), null_cell[c])}
    return {
        **{k: summary(obs[j], null[:, j]) for j, k in enumerate(STATISTICS)},
        "cells_linear": cells,
    }


def part_signal(df: pd.DataFrame, seed: int, n_perm: int = N_PERM) -> dict:
    """The permutation tests for all failures and for Steerable-Hard."""
    rng = np.random.default_rng(seed)
    out: dict = {"n_perm": n_perm, "knn_k": KNN_K, "populations": {}}
    for name, pop in (("all", np.ones(len(df), bool)), ("steerable_hard", steerable(df))):
        sub = df[pop].reset_index(drop=True)
        v = sub[INT].to_numpy(float)
        cell = sub["cell"].to_numpy()
        z = zscores(sub, np.ones(len(sub), bool))
        fixed = np.array([INT.index(b) for b in loo_best_fixed(sub, np.ones(len(sub), bool))])
        res = permutation_test(v, z, cell, fixed, n_perm, rng)
        out["populations"][name] = {"n": len(sub), **res}
    return out
