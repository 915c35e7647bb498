"""Shared fitting machinery of every bayes_regimes model.

A concrete model implements :meth:`BaseModel.build_model` (the PyMC model, usually
with a ``pm.Potential`` on sufficient statistics) and
:meth:`BaseModel.pointwise_log_likelihood` (log-likelihood of one unit per pattern,
evaluated from posterior draws with the closed forms). This class does the rest:
sampler dispatch, assembling the ArviZ DataTree, diagnostics, save and load.

Saved files are netCDF (h5netcdf) with a ``format_version`` attribute; loading
refuses unknown versions with :class:`~bayes_regimes.errors.FormatVersionError`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from bayes_regimes.data import RolloutData
from bayes_regimes.diagnostics import DiagnosticsReport, check_datatree, warn_if_failed
from bayes_regimes.errors import FormatVersionError

FORMAT_VERSION = 1
SAMPLERS = ("nutpie", "pymc", "numpyro")
_REGISTRY: dict[str, type[BaseModel]] = {}


def cells_to_dataset(data: RolloutData) -> xr.Dataset:
    """The per-cell table as an xarray Dataset with dim ``cell`` (for saving)."""
    cells = data.cells
    ds = xr.Dataset(
        {
            c: (
                "cell",
                cells[c].to_numpy(dtype=object if c in ("problem", "group", "condition") else None),
            )
            for c in cells.columns
        },
        coords={"cell": np.arange(len(cells))},
    )
    ds.attrs["has_group"] = int(data.has_group)
    ds.attrs["has_condition"] = int(data.has_condition)
    return ds


def dataset_to_data(ds: xr.Dataset) -> RolloutData:
    """Rebuild :class:`RolloutData` from :func:`cells_to_dataset` output."""
    df = pd.DataFrame({c: ds[c].values for c in ds.data_vars})
    for c in ("problem", "group", "condition"):
        df[c] = df[c].astype(str)
    features = [c for c in df.columns if c not in ("problem", "group", "condition", "n", "k")]
    return RolloutData.from_counts(
        df,
        problem="problem",
        n="n",
        k="k",
        group="group" if int(ds.attrs.get("has_group", 0)) else None,
        condition="condition" if int(ds.attrs.get("has_condition", 0)) else None,
        features=features,
    )


def _plain_strings(ds: xr.Dataset) -> xr.Dataset:
    """Object variables (e.g. nutpie's divergence messages, None when absent) as
    fixed-width strings, so that the netCDF round trip is exact."""
    for name, var in ds.data_vars.items():
        if var.dtype == object:
            values = np.vectorize(lambda x: "" if pd.isna(x) else str(x), otypes=[str])
            ds[name] = var.copy(data=values(var.values).astype(str))
    return ds


class BaseModel:
    """Base class: fit with nutpie / PyMC / numpyro, diagnose, save, load.

    Subclasses set ``config`` (JSON-serialisable keyword arguments of ``__init__``)
    and implement :meth:`build_model` and :meth:`pointwise_log_likelihood`.
    """

    #: Names of posterior variables checked by the diagnostics (None = all).
    diagnostic_vars: ClassVar[list[str] | None] = None
    #: Use nutpie's low-rank modified mass matrix adaptation.
    nutpie_low_rank: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, data: RolloutData, **config: Any) -> None:
        if not isinstance(data, RolloutData):
            raise TypeError(
                "data must be a RolloutData (build one with RolloutData.from_counts, "
                "RolloutData.from_rollouts or read_rollouts)"
            )
        self.data = data
        self.config = config
        self.idata: xr.DataTree | None = None
        self._diagnostics: DiagnosticsReport | None = None

    # -- to implement --------------------------------------------------------------
    def build_model(self):  # pragma: no cover - abstract
        """Return the PyMC model."""
        raise NotImplementedError

    def pointwise_log_likelihood(self, posterior: xr.Dataset) -> xr.DataArray:
        """Log-likelihood of one unit of each pattern, dims (chain, draw, pattern).

        A model may return None when the array would be too large to store (the fit
        then has no ``log_likelihood`` group and no LOO).
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def observed_dataset(self) -> xr.Dataset:
        """Observed data, one entry per pattern (dims: pattern)."""
        raise NotImplementedError  # pragma: no cover - abstract

    # -- fitting --------------------------------------------------------------------
    def fit(
        self,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        random_seed: int | None = None,
        sampler: str = "nutpie",
        progressbar: bool = True,
        target_accept: float | None = 0.95,
    ) -> xr.DataTree:
        """Sample the posterior of the hyper-parameters.

        Parameters
        ----------
        draws, tune, chains : int
            Posterior draws per chain, tuning steps per chain, number of chains.
        random_seed : int, optional
            Seed; the same seed gives the same draws.
        sampler : {"nutpie", "pymc", "numpyro"}
            NUTS implementation. numpyro needs the ``jax`` extra.
        progressbar : bool
            Show the sampler's progress bar.
        target_accept : float, optional
            NUTS target acceptance rate. The default 0.95 (above NUTS' usual 0.8)
            avoids the divergences that the ridge between a point mass at zero and
            a Beta slab with a small first shape parameter otherwise causes; raise
            it further (0.99) if a fit still diverges. None uses the sampler's own.

        Returns
        -------
        xarray.DataTree
            Groups ``posterior``, ``sample_stats``, ``log_likelihood`` (dim
            ``pattern``), ``observed_data`` (dim ``pattern``) and ``cells``
            (dim ``cell``).
        """
        import pymc as pm

        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if draws < 1 or chains < 1 or tune < 0:
            raise ValueError("draws and chains must be >= 1 and tune >= 0")
        kwargs: dict[str, Any] = {}
        nuts: dict[str, Any] = {}
        if target_accept is not None:
            nuts["target_accept"] = target_accept
        if sampler == "nutpie" and self.nutpie_low_rank:
            # A low-rank mass matrix follows the correlated ridge between pi and the
            # slab's left tail; it doubled ESS per draw in our tests.
            nuts["adaptation"] = "low_rank"
            deterministic_linear_algebra()
        if sampler == "numpyro":
            nuts["chain_method"] = _numpyro_chain_method(chains)
        if nuts:
            kwargs["nuts"] = nuts
        model = self.build_model()
        with model, warnings.catch_warnings():
            # PyMC's own convergence warnings are replaced by our diagnostics report.
            warnings.filterwarnings("ignore", module="pymc.stats.convergence")
            dt = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=min(chains, 2),
                random_seed=random_seed,
                nuts_sampler=sampler,
                progressbar=progressbar,
                compute_convergence_checks=False,
                **kwargs,
            )
        self.idata = self._assemble(dt, sampler=sampler, random_seed=random_seed)
        self._diagnostics = None
        report = self.diagnostics()
        warn_if_failed(report, "the fit")
        return self.idata

    def _assemble(self, dt: xr.DataTree, **fit_info: Any) -> xr.DataTree:
        posterior = dt["posterior"].to_dataset()
        ll = self.pointwise_log_likelihood(posterior)  # None: too large to store
        groups = {
            "posterior": posterior,
            "sample_stats": _plain_strings(dt["sample_stats"].to_dataset()),
            **({} if ll is None else {"log_likelihood": ll.to_dataset(name="k")}),
            "observed_data": self.observed_dataset(),
            "cells": cells_to_dataset(self.data),
        }
        out = xr.DataTree.from_dict(groups)
        out.attrs.update(
            format_version=FORMAT_VERSION,
            model_class=type(self).__name__,
            config=json.dumps(self.config),
            fit=json.dumps({k: v for k, v in fit_info.items()}),
            package="bayes_regimes",
        )
        return out

    # -- state -------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.idata is not None

    def _require_fit(self) -> xr.DataTree:
        if self.idata is None:
            raise RuntimeError("the model is not fitted yet: call .fit() first")
        return self.idata

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws of the hyper-parameters."""
        return self._require_fit()["posterior"].to_dataset()

    def diagnostics(self) -> DiagnosticsReport:
        """R-hat, ESS bulk/tail, divergences and E-BFMI of the fit.

        Returns
        -------
        DiagnosticsReport
            ``.ok`` is False (and a :class:`DiagnosticsWarning` was emitted) when
            R-hat > 1.01, ESS < 400, any divergence, or E-BFMI < 0.3.
        """
        if self._diagnostics is None:
            self._diagnostics = check_datatree(self._require_fit(), self.diagnostic_vars)
        return self._diagnostics

    # -- persistence -----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fit (posterior, data and configuration) to one netCDF file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._require_fit().to_netcdf(path, engine="h5netcdf")
        return path

    @classmethod
    def load(cls, path: str | Path) -> BaseModel:
        """Load a fit written by :meth:`save`; the result answers queries identically.

        Raises
        ------
        FormatVersionError
            When the file was written with an unknown format version.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no saved fit at {path}")
        with xr.open_datatree(path, engine="h5netcdf") as handle:
            dt = handle.load()
        version = dt.attrs.get("format_version")
        if dt.attrs.get("package") != "bayes_regimes" or version is None:
            raise FormatVersionError(f"{path} is not a bayes_regimes fit")
        if int(version) != FORMAT_VERSION:
            raise FormatVersionError(
                f"{path} has format version {version}; this bayes_regimes reads version "
                f"{FORMAT_VERSION}. Refit, or install the version that wrote it."
            )
        model_cls = _REGISTRY.get(str(dt.attrs["model_class"]))
        if model_cls is None:
            raise FormatVersionError(f"{path}: unknown model class {dt.attrs['model_class']!r}")
        if cls is not BaseModel and not issubclass(model_cls, cls):
            raise TypeError(f"{path} holds a {model_cls.__name__}, not a {cls.__name__}")
        model = model_cls(
            dataset_to_data(dt["cells"].to_dataset()), **json.loads(dt.attrs["config"])
        )
        model.idata = dt
        return model

    # -- display -----------------------------------------------------------------------
    def _status(self) -> str:
        if self.idata is None:
            return "not fitted"
        rep = self.diagnostics()
        return "fitted, diagnostics OK" if rep.ok else f"fitted, {rep.message}"

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return (
            f"{type(self).__name__}({self.data.n_cells} cells, {len(self.data.strata)} "
            f"group(s); {cfg}) [{self._status()}]"
        )

    def _repr_html_(self) -> str:
        """Rich display in Jupyter: data size, fit status, diagnostics, regimes."""
        from bayes_regimes.display import model_html

        return model_html(self)


def deterministic_linear_algebra() -> None:
    """Make nutpie's low-rank adaptation bit-reproducible from a seed.

    nutpie runs the linear algebra of its low-rank mass-matrix adaptation (faer) on
    rayon's global thread pool, whose work-stealing splits change the order of
    floating-point sums from run to run: the same seed gave different draws in 2 of
    15 fresh processes (small crossed model, 2 chains, idle or loaded cores). With one
    rayon thread the draws repeat exactly, at no cost in wall time (the chains run on
    nutpie's own threads). Sets ``RAYON_NUM_THREADS=1`` unless the user set it; the
    pool reads it once, when a process first uses it, so this runs before every fit.

    Examples
    --------
    >>> deterministic_linear_algebra()
    >>> os.environ["RAYON_NUM_THREADS"]  # unless set before
    '1'
    """
    os.environ.setdefault("RAYON_NUM_THREADS", "1")


def _numpyro_chain_method(chains: int) -> str:
    """Numpyro's chain_method: "parallel" with a JAX device per chain, else "vectorized".

    One GPU runs all chains as one batched kernel ("vectorized"); numpyro's default
    "parallel" would fall back to running them one after another.
    """
    import jax

    return "parallel" if jax.local_device_count() >= chains else "vectorized"
