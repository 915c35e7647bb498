"""Reader of the paper's failure profiles, with each rate's inferred denominator.

``failure_profiles.csv`` of Islah et al. (2026) holds 1,423 failed problems with three
trace features and the rescue rates of plain resampling and four logit interventions
(best of 3 attempts per repair context). :func:`read_failure_profiles` validates it and
infers, for every rate, the number of repair contexts it is a fraction of
(:func:`infer_denominator`). Re-exported by :mod:`bayes_regimes.paper`, which holds the
paper's regimes and routing rule.

Examples
--------
>>> infer_denominator([0.3, 0.5, 1.0], 10).tolist()
[10, 2, 1]
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_regimes import datasets
from bayes_regimes.errors import DataError

#: The four logit interventions, in the upstream order (which also breaks ties
#: when choosing the best fixed intervention). ``retry`` is not among them.
INTERVENTIONS = ("sparse_steer", "sparse_steer_random", "local_temp", "dense_steer")
#: Every rescue-rate column: plain resampling, then the interventions.
RATES = ("retry", *INTERVENTIONS)
#: Attempts per repair context; a context is rescued when one of them succeeds.
ATTEMPTS_PER_CONTEXT: int = 3
#: The three trace features the routing rule reads, in tie-breaking order.
FEATURES = ("spread", "concentration", "logit_dispersion")

#: Tolerance on ``rate * d`` being an integer when inferring a denominator.
DENOMINATOR_ATOL: float = 1e-4

_ID_COLUMNS = ("cell", "model", "task", "problem_id")
_COLUMNS = (*_ID_COLUMNS, "n_failed_rollouts", *FEATURES, *RATES)
#: Bound on the number of repair contexts, as a multiple of ``n_failed_rollouts``:
#: the contexts are the failed rollouts (capped), except that ``dense_steer`` runs
#: on up to two contexts per failed rollout in some cells (see the data README).
_CONTEXTS_PER_ROLLOUT = {col: 1 for col in RATES} | {"dense_steer": 2}


def _require(df: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(map(repr, missing))}")


def infer_denominator(
    rates: np.ndarray | pd.Series, max_denominator: np.ndarray | pd.Series | int
) -> np.ndarray:
    """Smallest integer ``d`` with ``rate * d`` an integer, up to a tolerance.

    Parameters
    ----------
    rates : array-like of float
        Rates in [0, 1].
    max_denominator : int or array-like of int
        Largest ``d`` to try, per rate (broadcast).

    Returns
    -------
    numpy.ndarray of int64
        ``d`` per rate, 0 where no ``d <= max_denominator`` fits.

    Notes
    -----
    ``d`` is the smallest integer with ``|rate * d - round(rate * d)| <= 1e-4``.
    The rates are printed with 6 decimals, so ``1/13 = 0.076923`` still resolves
    to 13. ``d`` is the reduced denominator: it divides the true number of
    contexts, and says nothing about it when the rate is 0 or 1 (d = 1) or 1/2
    (d = 2).

    Examples
    --------
    >>> infer_denominator([0.0, 0.5, 0.3, 0.076923, 0.123], 20).tolist()
    [1, 2, 10, 13, 0]
    """
    x = np.asarray(rates, dtype=np.float64)
    bound = np.broadcast_to(np.asarray(max_denominator, dtype=np.int64), x.shape)
    out = np.zeros(x.shape, dtype=np.int64)
    top = int(bound.max()) if bound.size else 0
    for d in range(1, top + 1):
        fits = (out == 0) & (d <= bound) & (np.abs(x * d - np.round(x * d)) <= DENOMINATOR_ATOL)
        out[fits] = d
    return out


def _check(bad: np.ndarray, col: str, values: pd.Series | np.ndarray, what: str) -> None:
    """Raise a one-line DataError naming the first bad row of ``col``."""
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"column {col!r}, row {row}: {np.asarray(values)[row]!r} {what}")


def _validate(df: pd.DataFrame) -> pd.DataFrame:
    _require(df, _COLUMNS)
    df = df.reset_index(drop=True)
    for col in _COLUMNS:
        _check(df[col].isna().to_numpy(), col, df[col], "is missing")
    for col in _ID_COLUMNS:
        df[col] = df[col].astype(str)
    for col in ("n_failed_rollouts", *FEATURES, *RATES):
        values = pd.to_numeric(df[col], errors="coerce")
        _check(values.isna().to_numpy(), col, df[col], "is not a number")
        df[col] = values.astype(np.float64)
    n = df["n_failed_rollouts"].to_numpy()
    _check((n < 1) | (n != np.round(n)), "n_failed_rollouts", n, "is not an integer >= 1")
    df["n_failed_rollouts"] = df["n_failed_rollouts"].astype(np.int64)
    for col in FEATURES:
        _check(~np.isfinite(df[col].to_numpy()), col, df[col], "is not finite")
    for col in RATES:
        x = df[col].to_numpy()
        _check(~((x >= 0.0) & (x <= 1.0)), col, x, "is outside [0, 1]")
    key = df["cell"] + " / " + df["problem_id"]
    _check(df.duplicated(["cell", "problem_id"]).to_numpy(), "problem_id", key, "is duplicated")
    return df


def read_failure_profiles(path: str | PathLike[str] | None = None) -> pd.DataFrame:
    """Read ``failure_profiles.csv`` and infer each rate's number of repair contexts.

    Parameters
    ----------
    path : path-like, optional
        The CSV file; by default the public copy found by
        :func:`bayes_regimes.datasets.source_path` (``"failure_profiles"``).

    Returns
    -------
    pandas.DataFrame
        The input columns in input row order (RangeIndex), ``n_failed_rollouts``
        as int64 and the features and rates as float64, plus for every rate
        column ``r`` in :data:`RATES`:

        ``r_D`` (int64)
            inferred number of repair contexts ``D``;
        ``r_K`` (int64)
            rescued contexts, ``round(rate * D)``;
        ``r_D_lower_bound`` (bool)
            True where the rate is 0, 1/2 or 1, so ``D`` (1 or 2) says nothing.

    Raises
    ------
    DataError
        A missing column (named), a missing or non-numeric value, a non-integer
        or non-positive ``n_failed_rollouts``, a non-finite feature, a rate
        outside [0, 1], a duplicated (cell, problem_id), or a rate with no
        denominator within the bound below (the message names row and column).
    FileNotFoundError
        When ``path`` is None and the public data folder is absent.

    Notes
    -----
    Each rate is the share of a problem's repair contexts rescued by best-of-3
    attempts, so it is ``K / D`` for integers ``K <= D``. ``D`` is not stored.
    Following the data README (``islah2026_failure_profiles/README.md``), ``D``
    is inferred as the **smallest** integer ``d`` such that ``rate * d`` is
    within 1e-4 of an integer (:func:`infer_denominator`), searched up to a
    bound documented there: the contexts are the problem's failed rollouts
    (capped), so ``d <= n_failed_rollouts`` for ``retry``, ``sparse_steer``,
    ``sparse_steer_random`` and ``local_temp``, and ``d <= 2 *
    n_failed_rollouts`` for ``dense_steer``, which in some cells runs on more
    contexts (``n + min(n, 5)`` or ``2 * min(n, 10)``). On the public file every
    one of the 7,115 rates resolves within these bounds, and no ``d`` exceeds 20.

    This ``d`` is the reduced denominator: the true ``D`` is a multiple of it
    (for example a rate of 0.3 is 3/10 but could be 6/20). It carries no
    information where the rate is 0 or 1 (``d = 1``) or 1/2 (``d = 2``); those
    rows are flagged in ``r_D_lower_bound``. The README's structural pattern
    (``D = min(n, 10)`` in most cells, with documented exceptions) is not
    imposed.

    Examples
    --------
    >>> from bayes_regimes.datasets import data_dir
    >>> if data_dir() is not None:
    ...     df = read_failure_profiles()
    ...     assert len(df) == 1423
    ...     assert (df["retry_K"] <= df["retry_D"]).all()
    """
    if path is None:
        path = datasets.source_path("failure_profiles")
    path = Path(path)
    try:
        raw = pd.read_csv(path)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path} has no header") from err
    df = _validate(raw)
    n = df["n_failed_rollouts"].to_numpy()
    for col in RATES:
        x = df[col].to_numpy()
        d = infer_denominator(x, _CONTEXTS_PER_ROLLOUT[col] * n)
        what = f"is not K/D for any D <= {_CONTEXTS_PER_ROLLOUT[col]} * n_failed_rollouts"
        _check(d == 0, col, x, what)
        df[f"{col}_D"] = d
        df[f"{col}_K"] = np.round(x * d).astype(np.int64)
        df[f"{col}_D_lower_bound"] = d <= 2
    return df
