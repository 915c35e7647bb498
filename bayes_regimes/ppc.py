"""Posterior predictive check of the distribution of k, from the exact marginal pmf.

For every stratum and distinct n, the observed number of cells in each k bin is set
beside the posterior predictive number: a multinomial replicate per draw of the
hyper-parameters, from the exact zero-inflated marginal pmf of k (any slab of
:mod:`bayes_regimes.slabs`). Used by :meth:`RegimeModel.ppc
<bayes_regimes.models.regime.RegimeModel.ppc>` and every model built on it; plot the
table with :func:`bayes_regimes.plots.plot_ppc`.

Examples
--------
>>> _k_bins(3).tolist()
[0, 1, 2, 3, 4]
>>> _k_bins(1000).tolist()[:4]
[0, 1, 2, 4]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_regimes.queries import CI_PROB, PatternPosterior, _bounds, population_expect, slab_of


def _k_bins(n: int) -> np.ndarray:
    """Edges of k bins for the PPC: every k for small n, else 0, 1, then geometric."""
    if n <= 20:
        return np.arange(n + 2)
    inner = np.unique(np.round(np.geomspace(2, n, 10)).astype(int))
    return np.unique(np.concatenate([[0, 1], inner[inner < n], [n, n + 1]]))


def ppc_table(
    post: PatternPosterior,
    *,
    max_draws: int = 400,
    ci_prob: float = CI_PROB,
    random_seed: int | None = 0,
) -> pd.DataFrame:
    """Posterior predictive check of the distribution of k, per (stratum, n).

    For every stratum and distinct n, the observed number of cells in each k bin
    against the posterior predictive number (mean and interval of a multinomial
    replicate per draw, from the exact marginal pmf of k).
    """
    rng = np.random.default_rng(random_seed)
    lo, hi = _bounds(ci_prob)
    draws = rng.choice(post.n_draws, size=min(max_draws, post.n_draws), replace=False)
    frame = pd.DataFrame({"s": post.stratum, "n": post.n, "k": post.k, "c": post.count})
    rows = []
    for (s, n), sub in frame.groupby(["s", "n"], sort=True):
        n = int(n)
        edges = _k_bins(n)
        total = int(sub["c"].sum())
        obs = np.histogram(sub["k"], bins=edges, weights=sub["c"])[0]
        kk = np.arange(n + 1)
        pmf = population_expect(
            post,
            lambda pi, *th, n=n, s=s, kk=kk: np.exp(
                slab_of(post).logpmf(
                    kk[None, :], n, pi[draws, s, None], *(x[draws, s, None] for x in th)
                )
            ),
        )
        pmf_bins = np.add.reduceat(pmf, edges[:-1], axis=1)
        pmf_bins = np.clip(pmf_bins / pmf_bins.sum(axis=1, keepdims=True), 0, 1)
        reps = np.stack([rng.multinomial(total, p) for p in pmf_bins])
        for j in range(len(edges) - 1):
            k_lo, k_hi = int(edges[j]), int(edges[j + 1] - 1)
            label = str(k_lo) if k_lo == k_hi else f"{k_lo}-{k_hi}"
            qs = np.quantile(reps[:, j], [lo, hi])
            rows.append(
                (
                    post.strata[s],
                    n,
                    label,
                    k_lo,
                    k_hi,
                    int(obs[j]),
                    float(total * pmf_bins[:, j].mean()),
                    float(qs[0]),
                    float(qs[1]),
                )
            )
    return pd.DataFrame(
        rows, columns=["group", "n", "bin", "k_lo", "k_hi", "observed", "mean", "low", "high"]
    )
