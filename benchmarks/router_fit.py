"""Cached fits and predictions of :class:`InterventionModel` for ``benchmarks/router.py``.

A fit is cached as ``<args.cache>/<name>.nc`` so that an interrupted run resumes;
every fit's diagnostics summary is returned beside the model (a failed fit is
flagged, never hidden). Predictions: prospective routing from features (and the
failure count), and the PSIS leave-one-problem-out predictions of the ``loo`` part.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from router_scoring import CANDS

from bayes_regimes import paper
from bayes_regimes.data import RolloutData
from bayes_regimes.diagnostics import stuck_chains
from bayes_regimes.errors import DiagnosticsWarning
from bayes_regimes.models.interventions import InterventionModel
from bayes_regimes.routing import _thin, profiles_to_counts

#: The published runs' sampler settings (``router.py``'s defaults); cache file names
#: record only the settings that differ from them.
CHAINS, TUNE, TARGET_ACCEPT = 2, 500, 0.9

#: Attempts per repair context of each condition of the paper's table.
ATT = {c: paper.ATTEMPTS_PER_CONTEXT for c in paper.RATES} | {"original": 1}


def _fit(data: RolloutData, args, seed: int, options: dict) -> InterventionModel:
    model = InterventionModel(data, **options)
    # an instance attribute overrides the class's choice (diagonal since session 13)
    model.nutpie_low_rank = adaptation(args) == "low_rank"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            random_seed=seed,
            progressbar=False,
            target_accept=args.target_accept,
        )
    return model


def adaptation(args) -> str:
    """nutpie's mass-matrix adaptation for the fits: ``--adaptation``, else the model's."""
    default = "low_rank" if InterventionModel.nutpie_low_rank else "diag"
    return getattr(args, "adaptation", None) or default


def cache_suffix(args) -> str:
    """The settings that differ from the defaults, as a cache file-name suffix.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> cache_suffix(NS(chains=4, tune=500, target_accept=0.95, adaptation="low_rank"))
    '_chains4_ta0.95_lowrank'
    """
    suffix = "" if args.chains == CHAINS else f"_chains{args.chains}"
    suffix += "" if args.tune == TUNE else f"_tune{args.tune}"
    suffix += "" if args.target_accept == TARGET_ACCEPT else f"_ta{args.target_accept:g}"
    return suffix + ("_lowrank" if adaptation(args) == "low_rank" else "")


def fit_cached(name: str, data: RolloutData, args, **options) -> tuple[InterventionModel, dict]:
    """Load the cached fit ``name`` or fit (nutpie, ``--chains`` chains, default 2,
    ``--tune`` tuning steps, default 500, ``--target-accept``, default 0.9) and cache it
    (the file name records chains, tuning, target acceptance and a low-rank adaptation
    where they differ from the defaults).

    A fit with a stuck chain (:func:`~bayes_regimes.diagnostics.stuck_chains`: on the
    paper's table a chain sometimes ends its tuning at a 7x smaller step size and then
    diverges on every transition) is refitted once with seed ``args.seed + 1000``; the
    first attempt's diagnostics stay in the record (``retried_after``), and the report
    says so.
    """
    path = Path(args.cache) / f"{name}{cache_suffix(args)}.nc"
    if path.exists():
        model = InterventionModel.load(path)
        info = json.loads(model.idata.attrs.get("fit", "{}"))
    else:
        t0 = time.perf_counter()
        model, info = _fit(data, args, args.seed, options), {}
        stuck = stuck_chains(model.idata["sample_stats"]["diverging"].values)
        if stuck:
            first = model.diagnostics().summary() | {"seed": args.seed, "stuck_chains": stuck}
            print(f"  fit {name}: chain(s) {stuck} stuck; refitting with a new seed", flush=True)
            model = _fit(data, args, args.seed + 1000, options)
            info["retried_after"] = first
        info["wall_s"] = time.perf_counter() - t0
        model.idata.attrs["fit"] = json.dumps(json.loads(model.idata.attrs["fit"]) | info)
        model.save(path)
    wall = info.get("wall_s")
    diag = model.diagnostics().summary() | {"fit": name, "wall_s": wall}
    if "retried_after" in info:
        diag["retried_after"] = info["retried_after"]
    print(
        f"  fit {name}: {model.layout.n_units} failures, {diag['ok'] and 'ok' or 'FAILED'}, "
        f"max R-hat {diag['max_r_hat']:.3f}, min ESS {diag['min_ess_bulk']:.0f}, "
        f"{diag['divergences']} divergences, {wall and round(wall)} s"
        + (" (refitted: first attempt had a stuck chain)" if "retried_after" in diag else ""),
        flush=True,
    )
    return model, diag


def paper_model(df: pd.DataFrame, name: str, args):
    """The (cached) fit of the paper's failure profiles ``df``, cells as groups."""
    counts = profiles_to_counts(df, rollouts=df["N_total"].to_numpy())
    data = RolloutData.from_counts(
        counts, group="cell", condition="condition", features=list(paper.FEATURES)
    )
    return fit_cached(name, data, args, attempts=ATT, selection="original")


