"""``benchmarks/crossed.py --part monkeys``: held-out rescue on Large Language Monkeys.

7 Pythia models x 128 MATH problems x 10,000 samples: every variant in
:data:`VARIANTS` is fitted on m = 10 samples per cell and predicts, for every cell
that failed all 10, the probability of a success among the other 9,990 (AUROC among
failures, ECE, absolute error of each model's rescued fraction), averaged over random
draws of the 10, beside the single-model RegimeModel and the baselines; then the
information bounds of m = 10, the prediction of cells left out of the fit, and of
whole models left out of it (placed by their size; ``crossed_monkeys_new.py``). Run it
through ``benchmarks/crossed.py`` (see its docstring); each (variant, seed) fit is
cached under ``--tmp`` so that an interrupted run resumes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from _common import RESULTS_DIR, load_average, markdown_table, quiet_warnings

from bayes_regimes import RegimeModel, RolloutData
from bayes_regimes.heldout_regime import heldout_method
from bayes_regimes.metrics import auroc, brier, expected_calibration_error

# -- Large Language Monkeys -------------------------------------------------------------------
#: The defaults before this study: no per-model terms.
_OLD = {"model_propensity": False, "kappa_by": "global", "priors": {"model_propensity_sd": 0.5}}
#: The current default of pooling="crossed".
DEFAULT = "crossed beta_logit + model propensity (sd 1.5) + kappa per model"
#: The default plus the model's size (log10 parameter count, read from its name) as a
#: model covariate of the abilities and the per-model structural terms.
COVARIATE = DEFAULT + " + log params covariate"
_DEFAULT_KW = {
    "pooling": "crossed",
    "slab": "beta_logit",
    "model_propensity": True,
    "kappa_by": "model",
    "priors": {"model_propensity_sd": 1.5},
}
#: Every variant tried: name -> RegimeModel keyword arguments.
VARIANTS = {
    "crossed beta_logit": {"pooling": "crossed", "slab": "beta_logit", **_OLD},
    "crossed beta": {"pooling": "crossed", "slab": "beta", **_OLD},
    "crossed beta_logit, no point mass": {"pooling": "crossed", "structural": False, **_OLD},
    "crossed logitnormal": {"pooling": "crossed", "slab": "logitnormal", **_OLD},
    DEFAULT: _DEFAULT_KW,
    COVARIATE + " (ability, structural)": {
        **_DEFAULT_KW,
        "model_covariates": "log_params",
        "covariate_terms": ["ability", "structural"],
    },
    COVARIATE + " (ability, structural, kappa)": {
        **_DEFAULT_KW,
        "model_covariates": "log_params",
        "covariate_terms": ["ability", "structural", "kappa"],
    },
    COVARIATE + " + its square (ability, structural, kappa)": {
        **_DEFAULT_KW,
        "model_covariates": "log_params_quadratic",
        "covariate_terms": ["ability", "structural", "kappa"],
    },
    "crossed + kappa per model": {"pooling": "crossed", **_OLD, "kappa_by": "model"},
    "crossed + discrimination": {"pooling": "crossed", "discrimination": True, **_OLD},
    "single-model RegimeModel": {"pooling": "group"},
    "single-model RegimeModel, slab=beta": {"pooling": "group", "slab": "beta"},
}
#: Variants run for every seed; the others for the first ``--explore-seeds`` seeds.
MAIN = (
    DEFAULT,
    COVARIATE + " (ability, structural)",
    COVARIATE + " (ability, structural, kappa)",
    "single-model RegimeModel",
)
#: The variant whose new-cell predictions are scored (the default before this study).
NEW_CELL_VARIANT = "crossed beta_logit"
MONKEYS_FIT = {"draws": 1500, "tune": 1000, "chains": 2, "progressbar": False}
#: The variants of :data:`MAIN` (the reported numbers) run 4 chains x 3,000 draws: with
#: 2 x 1,500 the default passed the diagnostics on one seed of three (R-hat 1.01-1.02,
#: ESS 207-389), with 4 x 1,500 still one (ESS of ability_sd 348-366).
MAIN_FIT = {"chains": 4, "draws": 3000}
#: What was tried and what won (written after the runs; the numbers are in the tables).
NOTES = """\
Means over the 3 random draws of the 10. The crossed variants rank failures alike
(AUROC 0.753 to 0.783; `discrimination` 0.67 is a failed fit, below): the ranking is set
by the data, not by the slab. Calibration is what separates them:

