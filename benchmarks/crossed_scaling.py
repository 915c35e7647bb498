"""Crossed-model fit time against the number of problems: NUTS (nutpie), NUTS (numpyro), ADVI.

A simulated crossed suite of ``--models`` models x P problems x 10 samples
(:func:`~bayes_regimes.models.crossed_tools.simulate_crossed`) for P in ``--sizes``
(default 10^3, 10^4, 10^5), fitted by

- ``nutpie``: NUTS, nutpie (numba) on CPU, ``--chains`` chains;
- ``numpyro``: NUTS, numpyro (JAX) on whatever JAX sees (the chains run in parallel
  on the CPU's cores through ``XLA_FLAGS=--xla_force_host_platform_device_count``);
  GPU numbers only where a GPU was used, and the table says which device ran;
- ``advi``: mean-field ADVI (:mod:`bayes_regimes.models.crossed_vi`), early
  stopping on the ELBO, its optimisation capped at ``--max-minutes``.

Every fit runs in a fresh subprocess (honest peak memory) with a wall-clock cap. A
NUTS fit is *skipped* when its time extrapolated from the largest size it ran at
exceeds ``--max-minutes``; the table then shows the extrapolation, labelled as such:
measured time x (cost of one log-density gradient at the new size / at the
measured size). The gradient cost is measured at every size (pytensor C backend,
median of repeated evaluations at the initial point); the extrapolation is a lower
bound, since NUTS usually needs more leapfrog steps per draw as the dimension grows.
Each row also reports the diagnostics of the fit (R-hat, ESS, divergences; ELBO
convergence and Pareto k for ADVI) and how well the posterior means recover the
simulated abilities and difficulties (correlation).

Run (from the repository root; ~23 min on 2 idle cores, as in results/)::

    .venv/bin/python benchmarks/crossed_scaling.py --sizes 1000 10000 100000 \\
        --models 20 --methods nutpie advi --draws 250 --tune 250 --max-minutes 6 \\
        --vi-draws 100 --n-khat 0

Tiny run (the smoke test; ~1 min)::

    .venv/bin/python benchmarks/crossed_scaling.py --sizes 20 40 --models 3 --draws 20 \\
        --tune 20 --vi-steps 300 --out /tmp/crossed_scaling_tiny

Writes ``benchmarks/results/crossed_scaling.json`` and ``.md`` (or ``--out``).

When to use which
-----------------
- NUTS (nutpie) is the reference: use it whenever it fits in the time you have.
  Its cost is (cells x leapfrog steps); about 25,000 cells (50 x 500 x 10) take
  tens of minutes on 2 cores.
- numpyro (JAX) compiles the same model; on a CPU it is no faster than nutpie. On a
  GPU (one H200, results/crossed_scaling_gpu.md and jax_gradients_gpu.md) one
  gradient of the 10^5-problem suite (2 x 10^6 cells) costs 12 ms for 2 vectorised
  chains against 1.2 s for the pytensor C backend on 2 idle CPU cores. At 10^3
  problems the GPU fit took 108 s (38 s of sampling, the rest JAX compilation and
  post-processing). At 10^4 and 10^5 problems the GPU fits did not finish inside
  4.5 / 3.8-min caps (results/crossed_scaling_gpu_1e4.md, _1e5.md): the first warm-up
  iterations ran at 22 s / 9 s each (largest tree depth while the step size adapts)
  after about 3 min of start-up, so budget a long job. On a GPU run
  ``fit(sampler="numpyro")`` (chains vectorised on the one device) with
  ``XLA_PYTHON_CLIENT_PREALLOCATE=false``; ``--progress`` records how far a capped run got.

GPU run (the device machine has JAX and numpyro; carry wheels of pymc, pytensor and
arviz 1.x)::

    XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/crossed_scaling.py \
        --methods numpyro --sizes 10000 --models 20 --draws 250 --tune 250 \
        --max-minutes 4.5 --no-gradients --progress --out crossed_scaling_gpu_1e4
- ADVI for 10^4+ problems, or to explore: minutes instead of hours (10^3 problems:
  converged in 135 s; 10^4: 5,400 steps in 6 min, not yet converged, abilities
  already correlate 0.99 with the truth), but it misstates posterior spread and its
  Pareto k check fails; see ``results/crossed_vi.md`` for its error against NUTS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    cores_shared,
    emit_result,
    gpu_info,
    load_average,
    machine_info,
    markdown_table,
    peak_rss_mb,
    quiet_warnings,
    run_worker,
    write_results,
)

METHODS = ("nutpie", "numpyro", "advi")
#: The crossed model fitted (pinned: the configuration of results/crossed_scale.md).
MODEL = {"pooling": "crossed", "model_propensity": False, "kappa_by": "global"}


# -- worker (one fit in a fresh process) --------------------------------------------------------
def _suite(problems: int, models: int, seed: int):
    from bayes_regimes import RolloutData
    from bayes_regimes.models.crossed_tools import simulate_crossed

    sim = simulate_crossed(n_problems=problems, n_models=models, n=10, random_seed=seed)
    return sim, RolloutData.from_counts(sim.counts, group="model")


def gradient_seconds(model, repeats: int = 5) -> dict:
    """Median wall time of one log density + gradient evaluation (pytensor C backend)."""
    pm_model = model.build_model()
    start = time.perf_counter()
    logp, dlogp = pm_model.compile_logp(), pm_model.compile_dlogp()
    point = pm_model.initial_point()
    dim = dlogp(point).size
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        logp(point), dlogp(point)
        times.append(time.perf_counter() - t)
    return {"gradient_s": float(np.median(times)), "gradient_compile_s": compile_s, "dim": dim}


def worker_main(spec: dict) -> dict:
    """Fit one (method, size); return times, diagnostics, recovery and peak memory."""
    from bayes_regimes import RegimeModel

    sim, data = _suite(spec["problems"], spec["models"], spec["seed"])
    model = RegimeModel(data, **MODEL)
    out = {"method": spec["method"], "problems": spec["problems"], "cells": data.n_cells}
    if spec["method"] == "gradient":
        return out | gradient_seconds(model) | {"peak_rss_mb": peak_rss_mb()}
    start = time.perf_counter()
    with quiet_warnings():
        if spec["method"] == "advi":
            model.fit(
                method="advi",
                draws=spec["vi_draws"],
                n_steps=spec["vi_steps"],
                max_seconds=spec["max_seconds"],
                n_khat=spec["n_khat"],
                random_seed=spec["seed"],
                progressbar=False,
            )
        else:
            model.fit(
                draws=spec["draws"],
                tune=spec["tune"],
                chains=spec["chains"],
                sampler=spec["method"],
                random_seed=spec["seed"],
                # --progress: the bar goes to stderr, whose tail a timed-out run records.
                progressbar=bool(spec.get("progress")),
            )
    out["fit_s"] = time.perf_counter() - start
    info = json.loads(model.idata.attrs["fit"])
    diag = model.diagnostics().summary()
    out.update({k: diag.get(k) for k in ("ok", "max_r_hat", "min_ess_bulk", "divergences")})
    out["problems_found"] = diag.get("problems")
    stats = model.idata["sample_stats"]
    if "n_steps" in stats:
        out["leapfrog_steps"] = int(stats["n_steps"].sum())
    out["sampling_s"] = model.idata["posterior"].attrs.get("sampling_time")
    for key in ("steps_run", "stopped_by", "optimisation_seconds", "pareto_k", "elbo_rel_change"):
        if key in info:
            out[key] = info[key]
    post = model.posterior
    for name, labels in (("ability", model.models), ("difficulty", model.problems)):
        truth = pd.Series(sim.params[name])[labels].to_numpy()
        est = post[name].mean(("chain", "draw")).values
        out[f"{name}_corr"] = float(np.corrcoef(est, truth)[0, 1])
    if spec["method"] == "numpyro":
        import jax

        out["device"] = f"{jax.default_backend()} ({jax.device_count()} device(s))"
    else:
        out["device"] = "cpu"
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# -- orchestration ------------------------------------------------------------------------------
def run_one(spec: dict, timeout_s: float) -> dict:
    """Run a worker with a wall-clock cap; a timed-out or failed run is recorded, not raised."""
    env_flag = "--xla_force_host_platform_device_count"
    if spec["method"] == "numpyro" and env_flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {env_flag}={spec['chains']}"
    start, load_start = time.perf_counter(), load_average()
    try:
        rec = run_worker([str(Path(__file__).resolve()), "--worker", json.dumps(spec)], timeout_s)
        rec["status"] = "measured"
    except subprocess.TimeoutExpired as err:
        rec = {"method": spec["method"], "problems": spec["problems"], "status": "timed out"}
        rec["fit_s"] = None
        rec["note"] = f"killed at the {timeout_s:.0f} s cap"
        progress = _last_progress(err.stderr)
        if progress:
            rec["note"] += f"; sampler progress then: {progress}"
    except RuntimeError as err:
        rec = {"method": spec["method"], "problems": spec["problems"], "status": "failed"}
        rec["note"] = str(err).splitlines()[-1][:200]
    rec["wall_s"] = time.perf_counter() - start
    rec["load_average_start"], rec["load_average"] = load_start, load_average()
    return rec


def _last_progress(stderr: bytes | str | None) -> str:
    """The last progress-bar update in a worker's stderr ("" when there is none)."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", stderr or "")  # cursor moves
    updates = [u.strip() for u in re.split(r"[\r\n]", plain) if "it/s]" in u or "s/it]" in u]
    return updates[-1] if updates else ""


