"""Per-batch counting of the streamed reduction: pure functions of one batch's arrays.

:func:`~bayes_regimes._batchlocal.local_batch` counts each batch over a local key
(mixed-radix over the key columns' codes): rollouts, successes and the first row of
each present key in one compiled pass (:func:`count_keys`), in the read-ahead
threads (the pass holds no GIL). Nothing here touches the Reducer's state.

Examples
--------
>>> import numpy as np
>>> counts, ks, present, first = count_keys(
...     np.array([2, 0, 2], np.int32), 3, np.array([1, 0, 0], np.uint8)
... )
>>> counts.tolist(), ks.tolist(), present.tolist(), first.tolist()
([1, 2], [0, 1], [0, 2], [1, 0])
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def is_dense(size: int, rows: int) -> bool:
    """Whether a local key space of ``size`` is counted directly (bins stay O(batch))."""
    return size <= 2 * rows + 65536


def count_keys(
    key: np.ndarray, size: int, outcome: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rollouts, successes, the present keys and their first rows, for a dense local
    key (``0 .. size - 1``) and 0/1 outcomes.

    One compiled pass (:func:`~bayes_regimes._kernels.count_pairs`) does it all.
    """
    from bayes_regimes._kernels import count_pairs  # compiled code: load on first use

    table = np.zeros((size, 2), dtype=np.int64)
    first = np.full(size, -1, dtype=np.int64)
    bad = count_pairs(key, outcome, table, first)
    if bad >= 0:  # cannot come from a valid batch: a defect, not a data error
        raise AssertionError(
            f"row {bad}: local key {key[bad]} outside 0 .. {size - 1} or outcome {outcome[bad]}"
        )
    counts = table[:, 0] + table[:, 1]
    present = np.flatnonzero(counts)
    return counts[present], table[present, 1], present, first[present]


def bool_outcome(arr: pa.Array) -> np.ndarray:
    """A boolean Arrow array as uint8 0/1, unpacked from its bitmap (no nulls)."""
    bits = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset // 8 :]
    unpacked = np.unpackbits(bits, count=arr.offset % 8 + len(arr), bitorder="little")
    return unpacked[arr.offset % 8 :]
