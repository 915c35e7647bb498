"""Crossed problem x model pooling: scale, variational vs NUTS, and held-out validation.

Parts (``--part``, default all):

``scale``
    A simulated suite of 50 models x 500 problems x 10 samples fitted with NUTS
    (nutpie, 4 chains x 1000 draws after 1000 tuning steps): wall time, diagnostics,
    recovery of the truth, query times.
``vi``
    Mean-field and full-rank ADVI on the same suite: time, their own checks (ELBO,
    Pareto k) and their accuracy against the NUTS fit (abilities, difficulties,
    p_structural and the expected gain of the failed cells), and a "when to use
    which" section (:data:`WHEN_TO_USE`): NUTS for final numbers, numpyro on a GPU,
    ADVI to explore 10^4+ problems.
``monkeys``
    Large Language Monkeys (7 Pythia models x 128 MATH problems x 10,000 samples):
    fit on m = 10 samples per cell, predict for every cell that failed all 10 the
    probability of a success among the other 9,990; AUROC among failures, ECE, and
    the absolute error of each model's rescued fraction, averaged over random draws
    of the 10, for crossed variants beside the single-model RegimeModel and the
    baselines. Then new cells: a random 15 % of the cells are left out of the fit
    entirely, and ``predict_new_cell`` predicts pass@10000 (a success in all 10,000
    samples) for them. Then new models: each model in turn is left out, and its
    pass@k on every problem is predicted from a fit of the other six, placed by its
    size (the log parameter count as model covariate) or drawn from the population.

Run (from the repository root; the machine's load is recorded with the results)::

    .venv/bin/python benchmarks/crossed.py --part scale
    .venv/bin/python benchmarks/crossed.py --part vi

``--part scale`` saves the fit (and a first report) as soon as it ends, then times
the queries; ``--part scale --resume --queries regimes expected_gain_100`` redoes
only the recovery and the named queries on the saved fit. ``--part vi`` reuses the
NUTS fit and its regimes / expected gain saved by ``--part scale``. The Monkeys
study (every variant on every seed; finished fits are cached)::

    .venv/bin/python benchmarks/crossed.py --part monkeys --seeds 3 --explore-seeds 3

Writes ``benchmarks/results/crossed_<part>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS_DIR,
    load_average,
    machine_info,
    markdown_table,
    peak_rss_mb,
    quiet_warnings,
    write_results,
)
from crossed_monkeys import part_monkeys  # noqa: E402

from bayes_regimes import RegimeModel, RolloutData  # noqa: E402
from bayes_regimes.errors import FitError  # noqa: E402
from bayes_regimes.metrics import auroc  # noqa: E402
from bayes_regimes.models.crossed_tools import simulate_crossed  # noqa: E402

NUTS = {"draws": 1000, "tune": 1000, "chains": 4, "progressbar": False}


# -- scale ----------------------------------------------------------------------------------
def big_suite():
    sim = simulate_crossed(n_problems=500, n_models=50, n=10, random_seed=0)
    return sim, RolloutData.from_counts(sim.counts, group="model")


def recovery(model, sim, reg: pd.DataFrame | None = None) -> dict:
    post = model.posterior
    ability = pd.Series(sim.params["ability"])[model.models].to_numpy()
    difficulty = pd.Series(sim.params["difficulty"])[model.problems].to_numpy()
    reg = model.regimes() if reg is None else reg
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


#: Queries timed on the big fit (``--queries`` picks a subset).
QUERIES = {
    "regimes": lambda model: model.regimes(),
    "expected_gain_100": lambda model: model.expected_gain(100),
    "pass_at_k_3ks": lambda model: model.pass_at_k([10, 100, 1000]),
    "allocate_1000": lambda model: model.allocate(1000),
}


def query_times(model, names=tuple(QUERIES)) -> tuple[dict, dict]:
    """Wall seconds of each query, and the query results (reused by ``--part vi``)."""
    times, values = {}, {}
    for name in names:
        start = time.perf_counter()
        values[name] = QUERIES[name](model)
        times[name] = time.perf_counter() - start
    return times, values


def _scale_report(model, seconds, loads, rec=None, times=None) -> dict:
    centre = dict(zip(("abilities", "difficulties"), model.centering, strict=True))
    result = {
        "suite": "simulated: 50 models x 500 problems x 10 samples (25,000 cells)",
        "sampler": f"nutpie, {NUTS['chains']} chains, 1000 tune + 1000 draws, target_accept 0.95, "
        "low-rank mass",
        "centered": centre,
        "fit_seconds": seconds,
        "load_average_at_start": loads[0],
        "load_average_after_fit": loads[1],
        "diagnostics": model.diagnostics().summary(),
        "diagnostics_table": model.diagnostics().table.to_dict("records"),
        "recovery": rec,
        "query_seconds": times,
        "peak_rss_mb": peak_rss_mb(),
    }
    md = [
        "# Crossed model at scale: 50 models x 500 problems x 10 samples",
        "",
        f"Fit (NUTS, nutpie, {NUTS['chains']} chains x 1000 + 1000, centred {centre}): "
        f"**{seconds:.0f} s** "
        f"wall on 2 cores (load average at start {loads[0]}, after the fit {loads[1]}; "
        "a load above 1 means other jobs shared the cores and the time is pessimistic).",
        "",
        str(model.diagnostics()),
        "",
    ]
    if rec is not None:
        md += ["## Recovery of the simulation truth", ""]
        md += [markdown_table([rec], {k: k for k in rec})]
    if times is not None:
        md += ["", f"## Query times ({NUTS['chains'] * NUTS['draws']:,} draws)", ""]
        md += [markdown_table([times], {k: f"{k} (s)" for k in times})]
    else:
        md += ["(recovery and query times not measured yet)"]
    return {"result": result, "markdown": "\n".join(md)}


def part_scale(args) -> dict:
    sim, data = big_suite()
    path = args.tmp / "crossed_scale.nc"
    if args.resume:  # recovery and queries of the fit saved by an earlier run
        model = RegimeModel.load(path)
        prev = json.loads((RESULTS_DIR / "crossed_scale.json").read_text())
        seconds = prev["fit_seconds"]
        loads = (prev["load_average_at_start"], prev["load_average_after_fit"])
    else:
        model = RegimeModel(data, pooling="crossed")
        load = load_average()
        start = time.perf_counter()
        with quiet_warnings():
            model.fit(random_seed=1, **NUTS)
        seconds = time.perf_counter() - start
        loads = (load, load_average())
        # Save the fit and a first report at once: the queries below take minutes.
        model.save(path)
        first = _scale_report(model, seconds, loads)
        info = machine_info()
        write_results("crossed_scale", {"machine": info, **first["result"]}, first["markdown"])
        if not args.queries:  # fit only; `--resume` times the queries later
            return first
    with quiet_warnings():
        times, values = query_times(model, args.queries)
        rec = recovery(model, sim, values.get("regimes"))
    if {"regimes", "expected_gain_100"} <= set(values):
        ref = {"regimes": values["regimes"], "gain": values["expected_gain_100"]}
        pd.to_pickle(ref, args.tmp / "crossed_scale_ref.pkl")
    return _scale_report(model, seconds, loads, rec, times)


# -- VI vs NUTS ---------------------------------------------------------------------------------
#: When to use which (also written into results/crossed_vi.md).
WHEN_TO_USE = """## When to use which

