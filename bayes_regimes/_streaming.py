"""Batch-at-a-time reduction of rollout rows to per-cell partial counts (used by reduce.py).

A :class:`Reducer` consumes Arrow record batches in scan order and keeps only
per-cell state: the cell's key codes, ``n``, ``k``, the position of its first row
and per-feature reference values. Each batch is first validated and counted over its
own local key (:func:`~bayes_regimes._batchlocal.local_batch`, which reads no state:
the read-ahead threads run it), then merged here (:meth:`Reducer.merge`): local key
values map to global integer codes (dictionary-encoded string columns cost one lookup
per dictionary entry, small integer columns one per distinct value) and the present
keys to cells. New cells are numbered in order of first appearance. Nothing here
grows with the number of rows except the optional sample-index check: one bit per
(cell, distinct sample value); a batch copies its cells' bits into a block, sets them
in one compiled pass that stops at the first repeat, and copies them back. Per-row
work stays in a few int32 passes and compiled loops: it must keep up with the Parquet
decoder.

Examples
--------
>>> import pyarrow as pa
>>> plan = Plan(problem=("problem_id",), kind="rollouts", outcome="correct")
>>> red = Reducer(plan, locate=lambda pos: f"row {pos}")
>>> red.add(pa.record_batch({"problem_id": ["a", "b", "a"], "correct": [1, 0, 1]}), {}, 0)
>>> red.frame()[["problem_id", "n", "k"]].values.tolist()
[['a', 2, 2], ['b', 1, 0]]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bayes_regimes._batchlocal import LocalBatch, LocalKey, _first, _np, column_error, local_batch
from bayes_regimes._keyindex import Bits, CellIndex, Grow, ValueIndex
from bayes_regimes.errors import DataError

POS_SHIFT = 40  # a row position is file_index << POS_SHIFT | row within the file
NO_POS = np.iinfo(np.int64).max
_SMALL = 1 << 20  # integer sample values below this go through a direct lookup table
_EMPTY = np.empty(0, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to read: key columns, per-rollout outcome or counts, sample and features."""

    problem: tuple
    kind: str  # "rollouts" or "counts"
    group: Any = None
    condition: Any = None
    outcome: Any = None
    n: Any = None
    k: Any = None
    sample: Any = None
    features: tuple = ()
    drop_varying: bool = True  # per-rollout auto features: varying columns are dropped
    duplicates: str = "sum"

    @property
    def keys(self) -> tuple:
        return self.problem + tuple(c for c in (self.group, self.condition) if c is not None)


def cell_text(plan: Plan, raw: list) -> str:
    """``problem=..., group=..., condition=...`` from a cell's raw key values."""
    problem = "/".join(str(v) for v in raw[: len(plan.problem)])
    rest = iter(raw[len(plan.problem) :])
    group = next(rest) if plan.group is not None else "all"
    condition = next(rest) if plan.condition is not None else "default"
    return f"problem={problem!r}, group={group!r}, condition={condition!r}"


