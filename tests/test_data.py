"""Tests of the data layer: validation, cells, strata, patterns and file reading."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
from _datahelp import counts_frame, one_line_error, random_rollouts, with_values  # noqa: E402

from bayes_regimes.data import (
    Patterns,
    RolloutData,
)
from bayes_regimes.errors import DataError, DiagnosticsWarning, FormatVersionError

# --------------------------------------------------------------------------- errors


def test_error_classes():
    assert issubclass(DataError, ValueError)
    assert issubclass(FormatVersionError, ValueError)
    assert issubclass(DiagnosticsWarning, UserWarning)


# --------------------------------------------------------------------------- counts


def test_from_counts_cells_layout():
    data = RolloutData.from_counts(counts_frame(), group="model")
    cells = data.cells
    assert list(cells.columns) == ["problem", "group", "condition", "n", "k", "difficulty"]
    assert isinstance(cells.index, pd.RangeIndex) and cells.index[-1] == 4
    assert pd.api.types.is_string_dtype(cells["problem"].dtype)
    assert pd.api.types.is_string_dtype(cells["group"].dtype)
    assert cells["n"].dtype == np.int64 and cells["k"].dtype == np.int64
    assert cells["difficulty"].dtype == np.float64
    assert cells["condition"].tolist() == ["default"] * 5
    assert data.has_group and not data.has_condition
    assert data.features == ["difficulty"]
    assert data.strata == ["m1", "m2"]
    assert data.stratum_index.dtype == np.int64
    assert data.stratum_index.tolist() == [0, 0, 0, 1, 1]
    assert data.n_cells == len(data) == 5
    assert data.n_rollouts == 40


def test_defaults_without_group_or_condition():
    df = pd.DataFrame({"problem_id": [3, 1, 2], "n": [4, 4, 4], "k": [1, 2, 3]})
    data = RolloutData.from_counts(df)
    assert data.cells["group"].tolist() == ["all"] * 3
    assert data.cells["condition"].tolist() == ["default"] * 3
    assert data.cells["problem"].tolist() == ["3", "1", "2"]
    assert data.strata == ["all"] and not data.has_group and not data.has_condition
    assert data.features == []


def test_order_is_first_appearance():
    df = pd.DataFrame(
        {
            "problem_id": ["z", "a", "m", "b"],
            "model": ["y", "x", "y", "x"],
            "n": 3,
            "k": [0, 1, 2, 3],
        }
    )
    data = RolloutData.from_counts(df, group="model")
    assert data.cells["problem"].tolist() == ["z", "a", "m", "b"]
    assert data.strata == ["y", "x"]
    assert data.stratum_index.tolist() == [0, 1, 0, 1]


def test_strata_with_group_and_condition():
    df = pd.DataFrame(
        {
            "problem_id": ["a", "a", "a", "b", "b"],
            "model": ["m2", "m1", "m2", "m2", "m1"],
            "cond": ["c1", "c1", "c2", "c1", "c1"],
            "n": 2,
            "k": 1,
        }
    )
    data = RolloutData.from_counts(df, group="model", condition="cond")
    assert data.has_condition
    assert data.strata == ["m2|c1", "m1|c1", "m2|c2"]
    assert data.stratum_index.tolist() == [0, 1, 2, 0, 1]
    only_condition = RolloutData.from_counts(
        df.drop(columns="model").iloc[[0, 2]], condition="cond"
    )
    assert only_condition.strata == ["all|c1", "all|c2"]


def test_strata_that_join_to_the_same_label_are_one_stratum():
    # ("a|b", "c") and ("a", "b|c") both read "a|b|c": one stratum, as its label says.
    df = pd.DataFrame(
        {
            "problem_id": ["p", "p", "q"],
            "model": ["a|b", "a", "a"],
            "cond": ["c", "b|c", "d"],
            "n": 2,
            "k": 1,
        }
    )
    data = RolloutData.from_counts(df, group="model", condition="cond")
    assert data.strata == ["a|b|c", "a|d"]
    assert data.stratum_index.tolist() == [0, 0, 1]


def test_problem_from_several_columns():
    df = pd.DataFrame(
        {"benchmark": ["I", "O", "I"], "problem_id": [0, 0, 1], "n": 10, "k": [1, 2, 3]}
    )
    data = RolloutData.from_counts(df, problem=["benchmark", "problem_id"])
    assert data.cells["problem"].tolist() == ["I/0", "O/0", "I/1"]
    # Labels that coincide after joining are the same problem, hence duplicates.
    clash = pd.DataFrame({"a": ["x/y", "x"], "b": ["z", "y/z"], "n": 1, "k": 0})
    one_line_error(
        "rows 0 and 1|duplicate cell|'x/y/z'", RolloutData.from_counts, clash, ["a", "b"]
    )


def test_float_keys_and_leading_zeros():
    df = pd.DataFrame({"problem_id": [1.0, 2.0], "n": 1, "k": 0})
    assert RolloutData.from_counts(df).cells["problem"].tolist() == ["1", "2"]
    df = pd.DataFrame({"problem_id": ["007", "7"], "n": 1, "k": 0})
    assert RolloutData.from_counts(df).cells["problem"].tolist() == ["007", "7"]


def test_counts_accept_whole_floats_strings_and_large_values():
    df = pd.DataFrame({"problem_id": ["a", "b"], "n": [12.0, 10**9], "k": ["3", "999999999"]})
    data = RolloutData.from_counts(df)
    assert data.cells["n"].tolist() == [12, 10**9]
    assert data.cells["k"].tolist() == [3, 999_999_999]
    big = pd.DataFrame({"problem_id": ["a", "a"], "n": [10**9, 10**9], "k": [10**9, 1]})
    summed = RolloutData.from_counts(big, duplicates="sum")
    assert summed.cells["n"].tolist() == [2 * 10**9]
    assert summed.cells["k"].dtype == np.int64
    nullable = pd.DataFrame({"problem_id": ["a"], "n": pd.array([5], "Int64"), "k": [2]})
    assert RolloutData.from_counts(nullable).cells["n"].tolist() == [5]


def test_duplicates_error_names_both_rows_even_when_identical():
    df = pd.DataFrame({"problem_id": ["a", "b", "a"], "n": [5, 5, 5], "k": [1, 1, 1]})
    msg = one_line_error(
        "rows 0 and 2|duplicate cell|duplicates='sum'", RolloutData.from_counts, df
    )
    assert "problem='a'" in msg


def test_duplicates_sum():
    df = pd.DataFrame(
        {
            "problem_id": ["a", "b", "a", "a"],
            "n": [5, 5, 3, 2],
            "k": [1, 0, 3, 0],
            "x": [1.0, 2.0, 1.0, 1.0],
        }
    )
    data = RolloutData.from_counts(df, duplicates="sum")
    assert data.cells[["problem", "n", "k", "x"]].values.tolist() == [
        ["a", 10, 4, 1.0],
        ["b", 5, 0, 2.0],
    ]
    df.loc[3, "x"] = 7.0
    one_line_error(
        "column 'x', rows 0 and 3|conflicting feature values 1.0 and 7.0",
        RolloutData.from_counts,
        df,
        duplicates="sum",
    )
    zero = pd.DataFrame({"problem_id": ["a", "a", "b"], "n": [0, 0, 0], "k": 0})
    one_line_error("column 'n', row 0|summed n=0", RolloutData.from_counts, zero, duplicates="sum")
    ok = pd.DataFrame({"problem_id": ["a", "a"], "n": [0, 4], "k": [0, 1]})
    assert RolloutData.from_counts(ok, duplicates="sum").cells["n"].tolist() == [4]
    one_line_error(
        "duplicates must be 'error' or 'sum'", RolloutData.from_counts, df, duplicates="x"
    )


def bad_counts_cases():
    base = {"problem_id": ["a", "b", "c", "d"], "model": "m", "n": [10, 10, 10, 10], "k": 1}

    def frame(**changes):
        return with_values(pd.DataFrame(base), **changes)

    return [
        ("zero rows", pd.DataFrame(base).iloc[:0], {}, "zero rows"),
        ("nan problem", frame(problem_id=(2, None)), {}, "column 'problem_id', row 2|missing"),
        ("nan group", frame(model=(1, np.nan)), {"group": "model"}, "column 'model', row 1"),
        ("nan n", frame(n=(3, np.nan)), {}, "column 'n', row 3|missing"),
        ("none k", frame(k=(0, None)), {}, "column 'k', row 0|missing"),
        ("negative n", frame(n=(1, -2)), {}, "column 'n', row 1|negative n=-2"),
        ("negative k", frame(k=(2, -1)), {}, "column 'k', row 2|negative k=-1"),
        ("fraction", frame(k=(1, 12.5)), {}, "column 'k', row 1|12.5|not an integer"),
        ("infinite", frame(n=(1, np.inf)), {}, "column 'n', row 1|not an integer"),
        ("text", frame(n=(2, "abc")), {}, "column 'n', row 2|non-numeric n='abc'"),
        ("k over n", frame(k=(3, 12)), {}, "column 'k', row 3: k=12 exceeds n=10"),
        ("n zero", frame(n=(1, 0), k=(1, 0)), {}, "column 'n', row 1|n=0|n >= 1"),
        ("bool n", pd.DataFrame(base).assign(n=True), {}, "column 'n'|booleans"),
        ("missing n", pd.DataFrame(base).drop(columns="n"), {}, "'n' (n) not found|'model'"),
        ("missing problem", pd.DataFrame(base), {"problem": "pid"}, "'pid'|available columns"),
        ("missing group", pd.DataFrame(base), {"group": "grp"}, "column 'grp' (group) not found"),
        ("missing cond", pd.DataFrame(base), {"condition": "c"}, "column 'c' (condition)"),
        ("case hint", pd.DataFrame(base), {"problem": "Problem_ID"}, "did you mean 'problem_id'"),
        ("two roles", pd.DataFrame(base), {"group": "model", "condition": "model"}, "both as"),
        ("no problem", pd.DataFrame(base), {"problem": []}, "at least one column"),
        ("feature absent", pd.DataFrame(base), {"features": ["zz"]}, "column 'zz' (feature)"),
        ("feature text", pd.DataFrame(base), {"features": ["model"]}, "column 'model'|numeric"),
        ("feature key", pd.DataFrame(base), {"features": ["n"]}, "column 'n'|key or count"),
        ("not a frame", [1, 2], {}, "expected a pandas DataFrame"),
    ]


@pytest.mark.parametrize(
    ("df", "kwargs", "match"),
    [case[1:] for case in bad_counts_cases()],
    ids=[case[0] for case in bad_counts_cases()],
)
def test_bad_counts(df, kwargs, match):
    one_line_error(match, RolloutData.from_counts, df, **kwargs)


def test_ambiguous_duplicate_column_names():
    df = pd.DataFrame([["a", 1, 1, 0]], columns=["problem_id", "n", "n", "k"])
    one_line_error("column 'n'|ambiguous|2 times", RolloutData.from_counts, df)
    near = pd.DataFrame([["a", 1, 1, 0]], columns=["PROBLEM_ID", "Problem_Id", "n", "k"])
    one_line_error("several columns match", RolloutData.from_counts, near)


def test_features_auto_explicit_and_invalid():
    df = counts_frame().assign(flag=[True, False, True, True, False], name="x")
    auto = RolloutData.from_counts(df, group="model")
    assert auto.features == ["difficulty", "flag"]
    assert auto.cells["flag"].dtype == np.float64
    explicit = RolloutData.from_counts(df, group="model", features=["flag"])
    assert explicit.features == ["flag"] and "difficulty" not in explicit.cells
    assert RolloutData.from_counts(df, group="model", features=[]).features == []
    df.loc[2, "difficulty"] = np.nan
    one_line_error("column 'difficulty', row 2|feature", RolloutData.from_counts, df, group="model")
    clash = pd.DataFrame({"pid": ["a"], "trials": [3], "wins": [1], "n": [7.0]})
    kwargs = {"problem": "pid", "n": "trials", "k": "wins"}
    assert RolloutData.from_counts(clash, **kwargs).features == []  # reserved name skipped
    one_line_error("clashes", RolloutData.from_counts, clash, **kwargs, features=["n"])


def test_input_is_copied_not_viewed():
    df = counts_frame()
    before = df.copy()
    data = RolloutData.from_counts(df, group="model")
    df.loc[0, "n"] = 99
    df.loc[0, "problem_id"] = "changed"
    assert data.cells.loc[0, "n"] == 10 and data.cells.loc[0, "problem"] == "p1"
    before.loc[0, "n"] = 99
    before.loc[0, "problem_id"] = "changed"
    pd.testing.assert_frame_equal(df, before)


def test_immutability():
    data = RolloutData.from_counts(counts_frame(), group="model")
    with pytest.raises(AttributeError):
        data.cells = None
    cells = data.cells
    cells.loc[0, "k"] = 7
    assert data.cells.loc[0, "k"] == 0
    frame = data.to_frame()
    frame.loc[1, "n"] = 1
    assert data.cells.loc[1, "n"] == 10
    with pytest.raises(ValueError):
        data.stratum_index[0] = 5
    data.strata.append("x")
    data.features.append("x")
    assert data.strata == ["m1", "m2"] and data.features == ["difficulty"]


def test_pickle_and_copy():
    data = RolloutData.from_counts(counts_frame(), group="model")
    for clone in (pickle.loads(pickle.dumps(data)), copy.deepcopy(data), copy.copy(data)):
        assert clone == data and clone.strata == data.strata
        assert clone.patterns().table.equals(data.patterns().table)


def test_direct_constructor_validates():
    cells = pd.DataFrame(
        {"problem": ["a", "b"], "group": "g", "condition": "default", "n": [3, 3], "k": [1, 2]}
    )
    data = RolloutData(cells, has_group=True, has_condition=False)
    assert data.strata == ["g"] and data.has_group
    assert data == RolloutData.from_counts(
        cells.rename(columns={"problem": "problem_id"}), group="group"
    )
    bad = cells.assign(k=[1, 5])
    one_line_error(
        "column 'k', row 1: k=5 exceeds n=3", RolloutData, bad, has_group=True, has_condition=False
    )
    one_line_error(
        "rows 0 and 1", RolloutData, cells.assign(problem="a"), has_group=True, has_condition=False
    )


# --------------------------------------------------------------------------- rollouts


def test_rollouts_match_counts():
    df = random_rollouts()
    rollouts = RolloutData.from_rollouts(
        df, group="model", condition="cond", sample="sample", features=["level"]
    )
    counts = (
        df.groupby(["problem_id", "model", "cond"], sort=False)
        .agg(n=("correct", "size"), k=("correct", "sum"), level=("level", "first"))
        .reset_index()
    )
    from_counts = RolloutData.from_counts(counts, group="model", condition="cond")
    assert rollouts == from_counts
    pd.testing.assert_frame_equal(rollouts.cells, from_counts.cells)
    assert rollouts.strata == from_counts.strata
    # Auto features for rollouts: constant within cells, sample and correct excluded.
    auto = RolloutData.from_rollouts(df, group="model", condition="cond")
    assert auto.features == ["level"]


def test_rollout_order_and_repeats():
    df = pd.DataFrame({"problem_id": ["b", "a", "b", "b"], "correct": [1, 0, 1, 1]})
    data = RolloutData.from_rollouts(df)
    assert data.cells[["problem", "n", "k"]].values.tolist() == [["b", 3, 3], ["a", 1, 0]]


@pytest.mark.parametrize(
    "values",
    [
        [True, False, True],
        [1, 0, 1],
        [1.0, 0.0, 1.0],
        ["TRUE", "false", " True "],
        ["1", "0", "1"],
        [True, 0, "true"],
        pd.array([True, False, True], dtype="boolean"),
    ],
)
def test_correct_encodings(values):
    df = pd.DataFrame({"problem_id": ["a", "a", "b"], "correct": values})
    assert RolloutData.from_rollouts(df).cells["k"].tolist() == [1, 1]


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([1, 2, 0], "column 'correct', row 1|got 2"),
        ([1.0, np.nan, 0.0], "column 'correct', row 1|missing"),
        (["true", None, "false"], "column 'correct', row 1|missing"),
        (["true", "false", "yes"], "column 'correct', row 2|got 'yes'"),
        ([0.5, 1.0, 0.0], "row 0|got 0.5"),
    ],
)
def test_bad_correct(values, match):
    df = pd.DataFrame({"problem_id": ["a", "a", "b"], "correct": values})
    one_line_error(match, RolloutData.from_rollouts, df)


def test_sample_index():
    df = pd.DataFrame(
        {
            "problem_id": ["a", "a", "b", "a", "b"],
            "sample_idx": [0, 1, 0, 1, 1],
            "correct": [1, 0, 1, 1, 0],
        }
    )
    msg = one_line_error(
        "column 'sample_idx', row 3|repeats row 1|problem='a'",
        RolloutData.from_rollouts,
        df,
        sample="sample_idx",
    )
    assert "sample 1 " in msg
    df.loc[3, "sample_idx"] = 2
    assert RolloutData.from_rollouts(df, sample="sample_idx").cells["n"].tolist() == [3, 2]
    # Huge or textual sample ids take the hashing path.
    for ids in ([0, 10**12, 5, 10**12, 7], ["s0", "s1", "s0", "s1", "s0"]):
        df["sample_idx"] = ids
        one_line_error("row 3|repeats row 1", RolloutData.from_rollouts, df, sample="sample_idx")
    df["sample_idx"] = [0, 1, None, 2, 3]
    one_line_error(
        "column 'sample_idx', row 2|missing", RolloutData.from_rollouts, df, sample="sample_idx"
    )


def test_rollout_feature_errors_and_columns():
    df = random_rollouts(1, problems=5)
    df.loc[df.index[-1], "level"] = 99.0
    msg = one_line_error(
        "column 'level', rows|conflicting feature values",
        RolloutData.from_rollouts,
        df,
        group="model",
        condition="cond",
        features=["level"],
    )
    assert f"and {len(df) - 1}:" in msg
    # Auto mode silently treats a varying column as a non-feature (not an error).
    assert RolloutData.from_rollouts(df, group="model", condition="cond").features == []
    one_line_error(
        "'correct' (correct) not found", RolloutData.from_rollouts, df.drop(columns="correct")
    )
    one_line_error("zero rows", RolloutData.from_rollouts, df.iloc[:0])
    one_line_error(
        "column 'model', row 4",
        RolloutData.from_rollouts,
        df.assign(model=df["model"].where(df.index != 4)),
        group="model",
    )


# --------------------------------------------------------------------------- patterns


def test_patterns():
    rng = np.random.default_rng(3)
    size = 500
    df = pd.DataFrame(
        {
            "problem_id": np.arange(size),
            "model": rng.choice(["b", "a", "c"], size),
            "n": rng.choice([5, 10], size),
        }
    )
    df["k"] = (rng.random(size) * (df["n"] + 1)).astype(int).clip(0, df["n"])
    data = RolloutData.from_counts(df, group="model")
    pat = data.patterns()
    assert isinstance(pat, Patterns)
    table = pat.table
    assert list(table.columns) == ["stratum", "n", "k", "count"]
    assert all(table[c].dtype == np.int64 for c in table.columns)
    assert pat.cell_pattern.dtype == np.int64 and len(pat.cell_pattern) == data.n_cells
    assert table["count"].sum() == data.n_cells
    keys = list(zip(table["stratum"], table["n"], table["k"], strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == pat.n_patterns
    mapped = table.iloc[pat.cell_pattern]
    np.testing.assert_array_equal(mapped["stratum"].to_numpy(), data.stratum_index)
    np.testing.assert_array_equal(mapped["n"].to_numpy(), data.cells["n"].to_numpy())
    np.testing.assert_array_equal(mapped["k"].to_numpy(), data.cells["k"].to_numpy())
    expected = pd.Series(pat.cell_pattern).value_counts().sort_index().to_numpy()
    np.testing.assert_array_equal(table["count"].to_numpy(), expected)
    assert data.patterns().table.equals(table)  # cached, same answer


# --------------------------------------------------------------------------- subset, repr


def test_subset():
    data = RolloutData.from_counts(counts_frame(), group="model")
    part = data.subset(np.array([False, False, False, True, True]))
    assert part.cells["problem"].tolist() == ["p1", "p2"]
    assert part.strata == ["m2"] and part.stratum_index.tolist() == [0, 0]
    assert part.features == ["difficulty"] and part.has_group
    assert data.subset([4, 1]).cells["problem"].tolist() == ["p2", "p2"]
    assert data.subset(pd.Series([True] * 5)) == data
    for bad, match in [
        ([True, False], "mask has shape"),
        ([0, 9], "0..4"),
        ([1, 1], "unique"),
        ([], "no cells"),
        ([0.5], "boolean mask or int"),
    ]:
        one_line_error(match, data.subset, bad)


def test_repr_and_html():
    df = counts_frame()
    data = RolloutData.from_counts(df, group="model")
    text = repr(data)
    assert text.startswith("RolloutData(") and "cells=5" in text and "\n" not in text
    page = data._repr_html_()
    for part in ("<table", "cells", "groups", "conditions", "rollouts", "40", "0.400"):
        assert part in page