def run_all(args, save=lambda partial: None) -> dict:
    """Gradient cost at every size, then each method in order of size (with skips).

    ``save(partial)`` is called after every run with the results so far, so that an
    interrupted benchmark still leaves its measured rows on disk.
    """
    base = {"models": args.models, "seed": args.seed, "chains": args.chains}
    base["progress"] = args.progress
    cap = args.max_minutes * 60
    grads = {}
    if args.reuse_gradients:  # gradient costs measured by an earlier run
        earlier = json.loads(Path(args.reuse_gradients).read_text())["gradients"]
        grads = {g["problems"]: g for g in earlier if g["problems"] in args.sizes}
    for size in args.sizes if args.gradients else ():
        if size in grads:
            continue
        rec = run_one(base | {"method": "gradient", "problems": size}, cap)
        grads[size] = rec
        print(f"gradient {size:>7}: {rec.get('gradient_s')} s", flush=True)
    rows = []
    for method in args.methods:
        measured: dict | None = None
        for size in args.sizes:
            spec = base | {"method": method, "problems": size}
            spec |= {"draws": args.draws, "tune": args.tune, "vi_draws": args.vi_draws}
            spec |= {"vi_steps": args.vi_steps, "max_seconds": cap, "n_khat": args.n_khat}
            # Without measured gradient costs (--no-gradients, e.g. on a GPU where time is
            # not linear in size) every size runs, up to the cap.
            predicted = _extrapolate(measured, grads, size) if grads else None
            if method != "advi" and predicted is not None and predicted > cap:
                rows.append(
                    {
                        "method": method,
                        "problems": size,
                        "cells": size * args.models,
                        "status": "skipped",
                        "extrapolated_fit_s": predicted,
                        "note": f"extrapolated from {measured['problems']} problems "
                        f"(x gradient-cost ratio; lower bound) > {args.max_minutes} min cap",
                    }
                )
                print(f"{method} {size}: skipped, extrapolated {predicted:.0f} s", flush=True)
                save({"gradients": list(grads.values()), "runs": rows})
                continue
            # ADVI caps its own optimisation; leave room for compiling and sampling q.
            rec = run_one(spec, cap * (3 if method == "advi" else 1.0))
            rows.append(rec)
            save({"gradients": list(grads.values()), "runs": rows})
            print(f"{method} {size}: {rec.get('status')} {rec.get('fit_s')}", flush=True)
            if rec["status"] == "measured":
                measured = rec
            elif rec["status"] == "timed out":
                measured = {"problems": size, "fit_s": cap}
    return {"gradients": [grads[size] for size in args.sizes if size in grads], "runs": rows}


