"""Scoring of routing strategies for ``benchmarks/router.py``.

Each strategy picks one intervention per failure and scores that failure's observed
rate of it (the paper's metric); paired differences get bootstrap intervals over
problems within cells. Also the strategies' choices (the paper's rule, the best
fixed intervention, resample, the oracle) and the failure-topography classifier
(multinomial logistic regression, k-fold accuracy).

Examples
--------
>>> import numpy as np, pandas as pd
>>> df = pd.DataFrame({"cell": ["a", "a"], **{c: [0.2, 0.4] for c in INT}})
>>> df["local_temp"] = [0.9, 0.1]
>>> str(best_fixed(df))
'local_temp'
>>> pick(np.array([[0.5, 0.1, 0.2, 0.3, 0.9]])).tolist()
['dense_steer']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_regimes import paper

#: The paper's interventions, and the routing candidates (plain retry first).
INT = list(paper.INTERVENTIONS)
CANDS = ["retry", *INT]
#: Bootstrap resamples and interval level of the paired differences.
B_BOOT = 4000
LEVEL = 0.89


def steerable(df: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the failures in the paper's Steerable-Hard outcome regime."""
    return (paper.outcome_regimes(df) == "steerable").to_numpy()


def pick(pred: np.ndarray) -> np.ndarray:
    """The intervention of largest expected rescue per row of ``pred`` (CANDS order)."""
    return np.array(INT, dtype=object)[np.argmax(pred[:, 1:], axis=1)]


