"""Scoring of held-out predictions, and the whole held-out protocol.

:func:`score_predictions` scores per-problem rescue probabilities (AUROC, Brier,
calibration, interval coverage) and :func:`score_pass_at_k` predicted pass@k
against the held-out samples; :func:`run_heldout` runs methods over training
budgets. The split and the prediction contract are in :mod:`bayes_regimes.heldout`
(which re-exports these functions).

Examples
--------
>>> import pandas as pd
>>> from bayes_regimes.heldout import holdout_split
>>> split = holdout_split(pd.DataFrame({"n": [100] * 4, "k": [0, 0, 0, 50]}), 10, 0)
>>> list(score_predictions(split, [0.1, 0.2, 0.3], group=None).columns)[:3]
['n_problems', 'n_failures', 'n_rescued']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from bayes_regimes.errors import DataError
from bayes_regimes.heldout import (
    INTERVAL_PROB,
    POOLED,
    HeldoutPrediction,
    group_labels,
    group_masks,
    heldout_targets,
    holdout_split,
    pass_at_k_truth,
    validate_ks,
)
from bayes_regimes.metrics import auroc, brier, expected_calibration_error

__all__ = ["run_heldout", "score_pass_at_k", "score_prediction", "score_predictions"]


def score_predictions(
    split: pd.DataFrame,
    prob_rescue: npt.ArrayLike | None,
    *,
    group: str | None = "model",
    interval: pd.DataFrame | None = None,
    rescued_fraction: pd.Series | None = None,
    bins: int = 10,
) -> pd.DataFrame:
    """Score predicted rescue probabilities of the training failures, per group and pooled.

    Parameters
    ----------
    split : pandas.DataFrame
        Output of :func:`holdout_split`.
    prob_rescue : array-like or None
        One probability per training failure, aligned with :func:`heldout_targets`.
        None or all-NaN: the method makes no per-problem prediction, and AUROC, Brier
        and ECE are NaN. A partly NaN vector is an error.
    group : str or None, default "model"
        Group column.
    interval : pandas.DataFrame, optional
        Index group labels (``"pooled"`` allowed), columns ``low``, ``high``: an
        interval for each group's rescued fraction; absent groups have none.
    rescued_fraction : pandas.Series, optional
        Predicted rescued fraction per group label, for methods that predict only the
        aggregate. Default: the mean of ``prob_rescue`` over the group's failures.
        Without a ``"pooled"`` entry, the pooled value is the failure-weighted mean.
    bins : int, default 10
        Bins of the expected calibration error.

    Returns
    -------
    pandas.DataFrame
        Index ``group`` (groups in first-appearance order, then ``"pooled"``);
        columns ``n_problems``, ``n_failures``, ``n_rescued``, ``auroc``, ``brier``,
        ``ece``, ``frac_true``, ``frac_pred``, ``frac_abs_error``, ``frac_low``,
        ``frac_high`` and ``frac_covered`` (1.0 / 0.0, NaN without an interval).

    Examples
    --------
    >>> split = holdout_split(pd.DataFrame({"n": [10] * 4, "k": [0, 1, 0, 9]}), 1, 0)
    >>> split[["k_train", "k_test"]].to_numpy().tolist()
    [[0, 0], [0, 1], [0, 0], [1, 8]]
    >>> tab = score_predictions(split, [0.1, 0.8, 0.3], group=None)
    >>> tab.loc["all", ["auroc", "frac_true", "frac_pred"]].round(3).tolist()
    [1.0, 0.333, 0.4]
    """
    targets = heldout_targets(split)
    labels = group_labels(split, group)
    fail = split["k_train"].to_numpy() == 0
    y = targets["rescued"].to_numpy()
    prob = np.full(y.size, np.nan)
    if prob_rescue is not None:
        prob = np.asarray(prob_rescue, dtype=float).reshape(-1)
        if prob.size != y.size:
            raise DataError(f"prob_rescue has {prob.size} values for {y.size} training failures")
    has_prob = not np.all(np.isnan(prob))
    if has_prob and np.any(np.isnan(prob)):
        raise DataError("prob_rescue is partly NaN; give all values or none")
    given = {} if rescued_fraction is None else dict(rescued_fraction.dropna().items())
    if given and POOLED not in given:
        weights = {g: np.sum(labels[fail] == g) for g in given}
        total = sum(weights.values())
        given[POOLED] = sum(weights[g] * given[g] for g in given) / total if total else np.nan

    rows = {}
    for label, mask_all in group_masks(labels):
        mask = mask_all[fail]
        yy, pp = y[mask], prob[mask]
        frac_true = float(yy.mean()) if yy.size else np.nan
        frac_pred = float(given.get(label, pp.mean() if has_prob and yy.size else np.nan))
        low = high = np.nan
        if interval is not None and label in interval.index:
            low, high = (float(interval.loc[label, c]) for c in ("low", "high"))
        finite = np.isfinite([low, high, frac_true]).all()
        rows[label] = {
            "n_problems": int(mask_all.sum()),
            "n_failures": int(yy.size),
            "n_rescued": int(yy.sum()),
            "auroc": auroc(yy, pp) if has_prob else np.nan,
            "brier": brier(yy, pp) if has_prob else np.nan,
            "ece": expected_calibration_error(yy, pp, bins) if has_prob else np.nan,
            "frac_true": frac_true,
            "frac_pred": frac_pred,
            "frac_abs_error": abs(frac_pred - frac_true),
            "frac_low": low,
            "frac_high": high,
            "frac_covered": float(low <= frac_true <= high) if finite else np.nan,
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "group"
    return out


def score_pass_at_k(prediction: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Compare predicted pass@k with the truth of :func:`pass_at_k_truth`.

    ``prediction`` has columns ``group``, ``k``, ``estimate`` and optionally ``low``,
    ``high``; ``truth`` is the output of :func:`pass_at_k_truth`. Returns the rows of
    ``truth`` with columns ``group``, ``k``, ``truth``, ``estimate``, ``error``
    (estimate - truth), ``abs_error``, ``low``, ``high`` and ``covered`` (1.0 / 0.0;
    NaN where a value is missing).

    Examples
    --------
    >>> truth = pd.DataFrame({"group": ["a"], "k": [10], "truth": [0.5]})
    >>> pred = truth.assign(estimate=0.4, low=0.3, high=0.6).drop(columns="truth")
    >>> score_pass_at_k(pred, truth)[["error", "covered"]].round(3).values.tolist()
    [[-0.1, 1.0]]
    """
    pred = prediction.reindex(columns=["group", "k", "estimate", "low", "high"])
    merged = truth[["group", "k", "truth"]].merge(pred, on=["group", "k"], how="left")
    merged["error"] = merged["estimate"] - merged["truth"]
    merged["abs_error"] = merged["error"].abs()
    vals = merged[["truth", "low", "high"]].to_numpy(dtype=float)
    inside = (vals[:, 0] >= vals[:, 1]) & (vals[:, 0] <= vals[:, 2])
    merged["covered"] = np.where(np.isfinite(vals).all(axis=1), inside.astype(float), np.nan)
    cols = ["group", "k", "truth", "estimate", "error", "abs_error", "low", "high", "covered"]
    return merged[cols]


