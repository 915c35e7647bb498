"""The Bayesian router against the paper's rule, the best fixed intervention and resample.

Data: the paper's failure profiles (Islah et al. 2026; ``../shared/data``), converted
with :func:`bayes_regimes.routing.profiles_to_counts` (structural denominators, the
``original`` rollouts as the selection condition), and two other multi-condition
sources (LiveCodeBench plain vs self-repair; CRUXEval direct vs CoT at T 0.2 / 0.8).

Parts (``--parts``, default all, in this order):

``full``
    One :class:`InterventionModel` on all 1,423 failures (8 cells as groups).
    Failure topography: posterior regime fractions per cell and per post-training
    method (SFT vs GRPO) with 89 % intervals, beside the outcome (Eq. 2) fractions;
    cross-validated accuracy of predicting the post-training method and the outcome
    regime from the three features (multinomial logistic regression, 10 folds),
    with majority baselines.
``loo``
    Leave one problem out, within cells, from the ``full`` fit by Pareto-smoothed
    importance sampling (no refits): for failure i and draw s the weight is
    ``1 / m_i(s)``, with ``m_i`` the likelihood of all its cells, its u integrated
    out (adaptive Gauss-Hermite around its posterior u) and conditional on its
    selection; the features-only prediction (u integrated over the selected
    population of its cell, as ``route_new``) is averaged with those weights.
    Pareto k is reported. The best fixed intervention of a failure is the best
    mean over the *other* failures of its cell (of its cell's other Steerable-Hard
    failures for the Steerable-Hard score).
``cv``
    Five folds over problems, stratified by cell: one pooled fit per fold on the
    other folds (cells as partially pooled groups), then prospective routing of the
    held-out failures from their features only (``route_new``), and from features
    plus the failure count n_failed of N (known before any intervention).
``loco``
    Leave one cell out: fit on seven cells, route the eighth (unseen group: its
    offsets are drawn from the fitted population of cells).
``compute``
    Compute-matched view from the ``full`` fit: for each failure, the number m of
    plain retries with the same expected rescue as B attempts of its (cross-
    validated, features-only) routed intervention, B = 3 and 10.
``other``
    The same model (no features, no selection; every problem x model unit) on
    LiveCodeBench (plain generation vs self-repair, 10 models x 713 problems) and
    CRUXEval-O (T0.2 direct as baseline vs T0.8 direct, T0.2 CoT, T0.8 CoT; the 5
    models with all four conditions). Among units that failed at least once under
    the baseline: expected number steerable, and failures the intervention rescues
    that resampling would not (P(p_baseline < epsilon) > 0.5 and expected
    intervention rescue > 0.5), beside the raw count (baseline 0/n, intervention > 0).

Scoring (``cv`` and ``loco``): each strategy picks one of the four interventions per
failure and scores that failure's observed rate of it (the paper's metric); the
Bayesian router picks the largest posterior expected rescue. The best fixed
intervention is chosen on the training rows only (on their Steerable-Hard subset
for the Steerable-Hard score). The paper's rule is training-free: z-scores over the
cell's failures (all failures) or over its steerable ones (Steerable-Hard, the
published recipe). Paired differences per failure, 89 % intervals by bootstrap over
problems within cells (4,000 resamples).

Fits: nutpie, 2 chains, ``--draws``/``--tune`` (default 1000 / 500), target_accept 0.9;
every fit's diagnostics are recorded and a failed fit is flagged in the tables.
Fitted models are cached under ``--cache`` so that an interrupted run resumes.

Command (one paper fit takes about 35 min on 2 cores shared with other jobs, load
average 10-14; ``loo`` about 10 min with 100 draws; each part can run alone and
cached fits are reused)::

    .venv/bin/python benchmarks/router.py --parts full loo insample compute --loo-draws 100
    .venv/bin/python benchmarks/router.py --parts cv loco other   # refits: hours
    .venv/bin/python benchmarks/router.py --render   # rewrite router.md from router.json

Output: ``benchmarks/results/router.json`` and ``router.md``. JSON schema (parts
present only when run)::

    settings      {draws, tune, chains, target_accept, folds, seed, bootstrap,
                   interval, loo_draws}
    machine       machine_info();  timings_s {part: seconds}
    full          fit: diagnostics summary {ok, max_r_hat, min_ess_bulk,
                       min_ess_tail, divergences, min_bfmi, n_draws, problems,
                       fit, wall_s}
                  fractions_cell / fractions_method: [{by, regime, n, mean, low,
                       high}] (posterior share of failures per regime; by = cell,
                       or SFT / GRPO / all; 89 % equal-tailed intervals)
                  outcome_fractions: [{by, regime, outcome_fraction}] (Eq. 2)
                  classification: {method | outcome_regime: {accuracy,
                       sd_over_folds, majority, n, classes}}
    loo, cv, loco all | steerable_hard:
                       rates: [{cell (8 cells + "pooled"), n, bayes, bayes_count,
                               paper_rule, best_fixed, resample, oracle}]
                               (mean observed rescue rate of each strategy's pick)
                       diffs: [{router (bayes | bayes_count), vs, cell, n, diff,
                               low, high, above_zero}] (paired, 89 % bootstrap)
                  fits: [diagnostics summary per fit]
                  choice_counts: {intervention: failures routed to it (bayes)}
                  predictions (loo, cv): {feat: [[retry, sparse_steer,
                       sparse_steer_random, local_temp, dense_steer] expected
                       rescue per failure, table row order]}
                  pareto_k (loo): {max, share_above_0.7, share_above_0.5, draws}
    compute       grid: retry counts m; B3 | B10: {mean_routed_rescue,
                  mean_retry_rescue_same_budget, population_matching_retries,
                  median_matching_retries, share_matched_within_B,
                  share_needing_over_5B, share_never_within_1000,
                  retry_rescue_at_50}
    other         livecodebench | cruxeval_output: {fit, rows: [{intervention,
                  group, failures, p_steerable_sum, rescued_not_resampling,
                  observed_0_baseline_k_positive, recommended}]}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import RESULTS_DIR, machine_info, markdown_table, write_results

from bayes_regimes import paper
from bayes_regimes.data import RolloutData
from bayes_regimes.datasets import load_source
from bayes_regimes.errors import DiagnosticsWarning
from bayes_regimes.models.interventions import InterventionModel
from bayes_regimes.routing import _cell_posterior, _thin, profiles_to_counts, total_rollouts

INT = list(paper.INTERVENTIONS)
CANDS = ["retry", *INT]
ATT = {c: paper.ATTEMPTS_PER_CONTEXT for c in paper.RATES} | {"original": 1}
B_BOOT = 4000
LEVEL = 0.89


# ------------------------------------------------------------------------- fitting
def _fit(name: str, data: RolloutData, args, **options) -> tuple[InterventionModel, dict]:
    path = Path(args.cache) / f"{name}.nc"
    if path.exists():
        model = InterventionModel.load(path)
        wall = json.loads(model.idata.attrs.get("fit", "{}")).get("wall_s")
    else:
        model = InterventionModel(data, **options)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(
                draws=args.draws,
                tune=args.tune,
                chains=2,
                random_seed=args.seed,
                progressbar=False,
                target_accept=0.9,
            )
        wall = time.perf_counter() - t0
        info = json.loads(model.idata.attrs["fit"])
        model.idata.attrs["fit"] = json.dumps(info | {"wall_s": wall})
        model.save(path)
    diag = model.diagnostics().summary() | {"fit": name, "wall_s": wall}
    print(
        f"  fit {name}: {model.layout.n_units} failures, {diag['ok'] and 'ok' or 'FAILED'}, "
        f"max R-hat {diag['max_r_hat']:.3f}, min ESS {diag['min_ess_bulk']:.0f}, "
        f"{diag['divergences']} divergences, {wall and round(wall)} s",
        flush=True,
    )
    return model, diag


def _paper_model(df: pd.DataFrame, name: str, args):
    counts = profiles_to_counts(df, rollouts=df["N_total"].to_numpy())
    data = RolloutData.from_counts(
        counts, group="cell", condition="condition", features=list(paper.FEATURES)
    )
    return _fit(name, data, args, attempts=ATT, selection="original")


def _predict(model: InterventionModel, test: pd.DataFrame, observed: bool) -> np.ndarray:
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


# ------------------------------------------------------------------------- scoring
def _rule_choice(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Paper's rule per row: z over the cell (all) and over the cell's steerable rows."""
    all_ops = np.empty(len(df), dtype=object)
    sh_ops = np.full(len(df), None, dtype=object)
    steer = (paper.outcome_regimes(df) == "steerable").to_numpy()
    for cell in dict.fromkeys(df["cell"]):
        rows = (df["cell"] == cell).to_numpy()
        all_ops[rows] = paper.route(df[rows]).to_numpy()
        sub = rows & steer
        sh_ops[sub] = paper.route(df[sub]).to_numpy()
    return all_ops, sh_ops


