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

The rank statistics, uniformity tests and :class:`SBCResult` live in
:mod:`bayes_regimes.sbc_stats` (re-exported here); the SBC of the crossed and the
intervention models in :mod:`bayes_regimes.sbc_models`.

``simuk`` cannot be used here: it conditions the model with ``pm.observe`` on
observed random variables, while the core model's likelihood is a ``pm.Potential``
on sufficient statistics (and simuk recompiles per simulation).

Examples
--------
The rank and uniformity machinery lives in :mod:`bayes_regimes.sbc_stats` (see its
example) and is re-exported here:

>>> from bayes_regimes import sbc, sbc_stats
>>> sbc.SBCResult is sbc_stats.SBCResult and sbc.rank_statistic is sbc_stats.rank_statistic
True
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import expit

from bayes_regimes.data import RolloutData
from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.regime import RegimeModel
from bayes_regimes.sbc_stats import (
    SBCResult,
    chi2_uniformity,
    ecdf_uniformity,
    plot_sbc,
    rank_statistic,
    thin_draws,
)
from bayes_regimes.simulate import simulate_benchmark

__all__ = [
    "SBCResult",
    "chi2_uniformity",
    "ecdf_uniformity",
    "plot_sbc",
    "prior_draws",
    "prior_sample",
    "rank_statistic",
    "run_sbc",
    "thin_draws",
]

_FIT_DEFAULTS = inspect.signature(BaseModel.fit).parameters


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


def prior_sample(
    model: BaseModel, var_names: list[str], n: int, random_seed: int | None = 0
) -> xr.Dataset:
    """``n`` draws of ``var_names`` from the prior of ``model.build_model()``.

    Uses ``pm.sample_prior_predictive`` on the model's own PyMC graph (the
    ``pm.Potential`` terms holding the likelihood are ignored, as prior draws
    require). Returns a Dataset with dim ``simulation`` first.
    """
    import pymc as pm

    with warnings.catch_warnings(), _quiet_pymc():
        warnings.filterwarnings("ignore", message=".*Potential.*")
        prior = pm.sample_prior_predictive(
            draws=n, model=model.build_model(), var_names=var_names, random_seed=random_seed
        )["prior"].to_dataset()
    out = prior[var_names].isel(chain=0).rename({"draw": "simulation"})
    return out.assign_coords(simulation=np.arange(n))


def prior_draws(model: RegimeModel, n_sims: int, random_seed: int | None = 0) -> xr.Dataset:
    """Draws of pi and the slab's parameters per group from the model's own prior
    (:func:`prior_sample`); a Dataset with dims (simulation, group)."""
    return prior_sample(model, _params(model), n_sims, random_seed)


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
    prior_from: Callable[[RolloutData], RegimeModel] | None = None,
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
    prior_from : callable, optional
        Builds the model whose prior generates the true parameters (default
        ``make_model``). A different prior than the fitted model's makes a
        deliberately mis-specified SBC, which must fail the uniformity tests.

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
    source = template if prior_from is None else prior_from(template.data)
    truth = prior_draws(source, n_sims, random_seed=int(seeds[0]))
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
        "misspecified_prior": prior_from is not None,
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
