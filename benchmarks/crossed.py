"""Crossed problem x model pooling: scale, variational vs NUTS, and held-out validation.

Parts (``--part``, default all):

``scale``
    A simulated suite of 50 models x 500 problems x 10 samples fitted with NUTS
    (nutpie, 2 chains x 1000 draws after 1000 tuning steps): wall time, diagnostics,
    recovery of the truth, query times.
``vi``
    Mean-field ADVI on the same suite: time, its own checks (ELBO, Pareto k) and its
    accuracy against the NUTS fit (abilities, difficulties, p_structural and the
    expected gain of the failed cells).
``monkeys``
    Large Language Monkeys (7 Pythia models x 128 MATH problems x 10,000 samples):
    fit on m = 10 samples per cell, predict for every cell that failed all 10 the
    probability of a success among the other 9,990; AUROC among failures, ECE, and
    the absolute error of each model's rescued fraction, averaged over random draws
    of the 10, for crossed variants beside the single-model RegimeModel and the
    baselines. Then new cells: a random 15 % of the cells are left out of the fit
    entirely, and ``predict_new_cell`` predicts pass@10000 (a success in all 10,000
    samples) for them.

Run (from the repository root; the machine's load is recorded with the results)::

    .venv/bin/python benchmarks/crossed.py --part scale
    .venv/bin/python benchmarks/crossed.py --part vi
    .venv/bin/python benchmarks/crossed.py --part monkeys --seeds 3

Writes ``benchmarks/results/crossed_<part>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    load_average,
    machine_info,
    markdown_table,
    peak_rss_mb,
    quiet_warnings,
    write_results,
)

from bayes_regimes import RegimeModel, RolloutData  # noqa: E402
from bayes_regimes.metrics import auroc, brier, expected_calibration_error  # noqa: E402
from bayes_regimes.models.crossed_tools import heldout_method, simulate_crossed  # noqa: E402

NUTS = {"draws": 1000, "tune": 1000, "chains": 2, "progressbar": False}


# -- scale ----------------------------------------------------------------------------------
def big_suite():
    sim = simulate_crossed(n_problems=500, n_models=50, n=10, random_seed=0)
    return sim, RolloutData.from_counts(sim.counts, group="model")


def recovery(model, sim) -> dict:
    post = model.posterior
    ability = pd.Series(sim.params["ability"])[model.models].to_numpy()
    difficulty = pd.Series(sim.params["difficulty"])[model.problems].to_numpy()
    reg = model.regimes()
    failed = (reg["k"] == 0).to_numpy()
    truth = sim.truth["structural"].to_numpy()[failed]
    lo, hi = post["ability"].quantile([0.055, 0.945], ("chain", "draw")).values
    return {
        "ability_corr": np.corrcoef(post["ability"].mean(("chain", "draw")), ability)[0, 1],
        "ability_coverage_89": float(np.mean((lo <= ability) & (ability <= hi))),
        "difficulty_corr": np.corrcoef(post["difficulty"].mean(("chain", "draw")), difficulty)[
            0, 1
        ],
        "failed_cells": int(failed.sum()),
        "structural_true": int(truth.sum()),
        "structural_expected": float(reg["p_zero"].to_numpy()[failed].sum()),
        "structural_auroc": auroc(truth, reg["p_zero"].to_numpy()[failed]),
    }


def query_times(model) -> dict:
    out = {}
    for name, fn in {
        "regimes": model.regimes,
        "expected_gain_100": lambda: model.expected_gain(100),
        "pass_at_k_3ks": lambda: model.pass_at_k([10, 100, 1000]),
        "allocate_1000": lambda: model.allocate(1000),
    }.items():
        start = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - start
    return out


def part_scale(args) -> dict:
    sim, data = big_suite()
    model = RegimeModel(data, pooling="crossed")
    load = load_average()
    start = time.perf_counter()
    with quiet_warnings():
        model.fit(random_seed=1, **NUTS)
    seconds = time.perf_counter() - start
    with quiet_warnings():
        rec = recovery(model, sim)
        times = query_times(model)
    model.save(args.tmp / "crossed_scale.nc")
    result = {
        "suite": "simulated: 50 models x 500 problems x 10 samples (25,000 cells)",
        "sampler": "nutpie, 2 chains, 1000 tune + 1000 draws, target_accept 0.95",
        "fit_seconds": seconds,
        "load_average_at_start": load,
        "diagnostics": model.diagnostics().summary(),
        "recovery": rec,
        "query_seconds": times,
        "peak_rss_mb": peak_rss_mb(),
    }
    md = [
        "# Crossed model at scale: 50 models x 500 problems x 10 samples",
        "",
        f"Fit (NUTS, nutpie, 2 chains x 1000 + 1000): **{seconds:.0f} s** wall on 2 cores "
        f"(load average at start {load}: other jobs shared the cores).",
        "",
        f"Diagnostics: {model.diagnostics()}",
        "",
        markdown_table([rec], {k: k for k in rec}),
        "",
        markdown_table([times], {k: f"{k} (s)" for k in times}),
    ]
    return {"result": result, "markdown": "\n".join(md)}


# -- VI vs NUTS ---------------------------------------------------------------------------------
def compare_fits(vi, nuts) -> dict:
    out = {}
    for name in ("ability", "difficulty"):
        a = vi.posterior[name].mean(("chain", "draw")).values
        b = nuts.posterior[name].mean(("chain", "draw")).values
        sd = nuts.posterior[name].std(("chain", "draw")).values
        out[f"{name}_mean_abs_err_in_sd"] = float(np.mean(np.abs(a - b) / sd))
        sd_vi = vi.posterior[name].std(("chain", "draw")).values
        out[f"{name}_sd_ratio_vi_over_nuts"] = float(np.median(sd_vi / sd))
    r_vi, r_nuts = vi.regimes(), nuts.regimes()
    failed = (r_nuts["k"] == 0).to_numpy()
    out["p_structural_mae"] = float(
        np.mean(np.abs(r_vi["p_structural"] - r_nuts["p_structural"])[failed])
    )
    g_vi = vi.expected_gain(100)["gain_mean"].to_numpy()[failed]
    g_nuts = nuts.expected_gain(100)["gain_mean"].to_numpy()[failed]
    out["gain100_mae"] = float(np.mean(np.abs(g_vi - g_nuts)))
    out["structural_fraction_vi"] = float(r_vi["p_zero"][failed].mean())
    out["structural_fraction_nuts"] = float(r_nuts["p_zero"][failed].mean())
    return out


def part_vi(args) -> dict:
    sim, data = big_suite()
    path = args.tmp / "crossed_scale.nc"
    if path.exists():
        nuts = RegimeModel.load(path)
    else:
        nuts = RegimeModel(data, pooling="crossed")
        with quiet_warnings():
            nuts.fit(random_seed=1, **NUTS)
    rows = []
    for method, steps in (("advi", args.vi_steps),):
        vi = RegimeModel(data, pooling="crossed")
        start = time.perf_counter()
        with quiet_warnings():
            vi.fit(method=method, n_steps=steps, draws=1000, random_seed=1, progressbar=False)
            acc = compare_fits(vi, nuts)
        rows.append(
            {
                "method": method,
                "steps": steps,
                "fit_seconds": time.perf_counter() - start,
                **{k: v for k, v in vi.diagnostics().summary().items() if k in ("ok", "problems")},
                **acc,
                "recovery": recovery(vi, sim),
            }
        )
    cols = {
        "method": "method",
        "fit_seconds": "fit (s)",
        "ability_mean_abs_err_in_sd": "|ability - NUTS| / sd",
        "difficulty_mean_abs_err_in_sd": "|difficulty - NUTS| / sd",
        "difficulty_sd_ratio_vi_over_nuts": "sd ratio (difficulty)",
        "p_structural_mae": "p_structural MAE",
        "gain100_mae": "gain(100) MAE",
        "structural_fraction_vi": "structural frac (VI)",
        "structural_fraction_nuts": "structural frac (NUTS)",
    }
    md = [
        "# Variational inference against NUTS (50 x 500 x 10 simulated suite)",
        "",
        markdown_table(rows, cols),
        "",
        *[f"- {r['method']}: checks {'passed' if r['ok'] else r['problems']}" for r in rows],
    ]
    return {"result": {"rows": rows}, "markdown": "\n".join(md)}


# -- Large Language Monkeys -------------------------------------------------------------------
#: The variants run for every seed.
MAIN = {
    "crossed beta_logit (default)": {"pooling": "crossed"},
    "crossed beta_logit, no point mass": {"pooling": "crossed", "structural": False},
    "crossed beta": {"pooling": "crossed", "slab": "beta"},
    "single-model RegimeModel": {"pooling": "group"},
}
#: Further variants tried, run for the first ``--explore-seeds`` seeds.
EXTRA = {
    "crossed logitnormal": {"pooling": "crossed", "slab": "logitnormal"},
    "crossed + model propensity": {"pooling": "crossed", "model_propensity": True},
    "crossed + kappa per model": {"pooling": "crossed", "kappa_by": "model"},
    "crossed + discrimination": {"pooling": "crossed", "discrimination": True},
}
MONKEYS_FIT = {"draws": 1500, "tune": 1000, "chains": 2, "progressbar": False}


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
        "per_model": groups["frac_abs_error"].to_dict(),
    }


def new_cells(counts, seed) -> list[dict]:
    """Leave 15 % of the cells out of the fit; predict pass@10000 for them."""
    rng = np.random.default_rng(seed)
    out_mask = rng.random(len(counts)) < 0.15
    split = counts.assign(n=10, k=rng.hypergeometric(counts["k"], counts["n"] - counts["k"], 10))
    train = split[~out_mask]
    held = counts[out_mask]
    truth = (held["k"] > 0).to_numpy()
    rows = []
    for name, kw in list(MAIN.items())[:1]:
        data = RolloutData.from_counts(train, group="model")
        model = RegimeModel(data, **kw)
        with quiet_warnings():
            model.fit(random_seed=seed, **MONKEYS_FIT)
            pred = model.predict_new_cell(
                held["problem_id"].astype(str).to_numpy(), held["model"].to_numpy(), ks=[10000]
            )
        p = pred["pass@10000_mean"].to_numpy()
        rows.append(
            {
                "variant": name,
                "seed": seed,
                "cells": int(out_mask.sum()),
                "auroc": auroc(truth, p),
                "ece": expected_calibration_error(truth, p),
                "brier": brier(truth, p),
                "predicted_frac": float(p.mean()),
                "true_frac": float(truth.mean()),
                "diagnostics_ok": model.diagnostics().ok,
            }
        )
    return rows


def part_monkeys(args) -> dict:
    from bayes_regimes import datasets
    from bayes_regimes.baselines import BASELINES
    from bayes_regimes.heldout import holdout_split

    counts = datasets.load_source("monkeys")[["model", "problem_id", "n", "k"]]
    rows, fits = [], []
    for seed in range(args.seeds):
        split = holdout_split(counts, 10, random_seed=seed)
        variants = MAIN | (EXTRA if seed < args.explore_seeds else {})
        for name, kw in variants.items():
            record: dict = {}
            with quiet_warnings():
                pred = heldout_method(
                    split, random_seed=seed, fit=dict(MONKEYS_FIT), record=record, **kw
                )
            diag = record["diagnostics"]
            rows.append({"method": name, "seed": seed, **score(split, pred)})
            fits.append(
                {"method": name, "seed": seed, "fit_seconds": record["fit_seconds"], **diag}
            )
            print(name, seed, {k: rows[-1][k] for k in ("auroc", "ece", "frac_abs_err_max")})
        for name, fn in BASELINES.items():
            pred = fn(split, random_seed=seed)
            rows.append({"method": name, "seed": seed, **score(split, pred)})
    table = pd.DataFrame(rows)
    metrics = ["auroc", "ece", "brier", "frac_abs_err_max", "frac_abs_err_mean", "frac_coverage"]
    summary = table.groupby("method", sort=False)[metrics].agg(["mean", "std"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary.insert(0, "seeds", table.groupby("method", sort=False).size())
    summary = summary.reset_index()
    new = [r for seed in range(args.new_cell_seeds) for r in new_cells(counts, seed)]
    cols = {"method": "method", "seeds": "seeds"} | {f"{m}_mean": m for m in metrics}
    md = [
        "# Large Language Monkeys: held-out rescue of the failures of m = 10 samples",
        "",
        f"7 Pythia models x 128 MATH problems; {args.seeds} random draws of the 10 training "
        "samples (means; standard deviations in the JSON). Targets: AUROC among failures "
        ">= 0.85, ECE <= 0.05, |rescued fraction error| <= 0.05 per model (max over models).",
        "",
        markdown_table(summary.to_dict("records"), cols),
        "",
        "Fits (NUTS, nutpie, 2 chains x 1500 draws after 1000 tuning steps):",
        "",
        markdown_table(
            fits,
            {
                "method": "method",
                "seed": "seed",
                "fit_seconds": "s",
                "ok": "ok",
                "max_r_hat": "max R-hat",
                "min_ess_bulk": "min ESS",
                "divergences": "div",
            },
        ),
        "",
        "## New cells: predict pass@10000 for cells left out of the fit entirely",
        "",
        markdown_table(
            new,
            {
                k: k
                for k in (
                    "variant",
                    "seed",
                    "cells",
                    "auroc",
                    "ece",
                    "brier",
                    "predicted_frac",
                    "true_frac",
                    "diagnostics_ok",
                )
            },
        ),
    ]
    return {
        "result": {
            "rows": rows,
            "summary": summary.to_dict("records"),
            "fits": fits,
            "new_cells": new,
        },
        "markdown": "\n".join(md),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("scale", "vi", "monkeys", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--new-cell-seeds", type=int, default=1)
    parser.add_argument("--explore-seeds", type=int, default=1)
    parser.add_argument("--vi-steps", type=int, default=30_000)
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/bayes_regimes_crossed"))
    args = parser.parse_args(argv)
    args.tmp.mkdir(parents=True, exist_ok=True)
    parts = ("scale", "vi", "monkeys") if args.part == "all" else (args.part,)
    for part in parts:
        info = machine_info()
        out = {"scale": part_scale, "vi": part_vi, "monkeys": part_monkeys}[part](args)
        paths = write_results(
            f"crossed_{part}", {"machine": info, **out["result"]}, out["markdown"]
        )
        print(out["markdown"])
        print("wrote", *paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
