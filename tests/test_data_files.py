"""Tests of the data layer's files: column detection, reading files, bad files, real data."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from _datahelp import one_line_error, random_rollouts, with_values  # noqa: E402

from bayes_regimes.data import (
    RolloutData,
    detect_input_kind,
    read_rollouts,
    validate_columns,
)

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
