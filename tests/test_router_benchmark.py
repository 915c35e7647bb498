"""Tests of the scoring code behind benchmarks/router.py (no model fits).

The router benchmark's fits belong in benchmarks/; what is tested here is the
arithmetic that turns predictions into the published comparisons: which intervention
each strategy picks, that the "best fixed" choice never sees the row it scores, the
paired differences and their bootstrap intervals, and the topography classifier.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import router_scoring as rs  # noqa: E402

from bayes_regimes import paper  # noqa: E402


def _table(rng: np.random.Generator, cells=("c1", "c2"), per_cell: int = 40) -> pd.DataFrame:
    """A failure table with the paper's rate and feature columns, random values."""
    n = len(cells) * per_cell
    df = pd.DataFrame({"cell": np.repeat(cells, per_cell)})
    for col in paper.RATES:
        df[col] = rng.integers(0, 4, n) / 3  # rates over 3 contexts
    for col in paper.FEATURES:
        df[col] = rng.normal(size=n)
    return df


def test_pick_ignores_retry_and_follows_cands_order():
    pred = np.array(
        [
            [0.9, 0.1, 0.2, 0.3, 0.4],  # retry largest: still an intervention is picked
            [0.0, 0.5, 0.1, 0.1, 0.1],
            [0.0, 0.1, 0.1, 0.7, 0.1],
        ]
    )
    assert rs.CANDS[0] == "retry"
    assert rs.pick(pred).tolist() == ["dense_steer", "sparse_steer", "local_temp"]


def test_loo_best_fixed_never_uses_the_scored_row():
    df = pd.DataFrame({"cell": ["a"] * 3, **{c: [0.5, 0.5, 0.5] for c in paper.RATES}})
    df["local_temp"] = [1.0, 0.0, 0.0]  # row 0 alone makes local_temp the cell's best
    df["dense_steer"] = [0.0, 0.4, 0.4]
    out = rs.loo_best_fixed(df, np.ones(3, bool))
    # Without row 0, sparse_steer (0.5) wins; rows 1 and 2 see local_temp at 0.5 too,
    # and the first maximum in INT order (sparse_steer) is taken.
    assert out[0] == "sparse_steer"
    df.loc[0, "sparse_steer"] = 0.0
    df.loc[[1, 2], "local_temp"] = [0.9, 0.9]
    out = rs.loo_best_fixed(df, np.ones(3, bool))
    assert out.tolist() == ["local_temp", "local_temp", "local_temp"]
    # Rows outside the population get no choice and do not count for the others:
    # row 2 would make dense_steer the best of the cell.
    df.loc[2, "dense_steer"] = 5.0
    out = rs.loo_best_fixed(df, np.array([True, True, False]))
    assert out.tolist() == ["local_temp", "local_temp", None]


def test_best_fixed_takes_the_largest_mean():
    df = _table(np.random.default_rng(0))
    means = df[rs.INT].mean()
    assert rs.best_fixed(df) == means.idxmax()


def test_score_rates_and_paired_differences_by_hand(monkeypatch):
    monkeypatch.setattr(rs, "B_BOOT", 500)
    df = pd.DataFrame(
        {
            "cell": ["a", "a", "b", "b"],
            "retry": [0.0, 0.0, 0.0, 0.0],
            "sparse_steer": [1.0, 0.0, 1 / 3, 0.0],
            "sparse_steer_random": [0.0, 0.0, 0.0, 0.0],
            "local_temp": [0.0, 1.0, 0.0, 2 / 3],
            "dense_steer": [0.0, 0.0, 0.0, 0.0],
        }
    )
    choices = {
        "bayes": np.array(["sparse_steer", "local_temp", "sparse_steer", "local_temp"], object),
        "best_fixed": np.full(4, "sparse_steer", object),
    }
    rates, diffs = rs.score(df, choices, np.ones(4, bool), seed=0)
    by_cell = {r["cell"]: r for r in rates}
    assert by_cell["a"]["bayes"] == pytest.approx(1.0)
    assert by_cell["a"]["best_fixed"] == pytest.approx(0.5)
    assert by_cell["pooled"]["bayes"] == pytest.approx((1 + 1 + 1 / 3 + 2 / 3) / 4)
    assert by_cell["pooled"]["best_fixed"] == pytest.approx((1 + 1 / 3) / 4)
    (pooled,) = [d for d in diffs if d["cell"] == "pooled"]
    assert pooled["router"] == "bayes" and pooled["vs"] == "best_fixed"
    assert pooled["diff"] == pytest.approx((1 + 2 / 3) / 4)
    assert pooled["low"] <= pooled["diff"] <= pooled["high"]
    # Only the rows of the population are scored.
    rates, _ = rs.score(df, choices, np.array([True, False, False, False]), seed=0)
    assert {r["cell"]: r["n"] for r in rates} == {"a": 1, "b": 0, "pooled": 1}
    assert np.isnan([r["bayes"] for r in rates if r["cell"] == "b"][0])