def score_prediction(
    split: pd.DataFrame,
    prediction: HeldoutPrediction,
    truth: pd.DataFrame,
    *,
    group: str | None = "model",
    bins: int = 10,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score one :class:`HeldoutPrediction` against ``split`` and ``truth``.

    Returns the :func:`score_predictions` table (with the prediction's rescued
    fraction and intervals) and the :func:`score_pass_at_k` table.
    """
    frac = prediction.rescued_fraction
    rescue = score_predictions(
        split,
        prediction.rescue_prob,
        group=group,
        interval=frac[["low", "high"]],
        rescued_fraction=frac["estimate"].dropna(),
        bins=bins,
    )
    return rescue, score_pass_at_k(prediction.pass_at_k, truth)


def run_heldout(
    counts: pd.DataFrame,
    methods: Mapping[str, Callable[..., HeldoutPrediction]] | None = None,
    *,
    ms: Sequence[int] = (10,),
    ks: Sequence[int] = (100, 1000, 10000),
    group: str | None = "model",
    interval_prob: float = INTERVAL_PROB,
    random_seed: int | None = 0,
    method_kwargs: Mapping[str, Mapping] | None = None,
    bins: int = 10,
) -> dict[str, pd.DataFrame]:
    """Run the held-out protocol for several methods and training budgets.

    Each ``m`` gets one split (shared by all methods); each method is called as
    ``method(split, ks, group=..., interval_prob=..., random_seed=..., **kwargs)``.

    Parameters
    ----------
    counts : pandas.DataFrame
        Full counts (columns ``n``, ``k`` and the group column).
    methods : mapping of name to callable, optional
        Defaults to :data:`bayes_regimes.baselines.BASELINES`.
    ms : sequence of int, default (10,)
        Training samples per problem.
    ks : sequence of int, default (100, 1000, 10000)
        Values of k for extrapolated pass@k.
    group, interval_prob, bins
        Group column, mass of the intervals, bins of the ECE.
    random_seed : int or None, default 0
        Seed of the splits and of the methods' Monte Carlo.
    method_kwargs : mapping, optional
        Extra keyword arguments per method, e.g. ``{"beta_binomial_mle": {"n_draws": 50}}``.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``"rescue"`` (score_predictions rows with ``method`` and ``m`` columns),
        ``"pass_at_k"`` (score_pass_at_k rows with ``method`` and ``m``) and
        ``"summary"`` (one row per method and m: pooled ``auroc``, ``brier``,
        ``ece``; ``frac_mae`` and ``frac_coverage`` over groups; per k
        ``pass@{k}_mae`` and ``pass@{k}_coverage`` over groups).
    """
    if methods is None:
        from bayes_regimes.baselines import BASELINES

        methods = BASELINES
    method_kwargs = method_kwargs or {}
    ks_arr = validate_ks(ks)
    truth = pass_at_k_truth(counts, ks_arr, group=group)
    seeds = np.random.SeedSequence(random_seed).spawn(len(ms))
    rescue_tabs, passk_tabs, summary = [], [], []
    for m, seed in zip(ms, seeds, strict=True):
        split_seed, method_seed = seed.spawn(2)
        split = holdout_split(counts, m, np.random.default_rng(split_seed))
        for name, method in methods.items():
            rng = np.random.default_rng(method_seed)
            kwargs = dict(method_kwargs.get(name, {}))
            pred = method(
                split, ks_arr, group=group, interval_prob=interval_prob, random_seed=rng, **kwargs
            )
            rescue, passk = score_prediction(split, pred, truth, group=group, bins=bins)
            rescue_tabs.append(rescue := rescue.reset_index().assign(method=name, m=int(m)))
            passk_tabs.append(passk := passk.assign(method=name, m=int(m)))
            summary.append(_summary_row(name, int(m), rescue, passk, ks_arr))
    return {
        "rescue": pd.concat(rescue_tabs, ignore_index=True),
        "pass_at_k": pd.concat(passk_tabs, ignore_index=True),
        "summary": pd.DataFrame(summary),
    }


def _summary_row(name: str, m: int, rescue: pd.DataFrame, passk: pd.DataFrame, ks) -> dict:
    pooled = rescue[rescue["group"] == POOLED].iloc[0]
    groups = rescue[rescue["group"] != POOLED]
    row = {
        "method": name,
        "m": m,
        "auroc": pooled["auroc"],
        "brier": pooled["brier"],
        "ece": pooled["ece"],
        "frac_mae": groups["frac_abs_error"].mean(),
        "frac_coverage": groups["frac_covered"].mean(),
    }
    per_group = passk[passk["group"] != POOLED]
    for kk in ks:
        sel = per_group[per_group["k"] == kk]
        row[f"pass@{kk}_mae"] = sel["abs_error"].mean()
        row[f"pass@{kk}_coverage"] = sel["covered"].mean()
    return row