- **NUTS (nutpie, default)**: the reference, and the only fit whose intervals are
  trustworthy (R-hat, ESS and divergences are checked). Use it whenever it fits in
  the time you have: 50 models x 500 problems x 10 samples (25,000 cells) takes
  about 25 min for 4 chains on 2 CPU cores (results/crossed_scale.md); the cost
  grows with the number of cells (results/crossed_scaling_nuts_cpu.md: 85 min for a
  short 2 x (250 + 250) run at 10^4 problems x 20 models, not yet converged).
- **numpyro (JAX)**: the same model and checks; no faster than nutpie on a CPU. Use it
  on a GPU for 10^4+ problems (one H200: a gradient at 10^5 problems costs 12 ms
  against 1.2 s on 2 CPU cores; results/crossed_scaling_gpu.md, jax_gradients_gpu.md).
- **ADVI** (`fit(method="advi")`): minutes where NUTS takes hours (10^4 to 10^5+
  problems), to explore, rank cells or choose what to rerun. On the 50 x 500 suite
  (3.5 min) its p_structural and expected gain of failed cells rank like NUTS
  (correlation 0.99) with mean absolute errors of 0.02 and 0.014, but abilities are
  off by 0.38 posterior sd on average, its spreads are not NUTS's (sd ratio 1.1-1.25
  here), and its Pareto k check fails, so every query carries a warning. At 10^4
  problems 6 minutes of optimisation are not yet converged (results/crossed_scaling.md).
  Confirm final numbers with NUTS on the models or problems that matter.
