"""The core model: a zero-inflated hierarchical binomial model on sufficient statistics.

Model
-----
For a problem i in group g (a model, post-training method or benchmark; with a
condition column, each (group, condition) pair is its own group)::

    z_i ~ Bernoulli(pi_g)                         structural: p_i = 0 when z_i = 1
    logit p_i | z_i = 0 ~ Normal(slab_loc_g, slab_scale_g)    (default slab)
    p_i | z_i = 0 ~ Beta(mu_g * kappa_g, (1 - mu_g) * kappa_g)  (slab="beta")
    k_i ~ Binomial(n_i, p_i)

p_i is integrated out (analytically for the Beta slab: zero-inflated beta-binomial;
by adaptive quadrature for the logit-normal, see :mod:`bayes_regimes.slabs`), and the
likelihood is evaluated once per unique (group, n, k) pattern, weighted by its
count: the cost grows with the number of patterns, not of problems.

The default slab is the logit-normal (``slab_loc_g ~ Normal(-2, 2)``,
``log(slab_scale_g) ~ Normal(1, 0.5)``, pooled across groups like the other
parameters): its mass spreads over orders of magnitude of p, and on held-out Large
Language Monkeys data it predicts which failures more sampling rescues far better
than the Beta slab, whose thin left tail pushes recoverable failures into the point
mass (``benchmarks/results/heldout_summary.md``). ``slab="beta"`` is the original
zero-inflated beta-binomial, with the priors below.

Priors (weakly informative; override with ``priors=``)
------------------------------------------------------
- ``logit(pi_g) ~ Normal(-1, 1.5)``: a priori most failures are not structural
  (median pi 0.27, 89 % interval 0.03 to 0.82).
- Beta slab: ``logit(mu_g) ~ Normal(0, 1.5)``: slab mean anywhere in (0.06, 0.94).
- ``log(kappa_g) ~ Normal(1, 1.5)``: from a U-shaped slab (kappa ~ 0.2, heavy left
  tail) to a concentrated one (kappa ~ 30).
- With two or more groups, each of the three is partially pooled: group value =
  loc + sd * z_g with loc from the priors above, ``sd ~ HalfNormal(1)`` and
  ``z_g ~ Normal(0, 1)`` (non-centred).

Posterior dims: ``group`` (the strata of :class:`~bayes_regimes.data.RolloutData`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_regimes import queries as q
from bayes_regimes import slabs as sl
from bayes_regimes.data import RolloutData
from bayes_regimes.diagnostics import tag
from bayes_regimes.display import PlotMethod
from bayes_regimes.models.base import BaseModel

SLABS = tuple(sl.SLAB_FAMILIES)
DEFAULT_PRIORS: dict[str, tuple[float, float] | float] = {
    "logit_pi": (-1.0, 1.5),
    "logit_mu": (0.0, 1.5),
    "log_kappa": (1.0, 1.5),
    "group_sd": 1.0,
}


class RegimeModel(BaseModel):
    """Zero-inflated (or plain) hierarchical model of rollout outcomes (logit-normal or
    Beta slab).

    Parameters
    ----------
    data : RolloutData
        Cells of (problem, group, condition) with n rollouts and k successes.
    slab : {"logitnormal", "beta"}
        Family of p for non-structural problems (:mod:`bayes_regimes.slabs`):
        ``"logitnormal"`` (default), logit p ~ Normal(slab_loc, slab_scale), whose
        mass spreads over orders of magnitude of p (a heavier left tail than the
        Beta's for the same solved problems), with the priors
        :attr:`bayes_regimes.slabs.LogitNormalSlab.default_priors` (overridable with
        ``priors=``); ``"beta"``, Beta(mu kappa, (1 - mu) kappa), the original
        zero-inflated beta-binomial (posterior variables mu, kappa).
    structural : bool
        Include the point mass at p = 0 (False gives the plain beta-binomial).
    epsilon : float
        "Structural" means p < epsilon (default 1e-3, i.e. a budget of 1,000
        attempts: ``epsilon = 1 / budget``).
    threshold : float
        Posterior probability needed to label a failure structural or recoverable.
    priors : dict, optional
        Overrides of :data:`DEFAULT_PRIORS`.
    pooling : {"group", "crossed"}
        "group" (this model: one set of hyper-parameters per group) or "crossed":
        ``RegimeModel(data, pooling="crossed")`` returns a
        :class:`~bayes_regimes.models.crossed.CrossedRegimeModel` (problem x model,
        the group being the model), with its own keyword arguments.

    Examples
    --------
    >>> from bayes_regimes import RegimeModel, RolloutData, simulate_benchmark
    >>> sim = simulate_benchmark(n_problems=200, n=10, random_seed=1)
    >>> model = RegimeModel(RolloutData.from_counts(sim.counts))
    >>> dt = model.fit(draws=200, tune=200, chains=2, random_seed=1, progressbar=False)
    ... # doctest: +SKIP
    >>> model.regimes().label.value_counts()  # doctest: +SKIP
    """

    def __new__(cls, *args: Any, pooling: str = "group", **kwargs: Any):
        if pooling == "crossed" and cls is RegimeModel:
            from bayes_regimes.models.crossed import CrossedRegimeModel

            return super().__new__(CrossedRegimeModel)
        return super().__new__(cls)

    def __init__(
        self,
        data: RolloutData,
        slab: str = "logitnormal",
        structural: bool = True,
        epsilon: float = 1e-3,
        threshold: float = 0.9,
        priors: dict[str, Any] | None = None,
        *,
        pooling: str = "group",
    ) -> None:
        if pooling != "group":
            raise ValueError(f"unknown pooling {pooling!r}; choose 'group' or 'crossed'")
        if slab not in SLABS:
            raise ValueError(f"unknown slab {slab!r}; available: {', '.join(SLABS)}")
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
        if not 0.5 < threshold < 1:
            raise ValueError(f"threshold must be in (0.5, 1), got {threshold}")
        # Each slab family brings the priors of its own parameters (none for "beta").
        known = {**DEFAULT_PRIORS, **sl.get_slab(slab).default_priors}
        unknown = set(priors or {}) - set(known)
        if unknown:
            raise ValueError(f"unknown prior(s) {sorted(unknown)}; known: {list(known)}")
        merged = {**known, **(priors or {})}
        merged = {k: list(v) if isinstance(v, tuple | list) else v for k, v in merged.items()}
        super().__init__(
            data,
            slab=slab,
            structural=bool(structural),
            epsilon=float(epsilon),
            threshold=float(threshold),
            priors=merged,
            pooling="group",
        )
        self._patterns = data.patterns()

    # -- model -------------------------------------------------------------------------
    @property
    def diagnostic_vars(self) -> list[str]:  # type: ignore[override]
        names = list(self.slab.diagnostic_vars) + (["pi"] if self.config["structural"] else [])
        return names

    @property
    def slab(self) -> sl.Slab:
        """The slab family (:mod:`bayes_regimes.slabs`) of p for non-structural problems."""
        return sl.get_slab(self.config["slab"])

    def _group_param(self, pm, name: str, loc_scale, n_groups: int):
        loc, scale = loc_scale
        if n_groups == 1:
            return pm.Normal(name, loc, scale, dims="group")
        center = pm.Normal(f"{name}_loc", loc, scale)
        sd = pm.HalfNormal(f"{name}_sd", self.config["priors"]["group_sd"])
        z = pm.Normal(f"{name}_z", 0.0, 1.0, dims="group")
        return pm.Deterministic(name, center + sd * z, dims="group")

    def build_model(self):
        """The PyMC model (a Potential on the pattern-weighted log-likelihood)."""
        import pymc as pm
        import pytensor.tensor as pt

        pat = self._patterns.table
        strata = list(self.data.strata)
        pr = self.config["priors"]
        s = pat["stratum"].to_numpy()
        n = pat["n"].to_numpy()
        k = pat["k"].to_numpy()
        count = pat["count"].to_numpy().astype(float)
        with pm.Model(coords={"group": strata, "pattern": np.arange(len(pat))}) as model:
            # Shared data rather than constants: a compiled model can then be reused on
            # other patterns (nutpie's ``with_data``), as the SBC harness does.
            s, n, k = (pm.Data(f"pattern_{v}", x) for v, x in (("stratum", s), ("n", n), ("k", k)))
            count = pm.Data("pattern_count", count)
            if self.slab.name == "beta":
                logit_mu = self._group_param(pm, "logit_mu", pr["logit_mu"], len(strata))
                log_kappa = self._group_param(pm, "log_kappa", pr["log_kappa"], len(strata))
                mu = pm.Deterministic("mu", pm.math.sigmoid(logit_mu), dims="group")
                kappa = pm.Deterministic("kappa", pt.exp(log_kappa), dims="group")
                alpha = pm.Deterministic("alpha", mu * kappa, dims="group")
                beta = pm.Deterministic("beta", (1 - mu) * kappa, dims="group")
                bb = pm.logp(pm.BetaBinomial.dist(n=n, alpha=alpha[s], beta=beta[s]), k)
            else:
                bb = self.slab.pymc_logpmf(
                    lambda name: self._group_param(pm, name, pr[name], len(strata)), n, k, s
                )
            if self.config["structural"]:
                logit_pi = self._group_param(pm, "logit_pi", pr["logit_pi"], len(strata))
                pm.Deterministic("pi", pm.math.sigmoid(logit_pi), dims="group")
                # log(pi) and log(1 - pi) straight from the logit, for stability.
                log_pi = -pt.softplus(-logit_pi)[s]
                log_1m_pi = -pt.softplus(logit_pi)[s]
                lp = pt.switch(pt.eq(k, 0), pt.logaddexp(log_pi, log_1m_pi + bb), log_1m_pi + bb)
            else:
                lp = bb
            pm.Potential("loglik", pt.sum(count * lp))
        return model

    # -- draws ---------------------------------------------------------------------------
    def _hyper_draws(self) -> tuple[np.ndarray, ...]:
        """pi and the slab parameters (a, b for the Beta slab), each (samples, groups)."""
        post = self.posterior

        def flat(name):
            da = post[name].transpose("chain", "draw", "group")
            return da.values.reshape(-1, da.sizes["group"])

        theta = [flat(name) for name in self.slab.params]
        pi = flat("pi") if self.config["structural"] else np.zeros_like(theta[0])
        return (pi, *theta)

    def pointwise_log_likelihood(self, posterior: xr.Dataset) -> xr.DataArray:
        pat = self._patterns.table
        s = pat["stratum"].to_numpy()
        theta = [
            posterior[name].transpose("chain", "draw", "group").values[..., s]
            for name in self.slab.params
        ]
        pi = (
            posterior["pi"].transpose("chain", "draw", "group").values[..., s]
            if self.config["structural"]
            else 0.0
        )
        ll = self.slab.logpmf(pat["k"].to_numpy(), pat["n"].to_numpy(), pi, *theta)
        return xr.DataArray(
            ll,
            dims=("chain", "draw", "pattern"),
            coords={
                "chain": posterior["chain"].values,
                "draw": posterior["draw"].values,
                "pattern": np.arange(len(pat)),
            },
        )

    def observed_dataset(self) -> xr.Dataset:
        pat = self._patterns.table
        return xr.Dataset(
            {
                "k": ("pattern", pat["k"].to_numpy()),
                "n": ("pattern", pat["n"].to_numpy()),
                "count": ("pattern", pat["count"].to_numpy()),
                "stratum": ("pattern", pat["stratum"].to_numpy()),
            },
            coords={"pattern": np.arange(len(pat))},
        )

    def pattern_posterior(self) -> q.PatternPosterior:
        """The per-pattern hyper-parameter draws used by every query."""
        pi, *theta = self._hyper_draws()
        pat = self._patterns.table
        s = pat["stratum"].to_numpy()

        def hyper(idx):
            cols = s[idx]
            return (pi[:, cols], *(x[:, cols] for x in theta))

        return q.PatternPosterior(
            n=pat["n"].to_numpy(),
            k=pat["k"].to_numpy(),
            count=pat["count"].to_numpy(),
            stratum=s,
            hyper=hyper,
            population=lambda: (pi, *theta),
            strata=list(self.data.strata),
            n_draws=pi.shape[0],
            slab=self.slab,
        )

    # -- queries -------------------------------------------------------------------------
    def _cell_frame(self) -> pd.DataFrame:
        return self.data.cells[["problem", "group", "condition", "n", "k"]].copy()

    def regimes(
        self,
        epsilon: float | None = None,
        *,
        budget: float | None = None,
        threshold: float | None = None,
        ci_prob: float = q.CI_PROB,
    ) -> pd.DataFrame:
        """Per-cell posterior of p and regime label, in input order.

        Parameters
        ----------
        epsilon : float, optional
            Structural means p < epsilon (default: the model's ``epsilon``).
        budget : float, optional
            Alternative to epsilon: "structural at a budget of B attempts" uses
            epsilon = 1 / B.
        threshold : float, optional
            Probability needed for the labels structural / recoverable.
        ci_prob : float
            Mass of the equal-tailed interval (default 0.89).

        Returns
        -------
        pandas.DataFrame
            problem, group, condition, n, k, p_mean, p_low, p_high, p_zero,
            p_structural (= P(p < epsilon)), p_fail_budget (= P(no success in
            1/epsilon more attempts)), label (solved, recoverable, structural,
            uncertain).
        """
        if epsilon is not None and budget is not None:
            raise ValueError("give epsilon or budget, not both")
        eps = 1.0 / budget if budget is not None else (epsilon or self.config["epsilon"])
        thr = threshold or self.config["threshold"]
        post = self.pattern_posterior()
        seed = _seed(self)
        per_pattern = q.pattern_regimes(post, eps, ci_prob=ci_prob, random_seed=seed)
        out = self._cell_frame()
        cp = self._patterns.cell_pattern
        for col in per_pattern.columns:
            out[col] = per_pattern[col].to_numpy()[cp]
        out["label"] = q.label_regimes(out["k"].to_numpy(), out["p_structural"].to_numpy(), thr)
        out.attrs.update(epsilon=eps, threshold=thr, ci_prob=ci_prob)
        return tag(out, self.diagnostics())

    def _cell_m(self, m) -> np.ndarray:
        n_cells = self.data.n_cells
        if isinstance(m, pd.Series):
            # A Series is keyed by cell number (the index of regimes()).
            missing = self.data.cells.index.difference(m.index)
            if len(missing) or m.index.has_duplicates:
                raise ValueError(
                    "m as a Series needs exactly one value per cell, keyed by the cell index "
                    f"(0..{n_cells - 1}); {len(missing)} cell(s) missing"
                )
            values = m.reindex(self.data.cells.index).to_numpy()
        elif np.ndim(m) == 0:
            values = np.full(n_cells, m)
        else:
            values = np.asarray(m)
        if values.shape != (n_cells,):
            raise ValueError(f"m must be a scalar or have one value per cell ({n_cells})")
        if (
            not np.all(np.isfinite(values))
            or np.any(values < 0)
            or np.any(values != np.round(values))
        ):
            raise ValueError("m must hold non-negative integers")
        return values.astype(np.int64)

    def expected_gain(
        self, m, *, summary: bool = True, ci_prob: float = q.CI_PROB
    ) -> pd.DataFrame | xr.DataArray:
        """Probability of at least one success in m more rollouts, per cell.

        Parameters
        ----------
        m : int, array or pandas.Series
            Extra rollouts: one value for all cells, one per cell in input order,
            or a Series with the cells' index.
        summary : bool
            True: DataFrame aligned with :meth:`regimes` (gain_mean, gain_low,
            gain_high; low/high bound the conditional probability over the
            hyper-parameter draws). False: the draws, DataArray (chain, draw, cell).
        """
        cells_m = self._cell_m(m)
        cp = self._patterns.cell_pattern
        pairs, inverse = q.unique_pairs(cp, cells_m)
        post = self.pattern_posterior()
        if not summary:
            draws = q.pattern_gain_draws(post, pairs[0], pairs[1])[:, inverse]
            tag(pd.DataFrame(), self.diagnostics())
            return q.to_dataarray(draws, self.posterior.sizes["chain"], self.data.cells, "gain")
        mean, low, high = q.pattern_gain(post, pairs[0], pairs[1], ci_prob)
        out = self._cell_frame()
        out["m"] = cells_m
        out["gain_mean"], out["gain_low"], out["gain_high"] = (
            mean[inverse],
            low[inverse],
            high[inverse],
        )
        return tag(out, self.diagnostics())

    def pass_at_k(
        self,
        ks,
        *,
        kinds: tuple[str, ...] = q.PASS_AT_K_KINDS,
        ci_prob: float = q.CI_PROB,
    ) -> pd.DataFrame:
        """pass@k per group for any k, including k far beyond the observed n.

        Returns a tidy DataFrame (group, k, kind, mean, low, high); see
        :func:`bayes_regimes.queries.pass_at_k_all` for the three kinds.
        """
        ks = np.atleast_1d(np.asarray(ks))
        if ks.size == 0 or np.any(ks < 1) or np.any(ks != np.round(ks)):
            raise ValueError("ks must be positive integers")
        out = q.pass_at_k_summary(self.pattern_posterior(), ks, kinds, ci_prob)
        return tag(out, self.diagnostics())

    def coverage_ceiling(self, *, ci_prob: float = q.CI_PROB) -> pd.DataFrame:
        """Fraction of problems that resampling can ever solve, per group.

        ``kind`` = "benchmark" (mean over these problems of 1 - w_i) or
        "population" (1 - pi, for new problems).
        """
        post = self.pattern_posterior()
        bench, pop = q.coverage_draws(post)
        rows = []
        for kind, draws in (("benchmark", bench), ("population", pop)):
            mean, low, high = q.summarise_draws(draws, ci_prob)
            rows += [(g, kind, mean[i], low[i], high[i]) for i, g in enumerate(post.strata)]
        out = pd.DataFrame(rows, columns=["group", "kind", "mean", "low", "high"])
        return tag(out, self.diagnostics())

    def ppc(self, *, max_draws: int = 400, random_seed: int | None = 0) -> pd.DataFrame:
        """Posterior predictive check of the distribution of k per (group, n).

        Returns the observed number of cells per k bin beside the predicted mean
        and 89 % interval; plot it with :func:`bayes_regimes.plots.plot_ppc`.
        """
        from bayes_regimes.ppc import ppc_table

        out = ppc_table(self.pattern_posterior(), max_draws=max_draws, random_seed=random_seed)
        return tag(out, self.diagnostics())

    def prior_sensitivity(self, **kw) -> pd.DataFrame:
        """Power-scaling prior / likelihood sensitivity of the hyper-parameters, the
        structural fraction and the expected gain; see
        :func:`bayes_regimes.sensitivity.prior_sensitivity` for the keywords."""
        from bayes_regimes.sensitivity import prior_sensitivity

        return prior_sensitivity(self, **kw)

    def allocate(self, budget: int, cost=None) -> pd.DataFrame:
        """Optimal integer allocation of extra rollouts across the unsolved cells.

        Maximises the expected number of newly solved problems. With unit costs
        the greedy rule is exactly optimal (gain curves are concave); with
        unequal integer costs (``cost``: scalar, one per cell, or a Series keyed
        by cell) it is exact by dynamic programming on small instances, else
        greedy with the bound in ``attrs["bound"]``.

        Returns
        -------
        pandas.DataFrame
            Aligned with :meth:`regimes`: problem, group, condition, n, k, extra,
            gain. ``attrs`` holds method, objective, spent, unspent and bound.
        """
        if isinstance(cost, pd.Series):
            cost = cost.reindex(self.data.cells.index)
        extra, gain, info = q.allocate_budget(
            self.pattern_posterior(), self._patterns.cell_pattern, budget, cost
        )
        out = self._cell_frame()
        out["extra"], out["gain"] = extra, gain
        out.attrs.update(info)
        return tag(out, self.diagnostics())

    # -- plots: bayes_regimes.plots functions as methods (keyword-only, return a Figure) --
    plot_p_posterior = PlotMethod()
    plot_regime_fractions = PlotMethod()
    plot_pass_at_k = PlotMethod()
    plot_expected_gain = PlotMethod()
    plot_ppc = PlotMethod()
    plot_diagnostics = PlotMethod()


def _seed(model: BaseModel) -> int:
    import json

    seed = (
        json.loads(model.idata.attrs.get("fit", "{}")).get("random_seed") if model.idata else None
    )
    return 0 if seed is None else int(seed)