def _extrapolate(measured: dict | None, grads: dict, size: int) -> float | None:
    if measured is None:
        return None
    g0 = grads.get(measured["problems"], {}).get("gradient_s")
    g1 = grads.get(size, {}).get("gradient_s")
    if not g0 or not g1:
        return measured["fit_s"] * size / measured["problems"]
    return measured["fit_s"] * g1 / g0


# -- report -------------------------------------------------------------------------------------
def _load_note(results: dict) -> str:
    # Loads taken before each run (older results kept only the load after it, which
    # counts the run's own chains: those fall back to the script's start).
    loads = [r.get("load_average_start") for r in results["runs"]]
    loads.append(results["machine"].get("load_average_start"))
    if cores_shared(loads, results["machine"]["cpu_count"]):
        return ": other jobs shared the cores, so times are pessimistic"
    return " (no other heavy job ran at the start of a run)"


def _gpu_note(results: dict) -> str:
    if any("gpu" in str(r.get("device", "")).lower() for r in results["runs"]):
        return " (the numpyro rows ran on it: the device column says so)"
    jax_saw_gpu = not str(results["accelerator"]).startswith(("none", "unknown"))
    if jax_saw_gpu and any(r.get("method") == "numpyro" for r in results["runs"]):
        # A timed-out worker reports no device; JAX's default backend is the GPU it saw.
        return " (JAX saw it, so the numpyro rows, timed-out ones included, ran on it)"
    return " (no GPU numbers: none was used)"


