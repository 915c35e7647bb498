"""Tests of the threaded read-ahead and the fast per-batch kernels of the streamed reduction.

References: pandas ``groupby`` on the same rows (counts), ``RolloutData.from_rollouts``
on the rows in scan order (cells, order, features), the single-threaded reduction
(``threads=0``), and brute-force duplicate search (the repeated-sample check).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from bayes_regimes import _keyindex
from bayes_regimes._keyindex import read_ahead
from bayes_regimes.data import RolloutData
from bayes_regimes.errors import DataError
from bayes_regimes.reduce import reduce_rollouts

THREADS = [0, 1, 2, 3]


def _write_hive(df: pd.DataFrame, root: Path, files_per_part: int, row_group: int) -> None:
    """Write ``df`` as ``root/model=<m>/part-<i>.parquet`` (row groups of ``row_group`` rows)."""
    for model, part in df.groupby("model", sort=True):
        folder = root / f"model={model}"
        folder.mkdir(parents=True)
        chunks = np.array_split(np.arange(len(part)), files_per_part)
        for i, chunk in enumerate(chunks):
            table = pa.Table.from_pandas(
                part.iloc[chunk].drop(columns="model"), preserve_index=False
            )
            pq.write_table(table, folder / f"part-{i:02d}.parquet", row_group_size=row_group)


def _scan_rows(root: Path) -> pd.DataFrame:
    """The rows in scan order, hive columns appended (the reduction's reference order)."""
    files = sorted(str(p) for p in root.rglob("*.parquet"))
    dataset = ds.dataset(files, partitioning="hive", partition_base_dir=str(root))
    return dataset.to_table().to_pandas()


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Random rollouts: 3 models x 300 problems, 0-9 samples each, 4 files per model."""
    rng = np.random.default_rng(11)
    rows = []
    for model in ("m0", "m1", "m2"):
        for p in range(300):
            count = int(rng.integers(0, 10))
            samples = rng.permutation(40)[:count]  # distinct, with gaps, not first-seen order
            for s in samples:
                rows.append((f"q{p:03d}", model, int(s), bool(rng.random() < 0.35), p % 3))
    df = pd.DataFrame(rows, columns=["problem_id", "model", "sample", "correct", "level"])
    df = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    root = tmp_path_factory.mktemp("threads") / "logs"
    _write_hive(df, root, files_per_part=4, row_group=97)
    return root, _scan_rows(root)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("batch_size", [13, 1 << 20])
def test_counts_match_pandas_groupby(logs, threads, batch_size):
    root, rows = logs
    got = reduce_rollouts(
        root, group="model", sample="sample", threads=threads, batch_size=batch_size, progress=False
    )
    expected = RolloutData.from_rollouts(rows, group="model", sample="sample")
    assert got == expected and got.features == expected.features == ["level"]
    truth = rows.groupby(["problem_id", "model"])["correct"].agg(["size", "sum"])
    cells = got.cells.set_index(["problem", "group"])[["n", "k"]]
    truth.index.names = cells.index.names
    pd.testing.assert_frame_equal(
        cells.sort_index(), truth.rename(columns={"size": "n", "sum": "k"}).sort_index()
    )


def test_threads_do_not_change_results_or_order(logs):
    root, _ = logs
    runs = [
        reduce_rollouts(root, group="model", features=[], threads=t, batch_size=50, progress=False)
        for t in THREADS
    ]
    for run in runs[1:]:
        assert run == runs[0]
        assert run.cells["problem"].tolist() == runs[0].cells["problem"].tolist()


def test_threads_validated(logs):
    with pytest.raises(DataError, match="threads must be a non-negative integer"):
        reduce_rollouts(logs[0], threads=-1, progress=False)


# ------------------------------------------------------------------ read_ahead


def test_read_ahead_keeps_stream_order():
    def slow(values, pause):
        def opened():
            for v in values:
                time.sleep(pause)
                yield v

        return opened

    streams = [(i, slow(range(10 * i, 10 * i + 5), 0.001 * (i % 3))) for i in range(7)]
    for workers in (0, 1, 2, 4, 10):
        got = list(read_ahead(streams, workers=workers, depth=2))
        assert got == [(i, v) for i in range(7) for v in range(10 * i, 10 * i + 5)]
    assert list(read_ahead([], workers=2)) == []


def test_read_ahead_errors_come_in_stream_order_and_threads_stop():
    def broken():
        yield "x"
        raise OSError("disk")

    endless_started = threading.Event()

    def endless():
        endless_started.set()
        i = 0
        while True:
            i += 1
            yield i

    before = threading.active_count()
    streams = [("a", lambda: ["a0", "a1"]), ("b", broken), ("c", endless)]
    seen = []
    with pytest.raises(OSError, match="disk"):
        for _tag, item in read_ahead(streams, workers=2, depth=1):
            seen.append(item)
    assert seen == ["a0", "a1", "x"]  # everything before the error, in order
    # the consumer stopping early (an error of its own) stops the producers too
    reader = read_ahead([("c", endless), ("d", endless)], workers=2, depth=3)
    assert next(reader) == ("c", 1)
    reader.close()
    assert endless_started.is_set()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


# ------------------------------------------------------------------ bad rows, in scan order


@pytest.mark.parametrize("threads", THREADS)
def test_first_bad_row_in_scan_order_is_reported(tmp_path, threads):
    """Bad rows in two files decoded concurrently: the earlier file's is named."""
    rng = np.random.default_rng(5)
    for i in range(4):
        correct = rng.integers(0, 2, 300).astype(float)
        if i in (1, 3):
            correct[[130, 250]] = [np.nan, 7.0] if i == 1 else [5.0, 5.0]
        df = pd.DataFrame({"problem_id": rng.integers(0, 20, 300).astype(str), "correct": correct})
        pq.write_table(pa.Table.from_pandas(df), tmp_path / f"part-{i}.parquet", row_group_size=100)
    with pytest.raises(DataError) as info:
        reduce_rollouts(tmp_path, threads=threads, batch_size=64, progress=False)
    message = str(info.value)
    assert "part-1.parquet', row group 1, row 30" in message
    assert "missing value for correct" in message and "\n" not in message
    readers = [t for t in threading.enumerate() if t.name.startswith("bayes-regimes-read")]
    assert not readers  # stopped, although the error (and its traceback) is still alive


# ------------------------------------------------------------------ the repeated-sample check


def _first_repeat(rows: pd.DataFrame, keys: list[str]) -> int:
    """Index (in scan order) of the first row repeating an earlier (cell, sample)."""
    return int(np.flatnonzero(rows.duplicated([*keys, "sample"]).to_numpy())[0])


@pytest.mark.parametrize("spread", [65536, -(10**9)])  # bits set per batch span, or hashed
@pytest.mark.parametrize("kind", ["dense", "sparse", "strings", "offset", "unsigned"])
def test_repeated_sample_found_at_the_first_repeat(tmp_path, spread, kind, monkeypatch):
    """Random logs with one repeat injected: the error names exactly that row."""
    monkeypatch.setattr(_keyindex.Bits, "SPREAD", spread)
    rng = np.random.default_rng(["dense", "sparse", "strings", "offset", "unsigned"].index(kind))
    problems = rng.integers(0, 10**9, 60) if kind == "sparse" else np.arange(60)
    rows = []
    for p in problems:
        for s in rng.permutation(30)[: rng.integers(1, 12)]:
            rows.append((p, int(s)))
    df = pd.DataFrame(rows, columns=["problem_id", "sample"]).sample(frac=1.0, random_state=0)
    df = df.reset_index(drop=True)
    if kind == "strings":
        df["sample"] = "s" + df["sample"].astype(str)
    elif kind == "offset":  # large and negative sample numbers
        df["sample"] = df["sample"] * 7_919_000 - 10**8
    elif kind == "unsigned":
        df["sample"] = df["sample"].astype(np.uint16)
    df["correct"] = rng.random(len(df)) < 0.5
    clean = tmp_path / "clean"
    clean.mkdir()
    pq.write_table(pa.Table.from_pandas(df), clean / "part-0.parquet", row_group_size=64)
    got = reduce_rollouts(clean, sample="sample", batch_size=40, threads=2, progress=False)
    assert got == RolloutData.from_rollouts(df, sample="sample")
    at = int(rng.integers(len(df) // 2, len(df)))
    bad = df.copy()
    bad.loc[at, ["problem_id", "sample"]] = bad.loc[
        int(rng.integers(0, at)), ["problem_id", "sample"]
    ]
    row = _first_repeat(bad, ["problem_id"])
    folder = tmp_path / "bad"
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(bad), folder / "part-0.parquet", row_group_size=64)
    for batch_size in (40, 1 << 20):
        with pytest.raises(DataError) as info:
            reduce_rollouts(folder, sample="sample", batch_size=batch_size, progress=False)
        message = str(info.value)
        assert f"row group {row // 64}, row {row % 64}: sample" in message, message
        assert "repeats file" in message and "\n" not in message


def test_bits_add_cells_against_brute_force():
    """Random (cell, code) sets: a repeat is reported exactly when one exists."""
    rng = np.random.default_rng(9)
    for trial in range(200):
        bits = _keyindex.Bits()
        seen: set = set()
        for _ in range(4):
            size = int(rng.integers(1, 12))
            cells = rng.permutation(40)[:size]
            local = np.sort(rng.permutation(size + 3)[:size]) if trial % 2 else None
            width = bits.reserve(int(cells.max()), int(rng.integers(1, 30)))
            rows = int(rng.integers(1, 25))
            key = rng.integers(0, size, rows)
            codes = rng.integers(0, width, rows)
            pairs = list(zip(cells[key].tolist(), codes.tolist(), strict=True))
            repeat = len(set(pairs)) < rows or bool(seen & set(pairs))
            span = size + 3 if local is not None else size
            local_key = local[key] if local is not None else key
            assert bits.add_cells(cells, local, span, local_key, codes) == repeat
            with pytest.raises(IndexError, match="outside the bit block"):  # a defect
                bits.add_cells(cells, local, span, local_key, codes + 8 * bits.width)
            if not repeat:
                seen |= set(pairs)
            stored = {
                (c, b)
                for c in range(len(bits.a) // bits.width)
                for b in range(8 * bits.width)
                if bits.a[c * bits.width + b // 8] >> (b % 8) & 1
            }
            assert stored == seen


def test_repeat_in_an_earlier_batch(logs):
    """A sample repeated many batches later is found by the compiled bit pass."""
    root, rows = logs
    got = reduce_rollouts(root, group="model", sample="sample", batch_size=500, progress=False)
    assert got == RolloutData.from_rollouts(rows, group="model", sample="sample")
    bad = rows.copy()
    bad.loc[len(bad) - 1, ["problem_id", "model", "sample"]] = bad.loc[
        0, ["problem_id", "model", "sample"]
    ]
    folder = root.parent / "repeat-bad"
    _write_hive(bad, folder, files_per_part=1, row_group=10_000)
    with pytest.raises(DataError, match="repeats file"):
        reduce_rollouts(folder, group="model", sample="sample", batch_size=500, progress=False)


def test_count_keys_and_first_rows_against_brute_force():
    """The per-batch counting kernel: counts, successes, present keys and first rows
    equal plain Python loops; a key outside the space is a defect, never a miscount."""
    from bayes_regimes import _batchcount as bc

    with pytest.raises(AssertionError, match="row 1: local key 3 outside 0 .. 2"):
        bc.count_keys(np.array([0, 3, 1]), 3, np.zeros(3, np.uint8))
    with pytest.raises(AssertionError, match="row 2: .* or outcome 2"):
        bc.count_keys(np.array([0, 1, 1]), 3, np.array([0, 1, 2], np.uint8))
    rng = np.random.default_rng(5)
    for dtype, size in [(np.int32, 50), (np.int64, 7), (np.int32, 1)]:
        key = rng.integers(0, size, 400).astype(dtype)
        key[key == size // 2] = 0  # an absent key
        outcome = (rng.random(400) < 0.3).astype(np.uint8)
        counts, ks, present, first = bc.count_keys(key, size, outcome)
        expect_present = sorted(set(key.tolist()))
        assert present.tolist() == expect_present
        assert counts.tolist() == [int((key == v).sum()) for v in expect_present]
        assert ks.tolist() == [int(outcome[key == v].sum()) for v in expect_present]
        assert first.tolist() == [key.tolist().index(v) for v in expect_present]
    # A key first seen on the last row.
    key = np.zeros(100_000, dtype=np.int64)
    key[-1] = 1
    assert bc.count_keys(key, 2, np.zeros(100_000, np.uint8))[3].tolist() == [0, 99_999]


def test_kernels_without_a_writable_cache(tmp_path):
    """Where numba finds no cache directory it can write (read-only install and home),
    the kernels compile per process and the reduction still runs."""
    import subprocess
    import sys

    path = tmp_path / "r.parquet"
    pd.DataFrame({"problem_id": ["a", "b", "a"], "correct": [True, False, True]}).to_parquet(path)
    code = (
        "from bayes_regimes.reduce import reduce_rollouts; "
        f"d = reduce_rollouts({str(path)!r}, progress=False); "
        "print(d.cells[['problem', 'n', 'k']].values.tolist())"
    )
    # Only the IPython locator: no cache location for a regular file, as when read-only.
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="IPythonCacheLocator")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[['a', 2, 2], ['b', 1, 0]]"
