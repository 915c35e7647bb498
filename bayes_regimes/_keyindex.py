"""Growable key indexes and the read-ahead queue of the streamed reduction (see _streaming.py).

* :class:`KeyIndex`: int64 keys -> dense ids, a log-structured set of pandas Indexes;
* :class:`ValueIndex`: raw values (strings, numbers) -> dense ids, a dict, with a
  compiled path for Arrow string arrays (:class:`~bayes_regimes._kernels.StringMap`);
* :class:`CellIndex`: a cell's key codes -> cell id, a direct-address table while the
  code ranges are small, else pairwise-packed :class:`KeyIndex` maps;
* :class:`Grow`, :class:`Bits`: a growable array and a growable (cell, sample) bitmap;
* :func:`read_ahead`: streams (e.g. the batches of each file) read ahead by threads
  into bounded queues and consumed in order.

Examples
--------
>>> import numpy as np
>>> index = ValueIndex()
>>> index.get_or_add(["b", "a", "b"]).tolist(), index.values().tolist()
([0, 1, 0], ['b', 'a'])
>>> keys = KeyIndex()
>>> keys.add(np.array([7, 3])).tolist(), keys.lookup(np.array([3, 5])).tolist()
([0, 1], [1, -1])
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

_EMPTY = np.empty(0, dtype=np.int64)


class KeyIndex:
    """Growable map from int64 keys to dense ids 0, 1, ... in insertion order.

    A log-structured set of pandas Indexes: each ``add`` appends a level and levels
    of similar size are merged, so lookups are vectorised hash probes over
    O(log N) levels and each key is rehashed O(log N) times in all.
    """

    def __init__(self) -> None:
        self._levels: list[tuple[int, pd.Index]] = []  # (id of the first key, keys)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Ids of the keys, -1 where absent."""
        ids = np.full(len(keys), -1, dtype=np.int64)
        todo = np.arange(len(keys))
        for start, index in self._levels:
            if todo.size == 0:
                break
            pos = index.get_indexer(keys if todo.size == len(keys) else keys[todo])
            hit = pos >= 0
            ids[todo[hit]] = start + pos[hit]
            todo = todo[~hit]
        return ids

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Append new, distinct keys; return their ids."""
        ids = np.arange(self._size, self._size + len(keys), dtype=np.int64)
        self._levels.append((self._size, pd.Index(keys, dtype=np.int64)))
        self._size += len(keys)
        while len(self._levels) > 1 and len(self._levels[-2][1]) <= len(self._levels[-1][1]):
            (start, older), (_, newer) = self._levels[-2:]
            merged = np.concatenate([older.to_numpy(), newer.to_numpy()])
            self._levels[-2:] = [(start, pd.Index(merged, dtype=np.int64))]
        return ids

    def get_or_add(self, keys: np.ndarray) -> np.ndarray:
        """Ids of the keys, adding the absent ones (in first-appearance order)."""
        ids = self.lookup(keys)
        new = np.flatnonzero(ids < 0)
        if new.size:
            codes, fresh = pd.factorize(keys[new])
            ids[new] = self.add(np.asarray(fresh, dtype=np.int64))[codes]
        return ids

    def values(self) -> np.ndarray:
        """All keys in id order."""
        return np.concatenate([index.to_numpy() for _, index in self._levels] or [_EMPTY])


class ValueIndex:
    """Growable map from raw values (strings, numbers) to dense ids in insertion order.

    A plain dict (for Python strings it probes faster than a pandas object Index).
    Arrow string arrays take a faster path while every value is a string: a compiled
    :class:`~bayes_regimes._kernels.StringMap` over their bytes, which only needs the
    new strings as Python objects.
    """

    def __init__(self) -> None:
        self._ids: dict = {}
        self._values: list = []
        self._strings: Any = None  # StringMap of the values, built on first Arrow use
        self._all_str = True

    def __len__(self) -> int:
        return len(self._values)

    def get_or_add(self, values: list) -> np.ndarray:
        """Ids of the values (a list), adding the absent ones in order."""
        ids = self._ids
        out = np.fromiter(map(ids.get, values, itertools.repeat(-1)), np.int64, len(values))
        new = np.flatnonzero(out < 0)
        if new.size:
            start = len(self._values)
            asked = values if new.size == len(values) else [values[i] for i in new.tolist()]
            fresh = list(dict.fromkeys(asked))  # absent, distinct, in order of appearance
            ids.update(zip(fresh, range(start, start + len(fresh)), strict=True))
            self._values.extend(fresh)
            if len(fresh) == len(asked):
                out[new] = np.arange(start, start + len(fresh))
            else:
                out[new] = np.fromiter(map(ids.__getitem__, asked), np.int64, len(asked))
            self._all_str = self._all_str and set(map(type, fresh)) <= {str}
        return out

    def get_or_add_arrow(self, arr: pa.Array) -> np.ndarray:
        """Ids of the values of an Arrow array (without nulls), adding the absent ones."""
        is_str = pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
        if not (is_str and self._all_str) or arr.null_count:
            return self.get_or_add(arr.to_pylist())
        if self._strings is None:
            from bayes_regimes._kernels import StringMap  # compiled code: load on first use

            self._strings = StringMap()
        known = len(self._strings)
        if known < len(self._values):  # values added from Python lists: enter them, in order
            self._strings.find_or_add(pa.array(self._values[known:], pa.large_string()))
            known = len(self._values)
        ids = self._strings.find_or_add(arr)
        if len(self._strings) > known:  # new strings got the next ids, in order of appearance
            new = np.flatnonzero(ids >= known)
            _, first = np.unique(ids[new], return_index=True)
            fresh = arr.take(pa.array(new[first])).to_pylist()
            self._ids.update(zip(fresh, range(known, known + len(fresh)), strict=True))
            self._values.extend(fresh)
        return ids

    def values(self) -> np.ndarray:
        out = np.empty(len(self._values), dtype=object)
        out[:] = self._values
        return out


class Grow:
    """A growable 1-d numpy array (capacity doubling); ``a`` is the backing array."""

    def __init__(self, dtype: Any, fill: Any = 0) -> None:
        self.a = np.full(64, fill, dtype=dtype)
        self.fill = fill

    def ensure(self, size: int) -> np.ndarray:
        if size > len(self.a):
            grown = max(size, 2 * len(self.a))
            if self.fill == 0:  # calloc: the tail's pages stay untouched until used
                new = np.zeros(grown, dtype=self.a.dtype)
            else:
                new = np.empty(grown, dtype=self.a.dtype)
                new[len(self.a) :] = self.fill
            new[: len(self.a)] = self.a
            self.a = new
        return self.a


class Bits:
    """One bit per (cell, sample code): whether that sample was seen in that cell."""

    SPREAD = 65536  # bytes beyond 8 per row before repeats are found by hashing

    def __init__(self) -> None:
        self.a = np.zeros(64, dtype=np.uint8)  # row-major: ``width`` bytes per cell
        self.width = 1

    def reserve(self, cell: int, codes: int) -> int:
        """Grow to hold cells ``0 .. cell`` and codes ``0 .. codes - 1``; return bits per cell."""
        rows, need = len(self.a) // self.width, max(codes - 1, 0) // 8 + 1
        if cell >= rows or need > self.width:
            new_rows = max(cell + 1, 2 * rows)
            new_width = max(need, 2 * self.width) if need > self.width else self.width
            grown = np.zeros((new_rows, new_width), dtype=np.uint8)
            grown[:rows, : self.width] = self.a.reshape(rows, self.width)
            self.a, self.width = grown.reshape(-1), new_width
        return 8 * self.width

    def locate(self, cells: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Byte index and bit mask of each (cell, code), growing the bitmap as needed."""
        self.reserve(int(cells.max()), int(codes.max()) + 1)
        byte = cells * self.width + (codes >> 3)
        return byte, np.left_shift(1, codes & 7).astype(np.uint8)

    def add_cells(
        self, cells: np.ndarray, local: np.ndarray | None, size: int, key: np.ndarray, codes: Any
    ) -> bool:
        """Set bit ``codes[i]`` of local key ``key[i]``'s cell for each row i, unless a bit
        was set already or repeats; return whether one did (nothing is set then).

        Local key ``local[j]`` (``j`` when ``local`` is None) is cell ``cells[j]``; local
        keys lie in ``0 .. size - 1``. The cells' bytes are copied into a block in local
        key order, set by a compiled pass over the rows, and copied back.
        """
        from bayes_regimes._kernels import set_bits  # compiled code: load on first use

        table = self.a.reshape(-1, self.width)
        block = np.zeros((size, self.width), dtype=np.uint8)
        where = slice(None) if local is None else local
        block[where] = table[cells]
        if set_bits(key, codes, block) >= 0:
            return True
        table[cells] = block[where]
        return False

    def add(self, byte: np.ndarray, mask: np.ndarray) -> bool:
        """Set the bits unless one repeats within these rows; return whether one did.

        Per byte, the sum of distinct powers of two is their OR, and a repeat makes a
        carry, so the sum has fewer bits set than rows added to that byte.
        """
        low, high = int(byte.min()), int(byte.max())
        if high - low > 8 * len(byte) + self.SPREAD:  # widely spread: hash the bits instead
            if pd.Series(byte * 8 + np.log2(mask).astype(np.int64)).duplicated().any():
                return True
            np.bitwise_or.at(self.a, byte, mask)
            return False
        rows = np.bincount(byte - low, minlength=high - low + 1)
        total = np.bincount(byte - low, weights=mask, minlength=high - low + 1).astype(np.int64)
        if (np.bitwise_count(total) != rows).any():
            return True
        self.a[low : high + 1] |= total.astype(np.uint8)
        return False


