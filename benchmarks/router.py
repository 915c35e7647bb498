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
``bounds``
    What the three features allow, without any model fit (seconds): feature-only
    reference routers (k nearest neighbours, ridge regressions; see
    ``router_bounds.py``) under the same leave-one-out and 5-fold protocols, each
    against the best fixed intervention chosen on the same training rows.
``signal``
    Do the features carry information on *which* intervention rescues a failure?
    Permutation tests (features permuted within cells; ``router_signal.py``) of the
    failure x intervention interaction: share explained by the features, in-sample
    linear routing gain, leave-one-out kNN routing gain. No model fit (seconds).
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

Fits: nutpie, 2 chains, ``--draws``/``--tune`` (default 1000 / 500), ``--target-accept`` 0.9,
``--adaptation`` (default: the model's diagonal mass matrix; the results up to session
12, router.md and router_chains4.md among them, used the low-rank one); every fit's
diagnostics are recorded and a failed fit is flagged in the tables.
Fitted models are cached under ``--cache`` so that an interrupted run resumes.

Command (one paper fit takes 3-6 min on 2 idle cores, about 35 min when the cores are
shared with other jobs at load 10-14; the whole run, ``other`` included, about 100 min
idle; each part can run alone and cached fits are reused)::

    .venv/bin/python benchmarks/router.py --parts full loo insample cv compute loco --loo-draws 100
    .venv/bin/python benchmarks/router.py --parts other
    .venv/bin/python benchmarks/router.py --render   # rewrite router.md from router.json

Code: ``router_fit.py`` (cached fits, predictions, PSIS LOO), ``router_scoring.py``
(strategies, scores, bootstrap, folds, topography classifier), ``router_bounds.py``
(part ``bounds``), ``router_signal.py`` (part ``signal``), ``router_other.py`` (part
``other``), ``router_report.py`` (markdown).

Output: ``benchmarks/results/router.json`` and ``router.md``. JSON schema (parts
present only when run)::

    settings      {draws, tune, chains, target_accept, folds, seed, bootstrap,
                   interval, loo_draws}
    machine       machine_info() of the latest run;  timings_s {part: seconds}
    parts_run     {part: {date, git_commit}} (from this version on)
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
    bounds        routers {name: [kind, parameter]}; rows: [{protocol (loo | cv),
                  population, router, n, rate, best_fixed, diff, low, high,
                  above_zero}]
    signal        n_perm, knn_k; populations: {all | steerable_hard: {n,
                  linear | linear_gain | knn_gain: {observed, p_value, null_median,
                  null_q95}, cells_linear: {cell: {n, observed, p_value, ...}}}}
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
from _common import RESULTS_DIR, machine_info, write_results
from router_bounds import part_bounds
from router_fit import (
    CHAINS,
    TARGET_ACCEPT,
    TUNE,
    adaptation,
    loo_predictions,
    paper_model,
    predict,
)
from router_other import part_other
from router_report import PARTS, render
from router_scoring import (
    B_BOOT,
    CANDS,
    LEVEL,
    best_fixed,
    cv_accuracy,
    cv_folds,
    evaluate,
    loo_best_fixed,
    pick,
    score,
    steerable,
)
from router_signal import part_signal

from bayes_regimes import paper
from bayes_regimes.errors import DiagnosticsWarning
from bayes_regimes.models.interventions import DEFAULT_PRIORS
from bayes_regimes.routing import _cell_posterior, _thin, total_rollouts

__all__ = ["cv_accuracy", "main", "render", "score"]


# ------------------------------------------------------------------ prospective routing
def _prospective(
    df: pd.DataFrame, args, splits, fixed_rows, scored: np.ndarray | None = None
) -> tuple[dict, np.ndarray]:
    """Refit without each split's test rows and route them from their features.

    ``splits`` yields (fit name, test mask); ``fixed_rows(test)`` yields (rows, train
    mask) pairs: the best fixed intervention of ``rows`` is chosen on ``train``.
    ``scored`` (default: every row) is the rows the splits cover, the only ones scored.
    Returns the scores of every strategy and the features-only predictions.
    """
    pred_feat = np.full((len(df), len(CANDS)), np.nan)
    pred_obs = pred_feat.copy()
    best_all = np.empty(len(df), dtype=object)
    best_sh = best_all.copy()
    steer = steerable(df)
    diags = []
    for name, test in splits:
        model, diag = paper_model(df[~test].reset_index(drop=True), name, args)
        diags.append(diag)
        pred_feat[test] = predict(model, df[test], observed=False)
        pred_obs[test] = predict(model, df[test], observed=True)
        for rows, train in fixed_rows(test):
            best_all[rows] = best_fixed(df[train])
            best_sh[rows] = best_fixed(df[train & steer])
    if scored is not None:
        df = df[scored].reset_index(drop=True)
        pred_feat, pred_obs = pred_feat[scored], pred_obs[scored]
        best_all, best_sh = best_all[scored], best_sh[scored]
    return evaluate(df, pred_feat, pred_obs, best_all, best_sh, diags, args.seed), pred_feat


