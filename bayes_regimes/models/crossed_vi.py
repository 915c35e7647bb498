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
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_regimes.diagnostics import DiagnosticsReport, warn_if_failed

VI_METHODS = ("advi", "fullrank_advi")
KHAT_MAX = 0.7
ELBO_REL_TOL = 1e-3


def _pareto_k(model, approx, n: int, rng: np.random.Generator) -> float:
    """Pareto k of log p(theta, y) - log q(theta) over n draws of q (unconstrained)."""
    from arviz_stats.base.array import array_stats
    from scipy.stats import multivariate_normal

    group = approx.groups[0]
    mean = np.asarray(group.mean.eval(), float)
    cov = np.asarray(group.cov.eval(), float)
    dist = multivariate_normal(mean, cov, allow_singular=True)
    x = dist.rvs(size=n, random_state=rng).reshape(n, -1)
    logq = dist.logpdf(x)
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


def fit_vi(
    crossed,
    method: str = "advi",
    draws: int = 1000,
    n_steps: int = 30_000,
    random_seed: int | None = None,
    progressbar: bool = True,
    n_khat: int = 500,
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
        Optimisation steps.
    n_khat : int
        Draws of q for the Pareto k check (0 skips it).
    """
    import pymc as pm

    if method not in VI_METHODS:
        raise ValueError(f"unknown method {method!r}; choose nuts, {', '.join(VI_METHODS)}")
    unknown = set(ignored) - {"sampler", "target_accept", "tune", "chains"}
    if unknown:
        raise TypeError(f"unexpected argument(s) for a VI fit: {sorted(unknown)}")
    rng = np.random.default_rng(random_seed)
    model = crossed.build_model()
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        approx = pm.fit(n=n_steps, method=method, random_seed=random_seed, progressbar=progressbar)
        dt = approx.sample(draws, random_seed=random_seed)
    loss = np.asarray(approx.hist, float)
    win = max(1, len(loss) // 10)
    last, prev = loss[-win:].mean(), loss[-2 * win : -win].mean()
    rel = float((prev - last) / abs(last)) if len(loss) >= 2 * win else float("nan")
    khat = _pareto_k(model, approx, n_khat, rng) if n_khat else float("nan")
    stats = xr.Dataset({"loss": ("vi_step", loss)})
    tree = xr.DataTree.from_dict({"posterior": dt["posterior"].to_dataset(), "sample_stats": stats})
    crossed.idata = crossed._assemble(
        tree,
        method=method,
        n_steps=int(n_steps),
        random_seed=random_seed,
        elbo_rel_change=rel,
        pareto_k=khat,
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
