"""Cell keys of input rows: codes, first-appearance order, labels and repeat checks.

Used by :class:`~bayes_regimes.data.RolloutData` (``from_counts``,
``from_rollouts``) and the streamed reduction (:mod:`bayes_regimes.reduce`). A
cell's identity is the label string of each key column; cells are numbered in
first-appearance order. Imports only numpy and pandas.

Examples
--------
>>> import numpy as np
>>> _first_flags(np.array([0, 1, 0, 2])).tolist()
[True, True, False, True]
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from bayes_regimes.io import _RESERVED, _factorize, _fail, _py


def _first_flags(codes: np.ndarray) -> np.ndarray:
    """True where a first-appearance-numbered code appears for the first time."""
    flags = np.ones(len(codes), dtype=bool)
    if len(codes) > 1:
        flags[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return flags


def _combine(a: np.ndarray, b: np.ndarray, nb: int) -> np.ndarray:
    if nb == 1:
        return a
    return pd.factorize(a * np.int64(nb) + b, sort=False)[0].astype(np.int64, copy=False)


def _labels(series: pd.Series, column: Hashable) -> tuple[np.ndarray, np.ndarray]:
    """Row codes and their string labels (identity is the label string)."""
    codes, uniques = _factorize(series, column)
    index = pd.Index(uniques)
    if ptypes.is_float_dtype(index.dtype) and np.all(np.mod(index.to_numpy(), 1) == 0):
        index = index.astype(np.int64)
    strings = np.asarray(index.astype(str), dtype=object)
    if index.dtype != object:  # str() is one-to-one on these values
        return codes, strings
    lab_codes, lab_uniques = pd.factorize(strings, sort=False)
    return lab_codes[codes].astype(np.int64), np.asarray(lab_uniques, dtype=object)


def _cell_keys(df: pd.DataFrame, problem: list, group: Any, condition: Any):
    """Cell codes per row (first-appearance order) and per-cell label arrays."""
    rows = len(df)
    pcodes, plabels = _labels(df[problem[0]], problem[0])
    for col in problem[1:]:
        codes, labels = _labels(df[col], col)
        combined = _combine(pcodes, codes, len(labels))
        first = np.flatnonzero(_first_flags(combined))
        joined = plabels[pcodes[first]] + "/" + labels[codes[first]]
        relabel, uniques = pd.factorize(joined, sort=False)
        pcodes, plabels = relabel[combined], np.asarray(uniques, dtype=object)
    parts = [(pcodes, plabels)]
    for col, default in ((group, "all"), (condition, "default")):
        if col is None:
            parts.append((np.zeros(rows, np.int64), np.array([default], dtype=object)))
        else:
            parts.append(_labels(df[col], col))
    cell = _combine(parts[0][0], parts[1][0], len(parts[1][1]))
    cell = _combine(cell, parts[2][0], len(parts[2][1]))
    is_first = _first_flags(cell)
    first = np.flatnonzero(is_first)
    labels = {
        name: lab[codes[first]] for name, (codes, lab) in zip(_RESERVED[:3], parts, strict=True)
    }
    return cell, is_first, first, labels


def _cell_text(labels: dict, cell: int) -> str:
    return ", ".join(f"{key}={labels[key][cell]!r}" for key in _RESERVED[:3])


def _check_sample(series: pd.Series, column: Hashable, cell: np.ndarray, labels: dict) -> None:
    """A sample index must not repeat within a cell."""
    if ptypes.is_integer_dtype(series.dtype) and not series.isna().any():
        values = series.to_numpy(dtype=np.int64)
        low, span = values.min(), int(values.max()) - int(values.min()) + 1
        size = (int(cell.max()) + 1) * span
        dense = size <= 4 * len(values) + 1024  # fast path for small sample indices
        if dense and np.bincount(cell * span + (values - low), minlength=size).max() <= 1:
            return
    codes, _ = _factorize(series, column)
    key = _combine(cell, codes, int(codes.max()) + 1)
    fresh = _first_flags(key)
    if not fresh.all():
        row = int(np.argmax(~fresh))
        earlier = int(np.flatnonzero(fresh)[key[row]])
        raise _fail(
            column,
            row,
            f"sample {_py(series.iloc[row])!r} repeats row {earlier} in the same cell "
            f"({_cell_text(labels, cell[row])})",
        )
