"""Variational inference for large crossed suites (a fast, approximate fit).

``CrossedRegimeModel.fit(method="advi")`` (or ``"fullrank_advi"``) maximises the
ELBO with PyMC's ADVI and keeps draws of the approximation as the posterior. The
queries then run unchanged. A VI fit is checked differently from NUTS:

- *ELBO convergence*: the mean loss of the last 10 % of steps must be within 0.1 %
  of the 10 % before it;
- *Pareto k* of the importance ratios p(theta, data) / q(theta) over draws of q
  (Yao et al. 2018, "Yes, but did it work?"): k <= 0.7 means the approximation is
  usable as a proposal; above it, posterior means and intervals may be off.

A failed check flags the fit like a failed MCMC fit (a DiagnosticsWarning with
every query). Mean-field ADVI on a crossed model with hundreds of problems almost
always has k > 0.7: the benchmark ``benchmarks/crossed.py`` measures how far its
answers are from NUTS instead of trusting it.

The optimisation runs PyMC's default optimiser (adagrad with a running window,
learning rate 1e-3). When the objective turns NaN (full-rank ADVI on hundreds of
parameters can overshoot), the fit restarts from scratch at a ten times smaller
learning rate with the gradient norm clipped (``LEARNING_RATES``,
``GRAD_NORM_MAX``); the learning rate that worked and the failed tries are kept in
the fit's attributes, and a :class:`~bayes_regimes.errors.FitError` names them
when every try fails.

The optimisation stops early once the ELBO check passes (``early_stop``, checked
every ``CHECK_EVERY`` steps after ``MIN_STEPS``), or at a wall-clock limit
(``max_seconds``; the ELBO check then usually fails and flags the fit). The Pareto
k check draws from q with its own mean and standard deviations (mean-field) or
Cholesky factor (full rank), so it never builds a dense covariance of a mean-field
approximation with 10^5 problems.

Examples
--------
>>> from bayes_regimes import RegimeModel, RolloutData
>>> from bayes_regimes.models.crossed_tools import simulate_crossed
>>> sim = simulate_crossed(n_problems=40, n_models=3, n=10, random_seed=0)
>>> model = RegimeModel(RolloutData.from_counts(sim.counts, group="model"), pooling="crossed")
>>> dt = model.fit(method="advi", draws=100, n_steps=3000, progressbar=False)  # doctest: +SKIP
>>> model.diagnostics().ok  # ELBO converged and Pareto k <= 0.7?  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_regimes.diagnostics import DiagnosticsReport, warn_if_failed
from bayes_regimes.errors import FitError

VI_METHODS = ("advi", "fullrank_advi")
KHAT_MAX = 0.7
ELBO_REL_TOL = 1e-3
#: Steps between two checks of the early-stopping rule, and the fewest steps run.
CHECK_EVERY = 500
MIN_STEPS = 2000
#: Learning rates tried in turn when the ELBO optimisation turns NaN (the first is
#: PyMC's default), and the gradient-norm clip used on the retries.
LEARNING_RATES = (1e-3, 1e-4, 1e-5)
GRAD_NORM_MAX = 100.0


def elbo_rel_change(loss: np.ndarray) -> float:
    """Relative decrease of the mean loss over the last 10 % of steps (vs the 10 %
    before): the ELBO convergence statistic (NaN with fewer than 20 steps).

    Examples
    --------
    >>> elbo_rel_change(np.r_[np.full(50, 110.0), np.full(50, 100.0)])
    0.0
    >>> round(elbo_rel_change(np.linspace(200.0, 100.0, 100)), 3)
    0.097
    """
    loss = np.asarray(loss, float)
    win = len(loss) // 10
    if win < 2:
        return float("nan")
    last, prev = loss[-win:].mean(), loss[-2 * win : -win].mean()
    return float((prev - last) / abs(last))


class _Stopper:
    """pm.fit callback: stop at the wall-clock limit, or once the ELBO check passes."""

    def __init__(self, max_seconds: float | None, early_stop: bool) -> None:
        import time

        self.clock = time.perf_counter
        self.start: float | None = None  # set at the first step (after compiling)
        self.max_seconds, self.early_stop = max_seconds, early_stop
        self.reason = "n_steps"

    def __call__(self, approx, loss, i) -> None:
        if self.start is None:
            self.start = self.clock()
        if self.max_seconds is not None and self.clock() - self.start > self.max_seconds:
            self.reason = "max_seconds"
            raise StopIteration(f"VI stopped at the time limit ({self.max_seconds} s)")
        check = self.early_stop and i >= MIN_STEPS and i % CHECK_EVERY == 0
        if check and abs(elbo_rel_change(loss)) <= ELBO_REL_TOL / 2:
            self.reason = "converged"
            raise StopIteration("ELBO converged")


def draw_gaussian(
    mean: np.ndarray, scale: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n draws of Normal(mean, scale scale^T) and their log densities.

    ``scale`` is the vector of standard deviations (mean field) or the lower
    Cholesky factor (full rank); no dense covariance is built for the former.

    Examples
    --------
    >>> from scipy.stats import multivariate_normal
    >>> rng = np.random.default_rng(0)
    >>> x, logq = draw_gaussian(np.zeros(2), np.array([1.0, 2.0]), 3, rng)
    >>> bool(np.allclose(logq, multivariate_normal([0, 0], np.diag([1.0, 4.0])).logpdf(x)))
    True
    """
    z = rng.standard_normal((n, mean.size))
    diag = scale if scale.ndim == 1 else np.diag(scale)
    x = mean + (z * scale if scale.ndim == 1 else z @ scale.T)
    logq = -0.5 * np.sum(z**2, axis=1) - np.log(np.abs(diag)).sum()
    return x, logq - 0.5 * mean.size * np.log(2 * np.pi)


