"""Smoke test of benchmarks/scale.py at toy size: structure of its output, not timings.

Each model is compiled once (module-scoped fixtures); the fast tests take about
30 s on an idle 2-core machine. The backend worker (a third fit) and the
fresh-subprocess backend runs are marked slow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import scale  # noqa: E402

MCMC = dict(draws=60, tune=60, chains=2, seed=0)


@pytest.fixture(scope="module")
def scale_result():
    return scale.scale_fits([200], n=10, repeats=1, warmup=False, **MCMC)


@pytest.fixture(scope="module")
def naive_result():
    return scale.ess_comparison(200, n=10, variants=("plain",), **MCMC)


@pytest.mark.slow  # fits a model: `make test-slow`
def test_scale_fits_structure(scale_result):
    out, model = scale_result
    assert model.data.n_cells == 200
    (row,) = out["sizes"]
    assert row["problems"] == 200
    # n = 10: at most n + 1 patterns, whatever the number of problems.
    assert 1 <= row["patterns"] <= 11
    assert row["patterns"] == model.data.patterns().n_patterns
    for key in ("fit_s", "data_s", "compile_s", "sampling_s", "assemble_s", "build_s"):
        assert row[key] >= 0
    # The stages are parts of the fit.
    assert row["sampling_s"] + row["assemble_s"] + row["build_s"] <= row["fit_s"]
    assert row["max_r_hat"] >= 1.0 and row["divergences"] >= 0
    assert isinstance(row["diagnostic_problems"], list)
    assert row["ok"] == (not row["diagnostic_problems"])
    assert out["ratio_fit"] == pytest.approx(1.0)
    assert out["pass"] == (out["ratio_fit"] <= scale.RATIO_LIMIT and out["rhat_ok"])


@pytest.mark.slow  # fits a model: `make test-slow`
def test_query_times_structure(scale_result):
    _, model = scale_result
    out = scale.query_times(model, m=5, ks=(1, 50), budget=100, repeats=2)
    assert out["cells"] == 200 and out["repeats"] == 2
    q = out["queries"]
    assert set(q) == {
        "regimes()",
        "expected_gain(5)",
        "pass_at_k([1, 50])",
        "allocate(100)",
        "coverage_ceiling()",
    }
    # Per-cell queries have one row per cell; pass@k one per (group, k, kind).
    assert q["regimes()"]["rows"] == q["expected_gain(5)"]["rows"] == q["allocate(100)"]["rows"]
    assert q["regimes()"]["rows"] == 200
    assert q["pass_at_k([1, 50])"]["rows"] == 2 * 3
    assert out["max_s"] == max(v["seconds"] for v in q.values())
    for v in q.values():
        assert 0 <= v["seconds"] <= v["median_seconds"] and v["cpu_seconds"] >= 0


def test_unique_pairs_matches_numpy_unique_on_axis():
    """The int64-key pairing that expected_gain / allocate use (10x faster at 10^6
    cells) gives exactly np.unique(..., axis=1)."""
    from bayes_regimes.queries import unique_pairs

    rng = np.random.default_rng(0)
    for size in (1, 2, 17, 500):
        a = rng.integers(-3, 40, size)
        b = rng.integers(0, 5, size) * rng.choice([1, 10**12])
        pairs, inverse = unique_pairs(a, b)
        ref_pairs, ref_inverse = np.unique(np.stack([a, b]), axis=1, return_inverse=True)
        np.testing.assert_array_equal(pairs, ref_pairs)
        np.testing.assert_array_equal(inverse, ref_inverse.ravel())
        np.testing.assert_array_equal(pairs[:, inverse], np.stack([a, b]))
    pairs, inverse = unique_pairs(np.array([], int), np.array([], int))
    assert pairs.shape == (2, 0) and inverse.shape == (0,)


def test_naive_model_terms_match_scipy():
    """One latent p_i per problem, RegimeModel's hyper-priors, binomial likelihood."""
    from scipy.special import logit
    from scipy.stats import beta, binom, norm

    from bayes_regimes.models.regime import DEFAULT_PRIORS

    n, k = np.array([10, 10, 7]), np.array([0, 3, 7])
    model = scale.naive_model(n, k)
    assert [rv.name for rv in model.free_RVs] == ["logit_mu", "log_kappa", "p"]
    p = np.array([0.05, 0.4, 0.9])
    point = {"logit_mu": 0.3, "log_kappa": 0.5, "p_logodds__": logit(p)}
    logps = model.point_logps(point, round_vals=12)
    mu, kappa = 1 / (1 + np.exp(-0.3)), np.exp(0.5)
    expected = {
        "logit_mu": norm.logpdf(0.3, *DEFAULT_PRIORS["logit_mu"]),
        "log_kappa": norm.logpdf(0.5, *DEFAULT_PRIORS["log_kappa"]),
        # Beta density of p plus the log-odds Jacobian log(p (1 - p)).
        "p": np.sum(beta.logpdf(p, mu * kappa, (1 - mu) * kappa) + np.log(p * (1 - p))),
        "k": np.sum(binom.logpmf(k, n, p)),
    }
    for name, value in expected.items():
        assert logps[name] == pytest.approx(value, rel=1e-6), name


