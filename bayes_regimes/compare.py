"""Pattern-weighted PSIS-LOO and model comparison.

Cells that share a (group, n, k) pattern are exchangeable, so leaving out any one of
them gives the same pointwise elpd. ArviZ's PSIS-LOO is therefore run once per
pattern on the per-pattern log-likelihood stored by every fit, and

    elpd_loo = sum over patterns of count * elpd_loo(pattern),

with the standard error computed over cells (each pattern's value repeated
``count`` times) without ever expanding to one entry per cell.

Examples
--------
>>> from bayes_regimes import RolloutData, simulate_benchmark
>>> from bayes_regimes.compare import compare_models
>>> data = RolloutData.from_counts(simulate_benchmark(n_problems=300).counts)
>>> table = compare_models(data, draws=300, tune=300, chains=2)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayes_regimes.data import RolloutData


@dataclass(frozen=True)
class PatternLOO:
    """PSIS-LOO of one fit, aggregated over patterns.

    Attributes
    ----------
    elpd, se, p_loo : float
        Expected log predictive density over all cells, its standard error and
        the effective number of parameters.
    elpd_pattern, pareto_k, count : numpy.ndarray
        Per pattern: pointwise elpd of one cell, Pareto k, number of cells.
    """

    elpd: float
    se: float
    p_loo: float
    elpd_pattern: np.ndarray
    pareto_k: np.ndarray
    count: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.count.sum())

    @property
    def n_bad_k(self) -> int:
        """Cells whose pattern has Pareto k > 0.7 (LOO unreliable there)."""
        return int(self.count[self.pareto_k > 0.7].sum())


def _weighted_se(values: np.ndarray, count: np.ndarray) -> float:
    n = count.sum()
    mean = np.sum(count * values) / n
    # Same convention as ArviZ: sqrt(n * var) with the n - 1 denominator.
    return float(np.sqrt(n * np.sum(count * (values - mean) ** 2) / max(n - 1, 1)))


def loo(model) -> PatternLOO:
    """Pattern-weighted PSIS-LOO of a fitted model.

    Parameters
    ----------
    model : BaseModel
        A fitted model (its DataTree has ``log_likelihood`` with dim ``pattern``).
    """
    import arviz as az

    dt = model._require_fit()
    res = az.loo(dt, pointwise=True, var_name="k")
    elpd_i = np.asarray(res.elpd_i.values, float)
    k = np.asarray(res.pareto_k.values, float)
    count = dt["observed_data"]["count"].values.astype(float)
    if res.p_loo_i is not None:
        p_i = np.asarray(res.p_loo_i.values, float)
    else:  # ArviZ 1.x leaves p_loo_i empty: p_loo_i = lppd_i - elpd_loo_i
        from scipy.special import logsumexp

        ll = dt["log_likelihood"]["k"].transpose("chain", "draw", "pattern").values
        ll = ll.reshape(-1, ll.shape[-1])
        p_i = logsumexp(ll, axis=0) - np.log(ll.shape[0]) - elpd_i
    return PatternLOO(
        elpd=float(np.sum(count * elpd_i)),
        se=_weighted_se(elpd_i, count),
        p_loo=float(np.sum(count * p_i)),
        elpd_pattern=elpd_i,
        pareto_k=k,
        count=count,
    )


def compare(models: dict[str, Any]) -> pd.DataFrame:
    """Compare fitted models of the same data by pattern-weighted PSIS-LOO.

    Returns
    -------
    pandas.DataFrame
        Indexed by model name, best first: rank, elpd_loo, se, p_loo, elpd_diff,
        dse (SE of the difference to the best), pseudo_bma_weight and n_bad_k.
    """
    if len(models) < 1:
        raise ValueError("compare needs at least one model")
    results = {name: loo(m) for name, m in models.items()}
    shapes = {r.elpd_pattern.shape for r in results.values()}
    if len(shapes) != 1 or len({tuple(r.count) for r in results.values()}) != 1:
        raise ValueError("models must be fitted to the same data to be compared")
    best = max(results, key=lambda n: results[n].elpd)
    b = results[best]
    rows = []
    for name, r in results.items():
        diff = b.elpd_pattern - r.elpd_pattern
        rows.append(
            {
                "model": name,
                "elpd_loo": r.elpd,
                "se": r.se,
                "p_loo": r.p_loo,
                "elpd_diff": b.elpd - r.elpd,
                "dse": 0.0 if name == best else _weighted_se(diff, r.count),
                "n_bad_k": r.n_bad_k,
            }
        )
    out = pd.DataFrame(rows).sort_values("elpd_loo", ascending=False).set_index("model")
    w = np.exp(out["elpd_loo"] - out["elpd_loo"].max())
    out["pseudo_bma_weight"] = w / w.sum()
    out.insert(0, "rank", np.arange(len(out)))
    return out


def candidate_models(data: RolloutData) -> dict[str, Any]:
    """The candidate specifications: every slab, with and without the point mass."""
    from bayes_regimes.models.regime import SLABS, RegimeModel

    out = {}
    for slab in SLABS:
        out[f"zi_{slab}"] = RegimeModel(data, slab=slab, structural=True)
        out[f"plain_{slab}"] = RegimeModel(data, slab=slab, structural=False)
    return out


def compare_models(
    data: RolloutData, models: dict[str, Any] | None = None, **fit_kwargs
) -> pd.DataFrame:
    """Fit the candidate models (or ``models``) and compare them with LOO in one call."""
    models = candidate_models(data) if models is None else models
    fit_kwargs.setdefault("progressbar", False)
    for m in models.values():
        if not m.is_fitted:
            m.fit(**fit_kwargs)
    return compare(models)
