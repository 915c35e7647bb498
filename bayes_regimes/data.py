"""The data layer: rollout outcomes reduced to cells and sufficient-statistic patterns.

A *cell* is one problem attempted by one group (model) under one condition, with
``n`` rollouts and ``k`` successes. Cells are numbered in first-appearance order of
their key (problem, group, condition). Every problem with the input raises
:class:`~bayes_regimes.errors.DataError` with one line naming the row (0-based
position in the input) and/or the column. This module imports only numpy and
pandas, so the command line can validate input before importing PyMC.

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
import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence
from os import PathLike, fspath
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from bayes_regimes.errors import DataError

__all__ = ["Patterns", "RolloutData", "detect_input_kind", "read_rollouts", "validate_columns"]

_RESERVED = ("problem", "group", "condition", "n", "k")
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl"}
_FORMATS[".ndjson"] = "jsonl"
_COMPRESSED = {".gz", ".bz2", ".xz", ".zip", ".zst"}
_BOOLS = {"true": 1, "false": 0, "1": 1, "0": 0}
ColumnSpec = Hashable | Sequence[Hashable] | None


def _as_list(spec: ColumnSpec) -> list:
    if spec is None:
        return []
    if isinstance(spec, (list, tuple)):
        return list(spec)
    return [spec]


def _fail(column: Any, row: int | None, message: str) -> DataError:
    where = [f"column {column!r}"] if column is not None else []
    where += [f"row {row}"] if row is not None else []
    return DataError(f"{', '.join(where)}: {message}" if where else message)


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _show(columns: list) -> str:
    names = ", ".join(repr(c) for c in columns[:25])
    return names + (f", ... ({len(columns)} in all)" if len(columns) > 25 else "")


def validate_columns(columns: Iterable[Hashable], needed: Mapping[str, ColumnSpec]) -> None:
    """Check that the columns named for each role exist, once each, in one role each.

    Pure and cheap: the command line calls it on a file's header before importing PyMC.

    Parameters
    ----------
    columns : iterable of hashable
        The available column names (for example ``df.columns``).
    needed : mapping of str to column name, list of names, or None
        Role -> column name(s), e.g. ``{"problem": ["benchmark", "problem_id"],
        "group": "model", "condition": None}``; ``None`` roles are skipped.

    Raises
    ------
    DataError
        Naming the first missing, repeated or doubly-used column, the available
        columns, and any case-insensitive near match.

    Examples
    --------
    >>> validate_columns(["problem_id", "n", "k"], {"problem": "problem_id", "n": "n"})
    >>> try:
    ...     validate_columns(["Problem_ID", "n"], {"problem": "problem_id"})
    ... except DataError as err:
    ...     print(err)
    column 'problem_id' (problem) not found; did you mean 'Problem_ID'?; available columns: \
