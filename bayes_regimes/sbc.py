"""Simulation-based calibration (SBC) of the core model (Talts et al. 2018).

If hyper-parameters are drawn from the model's prior, data are simulated from them,
and the model is fitted to those data, then the rank of each true hyper-parameter
among (thinned) posterior draws is uniform on 0..L. Departures show a miscalibrated
posterior: ranks piling up at one end mean bias, a U shape overconfidence, a hump
underconfidence.

How this module does it
-----------------------
1. Prior draws of pi and the slab's parameters (mu, kappa for the Beta slab;
   slab_loc, slab_scale for the logit-normal) per group come from
   ``pm.sample_prior_predictive`` on the PyMC graph of
   :meth:`RegimeModel.build_model` itself, so they are exactly the model's prior
   (including ``priors=`` overrides and the partial pooling across groups).
2. Data are simulated with :func:`bayes_regimes.simulate.simulate_benchmark`
   (Beta slab) or, for the logit-normal slab, by drawing p from its prior.
3. Each data set is fitted by the package's own :meth:`BaseModel.fit` (same
   seeds, NUTS settings, default ``target_accept`` and diagnostics). With nutpie
   the PyMC model is compiled once and re-used on every data set through nutpie's
   ``with_data`` (the pattern arrays are ``pm.Data``). Fits that fail the
   diagnostics are *kept* and counted.
4. Ranks of the truth among ``n_rank_draws`` evenly thinned posterior draws;
   uniformity is tested per parameter by a chi-square test over rank bins and by
   the simultaneous ECDF test of Säilynoja, Bürkner & Vehtari (2022), whose
   band the plot shows.

``simuk`` cannot be used here: it conditions the model with ``pm.observe`` on
observed random variables, while the core model's likelihood is a ``pm.Potential``
on sufficient statistics (and simuk recompiles per simulation).

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

import inspect
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from scipy.special import bdtr, expit

from bayes_regimes.data import RolloutData
from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.regime import RegimeModel
from bayes_regimes.simulate import simulate_benchmark

__all__ = [
    "SBCResult",
    "chi2_uniformity",
    "ecdf_uniformity",
    "plot_sbc",
    "prior_draws",
    "rank_statistic",
    "run_sbc",
    "thin_draws",
]

_FIT_DEFAULTS = inspect.signature(BaseModel.fit).parameters
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


# ---------------------------------------------------------------------------
# SBC of the core model
# ---------------------------------------------------------------------------
def _slab_p(slab: str, spec: dict[str, float], size: int, rng) -> np.ndarray:
    """Draws of p from a slab family's prior (non-structural problems)."""
    if slab == "logitnormal":
        return expit(rng.normal(spec["slab_loc"], spec["slab_scale"], size=size))
    raise NotImplementedError(f"SBC has no simulator for the {slab!r} slab")


def _design(
    n_groups: int,
    n_problems: int,
    n,
    params: dict[str, dict[str, float]] | None = None,
    seed: int | None = 0,
    slab: str = "beta",
) -> RolloutData:
    """A simulated benchmark of the SBC design, as RolloutData.

    ``params`` maps each group (``"all"`` for one group, else ``g0``, ``g1``, ...)
    to pi and the slab's parameters (mu, kappa for the Beta slab). The Beta slab
    uses :func:`simulate_benchmark`; other slabs draw p from their prior here.
    """
    names = ["all"] if n_groups == 1 else [f"g{i}" for i in range(n_groups)]
    if params is None:
        slab, params = "beta", {g: {"pi": 0.3, "mu": 0.3, "kappa": 2.0} for g in names}
    if slab == "beta":
        spec = {g: {k: v[k] for k in ("pi", "mu", "kappa")} for g, v in params.items()}
        if n_groups == 1:
            sim = simulate_benchmark(n_problems, n, random_seed=seed, **spec["all"])
            return RolloutData.from_counts(sim.counts)
        sim = simulate_benchmark(n_problems, n, groups=spec, random_seed=seed)
        return RolloutData.from_counts(sim.counts, group="group")
    rng = np.random.default_rng(seed)
    n_arr = np.broadcast_to(np.asarray(n, dtype=np.int64), (n_problems,))
    frames = []
    for g in names:
        spec = params[g]
        p = np.where(rng.random(n_problems) < spec["pi"], 0.0, _slab_p(slab, spec, n_problems, rng))
        frames.append(pd.DataFrame({"group": g, "n": n_arr, "k": rng.binomial(n_arr, p)}))
    counts = pd.concat(frames, ignore_index=True)
    counts.insert(0, "problem_id", [f"p{i:05d}" for i in range(len(counts))])
    return RolloutData.from_counts(counts, group="group" if n_groups > 1 else None)