class CellIndex:
    """Map from a cell's key codes (one global code per key column) to its cell id.

    While the product of the code ranges stays small (a crossed design: every
    problem under a few groups) it is a direct-address table, looked up by a gather;
    beyond that it packs the codes pairwise (``a << 31 | b``) into :class:`KeyIndex`
    hash maps. Ids are given by the caller, in order.
    """

    LIMIT = 1 << 23  # table entries (int32) allowed beyond 8 per cell

    def __init__(self, columns: int) -> None:
        self.capacity = [1] * columns
        self.table: np.ndarray | None = np.full(1, -1, dtype=np.int32)
        self.levels = [KeyIndex() for _ in range(max(columns - 2, 0))]
        self.hashed = KeyIndex()

    def _flat(self, gcodes: list[np.ndarray]) -> np.ndarray:
        flat = gcodes[0]
        for codes, width in zip(gcodes[1:], self.capacity[1:], strict=True):
            flat = flat * width + codes
        return flat

    def _pack(self, gcodes: list[np.ndarray]) -> np.ndarray:
        packed = gcodes[0]
        for j, codes in enumerate(gcodes[1:], start=1):
            packed = (packed << 31) | codes
            if j < len(gcodes) - 1:
                packed = self.levels[j - 1].get_or_add(packed)
        return packed

    def lookup(self, gcodes: list[np.ndarray], sizes: list[int], stored: list[np.ndarray]):
        """Cell ids (-1 for new cells). ``sizes`` are the current code ranges and
        ``stored`` the codes of the cells so far (to rebuild the table as it grows)."""
        if self.table is not None and any(map(int.__gt__, sizes, self.capacity)):
            pairs = zip(sizes, self.capacity, strict=True)
            capacity = [max(c, 1 << (s - 1).bit_length()) for s, c in pairs]
            count = len(stored[0])
            if float(np.prod(capacity, dtype=np.float64)) > self.LIMIT + 8 * count:
                self.table = None  # hash from now on: enter the cells so far, in order
                if count:
                    self.hashed.add(self._pack(stored))
            else:
                self.capacity = capacity
                self.table = np.full(int(np.prod(capacity)), -1, dtype=np.int32)
                self.table[self._flat(stored)] = np.arange(count, dtype=np.int32)
        if self.table is not None:
            return self.table[self._flat(gcodes)].astype(np.int64)
        return self.hashed.lookup(self._pack(gcodes))

    def add(self, gcodes: list[np.ndarray], ids: np.ndarray) -> None:
        """Enter new cells (their codes) with their ids (the next ids, in order)."""
        if self.table is not None:
            self.table[self._flat(gcodes)] = ids
        else:
            self.hashed.add(self._pack(gcodes))


