"""Speed and scale of bayes_regimes.

Four measurements on data simulated by :func:`bayes_regimes.simulate_benchmark`
(pi = 0.3, mu = 0.2, kappa = 2; n rollouts per problem):

1. ``scale``: wall time of ``RegimeModel.fit`` for 10^3 ... 10^6 problems with n fixed,
   split into data build, compile (+ model overhead), sampling and DataTree assembly,
   with max R-hat and divergences. Requirement: R-hat <= 1.01 and the fit time of the
   largest size within 2x of the smallest (the fit runs on sufficient statistics).
2. ``naive_vs_collapsed``: the model a user would write (one latent p_i per problem,
   ``p_i ~ Beta(mu kappa, (1 - mu) kappa)``, binomial likelihood, the same
   hyper-priors) against ``RegimeModel`` (plain, ``structural=False``, like for like,
   and the default zero-inflated one) on the same 2,000 problems: the smallest bulk
   ESS of (mu, kappa) per second, and the ratio.
3. ``queries``: time of ``regimes()``, ``expected_gain(100)``,
   ``pass_at_k([1, 10, 100, 1000])``, ``allocate(10_000)`` and ``coverage_ceiling()``
   over 10^6 cells, with n fixed and with n drawn from {10, 20, 50, 100}.
   Requirement: each under a few (``QUERY_LIMIT_S``) seconds.
4. ``backends``: fit time and peak memory (``ru_maxrss`` of a fresh subprocess per
   run) for nutpie and numpyro (JAX, on whatever device JAX finds).

Every fit uses the package defaults (draws=1000, tune=1000, chains=4, target_accept
0.95) unless flags say otherwise. Timings depend on the machine and on whatever else
runs on it; the output records both.

Commands::

    .venv/bin/python benchmarks/scale.py            # full run: ~7 min idle, 17 min at load 9
    .venv/bin/python benchmarks/scale.py --quick    # ~1.5 minutes, scale_quick.*
    .venv/bin/python benchmarks/scale.py --only queries --update   # section 3 only, ~3 min;
        # --update keeps the other sections of results/scale.json and rewrites scale.md

Output: ``benchmarks/results/scale.json`` (keyed by measurement) and ``scale.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    RESULTS_DIR,
    emit_result,
    fmt,
    gpu_info,
    load_average,
    machine_info,
    markdown_table,
    peak_rss_mb,
    quiet_warnings,
    run_worker,
    timed,
    write_results,
)
from scipy.special import logsumexp

from bayes_regimes import RegimeModel, RolloutData, simulate_benchmark
from bayes_regimes.diagnostics import RHAT_MAX, check_posterior
from bayes_regimes.models.regime import DEFAULT_PRIORS

N_FIXED = 20
VARIED_N = (10, 20, 50, 100)
RATIO_LIMIT = 2.0
QUERY_LIMIT_S = 3.0
HYPER = ["mu", "kappa"]
PACKAGES = ("bayes-regimes", "pymc", "nutpie", "numpyro", "jax", "arviz", "numpy", "pytensor")
FULL = dict(
    sizes=[10**3, 10**4, 10**5, 10**6],
    draws=1000,
    tune=1000,
    chains=4,
    repeats=3,
    naive_problems=2000,
    query_problems=10**6,
    backend_sizes=[10**3, 10**6],
    out="scale",
)
QUICK = dict(
    sizes=[10**3, 10**5],
    draws=300,
    tune=300,
    chains=2,
    repeats=1,
    naive_problems=500,
    query_problems=10**5,
    backend_sizes=[10**3],
    out="scale_quick",
)


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


# -- 1. scale ----------------------------------------------------------------------------
def scale_fits(
    sizes: Sequence[int],
    *,
    n: int = N_FIXED,
    draws: int,
    tune: int,
    chains: int,
    seed: int = 0,
    repeats: int = 1,
    warmup: bool = True,
) -> tuple[dict, RegimeModel]:
    """Fit time and diagnostics for each size; returns the results and the largest fit."""
    sizes = sorted(sizes)
    if warmup:  # one-off import and JIT start-up costs, not charged to the smallest size
        data = RolloutData.from_counts(simulate_counts(sizes[0], n, seed))
        fit_record(data, draws=50, tune=50, chains=chains, seed=seed)
    rows, model = [], None
    for size in sizes:
        counts = simulate_counts(size, n, seed)
        model = None
        gc.collect()
        data, data_s = timed(lambda c=counts: _with_patterns(RolloutData.from_counts(c)))
        fits = []
        for _ in range(repeats):
            model = None
            gc.collect()
            rec, model = fit_record(data, draws=draws, tune=tune, chains=chains, seed=seed)
            fits.append(rec)
        row = dict(fits[0])
        for key in ("fit_s", "build_s", "compile_s", "sampling_s", "assemble_s"):
            values = [f[key] for f in fits if f[key] is not None]
            row[key] = statistics.median(values) if values else None
        row.update(data_s=data_s, fit_s_all=[f["fit_s"] for f in fits])
        rows.append(row)
        print(f"  scale: {size:>9,} problems  fit {row['fit_s']:.2f} s", flush=True)
    small, large = rows[0], rows[-1]
    ratio = large["fit_s"] / small["fit_s"]
    ratio_total = (large["fit_s"] + large["data_s"]) / (small["fit_s"] + small["data_s"])
    rhat_ok = all(r["max_r_hat"] <= RHAT_MAX for r in rows)
    out = {
        "n": n,
        "sizes": rows,
        "ratio_fit": ratio,
        "ratio_data_plus_fit": ratio_total,
        "ratio_limit": RATIO_LIMIT,
        "rhat_ok": rhat_ok,
        "pass": bool(ratio <= RATIO_LIMIT and rhat_ok),
    }
    return out, model


def _with_patterns(data: RolloutData) -> RolloutData:
    data.patterns()  # cached on the object: part of the data build
    return data


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


# -- 3. queries ------------------------------------------------------------------------------
def query_times(
    model: RegimeModel,
    *,
    m: int = 100,
    ks=(1, 10, 100, 1000),
    budget: int = 10_000,
    repeats: int = 1,
) -> dict:
    """Time of each posterior query on a fitted model: best and median wall time of
    ``repeats`` calls, and the process CPU time of the best call (other jobs on a
    shared machine inflate wall time, barely CPU time)."""
    calls = {
        "regimes()": lambda: model.regimes(),
        f"expected_gain({m})": lambda: model.expected_gain(m),
        f"pass_at_k({list(ks)})": lambda: model.pass_at_k(list(ks)),
        f"allocate({budget:_})": lambda: model.allocate(budget),
        "coverage_ceiling()": lambda: model.coverage_ceiling(),
    }
    # One-off lazy imports, not charged to the first query that meets them: after a
    # fit, arviz has put a lazy "jax" in sys.modules, and scipy's array-API probing
    # then imports jax.numpy on the first logsumexp call (about 2 s on 2 cores).
    _, one_off = timed(logsumexp, np.zeros(2))
    load_start = load_average()
    out = {}
    with quiet_warnings():  # a failed fit's warning is in the fit's own record
        for name, call in calls.items():
            runs = []
            for _ in range(repeats):
                gc.collect()
                cpu = time.process_time()
                frame, wall = timed(call)
                runs.append((wall, time.process_time() - cpu))
            best = min(runs)
            out[name] = {
                "seconds": best[0],
                "cpu_seconds": best[1],
                "median_seconds": statistics.median(r[0] for r in runs),
                "rows": len(frame),
            }
    worst = max(v["seconds"] for v in out.values())
    return {
        "cells": model.data.n_cells,
        "patterns": model.data.patterns().n_patterns,
        "repeats": repeats,
        "queries": out,
        "max_s": worst,
        "one_off_import_s": one_off,
        "load_average": [load_start, load_average()],
        "limit_s": QUERY_LIMIT_S,
        "pass": bool(worst <= QUERY_LIMIT_S),
    }


# -- 4. backends (one fresh subprocess per run) ------------------------------------------------
def worker_main(spec: dict) -> dict:
    """Body of a backend worker: import, build data, fit; report time and peak memory."""
    import pymc  # noqa: F401

    if spec["sampler"] == "numpyro":
        import jax
        import numpyro  # noqa: F401

        device = jax.default_backend()
    else:
        import nutpie  # noqa: F401

        device = "cpu"
    rss_imports = peak_rss_mb()
    data = RolloutData.from_counts(simulate_counts(spec["problems"], spec["n"], spec["seed"]))
    rss_data = peak_rss_mb()
    rec, _ = fit_record(
        data,
        draws=spec["draws"],
        tune=spec["tune"],
        chains=spec["chains"],
        seed=spec["seed"],
        sampler=spec["sampler"],
    )
    rec.update(
        device=device,
        rss_imports_mb=rss_imports,
        rss_data_mb=rss_data,
        peak_rss_mb=peak_rss_mb(),
    )
    rec["fit_rss_mb"] = rec["peak_rss_mb"] - rss_data
    return rec


def backend_runs(
    sizes: Sequence[int],
    samplers: Sequence[str] = ("nutpie", "numpyro"),
    *,
    n: int = N_FIXED,
    draws: int,
    tune: int,
    chains: int,
    seed: int = 0,
) -> dict:
    """Fit time and peak RSS per (sampler, size), each in a fresh subprocess."""
    rows = []
    for size in sizes:
        for sampler in samplers:
            spec = dict(problems=size, n=n, draws=draws, tune=tune, chains=chains, seed=seed) | {
                "sampler": sampler
            }
            rec = run_worker([str(Path(__file__).resolve()), "--worker", json.dumps(spec)])
            rows.append(rec)
            print(f"  backend: {sampler:8s} {size:>9,} problems  fit {rec['fit_s']:.2f} s")
    return {"runs": rows, "accelerator": gpu_info()}


# -- report -----------------------------------------------------------------------------------
def _flag(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _table(rows: Sequence[dict], columns: dict[str, str]) -> str:
    """markdown_table with R-hat shown to three decimals (1.004, not 1)."""
    shown = [
        r | ({"max_r_hat": f"{r['max_r_hat']:.3f}"} if r.get("max_r_hat") is not None else {})
        for r in rows
    ]
    return markdown_table(shown, columns)


def render_markdown(results: dict) -> str:
    """The markdown report of whatever measurements ``results`` holds."""
    s, mach = results["settings"], results["machine"]
    lines = [
        "# Speed and scale (`benchmarks/scale.py`)",
        "",
        f"Machine: {mach['cpu']}, {mach['cpu_count']} cores, {mach['memory_gib']} GiB RAM; "
        f"accelerator: {mach['accelerator']}. Load average (1/5/15 min) at start "
        f"{mach['load_average_start']}, at end {mach.get('load_average_end')}: other "
        "processes (other fits) may have been running, so times are noisy.",
        f"Settings: draws={s['draws']}, tune={s['tune']}, chains={s['chains']} "
        f"(target_accept 0.95), simulate_benchmark(pi=0.3, mu=0.2, kappa=2), seed {s['seed']}. "
        f"Command: `{s['command']}`",
    ]
    if "scale" in results:
        sc = results["scale"]
        cols = {
            "problems": "problems",
            "patterns": "patterns",
            "data_s": "data build s",
            "fit_s": "fit s",
            "compile_s": "compile s",
            "sampling_s": "sampling s",
            "assemble_s": "assemble s",
            "max_r_hat": "max R-hat",
            "min_ess_bulk": "min ESS bulk",
            "divergences": "divergences",
        }
        lines += [
            "",
            f"## 1. Fit time against problems (nutpie, n = {sc['n']}, median of "
            f"{s['repeats']} fit(s))",
            "",
            _table(sc["sizes"], cols),
            "",
            f"Fit time largest / smallest: **{sc['ratio_fit']:.2f}x** (limit "
            f"{sc['ratio_limit']:.0f}x; data build + fit: {sc['ratio_data_plus_fit']:.2f}x); "
            f"R-hat <= {RHAT_MAX} at every size: {sc['rhat_ok']}. **{_flag(sc['pass'])}**",
            "",
            "compile = the `pm.sample` call less nutpie's own `sampling_time` (numba "
            "compilation and sampler set-up); assemble = per-pattern log-likelihood and "
            "the DataTree, with its per-cell `cells` group; data build = "
            "`RolloutData.from_counts` + patterns (not part of fit s).",
        ]
    if "naive_vs_collapsed" in results:
        nv = results["naive_vs_collapsed"]
        cols = {
            "method": "method",
            "fit_s": "wall s",
            "sampling_s": "sampling s",
            "min_ess_bulk": "min ESS bulk (mu, kappa)",
            "ess_per_s_wall": "ESS/s (wall)",
            "ess_per_s_sampling": "ESS/s (sampling)",
            "max_r_hat": "max R-hat",
            "divergences": "divergences",
        }
        ratios = "; ".join(
            f"{v}: {fmt(r['wall'])}x per wall second"
            + (f", {fmt(r['sampling'])}x per sampling second" if r["sampling"] else "")
            for v, r in nv["ratio_vs_naive"].items()
        )
        lines += [
            "",
            f"## 2. Naive per-problem model vs RegimeModel ({nv['problems']:,} problems, "
            f"n = {nv['n']}, nutpie)",
            "",
            _table(nv["methods"], cols),
            "",
            f"ESS/s of RegimeModel over the naive model: {ratios}.",
        ]
    if "queries" in results:
        qs = results["queries"]
        variants = list(qs)
        rows = [
            {"query": name}
            | {v: qs[v]["queries"][name]["seconds"] for v in variants}
            | {f"{v} cpu": qs[v]["queries"][name]["cpu_seconds"] for v in variants}
            for name in qs[variants[0]]["queries"]
        ]
        header = (
            {"query": "query"}
            | {
                v: f"{v}: {qs[v]['cells']:,} cells, {qs[v]['patterns']} patterns, s"
                for v in variants
            }
            | {f"{v} cpu": f"{v}: CPU s" for v in variants}
        )
        ok = all(q["pass"] for q in qs.values())
        worst_cpu = max(v["cpu_seconds"] for q in qs.values() for v in q["queries"].values())
        loads = "; ".join(
            f"{v}: {q['load_average'][0]} at start, {q['load_average'][1]} at end"
            for v, q in qs.items()
            if q.get("load_average")
        )
        when = results.get("queries_run", {})
        lines += [
            "",
            "## 3. Posterior queries",
            "",
            markdown_table(rows, header),
            "",
            f"Wall time is the best of {qs[variants[0]]['repeats']} call(s); CPU s is the "
            "process CPU time of that call. Slowest query: "
            f"{max(q['max_s'] for q in qs.values()):.2f} s wall, {worst_cpu:.2f} s CPU "
            f"(limit {QUERY_LIMIT_S:.0f} s). Wall time: **{_flag(ok)}**; CPU time: "
            f"**{_flag(worst_cpu <= QUERY_LIMIT_S)}** (wall time exceeds CPU time when other "
            "processes compete for the cores: see the load averages).",
        ]
        if loads:
            lines += [
                "",
                f"Load average (1/5/15 min) during the queries: {loads}"
                + (f" (run {when['date']}: `{when['command']}`)." if when else "."),
            ]
    if "backends" in results:
        cols = {
            "sampler": "sampler",
            "device": "device",
            "problems": "problems",
            "fit_s": "fit s",
            "sampling_s": "sampling s",
            "peak_rss_mb": "peak RSS MiB",
            "rss_data_mb": "RSS before fit MiB",
            "fit_rss_mb": "fit adds MiB",
            "max_r_hat": "max R-hat",
            "divergences": "divergences",
        }
        lines += [
            "",
            "## 4. Backends (a fresh subprocess per run, cold start; peak RSS = VmHWM)",
            "",
            _table(results["backends"]["runs"], cols),
            "",
            "Each run is a fresh process, so fit s includes one-off start-up (numba / JAX "
            "initialisation) that section 1's warm fits do not; numpyro's sampling time "
            "includes JAX's JIT compilation. fit adds = peak less the RSS after imports "
            f"and data. Accelerator: {results['backends']['accelerator']} (JAX ran on the "
            "CPU when none).",
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes and short chains")
    p.add_argument("--sizes", type=int, nargs="+", help="problem counts for the scale fits")
    p.add_argument("--n", type=int, default=N_FIXED, help="rollouts per problem")
    p.add_argument("--draws", type=int)
    p.add_argument("--tune", type=int)
    p.add_argument("--chains", type=int)
    p.add_argument("--repeats", type=int, help="fits per size (median reported)")
    p.add_argument("--naive-problems", type=int)
    p.add_argument("--query-problems", type=int)
    p.add_argument("--backend-sizes", type=int, nargs="+")
    p.add_argument("--samplers", nargs="+", default=["nutpie", "numpyro"])
    p.add_argument(
        "--only",
        nargs="+",
        choices=["scale", "naive", "queries", "backends"],
        help="run only these measurements",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output stem (default results/scale or scale_quick)")
    p.add_argument("--render", metavar="JSON", help="only re-write the markdown of a JSON result")
    p.add_argument(
        "--update",
        action="store_true",
        help="merge the measured sections into the existing JSON (keep the others)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _merged(stem: str, results: dict[str, Any]) -> dict[str, Any]:
    """The existing ``stem.json`` with this run's measured sections replacing its own.

    The machine and settings of the earlier run stay (they describe its sections);
    a section run here carries its own date, command and load average.
    """
    path = Path(stem) if Path(stem).parent != Path(".") else RESULTS_DIR / stem
    path = path.with_suffix(".json")
    if not path.is_file():
        return results
    merged = json.loads(path.read_text())
    keep = ("machine", "settings")
    merged.update({key: value for key, value in results.items() if key not in keep})
    return merged


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        emit_result(worker_main(json.loads(args.worker)))
        return {}
    if args.render:
        results = json.loads(Path(args.render).read_text())
        markdown = render_markdown(results)
        Path(args.render).with_suffix(".md").write_text(markdown)
        print(markdown)
        return results
    only = set(args.only or ["scale", "naive", "queries", "backends"])
    mcmc = dict(draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed)
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {
        "machine": machine_info(PACKAGES) | {"accelerator": gpu_info()},
        "settings": vars(args) | {"command": command.strip()},
    }
    largest = None
    if "scale" in only:
        print("1. fit time against problems", flush=True)
        results["scale"], largest = scale_fits(args.sizes, n=args.n, repeats=args.repeats, **mcmc)
    if "naive" in only:
        print("2. naive model vs RegimeModel", flush=True)
        results["naive_vs_collapsed"] = ess_comparison(args.naive_problems, n=args.n, **mcmc)
    if "queries" in only:
        print("3. posterior queries", flush=True)
        results["queries"] = {}
        for label, n in (("n fixed", args.n), ("n varied", VARIED_N)):
            if (
                label == "n fixed"
                and largest is not None
                and largest.data.n_cells == (args.query_problems)
            ):
                model = largest
            else:
                model = None
                gc.collect()
                data = RolloutData.from_counts(simulate_counts(args.query_problems, n, args.seed))
                rec, model = fit_record(data, **mcmc)
                results.setdefault("query_fits", {})[label] = rec
            results["queries"][label] = query_times(model, repeats=args.repeats)
            print(f"  {label}: slowest query {results['queries'][label]['max_s']:.2f} s")
        largest = model = None
    if "backends" in only:
        print("4. backends", flush=True)
        results["backends"] = backend_runs(args.backend_sizes, args.samplers, n=args.n, **mcmc)
    results["machine"]["load_average_end"] = load_average()
    if "queries" in results:
        results["queries_run"] = {"date": results["machine"]["date"], "command": command.strip()}
    results = _merged(args.out, results) if args.update else results
    markdown = render_markdown(results)
    json_path, md_path = write_results(args.out, results, markdown)
    print()
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return results


if __name__ == "__main__":
    main()