def _params(model: RegimeModel) -> list[str]:
    """Hyper-parameters checked per group: pi (if structural) and the slab's."""
    return (["pi"] if model.config["structural"] else []) + list(model.slab.diagnostic_vars)


def prior_draws(model: RegimeModel, n_sims: int, random_seed: int | None = 0) -> xr.Dataset:
    """Draws of pi and the slab's parameters per group from the model's own prior.

    Uses ``pm.sample_prior_predictive`` on :meth:`RegimeModel.build_model` (the
    Potential holding the likelihood is ignored, as it must be for prior draws).
    Returns a Dataset with dims (simulation, group).
    """
    import pymc as pm

    names = _params(model)
    with warnings.catch_warnings(), _quiet_pymc():
        warnings.filterwarnings("ignore", message=".*Potential.*")
        prior = pm.sample_prior_predictive(
            draws=n_sims, model=model.build_model(), var_names=names, random_seed=random_seed
        )["prior"].to_dataset()
    out = prior[names].isel(chain=0).rename({"draw": "simulation"})
    return out.assign_coords(simulation=np.arange(n_sims))


@contextmanager
def _quiet_pymc():
    """Silence PyMC's per-fit INFO/WARNING log lines (our diagnostics report instead)."""
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _row(report, seconds: float) -> dict[str, Any]:
    s = report.summary()
    return {
        "ok": bool(report.ok),
        "divergences": s["divergences"],
        "max_r_hat": s["max_r_hat"],
        "min_ess_bulk": s["min_ess_bulk"],
        "min_ess_tail": s["min_ess_tail"],
        "seconds": seconds,
        "problems": "; ".join(s["problems"]),
    }


class _Fitter:
    """Fits the same model structure to many data sets through :meth:`BaseModel.fit`.

    With nutpie, the PyMC model is compiled once; each fit then runs the package's
    own ``fit`` (same seeds, NUTS settings, assembly and diagnostics) while
    ``nutpie.compile_pymc_model`` is temporarily answered with the compiled model
    carrying the new data set's patterns (``with_data``). Should PyMC stop calling
    it, every fit simply compiles again (slower, same result).
    """

    def __init__(self, template: RegimeModel, sampler: str, fit_kw: dict[str, Any]):
        self.sampler = sampler
        self.fit_kw = fit_kw
        self.compiled = None
        self.reused = 0
        if sampler == "nutpie":
            import nutpie

            self.compiled = nutpie.compile_pymc_model(template.build_model())

    @contextmanager
    def _reuse_compiled(self, model: RegimeModel):
        if self.compiled is None:
            yield
            return
        import nutpie

        pat = model._patterns.table
        compiled = self.compiled.with_data(
            pattern_stratum=pat["stratum"].to_numpy(),
            pattern_n=pat["n"].to_numpy(),
            pattern_k=pat["k"].to_numpy(),
            pattern_count=pat["count"].to_numpy().astype(float),
        )

        def reuse(*args: Any, **kwargs: Any):
            self.reused += 1
            return compiled

        original = nutpie.compile_pymc_model
        nutpie.compile_pymc_model = reuse
        try:
            yield
        finally:
            nutpie.compile_pymc_model = original

    def __call__(self, model: RegimeModel, seed: int) -> None:
        with warnings.catch_warnings(), _quiet_pymc(), self._reuse_compiled(model):
            warnings.simplefilter("ignore")
            model.fit(random_seed=seed, sampler=self.sampler, progressbar=False, **self.fit_kw)


