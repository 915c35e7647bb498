"""Compiled per-row kernels of the streamed reduction (numba, no GIL held).

Two loops that numpy can only write as several passes over a batch:

* :func:`count_pairs`: rollouts, successes and the first row per local key in one
  pass (numpy needs a shift, an or, a ``bincount`` that widens its input to int64, and
  ``minimum.at`` passes for the first rows);
* :func:`set_bits`: a (cell, sample) bit per row, stopping at the first repeat;
* :class:`StringMap`: Arrow string values -> dense ids in first-appearance order, an
  open-addressing table probed with the strings' bytes (no Python objects, no
  per-string hashing passes, hits verified byte by byte).

numba comes with PyMC (through PyTensor). Kernels compile once per machine (cached
on disk where a cache directory is writable, see :mod:`bayes_regimes._numba`) and are
imported only when a reduction runs.

Examples
--------
>>> import numpy as np, pyarrow as pa
>>> table, first = np.zeros((3, 2), np.int64), np.full(3, -1)
>>> count_pairs(np.array([2, 0, 2], np.int32), np.array([1, 0, 0], np.uint8), table, first)
-1
>>> table.tolist(), first.tolist()
([[1, 0], [0, 0], [1, 1]], [1, -1, 0])
>>> names = StringMap()
>>> (
...     names.find_or_add(pa.array(["b", "a", "b"])).tolist(),
...     names.find_or_add(pa.array(["a", "c"])).tolist(),
... )
([0, 1, 0], [1, 2])
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from bayes_regimes._numba import jit

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@functools.partial(jit, nogil=True)
def count_pairs(
    key: np.ndarray, outcome: np.ndarray, table: np.ndarray, first: np.ndarray
) -> int:  # pragma: no cover
    """Add each row to ``table[key, outcome]`` (shape ``(size, 2)``) and note the first
    row of each key in ``first`` (filled with -1 by the caller); return -1, or the
    first row whose key lies outside ``0 .. size - 1`` or whose outcome is not 0 / 1
    (nothing is counted then)."""
    size = table.shape[0]
    for i in range(key.shape[0]):
        k = key[i]
        if k < 0 or k >= size or outcome[i] > 1:
            table[:] = 0
            return i
        if first[k] < 0:
            first[k] = i
        table[k, outcome[i]] += 1
    return -1


@functools.partial(jit, nogil=True)
def set_bits(key: np.ndarray, codes: np.ndarray, block: np.ndarray) -> int:  # pragma: no cover
    """Set bit ``codes[i]`` of row ``key[i]`` of ``block`` (uint8, shape ``(size, width)``)
    for each row i; stop at the first bit already set and return its row, else -1.
    A key or code outside the block raises (a defect, not a data error)."""
    size, width = block.shape
    for i in range(key.shape[0]):
        row, byte = key[i], codes[i] >> 3
        if row < 0 or row >= size or codes[i] < 0 or byte >= width:
            raise IndexError("key or sample code outside the bit block")
        mask = np.uint8(1 << (codes[i] & 7))
        if block[row, byte] & mask:
            return i
        block[row, byte] |= mask
    return -1


@functools.partial(jit, nogil=True)
def _hash(data, lo, hi):  # pragma: no cover
    """FNV-1a of ``data[lo:hi]`` seeded with the length, high bits folded down."""
    h = _FNV_OFFSET ^ np.uint64(hi - lo)
    for j in range(lo, hi):
        h = (h ^ np.uint64(data[j])) * _FNV_PRIME
    return h ^ (h >> np.uint64(29))  # FNV's low bits mix poorly; the slot uses them


@functools.partial(jit, nogil=True)
def _find_or_add(offsets, data, slots, hashes, starts, store, count):  # pragma: no cover
    """Ids of the strings ``data[offsets[i]:offsets[i + 1]]``; absent ones get the next
    ids. The caller provides room (see StringMap.reserve). Returns (ids, new count)."""
    mask = slots.shape[0] - 1
    ids = np.empty(offsets.shape[0] - 1, np.int64)
    for i in range(offsets.shape[0] - 1):
        lo, hi = offsets[i], offsets[i + 1]
        h = _hash(data, lo, hi)
        slot = np.int64(h & np.uint64(mask))
        while True:
            found = slots[slot]
            if found < 0:  # absent: store it
                slots[slot] = count
                hashes[count] = h
                start = starts[count]
                store[start : start + hi - lo] = data[lo:hi]
                starts[count + 1] = start + hi - lo
                ids[i] = count
                count += 1
                break
            if hashes[found] == h and starts[found + 1] - starts[found] == hi - lo:
                a = starts[found]
                same = True
                for j in range(hi - lo):
                    if store[a + j] != data[lo + j]:
                        same = False
                        break
                if same:
                    ids[i] = found
                    break
            slot = (slot + 1) & mask
    return ids, count


@functools.partial(jit, nogil=True)
def _rehash(hashes, count, slots):  # pragma: no cover
    """Enter ids ``0 .. count - 1`` into an empty table by their stored hashes."""
    mask = slots.shape[0] - 1
    for j in range(count):
        slot = np.int64(hashes[j] & np.uint64(mask))
        while slots[slot] >= 0:
            slot = (slot + 1) & mask
        slots[slot] = j


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """int64 offsets and the byte buffer of a string array (sliced arrays included)."""
    wide = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], wide)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data


def string_hashes(arr: pa.Array) -> np.ndarray:
    """The 64-bit hash :class:`StringMap` gives each string (for tests and diagnostics)."""
    offsets, data = _buffers(arr)
    return np.array([_hash(data, offsets[i], offsets[i + 1]) for i in range(len(arr))], np.uint64)


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    if size <= len(a):
        return a
    new = np.zeros(max(size, 2 * len(a)), dtype=a.dtype)
    new[: len(a)] = a
    return new


class StringMap:
    """Strings -> dense ids 0, 1, ... in first-appearance order, fed Arrow arrays."""

    def __init__(self) -> None:
        self.count = 0
        self.slots = np.full(64, -1, dtype=np.int64)
        self.hashes = np.zeros(32, dtype=np.uint64)
        self.starts = np.zeros(33, dtype=np.int64)  # id j: store[starts[j]:starts[j + 1]]
        self.store = np.zeros(256, dtype=np.uint8)

    def __len__(self) -> int:
        return self.count

    def reserve(self, strings: int, nbytes: int) -> None:
        """Room for ``strings`` more strings of ``nbytes`` bytes in all (load <= 1/2)."""
        total = self.count + strings
        self.hashes = _grown(self.hashes, total)
        self.starts = _grown(self.starts, total + 1)
        self.store = _grown(self.store, int(self.starts[self.count]) + nbytes)
        if 2 * total > len(self.slots):  # rehash into a larger table, ids kept
            self.slots = np.full(1 << (4 * total - 1).bit_length(), -1, dtype=np.int64)
            _rehash(self.hashes, self.count, self.slots)

    def find_or_add(self, arr: pa.Array) -> np.ndarray:
        """Ids of the values of a string array without nulls, adding the absent ones."""
        offsets, data = _buffers(arr)
        self.reserve(len(arr), int(offsets[-1] - offsets[0]))
        ids, self.count = _find_or_add(
            offsets,
            data,
            self.slots,
            self.hashes,
            self.starts,
            self.store,
            self.count,
        )
        return ids
