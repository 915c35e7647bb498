"""Reading rollout files and validating their columns.

:func:`read_rollouts` reads CSV, Parquet or JSONL (or a Parquet dataset), tells
counts from per-rollout rows (:func:`detect_input_kind`) and builds a
:class:`~bayes_regimes.data.RolloutData`. The column checks used by every input path
(:func:`validate_columns`, count, outcome and feature columns) live here too, and
raise :class:`~bayes_regimes.errors.DataError` with one line naming the row (0-based
position in the input) and/or the column. Like :mod:`bayes_regimes.data`, this module
imports only numpy and pandas, so the command line validates input before importing
PyMC.

Examples
--------
>>> import pandas as pd
>>> detect_input_kind(["problem_id", "correct"])
'rollouts'
>>> _counts(pd.Series([3, 4.0]), "n", "n").tolist()
[3, 4]
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence
from os import PathLike, fspath
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from bayes_regimes.errors import DataError

if TYPE_CHECKING:
    from bayes_regimes.data import RolloutData

__all__ = ["detect_input_kind", "read_rollouts", "validate_columns"]

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


# ----------------------------------------------------------------------------- columns


def _factorize(series: pd.Series, column: Hashable) -> tuple[np.ndarray, Any]:
    try:
        codes, uniques = pd.factorize(series, sort=False)
    except TypeError:
        raise _fail(column, None, "values must be scalars (strings or numbers)") from None
    if len(codes) and codes.min() < 0:
        raise _fail(column, int(np.argmax(codes < 0)), "missing value")
    return codes.astype(np.int64, copy=False), uniques


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
    from bayes_regimes.data import RolloutData

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
    if path.stat().st_size == 0:
        raise DataError(f"{path.name}: empty file, input has zero rows")
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
    if len(df) == 0:
        raise DataError(f"{path.name}: input has zero rows")
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
