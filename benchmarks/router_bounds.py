"""What the three features allow: feature-only reference routers (part ``bounds``).

The issue's goal asks the Bayesian router to beat the best fixed intervention under
honest refits. Whether *any* router built on the three trajectory features can, is a
property of the data, not of our model. This part fits simple, assumption-light
routers, with no Bayesian model, on the features alone and scores them exactly as
the Bayesian router is scored (observed rate of the chosen intervention, paired with
the best fixed intervention chosen on the same training rows, 89 % bootstrap
intervals over problems within cells):

* ``knn_K``: within the failure's cell, the intervention with the best mean observed
  rate among its K nearest training failures (Euclidean, features z-scored within
  the cell);
* ``ridge_cell_L``: per cell and intervention, a ridge regression of the observed
  rate on the z-scored features (penalty L on the slopes), the largest prediction;
* ``ridge_pooled_L``: the same with shared slopes and one intercept per cell.

Protocols: ``loo`` (each failure against the other failures of its population:
its cell's, or all cells' for the pooled ridge) and ``cv`` (the folds of part
``cv``, :func:`router_scoring.cv_folds`). Populations: all failures, and
Steerable-Hard (routers trained on, and the best fixed chosen on, Steerable-Hard
training rows, like the paper's z-scores). The features are z-scored over the whole
population of a cell (features are known for every failure before any
intervention, as in the paper's rule); no outcome of a scored row is ever used for
its own choice.

The family is small and chosen before looking at the scores, but reading off its
best member is still optimistic; none needs a sampler (seconds on one core).

Examples
--------
>>> import numpy as np
>>> V = np.array([[0.0, 1.0, 0, 0], [0.0, 1.0, 0, 0], [1.0, 0.0, 0, 0]])
>>> Z = np.array([[0.0], [0.1], [5.0]])
>>> knn_choice(Z, V, np.array([0, 1, 2]), np.array([0]), k=1).tolist()
[1]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from router_scoring import INT, best_fixed, bootstrap, cv_folds, loo_best_fixed, steerable

from bayes_regimes import paper

#: The reference routers: name -> (kind, parameter), fixed before any scoring.
ROUTERS = {
    "knn_10": ("knn", 10),
    "knn_40": ("knn", 40),
    "knn_160": ("knn", 160),
    "ridge_cell_0": ("ridge_cell", 0.0),
    "ridge_cell_100": ("ridge_cell", 100.0),
    "ridge_pooled_0": ("ridge_pooled", 0.0),
    "ridge_pooled_100": ("ridge_pooled", 100.0),
}


def zscores(df: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """The three features z-scored within each cell over ``rows`` (NaN elsewhere)."""
    x = df[list(paper.FEATURES)].to_numpy(float)
    z = np.full_like(x, np.nan)
    cells = df["cell"].to_numpy()
    for cell in dict.fromkeys(cells):
        m = rows & (cells == cell)
        sd = x[m].std(axis=0)
        z[m] = (x[m] - x[m].mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return z


def knn_choice(z: np.ndarray, v: np.ndarray, train: np.ndarray, test: np.ndarray, k: int):
    """Per test row (indices), the column of ``v`` with the best mean over its k nearest
    training rows (indices; the test row itself is never among them)."""
    d = ((z[test][:, None, :] - z[train][None, :, :]) ** 2).sum(-1)
    d[test[:, None] == train[None, :]] = np.inf
    k = min(k, len(train) - np.isin(test, train).any())
    near = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.argmax(v[train][near].mean(axis=1), axis=1)


def ridge_choice(a: np.ndarray, v: np.ndarray, train, test, penalty: np.ndarray):
    """Per test row, the column of ``v`` with the largest ridge prediction from design
    ``a`` fitted on the training rows (``penalty`` per design column)."""
    at = a[train]
    w = np.linalg.solve(at.T @ at + np.diag(penalty) + 1e-9 * np.eye(a.shape[1]), at.T @ v[train])
    return np.argmax(a[test] @ w, axis=1)


def _route(df, kind, param, z, pop, train_of) -> np.ndarray:
    """Choices (indices into INT) of every row of ``pop``; ``train_of(pop)`` yields
    (test mask, training mask) pairs covering it."""
    v = df[INT].to_numpy(float)
    cells = df["cell"].to_numpy()
    z0 = np.nan_to_num(z)  # NaN only outside the population: never a training row
    if kind == "ridge_cell":
        a, pen = np.column_stack([np.ones(len(df)), z0]), np.r_[0.0, np.full(3, param)]
    elif kind == "ridge_pooled":
        dummies = (cells[:, None] == np.array(list(dict.fromkeys(cells)))[None, :]).astype(float)
        a = np.column_stack([dummies, z0])
        pen = np.r_[np.zeros(dummies.shape[1]), np.full(3, param)]
    out = np.full(len(df), -1)
    for test, train in _test_groups(df, pop, train_of, pooled=kind == "ridge_pooled"):
        if kind == "knn":
            out[test] = knn_choice(z, v, np.flatnonzero(train), test, int(param))
        else:
            out[test] = ridge_choice(a, v, train, test, pen)
    return out


def _test_groups(df, pop, train_of, pooled: bool):
    """(test row indices, training mask) pairs covering ``pop``."""
    cells = df["cell"].to_numpy()
    for test_mask, train in train_of(pop):
        for cell in dict.fromkeys(cells[test_mask]):
            test = np.flatnonzero(test_mask & (cells == cell))
            yield test, train & (True if pooled else cells == cell)


def _loo_splits(pop):
    for i in np.flatnonzero(pop):
        test = np.zeros(pop.size, bool)
        test[i] = True
        yield test, pop & ~test


def part_bounds(df: pd.DataFrame, folds: int, seed: int) -> dict:
    """Every reference router under LOO and CV, both populations, vs best fixed."""
    rng = np.random.default_rng(seed)
    fold = cv_folds(df, folds, seed)
    cells = df["cell"].to_numpy()
    v = df[INT].to_numpy(float)
    out: dict = {"routers": {k: list(p) for k, p in ROUTERS.items()}, "rows": []}
    for pop_name, pop in (("all", np.ones(len(df), bool)), ("steerable_hard", steerable(df))):
        z = zscores(df, pop)
        best = {"loo": loo_best_fixed(df, pop), "cv": np.full(len(df), None, object)}
        for f in range(folds):  # as part cv: per cell, on the training folds
            for cell in dict.fromkeys(cells):
                in_cell = pop & (cells == cell)
                best["cv"][in_cell & (fold == f)] = best_fixed(df[in_cell & (fold != f)])
        splits = {
            "loo": _loo_splits,
            "cv": lambda p: (((fold == f) & p, (fold != f) & p) for f in range(folds)),
        }
        for protocol, train_of in splits.items():
            fixed = np.array([INT.index(b) for b in best[protocol][pop]])
            for name, (kind, param) in ROUTERS.items():
                choice = _route(df, kind, param, z, pop, train_of)[pop]
                got = v[pop][np.arange(pop.sum()), choice]
                ref = v[pop][np.arange(pop.sum()), fixed]
                mean, low, high = bootstrap(got - ref, cells[pop], rng)
                out["rows"].append(
                    {
                        "protocol": protocol,
                        "population": pop_name,
                        "router": name,
                        "n": int(pop.sum()),
                        "rate": float(got.mean()),
                        "best_fixed": float(ref.mean()),
                        "diff": mean,
                        "low": low,
                        "high": high,
                        "above_zero": bool(low > 0),
                    }
                )
    return out