def _best_fixed(train: pd.DataFrame) -> str:
    means = train[INT].mean().to_numpy()
    return INT[int(np.argmax(means))]


def _bootstrap(diff: np.ndarray, cells: np.ndarray, rng) -> tuple[float, float, float]:
    """Mean paired difference and its bootstrap interval (resampling within cells)."""
    groups = [np.flatnonzero(cells == c) for c in dict.fromkeys(cells)]
    stats = np.empty(B_BOOT)
    for b in range(B_BOOT):
        idx = np.concatenate([rng.choice(g, g.size) for g in groups])
        stats[b] = diff[idx].mean()
    lo, hi = np.quantile(stats, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(diff.mean()), float(lo), float(hi)


def score(df: pd.DataFrame, choices: dict[str, np.ndarray], population: np.ndarray, seed: int):
    """Rescue rates per strategy and paired differences, per cell and pooled."""
    rng = np.random.default_rng(seed)
    rates = df[list(paper.RATES)]
    got = {}
    for name, ops in choices.items():
        ops = np.asarray(ops, dtype=object)
        val = np.full(len(df), np.nan)
        ok = population & (ops != None)  # noqa: E711
        for c in paper.RATES:
            sel = ok & (ops == c)
            val[sel] = rates[c].to_numpy()[sel]
        got[name] = val
    cells = df["cell"].to_numpy()
    rows = []
    for cell in [*dict.fromkeys(cells), "pooled"]:
        m = population & ((cells == cell) if cell != "pooled" else True)
        rows.append(
            {"cell": cell, "n": int(m.sum())} | {k: float(v[m].mean()) for k, v in got.items()}
        )
    diffs = []
    for ref in [k for k in got if k not in ("bayes", "bayes_count")]:
        for router in [k for k in ("bayes", "bayes_count") if k in got]:
            for cell in [*dict.fromkeys(cells), "pooled"]:
                m = population & ((cells == cell) if cell != "pooled" else True)
                d = got[router][m] - got[ref][m]
                mean, lo, hi = _bootstrap(d, cells[m], rng)
                diffs.append(
                    {
                        "router": router,
                        "vs": ref,
                        "cell": cell,
                        "n": int(m.sum()),
                        "diff": mean,
                        "low": lo,
                        "high": hi,
                        "above_zero": bool(lo > 0),
                    }
                )
    return rows, diffs


def _choices(df, pred_feat, pred_obs, best_all, best_sh):
    rule_all, rule_sh = _rule_choice(df)
    pick = lambda p: np.array(INT, dtype=object)[np.argmax(p[:, 1:], axis=1)]  # noqa: E731
    base = {"bayes": pick(pred_feat), "bayes_count": pick(pred_obs)}
    oracle = np.array(INT, dtype=object)[np.argmax(df[INT].to_numpy(), axis=1)]
    return (
        base
        | {
            "paper_rule": rule_all,
            "best_fixed": best_all,
            "resample": np.full(len(df), "retry", object),
            "oracle": oracle,
        },
        base
        | {
            "paper_rule": rule_sh,
            "best_fixed": best_sh,
            "resample": np.full(len(df), "retry", object),
            "oracle": oracle,
        },
    )


def _evaluate(df, pred_feat, pred_obs, best_all, best_sh, diags, seed):
    steer = (paper.outcome_regimes(df) == "steerable").to_numpy()
    ch_all, ch_sh = _choices(df, pred_feat, pred_obs, best_all, best_sh)
    everyone = np.ones(len(df), bool)
    rates_all, diff_all = score(df, ch_all, everyone, seed)
    rates_sh, diff_sh = score(df, ch_sh, steer, seed + 1)
    return {
        "all": {"rates": rates_all, "diffs": diff_all},
        "steerable_hard": {"rates": rates_sh, "diffs": diff_sh},
        "fits": diags,
        "choice_counts": pd.Series(ch_all["bayes"]).value_counts().to_dict(),
    }


def part_cv(df: pd.DataFrame, args) -> dict:
    rng = np.random.default_rng(args.seed)
    fold = np.empty(len(df), np.int64)
    for cell in dict.fromkeys(df["cell"]):
        idx = np.flatnonzero(df["cell"].to_numpy() == cell)
        fold[rng.permutation(idx)] = np.arange(idx.size) % args.folds
    pred_feat = np.full((len(df), len(CANDS)), np.nan)
    pred_obs = pred_feat.copy()
    best_all = np.empty(len(df), dtype=object)
    best_sh = best_all.copy()
    steer = (paper.outcome_regimes(df) == "steerable").to_numpy()
    diags = []
    for f in range(args.folds):
        test = fold == f
        model, diag = _paper_model(df[~test].reset_index(drop=True), f"cv{f}_s{args.seed}", args)
        diags.append(diag)
        pred_feat[test] = _predict(model, df[test], observed=False)
        pred_obs[test] = _predict(model, df[test], observed=True)
        for cell in dict.fromkeys(df["cell"]):
            train = ~test & (df["cell"] == cell).to_numpy()
            rows = test & (df["cell"] == cell).to_numpy()
            best_all[rows] = _best_fixed(df[train])
            best_sh[rows] = _best_fixed(df[train & steer])
    out = _evaluate(df, pred_feat, pred_obs, best_all, best_sh, diags, args.seed)
    out["predictions"] = {"feat": pred_feat.round(4).tolist()}
    return out


def _loo_predictions(model: InterventionModel, df: pd.DataFrame, n_draws: int):
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


def _loo_best_fixed(df: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Per row of ``rows``: the intervention with the best mean over the other rows of
    its cell in ``rows`` (None outside ``rows``)."""
    out = np.full(len(df), None, dtype=object)
    vals = df[INT].to_numpy()
    for cell in dict.fromkeys(df["cell"]):
        m = rows & (df["cell"] == cell).to_numpy()
        idx = np.flatnonzero(m)
        tot = vals[idx].sum(axis=0)
        for i in idx:
            out[i] = INT[int(np.argmax((tot - vals[i]) / max(idx.size - 1, 1)))]
    return out


def part_loo(df: pd.DataFrame, args) -> dict:
    """Leave-one-problem-out within cells from the full fit (PSIS), see module notes."""
    model, diag = _paper_model(df, "full", args)
    t0 = time.perf_counter()
    feat, obs, khat = _loo_predictions(model, df, args.loo_draws)
    steer = (paper.outcome_regimes(df) == "steerable").to_numpy()
    best_all = _loo_best_fixed(df, np.ones(len(df), bool))
    best_sh = _loo_best_fixed(df, steer)
    out = _evaluate(df, feat, obs, best_all, best_sh, [diag], args.seed)
    out["pareto_k"] = {
        "max": float(np.max(khat)),
        "share_above_0.7": float(np.mean(khat > 0.7)),
        "share_above_0.5": float(np.mean(khat > 0.5)),
        "draws": int(args.loo_draws),
    }
    out["predictions"] = {"feat": feat.round(4).tolist()}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def part_insample(df: pd.DataFrame, results: dict, seed: int) -> dict:
    """Stored router predictions against the *in-sample* best fixed intervention.

    The best fixed intervention of each cell chosen on all its rows (the scored
    ones included) is an upper bound for any fixed choice; a leave-one-out choice
    can flip between near-tied interventions as the scored row is left out, which
    penalises the fixed strategy. Uses the ``loo`` (else ``cv``) predictions.
    """
    src = results.get("loo") or results.get("cv")
    if src is None:
        raise SystemExit("insample needs the loo or cv part first")
    pred = np.asarray(src["predictions"]["feat"])
    bayes = np.array(INT, dtype=object)[np.argmax(pred[:, 1:], axis=1)]
    steer = (paper.outcome_regimes(df) == "steerable").to_numpy()
    out = {}
    for pop, rows in (("all", np.ones(len(df), bool)), ("steerable_hard", steer)):
        best = np.full(len(df), None, dtype=object)
        for cell in dict.fromkeys(df["cell"]):
            m = rows & (df["cell"] == cell).to_numpy()
            best[m] = _best_fixed(df[m])
        rates, diffs = score(df, {"bayes": bayes, "best_fixed_in_sample": best}, rows, seed)
        out[pop] = {"rates": rates, "diffs": diffs}
    return out


def part_loco(df: pd.DataFrame, args) -> dict:
    pred_feat = np.full((len(df), len(CANDS)), np.nan)
    pred_obs = pred_feat.copy()
    best_all = np.empty(len(df), dtype=object)
    best_sh = best_all.copy()
    steer = (paper.outcome_regimes(df) == "steerable").to_numpy()
    diags = []
    for cell in dict.fromkeys(df["cell"]):
        test = (df["cell"] == cell).to_numpy()
        safe = cell.replace("|", "_")
        model, diag = _paper_model(df[~test].reset_index(drop=True), f"loco_{safe}", args)
        diags.append(diag)
        pred_feat[test] = _predict(model, df[test], observed=False)
        pred_obs[test] = _predict(model, df[test], observed=True)
        best_all[test] = _best_fixed(df[~test])
        best_sh[test] = _best_fixed(df[~test & steer])
    return _evaluate(df, pred_feat, pred_obs, best_all, best_sh, diags, args.seed)


# ------------------------------------------------------------------ topography
def _softmax_fit(X: np.ndarray, y: np.ndarray, n_class: int, l2: float = 1e-2) -> np.ndarray:
    """Multinomial logistic regression (intercept + X), L2-penalised, by L-BFGS."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    Xb = np.column_stack([np.ones(len(X)), X])
    Y = np.eye(n_class)[y]

    def loss(w):
        W = w.reshape(Xb.shape[1], n_class)
        eta = Xb @ W
        lse = logsumexp(eta, axis=1, keepdims=True)
        P = np.exp(eta - lse)
        val = -np.sum(Y * (eta - lse)) + l2 * np.sum(W[1:] ** 2)
        grad = Xb.T @ (P - Y)
        grad[1:] += 2 * l2 * W[1:]
        return val, grad.ravel()

    w0 = np.zeros(Xb.shape[1] * n_class)
    return minimize(loss, w0, jac=True, method="L-BFGS-B").x.reshape(Xb.shape[1], n_class)


def cv_accuracy(X: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> dict:
    """k-fold accuracy of a multinomial logistic regression, with a majority baseline."""
    classes, y = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(y)) % folds
    hit = np.zeros(len(y), bool)
    base = np.zeros(len(y), bool)
    for f in range(folds):
        te, tr = fold == f, fold != f
        mu, sd = X[tr].mean(0), X[tr].std(0)
        W = _softmax_fit((X[tr] - mu) / sd, y[tr], len(classes))
        pred = np.argmax(np.column_stack([np.ones(te.sum()), (X[te] - mu) / sd]) @ W, axis=1)
        hit[te] = pred == y[te]
        base[te] = y[te] == np.bincount(y[tr], minlength=len(classes)).argmax()
    per_fold = [hit[fold == f].mean() for f in range(folds)]
    return {
        "accuracy": float(hit.mean()),
        "sd_over_folds": float(np.std(per_fold)),
        "majority": float(base.mean()),
        "n": int(len(y)),
        "classes": classes.tolist(),
    }


def part_full(df: pd.DataFrame, args) -> dict:
    model, diag = _paper_model(df, "full", args)
    by_method = {c: "GRPO" if c.startswith("grpo") else "SFT" for c in model.layout.groups}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        cells = model.regime_fractions(max_draws=500)
        methods = model.regime_fractions(by=by_method, max_draws=500)
    outcome = paper.outcome_regimes(df)
    obs = []
    for lab in (df["cell"], df["cell"].map(by_method)):
        tab = pd.crosstab(lab, outcome, normalize="index")
        for g, row in tab.iterrows():
            obs += [
                {"by": g, "regime": r, "outcome_fraction": float(row.get(r, 0.0))}
                for r in paper.REGIMES
            ]
    X = df[list(paper.FEATURES)].to_numpy()
    acc = {
        "method": cv_accuracy(X, df["cell"].map(by_method).to_numpy(), 10, args.seed),
        "outcome_regime": cv_accuracy(X, outcome.to_numpy(), 10, args.seed),
    }
    return {
        "fit": diag,
        "fractions_cell": cells.to_dict("records"),
        "fractions_method": methods[methods["by"] != "all"].to_dict("records")
        + cells[cells["by"] == "all"].to_dict("records"),
        "outcome_fractions": obs,
        "classification": acc,
    }


# ------------------------------------------------------------------ compute-matched
def part_compute(df: pd.DataFrame, args, routed: np.ndarray | None) -> dict:
    """Plain retries m matching B attempts of the routed intervention, per failure."""
    model, _ = _paper_model(df, "full", args)
    lay, conds = model.layout, model.conditions
    dr = _thin(model.draws(), 300)
    grid = np.unique(np.round(np.geomspace(1, 1000, 60)).astype(int))
    units = np.arange(lay.n_units)
    if routed is None:  # fall back to the fitted model's own recommendation
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DiagnosticsWarning)
            rec = model.route(max_draws=300)
        routed = rec["recommended"].to_numpy()
    rout_idx = np.array([conds.index(c) for c in routed])
    base = conds.index("retry")

    def rescue(cidx, m):
        pi, a, b = model._cell_hyper(dr, units, cidx)
        out = _cell_posterior(
            lay.K[units, cidx],
            lay.D[units, cidx],
            model.r[cidx],
            pi,
            a,
            b,
            0.5,
            r_rescue=np.full(units.size, m),
        )[0]
        return out.mean(axis=0)

    retry_curve = np.stack([rescue(np.full(units.size, base), m) for m in grid], axis=1)
    out = {"grid": grid.tolist()}
    for B in (3, 10):
        target = rescue(rout_idx, B)
        reach = retry_curve >= target[:, None] - 1e-12
        m_star = np.where(reach.any(axis=1), grid[np.argmax(reach, axis=1)], np.inf)
        pop_target = target.mean()
        pop_curve = retry_curve.mean(axis=0)
        pop_m = (
            grid[np.argmax(pop_curve >= pop_target)] if (pop_curve >= pop_target).any() else None
        )
        finite = np.isfinite(m_star)
        out[f"B{B}"] = {
            "mean_routed_rescue": float(pop_target),
            "mean_retry_rescue_same_budget": float(rescue(np.full(units.size, base), B).mean()),
            "population_matching_retries": None if pop_m is None else int(pop_m),
            "median_matching_retries": float(np.median(m_star)) if finite.any() else None,
            "share_matched_within_B": float(np.mean(m_star <= B)),
            "share_needing_over_5B": float(np.mean(m_star > 5 * B)),
            "share_never_within_1000": float(np.mean(~finite)),
            "retry_rescue_at_50": float(retry_curve[:, np.searchsorted(grid, 50)].mean()),
        }
    return out


# ------------------------------------------------------------------ other condition data
def _other_fit(name, counts, baseline, group, args) -> dict:
    data = RolloutData.from_counts(
        counts, problem="problem_id", group=group, condition="condition", features=[]
    )
    model, diag = _fit(name, data, args, baseline=baseline, attempts=1)
    lay, conds = model.layout, model.conditions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        routes = model.route(max_draws=500)
    dr = _thin(model.draws(), 500)
    units = np.arange(lay.n_units)
    b = conds.index(baseline)
    pi, a, bb = model._cell_hyper(dr, units, np.full(units.size, b))
    below = _cell_posterior(
        lay.K[:, b], lay.D[:, b], model.r[[b] * units.size], pi, a, bb, model.config["epsilon"]
    )[1].mean(axis=0)
    rows = []
    failed = lay.K[:, b] < lay.D[:, b]  # failed at least once under the baseline
    for c in model.interventions:
        j = conds.index(c)
        rescued = (below > 0.5) & (routes[f"rescue_{c}"].to_numpy() > 0.5)
        never = (lay.K[:, b] == 0) & (lay.K[:, j] > 0)
        for g in [*lay.groups, "all"]:
            m = failed & ((lay.group_label == g) if g != "all" else True)
            rows.append(
                {
                    "intervention": c,
                    "group": g,
                    "failures": int(m.sum()),
                    "p_steerable_sum": float(routes["p_steerable"][m].sum()),
                    "rescued_not_resampling": int((rescued & m).sum()),
                    "observed_0_baseline_k_positive": int((never & m).sum()),
                    "recommended": int((routes["recommended"] == c)[m].sum()),
                }
            )
    return {"fit": diag, "rows": rows}


def part_other(args) -> dict:
    lcb = load_source("livecodebench")
    if args.other_problems:
        lcb = lcb[lcb["problem_id"].isin(lcb["problem_id"].unique()[: args.other_problems])]
    out = {"livecodebench": _other_fit("lcb", lcb, "plain_generation", "model", args)}
    crux = load_source("cruxeval")
    full = crux.groupby("model")["condition"].nunique()
    models = sorted(full[full == 4].index)
    crux = crux[crux["model"].isin(models) & (crux["benchmark"] == "CRUXEval-output")]
    if args.other_problems:
        crux = crux[crux["problem_id"].isin(crux["problem_id"].unique()[: args.other_problems])]
    out["cruxeval_output"] = _other_fit("crux_o", crux, "T0.2_direct", "model", args)
    return out


# ------------------------------------------------------------------ report
def _pct(x):
    return None if x is None or not np.isfinite(x) else round(100 * x, 1)


def _router_md(res: dict, title: str) -> list[str]:
    lines = [f"### {title}", ""]
    for pop, label in (("all", "all failures"), ("steerable_hard", "Steerable-Hard")):
        part = res[pop]
        lines += [f"Rescue rate (%), {label}:", ""]
        cols = {
            "cell": "cell",
            "n": "n",
            "bayes": "Bayes (features)",
            "bayes_count": "Bayes (+ failure count)",
            "paper_rule": "paper rule",
            "best_fixed": "best fixed (train)",
            "resample": "resample",
            "oracle": "oracle",
        }
        rows = [
            {k: (_pct(v) if k not in ("cell", "n") else v) for k, v in r.items()}
            for r in part["rates"]
        ]
        lines += [markdown_table(rows, cols), ""]
        d = [r for r in part["diffs"] if r["vs"] in ("paper_rule", "best_fixed", "resample")]
        lines += [f"Paired differences (points, 89 % bootstrap interval), {label}:", ""]
        rows = [
            {
                "router": r["router"],
                "vs": r["vs"],
                "cell": r["cell"],
                "n": r["n"],
                "diff": f"{100 * r['diff']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]",
                "above": "yes" if r["above_zero"] else "no",
            }
            for r in d
        ]
        lines += [
            markdown_table(
                rows,
                {
                    "router": "router",
                    "vs": "vs",
                    "cell": "cell",
                    "n": "n",
                    "diff": "difference",
                    "above": "interval > 0",
                },
            ),
            "",
        ]
    fits = res["fits"]
    if "pareto_k" in res:
        k = res["pareto_k"]
        lines += [
            f"PSIS: {k['draws']} draws; Pareto k max {k['max']:.2f}, share > 0.7 "
            f"{100 * k['share_above_0.7']:.1f} %, share > 0.5 {100 * k['share_above_0.5']:.1f} %.",
            "",
        ]
    lines += [
        "Fits: "
        + "; ".join(
            f"{f['fit']} {'ok' if f['ok'] else 'FAILED (' + '; '.join(f['problems']) + ')'}"
            f" (R-hat {f['max_r_hat']:.3f}, ESS {f['min_ess_bulk']:.0f}, div {f['divergences']})"
            for f in fits
        ),
        "",
    ]
    return lines


def _headline(results: dict) -> list[str]:
    """README-ready table: pooled rescue rates and the router's paired differences."""
    rows = []
    protocols = (("loo", "LOO within cells"), ("cv", "5-fold CV"), ("loco", "leave cell out"))
    for key, label in protocols:
        if key not in results:
            continue
        for pop, pop_label in (("all", "all"), ("steerable_hard", "Steerable-Hard")):
            part = results[key][pop]
            rate = next(r for r in part["rates"] if r["cell"] == "pooled")
            diff = {
                (d["router"], d["vs"]): d
                for d in part["diffs"]
                if d["cell"] == "pooled" and d["router"] == "bayes"
            }

            def fmt(vs, diff=diff):
                d = diff[("bayes", vs)]
                return f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"

            rows.append(
                {
                    "protocol": label,
                    "population": pop_label,
                    "n": rate["n"],
                    "bayes": _pct(rate["bayes"]),
                    "rule": _pct(rate["paper_rule"]),
                    "fixed": _pct(rate["best_fixed"]),
                    "resample": _pct(rate["resample"]),
                    "d_fixed": fmt("best_fixed"),
                    "d_rule": fmt("paper_rule"),
                }
            )
            ins = results.get("insample", {}).get(pop) if key == "loo" else None
            if ins is not None:
                d = next(x for x in ins["diffs"] if x["cell"] == "pooled")
                rows[-1]["d_insample"] = (
                    f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"
                )
    if not rows:
        return []
    cols = {
        "protocol": "protocol",
        "population": "failures",
        "n": "n",
        "bayes": "Bayes router %",
        "rule": "paper rule %",
        "fixed": "best fixed (train) %",
        "resample": "resample %",
        "d_fixed": "router - best fixed (89 %)",
        "d_rule": "router - rule (89 %)",
    }
    if any("d_insample" in r for r in rows):
        cols["d_insample"] = "router - in-sample best fixed (89 %)"
        for r in rows:
            r.setdefault("d_insample", "-")
    return [
        "## Headline (pooled over the 8 cells)",
        "",
        "Command: `.venv/bin/python benchmarks/router.py --parts full loo insample compute "
        "--loo-draws 100` (see the script docstring). "
        "Rescue rate = observed rate of the chosen intervention; differences in points "
        "with 89 % bootstrap intervals over problems within cells.",
        "",
        markdown_table(rows, cols),
        "",
    ]


def render(results: dict) -> str:
    lines = ["# Bayesian router vs the paper's rule (benchmarks/router.py)", ""]
    s = results.get("settings", {})
    lines += [f"Settings: {json.dumps(s)}", ""]
    lines += _headline(results)
    if "full" in results:
        full = results["full"]
        f = full["fit"]
        lines += [
            "## Failure topography (full fit)",
            "",
            f"Fit: {'ok' if f['ok'] else 'FAILED'}; max R-hat {f['max_r_hat']:.3f}, "
            f"min ESS {f['min_ess_bulk']:.0f}, divergences {f['divergences']}, "
            f"{f['wall_s'] and round(f['wall_s'])} s.",
            "",
        ]
        obs = {(o["by"], o["regime"]): o["outcome_fraction"] for o in full["outcome_fractions"]}
        rows, seen = [], set()
        for r in full["fractions_cell"] + full["fractions_method"]:
            if (r["by"], r["regime"]) in seen:  # the "all" rows appear in both lists
                continue
            seen.add((r["by"], r["regime"]))
            rows.append(
                {
                    "by": r["by"],
                    "regime": r["regime"],
                    "n": r["n"],
                    "post": f"{100 * r['mean']:.1f} [{100 * r['low']:.1f}, {100 * r['high']:.1f}]",
                    "eq2": _pct(obs.get((r["by"], r["regime"]), np.nan)),
                }
            )
        lines += [
            markdown_table(
                rows,
                {
                    "by": "cell / method",
                    "regime": "regime",
                    "n": "n",
                    "post": "posterior % [89 %]",
                    "eq2": "Eq. 2 outcome %",
                },
            ),
            "",
        ]
        acc = full["classification"]
        rows = [
            {
                "task": k,
                "acc": _pct(v["accuracy"]),
                "sd": _pct(v["sd_over_folds"]),
                "maj": _pct(v["majority"]),
                "gain": _pct(v["accuracy"] - v["majority"]),
            }
            for k, v in acc.items()
        ]
        lines += [
            "Cross-validated accuracy from the three features (10 folds, multinomial "
            "logistic regression; paper: 84.3 +/- 4.3 %, +20 points over majority):",
            "",
            markdown_table(
                rows,
                {
                    "task": "target",
                    "acc": "accuracy %",
                    "sd": "sd over folds",
                    "maj": "majority %",
                    "gain": "gain (points)",
                },
            ),
            "",
        ]
    for key, title in (
        ("loo", "Leave one problem out within cells (PSIS from the full fit)"),
        ("cv", "Cross-validation over problems (5 folds within cells)"),
        ("loco", "Leave one cell out"),
    ):
        if key in results:
            lines += ["## " + title, ""] + _router_md(results[key], title)
    if "insample" in results:
        lines += [
            "## Router against the in-sample best fixed intervention",
            "",
            "The best fixed intervention of each cell chosen on all its rows, scored rows "
            "included: an upper bound for any fixed choice (router: the loo predictions).",
            "",
        ]
        for pop, label in (("all", "all failures"), ("steerable_hard", "Steerable-Hard")):
            rows = [
                {
                    "cell": d["cell"],
                    "n": d["n"],
                    "diff": f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, "
                    f"{100 * d['high']:+.1f}]",
                    "above": "yes" if d["above_zero"] else "no",
                }
                for d in results["insample"][pop]["diffs"]
            ]
            lines += [
                f"Router - in-sample best fixed (points, 89 %), {label}:",
                "",
                markdown_table(
                    rows, {"cell": "cell", "n": "n", "diff": "difference", "above": "interval > 0"}
                ),
                "",
            ]
    if "compute" in results:
        c = results["compute"]
        rows = [
            {"B": k, **{kk: (round(v, 3) if isinstance(v, float) else v) for kk, v in c[k].items()}}
            for k in ("B3", "B10")
        ]
        lines += [
            "## Compute-matched view",
            "",
            "Plain retries m with the expected rescue of B attempts of the routed "
            "intervention (features-only LOO or CV routing, full-fit posterior).",
            "",
            markdown_table(rows, {k: k for k in rows[0]}),
            "",
        ]
    if "other" in results:
        lines += ["## Other condition data", ""]
        for name, res in results["other"].items():
            f = res["fit"]
            lines += [
                f"{name}: fit {'ok' if f['ok'] else 'FAILED: ' + '; '.join(f['problems'])}",
                "",
            ]
            rows = [r for r in res["rows"]]
            lines += [markdown_table(rows, {k: k for k in rows[0]}), ""]
    parts = ("full", "loo", "insample", "compute", "cv", "loco", "other")
    missing = [k for k in parts if k not in results]
    if missing:
        lines += ["## Not run", "", "Parts absent from this result: " + ", ".join(missing), ""]
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--parts", nargs="+", default=["full", "loo", "insample", "compute", "cv", "loco", "other"]
    )
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--loo-draws", type=int, default=100, help="posterior draws used by loo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/bayes_regimes_router_cache")
    ap.add_argument("--out", default="router")
    ap.add_argument("--render", action="store_true", help="rewrite the markdown from the JSON")
    ap.add_argument("--cells", nargs="+", default=None, help="restrict to these cells (smoke)")
    ap.add_argument("--other-problems", type=int, default=None, help="first N problems (smoke)")
    args = ap.parse_args(argv)
    json_path = RESULTS_DIR / f"{args.out}.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    if args.render:
        write_results(args.out, results, render(results))
        return 0
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    df = paper.read_failure_profiles()
    df["N_total"] = total_rollouts(df)
    if args.cells:
        df = df[df["cell"].isin(args.cells)].reset_index(drop=True)
    results["settings"] = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": 2,
        "target_accept": 0.9,
        "folds": args.folds,
        "seed": args.seed,
        "bootstrap": B_BOOT,
        "interval": LEVEL,
        "loo_draws": args.loo_draws,
    }
    results["machine"] = machine_info()
    for part in args.parts:
        print(f"== {part}", flush=True)
        t0 = time.perf_counter()
        if part == "full":
            results["full"] = part_full(df, args)
        elif part == "cv":
            results["cv"] = part_cv(df, args)
        elif part == "loo":
            results["loo"] = part_loo(df, args)
        elif part == "insample":
            results["insample"] = part_insample(df, results, args.seed)
        elif part == "loco":
            results["loco"] = part_loco(df, args)
        elif part == "compute":
            src = results.get("cv") or results.get("loo") or {}
            pred = src.get("predictions", {}).get("feat")
            routed = None
            if pred is not None:
                routed = np.array(INT, dtype=object)[np.argmax(np.asarray(pred)[:, 1:], axis=1)]
            results["compute"] = part_compute(df, args, routed)
        elif part == "other":
            results["other"] = part_other(args)
        else:
            raise SystemExit(f"unknown part {part!r}")
        results.setdefault("timings_s", {})[part] = round(time.perf_counter() - t0, 1)
        write_results(args.out, results, render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
