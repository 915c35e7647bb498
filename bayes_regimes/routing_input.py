"""Inputs of the router: the paper's failure profiles as condition cells, and the
``route`` command's input file.

Examples
--------
>>> from bayes_regimes.datasets import data_dir
>>> from bayes_regimes import paper
>>> if data_dir() is not None:
...     counts = profiles_to_counts(paper.read_failure_profiles())
...     assert set(counts["condition"]) == {*paper.RATES, "original"}
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_regimes import paper
from bayes_regimes.errors import DataError

__all__ = ["profiles_to_counts", "read_route_input", "total_rollouts"]


def _structural_D(cell: str, col: str, n: np.ndarray) -> list[np.ndarray]:
    """Candidate context counts per row, from the data README's documented pattern."""
    m10 = np.minimum(n, 10)
    if col != "dense_steer":
        if cell == "grpo1p7b|cruxeval":
            big = np.select([n <= 10, n <= 15, n <= 31, n <= 49], [n, 10, 11, 12], 13)
            return [big, big - 1]
        return [m10, m10 - 1]
    if cell.endswith("gpqa") or cell == "sft4b|gsm8k":
        return [m10]
    if cell == "grpo1p7b|cruxeval":
        return [2 * m10]
    if cell in ("sft1p7b|cruxeval", "sft0p6b|gsm8k"):
        full = n + np.minimum(n, 5)
        return [full, full - 1, full - 2]
    if cell == "sft4b|cruxeval":
        return [n + np.minimum(n, 4)]
    return []


def total_rollouts(df: pd.DataFrame) -> np.ndarray:
    """Inferred rollouts each problem of the paper's table was sampled with (N).

    The data card does not give N. Following the data README, N is the largest
    ``n_failed_rollouts`` of the problem's cell (10 or 50), except in
    ``sft0p6b|gpqa``, whose first 100 ids in alphabetical order never exceed 20
    failures and look like a batch of 20 rollouts. An inference, documented.

    Examples
    --------
    >>> df = pd.DataFrame(
    ...     {
    ...         "cell": ["a", "a", "b"],
    ...         "problem_id": ["x", "y", "z"],
    ...         "n_failed_rollouts": [3, 10, 50],
    ...     }
    ... )
    >>> total_rollouts(df).tolist()
    [10, 10, 50]
    """
    n = df["n_failed_rollouts"].to_numpy(dtype=np.int64)
    out = df.groupby("cell", sort=False)["n_failed_rollouts"].transform("max").to_numpy()
    batch = df["cell"].to_numpy() == "sft0p6b|gpqa"
    if batch.any():
        ids = np.sort(df.loc[batch, "problem_id"].astype(str).unique())[:100]
        first = batch & df["problem_id"].astype(str).isin(ids).to_numpy() & (n <= 20)
        out = np.where(first, 20, out)
    return out.astype(np.int64)