def run_sbc(
    make_model: Callable[[RolloutData], RegimeModel] = RegimeModel,
    n_sims: int = 100,
    *,
    n_groups: int = 1,
    n_problems: int = 100,
    n: int | np.ndarray = 10,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    n_rank_draws: int = 99,
    sampler: str = "nutpie",
    target_accept: float | None = None,
    random_seed: int = 0,
    label: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SBCResult:
    """Simulation-based calibration of a model of the core package.

    Parameters
    ----------
    make_model : callable
        Builds the model from RolloutData, e.g. ``RegimeModel`` or
        ``functools.partial(RegimeModel, structural=False)``.
    n_sims : int
        Simulated data sets.
    n_groups, n_problems, n :
        Design: groups (a group column when > 1), problems per group, rollouts per
        problem (scalar or one per problem).
    draws, tune, chains : int
        Sampler settings of each fit.
    n_rank_draws : int
        Posterior draws (thinned evenly within chains) each rank is taken among.
    sampler : {"nutpie", "pymc", "numpyro"}
        nutpie compiles once and re-uses the compiled model; the others refit
        through :meth:`BaseModel.fit`.
    target_accept : float, optional
        Defaults to :meth:`BaseModel.fit`'s default (0.95).
    random_seed : int
        Seeds the prior draws, the simulations and the sampler.

    Returns
    -------
    SBCResult

    Examples
    --------
    >>> res = run_sbc(RegimeModel, n_sims=20, n_problems=50, random_seed=1)  # doctest: +SKIP
    >>> res.uniformity()[["chi2_pvalue", "ecdf_pvalue"]]  # doctest: +SKIP
    """
    if n_sims < 1 or n_groups < 1:
        raise ValueError("n_sims and n_groups must be >= 1")
    if n_rank_draws >= draws * chains:
        raise ValueError(f"n_rank_draws ({n_rank_draws}) must be < draws x chains")
    target_accept = target_accept or _FIT_DEFAULTS["target_accept"].default
    seeds = np.random.SeedSequence(random_seed).generate_state(2 * n_sims + 1)
    template = make_model(_design(n_groups, n_problems, n))
    names = _params(template)
    strata = list(template.data.strata)
    truth = prior_draws(template, n_sims, random_seed=int(seeds[0]))
    fitter = _Fitter(
        template,
        sampler,
        {"draws": draws, "tune": tune, "chains": chains, "target_accept": target_accept},
    )
    rng = np.random.default_rng(int(seeds[0]))
    labels = [f"{p}[{g}]" for p in names for g in strata]
    ranks, true_values, rows = [], [], []
    for i in range(n_sims):
        t0 = time.perf_counter()
        draw = {p: truth[p].isel(simulation=i).sel(group=strata).values for p in names}
        params = {
            g: {"pi": 0.0, **{p: float(draw[p][j]) for p in names}} for j, g in enumerate(strata)
        }
        data = _design(n_groups, n_problems, n, params, int(seeds[1 + i]), template.slab.name)
        model = make_model(data)
        if model.config != template.config or list(model.data.strata) != strata:
            raise RuntimeError("make_model must build the same model for every data set")
        fitter(model, int(seeds[1 + n_sims + i]))
        post = model.posterior
        values = np.concatenate(
            [
                thin_draws(
                    post[p].sel(group=strata).transpose("chain", "draw", "group").values,
                    n_rank_draws,
                )
                for p in names
            ],
            axis=1,
        )
        true_vec = np.concatenate([draw[p] for p in names])
        ranks.append(rank_statistic(true_vec, values, rng))
        true_values.append(true_vec)
        rows.append(_row(model.diagnostics(), time.perf_counter() - t0))
        if progress is not None:
            progress(i + 1, n_sims)
    settings = {
        "model": type(template).__name__,
        "config": template.config,
        "n_groups": n_groups,
        "n_problems": n_problems,
        "n": n if np.ndim(n) == 0 else list(np.asarray(n).tolist()),
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "sampler": sampler,
        "target_accept": target_accept,
        "nutpie_low_rank": bool(getattr(template, "nutpie_low_rank", False)),
        "random_seed": random_seed,
    }
    return SBCResult.from_arrays(
        np.stack(ranks),
        np.stack(true_values),
        n_rank_draws=n_rank_draws,
        parameters=labels,
        fits=pd.DataFrame(rows),
        label=label or _label(template),
        settings=settings,
    )


def _label(model: RegimeModel) -> str:
    kind = "zero-inflated" if model.config["structural"] else "plain"
    groups = len(model.data.strata)
    return f"{kind}, {groups} group{'s' if groups > 1 else ''}"
