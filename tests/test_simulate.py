"""Fast tests of the simulated benchmarks (bayes_regimes.simulate)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_regimes.simulate import (
    DEFAULT_GROUPS,
    SimulatedBenchmark,
    default_benchmark,
    simulate_benchmark,
)

GROUPS = {
    "a": {"pi": 0.1, "mu": 0.5, "kappa": 3.0},
    "b": {"pi": 0.6, "mu": 0.2, "kappa": 1.0},
}


# ---------------------------------------------------------------------------
# reproducibility
# ---------------------------------------------------------------------------
def test_same_seed_same_benchmark():
    one = simulate_benchmark(n_problems=100, n=12, random_seed=7)
    two = simulate_benchmark(n_problems=100, n=12, random_seed=7)
    pd.testing.assert_frame_equal(one.counts, two.counts)
    pd.testing.assert_frame_equal(one.truth, two.truth)
    assert one.params == two.params
    pd.testing.assert_frame_equal(one.rollouts(), two.rollouts())
    pd.testing.assert_frame_equal(one.heldout(20), two.heldout(20))


def test_different_seed_different_benchmark():
    one = simulate_benchmark(n_problems=200, random_seed=1)
    two = simulate_benchmark(n_problems=200, random_seed=2)
    assert not np.array_equal(one.truth["p"], two.truth["p"])


def test_default_seed_is_zero():
    pd.testing.assert_frame_equal(
        simulate_benchmark(n_problems=30).counts,
        simulate_benchmark(n_problems=30, random_seed=0).counts,
    )


def test_extras_do_not_change_counts_and_are_independent():
    bench = simulate_benchmark(n_problems=300, n=5, random_seed=3)
    before = bench.counts.copy()
    bench.rollouts()
    bench.heldout(5)
    pd.testing.assert_frame_equal(bench.counts, before)
    # held-out draws come from a different stream than the observed counts
    assert not np.array_equal(bench.heldout(5)["k"], bench.counts["k"])


def test_heldout_seed_override():
    bench = simulate_benchmark(n_problems=300, n=5, random_seed=3)
    a = bench.heldout(10, random_seed=11)
    b = bench.heldout(10, random_seed=11)
    c = bench.heldout(10, random_seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a["k"], c["k"])


# ---------------------------------------------------------------------------
# shapes and columns
# ---------------------------------------------------------------------------
def test_shapes_without_groups():
    bench = simulate_benchmark(n_problems=50, n=8, random_seed=0)
    assert isinstance(bench, SimulatedBenchmark)
    assert list(bench.counts.columns) == ["problem_id", "n", "k"]
    assert list(bench.truth.columns) == ["problem_id", "group", "p", "structural"]
    assert len(bench.counts) == len(bench.truth) == 50
    assert bench.counts["problem_id"].tolist() == [f"p{i:04d}" for i in range(50)]
    assert (bench.truth["problem_id"].to_numpy() == bench.counts["problem_id"].to_numpy()).all()
    assert set(bench.truth["group"]) == {"all"}
    assert bench.params == {"all": {"pi": 0.3, "mu": 0.2, "kappa": 2.0}}
    assert bench.counts["n"].dtype == np.int64
    assert bench.counts["k"].dtype == np.int64
    assert bench.truth["p"].dtype == np.float64
    assert bench.truth["structural"].dtype == bool
    assert (bench.counts["n"] == 8).all()
    assert not bench.has_group
    assert "50 problems" in repr(bench)


def test_shapes_with_groups():
    bench = simulate_benchmark(n_problems=40, n=6, groups=GROUPS, random_seed=0)
    assert list(bench.counts.columns) == ["problem_id", "group", "n", "k"]
    assert len(bench.counts) == 80
    assert bench.counts["group"].tolist() == ["a"] * 40 + ["b"] * 40
    assert bench.truth["group"].tolist() == bench.counts["group"].tolist()
    assert bench.counts["problem_id"].is_unique
    assert bench.params == GROUPS
    assert bench.has_group


def test_group_spec_falls_back_to_arguments():
    bench = simulate_benchmark(
        n_problems=10, mu=0.4, kappa=5.0, groups={"x": {"pi": 0.0}}, random_seed=0
    )
    assert bench.params == {"x": {"pi": 0.0, "mu": 0.4, "kappa": 5.0}}
    assert not bench.truth["structural"].any()


def test_params_are_a_copy():
    spec = {"g": {"pi": 0.2, "mu": 0.3, "kappa": 2.0}}
    bench = simulate_benchmark(n_problems=5, groups=spec)
    spec["g"]["pi"] = 0.9
    assert bench.params["g"]["pi"] == 0.2


def test_ids_widen_for_many_problems():
    bench = simulate_benchmark(n_problems=10_001, n=1, random_seed=0)
    assert bench.counts["problem_id"].iloc[0] == "p00000"
    assert bench.counts["problem_id"].iloc[-1] == "p10000"


def test_per_problem_n():
    n = np.arange(1, 21)
    bench = simulate_benchmark(n_problems=20, n=n, random_seed=0)
    np.testing.assert_array_equal(bench.counts["n"], n)
    assert (bench.counts["k"] <= bench.counts["n"]).all()


def test_per_problem_n_with_groups():
    n = [3, 4, 5]
    reused = simulate_benchmark(n_problems=3, n=n, groups=GROUPS, random_seed=0)
    assert reused.counts["n"].tolist() == [3, 4, 5, 3, 4, 5]
    full = simulate_benchmark(n_problems=3, n=[1, 2, 3, 4, 5, 6], groups=GROUPS, random_seed=0)
    assert full.counts["n"].tolist() == [1, 2, 3, 4, 5, 6]


def test_integral_float_n_is_accepted():
    bench = simulate_benchmark(n_problems=3, n=np.array([2.0, 3.0, 4.0]), random_seed=0)
    assert bench.counts["n"].tolist() == [2, 3, 4]
    assert bench.counts["n"].dtype == np.int64


# ---------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------
def test_structural_problems_have_zero_p_and_k():
    bench = simulate_benchmark(n_problems=2000, n=50, pi=0.4, random_seed=0)
    struct = bench.truth["structural"].to_numpy()
    assert struct.any()
    assert (bench.truth["p"].to_numpy()[struct] == 0).all()
    assert (bench.counts["k"].to_numpy()[struct] == 0).all()
    assert (bench.heldout(1000)["k"].to_numpy()[struct] == 0).all()


def test_k_within_bounds_and_p_in_unit_interval():
    bench = simulate_benchmark(n_problems=1000, n=10, groups=GROUPS, random_seed=5)
    k, n = bench.counts["k"], bench.counts["n"]
    assert ((k >= 0) & (k <= n)).all()
    p = bench.truth["p"]
    assert ((p >= 0) & (p <= 1)).all()


def test_structural_fraction_matches_pi():
    pi = 0.3
    bench = simulate_benchmark(n_problems=20_000, pi=pi, random_seed=0)
    frac = bench.truth["structural"].mean()
    # 5 standard errors
    assert abs(frac - pi) < 5 * np.sqrt(pi * (1 - pi) / 20_000)


@pytest.mark.parametrize(("mu", "kappa"), [(0.2, 2.0), (0.6, 10.0), (0.05, 0.5)])
def test_slab_mean_matches_mu(mu, kappa):
    size = 20_000
    bench = simulate_benchmark(n_problems=size, pi=0.3, mu=mu, kappa=kappa, random_seed=1)
    p = bench.truth.loc[~bench.truth["structural"], "p"].to_numpy()
    # Beta(mu kappa, (1-mu) kappa) has variance mu (1-mu) / (kappa + 1)
    se = np.sqrt(mu * (1 - mu) / (kappa + 1) / p.size)
    assert abs(p.mean() - mu) < 5 * se
    expected_var = mu * (1 - mu) / (kappa + 1)
    assert p.var() == pytest.approx(expected_var, rel=0.1)


def test_groups_use_their_own_parameters():
    bench = simulate_benchmark(n_problems=10_000, n=10, groups=GROUPS, random_seed=2)
    truth = bench.truth
    for name, spec in GROUPS.items():
        rows = truth[truth["group"] == name]
        assert rows["structural"].mean() == pytest.approx(spec["pi"], abs=0.03)
        slab = rows.loc[~rows["structural"], "p"]
        assert slab.mean() == pytest.approx(spec["mu"], abs=0.02)


def test_k_mean_matches_binomial():
    bench = simulate_benchmark(n_problems=20_000, n=10, pi=0.0, mu=0.4, kappa=4.0, random_seed=4)
    # E[k | p] = n p; check the sample mean of k / n against the sample mean of p
    ratio = (bench.counts["k"] / bench.counts["n"]).mean()
    assert ratio == pytest.approx(bench.truth["p"].mean(), abs=0.01)


def test_heldout_matches_true_p():
    bench = simulate_benchmark(n_problems=5000, n=4, random_seed=6)
    more = bench.heldout(200)
    assert list(more.columns) == list(bench.counts.columns)
    assert (more["n"] == 200).all()
    assert more["k"].dtype == np.int64
    np.testing.assert_array_equal(more["problem_id"], bench.counts["problem_id"])
    ratio = more["k"].to_numpy() / 200
    assert np.abs(ratio - bench.truth["p"].to_numpy()).mean() < 0.05


def test_heldout_with_groups_keeps_group_column():
    bench = simulate_benchmark(n_problems=10, groups=GROUPS, random_seed=0)
    more = bench.heldout(3)
    assert list(more.columns) == ["problem_id", "group", "n", "k"]
    assert more["group"].tolist() == bench.counts["group"].tolist()


# ---------------------------------------------------------------------------
# per-rollout view
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("groups", [None, GROUPS])
def test_rollouts_aggregate_back_to_counts(groups):
    n = np.random.default_rng(0).integers(1, 12, size=60)
    bench = simulate_benchmark(n_problems=60, n=n, groups=groups, random_seed=9)
    rows = bench.rollouts()
    keys = ["problem_id", "group"] if groups else ["problem_id"]
    assert list(rows.columns) == [*keys, "sample", "correct"]
    assert rows["correct"].dtype == bool
    assert rows["sample"].dtype == np.int64
    assert len(rows) == bench.counts["n"].sum()
    agg = (
        rows.groupby(keys, sort=False)
        .agg(n=("correct", "size"), k=("correct", "sum"))
        .reset_index()
    )
    agg["n"] = agg["n"].astype(np.int64)
    agg["k"] = agg["k"].astype(np.int64)
    pd.testing.assert_frame_equal(agg, bench.counts, check_dtype=False)
    # samples are numbered 0..n-1 within each problem
    for _, block in rows.groupby("problem_id", sort=False):
        assert block["sample"].tolist() == list(range(len(block)))


def test_rollouts_shuffle_correct_positions():
    bench = simulate_benchmark(n_problems=500, n=10, pi=0.0, mu=0.5, kappa=5.0, random_seed=0)
    rows = bench.rollouts()
    # correct rollouts are not always the first k samples
    first_k = rows["sample"] < np.repeat(bench.counts["k"].to_numpy(), bench.counts["n"])
    assert not (first_k == rows["correct"]).all()


# ---------------------------------------------------------------------------
# the default benchmark
# ---------------------------------------------------------------------------
def test_default_benchmark():
    bench = default_benchmark()
    assert bench.counts.shape == (800, 4)
    assert list(bench.params) == ["sft", "grpo"]
    assert bench.params == {name: dict(spec) for name, spec in DEFAULT_GROUPS.items()}
    assert (bench.counts["n"] == 16).all()
    assert bench.random_seed == 0
    assert (bench.counts.groupby("group", sort=False).size() == 400).all()
    pd.testing.assert_frame_equal(bench.counts, default_benchmark().counts)


def test_default_groups_are_read_only():
    with pytest.raises(TypeError):
        DEFAULT_GROUPS["sft"] = {"pi": 0.0}  # type: ignore[index]


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_problems": 0}, "n_problems must be a positive integer"),
        ({"n_problems": 2.5}, "n_problems must be a positive integer"),
        ({"n_problems": True}, "n_problems must be a positive integer"),
        ({"n": 0}, "n must be a positive integer"),
        ({"n": "10"}, "n must be a positive integer"),
        ({"n": [1.5, 2.0, 3.0], "n_problems": 3}, "n must contain integers"),
        ({"n": [1, 0, 3], "n_problems": 3}, r"n must be >= 1 for every problem; n\[1\] = 0"),
        ({"n": [1, 2], "n_problems": 3}, "n has 2 entries but there are 3 problems"),
        ({"n": [[1, 2]], "n_problems": 2}, "1-d array"),
        ({"pi": -0.1}, r"pi must lie in \[0, 1\]"),
        ({"pi": 1.5}, r"pi must lie in \[0, 1\]"),
        ({"mu": 0.0}, "mu must lie strictly between 0 and 1"),
        ({"mu": 1.0}, "mu must lie strictly between 0 and 1"),
        ({"kappa": 0.0}, "kappa must be positive"),
        ({"kappa": float("nan")}, "kappa must be finite"),
        ({"mu": "0.2"}, "mu must be a real number"),
        ({"random_seed": -1}, "random_seed must be a non-negative integer"),
        ({"random_seed": 1.5}, "random_seed must be a non-negative integer"),
        ({"groups": {}}, "groups must be a non-empty dict"),
        ({"groups": [("a", {})]}, "groups must be a non-empty dict"),
        ({"groups": {"": {}}}, "group names must be non-empty strings"),
        ({"groups": {"a": 0.3}}, r"groups\['a'\] must be a dict"),
        ({"groups": {"a": {"sigma": 1.0}}}, r"groups\['a'\] has unknown keys \['sigma'\]"),
        ({"groups": {"a": {"mu": 2.0}}}, r"groups\['a'\]: mu must lie strictly between 0 and 1"),
        (
            {"groups": {"a": {}, "b": {}}, "n": [1, 2, 3], "n_problems": 2},
            r"n has 3 entries but there are 2 \(per group\) or 4 \(all groups\) problems",
        ),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate_benchmark(**kwargs)


@pytest.mark.parametrize("m_more", [0, -3, 2.0, None])
def test_heldout_bad_m_more(m_more):
    bench = simulate_benchmark(n_problems=5)
    with pytest.raises(ValueError, match="m_more must be a positive integer"):
        bench.heldout(m_more)


def test_bad_seed_in_extras():
    bench = simulate_benchmark(n_problems=5)
    with pytest.raises(ValueError, match="random_seed must be a non-negative integer"):
        bench.rollouts(random_seed=-2)
    with pytest.raises(ValueError, match="random_seed must be a non-negative integer"):
        bench.heldout(3, random_seed="x")


def test_benchmark_is_frozen():
    bench = simulate_benchmark(n_problems=5)
    with pytest.raises(AttributeError):
        bench.counts = bench.counts  # type: ignore[misc]


def test_unseeded_runs_work():
    bench = simulate_benchmark(n_problems=20, random_seed=None)
    assert bench.random_seed is None
    assert len(bench.rollouts()) == bench.counts["n"].sum()
    assert len(bench.heldout(2)) == 20
