"""The data layer: rollout outcomes reduced to cells and sufficient-statistic patterns.

A *cell* is one problem attempted by one group (model) under one condition, with
``n`` rollouts and ``k`` successes. Cells are numbered in first-appearance order of
their key (problem, group, condition). Every problem with the input raises
:class:`~bayes_regimes.errors.DataError` with one line naming the row (0-based
position in the input) and/or the column. Reading files and checking columns live in
:mod:`bayes_regimes.io` (``read_rollouts``, ``validate_columns`` and
``detect_input_kind`` are importable from here too). This module imports only numpy
and pandas, so the command line can validate input before importing PyMC.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"problem_id": list("aba"), "model": list("xxy"), "n": 9, "k": [0, 3, 5]})
>>> data = RolloutData.from_counts(df, group="model")
>>> data.strata
['x', 'y']
>>> int(data.patterns().table["count"].sum()) == data.n_cells
True
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from bayes_regimes._cellkeys import _cell_keys, _cell_text, _check_sample
from bayes_regimes.errors import DataError
from bayes_regimes.io import (  # _BOOLS and _as_list: re-exported for reduce and _streaming
    _BOOLS,  # noqa: F401
    _RESERVED,
    _as_list,  # noqa: F401
    _check_frame,
    _counts,
    _fail,
    _features,
    _parse_correct,
    detect_input_kind,
    read_rollouts,
    validate_columns,
)

__all__ = ["Patterns", "RolloutData", "detect_input_kind", "read_rollouts", "validate_columns"]


# ----------------------------------------------------------------------------- classes


@dataclasses.dataclass(frozen=True)
class Patterns:
    """Unique (stratum, n, k) sufficient-statistic patterns of a :class:`RolloutData`.

    Attributes
    ----------
    table : pandas.DataFrame
        Columns ``stratum``, ``n``, ``k``, ``count`` (int64), sorted by (stratum, n, k).
    cell_pattern : numpy.ndarray
        int64 per cell: the row of ``table`` holding that cell's pattern.

    Examples
    --------
    >>> df = pd.DataFrame({"problem_id": [1, 2, 3], "n": [4, 4, 4], "k": [0, 0, 2]})
    >>> p = RolloutData.from_counts(df).patterns()
    >>> p.table["count"].tolist(), p.cell_pattern.tolist()
    ([2, 1], [0, 0, 1])
    """

    table: pd.DataFrame
    cell_pattern: np.ndarray

    @property
    def n_patterns(self) -> int:
        """Number of unique patterns."""
        return len(self.table)


class RolloutData:
    """Validated rollout outcomes, one row per cell (problem, group, condition).

    Build it with :meth:`from_counts`, :meth:`from_rollouts` or :func:`read_rollouts`.
    The constructor takes a ready ``cells`` frame (columns ``problem``, ``group``,
    ``condition``, ``n``, ``k`` and the feature columns) and validates it like counts.
    Instances are immutable: every accessor returns a copy or a read-only array.

    Parameters
    ----------
    cells : pandas.DataFrame
        One row per cell, in the order the cells should be numbered.
    has_group, has_condition : bool
        Whether group / condition labels came from a column of the input.
    features : sequence of str, optional
        Feature columns of ``cells``.

    Examples
    --------
    >>> cells = pd.DataFrame(
    ...     {"problem": ["p1", "p2"], "group": "all", "condition": "c", "n": 9, "k": 0}
    ... )
    >>> data = RolloutData(cells, has_group=False, has_condition=False)
    >>> len(data), data.strata
    (2, ['all'])
    """

    __slots__ = ("_cells", "_features", "_flags", "_patterns", "_strata", "_stratum_index")

    def __init__(
        self,
        cells: pd.DataFrame,
        *,
        has_group: bool,
        has_condition: bool,
        features: Sequence[str] = (),
    ) -> None:
        keys = {"problem": "problem", "group": "group", "condition": "condition"}
        checked = RolloutData.from_counts(cells, **keys, features=list(features))
        self._set(checked._cells, bool(has_group), bool(has_condition), list(features))

    def _set(self, cells: pd.DataFrame, has_group: bool, has_condition: bool, features: list):
        setter = object.__setattr__
        setter(self, "_cells", cells)
        setter(self, "_flags", (has_group, has_condition))
        setter(self, "_features", features)
        # Strata "group" or "group|condition", numbered in first-appearance order. The
        # columns are factorised as they are (Arrow strings: no Python objects per
        # cell); the joined strings are built per distinct pair and factorised again,
        # so pairs that join to the same string share a stratum.
        codes, uniques = pd.factorize(cells["group"], sort=False)
        uniques = np.asarray(uniques, dtype=object)
        if has_condition:
            c_codes, c_uniques = pd.factorize(cells["condition"], sort=False)
            pair, first = pd.factorize(codes * np.int64(len(c_uniques)) + c_codes, sort=False)
            joined = (
                uniques[first // len(c_uniques)]
                + "|"
                + np.asarray(c_uniques, object)[first % len(c_uniques)]
            )
            relabel, uniques = pd.factorize(joined, sort=False)
            codes = relabel[pair]
        index = codes.astype(np.int64)
        index.flags.writeable = False
        setter(self, "_strata", [str(s) for s in uniques])
        setter(self, "_stratum_index", index)
        setter(self, "_patterns", None)

    @classmethod
    def _trusted(cls, labels, n, k, feats, has_group, has_condition) -> RolloutData:
        data = {name: pd.array(labels[name], dtype="str") for name in _RESERVED[:3]}
        data.update(n=np.asarray(n, dtype=np.int64), k=np.asarray(k, dtype=np.int64))
        data.update({name: np.asarray(v, dtype=np.float64) for name, v in feats.items()})
        return _restore(cls, pd.DataFrame(data), has_group, has_condition, list(feats))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("RolloutData is immutable")

    def __reduce__(self) -> tuple:
        return (_restore, (type(self), self._cells, *self._flags, list(self._features)))

    @classmethod
    def from_counts(
        cls,
        df: pd.DataFrame,
        problem: Hashable | Sequence[Hashable] = "problem_id",
        n: Hashable = "n",
        k: Hashable = "k",
        group: Hashable | None = None,
        condition: Hashable | None = None,
        features: Sequence[Hashable] | None = None,
        duplicates: Literal["error", "sum"] = "error",
    ) -> RolloutData:
        """Build cells from one row per cell with ``n`` rollouts and ``k`` successes.

        Parameters
        ----------
        df : pandas.DataFrame
            The input; it is copied, never modified.
        problem : str or list of str
            Problem column(s); several are joined with ``"/"`` into one label.
        n, k : str
            Count columns (integers; ``12.0`` is accepted, ``12.5`` is not).
        group, condition : str, optional
            Group (model) and condition columns.
        features : list of str, optional
            Numeric per-cell features; ``None`` takes every other numeric column.
        duplicates : {"error", "sum"}
            A repeated cell is an error, or its ``n`` and ``k`` are summed.

        Returns
        -------
        RolloutData

        Raises
        ------
        DataError
            One line naming the offending row and/or column.

        Examples
        --------
        >>> df = pd.DataFrame({"problem_id": ["a", "a"], "n": [5, 5], "k": [1, 2]})
        >>> RolloutData.from_counts(df, duplicates="sum").to_frame()[["n", "k"]].values.tolist()
        [[10, 3]]
        """
        if duplicates not in ("error", "sum"):
            raise DataError(f"duplicates must be 'error' or 'sum', got {duplicates!r}")
        keys = {"problem": problem, "group": group, "condition": condition, "n": n, "k": k}
        problem = _check_frame(df, keys)
        cell, is_first, first, labels = _cell_keys(df, problem, group, condition)
        n_row = _counts(df[n], n, "n")
        k_row = _counts(df[k], k, "k")
        over = k_row > n_row
        if over.any():
            row = int(np.argmax(over))
            raise _fail(k, row, f"k={k_row[row]} exceeds n={n_row[row]}")
        if not is_first.all():
            row = int(np.argmax(~is_first))
            if duplicates == "error":
                where = _cell_text(labels, cell[row])
                raise DataError(
                    f"rows {first[cell[row]]} and {row}: duplicate cell ({where}); "
                    "pass duplicates='sum' to add their counts"
                )
            sums = pd.DataFrame({"n": n_row, "k": k_row}).groupby(cell, sort=True).sum()
            n_cell, k_cell = sums["n"].to_numpy(np.int64), sums["k"].to_numpy(np.int64)
        else:
            n_cell, k_cell = n_row, k_row
        empty = n_cell < 1
        if empty.any():
            c = int(np.argmax(empty))
            total = "summed n" if duplicates == "sum" else "n"
            raise _fail(n, int(first[c]), f"{total}={n_cell[c]} but a cell needs n >= 1")
        used = set(problem) | {c for c in (group, condition, n, k) if c is not None}
        feats = _features(df, features, used, cell, first, True)
        feats = {name: values[first] for name, values in feats.items()}
        return cls._trusted(labels, n_cell, k_cell, feats, group is not None, condition is not None)

    @classmethod
    def from_rollouts(
        cls,
        df: pd.DataFrame,
        problem: Hashable | Sequence[Hashable] = "problem_id",
        correct: Hashable = "correct",
        group: Hashable | None = None,
        condition: Hashable | None = None,
        sample: Hashable | None = None,
        features: Sequence[Hashable] | None = None,
    ) -> RolloutData:
        """Build cells from one row per rollout with a 0/1 ``correct`` outcome.

        Parameters
        ----------
        df : pandas.DataFrame
            One row per rollout; it is copied, never modified.
        problem, group, condition
            As in :meth:`from_counts`.
        correct : str
            Outcome column: 0/1, booleans or ``"true"``/``"false"`` (any case).
        sample : str, optional
            Sample index column; a repeat within a cell is an error. Without it,
            repeated rows are separate rollouts.
        features : list of str, optional
            Numeric columns constant within each cell; ``None`` takes every numeric
            column (other than keys, ``correct`` and ``sample``) that is constant
            within every cell.

        Examples
        --------
        >>> df = pd.DataFrame({"problem_id": ["a", "a", "b"], "correct": [1, 0, "true"]})
        >>> RolloutData.from_rollouts(df).to_frame()[["problem", "n", "k"]].values.tolist()
        [['a', 2, 1], ['b', 1, 1]]
        """
        keys = {"problem": problem, "group": group, "condition": condition}
        problem = _check_frame(df, {**keys, "correct": correct, "sample": sample})
        cell, _, first, labels = _cell_keys(df, problem, group, condition)
        outcome = _parse_correct(df[correct], correct)
        if sample is not None:
            _check_sample(df[sample], sample, cell, labels)
        n_cell = np.bincount(cell, minlength=len(first)).astype(np.int64)
        k_cell = np.bincount(cell[outcome], minlength=len(first)).astype(np.int64)
        used = set(problem) | {c for c in (group, condition, correct, sample) if c is not None}
        feats = _features(df, features, used, cell, first, False)
        feats = {name: values[first] for name, values in feats.items()}
        return cls._trusted(labels, n_cell, k_cell, feats, group is not None, condition is not None)

    # ------------------------------------------------------------------ accessors
    @property
    def cells(self) -> pd.DataFrame:
        """The cells (a copy-on-write copy: changing it leaves this object intact)."""
        return self._cells.copy(deep=False)

    @property
    def has_group(self) -> bool:
        """Whether group labels came from a column (else every group is ``"all"``)."""
        return self._flags[0]

    @property
    def has_condition(self) -> bool:
        """Whether condition labels came from a column (else ``"default"``)."""
        return self._flags[1]

    @property
    def features(self) -> list[str]:
        """Names of the feature columns of :attr:`cells`."""
        return list(self._features)

    @property
    def strata(self) -> list[str]:
        """Stratum labels in first-appearance order: group, or ``"group|condition"``."""
        return list(self._strata)

    @property
    def stratum_index(self) -> np.ndarray:
        """int64 per cell: position of the cell's stratum in :attr:`strata` (read-only)."""
        return self._stratum_index

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return len(self._cells)

    @property
    def n_rollouts(self) -> int:
        """Total number of rollouts over all cells."""
        return int(self._cells["n"].sum())

    def __len__(self) -> int:
        return len(self._cells)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RolloutData):
            return NotImplemented
        return self._flags == other._flags and self._cells.equals(other._cells)

    __hash__ = None  # type: ignore[assignment]

    def to_frame(self) -> pd.DataFrame:
        """Return a deep copy of :attr:`cells`."""
        return self._cells.copy(deep=True)

    def patterns(self) -> Patterns:
        """Reduce the cells to unique (stratum, n, k) patterns with multiplicities.

        Examples
        --------
        >>> df = pd.DataFrame({"problem_id": list("abc"), "n": 3, "k": [1, 0, 1]})
        >>> RolloutData.from_counts(df).patterns().table.values.tolist()
        [[0, 3, 0, 1], [0, 3, 1, 2]]
        """
        if self._patterns is None:
            s = self._stratum_index
            n = self._cells["n"].to_numpy()
            k = self._cells["k"].to_numpy()
            order = np.lexsort((k, n, s))
            s, n, k = s[order], n[order], k[order]
            new = np.ones(len(s), dtype=bool)
            new[1:] = (s[1:] != s[:-1]) | (n[1:] != n[:-1]) | (k[1:] != k[:-1])
            sorted_pattern = np.cumsum(new) - 1
            cell_pattern = np.empty(len(s), dtype=np.int64)
            cell_pattern[order] = sorted_pattern
            cell_pattern.flags.writeable = False
            table = {"stratum": s[new], "n": n[new], "k": k[new]}
            table["count"] = np.bincount(sorted_pattern).astype(np.int64)
            object.__setattr__(self, "_patterns", (table, cell_pattern))
        table, cell_pattern = self._patterns
        table = pd.DataFrame({c: v.astype(np.int64) for c, v in table.items()})
        return Patterns(table, cell_pattern)

    def subset(self, mask_or_index: Any) -> RolloutData:
        """Keep some cells, in their original order (strata are renumbered).

        Parameters
        ----------
        mask_or_index : array of bool (one per cell) or of unique int positions

        Examples
        --------
        >>> df = pd.DataFrame({"problem_id": list("abc"), "n": 3, "k": [1, 0, 1]})
        >>> RolloutData.from_counts(df).subset([2, 0]).cells["problem"].tolist()
        ['a', 'c']
        """
        sel = np.asarray(mask_or_index)
        if sel.dtype == bool:
            if sel.shape != (len(self),):
                raise DataError(f"mask has shape {sel.shape}; expected ({len(self)},)")
            index = np.flatnonzero(sel)
        elif sel.size == 0 or ptypes.is_integer_dtype(sel.dtype):
            index = np.sort(sel.astype(np.int64).ravel())
            if index.size and (index[0] < 0 or index[-1] >= len(self)):
                raise DataError(f"cell positions must lie in 0..{len(self) - 1}")
            if np.any(index[1:] == index[:-1]):
                raise DataError("cell positions must be unique")
        else:
            raise DataError(f"subset takes a boolean mask or int positions, got {sel.dtype}")
        if index.size == 0:
            raise DataError("subset selects no cells")
        cells = self._cells.iloc[index].reset_index(drop=True).copy(deep=True)
        return _restore(type(self), cells, *self._flags, list(self._features))

    def _summary(self) -> dict[str, Any]:
        c = self._cells
        return {
            "cells": len(c),
            "problems": c["problem"].nunique(),
            "groups": c["group"].nunique(),
            "conditions": c["condition"].nunique(),
            "strata": len(self._strata),
            "rollouts": self.n_rollouts,
            "cells with k=0": f"{float((c['k'] == 0).mean()):.3f}",
        }

    def __repr__(self) -> str:
        items = ", ".join(f"{key.split()[0]}={v}" for key, v in list(self._summary().items())[:6])
        return f"RolloutData({items}, features={self._features})"

    def _repr_html_(self) -> str:
        rows = dict(self._summary())
        if self._features:
            rows["features"] = ", ".join(self._features)
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td>{html.escape(str(v))}</td></tr>"
            for k, v in rows.items()
        )
        return f"<table><caption>RolloutData</caption>{body}</table>"


def _restore(cls: type, cells: pd.DataFrame, *flags_and_features: Any) -> RolloutData:
    obj = object.__new__(cls)
    obj._set(cells, *flags_and_features)
    return obj
