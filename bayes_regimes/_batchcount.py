"""Per-batch counting of the streamed reduction: pure functions of one batch's arrays.

:class:`~bayes_regimes._streaming.Reducer` counts each batch over a local key
(mixed-radix over the key columns' codes): rollouts and successes per present key in
one ``bincount`` (:func:`count_keys`), and the first row of each new key
(:func:`first_rows`), in cache-sized chunks. Nothing here touches the Reducer's
state. (Running this part in the read-ahead threads was measured no faster: numpy's
per-chunk passes hold the GIL that the decoding threads and the caller need.)

Examples
--------
>>> import numpy as np
>>> counts, ks, present = count_keys(
...     np.array([2, 0, 2], np.int32), 3, np.array([1, 0, 0], np.uint8)
... )
>>> counts.tolist(), ks.tolist(), present.tolist()
([1, 2], [0, 1], [0, 2])
>>> first_rows(np.array([2, 0, 2, 1]), np.array([1, 2]), 3).tolist()
[3, 0]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

CHUNK = 1 << 18  # rows per chunk of a per-row pass (its int32 work array: 1 MiB)


def chunk_rows(rows: int, bins: int) -> int:
    """Rows per chunk of a per-row pass: its work arrays stay in cache, while the
    per-chunk results (``bins`` of them) are added up at most ``rows / 4`` times."""
    return max(CHUNK, 8 * bins) if rows > CHUNK else max(rows, 1)


def is_dense(size: int, rows: int) -> bool:
    """Whether a local key space of ``size`` is counted directly (bins stay O(batch))."""
    return size <= 2 * rows + 65536


def work_dtype(key: np.ndarray, size: int) -> type:
    """int32 work arrays for int32 keys (dictionary codes) of a small space, else int64."""
    return np.int32 if key.dtype == np.int32 and 2 * size < 2**31 else np.int64


def count_keys(
    key: np.ndarray, size: int, outcome: np.ndarray, work: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rollouts, successes and the present keys of a dense local key.

    One ``bincount`` over ``2 * key + outcome`` in cache-sized chunks counts both.
    ``work`` is an optional reused buffer of at least :func:`chunk_rows` items of
    :func:`work_dtype`.
    """
    rows = len(key)
    step = chunk_rows(rows, size)
    dtype = work_dtype(key, size)
    if work is None or len(work) < step or work.dtype != dtype:
        work = np.empty(step, dtype=dtype)
    table = np.zeros(2 * size, dtype=np.int64)
    for start in range(0, rows, step):
        end = min(rows, start + step)
        part = work[: end - start]
        np.left_shift(key[start:end], 1, out=part, dtype=part.dtype)
        np.bitwise_or(part, outcome[start:end], out=part, dtype=part.dtype)
        table += np.bincount(part, minlength=2 * size)
    table = table.reshape(size, 2)
    counts = table[:, 0] + table[:, 1]
    present = np.flatnonzero(counts)
    return counts[present], table[present, 1], present


def first_rows(key: np.ndarray, wanted: np.ndarray, size: int) -> np.ndarray:
    """The first row holding each of the keys ``wanted`` (each present in ``key``)."""
    rows = len(key)
    first = np.full(size, rows, dtype=np.int64)
    head = min(rows, 4 * len(wanted) + 4096)  # most keys show up early
    np.minimum.at(first, key[:head], np.arange(head))
    late = wanted[first[wanted] == rows]
    while late.size:  # the rest: rows holding keys not met yet, in growing spans
        is_late = np.zeros(size, dtype=bool)
        is_late[late] = True
        start, head = head, min(rows, 4 * head)
        found = start + np.flatnonzero(is_late[key[start:head]])
        np.minimum.at(first, key[found], found)
        late = late[first[late] == rows]
    return first[wanted]


def bool_outcome(arr: pa.Array) -> np.ndarray:
    """A boolean Arrow array as uint8 0/1, unpacked from its bitmap (no nulls)."""
    bits = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset // 8 :]
    unpacked = np.unpackbits(bits, count=arr.offset % 8 + len(arr), bitorder="little")
    return unpacked[arr.offset % 8 :]