def profiles_to_counts(
    df: pd.DataFrame,
    denominators: str = "structural",
    original: bool = True,
    rollouts: np.ndarray | None = None,
) -> pd.DataFrame:
    """The paper's failure profiles as condition cells (one row per problem and rate).

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`bayes_regimes.paper.read_failure_profiles`.
    denominators : {"structural", "inferred"}
        ``"inferred"``: the reader's D (the smallest that fits, only a lower bound
        where the rate is 0, 1/2 or 1). ``"structural"`` (default): the data
        README's pattern (``min(n, 10)`` contexts for most columns, per-cell rules
        for ``dense_steer`` and ``grpo1p7b|cruxeval``, one or two dropped contexts
        allowed), used wherever the reader's D divides it; rows where no documented
        candidate fits keep the reader's D.
    original : bool
        Add condition ``"original"``: the problem's sampled rollouts, ``n`` =
        :func:`total_rollouts`, ``k`` = ``n - n_failed_rollouts`` (the selection
        condition of :class:`~bayes_regimes.models.interventions.InterventionModel`).
    rollouts : array of int, optional
        N per row, overriding :func:`total_rollouts` (compute it once on the whole
        table before taking subsets: the inference looks at a whole cell).

    Returns
    -------
    pandas.DataFrame
        problem_id, cell, condition, n, k, the three features; ``attrs["fallback"]``
        counts, per rate column, the rows that kept the reader's D.

    Examples
    --------
    >>> from bayes_regimes.datasets import data_dir
    >>> if data_dir() is not None:
    ...     counts = profiles_to_counts(paper.read_failure_profiles())
    ...     assert len(counts) == 6 * 1423
    """
    if denominators not in ("structural", "inferred"):
        raise ValueError(f"denominators must be 'structural' or 'inferred', got {denominators!r}")
    n = df["n_failed_rollouts"].to_numpy(dtype=np.int64)
    parts, fallback = [], {}
    for col in paper.RATES:
        d = df[f"{col}_D"].to_numpy()
        D = d.copy()
        if denominators == "structural":
            done = np.zeros(len(df), bool)
            for cell in dict.fromkeys(df["cell"]):
                rows = df["cell"].to_numpy() == cell
                for cand in _structural_D(cell, col, n[rows]):
                    ok = (cand >= d[rows]) & (cand % d[rows] == 0) & ~done[rows]
                    idx = np.flatnonzero(rows)[ok]
                    D[idx], done[idx] = cand[ok], True
            fallback[col] = int((~done).sum())
        rate = df[col].to_numpy(dtype=float)
        K = np.round(rate * D).astype(np.int64)
        parts.append(_cells(df, col, D, K))
    if original:
        total = total_rollouts(df) if rollouts is None else np.asarray(rollouts, dtype=np.int64)
        if total.shape != n.shape or np.any(total < n):
            raise DataError("rollouts: need one N >= n_failed_rollouts per row")
        parts.append(_cells(df, "original", total, total - n))
    out = pd.concat(parts, ignore_index=True)
    out.attrs["fallback"] = fallback
    return out


def read_route_input(args, attempts: dict, costs: dict) -> tuple:
    """The ``route`` command's input as RolloutData plus InterventionModel options.

    The paper's failure-profile table is recognised by its columns and converted
    with :func:`profiles_to_counts` (best-of-3, selection on ``"original"``).
    Everything is validated here, before PyMC is imported.
    """
    from pathlib import Path

    from bayes_regimes.data import RolloutData, read_rollouts

    path = Path(args.input)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        head = pd.read_csv(path, nrows=0).columns if path.suffix == ".csv" else []
    except (ValueError, OSError):
        head = []
    feats = args.features.split(",") if args.features else None
    if {"n_failed_rollouts", *paper.RATES} <= set(head):
        counts = profiles_to_counts(paper.read_failure_profiles(path))
        data = RolloutData.from_counts(
            counts, group="cell", condition="condition", features=feats or list(paper.FEATURES)
        )
        options = {"baseline": args.baseline or "retry", "selection": args.selection or "original"}
        base = {c: paper.ATTEMPTS_PER_CONTEXT for c in paper.RATES} | {"original": 1}
    else:
        data = read_rollouts(
            path, problem=args.problem, group=args.group, condition=args.condition, features=feats
        )
        options = {"baseline": args.baseline, "selection": args.selection}
        base = {}
    conds = set(data.cells["condition"].astype(str))
    for what, given in (("--attempts", attempts), ("--cost", costs)):
        unknown = sorted(set(given) - conds - {None})
        if unknown:
            raise DataError(f"{what}: unknown condition(s) {unknown}; known {sorted(conds)}")
        if any(not v > 0 for v in given.values()):
            raise DataError(f"{what}: values must be positive")
    default = attempts.get(None)
    att = {c: base.get(c, default or 1) for c in conds}
    att |= {c: v for c, v in attempts.items() if c is not None}
    options |= {"attempts": att, "costs": costs or None, "features": feats}
    return data, options


def _cells(df: pd.DataFrame, condition: str, n: np.ndarray, k: np.ndarray) -> pd.DataFrame:
    out = df[["problem_id", "cell"]].copy()
    out["condition"], out["n"], out["k"] = condition, n, k
    for f in paper.FEATURES:
        out[f] = df[f].to_numpy(dtype=float)
    return out
