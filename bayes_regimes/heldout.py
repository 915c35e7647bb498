"""Held-out protocol: fit on a few samples per problem, score on the rest.

With many i.i.d. samples per problem (Large Language Monkeys: 10,000), a
hypergeometric draw of ``m`` from ``(n, k)`` is exactly the success count of the
first ``m`` samples. A method sees only ``(n_train, k_train)`` and predicts, for each
problem that failed all ``m``, the probability of a success among the ``n_test = n - m``
remaining samples, and each group's pass@k at large ``k``; the remaining samples are
the truth. Predictions travel as a :class:`HeldoutPrediction`; :func:`run_heldout`
runs the whole protocol for several methods and training budgets.

Examples
--------
>>> import pandas as pd
>>> counts = pd.DataFrame({"model": ["a", "a", "b"], "n": [100] * 3, "k": [0, 3, 60]})
>>> split = holdout_split(counts, m=10, random_seed=0)
>>> split[["n_train", "n_test"]].iloc[0].tolist()
[10, 90]
>>> bool((split["k_train"] + split["k_test"] == split["k"]).all())
True"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from bayes_regimes.closed_form import unbiased_pass_at_k
from bayes_regimes.errors import DataError

__all__ = [
    "INTERVAL_PROB",
    "POOLED",
    "HeldoutPrediction",
    "group_labels",
    "group_masks",
    "heldout_targets",
    "holdout_split",
    "pass_at_k_truth",
    "predictive_intervals",
    "run_heldout",  # noqa: F822 - re-exported by __getattr__
    "score_pass_at_k",  # noqa: F822 - re-exported by __getattr__
    "score_prediction",  # noqa: F822 - re-exported by __getattr__
    "score_predictions",  # noqa: F822 - re-exported by __getattr__
    "validate_ks",
]

#: Default probability mass of the central credible / predictive intervals.
INTERVAL_PROB = 0.89
#: Label of the row that pools all groups.
POOLED = "pooled"
_SPLIT_COLUMNS = ("n_train", "k_train", "n_test", "k_test")


@dataclass
class HeldoutPrediction:
    """What a held-out method predicts from the training counts.

    Attributes
    ----------
    method : str
        Name of the method.
    rescue_prob : numpy.ndarray
        One probability per training failure, in the row order of
        :func:`heldout_targets`: P(at least one success in ``n_test`` more samples).
        All NaN when the method makes no per-problem prediction.
    rescued_fraction : pandas.DataFrame
        Index ``group`` (each group, then ``"pooled"``); columns ``estimate``,
        ``low``, ``high``: the predicted fraction of training failures rescued by
        the held-out samples, with an interval (NaN where the method has none).
    pass_at_k : pandas.DataFrame
        Columns ``group``, ``k``, ``estimate``, ``low``, ``high``: predicted pass@k of
        a fresh run of ``k`` samples on the same problems (NaN where undefined).
    """

    method: str
    rescue_prob: np.ndarray
    rescued_fraction: pd.DataFrame
    pass_at_k: pd.DataFrame


def group_labels(df: pd.DataFrame, group: str | None) -> np.ndarray:
    """Group label of every row as strings (``"all"`` when ``group`` is None).

    Examples
    --------
    >>> group_labels(pd.DataFrame({"model": ["x", "y"]}), "model").tolist()
    ['x', 'y']
    """
    if group is None:
        return np.full(len(df), "all", dtype=object)
    if group not in df.columns:
        raise DataError(f"column {group!r}: group column is missing")
    return df[group].astype(str).to_numpy(dtype=object)


def group_masks(labels: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(label, row mask)`` per group in first-appearance order, then ``"pooled"``.

    Examples
    --------
    >>> [label for label, _ in group_masks(np.array(["b", "a", "b"]))]
    ['b', 'a', 'pooled']
    """
    masks = [(str(g), labels == g) for g in pd.unique(labels)]
    return [*masks, (POOLED, np.ones(labels.size, bool))]


def validate_ks(ks: Sequence[int]) -> np.ndarray:
    """The values of k as a validated int64 array (non-empty, integers >= 1)."""
    arr = np.atleast_1d(np.asarray(ks))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"ks must be a non-empty sequence of integers, got {ks!r}")
    if np.any(arr < 1):
        raise DataError(f"ks must be >= 1, got {arr.tolist()}")
    return arr.astype(np.int64)


