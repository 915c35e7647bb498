"""Tests of the streamed and distributed reduction of Parquet rollout datasets.

The reference everywhere is the in-memory data layer: ``RolloutData.from_rollouts`` /
``from_counts`` on the same rows concatenated in scan order (files in lexicographic
path order). Errors must name the file, the row group and the row within it.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from _datahelp import one_line_error  # noqa: E402

from bayes_regimes import _keyindex
from bayes_regimes.cli import _read_input, build_parser
from bayes_regimes.data import RolloutData, read_rollouts
from bayes_regimes.reduce import reduce_rollouts


def rollouts(seed: int = 0, problems: int = 40) -> pd.DataFrame:
    """Per-rollout rows in random order: 2 models x 2 conditions, 1-6 samples per cell."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in rng.permutation(problems):
        for g in ("a", "b"):
            for c in ("x", "y"):
                for s in range(int(rng.integers(1, 7))):
                    rows.append((f"q{p}", g, c, s, bool(rng.random() < 0.3), float(p % 4), p))
    names = ["problem_id", "model", "cond", "sample", "correct", "level", "pid"]
    df = pd.DataFrame(rows, columns=names)
    df["noise"] = rng.normal(size=len(df))  # numeric but varying: never a feature
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_parts(df: pd.DataFrame, folder: Path, parts: int, row_group: int) -> list[Path]:
    """Split rows into files part-<i>.parquet (i in reverse order of the rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), parts)):
        path = folder / f"part-{parts - 1 - i}.parquet"  # reversed: scan order != write order
        table = pa.Table.from_pandas(df.iloc[chunk], preserve_index=False)
        pq.write_table(table, path, row_group_size=row_group)
        paths.append(path)
    return sorted(paths)


def concat(paths: list[Path]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


error = one_line_error


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """Five files with row groups of 37 rows; the rows they hold, in scan order."""
    folder = tmp_path_factory.mktemp("plain")
    paths = write_parts(rollouts(), folder, parts=5, row_group=37)
    return folder, concat(paths)


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


KEYS = {"group": "model", "condition": "cond"}


# ------------------------------------------------------------------ identity


@pytest.mark.parametrize("batch_size", [5, 64, 1 << 20])
def test_matches_in_memory_reduction(plain, batch_size):
    folder, rows = plain
    for kwargs in ({}, {"sample": "sample"}, {"features": ["level"]}, {"features": []}):
        expected = RolloutData.from_rollouts(rows, **KEYS, **kwargs)
        got = reduce_rollouts(folder, **KEYS, **kwargs, batch_size=batch_size, progress=False)
        assert got == expected
        assert got.features == expected.features
    # auto features: constant numeric columns kept, varying ones ('noise', 'sample') dropped
    assert got.features == [] and expected.features == []
    auto = reduce_rollouts(folder, **KEYS, batch_size=batch_size, progress=False)
    assert auto.features == ["level", "pid"]


def test_first_appearance_order_is_scan_order(plain):
    folder, rows = plain
    got = reduce_rollouts(folder, progress=False, features=[])
    first = rows.drop_duplicates("problem_id")["problem_id"].tolist()
    assert got.cells["problem"].tolist() == first
    assert got.n_rollouts == len(rows)
    assert got.cells["k"].sum() == rows["correct"].sum()


def test_several_problem_columns_and_integer_keys(plain):
    folder, rows = plain
    for problem in (["problem_id", "model"], "pid", ["pid", "cond"]):
        expected = RolloutData.from_rollouts(rows, problem=problem, features=[])
        got = reduce_rollouts(folder, problem=problem, features=[], batch_size=16, progress=False)
        assert got == expected


def test_cells_first_met_late_in_a_big_batch(tmp_path):
    rng = np.random.default_rng(7)
    late = [f"z{i}" for i in rng.permutation(50)]  # new cells first met after the head
    problems = ["a"] * 9000 + ["b"] * 3000 + late * 40 + ["a", "c"] * 500
    df = pd.DataFrame({"problem_id": problems, "correct": rng.random(len(problems)) < 0.5})
    paths = write_parts(df, tmp_path, parts=1, row_group=len(df))
    got = reduce_rollouts(tmp_path, features=[], progress=False)
    assert got == RolloutData.from_rollouts(concat(paths), features=[])
    assert got.cells["problem"].tolist()[:4] == ["a", "b", late[0], late[1]]


def test_sparse_key_space_and_hashed_cells(tmp_path, monkeypatch):
    """Many distinct keys per batch (compacted keys) and the hash map of cells."""
    rng = np.random.default_rng(3)
    size = 6000
    df = pd.DataFrame(
        {
            "problem_id": rng.integers(0, 10**9, size),  # sparse integers: factorized
            "model": [f"m{i}" for i in rng.integers(0, 3000, size)],
            "correct": rng.integers(0, 2, size),
        }
    )
    paths = write_parts(df, tmp_path, parts=3, row_group=1000)
    expected = RolloutData.from_rollouts(concat(paths), group="model", features=[])
    got = reduce_rollouts(tmp_path, group="model", features=[], progress=False)
    assert got == expected
    monkeypatch.setattr(_keyindex.CellIndex, "LIMIT", 64)  # table -> hash mid-stream
    again = reduce_rollouts(tmp_path, group="model", features=[], batch_size=500, progress=False)
    assert again == expected


def test_string_map_against_a_dict(plain):
    """Compiled string ids equal a dict's, through table growth, sliced and large
    strings, values first added from Python lists, and a forced full-hash collision."""
    from bayes_regimes import _kernels

    rng = np.random.default_rng(3)
    vocab = ["", "a", "ab", "ba", "é", "problem_1"] + [f"p{i}" for i in range(3000)]
    index, expect = _keyindex.ValueIndex(), {}
    for step in range(12):
        words = [vocab[i] for i in rng.integers(0, 6 + 250 * (step + 1), 700)]
        arr = pa.array(["pad", "pad"] + words).slice(2)  # an offset into the buffers
        if step % 3 == 1:
            arr = arr.cast(pa.large_string())
        if step % 4 == 2:  # the Python path, interleaved
            assert index.get_or_add(words[:50]).tolist() == [
                expect.setdefault(w, len(expect)) for w in words[:50]
            ]
        got = index.get_or_add_arrow(arr)
        assert got.tolist() == [expect.setdefault(w, len(expect)) for w in words]
    assert index.values().tolist() == list(expect)
    hashes = _kernels.string_hashes(pa.array(["a", "b", "a", ""]))
    assert hashes[0] == hashes[2] and len(set(hashes.tolist())) == 3
    # Equal hashes, different bytes: "b" must not be taken for "a".
    strings = _kernels.StringMap()
    assert strings.find_or_add(pa.array(["a"])).tolist() == [0]
    strings.hashes[0] = _kernels.string_hashes(pa.array(["b"]))[0]
    strings.slots[:] = -1
    _kernels._rehash(strings.hashes, strings.count, strings.slots)
    assert strings.find_or_add(pa.array(["b", "b"])).tolist() == [1, 1]
    folder, rows = plain  # end to end, many small batches
    got = reduce_rollouts(folder, **KEYS, sample="sample", batch_size=16, progress=False)
    assert got == RolloutData.from_rollouts(rows, **KEYS, sample="sample")


def test_hive_partitions_glob_and_read_rollouts(tmp_path):
    df = rollouts(seed=1)
    df["shard"] = df["pid"] % 3
    df["sample"] = df.groupby(["problem_id", "model"]).cumcount()  # unique within a cell
    table = pa.Table.from_pandas(df, preserve_index=False)
    for model in ("a", "b"):
        pq.write_to_dataset(
            table.slice(0, 200) if model == "a" else table.slice(200, 150),
            tmp_path / "logs",
            partition_cols=["shard"],
            basename_template=f"{model}-{{i}}.parquet",
        )
    dataset = ds.dataset(
        sorted(str(p) for p in (tmp_path / "logs").rglob("*.parquet")),
        partitioning="hive",
        partition_base_dir=str(tmp_path / "logs"),
    )
    rows = dataset.to_table().to_pandas()  # partition columns are typed (shard: int32)
    keys = {"group": "model", "condition": "shard", "sample": "sample"}
    expected = RolloutData.from_rollouts(rows, **keys)
    got = reduce_rollouts(tmp_path / "logs", **keys, progress=False)
    assert got == expected and got.features == expected.features == ["level", "pid"]
    assert got.cells["condition"].isin(["0", "1", "2"]).all()
    assert read_rollouts(tmp_path / "logs", **keys) == expected
    first = tmp_path / "logs" / "shard=0" / "a-0.parquet"
    pq.write_table(pq.read_table(first).slice(0, 1), first.with_name("c-0.parquet"))
    error(
        "column 'sample'|shard=0/c-0.parquet', row group 0, row 0|repeats file|"
        "shard=0/a-0.parquet', row group 0, row 0|condition=0",
        reduce_rollouts,
        tmp_path / "logs",
        **keys,
        batch_size=10,
        progress=False,
    )
    first.with_name("c-0.parquet").unlink()
    subset = reduce_rollouts(str(tmp_path / "logs" / "shard=1" / "*.parquet"), progress=False)
    assert subset.cells["condition"].unique().tolist() == ["default"]
    assert subset.n_rollouts == int((rows["shard"] == 1).sum())


def test_single_file_and_read_rollouts_agree(tmp_path):
    df = rollouts(seed=2)
    path = tmp_path / "one.parquet"
    df.to_parquet(path, row_group_size=50)
    assert reduce_rollouts(path, **KEYS, progress=False) == read_rollouts(path, **KEYS)


def test_remote_paths_through_fsspec(plain):
    folder, rows = plain
    expected = RolloutData.from_rollouts(rows, **KEYS, sample="sample")
    url = f"file://{folder}"
    assert reduce_rollouts(url, **KEYS, sample="sample", progress=False) == expected
    memory = fsspec.filesystem("memory")
    for path in sorted(folder.glob("*.parquet")):
        memory.pipe(f"/reduce-test/logs/{path.name}", path.read_bytes())
    got = reduce_rollouts(
        "memory://reduce-test/logs", **KEYS, sample="sample", batch_size=20, progress=False
    )
    assert got == expected
    bad = rows.assign(correct=rows["correct"].astype(int))
    bad.loc[45, "correct"] = 3
    memory.pipe("/reduce-test/bad/x.parquet", _parquet_bytes(bad, row_group=40))
    error(
        "column 'correct'|/reduce-test/bad/x.parquet|row group 1, row 5|got 3",
        reduce_rollouts,
        "memory://reduce-test/bad",
        progress=False,
    )


def _parquet_bytes(df: pd.DataFrame, row_group: int) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink, row_group_size=row_group)
    return sink.getvalue().to_pybytes()


def test_counts_datasets(tmp_path):
    counts = pd.DataFrame(
        {"problem_id": ["p1", "p2", "p1", "p3"], "n": [4, 5, 6, 2], "k": [1, 0, 2, 2]}
    )
    paths = write_parts(counts, tmp_path / "c", parts=2, row_group=1)
    rows = concat(paths)
    got = reduce_rollouts(tmp_path / "c", duplicates="sum", progress=False)
    assert got == RolloutData.from_counts(rows, duplicates="sum")
    error(
        "part-0.parquet', row group 0, row 0 and |part-1.parquet', row group 0, row 0|"
        "duplicate cell|problem='p1'|duplicates='sum'",
        reduce_rollouts,
        tmp_path / "c",
        progress=False,
    )
    write_parts(counts.assign(k=[1, 0, 7, 2]), tmp_path / "over", parts=1, row_group=3)
    error(
        "column 'k'|part-0.parquet', row group 0, row 2|k=7 exceeds n=6",
        reduce_rollouts,
        tmp_path / "over",
        duplicates="sum",
        progress=False,
    )
    write_parts(counts.assign(n=0, k=0), tmp_path / "zero", parts=1, row_group=3)
    error("summed n=0 but a cell needs n >= 1", read_rollouts, tmp_path / "zero", duplicates="sum")


# ------------------------------------------------------------------ bad rows


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "missing value for correct"), (2, "got 2"), (0.5, "got 0.5"), ("maybe", "got 'maybe'")],
)
def test_bad_outcomes_name_file_row_group_and_row(tmp_path, value, message):
    df = rollouts(seed=4).iloc[:90].reset_index(drop=True)
    column = df["correct"].astype(object if isinstance(value, str) else float)
    if isinstance(value, str):
        column = column.map({True: "true", False: "false"})
    df["correct"] = column
    df.loc[77, "correct"] = value  # file part-0 holds rows 60..89: row 17, row group 1, row 7
    write_parts(df, tmp_path, parts=3, row_group=10)
    error(
        f"column 'correct'|part-0.parquet', row group 1, row 7|{message}",
        reduce_rollouts,
        tmp_path,
        batch_size=4,
        progress=False,
    )


@pytest.mark.parametrize("spread", [65536, -(10**9)])  # bitmap bytes counted, or hashed
def test_repeated_samples_and_missing_keys(tmp_path, monkeypatch, spread):
    monkeypatch.setattr(_keyindex.Bits, "SPREAD", spread)
    df = pd.DataFrame(
        {"problem_id": ["p"] * 6, "sample": [0, 1, 2, 3, 1, 4], "correct": [1, 0, 0, 1, 1, 0]}
    )
    write_parts(df, tmp_path / "across", parts=1, row_group=3)
    error(
        "column 'sample'|row group 1, row 1|sample 1 repeats file|row group 0, row 1|problem='p'",
        reduce_rollouts,
        tmp_path / "across",
        sample="sample",
        batch_size=2,
        progress=False,
    )
    write_parts(df, tmp_path / "within", parts=1, row_group=6)
    error(
        "column 'sample'|row group 0, row 4|sample 1 repeats file|row group 0, row 1",
        read_rollouts,
        tmp_path / "within",
        sample="sample",
    )
    missing = df.assign(problem_id=["p", "p", None, "q", "q", "q"])
    write_parts(missing, tmp_path / "missing", parts=1, row_group=2)
    error(
        "column 'problem_id'|row group 1, row 0|missing value",
        reduce_rollouts,
        tmp_path / "missing",
        progress=False,
    )
    varying = df.assign(sample=range(6), level=[1.0, 1.0, 1.0, 2.0, 1.0, 1.0])
    write_parts(varying, tmp_path / "feature", parts=1, row_group=2)
    clean = reduce_rollouts(tmp_path / "feature", sample="sample", batch_size=3, progress=False)
    assert clean == RolloutData.from_rollouts(varying, sample="sample")
    error(
        "column 'level'|row group 0, row 0 and |row group 1, row 1|conflicting feature values",
        reduce_rollouts,
        tmp_path / "feature",
        features=["level"],
        progress=False,
    )


def test_bad_inputs(tmp_path):
    error("no such file", reduce_rollouts, tmp_path / "absent", progress=False)
    (tmp_path / "empty").mkdir()
    error("no data files", reduce_rollouts, tmp_path / "empty", progress=False)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "x.parquet").write_text("not parquet")
    error("cannot read", reduce_rollouts, tmp_path / "text", progress=False)
    write_parts(rollouts().iloc[:20], tmp_path / "ok", parts=1, row_group=10)
    error(
        "column 'outcome' (correct) not found", reduce_rollouts, tmp_path / "ok", correct="outcome"
    )
    error("batch_size must be a positive integer", reduce_rollouts, tmp_path / "ok", batch_size=0)
    error("format='csv' is not", read_rollouts, tmp_path / "ok", format="csv")


# ------------------------------------------------------------------ memory, progress


def _peak(folder: Path, batch_size: int) -> tuple[int, RolloutData]:
    tracemalloc.start()
    data = reduce_rollouts(folder, features=[], batch_size=batch_size, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, data


def test_memory_does_not_grow_with_rows(tmp_path):
    """Twice the rows (same cells, twice the samples) -> about the same peak memory."""
    rng = np.random.default_rng(5)
    problems = 500
    for copies, name in ((1, "small"), (2, "large")):
        for part in range(copies * 4):
            pid = np.repeat(np.arange(problems), 100)
            table = pa.table(
                {
                    "problem_id": pa.array([f"p{i}" for i in range(problems)]).take(pid),
                    "correct": rng.random(len(pid)) < 0.4,
                }
            )
            folder = tmp_path / name
            folder.mkdir(exist_ok=True)
            pq.write_table(table, folder / f"part-{part}.parquet", row_group_size=10_000)
    batch = 2048
    small, data_small = _peak(tmp_path / "small", batch)
    large, data_large = _peak(tmp_path / "large", batch)
    assert data_small.n_rollouts == 200_000 and data_large.n_rollouts == 400_000
    assert data_large.n_cells == data_small.n_cells == problems
    assert large < 1.25 * small + 256 * 1024, (small, large)
    assert large < 8 * 400_000  # far below the rows themselves (8 bytes each as int64)


def test_progress_callback_and_bar(plain, capsys):
    folder, rows = plain
    seen = []
    reduce_rollouts(folder, batch_size=50, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 5 and seen[-1] == (len(rows), len(rows))
    assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:], strict=False))
    reduce_rollouts(folder, batch_size=50, progress=True)  # a tqdm bar on stderr
    assert "row" in capsys.readouterr().err


def test_command_line_reads_datasets(plain, tmp_path):
    folder, rows = plain
    argv = ["fit", str(folder), "--out", str(tmp_path), "--quiet", *_group_args()]
    assert _read_input(build_parser().parse_args(argv)) == RolloutData.from_rollouts(rows, **KEYS)
    pattern = str(folder / "part-[01].parquet")
    argv = ["fit", pattern, "--out", str(tmp_path), "--quiet", "--problem", "problem_id,model"]
    expected = reduce_rollouts(pattern, problem=["problem_id", "model"], progress=False)
    assert _read_input(build_parser().parse_args(argv)) == expected
    assert expected.n_rollouts == len(pd.read_parquet(folder / "part-0.parquet")) + len(
        pd.read_parquet(folder / "part-1.parquet")
    )


# ------------------------------------------------------------------ dask


def test_dask_matches_single_machine(plain, cluster, tmp_path):
    folder, rows = plain
    for kwargs in ({"sample": "sample"}, {}, {"problem": ["pid", "level"], "features": []}):
        single = reduce_rollouts(folder, **KEYS, **kwargs, batch_size=16, progress=False)
        dist = reduce_rollouts(folder, **KEYS, **kwargs, batch_size=16, client=cluster)
        assert dist == single and dist.features == single.features
    address = cluster.scheduler.address
    counts = RolloutData.from_rollouts(rows, **KEYS).to_frame()
    counts = pd.concat([counts, counts]).drop(columns=["group", "condition"])
    counts = counts.rename(columns={"problem": "problem_id"})
    write_parts(counts, tmp_path / "counts", parts=4, row_group=30)
    summed = reduce_rollouts(tmp_path / "counts", duplicates="sum", progress=False)
    assert reduce_rollouts(tmp_path / "counts", duplicates="sum", client=address) == summed
    args = build_parser().parse_args(
        ["fit", str(folder), "--out", str(tmp_path), "--dask", address, *_group_args()]
    )
    assert _read_input(args) == reduce_rollouts(folder, **KEYS, progress=False)


def _group_args() -> list[str]:
    return ["--group", "model", "--condition", "cond"]


def _where(paths: list[Path], mask, row_group: int) -> tuple[str, str]:
    """(file name, 'row group g, row r') of each row where mask(frame) holds."""
    found = []
    for path in paths:
        for row in np.flatnonzero(mask(pd.read_parquet(path))):
            found.append((path.name, f"row group {row // row_group}, row {row % row_group}"))
    return found


def test_dask_errors_name_the_file(plain, cluster, tmp_path):
    folder, rows = plain
    bad = rows.assign(correct=rows["correct"].astype(int))
    bad.loc[len(rows) - 3, "correct"] = 5
    paths = write_parts(bad, tmp_path / "bad", parts=5, row_group=37)
    [(name, where)] = _where(paths, lambda t: t["correct"] == 5, 37)
    error(
        f"column 'correct'|{name}', {where}|got 5",
        reduce_rollouts,
        tmp_path / "bad",
        client=cluster,
    )
    repeated = rows.copy()
    repeated.loc[len(rows) - 1] = repeated.loc[0]  # the first row again, in another file
    paths = write_parts(repeated, tmp_path / "repeat", parts=5, row_group=37)
    first, second = _where(paths, lambda t: (t == repeated.loc[0]).all(axis=1), 37)
    expected = f"column 'sample'|{second[0]}', {second[1]}|repeats file|{first[0]}', {first[1]}"
    for client in (cluster, None):
        error(
            expected,
            reduce_rollouts,
            tmp_path / "repeat",
            **KEYS,
            sample="sample",
            client=client,
            progress=False,
        )
