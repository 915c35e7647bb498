"""The batch-local half of the streamed reduction: what one batch says on its own.

:func:`local_batch` validates a record batch's key, outcome and count columns, builds
its local key (mixed-radix over each key column's local codes) and counts rows,
successes and the first row of every present local key in one compiled pass. It
reads no reduction state, so the read-ahead threads run it while the caller merges
earlier batches (:meth:`bayes_regimes._streaming.Reducer.merge`): the counting then
runs beside the decoding instead of after it. Errors name the column, file, row group
and row, and reach the caller in scan order (see :func:`~bayes_regimes._keyindex.read_ahead`).

Examples
--------
>>> import pyarrow as pa
>>> from bayes_regimes._streaming import Plan
>>> plan = Plan(problem=("problem_id",), kind="rollouts", outcome="correct")
>>> batch = pa.record_batch({"problem_id": ["a", "b", "a"], "correct": [1, 0, 1]})
>>> local = local_batch(plan, str, batch, {}, 0)
>>> local.decode.tolist(), local.counts.tolist(), local.ks.tolist(), local.first.tolist()
([0, 1], [2, 1], [2, 0], [0, 1])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bayes_regimes._batchcount import bool_outcome, count_keys, is_dense
from bayes_regimes.data import _BOOLS
from bayes_regimes.errors import DataError


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _first(mask: Any) -> int:
    return int(np.argmax(np.asarray(mask)))


def column_error(locate: Callable[[int], str], column: Any, pos: int, message: str) -> DataError:
    """``column 'x', file ..., row group ..., row ...: message``."""
    return DataError(f"column {column!r}, {locate(pos)}: {message}")


@dataclasses.dataclass
class LocalKey:
    """One key column of a batch: local codes (None when constant) and their values.

    ``kind`` says what ``values`` holds: ``"const"`` the one value, ``"dict"`` an Arrow
    dictionary, ``"dense"`` ``(low, present)`` (code i is the integer ``low + i``; only
    the codes in ``present`` occur), ``"list"`` the values in code order.
    """

    codes: np.ndarray | None
    kind: str
    values: Any
    width: int  # number of local codes


@dataclasses.dataclass
class LocalBatch:
    """A validated batch with its local key and per-present-key counts.

    ``decode`` holds the present local keys in the combined key space of ``space``
    codes (in increasing order, or in first-appearance order when ``dense`` is False,
    the key then renumbered ``0 .. size - 1``). ``counts``, ``ks`` (rollouts and
    successes, or summed n and k for count rows), ``rows`` and ``first`` (first row)
    are per present key.
    """

    batch: pa.RecordBatch
    consts: Mapping
    base: int
    keys: list[LocalKey]
    key: np.ndarray
    size: int
    space: int
    dense: bool
    decode: np.ndarray
    counts: np.ndarray
    ks: np.ndarray
    rows: np.ndarray
    first: np.ndarray


def _local_key(locate: Callable, name: Any, batch, consts, base) -> LocalKey:
    if name in consts:
        if consts[name] is None:
            raise column_error(locate, name, base, "missing value (no partition value in the path)")
        return LocalKey(None, "const", consts[name], 1)
    arr = batch.column(name)
    if arr.null_count:
        raise column_error(locate, name, base + _first(_np(arr.is_null())), "missing value")
    if pa.types.is_dictionary(arr.type):  # int32 codes: widened only when keys combine
        return LocalKey(_np(arr.indices), "dict", arr.dictionary, len(arr.dictionary))
    raw = _np(arr)
    if raw.dtype.kind == "f" and np.isnan(raw).any():
        raise column_error(locate, name, base + _first(np.isnan(raw)), "missing value")
    if raw.dtype.kind in "iu":
        low, high = int(raw.min()), int(raw.max())
        if high - low <= 4 * len(raw) + 1024:  # dense integers: no hashing per row
            idx = raw.astype(np.int64) - low
            present = np.flatnonzero(np.bincount(idx, minlength=high - low + 1))
            return LocalKey(idx, "dense", (low, present), high - low + 1)
    idx, uniques = pd.factorize(raw)
    return LocalKey(idx.astype(np.int64), "list", uniques.tolist(), len(uniques))


def _outcome(name: Any, locate: Callable, batch: pa.RecordBatch, base: int) -> np.ndarray:
    arr = batch.column(name)
    if arr.null_count:
        pos = base + _first(_np(arr.is_null()))
        raise column_error(locate, name, pos, "missing value for correct")
    kind = arr.type
    if pa.types.is_boolean(kind):  # unpack the bitmap (much faster than to_numpy)
        return bool_outcome(arr)
    if pa.types.is_dictionary(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        dense = arr if pa.types.is_dictionary(kind) else pc.dictionary_encode(arr)
        words = dense.dictionary.to_pylist()
        parsed = [_BOOLS.get(str(w).strip().lower()) for w in words]
        codes = _np(dense.indices)
        for i, value in enumerate(parsed):
            if value is None and (codes == i).any():
                message = f"correct must be 0/1 or boolean, got {words[i]!r}"
                raise column_error(locate, name, base + _first(codes == i), message)
        return np.array([v == 1 for v in parsed], dtype=np.uint8)[codes]
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise DataError(f"column {name!r}: correct must be 0/1 or boolean, got type {kind}")
    values = _np(arr)
    if values.dtype.kind == "f" and np.isnan(values).any():
        pos = base + _first(np.isnan(values))
        raise column_error(locate, name, pos, "missing value for correct")
    bad = (values != 0) & (values != 1)
    if bad.any():
        row = _first(bad)
        message = f"correct must be 0/1 or boolean, got {values[row].item()!r}"
        raise column_error(locate, name, base + row, message)
    return (values == 1).view(np.uint8)


def _counts(locate: Callable, batch: pa.RecordBatch, name: Any, role: str, base: int):
    arr = batch.column(name)
    if pa.types.is_boolean(arr.type):
        raise DataError(f"column {name!r}: {role} must hold integer counts, not booleans")
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        raise DataError(f"column {name!r}: {role} must hold integer counts, got type {arr.type}")
    if arr.null_count:
        pos = base + _first(_np(arr.is_null()))
        raise column_error(locate, name, pos, f"missing value for {role}")
    raw = _np(arr)
    if raw.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(raw) | (np.mod(raw, 1) != 0) | (np.abs(raw) > 2.0**62)
        if bad.any():
            row = _first(bad)
            message = f"{role}={raw[row].item()!r} is not an integer count"
            raise column_error(locate, name, base + row, message)
    values = raw.astype(np.int64)
    if (values < 0).any():
        row = _first(values < 0)
        raise column_error(locate, name, base + row, f"negative {role}={values[row]}")
    return values


def local_batch(
    plan: Any, locate: Callable[[int], str], batch: pa.RecordBatch, consts: Mapping, base: int
) -> LocalBatch:
    """Validate one batch and count it over its local key (no reduction state read).

    ``plan`` is the reduction's :class:`~bayes_regimes._streaming.Plan`, ``locate``
    names a row position in errors, ``consts`` holds the partition values of the
    batch's file and ``base`` is the position of its first row.
    """
    rows = batch.num_rows
    keys = [_local_key(locate, name, batch, consts, base) for name in plan.keys]
    key, size = None, 1
    for part in keys:
        if part.codes is not None and part.width > 1:
            if size * part.width >= 2**62:
                raise DataError("too many distinct key values in one batch; lower batch_size")
            key = part.codes if key is None else key.astype(np.int64) * part.width + part.codes
            size *= part.width
    key = np.zeros(rows, dtype=np.int64) if key is None else key
    rollouts = plan.kind == "rollouts"
    outcome = _outcome(plan.outcome, locate, batch, base) if rollouts else np.zeros(rows, np.uint8)
    dense, space = is_dense(size, rows), size
    decode = None
    if not dense:  # sparse key space: compact it (uniques in first-appearance order)
        key, decode = pd.factorize(key)
        key, size = key.astype(np.int64, copy=False), len(decode)
    counts, ks, present, first = count_keys(key, size, outcome)  # one pass over the rows
    if dense:  # the keys present in this batch (compacted keys are all present)
        decode = present
    rows_of_key = counts  # per-rollout rows: one rollout each
    if not rollouts:  # count rows: n and k summed per key
        nrow = _counts(locate, batch, plan.n, "n", base)
        krow = _counts(locate, batch, plan.k, "k", base)
        if (krow > nrow).any():
            row = _first(krow > nrow)
            raise column_error(locate, plan.k, base + row, f"k={krow[row]} exceeds n={nrow[row]}")
        counts = np.bincount(key, weights=nrow, minlength=size)[present].astype(np.int64)
        ks = np.bincount(key, weights=krow, minlength=size)[present].astype(np.int64)
    return LocalBatch(
        batch, consts, base, keys, key, size, space, dense, decode, counts, ks, rows_of_key, first
    )
