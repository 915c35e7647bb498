"""Rank statistics, uniformity tests and the result object of simulation-based
calibration (Talts et al. 2018), shared by every model's SBC.

If parameters are drawn from a model's prior, data are simulated from them, and the
model is fitted to those data, then the rank of each true value among (thinned)
posterior draws is uniform on 0..L. Departures show a miscalibrated posterior:
ranks piling up at one end mean bias, a U shape overconfidence, a hump
underconfidence. Uniformity is tested per quantity by a chi-square test over rank
bins and by the simultaneous ECDF test of Säilynoja, Bürkner & Vehtari (2022),
whose band :meth:`SBCResult.plot` shows. The model-specific loops live in
:mod:`bayes_regimes.sbc` (the core model) and :mod:`bayes_regimes.sbc_models`
(crossed and intervention models).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> truth = rng.normal(size=(300, 1))
>>> data = truth + rng.normal(size=(300, 1))  # y ~ N(theta, 1), theta ~ N(0, 1)
>>> post = data[:, None] / 2 + rng.normal(size=(300, 99, 1)) / np.sqrt(2)  # exact posterior
>>> ranks = np.stack([rank_statistic(t, d, rng) for t, d in zip(truth, post)])
>>> res = SBCResult.from_arrays(ranks, truth, n_rank_draws=99, parameters=["theta"])
>>> bool(res.uniformity().loc["theta", "chi2_pvalue"] > 0.01)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from scipy.special import bdtr

__all__ = [
    "SBCResult",
    "chi2_uniformity",
    "ecdf_uniformity",
    "plot_sbc",
    "rank_statistic",
    "thin_draws",
]

_N_NULL = 4000


# ---------------------------------------------------------------------------
# rank statistics and uniformity tests
# ---------------------------------------------------------------------------
def rank_statistic(
    truth: np.ndarray, draws: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Rank of the true value among posterior draws, per parameter.

    Parameters
    ----------
    truth : array, shape (P,)
        True parameter values.
    draws : array, shape (L, P)
        Posterior draws (thinned: ideally nearly independent).
    rng : numpy.random.Generator, optional
        Breaks ties (a draw equal to the truth) at random, as SBC requires.

    Returns
    -------
    numpy.ndarray of int, shape (P,)
        Number of draws below the truth (0..L), uniform under calibration.

    Examples
    --------
    >>> import numpy as np
    >>> rank_statistic(np.array([0.25]), np.array([[0.1], [0.2], [0.3]])).tolist()
    [2]
    """
    truth = np.atleast_1d(np.asarray(truth, float))
    draws = np.asarray(draws, float).reshape(len(draws), -1)
    if draws.shape[1] != truth.size:
        raise ValueError(f"draws have {draws.shape[1]} parameter(s), truth has {truth.size}")
    below = (draws < truth).sum(axis=0)
    ties = (draws == truth).sum(axis=0)
    if ties.any():
        rng = rng or np.random.default_rng(0)
        below = below + rng.integers(0, ties + 1)
    return below.astype(np.int64)


def thin_draws(values: np.ndarray, n: int) -> np.ndarray:
    """``n`` evenly spaced draws of (chain, draw, ...) values, thinned within chains.

    Returns an array of shape (n, ...). Each chain contributes an equal share (up
    to one draw), taken at equal strides to reduce autocorrelation.
    """
    values = np.asarray(values)
    chains, draws = values.shape[:2]
    if n > chains * draws:
        raise ValueError(f"cannot thin {chains * draws} draws to {n}")
    share = np.diff(np.linspace(0, n, chains + 1).round().astype(int))
    picked = [
        values[c, np.linspace(0, draws - 1, s).round().astype(int)]
        for c, s in enumerate(share)
        if s
    ]
    return np.concatenate(picked, axis=0)