def test_bootstrap_interval_covers_the_truth_at_its_level(monkeypatch):
    monkeypatch.setattr(rs, "B_BOOT", 400)  # enough for the quantiles, fast
    # Paired differences with a known mean: the 89 % interval covers it about 89 % of
    # the time (binomial sd over 200 repeats ~ 0.022: a band of +- 4 sd).
    rng = np.random.default_rng(1)
    cells = np.repeat(["a", "b"], 60)
    covered = 0
    for _ in range(200):
        diff = rng.normal(0.1, 1.0, cells.size)
        _, lo, hi = rs.bootstrap(diff, cells, rng)
        covered += lo <= 0.1 <= hi
    assert abs(covered / 200 - rs.LEVEL) < 0.09


def test_evaluate_structure_and_oracle_bounds_every_strategy(monkeypatch):
    monkeypatch.setattr(rs, "B_BOOT", 200)
    rng = np.random.default_rng(2)
    df = _table(rng)
    pred = rng.random((len(df), len(rs.CANDS)))
    out = rs.evaluate(df, pred, pred, "sparse_steer", "local_temp", [], seed=0)
    assert set(out) == {"all", "steerable_hard", "fits", "choice_counts"}
    for part in ("all", "steerable_hard"):
        for row in out[part]["rates"]:
            if row["n"] == 0:
                continue
            for name in ("bayes", "paper_rule", "best_fixed", "resample"):
                assert row[name] <= row["oracle"] + 1e-12
    pooled = [r for r in out["steerable_hard"]["rates"] if r["cell"] == "pooled"][0]
    assert pooled["n"] == int(rs.steerable(df).sum())
    assert sum(out["choice_counts"].values()) == len(df)


def test_cv_accuracy_beats_majority_on_separable_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 600)
    X = rng.normal(size=(600, 3)) + 3.0 * np.eye(3)[y]
    out = rs.cv_accuracy(X, np.array(["a", "b", "c"])[y], folds=5, seed=0)
    assert out["accuracy"] > 0.9
    assert 0.28 < out["majority"] < 0.40  # about one third for balanced classes
    # Features carrying no information: no better than the majority class.
    noise = rs.cv_accuracy(rng.normal(size=(600, 3)), np.array(["a", "b"])[y % 2], 5, 0)
    assert noise["accuracy"] < noise["majority"] + 0.08


def test_stuck_chain_detection_and_retry_note():
    from router_report import _retry_note

    from bayes_regimes.diagnostics import stuck_chains

    diverging = np.zeros((3, 10), dtype=bool)
    diverging[1, :] = True  # frozen chain: every transition divergent
    diverging[2, :4] = True  # a few divergences: flagged by diagnostics, not stuck
    assert stuck_chains(diverging) == [1]
    assert _retry_note({"ok": True}) == ""
    first = {"seed": 0, "stuck_chains": [1], "max_r_hat": 2.26, "divergences": 1000}
    note = _retry_note({"retried_after": first})
    assert "seed 1000" in note and "stuck chain(s) [1]" in note and "div 1000" in note


# ------------------------------------------------------------------ part bounds
def _signal_table(rng: np.random.Generator, per_cell: int = 60) -> pd.DataFrame:
    """local_temp rescues exactly the failures with a positive first feature; the best
    fixed intervention (sparse_steer, 0.7) rescues none of those better than it does."""
    df = _table(rng, per_cell=per_cell)
    df["retry"] = 0.0
    df["sparse_steer"] = 0.7
    df["sparse_steer_random"] = 0.1
    df["dense_steer"] = 0.1
    df["local_temp"] = (df[paper.FEATURES[0]] > 0).astype(float)
    return df