def part_cv(df: pd.DataFrame, args) -> dict:
    """Folds over problems within cells; the best fixed choice per cell on training rows."""
    fold = cv_folds(df, args.folds, args.seed)
    cells = [(df["cell"] == cell).to_numpy() for cell in dict.fromkeys(df["cell"])]
    splits = ((f"cv{f}_s{args.seed}", fold == f) for f in range(args.folds))
    out, pred_feat = _prospective(
        df, args, splits, lambda test: ((test & c, ~test & c) for c in cells)
    )
    out["predictions"] = {"feat": pred_feat.round(4).tolist()}
    return out


def part_loco(df: pd.DataFrame, args) -> dict:
    """Leave one cell out; the best fixed choice on the other cells.

    ``--loco-cells`` holds out only those cells (each fit still trains on all seven
    others) and scores their rows alone: a partial run, labelled as such.
    """
    all_cells = list(dict.fromkeys(df["cell"]))
    cells = args.loco_cells or all_cells
    unknown = sorted(set(cells) - set(all_cells))
    if unknown:
        raise SystemExit(f"--loco-cells: unknown cell(s) {unknown}; known: {all_cells}")
    splits = ((f"loco_{cell.replace('|', '_')}", (df["cell"] == cell).to_numpy()) for cell in cells)
    scored = df["cell"].isin(cells).to_numpy()
    out = _prospective(df, args, splits, lambda test: [(test, ~test)], scored)[0]
    out["held_out_cells"] = cells
    out["partial"] = len(cells) < len(all_cells)
    return out


def part_loo(df: pd.DataFrame, args) -> dict:
    """Leave-one-problem-out within cells from the full fit (PSIS), see module notes."""
    model, diag = paper_model(df, "full", args)
    t0 = time.perf_counter()
    feat, obs, khat = loo_predictions(model, df, args.loo_draws)
    best_all = loo_best_fixed(df, np.ones(len(df), bool))
    best_sh = loo_best_fixed(df, steerable(df))
    out = evaluate(df, feat, obs, best_all, best_sh, [diag], args.seed)
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
    bayes = pick(np.asarray(src["predictions"]["feat"]))
    out = {}
    for pop, rows in (("all", np.ones(len(df), bool)), ("steerable_hard", steerable(df))):
        best = np.full(len(df), None, dtype=object)
        for cell in dict.fromkeys(df["cell"]):
            m = rows & (df["cell"] == cell).to_numpy()
            best[m] = best_fixed(df[m])
        rates, diffs = score(df, {"bayes": bayes, "best_fixed_in_sample": best}, rows, seed)
        out[pop] = {"rates": rates, "diffs": diffs}
    return out


# ------------------------------------------------------------------ topography
def part_full(df: pd.DataFrame, args) -> dict:
    """Failure topography of the full fit: regime fractions and feature classifiers."""
    model, diag = paper_model(df, "full", args)
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
    model, _ = paper_model(df, "full", args)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=list(PARTS))
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=TUNE)
    ap.add_argument(
        "--chains",
        type=int,
        default=CHAINS,
        help="chains per fit (the published run: 2; with 4 the full fit passes R-hat, "
        "max 1.008, at 1.7x the time)",
    )
    ap.add_argument(
        "--target-accept", type=float, default=TARGET_ACCEPT, help="NUTS target acceptance"
    )
    ap.add_argument(
        "--adaptation",
        choices=["diag", "low_rank"],
        default=None,
        help="nutpie mass-matrix adaptation (default: InterventionModel's, diag; low_rank "
        "was the default before session 13, see router_adaptation.md)",
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--loo-draws", type=int, default=100, help="posterior draws used by loo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/bayes_regimes_router_cache")
    ap.add_argument("--out", default="router")
    ap.add_argument("--render", action="store_true", help="rewrite the markdown from the JSON")
    ap.add_argument("--cells", nargs="+", default=None, help="restrict to these cells (smoke)")
    ap.add_argument("--loco-cells", nargs="+", default=None, help="loco: hold out only these cells")
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
        "chains": args.chains,
        "target_accept": args.target_accept,
        "adaptation": adaptation(args),
        "folds": args.folds,
        "seed": args.seed,
        "bootstrap": B_BOOT,
        "interval": LEVEL,
        "loo_draws": args.loo_draws,
        "priors": DEFAULT_PRIORS,  # InterventionModel's, for every part run now
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
                routed = pick(np.asarray(pred))
            results["compute"] = part_compute(df, args, routed)
        elif part == "bounds":
            results["bounds"] = part_bounds(df, args.folds, args.seed)
        elif part == "signal":
            results["signal"] = part_signal(df, args.seed)
        elif part == "other":
            results["other"] = part_other(args)
        else:
            raise SystemExit(f"unknown part {part!r}")
        results.setdefault("timings_s", {})[part] = round(time.perf_counter() - t0, 1)
        # "machine" is the latest run's; each part keeps the commit and date it ran at.
        m = results["machine"]
        results.setdefault("parts_run", {})[part] = {k: m.get(k) for k in ("date", "git_commit")}
        write_results(args.out, results, render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
