"""Power-scaling prior and likelihood sensitivity of a fitted model.

Power-scaling (Kallioinen et al. 2024) raises the prior (or the likelihood) to a
power alpha near 1 and measures, by Pareto-smoothed importance sampling on the
existing draws (no refit), how much each posterior quantity moves (cumulative
Jensen-Shannon distance per unit log alpha). ArviZ's convention: a prior
sensitivity >= 0.05 means an informative prior; if the likelihood sensitivity is
also >= 0.05 the diagnosis is "potential prior-data conflict", and if it is below,
"potential strong prior / weak likelihood".

The quantities checked are the hyper-parameters (pi and the slab's parameters --
mu, kappa for the Beta slab -- per group) and the
derived quantities that users act on, per group and per posterior draw:

- ``structural_fraction``: mean over failed cells (k = 0) of P(p < epsilon | data,
  hyper-parameters). Whether a failure is "structural" (p = 0) or "tiny p" is
  identified only through the slab's left tail and the prior; this shows how much
  the prior decides it.
- ``gain_<m>``: mean over failed cells of the expected gain G(m), the probability
  of at least one success in m more rollouts.

Groups passed to ArviZ's ``psense``: ``log_prior`` comes from the PyMC model
(``pm.compute_log_prior``; with several groups only the top-level priors are
scaled, ``*_loc`` and ``*_sd``, as recommended for hierarchical models), and
``log_likelihood`` is the per-pattern log-likelihood times the pattern count, so
that its sum (what ``psense`` scales) is the model's total log-likelihood.

Examples
--------
>>> from bayes_regimes import RegimeModel, RolloutData, simulate_benchmark
>>> model = RegimeModel(RolloutData.from_counts(simulate_benchmark(2000, n=20).counts))
>>> _ = model.fit(draws=500, tune=500, chains=2, progressbar=False)  # doctest: +SKIP
>>> prior_sensitivity(model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from bayes_regimes import queries as q

__all__ = ["THRESHOLD", "plot_prior_sensitivity", "prior_sensitivity", "sensitivity_datatree"]

#: ArviZ's threshold of an informative prior / informative likelihood.
THRESHOLD = 0.05


def _failed_average(post: q.PatternPosterior, values) -> np.ndarray:
    """Per draw, the mean over each group's failed cells (k = 0): (draws, groups).

    NaN for a group without failed cells.
    """
    failed = post.k == 0
    n_strata = len(post.strata)
    cells = np.bincount(post.stratum, weights=post.count, minlength=n_strata)
    n_failed = np.bincount(post.stratum, weights=post.count * failed, minlength=n_strata)
    # q._stratum_average averages over all cells; zero out the solved ones, rescale.
    total = q._stratum_average(post, lambda idx: np.where(failed[idx], values(idx), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_failed > 0, total * cells / n_failed, np.nan)


def derived_draws(model, m: Sequence[int] = (100, 1000), epsilon: float | None = None):
    """Per-draw derived quantities per group, as a Dataset (chain, draw, group).

    ``structural_fraction`` (mean P(p < epsilon) over failed cells) and
    ``gain_<m>`` (mean expected gain of m more rollouts over failed cells).
    """
    eps = float(epsilon or model.config["epsilon"])
    post = model.pattern_posterior()
    shape = (model.posterior.sizes["chain"], model.posterior.sizes["draw"], len(post.strata))
    slab = q.slab_of(post)
    out = {
        "structural_fraction": _failed_average(
            post, lambda idx: slab.prob_below(eps, post.k[idx], post.n[idx], *post.hyper(idx))
        )
    }
    for mm in m:
        if int(mm) != mm or mm < 1:
            raise ValueError(f"m must hold positive integers, got {mm!r}")
        out[f"gain_{int(mm)}"] = _failed_average(
            post, lambda idx, mm=int(mm): q.gain_draws(post, idx, np.full(len(idx), mm))
        )
    coords = {
        "chain": model.posterior["chain"].values,
        "draw": model.posterior["draw"].values,
        "group": list(post.strata),
    }
    ds = xr.Dataset(
        {k: (("chain", "draw", "group"), v.reshape(shape)) for k, v in out.items()}, coords=coords
    )
    ds.attrs["epsilon"] = eps
    return ds


def _prior_vars(pm_model) -> list[str]:
    names = [rv.name for rv in pm_model.free_RVs]
    top = [n for n in names if n.endswith(("_loc", "_sd"))]
    return top or names


def sensitivity_datatree(
    model,
    m: Sequence[int] = (100, 1000),
    epsilon: float | None = None,
    prior_vars: Sequence[str] | None = None,
) -> xr.DataTree:
    """The DataTree that ArviZ's ``psense`` needs, built from a fitted model.

    Groups: ``posterior`` (hyper-parameters and :func:`derived_draws`),
    ``log_prior`` (top-level prior terms from the PyMC model, or only the free
    variables named in ``prior_vars``, e.g. ``["log_slab_scale_loc"]`` to scale the
    prior of the slab's width alone), ``log_likelihood`` (``k``: per-pattern
    log-likelihood x count, dim pattern) and ``observed_data``.
    """
    import pymc as pm

    dt = model._require_fit()
    posterior = model.posterior
    if "log_likelihood" not in dt.children:
        raise ValueError("this fit stores no per-pattern log_likelihood: no power-scaling")
    wanted = (["pi"] if model.config.get("structural", True) else []) + list(
        model.slab.diagnostic_vars
    )
    hyper = [v for v in wanted if v in posterior and posterior[v].dims[2:] == ("group",)]
    pm_model = model.build_model()
    free = [rv.name for rv in pm_model.free_RVs]
    unknown = sorted(set(prior_vars or ()) - set(free))
    if unknown:
        raise ValueError(f"prior_vars {unknown} are not free variables of the model: {free}")
    log_prior = pm.compute_log_prior(
        dt,
        var_names=list(prior_vars) if prior_vars else _prior_vars(pm_model),
        model=pm_model,
        extend_inferencedata=False,
        progressbar=False,
    )
    observed = dt["observed_data"].to_dataset()
    weighted = dt["log_likelihood"]["k"] * observed["count"]
    post = xr.merge(
        [posterior[hyper], derived_draws(model, m, epsilon)], combine_attrs="drop_conflicts"
    )
    return xr.DataTree.from_dict(
        {
            "posterior": post,
            "log_prior": log_prior,
            "log_likelihood": weighted.to_dataset(name="k"),
            "observed_data": observed,
        }
    )


def prior_sensitivity(
    model,
    m: Sequence[int] = (100, 1000),
    *,
    epsilon: float | None = None,
    threshold: float = THRESHOLD,
    alphas: tuple[float, float] = (0.99, 1.01),
    prior_vars: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity of a fitted model.

    Parameters
    ----------
    model : RegimeModel
        A fitted model.
    m : sequence of int
        Extra rollouts for the expected-gain quantities ``gain_<m>``.
    epsilon : float, optional
        "Structural" threshold of ``structural_fraction`` (default: the model's).
    threshold : float
        Sensitivity above which a prior (likelihood) counts as informative.
    alphas : tuple of float
        Power-scaling range for the derivative (ArviZ's default).
    prior_vars : sequence of str, optional
        Free variables whose prior terms are power-scaled (default: the top-level
        ``*_loc`` and ``*_sd`` with several groups, every free variable with one).
        One name (e.g. ``["log_slab_scale"]`` with one group) isolates that prior.

    Returns
    -------
    pandas.DataFrame
        One row per quantity and group: quantity (e.g. ``"pi[sft]"``), variable,
        group, prior, likelihood, diagnosis ("prior-data conflict",
        "strong prior / weak likelihood" or "ok"). ``attrs`` holds the
        diagnostics status of the fit, epsilon and threshold.

    Examples
    --------
    >>> from bayes_regimes import RegimeModel, RolloutData, simulate_benchmark
    >>> model = RegimeModel(RolloutData.from_counts(simulate_benchmark(500).counts))
    >>> _ = model.fit(draws=300, tune=300, chains=2, progressbar=False)  # doctest: +SKIP
    >>> prior_sensitivity(model)[["quantity", "prior", "diagnosis"]]  # doctest: +SKIP
    """
    from arviz_stats import psense

    from bayes_regimes.diagnostics import tag

    dt = sensitivity_datatree(model, m, epsilon, prior_vars)
    names = list(dt["posterior"].data_vars)
    parts = {
        comp: psense(dt, var_names=names, group=comp, alphas=alphas)
        for comp in ("prior", "likelihood")
    }
    rows = []
    for name in names:
        prior = parts["prior"][name].transpose("group")
        like = parts["likelihood"][name].transpose("group")
        for g, ps, ls in zip(prior["group"].values, prior.values, like.values, strict=True):
            rows.append((f"{name}[{g}]", name, str(g), float(ps), float(ls)))
    out = pd.DataFrame(rows, columns=["quantity", "variable", "group", "prior", "likelihood"])
    out["diagnosis"] = np.select(
        [
            out["prior"].isna() | out["likelihood"].isna(),
            (out["prior"] >= threshold) & (out["likelihood"] >= threshold),
            out["prior"] >= threshold,
        ],
        ["n/a", "prior-data conflict", "strong prior / weak likelihood"],
        "ok",
    )
    out.attrs.update(
        epsilon=float(dt["posterior"].attrs.get("epsilon", model.config["epsilon"])),
        threshold=threshold,
    )
    return tag(out, model.diagnostics())