@pytest.mark.slow  # fits a model: `make test-slow`
def test_ess_comparison_structure(naive_result):
    methods = {m["method"]: m for m in naive_result["methods"]}
    assert set(methods) == {"naive (latent p_i)", "RegimeModel plain"}
    for m in methods.values():
        assert m["min_ess_bulk"] > 0 and m["fit_s"] > 0
        assert m["ess_per_s_wall"] == pytest.approx(m["min_ess_bulk"] / m["fit_s"])
    ratio = naive_result["ratio_vs_naive"]["plain"]["wall"]
    naive, plain = methods["naive (latent p_i)"], methods["RegimeModel plain"]
    assert ratio == pytest.approx(plain["ess_per_s_wall"] / naive["ess_per_s_wall"])


@pytest.mark.slow
def test_backend_worker_body():
    spec = dict(problems=150, n=10, sampler="nutpie") | MCMC
    run = scale.worker_main(spec)
    assert run["sampler"] == "nutpie" and run["problems"] == 150
    assert run["peak_rss_mb"] >= run["rss_data_mb"] >= run["rss_imports_mb"] > 0
    assert run["fit_rss_mb"] == pytest.approx(run["peak_rss_mb"] - run["rss_data_mb"])


def test_run_worker_reads_the_marked_json_line():
    code = (
        f"import sys; sys.path.insert(0, {str(BENCH)!r}); import _common; print('noise'); "
        "_common.emit_result({'peak': _common.peak_rss_mb(), 'x': [1, 2]})"
    )
    ballast = np.ones(40_000_000)  # 305 MiB resident in this process
    out = _common.run_worker(["-c", code])
    assert out["x"] == [1, 2]
    # The worker reports its own peak, not this process's (which ru_maxrss inherits).
    assert _common.peak_rss_mb() > ballast.nbytes / 2**20 > 2 * out["peak"]
    with pytest.raises(RuntimeError, match="failed"):
        _common.run_worker(["-c", "raise SystemExit(3)"])


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nutpie", "numpyro"])
def test_backend_runs_in_fresh_subprocess(sampler):
    out = scale.backend_runs([150], [sampler], n=10, **MCMC)
    (run,) = out["runs"]
    assert run["sampler"] == sampler and run["problems"] == 150
    assert run["peak_rss_mb"] >= run["rss_data_mb"] > 0


@pytest.mark.slow  # fits a model: `make test-slow`
def test_report_writes_json_and_markdown(tmp_path, scale_result, naive_result):
    out, model = scale_result
    results = {
        "machine": _common.machine_info() | {"accelerator": "none", "load_average_end": None},
        "settings": {"draws": 60, "tune": 60, "chains": 2, "seed": 0, "repeats": 1}
        | {"command": "python benchmarks/scale.py --quick"},
        "scale": out,
        "naive_vs_collapsed": naive_result,
        "queries": {"n fixed": scale.query_times(model, m=5, ks=(1,), budget=10)},
    }
    md = scale.render_markdown(results)
    for heading in ("## 1.", "## 2.", "## 3."):
        assert heading in md
    assert "## 4." not in md
    json_path, md_path = _common.write_results(tmp_path / "scale", results, md)
    loaded = json.loads(json_path.read_text())
    assert set(loaded) == set(results)
    assert loaded["scale"]["sizes"][0]["problems"] == 200
    assert md_path.read_text().startswith("# Speed and scale")
    # --render re-writes the markdown of a saved result without running anything.
    md_path.unlink()
    assert set(scale.main(["--render", str(json_path)])) == set(results)
    assert md_path.read_text() == md


def test_simulate_counts_varied_n():
    counts = scale.simulate_counts(300, n=scale.VARIED_N, seed=3)
    assert len(counts) == 300
    assert set(counts["n"].unique()) <= set(scale.VARIED_N)
    assert (counts["k"] <= counts["n"]).all()


def test_common_helpers():
    assert _common.fmt(None) == "-" and _common.fmt(float("nan")) == "-"
    assert _common.to_jsonable({"a": np.float64("nan"), "b": np.arange(2)}) == {
        "a": None,
        "b": [0, 1],
    }
    table = _common.markdown_table([{"x": 1.23456}], {"x": "X"})
    assert table.splitlines() == ["| X |", "|---|", "| 1.23 |"]
