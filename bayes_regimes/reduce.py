"""Reduce rollout logs larger than memory to per-cell counts, streamed or on a Dask cluster.

The likelihood needs only ``(n, k)`` per cell, so a rollout log of any size is read
once: :func:`reduce_rollouts` scans a Parquet dataset (one file, a directory tree,
hive-partitioned or not, or a glob) batch by batch with ``pyarrow.dataset`` and keeps
only per-cell state (see ``_streaming.py``). Paths go through fsspec, so ``s3://``,
``gs://``, ``memory://`` and ``file://`` URLs work like local paths.

Order
    Files are read in lexicographic order of their paths (names starting with ``.``
    or ``_`` are skipped), row groups in file order, rows in row-group order. Cells
    are numbered in order of first appearance in that scan, so the result equals
    :meth:`RolloutData.from_rollouts` (or ``from_counts``) on the rows of the files
    concatenated in that order, hive partition columns appended as typed columns
    (what ``pyarrow.dataset.dataset(files, partitioning="hive").to_table()`` gives).
Threads
    ``threads`` files are decoded ahead, each by a thread streaming its batches into
    a short queue (pyarrow decodes without the GIL), while the calling thread reduces
    the batches in scan order; errors therefore still come in scan order.
Memory
    Bounded by the batch size, the read-ahead queues and the number of cells, not
    by the number of rows. Only the optional ``sample=`` check grows with the rows:
    one bit per (cell, distinct sample value), ``rows / 8`` bytes when samples are
    numbered ``0 .. n-1`` in every cell.
Errors
    A bad row raises :class:`~bayes_regimes.errors.DataError` naming the column, the
    file, the row group and the row within it (rows count from 0), e.g.
    ``column 'correct', file 'logs/part-3.parquet', row group 2, row 17: correct must
    be 0/1 or boolean, got 2``. A repeated sample also names the earlier row.
Distributed
    With ``client=`` (a ``dask.distributed.Client`` or a scheduler address), each file
    is read and reduced on a worker by the same code (so its errors name the file and
    row group), and ``dask.dataframe``'s ``groupby().agg()`` merges the per-file
    partial counts in a tree reduction. The result is identical to the single-process
    one. A sample repeated across files is found by a dask ``groupby().size()`` and
    then located here.

Examples
--------
>>> import os, tempfile
>>> import pandas as pd
>>> folder = tempfile.mkdtemp()
>>> for m in ("a", "b"):
...     os.makedirs(f"{folder}/model={m}")
...     rows = pd.DataFrame({"problem_id": ["p1", "p1", "p2"], "correct": [1, 0, 0]})
...     rows.to_parquet(f"{folder}/model={m}/part-0.parquet")
>>> data = reduce_rollouts(folder, group="model", progress=False)
>>> data.cells[["problem", "group", "n", "k"]].values.tolist()
[['p1', 'a', 2, 1], ['p2', 'a', 1, 0], ['p1', 'b', 2, 1], ['p2', 'b', 1, 0]]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from bayes_regimes._batchlocal import LocalBatch, local_batch
from bayes_regimes._keyindex import read_ahead
from bayes_regimes._progress import progress_ticker
from bayes_regimes._reduce_finish import _finish
from bayes_regimes._streaming import (
    POS_SHIFT,
    Plan,
    Reducer,
)
from bayes_regimes.data import (
    _RESERVED,
    RolloutData,
    _as_list,
    detect_input_kind,
    validate_columns,
)
from bayes_regimes.errors import DataError

__all__ = ["DEFAULT_BATCH_SIZE", "reduce_rollouts"]

DEFAULT_BATCH_SIZE = 1 << 20
_MASK = (1 << POS_SHIFT) - 1


@dataclasses.dataclass(frozen=True)
class _Source:
    """A resolved dataset: an fsspec filesystem, its sorted files and their base folder."""

    fs: Any
    files: tuple
    base: str
    partitioning: Any
    schema: pa.Schema | None = None
    parts: tuple = ()  # partition field names

    def arrow_fs(self) -> Any:
        return None if isinstance(self.fs, LocalFileSystem) else self.fs

    def dataset(self, plan: Plan | None = None, files: Sequence[int] | None = None) -> ds.Dataset:
        strings = []
        if plan is not None and self.schema is not None:
            skip = _partition_names(self)
            strings = [
                c
                for c in (*plan.keys, plan.outcome, plan.sample)
                if c in self.schema.names
                and c not in skip
                and _is_string(self.schema.field(c).type)
            ]
        fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=strings))
        paths = list(self.files) if files is None else [self.files[i] for i in files]
        return ds.dataset(
            paths,
            format=fmt,
            filesystem=self.arrow_fs(),
            partitioning=self.partitioning,
            partition_base_dir=self.base,
            schema=None
            if self.schema is None or plan is None
            else _read_schema(self.schema, strings),
        )

    def locate(self, pos: int) -> str:
        """Text naming the file, row group and row of a row position."""
        path, row = self.files[pos >> POS_SHIFT], pos & _MASK
        meta = pq.ParquetFile(path, filesystem=self.arrow_fs()).metadata
        start = 0
        for group in range(meta.num_row_groups):
            size = meta.row_group(group).num_rows
            if row < start + size:
                return f"file {path!r}, row group {group}, row {row - start}"
            start += size
        return f"file {path!r}, row {row}"  # pragma: no cover - beyond the file's metadata

    def rows_matching(self, values: dict, limit: int) -> list[int]:
        """Positions of the first ``limit`` rows (in scan order) equal to ``values``.

        Files whose partition values differ, and row groups whose statistics exclude
        the values, are skipped unread.
        """
        in_path = {c: v for c, v in values.items() if c in self.parts}
        in_file = {c: v for c, v in values.items() if c not in self.parts}
        expr = None
        for name, value in in_file.items():
            term = ds.field(name) == value
            expr = term if expr is None else expr & term
        dataset = self.dataset(None)
        fragments = {fragment.path: fragment for fragment in dataset.get_fragments()}
        hits: list[int] = []
        for i, path in enumerate(self.files):
            fragment = fragments[path]
            keys = ds.get_partition_keys(fragment.partition_expression)
            if any(keys.get(c) != v for c, v in in_path.items()):
                continue
            starts = np.cumsum([0] + [g.num_rows for g in fragment.row_groups])
            for piece in fragment.split_by_row_group(expr):
                group = piece.row_groups[0].id
                table = piece.to_table(columns=list(in_file))
                mask = np.ones(table.num_rows, dtype=bool)
                for name, value in in_file.items():
                    mask &= pc.equal(table.column(name), value).to_numpy(zero_copy_only=False)
                hits += [(i << POS_SHIFT) + int(starts[group] + r) for r in np.flatnonzero(mask)]
                if len(hits) >= limit:
                    return hits[:limit]
        return hits


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _read_schema(schema: pa.Schema, strings: list) -> pa.Schema:
    for name in strings:
        i = schema.get_field_index(name)
        value = schema.field(name).type
        schema = schema.set(i, pa.field(name, pa.dictionary(pa.int32(), value)))
    return schema


def _resolve(source: Any, partitioning: Any, storage_options: dict | None) -> _Source:
    text = os.fspath(source)
    fs, path = fsspec.core.url_to_fs(text, **(storage_options or {}))
    if any(ch in path for ch in "*?["):
        files = fs.glob(path)
        base = path[: min(path.find(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
    elif fs.isdir(path):
        files, base = fs.find(path), path.rstrip("/")
    elif fs.isfile(path):
        files, base = [path], path.rsplit("/", 1)[0]
    else:
        raise DataError(f"no such file, directory or glob match: {text}")
    hidden = ("_", ".")
    files = sorted(
        f
        for f in files
        if not any(part.startswith(hidden) for part in f[len(base) :].split("/") if part)
    )
    if not files:
        raise DataError(f"no data files under {text}")
    if partitioning == "hive":
        partitioning = ds.HivePartitioning.discover()
    src = _Source(fs, tuple(files), base, partitioning)
    try:
        found = src.dataset()
    except (pa.ArrowInvalid, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"cannot read {text} as a Parquet dataset: {first}") from None
    parts: dict = {}
    for fragment in found.get_fragments():
        parts |= dict.fromkeys(ds.get_partition_keys(fragment.partition_expression))
    fields = [found.schema.field(name) for name in found.schema.names if name in parts]
    part = ds.partitioning(pa.schema(fields), flavor="hive") if fields else None
    if fields and not isinstance(partitioning, ds.HivePartitioning | ds.PartitioningFactory):
        part = partitioning  # a user-given (e.g. directory) partitioning is kept as it is
    return dataclasses.replace(src, partitioning=part, schema=found.schema, parts=tuple(parts))


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _make_plan(
    schema: pa.Schema, problem, n, k, correct, group, condition, sample, features, duplicates
):
    names = schema.names
    problem = _as_list("problem_id" if problem is None else problem)
    if not problem:
        raise DataError("problem must name at least one column")
    kind = detect_input_kind(names, n=n, k=k, correct=correct)
    keys = {"problem": problem, "group": group, "condition": condition}
    if kind == "counts":
        if sample is not None:
            raise DataError("sample= applies to per-rollout rows, but the input holds counts")
        n, k = ("n" if n is None else n), ("k" if k is None else k)
        validate_columns(names, {**keys, "n": n, "k": k})
        used = {n, k}
    else:
        correct = "correct" if correct is None else correct
        validate_columns(names, {**keys, "correct": correct, "sample": sample})
        used = {correct, sample}
    used |= set(problem) | {group, condition}
    if features is not None:
        feats = _as_list(features)
        validate_columns(names, {"feature": feats})
        for name in feats:
            if name in used:
                raise DataError(
                    f"column {name!r}: is a key or count column and cannot be a feature"
                )
            if name in _RESERVED:
                raise DataError(
                    f"column {name!r}: feature name clashes with a cells column; rename it"
                )
            if not _numeric(schema.field(name).type):
                message = f"feature must be numeric, got type {schema.field(name).type}"
                raise DataError(f"column {name!r}: {message}")
    else:
        feats = [
            c
            for c in names
            if c not in used and c not in _RESERVED and _numeric(schema.field(c).type)
        ]
    if duplicates not in ("error", "sum"):
        raise DataError(f"duplicates must be 'error' or 'sum', got {duplicates!r}")
    return Plan(
        problem=tuple(problem),
        kind=kind,
        group=group,
        condition=condition,
        outcome=correct if kind == "rollouts" else None,
        n=n if kind == "counts" else None,
        k=k if kind == "counts" else None,
        sample=sample,
        features=tuple(feats),
        drop_varying=kind == "rollouts" and features is None,
        duplicates=duplicates,
    )


def _partition_names(src: _Source) -> set:
    return set(src.parts)


def _columns(src: _Source, plan: Plan) -> list:
    wanted = [*plan.keys, plan.outcome, plan.n, plan.k, plan.sample, *plan.features]
    skip = _partition_names(src)
    return list(dict.fromkeys(c for c in wanted if c is not None and c not in skip))


def _scan(
    src: _Source, plan: Plan, files: Sequence[int] | None, batch_size: int, tick, workers: int = 2
) -> Reducer:
    """Stream the given files (all by default) through one Reducer, in scan order.

    ``workers`` threads decode and count files ahead (:func:`read_ahead`: each streams
    its file's batches, validated and counted over their local keys by
    :func:`local_batch`, into a short queue) while this thread merges them in order. Not pyarrow's
    dataset-wide scanner: it keeps reading ahead across files while the consumer is
    slower, so its memory grows with the number of files; these queues stay bounded.
    """
    dataset = src.dataset(plan, files)
    columns = _columns(src, plan)
    reducer = Reducer(plan, src.locate, src.rows_matching)
    index = {path: i for i, path in enumerate(src.files)}

    def stream(fragment: ds.Fragment) -> tuple:
        found = ds.get_partition_keys(fragment.partition_expression)
        consts = {c: found.get(c) for c in src.parts}
        start = index[fragment.path] << POS_SHIFT  # row positions: file << POS_SHIFT | row

        def opened() -> Iterator[LocalBatch]:  # decoded and counted in a read-ahead thread
            base = start
            for batch in fragment.to_batches(
                schema=dataset.schema, columns=columns, batch_size=batch_size, batch_readahead=2
            ):
                if batch.num_rows:
                    yield local_batch(plan, src.locate, batch, consts, base)
                base += batch.num_rows

        return fragment.path, opened

    done = 0
    streams = map(stream, dataset.get_fragments())
    with contextlib.closing(read_ahead(streams, workers)) as batches:  # stops the threads
        for _, local in batches:
            reducer.merge(local)
            done += local.batch.num_rows
            tick(done)
    return reducer


def _typed(values: np.ndarray, src: _Source, name: Any) -> pd.Series:
    """Raw key values (an object array) as the pandas type Arrow gives that column."""
    kind = src.schema.field(name).type
    kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    return pa.array(values.tolist(), type=kind).to_pandas()


def _typed_frame(frame: pd.DataFrame, src: _Source, plan: Plan) -> pd.DataFrame:
    for name in plan.keys:
        frame[name] = _typed(frame[name].to_numpy(), src, name)
    return frame


def reduce_rollouts(
    source: str | os.PathLike[str],
    *,
    problem: Hashable | Sequence[Hashable] | None = None,
    correct: Hashable | None = None,
    group: Hashable | None = None,
    condition: Hashable | None = None,
    sample: Hashable | None = None,
    features: Sequence[Hashable] | None = None,
    n: Hashable | None = None,
    k: Hashable | None = None,
    duplicates: Literal["error", "sum"] = "error",
    client: Any = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int = 2,
    progress: bool | Callable[[int, int], None] = True,
    partitioning: Any = "hive",
    storage_options: dict | None = None,
) -> RolloutData:
    """Reduce a Parquet dataset of rollouts (or counts) to cells, streaming or on Dask.

    Parameters
    ----------
    source : str or path-like
        A Parquet file, a directory (searched recursively), or a glob such as
        ``"logs/*/part-*.parquet"``; local or any fsspec URL (``s3://...``).
    problem, correct, group, condition, sample, features
        As in :meth:`RolloutData.from_rollouts`. ``features=None`` takes every numeric
        column that is constant within every cell (it then reads those columns);
        pass ``features=[]`` to read only the key and outcome columns.
    n, k, duplicates
        For count inputs, as in :meth:`RolloutData.from_counts` (``duplicates="sum"``
        adds count rows of one cell, e.g. per-shard partial counts).
    client : dask.distributed.Client or str, optional
        Reduce on this Dask cluster (a client, or a scheduler address such as
        ``"tcp://10.0.0.1:8786"``). Every worker must reach the files.
    batch_size : int
        Rows per Arrow batch; memory grows with it, not with the number of rows.
    threads : int
        Files decoded and counted ahead, each by its own thread, while the calling
        thread merges the batches in scan order (at most ``2 * threads`` batches wait
        in memory); ``0`` reads in the calling thread. The result does not depend on it.
    progress : bool or callable
        ``True`` shows a tqdm bar (stderr lines without tqdm); a callable is called as
        ``progress(rows_done, rows_total)`` after each batch.
    partitioning : "hive", None or pyarrow.dataset.Partitioning
        How directory names become columns; ``"hive"`` reads ``key=value`` folders.
    storage_options : dict, optional
        Passed to fsspec (credentials, endpoints).

    Returns
    -------
    RolloutData
        Identical to ``RolloutData.from_rollouts`` on the rows in scan order (see the
        module docstring).

    Raises
    ------
    DataError
        A bad row (missing outcome, an outcome other than 0/1, a repeated sample in a
        cell, a bad count), naming the column, file, row group and row.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> path = tempfile.mkdtemp() + "/rollouts.parquet"
    >>> pd.DataFrame({"problem_id": ["a", "b", "a"], "correct": [True, False, True]}).to_parquet(
    ...     path
    ... )
    >>> reduce_rollouts(path, progress=False).cells[["problem", "n", "k"]].values.tolist()
    [['a', 2, 2], ['b', 1, 0]]
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(threads, (int, np.integer)) or threads < 0:
        raise DataError(f"threads must be a non-negative integer, got {threads!r}")
    src = _resolve(source, partitioning, storage_options)
    plan = _make_plan(
        src.schema, problem, n, k, correct, group, condition, sample, features, duplicates
    )
    total = src.dataset().count_rows() if progress else 0
    tick = progress_ticker(progress, total)
    if client is None:
        reducer = _scan(src, plan, None, int(batch_size), tick, int(threads))
        uniques, codes, stats = reducer.result()
        uniques = [
            _typed(values, src, name) for values, name in zip(uniques, plan.keys, strict=True)
        ]
    else:
        from bayes_regimes._reduce_dask import reduce_dask

        frame = reduce_dask(client, src, plan, int(batch_size))
        tick(total)
        codes, uniques = zip(*(pd.factorize(frame[name]) for name in plan.keys), strict=True)
        uniques = [pd.Series(u) for u in uniques]
        stats = frame.drop(columns=list(plan.keys))
    return _finish(list(uniques), list(codes), stats, plan, src)