def render_markdown(results: dict) -> str:
    s, mach = results["settings"], results["machine"]
    rows = []
    for r in results["runs"]:
        shown = dict(r)
        if r.get("status") == "skipped":
            shown["fit"] = f"not run; extrapolated >= {r['extrapolated_fit_s']:.0f} s"
        elif r.get("fit_s") is not None:
            shown["fit"] = f"{r['fit_s']:.0f}"
        else:
            shown["fit"] = r.get("status")
        if r.get("method") == "advi" and r.get("status") == "measured":
            khat = r.get("pareto_k")
            shown["check"] = "k not computed" if khat is None else f"k={khat:.2f}"
            shown["check"] += f", {r.get('stopped_by')} after {r.get('steps_run')} steps"
        elif r.get("status") == "measured":
            shown["check"] = (
                f"R-hat {r['max_r_hat']:.3f}, ESS {r['min_ess_bulk']:.0f}, div {r['divergences']}"
            )
        rows.append(shown)
    cols = {
        "method": "method",
        "problems": "problems",
        "cells": "cells",
        "fit": "fit (s)",
        "ok": "checks ok",
        "check": "diagnostics",
        "ability_corr": "corr(ability, truth)",
        "difficulty_corr": "corr(difficulty, truth)",
        "peak_rss_mb": "peak RSS (MiB)",
        "device": "device",
        "load_average": "load avg",
    }
    grad_cols = {
        "problems": "problems",
        "cells": "cells",
        "dim": "parameters",
        "gradient_s": "gradient (s)",
        "gradient_compile_s": "compile (s)",
        "peak_rss_mb": "peak RSS (MiB)",
    }
    notes = [r for r in results["runs"] if r.get("note")]
    return "\n".join(
        [
            "# Crossed model: fit time against the number of problems",
            "",
            f"Suite: {s['models']} models x P problems x 10 samples (simulate_crossed, seed "
            f"{s['seed']}). NUTS: {s['chains']} chains x ({s['tune']} tune + {s['draws']} draws), "
            f"target_accept 0.95. ADVI: mean-field, early stop on the ELBO, at most "
            f"{s['vi_steps']} steps, {s['vi_draws']} draws of q. Cap per run: "
            f"{s['max_minutes']} min. Command: `{s['command']}`",
            "",
            f"Machine: {mach['cpu']}, {mach['cpu_count']} cores; accelerator: "
            f"{results['accelerator']}{_gpu_note(results)}. Load average at start "
            f"{mach['load_average_start']}, at end {results['load_average_end']}"
            f"{_load_note(results)}.",
            "",
            markdown_table(rows, cols),
            "",
            *[f"- {r['method']} at {r['problems']}: {r['status']}, {r['note']}" for r in notes],
            "",
            "## Cost of one log-density gradient (pytensor C backend, initial point)",
            "",
            markdown_table(results["gradients"], grad_cols)
            if results["gradients"]
            else "Not measured in this run (`--no-gradients`); the JAX gradient costs are in "
            "results/jax_gradients_*.md (benchmarks/jax_gradients.py).",
        ]
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--draws", type=int, default=250)
    parser.add_argument("--tune", type=int, default=250)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--vi-steps", type=int, default=30_000)
    parser.add_argument("--vi-draws", type=int, default=200)
    parser.add_argument("--n-khat", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="crossed_scaling")
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show the NUTS progress bar in the worker; a timed-out run records its last update",
    )
    parser.add_argument("--reuse-gradients", help="results JSON whose gradient costs to reuse")
    parser.add_argument(
        "--no-gradients",
        dest="gradients",
        action="store_false",
        help="skip the CPU gradient costs (and so the extrapolated skips), e.g. on a GPU",
    )
    args = parser.parse_args(argv)
    if args.worker:
        emit_result(worker_main(json.loads(args.worker)))
        return {}
    head = {
        "machine": machine_info(),
        "accelerator": gpu_info(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")}
        | {"command": "python benchmarks/crossed_scaling.py " + " ".join(argv or sys.argv[1:])},
    }

    def save(partial: dict) -> tuple:
        results = head | partial | {"load_average_end": load_average()}
        return results, write_results(args.out, results, render_markdown(results))

    results, paths = save(run_all(args, save))
    md = render_markdown(results)
    print(md)
    print("wrote", *paths)
    return results


if __name__ == "__main__":
    main()
