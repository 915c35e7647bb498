"""benchmarks/heldout.py end to end on a tiny simulated counts file (tiny sampler settings).

Checks the structure of its JSON and markdown and that every metric lies in its
range; the numbers themselves are benchmark results, not test expectations.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bayes_regimes import simulate_benchmark

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import heldout as bench  # noqa: E402

BASELINE_NAMES = {
    "no_extrapolation",
    "unbiased_estimator",
    "beta_binomial_mle",
    "power_law",
    "bayes_at_n",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("heldout")
    sim = simulate_benchmark(
        groups={"a": dict(pi=0.3, mu=0.05, kappa=1.0), "b": dict(pi=0.1, mu=0.2, kappa=2.0)},
        n_problems=30,
        n=300,
        random_seed=0,
    )
    data = folder / "counts.csv"
    sim.counts.rename(columns={"group": "model"}).to_csv(data, index=False)
    out = folder / "heldout.json"
    argv = [
        "--data", str(data), "--m", "10", "--seed", "1", "--out", str(out),
        "--ks", "20", "300", "1000", "--variants", "zi_beta", "plain_beta",
        "--draws", "100", "--tune", "100", "--sampler", "pymc", "--n-draws", "40",
    ]  # fmt: skip
    results = bench.main(argv)  # diagnostics are recorded, not warned about
    return results, out


def test_json_is_keyed_by_method(run):
    results, out = run
    saved = json.loads(out.read_text())
    names = {"bayes_regimes[zi_beta]", "bayes_regimes[plain_beta]"} | BASELINE_NAMES
    assert set(saved) == names | {"_meta"}
    assert set(results) == set(saved)
    meta = saved["_meta"]
    assert meta["settings"]["m"] == 10 and meta["settings"]["ks"] == [20, 300, 1000]
    assert {row["model"] for row in meta["loo"]} == {
        "bayes_regimes[zi_beta]",
        "bayes_regimes[plain_beta]",
    }
    md = out.with_suffix(".md").read_text()
    assert all(name in md for name in names) and "truth" in md


def _in(value, lo, hi):
    """In [lo, hi]; None (NaN in the JSON) is a metric the method does not have."""
    return value is None or (lo - 1e-12 <= value <= hi + 1e-12)


def test_metrics_lie_in_their_ranges(run):
    _, out = run
    results = json.loads(out.read_text())
    for name, entry in results.items():
        if name == "_meta":
            continue
        s = entry["summary"]
        for key in ("auroc_pooled", "auroc_within_model", "brier", "ece", "frac_mae"):
            assert _in(s[key], 0, 1), (name, key, s[key])
        for key in ("frac_coverage", "coverage_89", "pass@20_mae", "pass@300_mae"):
            assert _in(s[key], 0, 1), (name, key, s[key])
        # k = 1000 exceeds every n = 300: no realised truth, so no error is claimed.
        assert s["pass@1000_mae"] is None
        groups = {row["group"] for row in entry["per_model"]}
        assert groups == {"a", "b", "pooled"}
    for name in ("bayes_regimes[zi_beta]", "bayes_regimes[plain_beta]"):
        entry = results[name]
        (diag,) = entry["diagnostics"]
        assert diag["ok"] in (True, False) and diag["max_rhat"] >= 1
        assert entry["summary"]["fit_ok"] == diag["ok"]
        assert results[name]["summary"]["auroc_within_model"] == pytest.approx(0.5)
    assert results["unbiased_estimator"]["summary"]["brier"] is None
    assert results["no_extrapolation"]["summary"]["brier"] == pytest.approx(
        results["no_extrapolation"]["per_model"][-1]["frac_true"]
    )
