"""The last step of a reduction: per-cell statistics to a :class:`RolloutData`.

:func:`bayes_regimes.reduce.reduce_rollouts` (single process or Dask) ends here with
the distinct raw values of each key column, each cell's codes into them and the
per-cell statistics of :func:`~bayes_regimes._streaming.merge_spec`. This module turns
raw values into labels (merging distinct raw values that print alike, as
``RolloutData.from_rollouts`` does), checks counts and features across files, and
builds the cells table in Arrow (no Python object per cell).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bayes_regimes._cellkeys import _first_flags, _labels
from bayes_regimes._streaming import NO_POS, Plan, merge_spec
from bayes_regimes.data import RolloutData
from bayes_regimes.errors import DataError


def _finish(
    uniques: list[pd.Series], codes: list[np.ndarray], stats: pd.DataFrame, plan: Plan, src: Any
) -> RolloutData:
    """Labels, label-level merging, feature and count checks; the RolloutData.

    ``uniques`` holds the distinct raw values of each key column, ``codes`` each
    cell's position in them and ``stats`` the per-cell columns of :func:`merge_spec`;
    ``src`` (the reduction's source) names a row position in errors: ``src.locate(pos)``.
    """
    if len(stats) == 0:
        raise DataError("input has zero rows")
    pos = stats["_pos"].to_numpy()
    if (np.diff(pos) < 0).any():  # first-appearance order
        order = np.argsort(pos, kind="stable")
        codes, stats = [c[order] for c in codes], stats.iloc[order].reset_index(drop=True)
    labels = {}  # role -> (label index per cell, label strings)
    for name, values, cell_codes in zip(plan.keys, uniques, codes, strict=True):
        label_codes, strings = _labels(values, name)
        labels[name] = (label_codes[cell_codes], strings)
    index, strings = labels[plan.problem[0]]
    merge = any(len(s) < len(u) for (_, s), u in zip(labels.values(), uniques, strict=True))
    if len(plan.problem) > 1:  # joined labels, as from_rollouts joins them
        joined = strings[index]
        for name in plan.problem[1:]:
            joined = joined + "/" + labels[name][1][labels[name][0]]
        index, strings = pd.factorize(joined)
        merge = True
    roles = {"problem": (index, strings)}
    for role, name, default in (
        ("group", plan.group, "all"),
        ("condition", plan.condition, "default"),
    ):
        single = (np.zeros(len(stats), dtype=np.int64), np.array([default], dtype=object))
        roles[role] = labels[name] if name is not None else single
    if merge:  # distinct raw values with one label string make one cell
        combined = roles["problem"][0]
        for role in ("group", "condition"):
            combined = combined * len(roles[role][1]) + roles[role][0]
        cell, _ = pd.factorize(combined)
        if cell.max() + 1 < len(cell):
            first = np.flatnonzero(_first_flags(cell))
            stats = stats.groupby(cell, sort=True).agg(merge_spec(plan)).reset_index(drop=True)
            roles = {role: (idx[first], lab) for role, (idx, lab) in roles.items()}
    text = lambda c: ", ".join(f"{r}={lab[idx[c]]!r}" for r, (idx, lab) in roles.items())  # noqa: E731
    cell_pos = stats["_pos"].to_numpy()
    if plan.kind == "counts":
        if plan.duplicates == "error" and (stats["_rows"] > 1).any():
            c = int(np.argmax(stats["_rows"].to_numpy() > 1))
            raise DataError(
                f"{src.locate(int(cell_pos[c]))} and a later row: duplicate cell ({text(c)}); "
                "pass duplicates='sum' to add their counts"
            )
        empty = stats["n"].to_numpy() < 1
        if empty.any():
            c = int(np.argmax(empty))
            total = "summed n" if plan.duplicates == "sum" else "n"
            message = f"{total}={stats['n'].iloc[c]} but a cell needs n >= 1"
            raise DataError(f"column {plan.n!r}, {src.locate(int(cell_pos[c]))}: {message}")
    feats = {}
    for name in plan.features:
        low, high = stats[f"_min:{name}"].to_numpy(), stats[f"_max:{name}"].to_numpy()
        nan_any, nan_all = stats[f"_nanany:{name}"].to_numpy(), stats[f"_nanall:{name}"].to_numpy()
        with np.errstate(invalid="ignore"):
            varies = stats[f"_var:{name}"].to_numpy() | (nan_any & ~nan_all)
            varies |= ~nan_any & (low != high)
        if varies.any():
            if plan.drop_varying:
                continue
            c = int(np.argmax(varies))
            raise DataError(
                f"column {name!r}: conflicting feature values {low[c]!r} and {high[c]!r} for the "
                f"same cell ({text(c)}) in different files"
            )
        bad = int(stats[f"_bad:{name}"].min())
        if bad != NO_POS:
            raise DataError(
                f"column {name!r}, {src.locate(bad)}: missing or non-finite feature value"
            )
        feats[name] = low
    cells = {role: _str_array(idx, lab) for role, (idx, lab) in roles.items()}
    n, k = stats["n"].to_numpy(), stats["k"].to_numpy()
    return RolloutData._trusted(
        cells, n, k, feats, plan.group is not None, plan.condition is not None
    )


def _str_array(index: np.ndarray, strings: np.ndarray) -> Any:
    """``strings[index]`` as a pandas string array, built in Arrow (no Python objects)."""
    taken = pa.array(np.asarray(strings, dtype=object), pa.string()).take(pa.array(index))
    return taken.to_pandas().array