def _int_column(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        raise DataError(f"column {col!r} is missing")
    values = df[col].to_numpy()
    if not np.issubdtype(values.dtype, np.integer):
        raise DataError(f"column {col!r}: expected integers, got dtype {values.dtype}")
    return values.astype(np.int64)


def _check_split(split: pd.DataFrame) -> None:
    for col in _SPLIT_COLUMNS:
        _int_column(split, col)


def holdout_split(
    counts: pd.DataFrame, m: int, random_seed: int | np.random.Generator | None = None
) -> pd.DataFrame:
    """Split every row's samples into ``m`` training and ``n - m`` test samples.

    ``k_train ~ Hypergeometric(ngood=k, nbad=n - k, nsample=m)``, which is the
    distribution of the success count among the first ``m`` of ``n`` i.i.d. samples.

    Parameters
    ----------
    counts : pandas.DataFrame
        Integer columns ``n`` and ``k`` (``0 <= k <= n``), plus any labels.
    m : int
        Training samples per row; ``1 <= m < n`` for every row.
    random_seed : int, numpy.random.Generator or None
        Seed of the draw; the same seed gives the same split.

    Returns
    -------
    pandas.DataFrame
        A copy of ``counts`` (same index) plus int64 columns ``n_train`` (= m),
        ``k_train``, ``n_test`` (= n - m) and ``k_test`` (= k - k_train).

    Examples
    --------
    >>> counts = pd.DataFrame({"n": [20, 20], "k": [0, 20]})
    >>> holdout_split(counts, 5, random_seed=1)["k_train"].tolist()
    [0, 5]
    """
    n = _int_column(counts, "n")
    k = _int_column(counts, "k")
    if isinstance(m, bool) or int(m) != m or m < 1:
        raise DataError(f"m must be a positive integer, got {m!r}")
    m = int(m)
    bad = np.flatnonzero((k < 0) | (k > n))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"column 'k', row {i}: k={k[i]} outside [0, n={n[i]}]")
    bad = np.flatnonzero(n <= m)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"column 'n', row {i}: n={n[i]} but m={m} needs n > m")
    rng = np.random.default_rng(random_seed)
    k_train = rng.hypergeometric(ngood=k, nbad=n - k, nsample=m) if n.size else k.copy()
    out = counts.copy()
    out["n_train"] = np.full(n.size, m, dtype=np.int64)
    out["k_train"] = np.asarray(k_train, dtype=np.int64)
    out["n_test"] = n - m
    out["k_test"] = k - out["k_train"].to_numpy()
    return out


def heldout_targets(split: pd.DataFrame) -> pd.DataFrame:
    """The training failures (``k_train == 0``) with their held-out outcome.

    Returns the rows of ``split`` (output of :func:`holdout_split`) with
    ``k_train == 0``, index and order kept, plus a bool column ``rescued``
    (``k_test > 0``). Predicted rescue probabilities are aligned with these rows.

    Examples
    --------
    >>> split = pd.DataFrame({"n_train": [5] * 3, "k_train": [0, 1, 0]})
    >>> split = split.assign(n_test=5, k_test=[2, 0, 0])
    >>> heldout_targets(split)["rescued"].tolist()
    [True, False]
    """
    _check_split(split)
    failures = split.loc[split["k_train"].to_numpy() == 0].copy()
    failures["rescued"] = failures["k_test"].to_numpy() > 0
    return failures


def pass_at_k_truth(
    counts: pd.DataFrame, ks: Sequence[int], group: str | None = "model"
) -> pd.DataFrame:
    """Per-group pass@k by the unbiased estimator (Chen et al. 2021) on the full data.

    At ``k == n`` the estimator is the fraction of problems with any success;
    for ``k > n`` it is undefined and the truth is NaN.

    Parameters
    ----------
    counts : pandas.DataFrame
        Columns ``n``, ``k`` (the full data) and the group column.
    ks : sequence of int
        Values of k.
    group : str or None, default "model"
        Group column; None makes one group ``"all"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``group``, ``k``, ``n_problems``, ``truth``; groups in first-appearance
        order, then ``"pooled"`` (the mean over all rows).

    Examples
    --------
    >>> counts = pd.DataFrame({"model": ["a", "a"], "n": [4, 4], "k": [0, 2]})
    >>> pass_at_k_truth(counts, [1, 4])["truth"].round(6).tolist()
    [0.25, 0.5, 0.25, 0.5]
    """
    ks_arr = validate_ks(ks)
    n = _int_column(counts, "n")
    k = _int_column(counts, "k")
    labels = group_labels(counts, group)
    values = np.asarray(unbiased_pass_at_k(n[:, None], k[:, None], ks_arr[None, :]), dtype=float)
    rows = [
        {"group": label, "k": int(kk), "n_problems": int(mask.sum()), "truth": float(v)}
        for label, mask in group_masks(labels)
        for kk, v in zip(ks_arr, values[mask].mean(axis=0), strict=True)
    ]
    return pd.DataFrame(rows)