_END = object()  # end of one stream in a read-ahead queue


def read_ahead(
    streams: Iterable[tuple[Any, Callable[[], Iterable]]], workers: int = 2, depth: int = 2
) -> Iterator[tuple[Any, Any]]:
    """``(tag, item)`` of every stream in order, the streams read by ``workers`` threads.

    ``streams`` holds ``(tag, open)`` pairs; ``open()`` returns an iterator (e.g. the
    record batches of one Parquet file). Stream ``i`` is read by thread ``i % workers``
    into its own queue of at most ``depth`` items, so up to ``workers`` streams decode
    at once (pyarrow releases the GIL) while the caller consumes them in order; memory
    stays bounded by ``workers * depth`` items. An error raised while reading a stream
    is re-raised here when the caller reaches it, so errors come in stream order.

    Examples
    --------
    >>> list(read_ahead([("a", lambda: [1, 2]), ("b", lambda: [3])]))
    [('a', 1), ('a', 2), ('b', 3)]
    """
    streams = list(streams)
    if workers < 1:  # no threads: read each stream in turn
        yield from ((tag, item) for tag, opened in streams for item in opened())
        return
    workers = min(workers, len(streams))
    queues = [queue.Queue(maxsize=depth) for _ in range(workers)]
    stop = threading.Event()

    def put(q: queue.Queue, item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce(w: int) -> None:
        for _, opened in streams[w::workers]:
            try:
                for item in opened():
                    if not put(queues[w], (item, None)):
                        return
            except BaseException as err:  # handed to the consumer, in stream order
                put(queues[w], (_END, err))
                return
            if not put(queues[w], (_END, None)):
                return

    threads = [
        threading.Thread(target=produce, args=(w,), daemon=True, name=f"bayes-regimes-read-{w}")
        for w in range(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        for i, (tag, _) in enumerate(streams):
            while True:
                item, err = queues[i % workers].get()
                if err is not None:
                    raise err
                if item is _END:
                    break
                yield tag, item
    finally:
        stop.set()
        for q, thread in zip(queues, threads, strict=True):
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(0.01)