- `beta` (constant precision) and `no point mass` rank slightly better (AUROC 0.782 /
  0.783) but are badly calibrated (ECE 0.22 / 0.24, max rescued-fraction error 0.32 /
  0.45): one puts too many failures in the point mass, the other none.
- `beta_logit` (constant spread on the logit scale), `logitnormal` (logit p ~
  Normal(eta, kappa), quadrature; 3-4x slower) and `kappa per model` alone score alike
  (ECE 0.115 to 0.132, max error 0.38 to 0.39): the logit-normal slab that won the
  single-model study brings nothing more once the item-response mean is there.
- Best, and the default of `pooling="crossed"`: `beta_logit + model propensity (sd 1.5)
  + kappa per model` (a per-model structural term u_m with prior sd HalfNormal(1.5),
  and a per-model slab concentration): lowest ECE (0.094), Brier (0.194) and max
  rescued-fraction error (0.20), and every model's 89 % interval of its rescued
  fraction holds the truth. With 4 chains x 3,000 draws its fit passes the diagnostics
  on seeds 0 and 1 and misses on seed 2 by R-hat 1.011 for ability_sd (7 models: a
  heavy-tailed scale; ESS 740); with 2 x 1,500 it passed on one seed of three (R-hat
  1.01-1.02, ESS 207-389). Every variant predicts rescued
  fractions that are too alike across models (Pythia 70M over-predicted, 12B
  under-predicted): from 2 training successes in 1,280 samples (70M) against 27 (12B)
  the data cannot say how much of a model's failures have p = 0 rather than p < 1e-3;
  the per-model terms let the models differ, and move every error toward 0.
- Model covariates (`model_covariates=`, the log10 parameter count read from each
  Pythia name; session 9): the per-model terms become regressions on model size, so
  a model whose own 10 samples say little borrows its family's trend. Informing the
  ability and the structural term: ECE 0.067, Brier 0.190, max rescued-fraction
  error 0.148, mean 0.065 (from 0.094 / 0.194 / 0.204 / 0.089); adding the slab
  concentration (`covariate_terms` default, all three): ECE 0.063, Brier 0.187, max
  error 0.12, mean 0.063 (all three fits passed the diagnostics in a first run; in
  the rerun that recorded frac_spread, seeds 1 and 2 had one divergent transition
  each in 12,000). AUROC stays at 0.754-0.758: size moves each model's level of
  rescue, not the ranking of its failures. The largest errors left: Pythia 70M
  (0.17 / 0.10 / 0.04 on the three draws), and one model near 0.1 on each draw
  (12B, 2.8B, 6.9B): still about twice the 0.05 target. But the prediction expects
  errors that large of itself: the mean absolute deviation of its predictive draws
  of each model's rescued fraction is 0.14 on average (0.20 for the widest model),
  larger than the errors it makes (0.063 mean; every 89 % interval covers). From 10
  samples per cell a calibrated prediction cannot promise 0.05 per model; meeting
  that target would take about three times narrower posteriors, i.e. more samples
  per cell or more models, not a different slab.
- A curved size trend (session 10: log10 size and its centred square as two
  covariates of all three terms; 2 x 1,500 draws, 1/3 fits passed): AUROC 0.771 but
  ECE 0.094, max error 0.124, mean 0.074 -- worse than the straight line (0.063 /
  0.12 / 0.063). It bends toward Pythia 70M on one draw of three (error 0.02 there)
  and widens every other model's prediction; seven models are too few for two
  trend coefficients per term.
- `discrimination` (a per-model slope on the difficulty): its chains settle in
  different modes (R-hat 2.25, every transition divergent on 2 of 3 seeds); not usable
  as parameterised.

