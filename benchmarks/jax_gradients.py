"""Cost of one log-density gradient of the crossed model under JAX (GPU when present).

The numpyro backend spends one such evaluation per leapfrog step, so with the fit time
measured at one size (``benchmarks/crossed_scaling.py --methods numpyro``), the
gradient cost at other sizes says how the fit time grows. Times are the median of
``--repeats`` jitted evaluations after compilation, for one chain and for
``--chains`` chains batched with ``jax.vmap`` (numpyro's ``chain_method="vectorized"``,
what a single GPU runs).

Run (on the GPU machine, then render the table here with ``--render``)::

    XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/jax_gradients.py \\
        --sizes 1000 10000 100000 --out jax_gradients_gpu

Writes ``benchmarks/results/<out>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_info, markdown_table, write_results  # noqa: E402


def gradient_cost(problems: int, models: int, chains: int, repeats: int) -> dict:
    """Compile and time log density + gradient of the default crossed model at one size."""
    import jax
    from pymc.sampling.jax import get_jaxified_logp

    from bayes_regimes import RegimeModel, RolloutData
    from bayes_regimes.models.crossed_tools import simulate_crossed

    sim = simulate_crossed(n_problems=problems, n_models=models, n=10, random_seed=0)
    model = RegimeModel(RolloutData.from_counts(sim.counts, group="model"), pooling="crossed")
    pm_model = model.build_model()
    logp = get_jaxified_logp(pm_model, negative_logp=False)
    point = pm_model.initial_point()
    values = [np.asarray(point[v.name]) for v in pm_model.value_vars]
    batched = [np.repeat(v[None], chains, axis=0) for v in values]
    one = jax.jit(jax.value_and_grad(logp))
    many = jax.jit(jax.vmap(jax.value_and_grad(logp)))
    out = {"problems": problems, "cells": problems * models, "device": str(jax.devices()[0])}
    out["parameters"] = int(sum(v.size for v in values))
    for name, fn, arg in (("one_chain", one, values), (f"{chains}_chains", many, batched)):
        start = time.perf_counter()
        jax.block_until_ready(fn(arg))
        out[f"{name}_compile_s"] = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            tick = time.perf_counter()
            jax.block_until_ready(fn(arg))
            times.append(time.perf_counter() - tick)
        out[f"{name}_gradient_s"] = float(np.median(times))
    out["load_average"] = load_average()
    return out


def render_markdown(results: dict) -> str:
    chains = results["settings"]["chains"]
    cols = {
        "problems": "problems",
        "cells": "cells",
        "parameters": "parameters",
        "device": "device",
        "one_chain_gradient_s": "1 chain (s)",
        f"{chains}_chains_gradient_s": f"{chains} chains, vmap (s)",
        "one_chain_compile_s": "compile (s)",
    }
    mach = results["machine"]
    return "\n".join(
        [
            "# Crossed model: one log density + gradient under JAX",
            "",
            f"Suite: {results['settings']['models']} models x P problems x 10 samples "
            f"(simulate_crossed, seed 0), default crossed model. Machine: {mach.get('cpu')}, "
            f"{mach.get('cpu_count')} cores; accelerator: {results['accelerator']}. "
            f"Command: `{results['settings']['command']}`",
            "",
            markdown_table(results["rows"], cols),
        ]
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="jax_gradients")
    parser.add_argument("--render", help="re-render the markdown of a saved results JSON")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        write_results(Path(args.render).with_suffix(""), results, render_markdown(results))
        return
    from _common import gpu_info

    results = {
        "machine": machine_info(("pymc", "pytensor", "jax", "jaxlib", "numpyro")),
        "accelerator": gpu_info(),
        "settings": {k: v for k, v in vars(args).items() if k != "render"}
        | {"command": "python benchmarks/jax_gradients.py " + " ".join(argv or sys.argv[1:])},
        "rows": [],
    }
    for size in args.sizes:
        results["rows"].append(gradient_cost(size, args.models, args.chains, args.repeats))
        print(json.dumps(results["rows"][-1]), flush=True)
        write_results(args.out, results, render_markdown(results))  # partial results survive
    print(render_markdown(results))


if __name__ == "__main__":
    main()