class Reducer:
    """Accumulate per-cell counts from record batches given in scan order.

    Parameters
    ----------
    plan : Plan
    locate : callable
        Turns a row position (``file_index << 40 | row``) into text naming the file,
        row group and row, for error messages.
    find : callable, optional
        ``find(values, limit)``: positions of the first rows equal to ``values`` (a
        dict of column -> value); names the earlier row of a repeated sample.
    """

    def __init__(self, plan: Plan, locate: Callable[[int], str], find: Callable | None = None):
        self.plan, self.locate, self.find = plan, locate, find
        keys = plan.keys
        self.values = [ValueIndex() for _ in keys]  # raw key values, one index per key column
        self.cell_index = CellIndex(len(keys))  # key codes -> cell id (first appearance)
        self.codes = [Grow(np.int64) for _ in keys]  # per cell: its code in each key column
        self.n, self.k, self.rows, self.pos = (Grow(np.int64) for _ in range(4))
        self.cells = 0
        self.refs = {f: Grow(np.float64, np.nan) for f in plan.features}
        self.varies = dict.fromkeys(plan.features, False)
        self.bad = dict.fromkeys(plan.features, NO_POS)  # first non-finite value per feature
        self.samples, self.sample_table, self.bits = ValueIndex(), Grow(np.int64, -1), Bits()
        self._identity = 0  # small integer samples below this are their own ids
        self._dicts: dict[int, tuple[pa.Array, np.ndarray]] = {}

    # ----------------------------------------------------------------- errors
    def _fail(self, column: Any, pos: int, message: str) -> DataError:
        return column_error(self.locate, column, pos, message)

    def raw_key(self, cell: int) -> list:
        """The raw key values of a cell, one per key column."""
        return [self.values[j].values()[self.codes[j].a[cell]] for j in range(len(self.codes))]

    def cell_text(self, cell: int) -> str:
        return cell_text(self.plan, self.raw_key(cell))

    # ----------------------------------------------------------------- columns
    def _global(self, j: int, part: LocalKey) -> np.ndarray:
        """The map from key column j's local codes in a batch to its global codes."""
        index = self.values[j]
        if part.kind == "const":
            return index.get_or_add([part.values])
        if part.kind == "dict":  # a file's batches share their dictionary: intern it once
            cached = self._dicts.get(j)
            if cached is None or not (cached[0] is part.values or cached[0].equals(part.values)):
                cached = self._dicts[j] = (part.values, index.get_or_add_arrow(part.values))
            return cached[1]
        if part.kind == "dense":
            low, present = part.values
            gmap = np.full(part.width, -1, dtype=np.int64)
            gmap[present] = index.get_or_add((present + low).tolist())
            return gmap
        return index.get_or_add(part.values)

    # ----------------------------------------------------------------- batches
    def add(self, batch: pa.RecordBatch, consts: Mapping, base: int) -> None:
        """Reduce one batch; ``base`` is the position of its first row."""
        if batch.num_rows:
            self.merge(local_batch(self.plan, self.locate, batch, consts, base))

    def merge(self, local: LocalBatch) -> None:
        """Reduce a batch counted by :func:`~bayes_regimes._batchlocal.local_batch`."""
        batch, consts, base, decode = local.batch, local.consts, local.base, local.decode
        key, size, dense, stride = local.key, local.size, local.dense, local.space
        gcodes = []
        for j, part in enumerate(local.keys):
            gmap = self._global(j, part)
            if part.codes is None or part.width == 1:
                gcodes.append(np.full(len(decode), gmap[0], dtype=np.int64))
            else:
                stride //= part.width
                gcodes.append(gmap[(decode // stride) % part.width])
        cell, new_cells, new_rows = self._cells(gcodes, local.first, base)
        row_cell = self._per_row(cell, key, decode if dense else None, size)
        if self.plan.kind == "counts" and self.plan.duplicates == "error":
            self._duplicates(row_cell(), new_rows, base)
        self.n.a[cell] += local.counts
        self.k.a[cell] += local.ks
        self.rows.a[cell] += local.rows
        if self.plan.sample is not None:
            self._sample(batch, key, decode if dense else None, size, cell, row_cell, base)
        cells_of_rows = row_cell() if self.plan.features else None
        for name in self.plan.features:
            self._feature(name, batch, consts, cells_of_rows, new_cells, new_rows, base)

    def _per_row(self, cell: np.ndarray, key: np.ndarray, decode: Any, size: int) -> Callable:
        """``per_row(values=cell)``: the value of each row's cell, for per-cell ``values``.

        ``decode`` maps the present local keys to the key space of ``key`` (dense keys),
        or is None when ``key`` numbers the present keys directly.
        """

        def per_row(values: np.ndarray = cell, out: np.ndarray | None = None) -> np.ndarray:
            if decode is not None:
                slot = np.zeros(size, dtype=values.dtype)
                slot[decode] = values
                values = slot
            return np.take(values, key, out=out)

        return per_row

    def _cells(self, gcodes: list, first: np.ndarray, base: int):
        """Global cell ids of the present local keys (``first``: their first rows); new
        cells numbered by first appearance."""
        sizes = [len(values) for values in self.values]
        stored = [grow.a[: self.cells] for grow in self.codes]
        cell = self.cell_index.lookup(gcodes, sizes, stored)
        new = np.flatnonzero(cell < 0)
        if new.size == 0:
            return cell, _EMPTY, _EMPTY
        new = new[np.argsort(first[new], kind="stable")]
        new_rows = first[new]
        cell[new] = np.arange(self.cells, self.cells + len(new))
        self.cell_index.add([codes[new] for codes in gcodes], cell[new])
        total = self.cells + len(new)
        for j, grow in enumerate(self.codes):
            grow.ensure(total)[cell[new]] = gcodes[j][new]
        for grow in (self.n, self.k, self.rows, self.pos, *self.refs.values()):
            grow.ensure(total)
        self.pos.a[cell[new]] = base + new_rows
        self.cells = total
        return cell, cell[new], new_rows

    def _duplicates(self, row_cell: np.ndarray, new_rows: np.ndarray, base: int) -> None:
        repeat = np.ones(len(row_cell), dtype=bool)
        repeat[new_rows] = False
        if repeat.any():
            row = _first(repeat)
            c = int(row_cell[row])
            raise DataError(
                f"{self.locate(int(self.pos.a[c]))} and {self.locate(base + row)}: duplicate "
                f"cell ({self.cell_text(c)}); pass duplicates='sum' to add their counts"
            )

    def _sample_codes(self, arr: pa.Array) -> np.ndarray:
        if pa.types.is_dictionary(arr.type):
            gmap = self.samples.get_or_add_arrow(arr.dictionary)
            return gmap[_np(arr.indices)]
        raw = _np(arr)
        if raw.dtype.kind in "iu" and raw.min() >= 0 and (high := int(raw.max())) < _SMALL:
            if high >= self._identity:
                table = self.sample_table.ensure(high + 1)  # ids of small integers
                if (table[: high + 1] < 0).any():  # number the new values present, in order
                    present = np.zeros(high + 1, dtype=bool)
                    present[raw] = True
                    unknown = np.flatnonzero(present & (table[: high + 1] < 0))
                    table[unknown] = self.samples.get_or_add(unknown.tolist())
                differ = np.flatnonzero(table[: high + 1] != np.arange(high + 1))
                self._identity = int(differ[0]) if differ.size else high + 1
            if high < self._identity:  # values below it are their own ids
                return raw
            return self.sample_table.a[raw]
        codes = np.empty(len(raw), dtype=np.int64)
        small = (raw >= 0) & (raw < _SMALL) if raw.dtype.kind in "iu" else np.zeros(len(raw), bool)
        if small.any():
            values = raw[small].astype(np.int64)
            table = self.sample_table.ensure(int(values.max()) + 1)
            unknown = np.unique(values[table[values] < 0])
            if unknown.size:
                table[unknown] = self.samples.get_or_add(unknown.tolist())
            codes[small] = table[values]
        if not small.all():
            codes[~small] = self.samples.get_or_add(raw[~small].tolist())
        return codes

    def _sample(self, batch, key, decode, size, cell, per_row, base: int) -> None:
        """Check that no sample value repeats within a cell; raise naming both rows."""
        name = self.plan.sample
        arr = batch.column(name)
        if arr.null_count:
            raise self._fail(name, base + _first(_np(arr.is_null())), "missing value")
        codes = self._sample_codes(arr)
        width = self.bits.reserve(int(cell.max()), len(self.samples))  # bits per cell
        if size * width <= 8 * (8 * len(codes) + self.bits.SPREAD):
            # the batch's cells' bits, in local key order, are O(rows): set them at once
            if not self.bits.add_cells(cell, decode, size, key, codes):
                return
        else:
            byte, mask = self.bits.locate(per_row(), codes)
            if not ((self.bits.a[byte] & mask) != 0).any() and not self.bits.add(byte, mask):
                return
        row_cell = per_row()  # error path: find the first repeat
        byte, mask = self.bits.locate(row_cell, codes)
        seen = (self.bits.a[byte] & mask) != 0
        bit = byte * 8 + (codes & 7)
        row = _first(pd.Series(bit).duplicated().to_numpy() | seen)
        earlier = np.flatnonzero(bit[:row] == bit[row])
        where = "an earlier row"
        if earlier.size:
            where = self.locate(base + int(earlier[0]))
        elif self.find is not None:  # in an earlier batch: look it up (error path only)
            c = int(row_cell[row])
            values = dict(zip(self.plan.keys, self.raw_key(c), strict=True))
            values[name] = arr[row].as_py()
            where = self.locate(self.find(values, 1)[0])
        message = (
            f"sample {arr[row].as_py()!r} repeats {where} in the same cell "
            f"({self.cell_text(int(row_cell[row]))})"
        )
        raise self._fail(name, base + row, message)

    def _feature(self, name, batch, consts, row_cell, new_cells, new_rows, base) -> None:
        if self.varies[name]:
            return
        if name in consts:
            value = np.nan if consts[name] is None else consts[name]
            values = np.full(batch.num_rows, value, dtype=np.float64)
        else:
            arr = batch.column(name).cast(pa.float64())
            values = _np(arr.fill_null(np.nan) if arr.null_count else arr)
        ref = self.refs[name].a
        ref[new_cells] = values[new_rows]
        expected = ref[row_cell]
        differs = (values != expected) & ~(np.isnan(values) & np.isnan(expected))
        if differs.any():
            if self.plan.drop_varying:
                self.varies[name] = True
                return
            row = _first(differs)
            first = self.locate(int(self.pos.a[row_cell[row]]))
            raise DataError(
                f"column {name!r}, {first} and {self.locate(base + row)}: conflicting feature "
                f"values {expected[row].item()!r} and {values[row].item()!r} for the same cell"
            )
        if self.bad[name] == NO_POS and not np.isfinite(values).all():
            self.bad[name] = base + _first(~np.isfinite(values))

    # ----------------------------------------------------------------- output
    def result(self) -> tuple[list[np.ndarray], list[np.ndarray], pd.DataFrame]:
        """Distinct raw values per key column, each cell's codes into them, per-cell stats.

        Cells are in first-appearance order; the stats columns are combined across
        partial results by :func:`merge_spec`.
        """
        c = self.cells
        uniques = [index.values() for index in self.values]
        codes = [grow.a[:c] for grow in self.codes]
        out = {"n": self.n.a[:c], "k": self.k.a[:c], "_rows": self.rows.a[:c]}
        out["_pos"] = self.pos.a[:c]
        for name in self.plan.features:
            ref = self.refs[name].a[:c]
            out |= {f"_min:{name}": ref, f"_max:{name}": ref}
            out |= {f"_nanany:{name}": np.isnan(ref), f"_nanall:{name}": np.isnan(ref)}
            out[f"_var:{name}"] = np.full(c, self.varies[name])
            out[f"_bad:{name}"] = np.full(c, self.bad[name], dtype=np.int64)
        return uniques, codes, pd.DataFrame(out)

    def frame(self) -> pd.DataFrame:
        """:meth:`result` as one frame: the raw key values of each cell, then the stats."""
        uniques, codes, stats = self.result()
        keys = {name: u[c] for name, u, c in zip(self.plan.keys, uniques, codes, strict=True)}
        return pd.concat([pd.DataFrame(keys), stats], axis=1)


def merge_spec(plan: Plan) -> dict[str, str]:
    """How partial per-cell frames combine (pandas or dask ``groupby(keys).agg``)."""
    spec = {"n": "sum", "k": "sum", "_rows": "sum", "_pos": "min"}
    for name in plan.features:
        spec |= {f"_min:{name}": "min", f"_max:{name}": "max", f"_nanany:{name}": "max"}
        spec |= {f"_nanall:{name}": "min", f"_var:{name}": "max", f"_bad:{name}": "min"}
    return spec
