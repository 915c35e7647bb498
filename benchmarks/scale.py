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
Code: the timed fits and the naive model are in ``scale_models.py``, the markdown in
``scale_report.py``.
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
    gpu_info,
    load_average,
    machine_info,
    peak_rss_mb,
    quiet_warnings,
    run_worker,
    timed,
    write_results,
)
from scale_models import (
    N_FIXED,
    ess_comparison,
    fit_record,
    naive_model,
    simulate_counts,
)
from scale_report import QUERY_LIMIT_S, render_markdown
from scipy.special import logsumexp

from bayes_regimes import RegimeModel, RolloutData
from bayes_regimes.diagnostics import RHAT_MAX

__all__ = [
    "QUERY_LIMIT_S",
    "RATIO_LIMIT",
    "VARIED_N",
    "backend_runs",
    "ess_comparison",
    "fit_record",
    "main",
    "naive_model",
    "query_times",
    "render_markdown",
    "scale_fits",
    "simulate_counts",
    "worker_main",
]

VARIED_N = (10, 20, 50, 100)
RATIO_LIMIT = 2.0
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