def rule_choice(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Paper's rule per row: z over the cell (all) and over the cell's steerable rows."""
    all_ops = np.empty(len(df), dtype=object)
    sh_ops = np.full(len(df), None, dtype=object)
    steer = steerable(df)
    for cell in dict.fromkeys(df["cell"]):
        rows = (df["cell"] == cell).to_numpy()
        all_ops[rows] = paper.route(df[rows]).to_numpy()
        sub = rows & steer
        sh_ops[sub] = paper.route(df[sub]).to_numpy()
    return all_ops, sh_ops


def best_fixed(train: pd.DataFrame) -> str:
    """The intervention with the best mean observed rate over ``train``."""
    means = train[INT].mean().to_numpy()
    return INT[int(np.argmax(means))]


def loo_best_fixed(df: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Per row of ``rows``: the intervention with the best mean over the other rows of
    its cell in ``rows`` (None outside ``rows``)."""
    out = np.full(len(df), None, dtype=object)
    vals = df[INT].to_numpy()
    for cell in dict.fromkeys(df["cell"]):
        m = rows & (df["cell"] == cell).to_numpy()
        idx = np.flatnonzero(m)
        tot = vals[idx].sum(axis=0)
        for i in idx:
            out[i] = INT[int(np.argmax((tot - vals[i]) / max(idx.size - 1, 1)))]
    return out


def cv_folds(df: pd.DataFrame, folds: int, seed: int) -> np.ndarray:
    """Fold of every row: problems split into ``folds`` folds within each cell."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(df), np.int64)
    for cell in dict.fromkeys(df["cell"]):
        idx = np.flatnonzero(df["cell"].to_numpy() == cell)
        fold[rng.permutation(idx)] = np.arange(idx.size) % folds
    return fold


def bootstrap(diff: np.ndarray, cells: np.ndarray, rng) -> tuple[float, float, float]:
    """Mean paired difference and its bootstrap interval (resampling within cells);
    NaNs for an empty population."""
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan")
    groups = [np.flatnonzero(cells == c) for c in dict.fromkeys(cells)]
    stats = np.empty(B_BOOT)
    for b in range(B_BOOT):
        idx = np.concatenate([rng.choice(g, g.size) for g in groups])
        stats[b] = diff[idx].mean()
    lo, hi = np.quantile(stats, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(diff.mean()), float(lo), float(hi)


def score(df: pd.DataFrame, choices: dict[str, np.ndarray], population: np.ndarray, seed: int):
    """Rescue rates per strategy and paired differences, per cell and pooled."""
    rng = np.random.default_rng(seed)
    rates = df[list(paper.RATES)]
    got = {}
    for name, ops in choices.items():
        ops = np.asarray(ops, dtype=object)
        val = np.full(len(df), np.nan)
        ok = population & (ops != None)  # noqa: E711
        for c in paper.RATES:
            sel = ok & (ops == c)
            val[sel] = rates[c].to_numpy()[sel]
        got[name] = val
    cells = df["cell"].to_numpy()
    rows = []
    for cell in [*dict.fromkeys(cells), "pooled"]:
        m = population & ((cells == cell) if cell != "pooled" else True)
        rows.append(
            {"cell": cell, "n": int(m.sum())}
            | {k: float(v[m].mean()) if m.any() else float("nan") for k, v in got.items()}
        )
    diffs = []
    for ref in [k for k in got if k not in ("bayes", "bayes_count")]:
        for router in [k for k in ("bayes", "bayes_count") if k in got]:
            for cell in [*dict.fromkeys(cells), "pooled"]:
                m = population & ((cells == cell) if cell != "pooled" else True)
                d = got[router][m] - got[ref][m]
                mean, lo, hi = bootstrap(d, cells[m], rng)
                diffs.append(
                    {
                        "router": router,
                        "vs": ref,
                        "cell": cell,
                        "n": int(m.sum()),
                        "diff": mean,
                        "low": lo,
                        "high": hi,
                        "above_zero": bool(lo > 0),
                    }
                )
    return rows, diffs


def choices(df, pred_feat, pred_obs, best_all, best_sh):
    """Every strategy's pick per failure, for all failures and for Steerable-Hard."""
    rule_all, rule_sh = rule_choice(df)
    base = {"bayes": pick(pred_feat), "bayes_count": pick(pred_obs)}
    oracle = np.array(INT, dtype=object)[np.argmax(df[INT].to_numpy(), axis=1)]
    return tuple(
        base
        | {
            "paper_rule": rule,
            "best_fixed": best,
            "resample": np.full(len(df), "retry", object),
            "oracle": oracle,
        }
        for rule, best in ((rule_all, best_all), (rule_sh, best_sh))
    )


def evaluate(df, pred_feat, pred_obs, best_all, best_sh, diags, seed):
    """Rates and paired differences of every strategy (all failures, Steerable-Hard)."""
    ch_all, ch_sh = choices(df, pred_feat, pred_obs, best_all, best_sh)
    everyone = np.ones(len(df), bool)
    rates_all, diff_all = score(df, ch_all, everyone, seed)
    rates_sh, diff_sh = score(df, ch_sh, steerable(df), seed + 1)
    return {
        "all": {"rates": rates_all, "diffs": diff_all},
        "steerable_hard": {"rates": rates_sh, "diffs": diff_sh},
        "fits": diags,
        "choice_counts": pd.Series(ch_all["bayes"]).value_counts().to_dict(),
    }


# ------------------------------------------------------------------ topography
def _softmax_fit(X: np.ndarray, y: np.ndarray, n_class: int, l2: float = 1e-2) -> np.ndarray:
    """Multinomial logistic regression (intercept + X), L2-penalised, by L-BFGS."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    Xb = np.column_stack([np.ones(len(X)), X])
    Y = np.eye(n_class)[y]

    def loss(w):
        W = w.reshape(Xb.shape[1], n_class)
        eta = Xb @ W
        lse = logsumexp(eta, axis=1, keepdims=True)
        P = np.exp(eta - lse)
        val = -np.sum(Y * (eta - lse)) + l2 * np.sum(W[1:] ** 2)
        grad = Xb.T @ (P - Y)
        grad[1:] += 2 * l2 * W[1:]
        return val, grad.ravel()

    w0 = np.zeros(Xb.shape[1] * n_class)
    return minimize(loss, w0, jac=True, method="L-BFGS-B").x.reshape(Xb.shape[1], n_class)


def cv_accuracy(X: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> dict:
    """k-fold accuracy of a multinomial logistic regression, with a majority baseline."""
    classes, y = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(y)) % folds
    hit = np.zeros(len(y), bool)
    base = np.zeros(len(y), bool)
    for f in range(folds):
        te, tr = fold == f, fold != f
        mu, sd = X[tr].mean(0), X[tr].std(0)
        W = _softmax_fit((X[tr] - mu) / sd, y[tr], len(classes))
        pred = np.argmax(np.column_stack([np.ones(te.sum()), (X[te] - mu) / sd]) @ W, axis=1)
        hit[te] = pred == y[te]
        base[te] = y[te] == np.bincount(y[tr], minlength=len(classes)).argmax()
    per_fold = [hit[fold == f].mean() for f in range(folds)]
    return {
        "accuracy": float(hit.mean()),
        "sd_over_folds": float(np.std(per_fold)),
        "majority": float(base.mean()),
        "n": int(len(y)),
        "classes": classes.tolist(),
    }