def plot_prior_sensitivity(
    model,
    m: Sequence[int] = (100, 1000),
    *,
    epsilon: float | None = None,
    component: str = "prior",
    alphas: tuple[float, float] = (0.8, 1.25),
    var_names: Sequence[str] | None = None,
):
    """Posterior of each quantity with the prior (or likelihood) power-scaled.

    One panel per quantity and group: the weighted ECDF of the draws at alpha =
    ``alphas[0]``, 1 and ``alphas[1]`` (importance weights from ArviZ's
    power-scaling). Curves that move apart show sensitivity. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from arviz_stats.psense import _get_power_scale_weights

    if component not in ("prior", "likelihood"):
        raise ValueError(f"component must be 'prior' or 'likelihood', got {component!r}")
    dt = sensitivity_datatree(model, m, epsilon)
    post = dt["posterior"].to_dataset()
    names = list(var_names or post.data_vars)
    lower, upper = _get_power_scale_weights(
        dt, alphas=alphas, group=component, sample_dims=["chain", "draw"]
    )
    weights = {
        alphas[0]: lower.values.ravel(),
        1.0: None,
        alphas[1]: upper.values.ravel(),
    }
    groups = list(post["group"].values)
    fig, axes = plt.subplots(
        len(groups),
        len(names),
        figsize=(2.6 * len(names), 2.2 * len(groups)),
        squeeze=False,
        layout="constrained",
    )
    colors = {alphas[0]: "C0", 1.0: "k", alphas[1]: "C3"}
    for j, name in enumerate(names):
        for i, g in enumerate(groups):
            ax = axes[i, j]
            x = post[name].sel(group=g).transpose("chain", "draw").values.ravel()
            order = np.argsort(x)
            for a, w in weights.items():
                w = np.full(x.size, 1 / x.size) if w is None else w
                ax.step(x[order], np.cumsum(w[order]), color=colors[a], lw=1, label=f"α={a:g}")
            ax.set_title(f"{name}[{g}]", fontsize=9)
    axes[0, 0].legend(fontsize=7, title=f"{component} scaled", title_fontsize=7)
    fig.suptitle(f"Power-scaling the {component}: posterior ECDFs")
    return fig