def _pareto_k(model, approx, n: int, rng: np.random.Generator) -> float:
    """Pareto k of log p(theta, y) - log q(theta) over n draws of q (unconstrained)."""
    from arviz_stats.base.array import array_stats

    group = approx.groups[0]
    mean = np.asarray(group.mean.eval(), float)
    # Full rank: the Cholesky factor L; mean field: the standard deviations.
    scale = group.L if hasattr(group, "L") else group.std
    x, logq = draw_gaussian(mean, np.asarray(scale.eval(), float), n, rng)
    logp_fn = model.compile_logp(jacobian=True)
    ordering = group.ordering
    logp = np.empty(n)
    for j in range(n):
        point = {name: x[j, sl].reshape(shape) for name, (_, sl, shape, _) in ordering.items()}
        logp[j] = logp_fn(point)
    ratios = logp - logq
    ratios = ratios[np.isfinite(ratios)]
    _, khat = array_stats.psislw(ratios - ratios.max())
    return float(khat)


def _optimise(method, n_steps, random_seed, progressbar, max_seconds, early_stop):
    """pm.fit at each of LEARNING_RATES until one stays finite (inside a model context).

    Returns the approximation, its stopper, the learning rate used and the
    learning rates at which the objective turned NaN.
    """
    import pymc as pm

    nan_at: list[float] = []
    for attempt, learning_rate in enumerate(LEARNING_RATES):
        stopper = _Stopper(max_seconds, early_stop)
        # Retries clip the gradient norm: the NaN comes from an overshooting step.
        clip = {"total_grad_norm_constraint": GRAD_NORM_MAX} if attempt else {}
        try:
            approx = pm.fit(
                n=n_steps,
                method=method,
                random_seed=random_seed,
                progressbar=progressbar,
                callbacks=[stopper],
                obj_optimizer=pm.adagrad_window(learning_rate=learning_rate),
                **clip,
            )
        except FloatingPointError:
            nan_at.append(learning_rate)
            continue
        return approx, stopper, learning_rate, nan_at
    rates = ", ".join(f"{lr:g}" for lr in nan_at)
    raise FitError(
        f"{method} diverged (NaN objective) at every learning rate tried ({rates}); "
        "fit with method='nuts', or 'advi' instead of 'fullrank_advi'"
    )


