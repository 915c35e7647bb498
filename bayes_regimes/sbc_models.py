"""Simulation-based calibration of the crossed and the intervention models.

The same protocol as :mod:`bayes_regimes.sbc` (Talts et al. 2018): draw every
parameter from the model's own prior (``pm.sample_prior_predictive`` on the PyMC
graph of ``build_model``, so defaults and ``priors=`` overrides are exactly the
model's), simulate data from the model's generative story on a fixed design, fit
with the package's ``fit`` (NUTS, the package's diagnostics), and rank each true
value among evenly thinned posterior draws. Besides hyper-parameters, a few
*cell-level* latent quantities are ranked: the structural indicator z (p = 0) and
p of chosen cells, drawn per posterior draw from their exact conditional
posterior. Rank uniformity holds conditionally on the data, so a cell may be
chosen by its data (here: the first cell with no success).

- :class:`CrossedDesign`: :class:`~bayes_regimes.models.crossed.CrossedRegimeModel`
  (``RegimeModel(data, pooling="crossed")``) on models x problems x n rollouts. The
  problem propensity s_i is simulated from the model's discretised normal prior
  (its Gauss-Hermite nodes), which is what the model integrates over.
- :class:`InterventionDesign`:
  :class:`~bayes_regimes.models.interventions.InterventionModel` on problems x
  conditions with best-of-r contexts and one fixed feature, one group, no
  selection condition. The true parameters (``alpha``, ``loading``, ``gamma``, ...,
  the deterministics every query uses) are ranked, and ``u`` of one problem.

Each compiled model depends on its data (the likelihood's index sets do), so every
fit compiles again (about 10 s on the 2-core machine).

Examples
--------
>>> design = CrossedDesign(n_models=3, n_problems=6, n=5)
>>> design.quantities()[:3]
['ability_loc', 'ability_sd', 'difficulty_sd']
>>> res = run_design_sbc(design, n_sims=2, draws=100, tune=100)  # doctest: +SKIP
>>> res.uniformity()  # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import expit

from bayes_regimes._sbc_design import (
    Quantity,
    SBCDesign,
    _flat_index,
    _sample_cell,
    _values,
)
from bayes_regimes.data import RolloutData
from bayes_regimes.models.crossed import CrossedRegimeModel
from bayes_regimes.models.crossed_draws import PROPENSITY_NODES, gauss_hermite, slab_shapes
from bayes_regimes.models.interventions import InterventionModel
from bayes_regimes.sbc import _FIT_DEFAULTS, _quiet_pymc, _row, prior_sample
from bayes_regimes.sbc_stats import SBCResult, rank_statistic

__all__ = ["CrossedDesign", "InterventionDesign", "SBCDesign", "prior_sample", "run_design_sbc"]


# ---------------------------------------------------------------------------
# crossed problem x model
# ---------------------------------------------------------------------------
class CrossedDesign(SBCDesign):
    """SBC design of the crossed model: every problem attempted n times by every model.

    Parameters
    ----------
    n_models, n_problems, n : int
        Models, problems and rollouts per cell.
    model_kwargs : dict, optional
        Keyword arguments of :class:`CrossedRegimeModel` (Beta slabs only:
        ``slab="beta_logit"`` (default) or ``"beta"``). With ``model_covariates`` (a
        table for the models ``m00``, ``m01``, ...), their coefficients are ranked too.
    seed : int
        Seeds the template data (k of the template only sets the compile-time
        structure; the prior does not depend on it).
    """

    label = "crossed"

    def __init__(
        self,
        n_models: int = 4,
        n_problems: int = 15,
        n: int = 10,
        model_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model_kwargs, seed)
        if n_models < 2 or n_problems < 2 or n < 1:
            raise ValueError("need >= 2 models, >= 2 problems and n >= 1")
        self.n_models, self.n_problems, self.n = n_models, n_problems, n
        self.models = [f"m{j:02d}" for j in range(n_models)]
        self.problems = [f"q{j:04d}" for j in range(n_problems)]
        template = self.build(self.template_data())
        cfg = template.config
        if cfg["slab"] not in ("beta", "beta_logit"):
            raise ValueError(f"crossed SBC supports the Beta slabs, not {cfg['slab']!r}")
        if cfg["discrimination"]:
            raise ValueError("crossed SBC does not simulate discrimination=True")
        self.config = cfg
        names = ["ability", "difficulty", "ability_loc", "ability_sd", "difficulty_sd"]
        names += ["log_kappa_loc", "kappa"] + (["kappa_sd"] if cfg["kappa_by"] == "model" else [])
        if cfg["structural"]:
            names += ["logit_pi_loc", "propensity_sd"]
            if cfg["model_propensity"]:
                names += ["model_propensity", "model_propensity_sd"]
        self.covariates = list(cfg["model_covariates"] or {})
        names += list(template.covariate_coefs.values())
        self.prior_vars = names
        self.cell_labels = (
            ["z[failed cell]", "p[failed cell]", "p[cell 0]"]
            if cfg["structural"]
            else ["p[failed cell]", "p[cell 0]"]
        )

    def _frame(self, k: np.ndarray) -> RolloutData:
        i, m = np.divmod(np.arange(self.n_problems * self.n_models), self.n_models)
        counts = pd.DataFrame(
            {
                "problem_id": np.array(self.problems)[i],
                "model": np.array(self.models)[m],
                "n": self.n,
                "k": k,
            }
        )
        return RolloutData.from_counts(counts, group="model")

    def template_data(self) -> RolloutData:
        rng = np.random.default_rng(self.seed)
        return self._frame(rng.binomial(self.n, 0.3, size=self.n_problems * self.n_models))

    def build(self, data: RolloutData, **overrides: Any) -> CrossedRegimeModel:
        return CrossedRegimeModel(data, **{**self.model_kwargs, **overrides})

    def parameters(self) -> list[Quantity]:
        cfg = self.config
        scalars = ["ability_loc", "ability_sd", "difficulty_sd", "log_kappa_loc"]
        scalars += ["kappa_sd"] if cfg["kappa_by"] == "model" else []
        if cfg["structural"]:
            scalars += ["logit_pi_loc", "propensity_sd"]
            scalars += ["model_propensity_sd"] if cfg["model_propensity"] else []
        out: list[Quantity] = [(name, name, {}) for name in scalars]
        m0, q0 = {"model": self.models[0]}, {"problem": self.problems[0]}
        out += [(f"ability[{m0['model']}]", "ability", m0)]
        out += [(f"difficulty[{q0['problem']}]", "difficulty", q0)]
        if cfg["kappa_by"] == "model":
            out += [(f"kappa[{m0['model']}]", "kappa", m0)]
        if cfg["structural"] and cfg["model_propensity"]:
            out += [(f"model_propensity[{m0['model']}]", "model_propensity", m0)]
        # Model covariates: the trends of the abilities and structural terms.
        coefs = [v for v in self.prior_vars if v.endswith("_coef")]
        for name in coefs:
            out += [(f"{name}[{c}]", name, {"model_covariate": c}) for c in self.covariates]
        return out

    def simulate(self, draw: xr.Dataset, rng: np.random.Generator):
        """Cells from one prior draw: z ~ Bernoulli(sigmoid(gamma + s_i + u_m)) with s_i
        on the model's propensity nodes, p | z = 0 ~ Beta around sigmoid(ability_m -
        difficulty_i), k ~ Binomial(n, p)."""
        cfg = self.config
        i, m = np.divmod(np.arange(self.n_problems * self.n_models), self.n_models)
        eta = draw["ability"].values[m] - draw["difficulty"].values[i]
        kappa = np.broadcast_to(draw["kappa"].values, (self.n_models,))[m]
        a, b = slab_shapes(eta, kappa, cfg["slab"])
        if cfg["structural"]:
            x, w = gauss_hermite(PROPENSITY_NODES)
            s = float(draw["propensity_sd"]) * x[rng.choice(x.size, self.n_problems, p=w)]
            logit = float(draw["logit_pi_loc"]) + s[i]
            if cfg["model_propensity"]:
                logit = logit + draw["model_propensity"].values[m]
            z = rng.random(eta.size) < expit(logit)
        else:
            z = np.zeros(eta.size, bool)
        p = np.where(z, 0.0, rng.beta(a, b))
        k = rng.binomial(self.n, p)
        failed = np.flatnonzero(k == 0)
        cells = np.array([failed[0] if failed.size else eta.size - 1, 0])
        truth = {"cells": cells, "z": z[cells].astype(float), "p": p[cells]}
        return self._frame(k), truth

    def cell_draws(self, model: CrossedRegimeModel, cell_truth, idx, rng):
        cells = cell_truth["cells"]
        dr = model._draws()
        pi, a, b = (v[idx] for v in model._cell_hyper(dr, cells))
        k, n = model._k[cells], model._n[cells]
        z, p = _sample_cell(k, n, pi, a, b, rng)
        if self.config["structural"]:
            truth = np.r_[cell_truth["z"][0], cell_truth["p"]]
            return truth, np.column_stack([z[:, 0], p])
        return cell_truth["p"], p

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "n_models": self.n_models,
            "n_problems": self.n_problems,
            "n": self.n,
        }


# ---------------------------------------------------------------------------
# interventions
# ---------------------------------------------------------------------------
class InterventionDesign(SBCDesign):
    """SBC design of the intervention model: problems x conditions, best-of-r contexts.

    Parameters
    ----------
    n_problems : int
        Problems (one group); each has one feature ``x0`` ~ Normal(0, 1), drawn once
        from ``seed`` and fixed across simulations (a covariate of the design).
    conditions : sequence of str
        Conditions, the first is the baseline.
    contexts, attempts : int
        D contexts per cell, each rescued by best-of-``attempts``.
    model_kwargs : dict, optional
        Further keyword arguments of :class:`InterventionModel` (not ``selection``).
    """

    label = "interventions"
    prior_vars = ["alpha", "lam", "loading", "rho", "log_kappa", "gamma", "delta", "u"]

    def __init__(
        self,
        n_problems: int = 20,
        conditions=("retry", "hint", "steer"),
        contexts: int = 10,
        attempts: int = 3,
        model_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model_kwargs, seed)
        if self.model_kwargs.get("selection") is not None:
            raise ValueError("intervention SBC does not simulate a selection condition")
        self.n_problems, self.conditions = n_problems, [str(c) for c in conditions]
        self.contexts, self.attempts = contexts, attempts
        self.problem_ids = [f"p{j:03d}" for j in range(n_problems)]
        self.x = np.random.default_rng(seed).normal(size=n_problems)
        self._template = self.build(self.template_data())
        lay = self._template.layout
        if list(lay.problem) != self.problem_ids or self._template.conditions != self.conditions:
            raise RuntimeError("unexpected unit or condition order of the design")
        self.cell_labels = ["z[failed cell]", "p[failed cell]"]

    def _frame(self, K: np.ndarray) -> RolloutData:
        i, c = np.divmod(np.arange(K.size), len(self.conditions))
        counts = pd.DataFrame(
            {
                "problem_id": np.array(self.problem_ids)[i],
                "condition": np.array(self.conditions)[c],
                "n": self.contexts,
                "k": K.ravel(),
                "x0": self.x[i],
            }
        )
        return RolloutData.from_counts(counts, condition="condition", features=["x0"])

    def template_data(self) -> RolloutData:
        rng = np.random.default_rng(self.seed)
        return self._frame(
            rng.binomial(self.contexts, 0.3, (self.n_problems, len(self.conditions)))
        )

    def build(self, data: RolloutData, **overrides: Any) -> InterventionModel:
        kw = {"attempts": self.attempts, **self.model_kwargs, **overrides}
        return InterventionModel(data, **kw)

    def parameters(self) -> list[Quantity]:
        g = self._template.layout.groups[0]
        out: list[Quantity] = []
        for name in ("alpha", "lam"):
            out += [(f"{name}[{c}]", name, {"group": g, "condition": c}) for c in self.conditions]
        for name in ("loading", "log_kappa"):
            out += [(f"{name}[{c}]", name, {"condition": c}) for c in self.conditions]
        out += [("rho", "rho", {})]
        for name in ("gamma", "delta"):
            out += [
                (f"{name}[{c}]", name, {"condition": c, "feature": "x0"}) for c in self.conditions
            ]
        out += [(f"u[{self.problem_ids[0]}]", "u", {"problem": self.problem_ids[0]})]
        return out

    def _hyper(self, draw: xr.Dataset):
        """pi, a, b of every (unit, condition) under one prior draw: (units, conditions)."""
        model, C = self._template, len(self.conditions)
        dr = {
            name: draw[name].values[None]
            for name in ("alpha", "lam", "loading", "rho", "log_kappa", "gamma", "delta")
        }
        iu, ic = np.repeat(np.arange(self.n_problems), C), np.tile(np.arange(C), self.n_problems)
        u = draw["u"].values[None, iu]
        pi, a, b = model.hyper(dr, model.layout.group[iu], model.Z[iu], u, ic)
        return (v.reshape(self.n_problems, C) for v in (pi, a, b))

    def simulate(self, draw: xr.Dataset, rng: np.random.Generator):
        """K ~ Binomial(D, 1 - (1 - p)^r), p = 0 if structural else Beta(a, b), with
        (pi, a, b) from :meth:`InterventionModel.hyper` at the drawn parameters."""
        pi, a, b = self._hyper(draw)
        z = rng.random(pi.shape) < pi
        p = np.where(z, 0.0, rng.beta(a, b))
        q = 1.0 - (1.0 - p) ** self.attempts
        K = rng.binomial(self.contexts, q)
        failed = np.flatnonzero(K[:, 0] == 0)
        unit = int(failed[0]) if failed.size else 0
        truth = {"unit": unit, "z": float(z[unit, 0]), "p": float(p[unit, 0])}
        return self._frame(K), truth

    def cell_draws(self, model: InterventionModel, cell_truth, idx, rng):
        from bayes_regimes.routing import _cell_posterior

        dr = {k: v[idx] for k, v in model.draws().items()}
        iu, ic = np.array([cell_truth["unit"]]), np.array([0])
        pi, a, b = model._cell_hyper(dr, iu, ic)
        lay = model.layout
        eps = model.config["epsilon"]
        *_, smp = _cell_posterior(lay.K[iu, ic], lay.D[iu, ic], model.r[ic], pi, a, b, eps, rng, 1)
        p = smp[0, :, 0]
        truth = np.array([cell_truth["z"], cell_truth["p"]])
        return truth, np.column_stack([(p == 0).astype(float), p])

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "n_problems": self.n_problems,
            "conditions": self.conditions,
            "contexts": self.contexts,
            "attempts": self.attempts,
        }


# ---------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------
def run_design_sbc(
    design: SBCDesign,
    n_sims: int = 50,
    *,
    draws: int = 1000,
    tune: int = 500,
    chains: int = 2,
    n_rank_draws: int = 99,
    sampler: str = "nutpie",
    target_accept: float | None = None,
    random_seed: int = 0,
    label: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoint: Callable[[SBCResult], None] | None = None,
    prior_overrides: Mapping[str, Any] | None = None,
) -> SBCResult:
    """Simulation-based calibration of the model of ``design``.

    Parameters
    ----------
    design : SBCDesign
        :class:`CrossedDesign` or :class:`InterventionDesign`.
    n_sims : int
        Simulated data sets.
    draws, tune, chains, sampler, target_accept :
        Settings of each fit (:meth:`BaseModel.fit`; ``target_accept`` defaults to
        its default).
    n_rank_draws : int
        Posterior draws (thinned evenly within chains) each rank is taken among.
    random_seed : int
        Seeds the prior draws, the simulations and the sampler.
    checkpoint : callable, optional
        Called with the result so far after every completed fit (to save partial
        results of a long run).
    prior_overrides : dict, optional
        Model keyword arguments (e.g. ``{"priors": {...}}``) of the model whose
        prior generates the truth; the fitted model keeps the design's. Used to
        check that a deliberately mis-specified prior fails the tests.

    Returns
    -------
    SBCResult
        ``fits`` has one row per completed fit (failed diagnostics included). A fit
        that raised has no ranks; it is listed, with its error, under
        ``settings["errored"]`` (never dropped silently).
    """
    if n_sims < 1:
        raise ValueError("n_sims must be >= 1")
    if n_rank_draws >= draws * chains:
        raise ValueError(f"n_rank_draws ({n_rank_draws}) must be < draws x chains")
    target_accept = target_accept or _FIT_DEFAULTS["target_accept"].default
    seeds = np.random.SeedSequence(random_seed).generate_state(2 * n_sims + 1)
    template = design.template_data()
    source = design.build(template, **(prior_overrides or {}))
    prior = prior_sample(source, design.prior_vars, n_sims, int(seeds[0]))
    params = design.parameters()
    rng = np.random.default_rng(int(seeds[0]))
    fit_kw = {"draws": draws, "tune": tune, "chains": chains, "target_accept": target_accept}
    ranks, truths, rows, errored = [], [], [], []
    settings = {
        **design.settings(),
        "model": type(source).__name__,
        "config": design.build(template).config,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "sampler": sampler,
        "target_accept": target_accept,
        "random_seed": random_seed,
        "prior_overrides": dict(prior_overrides or {}),
        "errored": errored,
    }

    def result(done: int) -> SBCResult:
        return SBCResult.from_arrays(
            np.stack(ranks),
            np.stack(truths),
            n_rank_draws=n_rank_draws,
            parameters=design.quantities(),
            fits=pd.DataFrame(rows),
            label=label or design.label,
            settings={**settings, "n_sims_planned": n_sims, "n_sims_done": done},
        )

    for i in range(n_sims):
        t0 = time.perf_counter()
        draw = prior.isel(simulation=i)
        data, cell_truth = design.simulate(draw, np.random.default_rng(int(seeds[1 + i])))
        model = design.build(data)
        try:
            with warnings.catch_warnings(), _quiet_pymc():
                warnings.simplefilter("ignore")
                model.fit(
                    random_seed=int(seeds[1 + n_sims + i]),
                    sampler=sampler,
                    progressbar=False,
                    **fit_kw,
                )
            post = model.posterior
            idx = _flat_index(post, n_rank_draws)
            lead = ("chain", "draw")
            values = [_values(post[var], sel, lead).ravel()[idx] for _, var, sel in params]
            cell_true, cell_vals = design.cell_draws(model, cell_truth, idx, rng)
        except Exception as err:  # noqa: BLE001 - recorded in settings, never silently
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            errored.append({"simulation": i, "error": message})
            continue
        truth = np.array([float(draw[var].sel(sel)) for _, var, sel in params])
        truth = np.r_[truth, cell_true]
        ranks.append(rank_statistic(truth, np.column_stack([*values, cell_vals]), rng))
        truths.append(truth)
        rows.append({"simulation": i, **_row(model.diagnostics(), time.perf_counter() - t0)})
        if progress is not None:
            progress(i + 1, n_sims)
        if checkpoint is not None:
            checkpoint(result(i + 1))
    if not ranks:
        raise RuntimeError(f"every fit raised; first error: {errored[0]['error']}")
    return result(n_sims)
