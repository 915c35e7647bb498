"""Scoring rules for held-out prediction of binary outcomes and intervals.

All functions take one-dimensional array-likes of equal length, check that the
values are finite (and, for labels, binary; for probabilities, in [0, 1]), and
return plain floats or a pandas DataFrame. Empty input gives NaN rather than an
error, so a group without failures scores as "not defined" instead of
stopping a whole evaluation.

Examples
--------
>>> import numpy as np
>>> from bayes_regimes.metrics import auroc, brier, expected_calibration_error
>>> y = np.array([0, 0, 1, 1])
>>> p = np.array([0.1, 0.4, 0.35, 0.8])
>>> auroc(y, p)
0.75
>>> round(brier(y, p), 4)
0.1581
>>> round(expected_calibration_error(y, p, bins=2), 4)
0.0875
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import rankdata

__all__ = [
    "auroc",
    "brier",
    "expected_calibration_error",
    "interval_coverage",
    "reliability_table",
]


def _vector(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} has a non-finite value at position {bad}")
    return arr


def _labels(y: npt.ArrayLike) -> np.ndarray:
    arr = _vector(y, "y")
    bad = np.flatnonzero((arr != 0) & (arr != 1))
    if bad.size:
        raise ValueError(f"y must be 0/1, got {arr[bad[0]]!r} at position {int(bad[0])}")
    return arr


def _probabilities(p: npt.ArrayLike, name: str = "p") -> np.ndarray:
    arr = _vector(p, name)
    bad = np.flatnonzero((arr < 0) | (arr > 1))
    if bad.size:
        raise ValueError(f"{name} must lie in [0, 1], got {arr[bad[0]]!r} at position {bad[0]}")
    return arr


def _same_length(*arrays: np.ndarray) -> None:
    lengths = {a.shape[0] for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"inputs differ in length: {[a.shape[0] for a in arrays]}")


def auroc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve by the Mann-Whitney rank statistic.

    Equals the probability that a random positive scores above a random
    negative, with ties counted one half.

    Parameters
    ----------
    y : array-like of {0, 1}
        Binary outcomes.
    score : array-like of float
        Any real-valued score; higher means "more likely positive".

    Returns
    -------
    float
        AUROC in [0, 1]; NaN when only one class is present (or the input is empty).

    Examples
    --------
    >>> auroc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9])
    0.875
    >>> import math
    >>> math.isnan(auroc([1, 1], [0.3, 0.4]))
    True
    """
    y_arr = _labels(y)
    s_arr = _vector(score, "score")
    _same_length(y_arr, s_arr)
    n_pos = float(y_arr.sum())
    n_neg = float(y_arr.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s_arr, method="average")
    u = ranks[y_arr == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def brier(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Brier score, the mean squared error of probabilities against 0/1 outcomes.

    Parameters
    ----------
    y : array-like of {0, 1}
        Binary outcomes.
    p : array-like of float in [0, 1]
        Predicted probabilities of ``y == 1``.

    Returns
    -------
    float
        Mean of ``(p - y) ** 2`` (lower is better); NaN for empty input.

    Examples
    --------
    >>> brier([0, 1], [0.0, 0.5])
    0.125
    """
    y_arr = _labels(y)
    p_arr = _probabilities(p)
    _same_length(y_arr, p_arr)
    if y_arr.size == 0:
        return float("nan")
    return float(np.mean((p_arr - y_arr) ** 2))


def reliability_table(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10) -> pd.DataFrame:
    """Bin predictions into equal-width bins on [0, 1] for a reliability diagram.

    Bin ``j`` holds ``j / bins <= p < (j + 1) / bins``; the last bin also holds
    ``p == 1``.

    Parameters
    ----------
    y : array-like of {0, 1}
        Binary outcomes.
    p : array-like of float in [0, 1]
        Predicted probabilities.
    bins : int, default 10
        Number of equal-width bins.

    Returns
    -------
    pandas.DataFrame
        One row per bin (empty bins included), columns ``bin`` (int), ``low``,
        ``high`` (bin edges), ``mean_pred`` (mean prediction, NaN if empty),
        ``frac_pos`` (observed fraction of positives, NaN if empty) and ``count``.

    Examples
    --------
    >>> tab = reliability_table([0, 1, 1, 0], [0.05, 0.15, 0.95, 1.0], bins=2)
    >>> tab[["bin", "mean_pred", "frac_pos", "count"]].to_numpy().tolist()
    [[0.0, 0.1, 0.5, 2.0], [1.0, 0.975, 0.5, 2.0]]
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    bins = int(bins)
    y_arr = _labels(y)
    p_arr = _probabilities(p)
    _same_length(y_arr, p_arr)
    idx = np.minimum((p_arr * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins)
    sum_pred = np.bincount(idx, weights=p_arr, minlength=bins)
    sum_pos = np.bincount(idx, weights=y_arr, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.where(count > 0, sum_pred / count, np.nan)
        frac_pos = np.where(count > 0, sum_pos / count, np.nan)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame(
        {
            "bin": np.arange(bins),
            "low": edges[:-1],
            "high": edges[1:],
            "mean_pred": mean_pred,
            "frac_pos": frac_pos,
            "count": count.astype(np.int64),
        }
    )


def expected_calibration_error(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins.

    ``ECE = sum_j (count_j / N) * |mean_pred_j - frac_pos_j|`` over non-empty bins
    (see :func:`reliability_table`).

    Parameters
    ----------
    y, p, bins
        Outcomes, predicted probabilities and bin count, as in :func:`reliability_table`.

    Returns
    -------
    float
        ECE in [0, 1]; NaN for empty input.

    Examples
    --------
    >>> expected_calibration_error([0, 1], [0.5, 0.5])
    0.0
    >>> expected_calibration_error([1, 1], [0.2, 0.2])
    0.8
    """
    tab = reliability_table(y, p, bins=bins)
    total = int(tab["count"].sum())
    if total == 0:
        return float("nan")
    used = tab[tab["count"] > 0]
    gap = (used["mean_pred"] - used["frac_pos"]).abs()
    return float((used["count"] * gap).sum() / total)


def interval_coverage(truth: npt.ArrayLike, low: npt.ArrayLike, high: npt.ArrayLike) -> float:
    """Fraction of true values inside their closed intervals ``[low, high]``.

    Parameters
    ----------
    truth, low, high : array-like of float
        Equal-length vectors with ``low <= high`` elementwise.

    Returns
    -------
    float
        Coverage in [0, 1]; NaN for empty input.

    Examples
    --------
    >>> interval_coverage([0.5, 2.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0])
    0.6666666666666666
    """
    t = _vector(truth, "truth")
    lo = _vector(low, "low")
    hi = _vector(high, "high")
    _same_length(t, lo, hi)
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        raise ValueError(f"low > high at position {int(bad[0])}")
    if t.size == 0:
        return float("nan")
    return float(np.mean((t >= lo) & (t <= hi)))
