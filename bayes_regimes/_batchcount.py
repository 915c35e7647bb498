"""Per-batch counting of the streamed reduction: pure functions of one batch's arrays.

:class:`~bayes_regimes._streaming.Reducer` counts each batch over a local key
(mixed-radix over the key columns' codes): rollouts and successes per present key in
one compiled pass (:func:`count_keys`), and the first row of each new key
(:func:`first_rows`). Nothing here touches the Reducer's state. (Running this part
in the read-ahead threads was measured no faster when it was numpy passes holding the
GIL; the compiled pass does not hold it, but on 2 cores decoding fills both.)

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


def is_dense(size: int, rows: int) -> bool:
    """Whether a local key space of ``size`` is counted directly (bins stay O(batch))."""
    return size <= 2 * rows + 65536


def count_keys(
    key: np.ndarray, size: int, outcome: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rollouts, successes and the present keys of a dense local key (``0 .. size - 1``).

    One compiled pass (:func:`~bayes_regimes._kernels.count_pairs`) counts both.
    """
    from bayes_regimes._kernels import count_pairs  # compiled code: load on first use

    table = np.zeros((size, 2), dtype=np.int64)
    bad = count_pairs(key, outcome, table)
    if bad >= 0:  # cannot come from a valid batch: a defect, not a data error
        raise AssertionError(
            f"row {bad}: local key {key[bad]} outside 0 .. {size - 1} or outcome {outcome[bad]}"
        )
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