def test_reference_routers_find_a_real_feature_signal(monkeypatch):
    import router_bounds as rb

    monkeypatch.setattr(rs, "B_BOOT", 200)
    out = rb.part_bounds(_signal_table(np.random.default_rng(3)), folds=5, seed=0)
    assert len(out["rows"]) == 2 * 2 * len(rb.ROUTERS)
    for row in out["rows"]:
        assert row["best_fixed"] == pytest.approx(0.7)
        if row["router"] == "knn_160":  # 160 neighbours of 59: the whole cell, so best fixed
            assert row["diff"] == pytest.approx(0.0)
            continue
        # Diluted (40 neighbours, two noise features) or shrunk (penalty 100 against
        # ~50 rows): better than the best fixed choice all the same.
        assert row["diff"] > 0, row
        if row["router"] in ("knn_10", "ridge_cell_0", "ridge_pooled_0"):
            # Routing by the feature rescues ~0.85 against 0.7 for the best fixed choice.
            assert row["rate"] > 0.78 and row["above_zero"], row


def test_reference_routers_never_see_the_outcome_of_the_row_they_route():
    import router_bounds as rb

    df = _signal_table(np.random.default_rng(4), per_cell=30)
    pop = np.ones(len(df), bool)
    z = rb.zscores(df, pop)
    for kind, param in rb.ROUTERS.values():
        base = rb._route(df, kind, param, z, pop, rb._loo_splits)
        for i in (0, 7, 45):
            flipped = df.copy()
            flipped.loc[i, rs.INT] = [0.0, 0.0, 0.0, 0.0]
            flipped.loc[i, rs.INT[int(base[i])] if base[i] == 0 else rs.INT[0]] = 1.0
            again = rb._route(flipped, kind, param, z, pop, rb._loo_splits)
            assert again[i] == base[i], (kind, param, i)


def test_knn_choice_uses_the_nearest_training_rows_only():
    import router_bounds as rb

    v = np.array([[0.0, 1.0, 0, 0], [0.0, 1.0, 0, 0], [1.0, 0.0, 0, 0], [1.0, 0.0, 0, 0]])
    z = np.array([[0.0], [0.1], [5.0], [5.1]])
    # Row 0's nearest other row (1) favours column 1; row 2's nearest (3) column 0.
    assert rb.knn_choice(z, v, np.array([1, 2, 3]), np.array([0]), k=1).tolist() == [1]
    assert rb.knn_choice(z, v, np.array([0, 1, 3]), np.array([2]), k=1).tolist() == [0]
    # The test row is never its own neighbour, even when listed among training rows.
    assert rb.knn_choice(z, v, np.arange(4), np.array([2]), k=1).tolist() == [0]


def test_cv_folds_are_balanced_within_cells_and_reproducible():
    df = _table(np.random.default_rng(0), cells=("a", "b"), per_cell=23)
    fold = rs.cv_folds(df, 5, seed=1)
    assert np.array_equal(fold, rs.cv_folds(df, 5, seed=1))
    for cell in ("a", "b"):
        counts = np.bincount(fold[(df["cell"] == cell).to_numpy()], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_cache_names_record_every_non_default_setting():
    from types import SimpleNamespace as NS

    import router_fit as rf

    base = {"chains": rf.CHAINS, "tune": rf.TUNE, "target_accept": rf.TARGET_ACCEPT}
    assert rf.adaptation(NS(**base)) == "diag"  # the model's own choice
    assert rf.cache_suffix(NS(**base)) == ""
    assert rf.cache_suffix(NS(**base, adaptation="diag")) == ""
    assert rf.cache_suffix(NS(**base | {"tune": 1000}, adaptation="low_rank")) == (
        "_tune1000_lowrank"
    )
    assert rf.cache_suffix(NS(**base | {"chains": 4, "target_accept": 0.95})) == "_chains4_ta0.95"


def test_adaptation_summary_counts_stuck_chains_and_passing_fits():
    import router_adaptation as ra

    def row(adapt, ok, first, stuck, wall):
        return {
            "adaptation": adapt,
            "ok": ok,
            "first_attempt_stuck": first,
            "stuck_chains": stuck,
            "wall_s": wall,
            "min_ess_per_s": 400 / wall,
        }

    rows = [
        row("low_rank", True, 1, 0, 800),
        row("low_rank", False, 2, 1, 900),
        row("low_rank", True, 0, 0, 400),
        row("diag", True, 0, 0, 200),
        row("diag", False, 0, 0, 250),
    ]
    out = ra.summarise(rows)
    assert out["low_rank"] == {
        "fits": 3,
        "passing": 2,
        "first_attempts_with_stuck_chain": 2,
        "stuck_chains_in_final_fits": 1,
        "median_wall_s": 800.0,
        "median_min_ess_per_s": 0.5,
    }
    assert out["diag"]["passing"] == 1 and out["diag"]["median_wall_s"] == 225.0