def predict(model: InterventionModel, test: pd.DataFrame, observed: bool) -> np.ndarray:
    """Expected rescue (failures x CANDS) of new failures from their features, and
    from their failure count of the original rollouts too when ``observed``."""
    new = test[["problem_id", "cell", *paper.FEATURES]].rename(columns={"cell": "group"})
    obs = None
    if observed:
        N = test["N_total"].to_numpy()
        obs = pd.DataFrame(
            {
                "row": np.arange(len(test)),
                "condition": "original",
                "n": N,
                "k": N - test["n_failed_rollouts"].to_numpy(),
            }
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        res = model.route_new(
            new.reset_index(drop=True), observed=obs, max_draws=400, n_samples=1, n_nodes=24
        )
    return res[[f"rescue_{c}" for c in CANDS]].to_numpy()


def loo_predictions(model: InterventionModel, df: pd.DataFrame, n_draws: int):
    """Leave-one-problem-out expected rescue of every candidate, from one fit (PSIS).

    For failure i and posterior draw s, ``log m_i(s)`` is the log-likelihood of all
    its cells with its u integrated out (adaptive Gauss-Hermite centred on its
    posterior u), conditional on selection. The leave-i-out posterior is the full
    one reweighted by ``1 / m_i`` (Pareto-smoothed); the features-only prediction
    (u integrated over the selected population of its cell) is averaged with those
    weights. Returns (features only, features + failure count, Pareto k per failure).
    """
    from arviz_stats.base import array_stats
    from scipy.special import logsumexp

    from bayes_regimes.routing import new_posterior_blocks

    lay, conds = model.layout, model.conditions
    labels = pd.Index(lay.labels)
    pos = labels.get_indexer(df["cell"].astype(str) + "/" + df["problem_id"].astype(str))
    if (pos < 0).any():
        raise RuntimeError("LOO: failures of the table missing from the fit")
    dr = _thin(model.draws(), n_draws)
    sel = conds.index("original")
    n, C = pos.size, len(conds)
    g, Z, N = lay.group[pos], model.Z[pos], lay.D[pos, sel]
    u = dr["u"][:, pos]
    centre, scale = u.mean(axis=0), 1.5 * u.std(axis=0) + 0.05

    def run(K, D, adaptive, nodes):
        rescue = np.empty((dr["u"].shape[0], n, C))
        log_ev = np.empty((dr["u"].shape[0], n))
        kw = {"centre": centre, "scale": scale} if adaptive else {}
        for un, r, _, ev in new_posterior_blocks(model, dr, g, Z, K, D, N, nodes, **kw):
            rescue[:, un], log_ev[:, un] = r, ev
        return rescue, log_ev

    zero = np.zeros((n, C), np.int64)
    r_feat, log_sel = run(zero, zero, False, 24)
    Ko, Do = zero.copy(), zero.copy()
    Ko[:, sel], Do[:, sel] = lay.K[pos, sel], lay.D[pos, sel]
    r_obs, _ = run(Ko, Do, False, 24)
    _, log_all = run(lay.K[pos], lay.D[pos], True, 16)
    loglik = log_all - log_sel  # (S, n): selection-conditional marginal likelihood
    lw, khat = array_stats.psislw(-loglik.T, r_eff=1.0, axis=-1)
    w = np.exp(lw - logsumexp(lw, axis=-1, keepdims=True))  # (n, S)
    cols = [conds.index(c) for c in CANDS]
    feat = np.einsum("ns,snc->nc", w, r_feat)[:, cols]
    obs = np.einsum("ns,snc->nc", w, r_obs)[:, cols]
    return feat, obs, np.asarray(khat)
