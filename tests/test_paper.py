"""Tests of the paper's regimes and routing rule (bayes_regimes.paper)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_regimes import paper
from bayes_regimes.errors import DataError
from bayes_regimes.paper import (
    ATTEMPTS_PER_CONTEXT,
    FEATURES,
    INTERVENTIONS,
    RATES,
    infer_denominator,
    outcome_regimes,
    paper_rule_summary,
    read_failure_profiles,
    route,
    routing_groups,
    routing_table,
    rule_vs_best_fixed,
    zscores,
)

FLAGSHIP = "sft0p6b|gsm8k"
HEADER = (
    "cell,model,task,problem_id,n_failed_rollouts,spread,concentration,logit_dispersion,"
    "retry,sparse_steer,sparse_steer_random,local_temp,dense_steer"
)


def _rates(retry, best, **others) -> pd.DataFrame:
    """A frame of rates: ``best`` in sparse_steer, zeros elsewhere unless given."""
    cols = {"retry": retry, "sparse_steer": best}
    for name in ("sparse_steer_random", "local_temp", "dense_steer"):
        cols[name] = others.get(name, [0.0] * len(retry))
    return pd.DataFrame(cols)


def _write(tmp_path, rows: list[str], header: str = HEADER):
    path = tmp_path / "profiles.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


ROW = "c|t,c,t,p{i},{n},0.5,2.0,-1.0,{r},0.0,0.0,0.0,{d}"


# ---------------------------------------------------------------------------
# constants and doctests
# ---------------------------------------------------------------------------
def test_constants():
    assert INTERVENTIONS == ("sparse_steer", "sparse_steer_random", "local_temp", "dense_steer")
    assert ATTEMPTS_PER_CONTEXT == 3
    assert FEATURES == ("spread", "concentration", "logit_dispersion")
    assert RATES[0] == "retry"
    assert RATES[1:] == INTERVENTIONS


# ---------------------------------------------------------------------------
# denominators
# ---------------------------------------------------------------------------
def test_infer_denominator_basic():
    rates = [0.0, 1.0, 0.5, 1 / 3, 0.333333, 0.3, 0.076923, 0.6875, 0.123]
    assert infer_denominator(rates, 20).tolist() == [1, 1, 2, 3, 3, 10, 13, 16, 0]


def test_infer_denominator_respects_bound():
    assert infer_denominator([0.3, 0.3, 0.6875], [9, 10, 15]).tolist() == [0, 10, 0]


def test_read_synthetic_denominators(tmp_path):
    rows = [
        ROW.format(i=0, n=10, r=0.3, d=0.466667),  # 3/10, dense 7/15 (n + 5)
        ROW.format(i=1, n=8, r=0.5, d=0.6875),  # d = 2 (lower bound), dense 11/16 = 2n
        ROW.format(i=2, n=3, r=0.0, d=1.0),
        ROW.format(i=3, n=13, r=0.076923, d=0.25),
    ]
    df = read_failure_profiles(_write(tmp_path, rows))
    assert df["problem_id"].tolist() == ["p0", "p1", "p2", "p3"]
    assert df["retry_D"].tolist() == [10, 2, 1, 13]
    assert df["retry_K"].tolist() == [3, 1, 0, 1]
    assert df["retry_D_lower_bound"].tolist() == [False, True, True, False]
    assert df["dense_steer_D"].tolist() == [15, 16, 1, 4]
    assert df["dense_steer_K"].tolist() == [7, 11, 1, 1]
    assert df["dense_steer_D_lower_bound"].tolist() == [False, False, True, False]
    assert df["sparse_steer_D"].tolist() == [1, 1, 1, 1]
    assert df["sparse_steer_D_lower_bound"].all()
    assert df["n_failed_rollouts"].dtype == np.int64
    assert df["retry_D"].dtype == np.int64
    assert df["retry_K"].dtype == np.int64
    assert df["retry_D_lower_bound"].dtype == bool


def test_rate_beyond_rollout_bound_raises(tmp_path):
    # 3/10 needs 10 contexts but only 5 failed rollouts: retry may not exceed n.
    path = _write(tmp_path, [ROW.format(i=0, n=5, r=0.3, d=0.0)])
    with pytest.raises(DataError, match=r"column 'retry', row 0"):
        read_failure_profiles(path)
    # dense_steer may use up to 2n contexts, but not more.
    path = _write(tmp_path, [ROW.format(i=0, n=5, r=0.0, d=1 / 11)])
    with pytest.raises(DataError, match=r"column 'dense_steer', row 0"):
        read_failure_profiles(path)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_missing_column_is_named(tmp_path):
    header = HEADER.replace(",local_temp", "")
    row = "c|t,c,t,p0,5,0.5,2.0,-1.0,0.2,0.0,0.0,0.0"
    with pytest.raises(DataError, match="local_temp"):
        read_failure_profiles(_write(tmp_path, [row], header))
    with pytest.raises(DataError, match="dense_steer"):
        outcome_regimes(pd.DataFrame({c: [0.0] for c in RATES[:-1]}))
    with pytest.raises(DataError, match="spread"):
        route(pd.DataFrame({"concentration": [0.0], "logit_dispersion": [0.0]}))


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("c|t,c,t,p0,5,0.5,2.0,-1.0,1.2,0.0,0.0,0.0,0.0", r"column 'retry', row 0.*\[0, 1\]"),
        ("c|t,c,t,p0,5,0.5,2.0,-1.0,-0.2,0.0,0.0,0.0,0.0", r"column 'retry', row 0"),
        ("c|t,c,t,p0,0,0.5,2.0,-1.0,0.0,0.0,0.0,0.0,0.0", r"column 'n_failed_rollouts'"),
        ("c|t,c,t,p0,2.5,0.5,2.0,-1.0,0.0,0.0,0.0,0.0,0.0", r"column 'n_failed_rollouts'"),
        ("c|t,c,t,p0,5,abc,2.0,-1.0,0.0,0.0,0.0,0.0,0.0", r"column 'spread', row 0.*number"),
        ("c|t,c,t,p0,5,0.5,,-1.0,0.0,0.0,0.0,0.0,0.0", r"column 'concentration', row 0.*missing"),
        ("c|t,c,t,p0,5,0.5,2.0,inf,0.0,0.0,0.0,0.0,0.0", r"'logit_dispersion', row 0.*finite"),
    ],
)
def test_bad_values(tmp_path, row, match):
    with pytest.raises(DataError, match=match):
        read_failure_profiles(_write(tmp_path, [row]))


def test_bad_value_names_its_row(tmp_path):
    rows = [ROW.format(i=i, n=5, r=0.2, d=0.0) for i in range(3)]
    rows.append("c|t,c,t,p3,5,0.5,2.0,-1.0,0.2,0.0,0.0,0.0,1.5")
    with pytest.raises(DataError, match=r"column 'dense_steer', row 3"):
        read_failure_profiles(_write(tmp_path, rows))


def test_duplicated_key(tmp_path):
    rows = [ROW.format(i=0, n=5, r=0.2, d=0.0), ROW.format(i=0, n=5, r=0.4, d=0.0)]
    with pytest.raises(DataError, match=r"row 1.*duplicated"):
        read_failure_profiles(_write(tmp_path, rows))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError):
        read_failure_profiles(path)


# ---------------------------------------------------------------------------
# outcome regimes (Eq. 2)
# ---------------------------------------------------------------------------
def test_regime_margin_in_float_arithmetic():
    # 0.55 - 0.5 = 0.05000000000000004 and 0.05 - 0.0 = 0.05: steerable;
    # 0.30 - 0.25 = 0.04999999999999999: not steerable (resample).
    df = _rates([0.5, 0.0, 0.25, 0.2], [0.55, 0.05, 0.30, 0.25])
    assert outcome_regimes(df).tolist() == ["steerable", "steerable", "resample", "resample"]


def test_regime_hardness_threshold():
    # retry = 0.5 is hard enough (1 - 0.5 >= 0.5); retry = 0.51 is not.
    df = _rates([0.5, 0.51], [0.9, 0.9])
    assert outcome_regimes(df).tolist() == ["steerable", "resample"]


def test_beyond_reach_ignores_retry():
    df = _rates([0.0, 0.3, 1.0, 0.3], [0.0, 0.0, 0.0, 0.0], dense_steer=[0, 0, 0, 0.1])
    assert outcome_regimes(df).tolist() == ["beyond reach"] * 3 + ["resample"]


def test_regime_uses_best_intervention_not_retry():
    df = _rates([0.1, 0.9], [0.0, 0.0], local_temp=[0.2, 0.0], dense_steer=[0.1, 0.0])
    assert outcome_regimes(df).tolist() == ["steerable", "beyond reach"]


def test_regime_index_aligned_and_labels():
    df = _rates([0.0, 0.8, 0.0], [0.5, 0.9, 0.0])
    df.index = [10, 5, 7]
    out = outcome_regimes(df)
    assert out.index.tolist() == [10, 5, 7]
    assert out.to_dict() == {10: "steerable", 5: "resample", 7: "beyond reach"}
    assert out.name == "regime"


# ---------------------------------------------------------------------------
# routing rule
# ---------------------------------------------------------------------------
def test_route_argmax_and_fallback():
    df = pd.DataFrame([[3, 0, 0], [0, 3, 0], [0, 0, 3], [0, 0, 0]], columns=FEATURES)
    df.index = list("abcd")
    out = route(df)
    assert out.to_dict() == {
        "a": "dense_steer",
        "b": "sparse_steer",
        "c": "local_temp",
        "d": "sparse_steer_random",
    }


def test_route_ties_go_to_first_feature():
    # Identical columns: every row ties all three z; z = 0 exactly is not positive.
    df = pd.DataFrame({f: [1.0, 2.0, 3.0] for f in FEATURES})
    z = zscores(df).to_numpy()
    assert z[1].tolist() == [0.0, 0.0, 0.0]
    assert (z[2] == z[2, 0]).all()
    assert route(df).tolist() == ["sparse_steer_random", "sparse_steer_random", "dense_steer"]
    # concentration and dispersion tie above spread: concentration wins.
    df = pd.DataFrame(
        {
            "spread": [0.0, 0, 0, 1],
            "concentration": [3.0, 0, 0, 0],
            "logit_dispersion": [3.0, 0, 0, 0],
        }
    )
    z = zscores(df).to_numpy()
    assert z[0, 1] == z[0, 2] > z[0, 0]
    assert route(df).iloc[0] == "sparse_steer"


def test_route_zero_z_is_not_positive():
    # Constant features score 0 everywhere, so nothing is above 0.
    df = pd.DataFrame([[1.0, 2.0, 3.0]] * 3, columns=FEATURES)
    assert (zscores(df).to_numpy() == 0.0).all()
    assert route(df).tolist() == ["sparse_steer_random"] * 3


def test_zscores_population_sd():
    df = pd.DataFrame({"spread": [1.0, 2.0, 6.0], "concentration": 0.0, "logit_dispersion": 0.0})
    x = df["spread"].to_numpy()
    expected = (x - x.mean()) / x.std(ddof=0)
    np.testing.assert_allclose(zscores(df)["spread"], expected)


def test_route_empty():
    out = route(pd.DataFrame(columns=list(FEATURES), dtype=float))
    assert len(out) == 0


def test_routing_table_synthetic():
    features = pd.DataFrame([[1, 0, 0], [0, 1, 0], [0, 0, 0], [5, 5, 5]], columns=FEATURES)
    df = features.assign(cell=["a", "a", "a", "b"], retry=[0.0, 0.0, 0.0, 0.0]).assign(
        sparse_steer=[0.0, 1.0, 0.0, 1.0],
        sparse_steer_random=[0.0, 0.0, 0.5, 1.0],
        local_temp=0.0,
        dense_steer=[1.0, 0.0, 0.0, 1.0],
    )
    table = routing_table(df, "a")
    assert table["strategy"].tolist() == list(paper.STRATEGIES)
    assert table["n"].tolist() == [3] * 6
    np.testing.assert_allclose(table["rescue_rate"], [2.5 / 3, 1 / 3, 1 / 3, 0, 0.5 / 3, 0])
    assert routing_groups(df, "a").tolist() == [1, 1, 0, 1]
    with pytest.raises(ValueError, match="no rows for cell 'zz'"):
        routing_table(df, "zz")


def test_routing_table_no_steerable():
    df = pd.DataFrame([[1, 0, 0]], columns=FEATURES).assign(cell="a", **dict.fromkeys(RATES, 0.0))
    table = routing_table(df, "a")
    assert (table["n"] == 0).all()
    assert table["rescue_rate"].isna().all()
    summary = paper_rule_summary(df)
    assert not summary["best_fixed"].any()


# ---------------------------------------------------------------------------
# the real data
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def profiles(shared_data):
    return read_failure_profiles()


def test_real_shape_and_order(profiles, shared_data):
    raw = pd.read_csv(shared_data / "islah2026_failure_profiles" / "failure_profiles.csv")
    assert len(profiles) == 1423
    assert profiles["problem_id"].tolist() == raw["problem_id"].tolist()
    assert profiles["cell"].tolist() == raw["cell"].tolist()
    for col in RATES:
        np.testing.assert_array_equal(profiles[col].to_numpy(), raw[col].to_numpy())


def test_real_denominators(profiles):
    # The histogram of inferred denominators documented in the data README.
    hist = {col: profiles[f"{col}_D"].value_counts().sort_index().to_dict() for col in RATES}
    assert hist["retry"] == dict(
        zip(range(1, 14), [621, 57, 45, 43, 212, 16, 31, 14, 47, 243, 73, 20, 1], strict=True)
    )
    assert hist["dense_steer"][20] == 47
    assert max(hist["dense_steer"]) == 20
    n = profiles["n_failed_rollouts"]
    for col in RATES:
        d, k, x = profiles[f"{col}_D"], profiles[f"{col}_K"], profiles[col]
        assert (d <= (2 if col == "dense_steer" else 1) * n).all()
        assert ((k >= 0) & (k <= d)).all()
        assert (np.abs(x * d - k) <= 1e-4).all()
        assert (profiles[f"{col}_D_lower_bound"] == x.isin([0.0, 0.5, 1.0])).all()


def test_real_hand_checked_rows(profiles):
    key = profiles.set_index(["cell", "problem_id"])
    # sample_0 (n = 20): retry 0.272727 = 3/11, dense 0.45 = 9/20.
    row = key.loc[("grpo1p7b|cruxeval", "sample_0")]
    assert (row["retry_D"], row["retry_K"]) == (11, 3)
    assert (row["dense_steer_D"], row["dense_steer_K"]) == (20, 9)
    # sample_625 (n = 8): dense 0.6875 = 11/16 = 2n contexts; retry 0.75 = 3/4.
    row = key.loc[("grpo1p7b|cruxeval", "sample_625")]
    assert (row["dense_steer_D"], row["dense_steer_K"]) == (16, 11)
    assert (row["retry_D"], row["retry_K"], row["retry_D_lower_bound"]) == (4, 3, False)
    # sample_517 (n = 50): retry 0.076923 = 1/13; dense 0 is only a lower bound.
    row = key.loc[("grpo1p7b|cruxeval", "sample_517")]
    assert (row["retry_D"], row["retry_K"]) == (13, 1)
    assert (row["dense_steer_D"], row["dense_steer_K"], row["dense_steer_D_lower_bound"]) == (
        1,
        0,
        True,
    )
    # sample_101: retry 0.5 -> D = 2, lower bound.
    row = key.loc[("grpo1p7b|cruxeval", "sample_101")]
    assert (row["retry_D"], row["retry_K"], row["retry_D_lower_bound"]) == (2, 1, True)


def test_real_regime_counts(profiles):
    regimes = outcome_regimes(profiles)
    assert regimes.value_counts().to_dict() == {
        "resample": 642,
        "steerable": 534,
        "beyond reach": 247,
    }
    best = profiles[list(INTERVENTIONS)].max(axis=1)
    assert ((regimes == "beyond reach") & (profiles["retry"] > 0)).sum() == 38
    assert (regimes[best == 0] != "steerable").all()
    # The float edge case documented in the data README.
    edge = (profiles["cell"] == "grpo1p7b|cruxeval") & (profiles["problem_id"] == "sample_492")
    assert regimes[edge].tolist() == ["resample"]
    per_cell = pd.crosstab(profiles["cell"], regimes)
    assert per_cell.loc[FLAGSHIP].to_dict() == {
        "beyond reach": 11,
        "resample": 118,
        "steerable": 67,
    }


def test_real_flagship_routing_table(profiles):
    table = routing_table(profiles, cell=FLAGSHIP)
    assert table["strategy"].tolist() == [
        "routed",
        "dense_steer",
        "sparse_steer",
        "local_temp",
        "sparse_steer_random",
        "retry",
    ]
    assert (table["n"] == 67).all()
    pct = (100 * table["rescue_rate"]).round(1).tolist()
    assert pct == [46.3, 43.9, 43.0, 41.7, 39.0, 24.8]


def test_real_flagship_groups(profiles):
    groups = routing_groups(profiles, FLAGSHIP)
    assert groups.to_dict() == {
        "dense_steer": 26,
        "sparse_steer": 20,
        "local_temp": 17,
        "sparse_steer_random": 4,
    }
    assert sorted(groups.tolist(), reverse=True) == [26, 20, 17, 4]
    # Group mean z-scores printed by the upstream demo.
    cell = profiles[profiles["cell"] == FLAGSHIP]
    steer = cell[outcome_regimes(cell) == "steerable"]
    means = zscores(steer).groupby(route(steer)).mean().round(2)
    assert means.loc["dense_steer"].tolist() == [0.92, -0.49, -0.24]
    assert means.loc["sparse_steer"].tolist() == [-0.88, 1.07, -0.37]
    assert means.loc["local_temp"].tolist() == [-0.19, -0.21, 1.07]
    assert means.loc["sparse_steer_random"].tolist() == [-0.77, -1.26, -1.17]


def test_real_rule_beats_best_fixed_in_one_cell(profiles):
    summary = paper_rule_summary(profiles)
    assert summary.columns.tolist() == ["cell", "strategy", "n", "rescue_rate", "best_fixed"]
    assert len(summary) == 8 * 6
    assert summary.groupby("cell", sort=False)["best_fixed"].sum().eq(1).all()
    wide = rule_vs_best_fixed(summary).set_index("cell")
    assert wide["rule_wins"].sum() == 1
    assert wide.index[wide["rule_wins"]].tolist() == [FLAGSHIP]
    assert wide.loc[FLAGSHIP, "best_fixed"] == "dense_steer"
    # Routed vs best fixed per cell, as recomputed in the data README.
    expected = {
        "grpo1p7b|cruxeval": (34.6, "dense_steer", 38.3),
        "grpo1p7b|gpqa": (14.2, "sparse_steer_random", 16.8),
        "sft0p6b|gpqa": (18.1, "sparse_steer_random", 18.5),
        "sft1p7b|cruxeval": (43.1, "dense_steer", 54.6),
        "sft1p7b|gpqa": (18.5, "sparse_steer_random", 21.8),
        "sft4b|cruxeval": (33.3, "local_temp", 37.3),
        "sft4b|gsm8k": (29.8, "sparse_steer_random", 40.7),
        FLAGSHIP: (46.3, "dense_steer", 43.9),
    }
    got = {
        cell: (round(100 * r.routed, 1), r.best_fixed, round(100 * r.best_fixed_rate, 1))
        for cell, r in wide.iterrows()
    }
    assert got == expected
    # The flagship rows of the summary equal its routing table.
    flagship = summary[summary["cell"] == FLAGSHIP].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        flagship[["strategy", "n", "rescue_rate"]], routing_table(profiles, FLAGSHIP)
    )