'Problem_ID', 'n'
    """
    cols = list(columns)
    roles: dict[Hashable, str] = {}
    for role, spec in needed.items():
        for name in _as_list(spec):
            count = sum(1 for c in cols if c == name)
            if count == 0:
                low = str(name).lower()
                near = [c for c in cols if str(c).lower() == low]
                hint = f"did you mean {near[0]!r}?; " if len(near) == 1 else ""
                if len(near) > 1:
                    hint = f"several columns match case-insensitively ({_show(near)}); "
                raise DataError(
                    f"column {name!r} ({role}) not found; {hint}available columns: {_show(cols)}"
                )
            if count > 1:
                raise DataError(f"column {name!r} ({role}) is ambiguous: it appears {count} times")
            if name in roles:
                raise DataError(f"column {name!r} is used both as {roles[name]} and as {role}")
            roles[name] = role


def detect_input_kind(
    columns: Iterable[Hashable],
    *,
    n: Hashable | None = None,
    k: Hashable | None = None,
    correct: Hashable | None = None,
) -> Literal["counts", "rollouts"]:
    """Tell counts (``n`` and ``k`` columns) from per-rollout rows (a ``correct`` column).

    Explicit ``n=``/``k=`` mean counts and ``correct=`` means per-rollout rows;
    otherwise the default column names ``n``, ``k`` and ``correct`` are looked for.

    Examples
    --------
    >>> detect_input_kind(["problem_id", "n", "k"])
    'counts'
    >>> detect_input_kind(["problem_id", "correct"])
    'rollouts'
    """
    cols = list(columns)
    if (n is not None or k is not None) and correct is not None:
        raise DataError("pass n=/k= for counts or correct= for per-rollout rows, not both")
    if n is not None or k is not None:
        return "counts"
    if correct is not None:
        return "rollouts"
    has_n, has_k, has_c = "n" in cols, "k" in cols, "correct" in cols
    if has_n and has_k and has_c:
        raise DataError(
            "ambiguous input: found count columns 'n', 'k' and per-rollout column 'correct'; "
            "pass n=/k= or correct= to choose"
        )
    if has_n and has_k:
        return "counts"
    if has_c:
        return "rollouts"
    found = [c for c, h in (("n", has_n), ("k", has_k)) if h]
    part = f" (found only {found[0]!r})" if found else ""
    raise DataError(
        f"cannot tell counts from per-rollout rows: looked for count columns 'n' and 'k'{part} "
        f"or per-rollout column 'correct'; available columns: {_show(cols)}; "
        "pass n=/k= or correct="
    )


# ----------------------------------------------------------------------------- helpers


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


def _factorize(series: pd.Series, column: Hashable) -> tuple[np.ndarray, Any]:
    try:
        codes, uniques = pd.factorize(series, sort=False)
    except TypeError:
        raise _fail(column, None, "values must be scalars (strings or numbers)") from None
    if len(codes) and codes.min() < 0:
        raise _fail(column, int(np.argmax(codes < 0)), "missing value")
    return codes.astype(np.int64, copy=False), uniques


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


def _counts(series: pd.Series, column: Hashable, name: str) -> np.ndarray:
    """Validate one count column and return it as int64."""
    s = series
    if ptypes.is_bool_dtype(s.dtype):
        raise _fail(column, None, f"{name} must hold integer counts, not booleans")
    if not ptypes.is_numeric_dtype(s.dtype):
        num = pd.to_numeric(s, errors="coerce")
        bad = (num.isna() & s.notna()).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise _fail(column, row, f"non-numeric {name}={_py(s.iloc[row])!r}")
        s = num
    missing = s.isna().to_numpy()
    if missing.any():
        raise _fail(column, int(np.argmax(missing)), f"missing value for {name}")
    if ptypes.is_integer_dtype(s.dtype):
        values = s.to_numpy(dtype=np.int64)
    else:
        raw = s.to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(raw) | (np.mod(raw, 1) != 0) | (np.abs(raw) > 2.0**62)
        if bad.any():
            row = int(np.argmax(bad))
            raise _fail(column, row, f"{name}={_py(raw[row])!r} is not an integer count")
        values = raw.astype(np.int64)
    if (values < 0).any():
        row = int(np.argmax(values < 0))
        raise _fail(column, row, f"negative {name}={values[row]}")
    return values


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


def _features(df, spec, used, cell, first, explicit_only_constant: bool) -> dict:
    """Feature columns (float64 per row), checked for being numeric, finite, per-cell constant."""
    if spec is not None:
        names = _as_list(spec)
        validate_columns(df.columns, {"feature": names})
        for name in names:
            if name in used:
                raise _fail(name, None, "is a key or count column and cannot be a feature")
            if name in _RESERVED:
                raise _fail(name, None, "feature name clashes with a cells column; rename it")
            if not ptypes.is_numeric_dtype(df[name].dtype):
                raise _fail(name, None, f"feature must be numeric, got dtype {df[name].dtype}")
    else:
        counts = pd.Index(df.columns).value_counts()
        names = [
            c
            for c in df.columns
            if c not in used
            and c not in _RESERVED
            and counts[c] == 1
            and ptypes.is_numeric_dtype(df[c].dtype)
        ]
    out = {}
    for name in names:
        values = df[name].to_numpy(dtype=np.float64, na_value=np.nan)
        ref = values[first[cell]]
        differs = (values != ref) & ~(np.isnan(values) & np.isnan(ref))
        if differs.any():
            if spec is None and not explicit_only_constant:
                continue  # per-rollout auto mode: varying columns are not features
            row = int(np.argmax(differs))
            raise DataError(
                f"column {name!r}, rows {first[cell[row]]} and {row}: conflicting feature values "
                f"{_py(ref[row])!r} and {_py(values[row])!r} for the same cell"
            )
        bad = ~np.isfinite(values)
        if bad.any():
            raise _fail(name, int(np.argmax(bad)), "missing or non-finite feature value")
        out[name] = values
    return out


def _check_frame(df: Any, keys: Mapping[str, ColumnSpec]) -> list:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise DataError("input has zero rows")
    validate_columns(df.columns, keys)
    problem = _as_list(keys["problem"])
    if not problem:
        raise DataError("problem must name at least one column")
    return problem


def _parse_correct(series: pd.Series, column: Hashable) -> np.ndarray:
    """Per-rollout outcomes as bool: 0/1, booleans or 'true'/'false' strings."""
    if ptypes.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(values).any():
            raise _fail(column, int(np.argmax(np.isnan(values))), "missing value for correct")
        bad = (values != 0) & (values != 1)
        if bad.any():
            row = int(np.argmax(bad))
            raise _fail(
                column, row, f"correct must be 0/1 or boolean, got {_py(series.iloc[row])!r}"
            )
        return values == 1
    codes, uniques = _factorize(series, column)
    mapped = np.zeros(len(uniques), dtype=bool)
    for j, value in enumerate(uniques):
        parsed = None
        if isinstance(value, (bool, np.bool_, numbers.Number)) and value in (0, 1):
            parsed = int(value)
        elif isinstance(value, str):
            parsed = _BOOLS.get(value.strip().lower())
        if parsed is None:
            row = int(np.argmax(codes == j))
            raise _fail(column, row, f"correct must be 0/1 or boolean, got {_py(value)!r}")
        mapped[j] = bool(parsed)
    return mapped[codes]


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
        strata = cells["group"].to_numpy(dtype=object)
        if has_condition:
            strata = strata + "|" + cells["condition"].to_numpy(dtype=object)
        codes, uniques = pd.factorize(strata, sort=False)
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


# ----------------------------------------------------------------------------- files


def _file_format(path: Path, format: str | None) -> str:
    if format is not None:
        name = "." + str(format).lower().lstrip(".")
        if name not in _FORMATS:
            raise DataError(f"unknown format {format!r}; expected csv, parquet or jsonl")
        return _FORMATS[name]
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in _FORMATS:
        raise DataError(
            f"unknown file format {suffix or '(no suffix)'!r} of {path.name}; expected "
            ".csv, .parquet/.pq or .jsonl/.ndjson, or pass format="
        )
    return _FORMATS[suffix]


def read_rollouts(
    path: str | PathLike[str],
    *,
    problem: Hashable | Sequence[Hashable] | None = None,
    n: Hashable | None = None,
    k: Hashable | None = None,
    correct: Hashable | None = None,
    group: Hashable | None = None,
    condition: Hashable | None = None,
    sample: Hashable | None = None,
    features: Sequence[Hashable] | None = None,
    duplicates: Literal["error", "sum"] = "error",
    format: str | None = None,
) -> RolloutData:
    """Read counts or per-rollout rows from CSV, Parquet or JSONL, or a Parquet dataset.

    A directory, a glob (``"logs/*/part-*.parquet"``) or an fsspec URL (``s3://...``)
    is read as a Parquet dataset, hive-partitioned or not, and streamed to cells with
    :func:`bayes_regimes.reduce.reduce_rollouts` without loading the rows into memory.

    The format comes from the suffix (``.csv``, ``.parquet``/``.pq``,
    ``.jsonl``/``.ndjson``, optionally compressed, e.g. ``.csv.gz``) or ``format=``.
    The input is counts when it has ``n`` and ``k`` columns and per-rollout rows
    when it has a ``correct`` column (see :func:`detect_input_kind`). Row numbers in
    errors are 0-based positions of the data rows (the CSV header is not counted).
    CSV key columns (problem, group, condition) are read as strings, so ``"007"``
    stays ``"007"``.

    Parameters
    ----------
    path : str or path-like
    problem : str or list of str, default ``"problem_id"``
    n, k, correct, group, condition, sample, features, duplicates
        As in :meth:`RolloutData.from_counts` and :meth:`RolloutData.from_rollouts`.
    format : {"csv", "parquet", "jsonl"}, optional

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "counts.csv")
    >>> pd.DataFrame({"problem_id": ["007", "8"], "n": 4, "k": [0, 2]}).to_csv(path, index=False)
    >>> read_rollouts(path).cells["problem"].tolist()
    ['007', '8']
    """
    text = fspath(path)
    pattern = "://" in text or any(c in text for c in "*?[")
    if Path(text).is_dir() or (pattern and not Path(text).is_file()):
        # a Parquet dataset (directory, glob or fsspec URL): streamed by bayes_regimes.reduce
        from bayes_regimes.reduce import reduce_rollouts

        if format not in (None, "parquet"):
            raise DataError(f"{text} is read as a Parquet dataset; format={format!r} is not")
        keys = {"problem": problem, "group": group, "condition": condition, "sample": sample}
        counts = {"n": n, "k": k, "correct": correct, "duplicates": duplicates}
        return reduce_rollouts(text, **keys, **counts, features=features, progress=False)
    path = Path(path)
    fmt = _file_format(path, format)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    problem = "problem_id" if problem is None else problem
    try:
        if fmt == "csv":
            keys = _as_list(problem) + [c for c in (group, condition) if c is not None]
            df = pd.read_csv(path, dtype={c: str for c in keys})
        elif fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_json(path, lines=True, dtype=False)
    except (ValueError, OSError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"cannot read {path.name} as {fmt}: {first_line}") from None
    keys = {"problem": problem, "group": group, "condition": condition, "features": features}
    if detect_input_kind(df.columns, n=n, k=k, correct=correct) == "counts":
        if sample is not None:
            raise DataError("sample= applies to per-rollout rows, but the input holds counts")
        n, k = ("n" if n is None else n), ("k" if k is None else k)
        return RolloutData.from_counts(df, n=n, k=k, duplicates=duplicates, **keys)
    if duplicates not in ("error", "sum"):
        raise DataError(f"duplicates must be 'error' or 'sum', got {duplicates!r}")
    correct = "correct" if correct is None else correct
    return RolloutData.from_rollouts(df, correct=correct, sample=sample, **keys)