def fit_vi(
    crossed,
    method: str = "advi",
    draws: int = 1000,
    n_steps: int = 30_000,
    random_seed: int | None = None,
    progressbar: bool = True,
    n_khat: int = 500,
    early_stop: bool = True,
    max_seconds: float | None = None,
    **ignored: Any,
) -> xr.DataTree:
    """Fit ``crossed`` (a CrossedRegimeModel) by ADVI; returns its DataTree.

    Parameters
    ----------
    method : {"advi", "fullrank_advi"}
        Mean-field or full-rank Gaussian approximation in the unconstrained space.
    draws : int
        Draws of the approximation kept as the posterior (one chain).
    n_steps : int
        Largest number of optimisation steps.
    n_khat : int
        Draws of q for the Pareto k check (0 skips it; at least 100 are used).
    early_stop : bool
        Stop once the ELBO check would pass (relative change of the mean loss
        below half of ``ELBO_REL_TOL``, checked every ``CHECK_EVERY`` steps).
    max_seconds : float, optional
        Wall-clock limit of the optimisation (the fit records why it stopped).
    """

    if method not in VI_METHODS:
        raise ValueError(f"unknown method {method!r}; choose nuts, {', '.join(VI_METHODS)}")
    unknown = set(ignored) - {"sampler", "target_accept", "tune", "chains"}
    if unknown:
        raise TypeError(f"unexpected argument(s) for a VI fit: {sorted(unknown)}")
    rng = np.random.default_rng(random_seed)
    model = crossed.build_model()
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        approx, stopper, learning_rate, nan_at = _optimise(
            method, n_steps, random_seed, progressbar, max_seconds, early_stop
        )
        seconds = stopper.clock() - (stopper.start or stopper.clock())
        dt = approx.sample(draws, random_seed=random_seed)
    loss = np.asarray(approx.hist, float)
    rel = elbo_rel_change(loss)
    # Pareto smoothing needs a tail of >= 5 draws: at least 100 draws of q.
    khat = _pareto_k(model, approx, max(n_khat, 100), rng) if n_khat else float("nan")
    stats = xr.Dataset({"loss": ("vi_step", loss)})
    tree = xr.DataTree.from_dict({"posterior": dt["posterior"].to_dataset(), "sample_stats": stats})
    crossed.idata = crossed._assemble(
        tree,
        method=method,
        n_steps=int(n_steps),
        steps_run=len(loss),
        stopped_by=stopper.reason,
        optimisation_seconds=seconds,
        random_seed=random_seed,
        elbo_rel_change=rel,
        pareto_k=khat,
        learning_rate=learning_rate,
        nan_at_learning_rates=nan_at,
    )
    crossed._diagnostics = None
    warn_if_failed(crossed.diagnostics(), "the fit")
    return crossed.idata


def vi_report(dt: xr.DataTree) -> DiagnosticsReport:
    """The checks of a VI fit (ELBO convergence and Pareto k), as a DiagnosticsReport."""
    import json

    info = json.loads(dt.attrs.get("fit", "{}"))
    problems = []
    rel, khat = info.get("elbo_rel_change"), info.get("pareto_k")
    if rel is None or not np.isfinite(rel) or abs(rel) > ELBO_REL_TOL:
        problems.append(f"ELBO not converged (relative change {rel} over the last 10 % of steps)")
    if khat is None or not np.isfinite(khat) or khat > KHAT_MAX:
        problems.append(
            f"variational approximation unreliable ({info.get('method')}: Pareto k {khat} "
            f"> {KHAT_MAX}); compare with NUTS"
        )
    post = dt["posterior"]
    table = pd.DataFrame(columns=["param", "r_hat", "ess_bulk", "ess_tail", "ok"])
    return DiagnosticsReport(
        table, 0, np.full(1, np.nan), int(post.sizes["chain"] * post.sizes["draw"]), problems
    )