- **full-rank ADVI** (`method="fullrank_advi"`): on the 50 x 500 suite (about 660
  parameters) 6 min, and 3x closer to NUTS's means than mean-field (0.13 / 0.07
  posterior sd for abilities / difficulties); spreads still 1.24-1.27x NUTS's and the
  Pareto k check still fails. Its covariance has (dim)^2 entries: small and
  mid-sized suites only.
"""


def compare_fits(vi, nuts, ref: dict) -> dict:
    """Accuracy of a VI fit against NUTS (``ref``: the NUTS fit's regimes and gain)."""
    out = {}
    for name in ("ability", "difficulty"):
        a = vi.posterior[name].mean(("chain", "draw")).values
        b = nuts.posterior[name].mean(("chain", "draw")).values
        sd = nuts.posterior[name].std(("chain", "draw")).values
        out[f"{name}_mean_abs_err_in_sd"] = float(np.mean(np.abs(a - b) / sd))
        out[f"{name}_max_abs_err_in_sd"] = float(np.max(np.abs(a - b) / sd))
        sd_vi = vi.posterior[name].std(("chain", "draw")).values
        out[f"{name}_sd_ratio_vi_over_nuts"] = float(np.median(sd_vi / sd))
    r_vi, r_nuts = vi.regimes(), ref["regimes"]
    failed = (r_nuts["k"] == 0).to_numpy()
    ps_vi, ps_nuts = r_vi["p_structural"].to_numpy()[failed], r_nuts["p_structural"].to_numpy()
    out["p_structural_mae"] = float(np.mean(np.abs(ps_vi - ps_nuts[failed])))
    out["p_structural_corr"] = float(np.corrcoef(ps_vi, ps_nuts[failed])[0, 1])
    g_vi = vi.expected_gain(100)["gain_mean"].to_numpy()[failed]
    g_nuts = ref["gain"]["gain_mean"].to_numpy()[failed]
    out["gain100_mae"] = float(np.mean(np.abs(g_vi - g_nuts)))
    out["gain100_corr"] = float(np.corrcoef(g_vi, g_nuts)[0, 1])
    out["structural_fraction_vi"] = float(r_vi["p_zero"].to_numpy()[failed].mean())
    out["structural_fraction_nuts"] = float(r_nuts["p_zero"].to_numpy()[failed].mean())
    return out


def _nuts_reference(nuts, fit_path: Path, ref_path: Path, wait_s: float) -> dict:
    """The NUTS fit's regimes and expected gain(100): saved by ``--part scale`` (waiting
    up to ``wait_s`` for a run in progress to write them), else computed here."""
    deadline = time.time() + wait_s
    while True:
        if ref_path.exists() and ref_path.stat().st_mtime > fit_path.stat().st_mtime:
            return pd.read_pickle(ref_path)
        if time.time() > deadline:
            break
        time.sleep(10)
    with quiet_warnings():
        return {"regimes": nuts.regimes(), "gain": nuts.expected_gain(100)}


def part_vi(args) -> dict:
    sim, data = big_suite()
    path = args.tmp / "crossed_scale.nc"
    if path.exists():
        nuts = RegimeModel.load(path)
    else:
        nuts = RegimeModel(data, pooling="crossed")
        with quiet_warnings():
            nuts.fit(random_seed=1, **NUTS)
    nuts_fit = json.loads(nuts.idata.attrs["fit"])
    fits, failed = [], []
    for method in args.vi_methods:
        vi = type(nuts)(data, **nuts.config)  # the same model as the NUTS fit
        load = load_average()
        start = time.perf_counter()
        try:
            with quiet_warnings():
                vi.fit(
                    method=method,
                    n_steps=args.vi_steps,
                    draws=args.vi_draws,
                    random_seed=1,
                    progressbar=False,
                    max_seconds=args.vi_max_minutes * 60,
                )
        except FitError as err:  # recorded as a row, not a crash of the benchmark
            failed.append(
                {"method": method, "fit_seconds": time.perf_counter() - start, "error": str(err)}
            )
            print(method, "failed:", err, flush=True)
            continue
        fits.append((method, vi, time.perf_counter() - start, load))
    ref = _nuts_reference(nuts, path, args.tmp / "crossed_scale_ref.pkl", args.ref_wait)
    rows = []
    for method, vi, seconds, load in fits:
        info = json.loads(vi.idata.attrs["fit"])
        with quiet_warnings():
            acc = compare_fits(vi, nuts, ref)
        rows.append(
            {
                "method": method,
                "fit_seconds": seconds,
                "load_average_at_start": load,
                **{k: info.get(k) for k in ("steps_run", "stopped_by", "pareto_k")},
                "elbo_rel_change": info.get("elbo_rel_change"),
                **{k: v for k, v in vi.diagnostics().summary().items() if k in ("ok", "problems")},
                **acc,
            }
        )
        print(method, {k: rows[-1][k] for k in ("fit_seconds", "steps_run", "pareto_k")})
    cols = {
        "method": "method",
        "fit_seconds": "fit (s)",
        "steps_run": "steps",
        "pareto_k": "Pareto k",
        "ability_mean_abs_err_in_sd": "mean abs ability - NUTS (NUTS sd)",
        "difficulty_mean_abs_err_in_sd": "mean abs difficulty - NUTS (NUTS sd)",
        "ability_sd_ratio_vi_over_nuts": "sd ratio ability",
        "difficulty_sd_ratio_vi_over_nuts": "sd ratio difficulty",
        "p_structural_mae": "p_structural MAE",
        "p_structural_corr": "p_structural corr",
        "gain100_mae": "gain(100) MAE",
        "gain100_corr": "gain(100) corr",
        "structural_fraction_vi": "structural frac (VI)",
        "structural_fraction_nuts": "structural frac (NUTS)",
    }
    nuts_diag = nuts.diagnostics()
    md = [
        "# Variational inference against NUTS (50 x 500 x 10 simulated suite)",
        "",
        f"Reference: the NUTS fit of results/crossed_scale.md ({nuts_fit.get('sampler')}, "
        f"diagnostics {'OK' if nuts_diag.ok else 'FAILED: ' + '; '.join(nuts_diag.problems)}). "
        f"VI: early stop once the ELBO changes < {0.5e-3:g} relative over the last 10 % of "
        f"steps (at most {args.vi_steps} steps or {args.vi_max_minutes:g} min), "
        f"{args.vi_draws} draws of q. Errors of abilities "
        "and difficulties are in units of the NUTS posterior sd; p_structural and gain(100) "
        "over the failed cells (k = 0). Times are wall seconds on 2 shared cores (load "
        "average at start in the JSON).",
        "",
        markdown_table(rows, cols),
        "",
        *[f"- {r['method']}: checks {'passed' if r['ok'] else r['problems']}" for r in rows],
        *[f"- {r['method']}: no fit ({r['fit_seconds']:.0f} s): {r['error']}" for r in failed],
        "",
        WHEN_TO_USE,
    ]
    return {
        "result": {"rows": rows, "failed": failed, "nuts_fit": nuts_fit},
        "markdown": "\n".join(md),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("scale", "vi", "monkeys", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--chains", type=int, default=4, help="scale: NUTS chains")
    parser.add_argument("--new-cell-seeds", type=int, default=1)
    parser.add_argument("--explore-seeds", type=int, default=1)
    parser.add_argument("--variants", nargs="*", help="monkeys: only these variant names")
    parser.add_argument("--vi-steps", type=int, default=30_000)
    parser.add_argument("--vi-draws", type=int, default=500)
    parser.add_argument("--vi-max-minutes", type=float, default=30.0)
    parser.add_argument("--ref-wait", type=float, default=0.0, help="seconds to wait (vi)")
    parser.add_argument("--queries", nargs="*", choices=list(QUERIES), default=list(QUERIES))
    parser.add_argument("--resume", action="store_true", help="--part scale: reuse the saved fit")
    parser.add_argument("--vi-methods", nargs="+", default=["advi", "fullrank_advi"])
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/bayes_regimes_crossed"))
    args = parser.parse_args(argv)
    NUTS["chains"] = args.chains
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