The AUROC target (>= 0.85) is out of reach of ANY model that treats problems as
exchangeable (the crossed model does: two problems with the same vector of training
counts get the same posterior): the best such predictor, fitted in-sample to the
truth, scores 0.81 / 0.84 / 0.83 on the three draws (table below); 65 to 73 % of the
problems have no success at all in their 70 training samples. Knowing abilities and
difficulties exactly (from all 10,000 samples) would give 0.93.
"""


def score(split, pred) -> dict:
    from bayes_regimes.heldout import POOLED, score_predictions

    frac = pred.rescued_fraction
    tab = score_predictions(
        split,
        pred.rescue_prob if np.isfinite(pred.rescue_prob).any() else None,
        interval=frac[["low", "high"]],
        rescued_fraction=frac["estimate"].dropna(),
    )
    groups = tab.drop(index=POOLED)
    return {
        "auroc": tab.loc[POOLED, "auroc"],
        "ece": tab.loc[POOLED, "ece"],
        "brier": tab.loc[POOLED, "brier"],
        "frac_abs_err_max": groups["frac_abs_error"].max(),
        "frac_abs_err_mean": groups["frac_abs_error"].mean(),
        "frac_coverage": groups["frac_covered"].mean(),
        # The error a calibrated prediction expects of itself (mean absolute deviation
        # of its predictive draws), per model: what m = 10 samples allow this model.
        "frac_spread_max": frac["spread"].drop(index=POOLED).max(),
        "frac_spread_mean": frac["spread"].drop(index=POOLED).mean(),
        "per_model": groups["frac_abs_error"].to_dict(),
    }


def _cached(path: Path, compute) -> dict:
    """Each (variant, seed) fit takes minutes on 2 shared cores: reuse finished ones."""
    if path.exists():
        return json.loads(path.read_text())
    out = compute()
    path.write_text(json.dumps(out, default=float))
    return out


def log_params(models) -> pd.DataFrame:
    """log10 parameter count of each model, read from its name ("Pythia 70M" -> 7.85)."""
    scale = {"K": 1e3, "M": 1e6, "B": 1e9}
    out = {}
    for name in models:
        found = re.search(r"(\d+(?:\.\d+)?)\s*([KMB])\b", str(name))
        if found is None:
            raise ValueError(f"no parameter count (e.g. '70M', '6.9B') in model name {name!r}")
        out[str(name)] = np.log10(float(found.group(1)) * scale[found.group(2)])
    return pd.DataFrame({"log10_params": pd.Series(out)})


def _model_kwargs(counts, name: str) -> dict:
    kw = dict(VARIANTS[name])
    if kw.get("model_covariates") == "log_params":
        kw["model_covariates"] = log_params(counts["model"].unique())
    elif kw.get("model_covariates") == "log_params_quadratic":
        # A curved size trend: Pythia 70M falls below the line through the others.
        table = log_params(counts["model"].unique())
        centred = table["log10_params"] - table["log10_params"].mean()
        kw["model_covariates"] = table.assign(log10_params_sq=centred**2)
    return kw


def seed_cache_from_results(path: Path, tmp: Path) -> int:
    """Write the cache file of every (variant, seed) fit already in a results JSON.

    The fits take minutes each; a later session adding one variant should not have
    to refit the others (their rows, fit records and notes are kept as they were).
    Returns the number of cache files written.
    """
    if not path.exists():
        return 0
    saved = json.loads(path.read_text())
    rows = {(r["method"], r["seed"]): r for r in saved.get("rows", [])}
    written = 0
    for fit in saved.get("fits", []):
        key = (fit["method"], fit["seed"])
        if fit["method"] not in VARIANTS or key not in rows:
            continue
        target = _cache_path(tmp, fit["method"], fit["seed"], fit["chains"], fit["draws"])
        if not target.exists():
            target.write_text(json.dumps({"row": rows[key], "fit": fit}, default=float))
            written += 1
    for new in saved.get("new_cells", []):
        target = tmp / f"monkeys_newcells_seed{new['seed']}.json"
        if new.get("variant") == NEW_CELL_VARIANT and not target.exists():
            target.write_text(json.dumps(new, default=float))
            written += 1
    return written


def _cache_path(tmp: Path, name: str, seed: int, chains: int, draws: int) -> Path:
    slug = "".join(ch if ch.isalnum() else "_" for ch in name)
    size = "" if name not in MAIN else f"_chains{chains}x{draws}"
    return tmp / f"monkeys_{slug}_seed{seed}{size}.json"


def run_variant(counts, name: str, seed: int, args) -> dict:
    """Fit one variant on one random draw of the 10 training samples; score it."""
    from bayes_regimes.heldout import holdout_split

    settings = dict(MONKEYS_FIT) | (MAIN_FIT if name in MAIN else {})

    def compute():
        split = holdout_split(counts, 10, random_seed=seed)
        record: dict = {}
        load = load_average()
        with quiet_warnings():
            pred = heldout_method(
                split,
                random_seed=seed,
                fit=dict(settings),
                record=record,
                **_model_kwargs(counts, name),
            )
        fit = {"method": name, "seed": seed, "chains": settings["chains"]}
        fit |= {"draws": settings["draws"]}
        fit |= {"fit_seconds": record["fit_seconds"]}
        fit |= {"load_average_at_start": load, **record["diagnostics"]}
        return {"row": {"method": name, "seed": seed, **score(split, pred)}, "fit": fit}

    path = _cache_path(args.tmp, name, seed, settings["chains"], settings["draws"])
    out = _cached(path, compute)
    out["fit"].setdefault("chains", settings["chains"])
    out["fit"].setdefault("draws", settings["draws"])
    return out


def information_bounds(counts, seeds: int) -> list[dict]:
    """What m = 10 samples per cell allow, per random draw of the 10.

    - ``exchangeable_bound``: the best AUROC of ANY predictor that is a function of
      (model, the problem's vector of training counts over the models), such as the
      crossed model with its fitted hyper-parameters (two problems with the same
      count vector have the same posterior). Each class is scored by its true rescued
      fraction, in-sample: an upper bound.
    - ``item_response_oracle``: AUROC of theta_m - d_i fitted (maximum likelihood,
      logistic) to all 10,000 samples of every cell: the ranking if abilities and
      difficulties were known exactly.
    - ``true_p_oracle``: AUROC / ECE of 1 - (1 - p)^n_test with p = k / n from all
      10,000 samples (leaks the truth; the ECE floor of 10-bin ECE here).
    """
    from scipy.optimize import minimize
    from scipy.special import log_expit

    from bayes_regimes.heldout import holdout_split

    mi, models = pd.factorize(counts["model"])
    pi, problems = pd.factorize(counts["problem_id"])
    n, k = counts["n"].to_numpy(float), counts["k"].to_numpy(float)

    def nll(x):
        eta = x[mi] - x[len(models) + pi]
        return -(k * log_expit(eta) + (n - k) * log_expit(-eta)).sum() + 0.01 * x @ x

    x = minimize(nll, np.zeros(len(models) + len(problems)), method="L-BFGS-B").x
    eta = x[mi] - x[len(models) + pi]
    rows = []
    for seed in range(seeds):
        split = holdout_split(counts, 10, random_seed=seed)
        failed = (split["k_train"] == 0).to_numpy()
        sub = split[failed]
        y = (sub["k_test"] > 0).to_numpy()
        wide = split.pivot(index="problem_id", columns="model", values="k_train")
        vec = wide.astype(str).agg(",".join, axis=1)
        cls = (sub["model"] + "|" + sub["problem_id"].map(vec)).to_numpy()
        best = pd.Series(y.astype(float)).groupby(cls).transform("mean").to_numpy()
        p_true = (sub["k"] / sub["n"]).to_numpy()
        oracle = 1 - (1 - p_true) ** sub["n_test"].to_numpy()
        rows.append(
            {
                "seed": seed,
                "failed_cells": int(failed.sum()),
                "rescued_fraction": float(y.mean()),
                "problems_without_training_success": float((wide.sum(axis=1) == 0).mean()),
                "count_vector_classes": int(len(set(cls))),
                "exchangeable_bound_auroc": auroc(y, best),
                "item_response_oracle_auroc": auroc(y, eta[failed]),
                "true_p_oracle_auroc": auroc(y, oracle),
                "true_p_oracle_ece": expected_calibration_error(y, oracle),
            }
        )
    return rows


def new_cells(counts, seed, args) -> dict:
    """Leave 15 % of the cells out of the fit; predict pass@10000 for them."""

    def compute():
        rng = np.random.default_rng(seed)
        out_mask = rng.random(len(counts)) < 0.15
        split = counts.assign(
            n=10, k=rng.hypergeometric(counts["k"], counts["n"] - counts["k"], 10)
        )
        held = counts[out_mask]
        truth = (held["k"] > 0).to_numpy()
        data = RolloutData.from_counts(split[~out_mask], group="model")
        model = RegimeModel(data, **VARIANTS[NEW_CELL_VARIANT])
        with quiet_warnings():
            model.fit(random_seed=seed, **MONKEYS_FIT)
            pred = model.predict_new_cell(
                held["problem_id"].astype(str).to_numpy(), held["model"].to_numpy(), ks=[10000]
            )
        p = pred["pass@10000_mean"].to_numpy()
        known = pred["known_problem"].to_numpy()
        return {
            "variant": NEW_CELL_VARIANT,
            "seed": seed,
            "cells": int(out_mask.sum()),
            "new_problems": int((~known).sum()),
            "auroc": auroc(truth, p),
            "ece": expected_calibration_error(truth, p),
            "brier": brier(truth, p),
            "predicted_frac": float(p.mean()),
            "true_frac": float(truth.mean()),
            "diagnostics_ok": model.diagnostics().ok,
        }

    return _cached(args.tmp / f"monkeys_newcells_seed{seed}.json", compute)


METRICS = (
    "auroc",
    "ece",
    "brier",
    "frac_abs_err_max",
    "frac_abs_err_mean",
    "frac_coverage",
    "frac_spread_max",
    "frac_spread_mean",
)


def _summary(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    summary = table.groupby("method", sort=False)[list(METRICS)].agg(["mean", "std"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary.insert(0, "seeds", table.groupby("method", sort=False).size())
    return summary.reset_index()


def part_monkeys(args) -> dict:
    from bayes_regimes import datasets
    from bayes_regimes.baselines import BASELINES
    from bayes_regimes.heldout import holdout_split

    counts = datasets.load_source("monkeys")[["model", "problem_id", "n", "k"]]
    reused = seed_cache_from_results(RESULTS_DIR / "crossed_monkeys.json", args.tmp)
    print(f"reusing {reused} fit(s) recorded in crossed_monkeys.json")
    rows, fits = [], []
    for seed in range(args.seeds):
        names = [v for v in VARIANTS if v in MAIN or seed < args.explore_seeds]
        names = [v for v in names if not args.variants or v in args.variants]
        for name in names:
            out = run_variant(counts, name, seed, args)
            rows.append(out["row"])
            fits.append(out["fit"])
            print(name, seed, {k: rows[-1][k] for k in ("auroc", "ece", "frac_abs_err_max")})
        split = holdout_split(counts, 10, random_seed=seed)
        for name, fn in BASELINES.items():
            pred = fn(split, random_seed=seed)
            rows.append({"method": name, "seed": seed, **score(split, pred)})
    main_rows = [r for r in rows if r["method"] not in VARIANTS or r["method"] in MAIN]
    summary = _summary(main_rows)
    tried = _summary([r for r in rows if r["method"] in VARIANTS])
    bounds = information_bounds(counts, max(args.seeds, 3))
    new = [new_cells(counts, seed, args) for seed in range(args.new_cell_seeds)]
    from crossed_monkeys_new import new_models, new_models_markdown

    unseen = new_models(counts, 0, args)
    unseen_md, unseen_summary = new_models_markdown(unseen)
    cols = {"method": "method", "seeds": "seeds"} | {f"{m}_mean": m for m in METRICS}
    bound_cols = {k: k for k in bounds[0]}
    md = [
        "# Large Language Monkeys: held-out rescue of the failures of m = 10 samples",
        "",
        f"7 Pythia models x 128 MATH problems; {args.seeds} random draws of the 10 training "
        "samples (means; standard deviations in the JSON). Targets: AUROC among failures "
        ">= 0.85, ECE <= 0.05, |rescued fraction error| <= 0.05 per model (max over models). "
        "frac_coverage: share of models whose 89 % interval of the rescued fraction holds "
        "the truth. frac_spread: the absolute error of the rescued fraction that the "
        "prediction expects of itself (mean absolute deviation of its predictive draws; "
        "max / mean over models; runs from before session 9 did not record it).",
        "",
        markdown_table(summary.to_dict("records"), cols),
        "",
        "## What was tried and what won",
        "",
        "Every crossed variant tried (and the single-model fit), on the seeds it was run on:",
        "",
        markdown_table(tried.to_dict("records"), cols),
        "",
        NOTES,
        "",
        "## What m = 10 allows: information bounds",
        "",
        markdown_table(bounds, bound_cols),
        "",
        f"Fits (NUTS, nutpie, chains x draws after {MONKEYS_FIT['tune']} tuning steps: "
        f"{MAIN_FIT['chains']} x {MAIN_FIT['draws']} for the reported variants, "
        f"{MONKEYS_FIT['chains']} x {MONKEYS_FIT['draws']} for the others; fit time is wall "
        "time on 2 cores, shared with other jobs on some runs, load average at the start "
        "beside it):",
        "",
        markdown_table(
            fits,
            {
                "method": "method",
                "seed": "seed",
                "chains": "chains",
                "draws": "draws",
                "fit_seconds": "s",
                "load_average_at_start": "load",
                "ok": "ok",
                "max_r_hat": "max R-hat",
                "min_ess_bulk": "min ESS",
                "divergences": "div",
                "note": "note",
            },
        ),
        "",
        "## New cells: predict pass@10000 for cells left out of the fit entirely",
        "",
        markdown_table(new, {k: k for k in new[0]} if new else {"variant": "variant"}),
        "",
        *unseen_md,
    ]
    result = {
        "rows": rows,
        "summary": summary.to_dict("records"),
        "tried": tried.to_dict("records"),
    }
    result |= {"fits": fits, "bounds": bounds, "new_cells": new, "new_models": unseen}
    result |= {"new_models_summary": unseen_summary}
    return {"result": result, "markdown": "\n".join(md)}