def _default_bins(n_sims: int, n_rank_draws: int) -> int:
    return int(max(2, min(20, n_sims // 5, n_rank_draws + 1)))


def chi2_uniformity(
    ranks: np.ndarray, n_rank_draws: int, bins: int | None = None
) -> tuple[float, int, float]:
    """Chi-square test that ranks are uniform on 0..``n_rank_draws``.

    Ranks are grouped into ``bins`` bins (default: about 5+ expected per bin, at
    most 20) with exact expected probabilities (bins may hold unequal numbers of
    rank values).

    Returns
    -------
    statistic, df, p_value
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    n_values = n_rank_draws + 1
    if ranks.size == 0:
        return float("nan"), 0, float("nan")
    if ranks.min() < 0 or ranks.max() > n_rank_draws:
        raise ValueError(f"ranks must lie in 0..{n_rank_draws}")
    bins = bins or _default_bins(ranks.size, n_rank_draws)
    if not 2 <= bins <= n_values:
        raise ValueError(f"bins must be in 2..{n_values}, got {bins}")
    edges = np.arange(n_values) * bins // n_values
    observed = np.bincount(edges[ranks], minlength=bins)
    expected = ranks.size * np.bincount(edges, minlength=bins) / n_values
    stat = float(((observed - expected) ** 2 / expected).sum())
    return stat, bins - 1, float(stats.chi2.sf(stat, bins - 1))


def _ecdf_gamma(u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Smallest two-sided pointwise binomial tail of the ECDF of rows of ``u`` at z."""
    u = np.sort(u, axis=-1)
    n = u.shape[-1]
    counts = np.stack([np.searchsorted(row, z, side="right") for row in u.reshape(-1, n)])
    lower = bdtr(counts, n, z)  # P(X <= count)
    upper = 1.0 - np.where(counts > 0, bdtr(np.maximum(counts - 1, 0), n, z), 0.0)  # P(X >= c)
    return 2.0 * np.minimum(lower, upper).min(axis=-1).reshape(u.shape[:-1])


@lru_cache(maxsize=64)
def _ecdf_null(n: int, n_points: int) -> np.ndarray:
    rng = np.random.default_rng(20220511)
    z = np.arange(1, n_points) / n_points
    return np.sort(_ecdf_gamma(rng.random((_N_NULL, n)), z))


def _pit(ranks: np.ndarray, n_rank_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Randomised PIT values: exactly Uniform(0, 1) when ranks are uniform on 0..L."""
    return (np.asarray(ranks) + rng.random(np.shape(ranks))) / (n_rank_draws + 1)


def ecdf_uniformity(pit: np.ndarray, n_points: int | None = None) -> float:
    """p-value of the simultaneous ECDF uniformity test (Säilynoja et al. 2022).

    The statistic is the smallest two-sided binomial tail probability of the ECDF
    of ``pit`` over ``n_points`` evaluation points; its null distribution is
    simulated (cached per sample size).
    """
    pit = np.asarray(pit, float)
    if pit.size < 2:
        return float("nan")
    n_points = n_points or min(pit.size, 100)
    z = np.arange(1, n_points) / n_points
    gamma = _ecdf_gamma(pit[None, :], z)[0]
    null = _ecdf_null(pit.size, n_points)
    return float((np.searchsorted(null, gamma, side="right") + 1) / (null.size + 1))


def _ecdf_band(n: int, n_points: int, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous ``prob`` band of the ECDF of n uniforms, at z = i / n_points."""
    z = np.arange(0, n_points + 1) / n_points
    gamma = np.quantile(_ecdf_null(n, n_points), 1 - prob)
    lower = stats.binom.ppf(gamma / 2, n, z) / n
    upper = stats.binom.ppf(1 - gamma / 2, n, z) / n
    return z, lower, upper


# ---------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SBCResult:
    """Outcome of an SBC run.

    Attributes
    ----------
    ranks : xarray.DataArray
        Rank of the truth among ``n_rank_draws`` posterior draws, dims
        (simulation, parameter).
    truth : xarray.DataArray
        The prior draws, dims (simulation, parameter).
    n_rank_draws : int
        Posterior draws each rank is taken among (ranks lie in 0..n_rank_draws).
    fits : pandas.DataFrame
        One row per simulation: ``ok`` (passed the diagnostics), divergences,
        max_r_hat, min_ess_bulk, min_ess_tail, seconds and ``problems``.
    label : str
        Name of the model variant.
    settings : dict
        Design and sampler settings.
    """

    ranks: xr.DataArray
    truth: xr.DataArray
    n_rank_draws: int
    fits: pd.DataFrame
    label: str = "sbc"
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_arrays(
        cls,
        ranks: np.ndarray,
        truth: np.ndarray,
        *,
        n_rank_draws: int,
        parameters: Sequence[str],
        fits: pd.DataFrame | None = None,
        label: str = "sbc",
        settings: dict | None = None,
    ) -> SBCResult:
        """Build a result from (simulation, parameter) arrays."""
        ranks = np.asarray(ranks, dtype=np.int64)
        coords = {"simulation": np.arange(ranks.shape[0]), "parameter": list(parameters)}
        dims = ("simulation", "parameter")
        if fits is None:
            fits = pd.DataFrame({"ok": np.ones(ranks.shape[0], bool), "problems": ""})
        return cls(
            ranks=xr.DataArray(ranks, dims=dims, coords=coords, name="rank"),
            truth=xr.DataArray(np.asarray(truth, float), dims=dims, coords=coords, name="truth"),
            n_rank_draws=int(n_rank_draws),
            fits=fits,
            label=label,
            settings=dict(settings or {}),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SBCResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. a saved JSON file).

        Examples
        --------
        >>> res = SBCResult.from_arrays(
        ...     [[3], [7]], [[0.1], [0.2]], n_rank_draws=9, parameters=["pi[all]"]
        ... )
        >>> SBCResult.from_dict(res.to_dict()).ranks.values.ravel().tolist()
        [3, 7]
        """
        return cls.from_arrays(
            d["ranks"],
            d["truth"],
            n_rank_draws=d["n_rank_draws"],
            parameters=d["parameters"],
            fits=pd.DataFrame(d["fits"]),
            label=d.get("label", "sbc"),
            settings=d.get("settings"),
        )

    @property
    def n_failed(self) -> int:
        """Number of fits that failed the package's diagnostics (their ranks are kept)."""
        return int((~self.fits["ok"].astype(bool)).sum())

    def failure_reasons(self) -> dict[str, int]:
        """Failed fits per kind of failed check (a fit may fail several)."""
        probs = self.fits.loc[~self.fits["ok"].astype(bool), "problems"].astype(str)
        kinds = {"divergences": "divergent", "r_hat": "R-hat", "ess": "ESS", "bfmi": "E-BFMI"}
        return {k: int(probs.str.contains(v, regex=False).sum()) for k, v in kinds.items()}

    def uniformity(self, bins: int | None = None, *, exclude_failed: bool = False) -> pd.DataFrame:
        """Uniformity tests of the ranks, one row per parameter.

        Columns: n_sims, chi2, df, chi2_pvalue, ecdf_pvalue (simultaneous ECDF
        test on randomised PIT values), mean_pit (0.5 when unbiased) and sd_pit
        (0.289 when calibrated; smaller = under-, larger = over-confident).
        """
        keep = ~self.fits["ok"].astype(bool).to_numpy() if exclude_failed else None
        ranks = self.ranks if keep is None else self.ranks.isel(simulation=~keep)
        rng = np.random.default_rng(0)
        rows = []
        for p in ranks["parameter"].values:
            r = ranks.sel(parameter=p).values
            chi2, df, pval = chi2_uniformity(r, self.n_rank_draws, bins)
            pit = _pit(r, self.n_rank_draws, rng)
            rows.append(
                {
                    "parameter": str(p),
                    "n_sims": int(r.size),
                    "chi2": chi2,
                    "df": df,
                    "chi2_pvalue": pval,
                    "ecdf_pvalue": ecdf_uniformity(pit),
                    "mean_pit": float(pit.mean()) if r.size else float("nan"),
                    "sd_pit": float(pit.std()) if r.size else float("nan"),
                }
            )
        return pd.DataFrame(rows).set_index("parameter")

    def bonferroni_pvalue(self, *, exclude_failed: bool = False) -> float:
        """Smallest chi-square or ECDF p-value times the number of tests (2 per
        quantity), capped at 1: the family-wise p-value of "every quantity is
        calibrated" (Bonferroni).

        Examples
        --------
        >>> res = SBCResult.from_arrays(
        ...     [[0, 9]] * 30, [[0.0, 0.0]] * 30, n_rank_draws=9, parameters=["a", "b"]
        ... )
        >>> res.bonferroni_pvalue() < 1e-6  # every rank at an end: not uniform
        True
        """
        table = self.uniformity(exclude_failed=exclude_failed)
        pvals = table[["chi2_pvalue", "ecdf_pvalue"]].to_numpy().ravel()
        pvals = pvals[np.isfinite(pvals)]
        if not pvals.size:
            return float("nan")
        return float(min(1.0, pvals.min() * pvals.size))

    def plot(self, *, prob: float = 0.95, axes=None):
        """ECDF difference plot of the PIT values with a simultaneous ``prob`` band.

        One panel per parameter: ECDF(u) - u must stay inside the grey band.
        Returns the matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        params = [str(p) for p in self.ranks["parameter"].values]
        if axes is None:
            ncol = min(len(params), 3)
            nrow = -(-len(params) // ncol)
            fig, axes = plt.subplots(
                nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow), squeeze=False, layout="constrained"
            )
            fig.suptitle(f"SBC: {self.label} ({self.ranks.sizes['simulation']} simulations)")
        axes = np.ravel(axes)
        rng = np.random.default_rng(0)
        n = self.ranks.sizes["simulation"]
        n_points = min(n, 100)
        z, lower, upper = _ecdf_band(n, n_points, prob)
        for ax, p in zip(axes, params, strict=False):
            pit = np.sort(_pit(self.ranks.sel(parameter=p).values, self.n_rank_draws, rng))
            ecdf = np.searchsorted(pit, z, side="right") / n
            ax.fill_between(z, lower - z, upper - z, color="0.85", step="mid", lw=0)
            ax.step(z, ecdf - z, where="mid", color="C0")
            ax.axhline(0, color="0.4", lw=0.6)
            ax.set_title(p, fontsize=9)
            ax.set_xlabel("PIT", fontsize=8)
        for ax in axes[len(params) :]:
            ax.set_visible(False)
        axes[0].set_ylabel("ECDF - uniform", fontsize=8)
        return axes[0].figure

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (settings, tests, failed fits, ranks, truth, fits)."""
        table = self.uniformity()
        return {
            "label": self.label,
            "settings": self.settings,
            "n_sims": int(self.ranks.sizes["simulation"]),
            "n_rank_draws": self.n_rank_draws,
            "n_failed_fits": self.n_failed,
            "failure_reasons": self.failure_reasons(),
            "bonferroni_pvalue": self.bonferroni_pvalue(),
            "uniformity": table.reset_index().to_dict(orient="records"),
            "uniformity_ok_fits_only": self.uniformity(exclude_failed=True)
            .reset_index()
            .to_dict(orient="records"),
            "parameters": [str(p) for p in self.ranks["parameter"].values],
            "ranks": self.ranks.values.tolist(),
            "truth": self.truth.values.tolist(),
            "fits": self.fits.to_dict(orient="records"),
            "seconds": float(self.fits["seconds"].sum()) if "seconds" in self.fits else None,
        }


def plot_sbc(results: Sequence[SBCResult], *, prob: float = 0.95):
    """One row of ECDF-difference panels per SBC result (model variant)."""
    import matplotlib.pyplot as plt

    ncol = max(r.ranks.sizes["parameter"] for r in results)
    fig, axes = plt.subplots(
        len(results),
        ncol,
        figsize=(2.6 * ncol, 2.3 * len(results)),
        squeeze=False,
        layout="constrained",
    )
    for row, res in zip(axes, results, strict=True):
        res.plot(prob=prob, axes=row)
        row[0].set_ylabel(f"{res.label}\nECDF - uniform", fontsize=8)
    fig.suptitle(f"SBC rank ECDF differences with {prob:.0%} simultaneous bands")
    return fig
