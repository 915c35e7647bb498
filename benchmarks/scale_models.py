"""The fits that ``benchmarks/scale.py`` times: simulated counts, one timed
:class:`~bayes_regimes.RegimeModel` fit, and the naive per-problem model it is
compared with (measurement 2, ESS per second).

Examples
--------
>>> simulate_counts(4, n=10, seed=0)["n"].tolist()
[10, 10, 10, 10]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from _common import quiet_warnings, timed

from bayes_regimes import RegimeModel, RolloutData, simulate_benchmark
from bayes_regimes.diagnostics import check_posterior
from bayes_regimes.models.regime import DEFAULT_PRIORS

#: Rollouts per problem unless varied.
N_FIXED = 20
#: Hyper-parameters whose ESS measurement 2 compares.
HYPER = ["mu", "kappa"]


# -- data and one fit ----------------------------------------------------------------------
def simulate_counts(n_problems: int, n: int | Sequence[int] = N_FIXED, seed: int = 0):
    """Counts of a simulated benchmark; ``n`` a fixed count or choices drawn per problem.

    Examples
    --------
    >>> simulate_counts(5, n=(10, 20), seed=1)["n"].isin([10, 20]).all()
    np.True_
    """
    if not np.isscalar(n):
        n = np.random.default_rng([seed, 7]).choice(np.asarray(n), size=n_problems)
    return simulate_benchmark(n_problems=n_problems, n=n, random_seed=seed).counts


def fit_record(
    data: RolloutData,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    sampler: str = "nutpie",
    structural: bool = True,
) -> tuple[dict, RegimeModel]:
    """Fit once and time its stages.

    ``compile_s`` is the time of the ``pm.sample`` call less the sampler's own
    ``sampling_time`` (compilation and sampler set-up); ``assemble_s`` builds the
    DataTree (per-pattern log-likelihood, per-cell ``cells`` group).
    """
    model = RegimeModel(data, structural=structural, slab="beta")  # mu, kappa: section 2
    stages: dict[str, float] = {}

    def wrap(name: str):
        inner = getattr(model, name)

        def run(*args, **kwargs):
            out, s = timed(inner, *args, **kwargs)
            stages.setdefault(name, s)
            return out

        setattr(model, name, run)

    for name in ("build_model", "_assemble", "diagnostics"):
        wrap(name)
    with quiet_warnings():  # diagnostics are recorded below, never hidden
        _, fit_s = timed(
            model.fit,
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            sampler=sampler,
            progressbar=False,
        )
    sampling = model.idata["posterior"].attrs.get("sampling_time")
    sample_call = fit_s - sum(stages.values())
    diag = model.diagnostics().summary()
    record = {
        "problems": data.n_cells,
        "patterns": data.patterns().n_patterns,
        "sampler": sampler,
        "fit_s": fit_s,
        "build_s": stages.get("build_model"),
        "compile_s": None if sampling is None else sample_call - float(sampling),
        "sampling_s": None if sampling is None else float(sampling),
        "assemble_s": stages.get("_assemble"),
        "diagnostics_s": stages.get("diagnostics"),
        **{k: diag[k] for k in ("ok", "max_r_hat", "min_ess_bulk", "divergences")},
        "diagnostic_problems": diag["problems"],
    }
    return record, model


# -- 2. naive model -------------------------------------------------------------------------
def naive_model(n: np.ndarray, k: np.ndarray, priors: dict | None = None):
    """The model a user would write: one latent p_i per problem, binomial likelihood.

    The hyper-priors are RegimeModel's (``DEFAULT_PRIORS``), so it is the plain
    (``structural=False``) RegimeModel with p_i sampled instead of integrated out.
    """
    import pymc as pm
    import pytensor.tensor as pt

    pr = {**DEFAULT_PRIORS, **(priors or {})}
    with pm.Model(coords={"problem": np.arange(len(n))}) as model:
        logit_mu = pm.Normal("logit_mu", *pr["logit_mu"])
        log_kappa = pm.Normal("log_kappa", *pr["log_kappa"])
        mu = pm.Deterministic("mu", pm.math.sigmoid(logit_mu))
        kappa = pm.Deterministic("kappa", pt.exp(log_kappa))
        p = pm.Beta("p", mu * kappa, (1 - mu) * kappa, dims="problem")
        pm.Binomial("k", n=n, p=p, observed=k, dims="problem")
    return model


def _ess_row(method: str, posterior, stats, fit_s: float, sampling_s) -> dict:
    rep = check_posterior(
        posterior[HYPER], diverging=stats["diverging"].values, energy=stats["energy"].values
    )
    ess = float(rep.table["ess_bulk"].min())
    return {
        "method": method,
        "fit_s": fit_s,
        "sampling_s": sampling_s,
        "min_ess_bulk": ess,
        "ess_per_s_wall": ess / fit_s,
        "ess_per_s_sampling": ess / sampling_s if sampling_s else None,
        "max_r_hat": float(rep.table["r_hat"].max()),
        "divergences": rep.divergences,
        "ok": rep.ok,
    }


def ess_comparison(
    n_problems: int,
    *,
    n: int = N_FIXED,
    draws: int,
    tune: int,
    chains: int,
    seed: int = 0,
    variants: Sequence[str] = ("plain", "zero_inflated"),
) -> dict:
    """ESS per second of the naive per-problem model against RegimeModel variants."""
    import pymc as pm

    counts = simulate_counts(n_problems, n, seed)
    data = RolloutData.from_counts(counts)
    rows = []

    def run_naive():
        with naive_model(counts["n"].to_numpy(), counts["k"].to_numpy()), quiet_warnings():
            return pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=min(chains, 2),
                random_seed=seed,
                nuts_sampler="nutpie",
                nuts={"target_accept": 0.95},  # RegimeModel's default
                progressbar=False,
                compute_convergence_checks=False,
            )

    dt, fit_s = timed(run_naive)
    post = dt["posterior"].to_dataset()
    sampling = post.attrs.get("sampling_time")
    naive = _ess_row("naive (latent p_i)", post, dt["sample_stats"], fit_s, sampling)
    rows.append(naive)
    print(f"  naive model: {fit_s:.1f} s", flush=True)
    ratios = {}
    for variant in variants:
        structural = {"plain": False, "zero_inflated": True}[variant]
        rec, model = fit_record(
            data, draws=draws, tune=tune, chains=chains, seed=seed, structural=structural
        )
        row = _ess_row(
            f"RegimeModel {variant}",
            model.posterior,
            model.idata["sample_stats"].to_dataset(),
            rec["fit_s"],
            rec["sampling_s"],
        )
        rows.append(row)
        ratios[variant] = {
            "wall": row["ess_per_s_wall"] / naive["ess_per_s_wall"],
            "sampling": (
                row["ess_per_s_sampling"] / naive["ess_per_s_sampling"]
                if row["ess_per_s_sampling"] and naive["ess_per_s_sampling"]
                else None
            ),
        }
    return {"problems": n_problems, "n": n, "methods": rows, "ratio_vs_naive": ratios}