def predictive_intervals(
    split: pd.DataFrame,
    p_draws: npt.ArrayLike,
    ks: Sequence[int],
    *,
    group: str | None = "model",
    interval_prob: float = INTERVAL_PROB,
    random_seed: int | np.random.Generator | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictive intervals of the scored quantities from draws of per-problem ``p``.

    For each draw, the held-out outcomes are simulated from ``p`` and the scored
    quantity is recomputed exactly as the truth is: the rescued fraction is the
    fraction of training failures with a success among ``n_test`` simulated samples,
    and pass@k (for ``k <= n_train + n_test``) is the unbiased estimator on
    ``(n_train + n_test, k_train + k_test_simulated)``. For larger ``k`` there is no
    realised truth and the draw gives the fresh-run value ``1 - (1 - p)^k``. The
    intervals therefore cover the realised score target, not only its expectation.

    Parameters
    ----------
    split : pandas.DataFrame
        Output of :func:`holdout_split` (``k_test`` is not read).
    p_draws : array-like, shape (draws, rows)
        Draws of every row's success probability ``p`` given the training data.
    ks : sequence of int
        Values of k for pass@k.
    group, interval_prob, random_seed
        Group column, central mass of the intervals, seed of the simulated outcomes.

    Returns
    -------
    rescued_fraction : pandas.DataFrame
        Index ``group`` (groups, then ``"pooled"``), columns ``low``, ``high`` and
        ``spread``, the mean absolute deviation of the predictive draws from their
        mean: the absolute error the prediction expects of itself, if calibrated.
    pass_at_k : pandas.DataFrame
        Columns ``group``, ``k``, ``low``, ``high``.

    Examples
    --------
    >>> split = holdout_split(pd.DataFrame({"n": [50] * 4, "k": [0, 0, 5, 9]}), 10, 0)
    >>> draws = np.random.default_rng(0).beta(1, 10, size=(200, 4))
    >>> frac, passk = predictive_intervals(split, draws, [20], group=None, random_seed=0)
    >>> list(frac.index), list(passk.columns)
    (['all', 'pooled'], ['group', 'k', 'low', 'high'])
    """
    for col in _SPLIT_COLUMNS[:3]:
        _int_column(split, col)
    ks_arr = validate_ks(ks)
    if not 0 < interval_prob < 1:
        raise DataError(f"interval_prob must lie in (0, 1), got {interval_prob!r}")
    p = np.asarray(p_draws, dtype=float)
    if p.ndim != 2 or p.shape[1] != len(split):
        raise DataError(f"p_draws must have shape (draws, {len(split)}), got {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):
        raise DataError("p_draws must lie in [0, 1]")
    rng = np.random.default_rng(random_seed)
    labels = group_labels(split, group)
    n_train = split["n_train"].to_numpy(np.int64)
    k_train = split["k_train"].to_numpy(np.int64)
    n_test = split["n_test"].to_numpy(np.int64)
    n_total = n_train + n_test
    k_test = rng.binomial(n_test[None, :], p)
    q = (0.5 - 0.5 * interval_prob, 0.5 + 0.5 * interval_prob)

    fail = k_train == 0
    masks = group_masks(labels)
    frac_rows = {}
    for label, mask in masks:
        lo = hi = spread = np.nan
        if (mask & fail).any():
            frac = (k_test[:, mask & fail] > 0).mean(axis=1)
            lo, hi = np.quantile(frac, q)
            spread = np.mean(np.abs(frac - frac.mean()))
        frac_rows[label] = {"low": float(lo), "high": float(hi), "spread": float(spread)}
    rescued_fraction = pd.DataFrame.from_dict(frac_rows, orient="index")
    rescued_fraction.index.name = "group"

    rows = []
    for kk in ks_arr:
        realised = np.asarray(unbiased_pass_at_k(n_total[None, :], k_train + k_test, kk))
        with np.errstate(divide="ignore"):
            fresh = -np.expm1(kk * np.log1p(-p))
        values = np.where(kk <= n_total[None, :], realised, fresh)
        for label, mask in masks:
            lo, hi = np.quantile(values[:, mask].mean(axis=1), q)
            rows.append({"group": label, "k": int(kk), "low": float(lo), "high": float(hi)})
    return rescued_fraction, pd.DataFrame(rows)


_SCORING = ("run_heldout", "score_pass_at_k", "score_prediction", "score_predictions")


def __getattr__(name: str):
    """Re-export the scoring functions of :mod:`bayes_regimes.heldout_scoring`, imported
    on first use (that module builds on this one)."""
    if name in _SCORING:
        from bayes_regimes import heldout_scoring

        return getattr(heldout_scoring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
