"""Tests of the data layer: validation, cells, strata, patterns and file reading."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from bayes_regimes.data import (
    Patterns,
    RolloutData,
    detect_input_kind,
    read_rollouts,
    validate_columns,
)
from bayes_regimes.errors import DataError, DiagnosticsWarning, FormatVersionError


def one_line_error(match: str, func, *args, **kwargs) -> str:
    """Call func, expect a one-line DataError matching every |-separated part."""
    with pytest.raises(DataError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    for part in match.split("|"):
        assert part in message, f"{part!r} not in {message!r}"
    return message


def counts_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "problem_id": ["p1", "p2", "p3", "p1", "p2"],
            "model": ["m1", "m1", "m1", "m2", "m2"],
            "n": [10, 10, 10, 5, 5],
            "k": [0, 3, 10, 0, 5],
            "difficulty": [0.1, 0.2, 0.3, 0.1, 0.2],
        }
    )


def random_rollouts(seed: int = 0, problems: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in rng.permutation(problems):
        for g in ("a", "b"):
            for c in ("x", "y"):
                size = int(rng.integers(1, 6))
                for s in range(size):
                    rows.append((f"q{p}", g, c, s, int(rng.random() < 0.3), float(p % 4)))
    df = pd.DataFrame(rows, columns=["problem_id", "model", "cond", "sample", "correct", "level"])
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


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


def with_values(df: pd.DataFrame, **changes) -> pd.DataFrame:
    """A copy of df with ``column=(row, value)`` changes (the column made object dtype)."""
    df = df.copy()
    for column, (row, value) in changes.items():
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
    return df


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


# --------------------------------------------------------------------------- files and helpers


def test_validate_columns_and_detect_kind():
    validate_columns(["a", "b"], {"problem": ["a"], "group": None})
    one_line_error(
        "'c' (group) not found|available columns: 'a', 'b'",
        validate_columns,
        ["a", "b"],
        {"group": "c"},
    )
    assert detect_input_kind(["n", "k", "x"]) == "counts"
    assert detect_input_kind(["correct"]) == "rollouts"
    assert detect_input_kind(["n", "k", "correct"], correct="correct") == "rollouts"
    assert detect_input_kind(["trials"], n="trials") == "counts"
    one_line_error("ambiguous|'n', 'k'|'correct'", detect_input_kind, ["n", "k", "correct"])
    one_line_error("looked for|found only 'n'|'correct'", detect_input_kind, ["n", "x"])
    one_line_error("not both", detect_input_kind, ["n"], n="n", correct="c")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".csv.gz"])
def test_read_rollouts_round_trip(tmp_path, suffix):
    df = random_rollouts(2, problems=8)
    path = tmp_path / f"rollouts{suffix}"
    counts = (
        df.groupby(["problem_id", "model", "cond"], sort=False)
        .agg(n=("correct", "size"), k=("correct", "sum"), level=("level", "first"))
        .reset_index()
    )
    cpath = tmp_path / f"counts{suffix}"
    for frame, target in ((df, path), (counts, cpath)):
        if ".csv" in suffix:
            frame.to_csv(target, index=False)
        elif suffix in (".parquet", ".pq"):
            frame.to_parquet(target, index=False)
        else:
            frame.to_json(target, orient="records", lines=True)
    kwargs = {"group": "model", "condition": "cond"}
    from_file = read_rollouts(path, sample="sample", **kwargs)
    expected = RolloutData.from_rollouts(df, sample="sample", **kwargs)
    assert from_file == expected
    assert read_rollouts(cpath, **kwargs) == expected


def test_read_rollouts_errors_and_options(tmp_path):
    df = pd.DataFrame({"pid": ["007", "8"], "trials": [3, 3], "wins": [1, 0]})
    text = tmp_path / "data.txt"
    df.to_csv(text, index=False)
    one_line_error("'.txt'|data.txt|format=", read_rollouts, text)
    data = read_rollouts(text, format="csv", problem="pid", n="trials", k="wins")
    assert data.cells["problem"].tolist() == ["007", "8"]
    one_line_error("unknown format 'xlsx'", read_rollouts, text, format="xlsx")
    one_line_error("file not found", read_rollouts, tmp_path / "absent.csv")
    both = tmp_path / "both.csv"
    pd.DataFrame({"problem_id": ["a"], "n": [1], "k": [1], "correct": [1]}).to_csv(
        both, index=False
    )
    one_line_error("ambiguous", read_rollouts, both)
    assert read_rollouts(both, correct="correct").cells["n"].tolist() == [1]
    assert read_rollouts(both, n="n").cells["n"].tolist() == [1]
    neither = tmp_path / "neither.csv"
    pd.DataFrame({"problem_id": ["a"], "score": [1]}).to_csv(neither, index=False)
    one_line_error("looked for count columns 'n' and 'k'|'correct'|'score'", read_rollouts, neither)
    one_line_error("sample= applies", read_rollouts, both, n="n", sample="x")
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    one_line_error("cannot read broken.parquet as parquet", read_rollouts, broken)
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"problem_id": [], "correct": []}).to_csv(empty, index=False)
    one_line_error("zero rows", read_rollouts, empty)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"problem_id": ["a", "b"], "n": [4, 4], "k": [1, 9]}).to_csv(bad, index=False)
    one_line_error("column 'k', row 1: k=9 exceeds n=4", read_rollouts, bad)
    one_line_error("duplicates must be", read_rollouts, both, correct="correct", duplicates="no")


def _write(frame: pd.DataFrame, path, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)


def bad_file_cases():
    """(id, frame, read_rollouts kwargs, expected parts): each bad input of issue 2, as a file."""
    counts = pd.DataFrame({"problem_id": ["a", "b", "c", "d"], "n": [10, 10, 10, 10], "k": 1})
    rolls = pd.DataFrame(
        {"problem_id": ["a", "a", "b", "b"], "sample_idx": [0, 1, 0, 1], "correct": [1, 0, 0, 1]}
    )

    def counts_with(column, row, value):
        return with_values(counts, **{column: (row, value)})

    def rolls_with(column, row, value):
        return with_values(rolls, **{column: (row, value)})

    return [
        ("k over n", counts_with("k", 2, 12), {}, "column 'k', row 2: k=12 exceeds n=10"),
        ("negative n", counts_with("n", 1, -3), {}, "column 'n', row 1|negative n=-3"),
        ("negative k", counts_with("k", 3, -1), {}, "column 'k', row 3|negative k=-1"),
        ("fractional k", counts_with("k", 3, 1.5), {}, "column 'k', row 3|1.5|not an integer"),
        ("nan k", counts_with("k", 0, None), {}, "column 'k', row 0|missing value"),
        ("nan n", counts_with("n", 2, np.nan), {}, "column 'n', row 2|missing value"),
        ("nan problem", counts_with("problem_id", 1, None), {}, "'problem_id', row 1|missing"),
        ("zero n", counts_with("n", 1, 0).assign(k=0), {}, "column 'n', row 1|n >= 1"),
        ("missing k", counts.drop(columns="k"), {}, "found only 'n'|'correct'|'problem_id'"),
        ("missing named n", counts, {"n": "trials"}, "column 'trials' (n) not found"),
        ("unknown problem", counts, {"problem": "pid"}, "column 'pid' (problem) not found"),
        ("unknown group", counts, {"group": "model"}, "column 'model' (group) not found"),
        ("unknown condition", counts, {"condition": "c"}, "column 'c' (condition) not found"),
        ("duplicate cells", counts_with("problem_id", 3, "a"), {}, "rows 0 and 3|duplicate cell"),
        ("zero count rows", counts.iloc[:0], {}, "zero rows"),
        ("correct 2", rolls_with("correct", 1, 2), {}, "column 'correct', row 1|got 2"),
        ("correct -1", rolls_with("correct", 2, -1), {}, "column 'correct', row 2|got -1"),
        ("correct 0.5", rolls_with("correct", 3, 0.5), {}, "column 'correct', row 3|got 0.5"),
        ("nan correct", rolls_with("correct", 2, None), {}, "column 'correct', row 2|missing"),
        ("nan rollout problem", rolls_with("problem_id", 3, None), {}, "'problem_id', row 3"),
        (
            "repeated sample",
            rolls_with("sample_idx", 1, 0),
            {"sample": "sample_idx"},
            "column 'sample_idx', row 1|repeats row 0",
        ),
        ("unknown sample", rolls, {"sample": "s"}, "column 's' (sample) not found"),
        ("unknown correct", rolls, {"correct": "ok"}, "column 'ok' (correct) not found"),
        ("zero rollout rows", rolls.iloc[:0], {}, "zero rows"),
    ]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
@pytest.mark.parametrize(
    ("frame", "kwargs", "match"),
    [case[1:] for case in bad_file_cases()],
    ids=[case[0] for case in bad_file_cases()],
)
def test_bad_input_files(tmp_path, fmt, frame, kwargs, match):
    """Every bad input gives one DataError line naming the row or column, in every format."""
    path = tmp_path / f"bad.{fmt}"
    _write(frame, path, fmt)
    one_line_error(match, read_rollouts, path, **kwargs)


def test_bad_rollout_frames():
    """from_rollouts: the same bad inputs as a DataFrame (the files above reach it too)."""
    for frame, kwargs, match in [case[1:] for case in bad_file_cases()]:
        if "correct" in frame.columns or kwargs.get("correct"):
            one_line_error(match, RolloutData.from_rollouts, frame, **kwargs)


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl", "empty.parquet"])
def test_empty_files(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    one_line_error(f"{name}: empty file|zero rows", read_rollouts, tmp_path / name)


def test_io_is_reexported_by_data():
    """File reading moved to bayes_regimes.io; the old import paths still work."""
    import bayes_regimes
    import bayes_regimes.io as io_module

    assert read_rollouts is io_module.read_rollouts is bayes_regimes.read_rollouts
    assert validate_columns is io_module.validate_columns
    assert detect_input_kind is io_module.detect_input_kind


def test_data_module_does_not_import_pymc():
    code = (
        "import sys, bayes_regimes.data, bayes_regimes.io; "
        "bad = [m for m in ('pymc', 'pytensor', 'arviz') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scales_to_a_million_count_rows():
    rng = np.random.default_rng(0)
    size = 10**6
    df = pd.DataFrame(
        {
            "problem_id": np.arange(size),
            "model": rng.choice(["a", "b", "c"], size),
            "n": rng.integers(1, 10**9, size),
        }
    )
    df["k"] = (df["n"] * rng.random(size)).astype(np.int64)
    start = time.perf_counter()
    data = RolloutData.from_counts(df, group="model")
    data.patterns()
    assert time.perf_counter() - start < 20
    assert data.n_cells == size and data.cells["n"].sum() == df["n"].sum()


# --------------------------------------------------------------------------- real data


def test_real_cruxeval_per_sample(shared_data):
    path = shared_data / "cruxeval" / "cruxeval_codellama7b_per_sample.csv"
    data = read_rollouts(path, problem=["benchmark", "problem_id"], sample="sample_idx")
    assert data.n_cells == 1600
    assert (data.cells["n"] == 10).all()
    assert data.n_rollouts == 16_000
    assert data.cells["problem"].iloc[0] == "CRUXEval-I/0"
    assert data.features == []
    raw = pd.read_csv(path)
    assert data.cells["k"].sum() == raw["correct"].sum()


def test_real_monkeys_counts(shared_data):
    path = shared_data / "large_language_monkeys" / "monkeys_pythia_math_n10000.csv"
    data = read_rollouts(path, group="model")
    assert data.n_cells == 896
    assert len(data.strata) == 7
    assert (data.cells["n"] == 10_000).all()
    assert data.patterns().table["count"].sum() == 896
    raw = pd.read_csv(path)
    assert data.strata == list(raw["model"].drop_duplicates())
