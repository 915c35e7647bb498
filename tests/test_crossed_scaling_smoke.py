"""Smoke test of benchmarks/crossed_scaling.py (structure of its output, not timings),
and of the pieces of the variational fit it relies on.

The run of the script at toy size starts one subprocess per (method, size) and is
marked slow (a few minutes on a busy 2-core machine); the rest is fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import crossed_scaling  # noqa: E402

from bayes_regimes.models.crossed_vi import draw_gaussian, elbo_rel_change  # noqa: E402


def test_draw_gaussian_full_rank_density_matches_scipy():
    rng = np.random.default_rng(1)
    chol = np.array([[1.5, 0.0, 0.0], [0.4, 0.7, 0.0], [-0.3, 0.2, 2.0]])
    mean = np.array([0.5, -1.0, 2.0])
    x, logq = draw_gaussian(mean, chol, 4000, rng)
    np.testing.assert_allclose(logq, multivariate_normal(mean, chol @ chol.T).logpdf(x))
    # The draws have the right moments (Monte Carlo, 4,000 draws).
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=0.15)
    np.testing.assert_allclose(np.cov(x.T), chol @ chol.T, atol=0.3)


def test_elbo_rel_change_needs_twenty_steps_and_is_scale_free():
    assert np.isnan(elbo_rel_change(np.ones(19)))
    loss = np.linspace(300.0, 100.0, 200)
    assert elbo_rel_change(10 * loss) == pytest.approx(elbo_rel_change(loss))
    assert elbo_rel_change(loss[::-1]) < 0  # a rising loss is not convergence


def _results(runs, grads):
    machine = {"cpu": "x", "cpu_count": 2, "load_average_start": [1.0, 1.0, 1.0]}
    settings = {"models": 3, "seed": 0, "chains": 2, "tune": 20, "draws": 20}
    settings |= {"vi_steps": 300, "vi_draws": 20, "max_minutes": 1.0, "command": "c"}
    return {
        "machine": machine,
        "accelerator": "none (CPU only)",
        "settings": settings,
        "gradients": grads,
        "runs": runs,
        "load_average_end": None,
    }


def test_extrapolation_scales_by_gradient_cost_and_is_labelled():
    grads = {100: {"gradient_s": 0.01}, 1000: {"gradient_s": 0.25}}
    measured = {"problems": 100, "fit_s": 30.0}
    assert crossed_scaling._extrapolate(measured, grads, 1000) == pytest.approx(30.0 * 25)
    assert crossed_scaling._extrapolate(None, grads, 1000) is None
    # Without a gradient timing: linear in the number of problems.
    assert crossed_scaling._extrapolate(measured, {}, 400) == pytest.approx(120.0)
    runs = [
        {"method": "nutpie", "problems": 100, "cells": 300, "status": "measured", "fit_s": 30.0}
        | {"max_r_hat": 1.004, "min_ess_bulk": 500.0, "divergences": 0, "ok": True},
        {"method": "nutpie", "problems": 1000, "cells": 3000, "status": "skipped"}
        | {"extrapolated_fit_s": 750.0, "note": "extrapolated from 100 problems"},
        {"method": "advi", "problems": 100, "cells": 300, "status": "measured", "fit_s": 5.0}
        | {"pareto_k": 1.3, "stopped_by": "converged", "steps_run": 2500, "ok": False},
        {"method": "advi", "problems": 1000, "cells": 3000, "status": "measured", "fit_s": 9.0}
        | {"pareto_k": None, "stopped_by": "max_seconds", "steps_run": 40, "ok": False},
        {"method": "numpyro", "problems": 100, "status": "timed out", "fit_s": None}
        | {"note": "killed at the 60 s cap"},
    ]
    md = crossed_scaling.render_markdown(_results(runs, list(grads.values())))
    assert "not run; extrapolated >= 750 s" in md
    assert "k=1.30, converged after 2500 steps" in md
    assert "k not computed, max_seconds after 40 steps" in md
    assert "R-hat 1.004" in md and "timed out" in md
    assert "no GPU numbers" in md


def test_load_note_judges_the_load_before_each_run_not_after():
    # A 2-chain fit on 2 cores leaves a load near 2 after it: that is the run itself.
    run = {"problems": 100, "method": "nutpie", "load_average": [2.0, 1.5, 1.0]}
    idle = _results([run | {"load_average_start": [0.3, 0.2, 0.1]}], {})
    idle["machine"]["load_average_start"] = [0.2, 0.2, 0.2]
    assert "no other heavy job" in crossed_scaling._load_note(idle)
    busy = _results([run | {"load_average_start": [1.8, 1.2, 1.0]}], {})
    busy["machine"]["load_average_start"] = [0.2, 0.2, 0.2]
    assert "other jobs shared" in crossed_scaling._load_note(busy)


@pytest.mark.slow  # one subprocess per (method, size): minutes on a busy machine
def test_script_runs_at_toy_size(tmp_path):
    out = tmp_path / "scaling"
    argv = ["--sizes", "20", "40", "--models", "3", "--draws", "20", "--tune", "20"]
    argv += ["--vi-steps", "300", "--n-khat", "20", "--max-minutes", "5", "--out", str(out)]
    results = crossed_scaling.main(argv)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert set(saved) == set(results)
    assert [g["problems"] for g in saved["gradients"]] == [20, 40]
    assert all(g["gradient_s"] > 0 and g["cells"] == 3 * g["problems"] for g in saved["gradients"])
    runs = {(r["method"], r["problems"]): r for r in saved["runs"]}
    assert set(runs) == {(m, p) for m in crossed_scaling.METHODS for p in (20, 40)}
    for (method, _), run in runs.items():
        assert run["status"] == "measured", run
        assert run["fit_s"] > 0 and run["peak_rss_mb"] > 0
        assert -1 <= run["difficulty_corr"] <= 1
        if method == "advi":
            assert run["stopped_by"] in ("converged", "n_steps", "max_seconds")
            assert run["steps_run"] <= 300
        else:
            assert run["max_r_hat"] >= 1 and run["leapfrog_steps"] > 0
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Crossed model: fit time against the number of problems")


@pytest.mark.slow  # compiles the model with JAX (a minute on a busy 2-core machine)
def test_jax_gradients_script_times_the_gradient_and_writes_a_table(tmp_path):
    pytest.importorskip("jax")
    import jax_gradients

    jax_gradients.main(
        ["--sizes", "8", "--models", "2", "--repeats", "2"] + ["--out", str(tmp_path / "jg")]
    )
    results = json.loads((tmp_path / "jg.json").read_text())
    (row,) = results["rows"]
    assert row["cells"] == 16 and row["parameters"] > 8
    assert row["one_chain_gradient_s"] > 0 and row["2_chains_gradient_s"] > 0
    assert "| 8 | 16 |" in (tmp_path / "jg.md").read_text()
