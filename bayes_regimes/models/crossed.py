"""Crossed problem x model pooling: failures of one model told apart by the others.

With only (n, k) per cell, every problem that one model failed n times gets the same
posterior under :class:`~bayes_regimes.models.regime.RegimeModel`. Evaluation suites
run many models on the same problems, and how the other models fare on a problem
says whether this model's failure on it is unlucky or structural.

Model
-----
For problem i, model m (the ``group`` of :class:`~bayes_regimes.data.RolloutData`)
and condition c::

    eta_imc = theta_m - d_i (+ e_c)                  item-response mean, logit scale
    z_imc ~ Bernoulli(pi_imc), logit pi_imc = gamma + s_i (+ u_m)     structural
    p_imc | z = 0 ~ Beta(a_imc, b_imc) with mean sigmoid(eta_imc)
    k_imc ~ Binomial(n_imc, p_imc)

``d_i`` is the problem's difficulty, ``theta_m`` the model's ability, ``e_c`` a
condition effect (sums to zero), ``s_i`` the problem's structural propensity
(partially pooled: "nobody ever solves this problem" is a large s_i, "this model
cannot, others can" a structural cell among solved ones) and ``u_m`` an optional
per-model structural propensity. p is collapsed analytically (beta-binomial, see
math.md "Crossed problem x model"):

- ``slab="beta"``: a = sigmoid(eta) kappa, b = sigmoid(-eta) kappa (constant precision).
- ``slab="beta_logit"`` (default): a = kappa (1 + e^eta), b = kappa (1 + e^-eta).
  Same mean, precision kappa / (mu (1 - mu)): the spread of logit p is about the
  same at every mean (sd ~ sqrt(trigamma(kappa)) far from 1/2), as under a
  logit-normal slab, while the cell stays a closed-form beta-binomial.
- ``slab="logitnormal"``: logit p ~ Normal(eta, kappa) (kappa is then the logit-scale
  sd), integrated by the adaptive quadrature of :mod:`bayes_regimes.slabs` (slower).

The propensity s_i ~ Normal(0, propensity_sd) is integrated out per problem by
Gauss-Hermite quadrature (``PROPENSITY_NODES`` nodes: s_i has the discretised normal
prior), so the sampler sees only d, theta, kappa, gamma, the scales (and e, u): no
funnel between a problem's propensity and its difficulty. Given a draw, a cell's
structural prior *given the other cells of its problem* is
``pi_eff = sum_j q_j(-cell) sigmoid(gamma + propensity_sd x_j)``, and the cell is
then exactly a zero-inflated beta-binomial with (pi_eff, a, b): every query of
RegimeModel (``regimes``, ``expected_gain``, ``pass_at_k``, ``coverage_ceiling``,
``allocate``, ``ppc``) runs unchanged on :meth:`CrossedRegimeModel.pattern_posterior`
(one pattern per cell), evaluated chunk by chunk.

Priors (``DEFAULT_PRIORS``; scales are half-normal)
---------------------------------------------------
``theta_m = ability_loc + ability_sd z_m`` and ``d_i = difficulty_sd z_i`` with z
standard normal and summing to zero (so ``ability_loc`` is the logit mean of the
average model on the average problem, without a ridge against the mean
difficulty); ``ability_loc ~ Normal(0, 3)``, ``ability_sd ~ HalfNormal(1.5)``,
``difficulty_sd ~ HalfNormal(2)``; ``log kappa ~ Normal(1, 1.5)``; ``gamma ~
Normal(-1, 1.5)``; ``propensity_sd ~ HalfNormal(1.5)``; ``u_m = model_propensity_sd
z_m``, ``model_propensity_sd ~ HalfNormal(1.5)``; with ``kappa_by="model"`` (default)
``log kappa_m = log kappa + kappa_sd z_m``, ``kappa_sd ~ HalfNormal(0.5)``;
``e ~ ZeroSumNormal(condition_sd)``,
``condition_sd ~ HalfNormal(1)``; with ``discrimination=True``, ``log lambda_m =
discrimination_sd z_m`` (zero-sum), ``discrimination_sd ~ HalfNormal(0.5)``.

Model covariates
----------------
``model_covariates`` (known facts per model: log parameter count, training tokens,
an SFT/GRPO indicator) turn the per-model terms into regressions on the covariates
standardised over the fitted models: ``theta_m = ability_loc + x_m . ability_coef +
ability_sd z_m``, ``u_m = x_m . model_propensity_coef + model_propensity_sd z'_m``
and ``log kappa_m`` likewise (``covariate_terms`` chooses which; default all three);
coefficients ~ Normal(0, ``covariate_coef`` = 1.5), ``dims="model_covariate"``
(:mod:`~bayes_regimes.models.crossed_covariates`). A model whose own samples say
little (Pythia 70M: 2 successes in 1,280) then borrows its family's trend. The
graph itself is built in :mod:`~bayes_regimes.models.crossed_build`.

Larger suites
-------------
A gradient costs one beta-binomial per cell plus ``PROPENSITY_NODES`` softplus terms
per failed cell (the per-model structural terms enter as problems x models counts
times a models x nodes table). Measured fit times: ``benchmarks/results/crossed_scale.md``
(50 models x 500 problems x 10 samples, NUTS on 2 CPU cores) and
``crossed_scaling.md`` / ``crossed_scaling_gpu*.md`` (10^3 to 10^5 problems). Beyond
what NUTS does on a CPU:

- ``fit(sampler="numpyro")`` compiles the same model with JAX; on a GPU the per-cell
  terms run as one vectorised kernel and the chains are vectorised on the device.
- ``fit(method="advi")`` (or ``"fullrank_advi"``) is a fast variational
  approximation (:mod:`bayes_regimes.models.crossed_vi`), flagged by its own checks
  (ELBO convergence, Pareto k); its error against NUTS is in ``crossed_vi.md``. Use
  it to explore, not for final intervals.
- The per-cell log-likelihood (for LOO) is stored only up to ``LOG_LIK_LIMIT`` cells x
  draws; the queries never hold more than one block of cells x draws.

Posterior dims: ``model``, ``problem``, ``condition``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_regimes import queries as q
from bayes_regimes import slabs
from bayes_regimes.data import Patterns, RolloutData
from bayes_regimes.errors import DataError
from bayes_regimes.models import crossed_covariates as covariates
from bayes_regimes.models import crossed_vi
from bayes_regimes.models.crossed_draws import (
    FAST_BETA,
    SLABS,
    CrossedDrawsMixin,
    gauss_hermite,
)
from bayes_regimes.models.crossed_predict import new_cell_hyper, predict_new_cell
from bayes_regimes.models.regime import RegimeModel

DEFAULT_PRIORS: dict[str, tuple[float, float] | float] = {
    "ability_loc": (0.0, 3.0),
    "ability_sd": 1.5,
    "difficulty_sd": 2.0,
    "log_kappa": (1.0, 1.5),
    "logit_pi": (-1.0, 1.5),
    "propensity_sd": 1.5,
    "model_propensity_sd": 1.5,
    "condition_sd": 1.0,
    "discrimination_sd": 0.5,
    "covariate_coef": 1.5,
}
#: ``centered="auto"`` centres the abilities (difficulties) when there are at least
#: ``CENTRE_MIN_UNITS`` models (problems) and the median one has at least
#: ``CENTRE_MIN_SUCCESSES`` successes and as many failures.
CENTRE_MIN_SUCCESSES = 20
CENTRE_MIN_UNITS = 8
#: Largest cells x posterior samples for which the per-cell log-likelihood is stored.
LOG_LIK_LIMIT = 20_000_000


def _labels(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64), [str(u) for u in uniques]


class CrossedRegimeModel(CrossedDrawsMixin, RegimeModel):
    """Crossed problem x model zero-inflated beta-binomial (item-response slab mean).

    Parameters
    ----------
    data : RolloutData
        Cells with a problem column and a model column (the ``group``), optionally a
        condition column. At least two models.
    slab : {"beta_logit", "beta", "logitnormal"}
        Slab family around the item-response mean (see the module docstring).
    structural : bool
        Include the per-cell point mass at p = 0.
    epsilon, threshold : float
        As in :class:`~bayes_regimes.models.regime.RegimeModel`.
    priors : dict, optional
        Overrides of :data:`DEFAULT_PRIORS`.
    condition_effect : bool
        Add a condition effect on the logit mean when the data has >= 2 conditions.
    model_propensity : bool
        Add a per-model term u_m to the structural logit (default).
    kappa_by : {"model", "global"}
        One slab concentration per model (partially pooled; default), or one for all.
        The defaults (per-model structural term with a wide prior, per-model
        concentration) won on held-out Large Language Monkeys: without them the
        models' predicted rescued fractions are too alike
        (``benchmarks/results/crossed_monkeys.md``).
    discrimination : bool
        Two-parameter item response: eta = theta_m - lambda_m d_i, with a per-model
        sensitivity to difficulty lambda_m = exp(discrimination_sd z_m) (z sums to
        zero, so the geometric mean of lambda is 1). Small models whose successes
        follow the common difficulty only loosely get lambda < 1. Experimental: with
        few samples per cell the posterior can be multimodal (see the benchmark).
    model_covariates : DataFrame or dict, optional
        Known facts about each model (index: model name; numeric columns, e.g. log
        parameter count). They enter the per-model terms as regressions, e.g.
        ``theta_m = ability_loc + x_m . ability_coef + ability_sd z_m``, on the
        covariates standardised over the fitted models (coefficients ``dims=
        "model_covariate"``, prior Normal(0, ``covariate_coef``)); see
        :mod:`~bayes_regimes.models.crossed_covariates`. A model unknown to the fit is
        drawn from the whole population of models (trend and residual).
    covariate_terms : list of {"ability", "structural", "kappa"}, optional
        Which per-model terms the covariates inform (default: every one the model
        has: the ability, the structural term with ``model_propensity``, and with
        ``kappa_by="model"`` the log slab concentration, coefficient ``kappa_coef``).
    centered : {"auto", True, False}
        Centred or non-centred abilities and difficulties (see :attr:`centering`).
    pooling : {"crossed"}
        Set by ``RegimeModel(data, pooling="crossed")``, which returns this class.

    Examples
    --------
    >>> from bayes_regimes import RegimeModel, RolloutData
    >>> from bayes_regimes.models.crossed_tools import simulate_crossed
    >>> sim = simulate_crossed(n_problems=60, n_models=4, n=10, random_seed=0)
    >>> model = RegimeModel(RolloutData.from_counts(sim.counts, group="model"), pooling="crossed")
    >>> type(model).__name__
    'CrossedRegimeModel'
    >>> model.fit(draws=200, tune=200, chains=2, progressbar=False)  # doctest: +SKIP
    >>> model.regimes().head()  # doctest: +SKIP
    """

    def __init__(
        self,
        data: RolloutData,
        slab: str = "beta_logit",
        structural: bool = True,
        epsilon: float = 1e-3,
        threshold: float = 0.9,
        priors: dict[str, Any] | None = None,
        *,
        condition_effect: bool = True,
        model_propensity: bool = True,
        kappa_by: str = "model",
        discrimination: bool = False,
        centered: bool | str = "auto",
        model_covariates: pd.DataFrame | dict | None = None,
        covariate_terms: list[str] | None = None,
        pooling: str = "crossed",
    ) -> None:
        if pooling != "crossed":
            raise ValueError(f"CrossedRegimeModel has pooling='crossed', got {pooling!r}")
        if slab not in SLABS:
            raise ValueError(f"unknown slab {slab!r}; available: {', '.join(SLABS)}")
        if centered not in ("auto", True, False):
            raise ValueError(f"centered must be 'auto', True or False, got {centered!r}")
        if kappa_by not in ("global", "model"):
            raise ValueError(f"kappa_by must be 'global' or 'model', got {kappa_by!r}")
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
        if not 0.5 < threshold < 1:
            raise ValueError(f"threshold must be in (0.5, 1), got {threshold}")
        unknown = set(priors or {}) - set(DEFAULT_PRIORS)
        if unknown:
            raise ValueError(f"unknown prior(s) {sorted(unknown)}; known: {list(DEFAULT_PRIORS)}")
        if not isinstance(data, RolloutData):
            raise TypeError("data must be a RolloutData")
        cells = data.cells
        if cells["group"].nunique() < 2:
            raise DataError(
                "column 'group': pooling='crossed' needs a model column with at least two "
                "models (pass it as the group, e.g. read_rollouts(path, group='model'))"
            )
        models = [str(u) for u in pd.unique(cells["group"])]
        # Validated now (clear errors); stored raw in the config, so a loaded fit
        # standardises them the same way.
        cov = raw = terms = None
        if model_covariates is None and covariate_terms is not None:
            raise ValueError("covariate_terms needs model_covariates")
        if model_covariates is not None:
            rows = covariates.checked_covariates(model_covariates, models)
            cov, raw = covariates.standardise(rows), rows.to_dict()
            options = {"model_propensity": bool(model_propensity), "kappa_by": kappa_by}
            terms = covariates.resolve_terms(
                covariate_terms, structural=bool(structural), **options
            )
        merged = {**DEFAULT_PRIORS, **(priors or {})}
        merged = {k: list(v) if isinstance(v, tuple | list) else v for k, v in merged.items()}
        super(RegimeModel, self).__init__(
            data,
            slab=slab,
            structural=bool(structural),
            epsilon=float(epsilon),
            threshold=float(threshold),
            priors=merged,
            condition_effect=bool(condition_effect),
            model_propensity=bool(model_propensity),
            kappa_by=kappa_by,
            discrimination=bool(discrimination),
            centered=centered if centered == "auto" else bool(centered),
            model_covariates=raw,
            covariate_terms=terms,
            pooling="crossed",
        )
        self._problem, self.problems = _labels(cells["problem"])
        self._model, self.models = _labels(cells["group"])
        #: Standardised model covariates (models x covariates), or None.
        self.model_covariates = None if cov is None else cov.loc[self.models]
        #: Posterior names of the covariate coefficients, by the term they inform.
        self.covariate_coefs = {t: covariates.COEF_NAMES[t] for t in terms or []}
        self._condition, self.conditions = _labels(cells["condition"])
        self._use_condition = bool(condition_effect) and len(self.conditions) > 1
        self._k = cells["k"].to_numpy(np.int64)
        self._n = cells["n"].to_numpy(np.int64)
        # Every cell is its own pattern (its parameters differ from every other cell's).
        table = pd.DataFrame(
            {
                "stratum": data.stratum_index.astype(np.int64),
                "n": self._n,
                "k": self._k,
                "count": np.ones(len(cells), dtype=np.int64),
            }
        )
        self._patterns = Patterns(table, np.arange(len(cells), dtype=np.int64))
        # Model and condition of each stratum (strata are "model" or "model|condition").
        first = pd.Series(np.arange(len(cells))).groupby(data.stratum_index).first().to_numpy()
        self._stratum_model = self._model[first]
        self._stratum_condition = self._condition[first]
        self._cache: tuple[xr.DataTree, dict[str, np.ndarray]] | None = None
        # Beta slabs: closed_form's formulas, evaluated faster (see crossed_draws).
        self._family = slabs.get_slab("logitnormal") if slab == "logitnormal" else FAST_BETA

    # -- model -------------------------------------------------------------------------
    @property
    def centering(self) -> tuple[bool, bool]:
        """Centred parametrisation of (abilities, difficulties)?

        ``centered="auto"``: centred where the data pin each value down, non-centred
        where the prior does much of the work (no funnel then). A dimension is centred
        when it has at least :data:`CENTRE_MIN_UNITS` members and its median member
        has at least :data:`CENTRE_MIN_SUCCESSES` successes and as many failures (so
        its logit is known to about +-0.3). With fewer members the population sd is
        weakly identified and a centred fit funnels whenever the sd is small (SBC of
        4 models x 15 problems: divergences in most fits under the former rule).
        """
        cfg = self.config["centered"]
        if cfg != "auto":
            return bool(cfg), bool(cfg)

        def pinned(codes: np.ndarray, size: int) -> bool:
            succ = np.bincount(codes, weights=self._k, minlength=size)
            fail = np.bincount(codes, weights=self._n - self._k, minlength=size)
            typical = float(np.median(np.minimum(succ, fail)))
            return size >= CENTRE_MIN_UNITS and typical >= CENTRE_MIN_SUCCESSES

        return (
            pinned(self._model, len(self.models)),
            pinned(self._problem, len(self.problems)),
        )

    @property
    def diagnostic_vars(self) -> list[str]:  # type: ignore[override]
        cfg = self.config
        names = ["ability", "difficulty", "ability_loc", "ability_sd", "difficulty_sd", "kappa"]
        if cfg["kappa_by"] == "model":
            names.append("kappa_sd")
        if cfg["discrimination"]:
            names += ["discrimination", "discrimination_sd"]
        names += list(self.covariate_coefs.values())
        if self._use_condition:
            names += ["condition_effect", "condition_sd"]
        if cfg["structural"]:
            names += ["logit_pi_loc", "propensity_sd", "propensity"]
            if cfg["model_propensity"]:
                names += ["model_propensity", "model_propensity_sd"]
        return names

    def build_model(self):
        """The PyMC model (see :func:`~bayes_regimes.models.crossed_build.build_crossed_model`)."""
        from bayes_regimes.models.crossed_build import build_crossed_model

        return build_crossed_model(self)

    def pointwise_log_likelihood(self, posterior: xr.Dataset) -> xr.DataArray | None:
        """log P(cell | other cells of its problem, draw): (chain, draw, pattern).

        None above :data:`LOG_LIK_LIMIT` (no LOO then). Leaving one cell out is what
        PSIS-LOO needs here: the propensity is integrated out, so cells of a problem
        are dependent given the sampled parameters.
        """
        n_ch, n_dr = posterior.sizes["chain"], posterior.sizes["draw"]
        n_cells = self.data.n_cells
        if n_cells * n_ch * n_dr > LOG_LIK_LIMIT:
            return None
        post, dr = self.pattern_posterior(), self._draws()
        ll = np.empty((n_ch * n_dr, n_cells))
        for idx in post.chunks():
            pi, a, b = self._cell_hyper(dr, idx, solved_pi=True)
            ll[:, idx] = self._family.logpmf(post.k[idx], post.n[idx], pi, a, b)
        return xr.DataArray(
            ll.reshape(n_ch, n_dr, n_cells),
            dims=("chain", "draw", "pattern"),
            coords={
                "chain": posterior["chain"].values,
                "draw": posterior["draw"].values,
                "pattern": np.arange(n_cells),
            },
        )

    def _assemble(self, dt: xr.DataTree, **fit_info: Any) -> xr.DataTree:
        # The per-cell log-likelihood needs the posterior in place first.
        self.idata = xr.DataTree.from_dict({"posterior": dt["posterior"].to_dataset()})
        self._cache = None
        return super()._assemble(dt, **fit_info)

    def pattern_posterior(self) -> q.PatternPosterior:
        """Per-cell (pi, a, b) draws, computed chunk by chunk from the latent draws.

        pi is the structural probability given the other cells of the cell's problem;
        for a solved cell (whose structural weight is 0 whatever pi) it is returned
        as 0 to save the quadrature.

        ``population()`` is a new problem for each stratum (model, condition): a
        mixture over Gauss-Hermite nodes of its difficulty, with the structural
        probability averaged over the propensity prior.
        """
        dr = self._draws()
        pat = self._patterns.table
        cache: dict[str, tuple] = {}

        def population():
            if "pop" not in cache:
                sm = self._stratum_model
                cache["pop"] = new_cell_hyper(
                    self, dr, [None] * len(sm), list(sm), self._stratum_condition
                )
            return cache["pop"]

        return q.PatternPosterior(
            n=pat["n"].to_numpy(),
            k=pat["k"].to_numpy(),
            count=pat["count"].to_numpy(),
            stratum=pat["stratum"].to_numpy(),
            hyper=lambda idx: self._cell_hyper(dr, np.asarray(idx)),
            population=population,
            strata=list(self.data.strata),
            n_draws=dr["ability"].shape[0],
            population_weights=gauss_hermite()[1],
            slab=self._family,
        )

    # -- new cells ----------------------------------------------------------------------
    def predict_new_cell(
        self,
        problem,
        model,
        *,
        condition: str | None = None,
        ks=(1, 10, 100, 1000),
        ci_prob: float = q.CI_PROB,
        model_covariates: pd.DataFrame | dict | None = None,
    ) -> pd.DataFrame:
        """Posterior predictive for cells never attempted: (problem, model) pairs;
        new models may come with their covariates.

        See :func:`~bayes_regimes.models.crossed_predict.predict_new_cell`.
        """
        options = {"ks": ks, "ci_prob": ci_prob, "model_covariates": model_covariates}
        return predict_new_cell(self, problem, model, condition=condition, **options)

    def problem_summary(self, ci_prob: float = q.CI_PROB) -> pd.DataFrame:
        """Per problem: difficulty with its interval, propensity and the structural
        probability of a new model on it.

        See :func:`~bayes_regimes.models.crossed_tools.problem_summary`.
        """
        from bayes_regimes.models.crossed_tools import problem_summary

        return problem_summary(self, ci_prob)

    # -- comparison and figures ----------------------------------------------------------
    def compare_structural(
        self, epsilon: float | None = None, ci_prob: float = q.CI_PROB
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Regime fractions per model (or model|condition) with credible intervals, and
        the posterior probability that one leaves more structural failures than another.

        See :func:`~bayes_regimes.models.crossed_tools.compare_structural`.
        """
        from bayes_regimes.models.crossed_tools import compare_structural

        return compare_structural(self, epsilon, ci_prob)

    def plot_difficulty_ability(self, **options: Any):
        """Difficulty x ability map, failed cells coloured by their structural probability.

        See :func:`bayes_regimes.plots_crossed.plot_difficulty_ability`.
        """
        from bayes_regimes.plots_crossed import plot_difficulty_ability

        return plot_difficulty_ability(self, **options)

    def plot_structural_comparison(self, **options: Any):
        """Regime fractions with intervals and P(row more structural than column).

        See :func:`bayes_regimes.plots_crossed.plot_structural_comparison`.
        """
        from bayes_regimes.plots_crossed import plot_structural_comparison

        return plot_structural_comparison(self, **options)

    # -- fitting -------------------------------------------------------------------------
    def fit(self, draws: int = 1000, tune: int = 1000, chains: int = 4, *, method="nuts", **kw):
        """NUTS (``method="nuts"``, see :meth:`BaseModel.fit`) or variational inference.

        ``method="advi"`` / ``"fullrank_advi"`` runs
        :func:`~bayes_regimes.models.crossed_vi.fit_vi` (a fast approximation;
        keyword arguments ``n_steps``, ``random_seed``, ``progressbar``) and keeps
        ``draws`` draws of the approximation; its diagnostics are the ELBO
        convergence and the Pareto k of the approximation.
        """
        if method == "nuts":
            return super().fit(draws=draws, tune=tune, chains=chains, **kw)
        return crossed_vi.fit_vi(self, method=method, draws=draws, **kw)

    def diagnostics(self):
        """MCMC diagnostics, or the variational checks for a VI fit (see crossed_vi)."""
        fit_info = json.loads(self._require_fit().attrs.get("fit", "{}"))
        if fit_info.get("method", "nuts") != "nuts" and self._diagnostics is None:
            self._diagnostics = crossed_vi.vi_report(self._require_fit())
        return super().diagnostics()
