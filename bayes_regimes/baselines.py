"""Published baselines for held-out prediction of rescue and extrapolated pass@k.

Every baseline has the same signature and output contract::

    method(split, ks=(100, 1000, 10000), *, group="model", interval_prob=0.89,
           n_draws=200, random_seed=None) -> HeldoutPrediction

``split`` is the output of :func:`bayes_regimes.heldout.holdout_split`; a baseline
reads only ``n_train``, ``k_train``, ``n_test`` and the group column (never the
held-out ``k_test``, ``k`` or ``n``). It returns a
:class:`bayes_regimes.heldout.HeldoutPrediction`: the probability that each
training failure succeeds at least once in ``n_test`` more samples, the predicted
rescued fraction per group, and the predicted pass@k of a fresh run of ``k``
samples on the same problems, with 89% intervals where the method has them.
``n_draws`` and ``random_seed`` only matter to methods with intervals.

=====================  ==========================  ===================  ===========
method                 rescue probability          pass@k, k > n_train  intervals
=====================  ==========================  ===================  ===========
``no_extrapolation``   0                           frozen at n_train    none
``unbiased_estimator`` NaN (not defined)           NaN (not defined)    none
``beta_binomial_mle``  per problem                 per-problem average  bootstrap
``power_law``          NaN; aggregate fraction     power-law curve      none
``bayes_at_n``         per problem                 per-problem average  posterior
=====================  ==========================  ===================  ===========

Examples
--------
>>> import pandas as pd
>>> from bayes_regimes.heldout import holdout_split
>>> counts = pd.DataFrame({"model": ["a"] * 3, "n": [100] * 3, "k": [0, 5, 50]})
>>> split = holdout_split(counts, 10, random_seed=0)
>>> pred = BASELINES["bayes_at_n"](split, [100], n_draws=100, random_seed=0)
>>> list(pred.pass_at_k.columns)
['group', 'k', 'estimate', 'low', 'high']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import minimize
from scipy.special import digamma

from bayes_regimes.closed_form import (
    betabinom_logpmf,
    expected_gain,
    pass_at_k_fresh,
    unbiased_pass_at_k,
)
from bayes_regimes.errors import DataError
from bayes_regimes.heldout import (
    INTERVAL_PROB,
    POOLED,
    HeldoutPrediction,
    group_labels,
    group_masks,
    predictive_intervals,
    validate_ks,
)

__all__ = [
    "BASELINES",
    "bayes_at_n",
    "beta_binomial_mle",
    "fit_beta_binomial",
    "fit_power_law",
    "no_extrapolation",
    "power_law",
    "unbiased_estimator",
]

_LOG_BOUNDS = (-12.0, 12.0)  # bounds on log a and log b of the MLE
_KS = (100, 1000, 10000)


# ---------------------------------------------------------------------------
# shared plumbing
# ---------------------------------------------------------------------------
def _train(split: pd.DataFrame, group: str | None, ks: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Group labels, n_train, k_train, n_test of every row, and the ks, validated."""
    labels = group_labels(split, group)
    cols = []
    for col in ("n_train", "k_train", "n_test"):
        if col not in split.columns:
            raise DataError(f"column {col!r} is missing; pass the output of holdout_split")
        cols.append(split[col].to_numpy(np.int64))
    n, k, n_test = cols
    bad = np.flatnonzero((k < 0) | (k > n) | (n < 1) | (n_test < 0))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"row {i}: invalid n_train={n[i]}, k_train={k[i]}, n_test={n_test[i]}")
    return labels, n, k, n_test, validate_ks(ks)


def _assemble(
    name: str,
    labels: np.ndarray,
    k_train: np.ndarray,
    rescue_rows: np.ndarray,
    passk_rows: np.ndarray | None,
    ks: np.ndarray,
    *,
    frac_estimate: dict[str, float] | None = None,
    passk_estimate: dict[str, np.ndarray] | None = None,
    intervals: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> HeldoutPrediction:
    """Build a HeldoutPrediction from per-row values (or per-group aggregates)."""
    fail = k_train == 0
    frac_rows, passk_rows_out = {}, []
    for label, mask in group_masks(labels):
        fmask = mask & fail
        if frac_estimate is not None:
            frac = frac_estimate.get(label, np.nan)
        else:
            frac = float(rescue_rows[fmask].mean()) if fmask.any() else np.nan
        frac_rows[label] = {"estimate": frac, "low": np.nan, "high": np.nan, "spread": np.nan}
        est = passk_rows[mask].mean(axis=0) if passk_estimate is None else passk_estimate[label]
        passk_rows_out += [
            {"group": label, "k": int(kk), "estimate": float(e), "low": np.nan, "high": np.nan}
            for kk, e in zip(ks, est, strict=True)
        ]
    frac_df = pd.DataFrame.from_dict(frac_rows, orient="index")
    frac_df.index.name = "group"
    passk_df = pd.DataFrame(passk_rows_out)
    if intervals is not None:
        frac_int, passk_int = intervals
        cols = ["low", "high", "spread"]
        frac_df[cols] = frac_int.loc[frac_df.index, cols].to_numpy()
        merged = passk_df[["group", "k"]].merge(passk_int, on=["group", "k"], how="left")
        passk_df[["low", "high"]] = merged[["low", "high"]].to_numpy()
    return HeldoutPrediction(
        method=name,
        rescue_prob=np.asarray(rescue_rows[fail], dtype=float),
        rescued_fraction=frac_df,
        pass_at_k=passk_df,
    )


# ---------------------------------------------------------------------------
# no extrapolation and the unbiased estimator
# ---------------------------------------------------------------------------
def no_extrapolation(
    split: pd.DataFrame,
    ks: Sequence[int] = _KS,
    *,
    group: str | None = "model",
    interval_prob: float = INTERVAL_PROB,
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
) -> HeldoutPrediction:
    """Assume more samples buy nothing: pass@k frozen at the observed budget.

    pass@k is the unbiased estimator at ``min(k, n_train)``, so for ``k >= n_train``
    it is the observed solved fraction; every training failure gets rescue
    probability 0. No intervals.

    Examples
    --------
    >>> from bayes_regimes.heldout import holdout_split
    >>> split = holdout_split(pd.DataFrame({"n": [20, 20], "k": [0, 20]}), 5, 0)
    >>> no_extrapolation(split, [100], group=None).pass_at_k["estimate"].tolist()
    [0.5, 0.5]
    """
    labels, n, k, _, ks_arr = _train(split, group, ks)
    passk = unbiased_pass_at_k(n[:, None], k[:, None], np.minimum(ks_arr[None, :], n[:, None]))
    return _assemble("no_extrapolation", labels, k, np.zeros(n.size), np.asarray(passk), ks_arr)


def unbiased_estimator(
    split: pd.DataFrame,
    ks: Sequence[int] = _KS,
    *,
    group: str | None = "model",
    interval_prob: float = INTERVAL_PROB,
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
) -> HeldoutPrediction:
    """The unbiased pass@k estimator of Chen et al. (2021) on the training samples.

    Defined only for ``k <= n_train``: larger ``k`` gives NaN (never the common
    shortcut that returns 1 when ``c = 0``). It makes no rescue prediction, so
    ``rescue_prob`` and the rescued fraction are NaN and the scorer reports NaN
    rescue metrics for it. No intervals.

    Examples
    --------
    >>> from bayes_regimes.heldout import holdout_split
    >>> split = holdout_split(pd.DataFrame({"n": [20, 20], "k": [0, 20]}), 5, 0)
    >>> unbiased_estimator(split, [5, 6], group=None).pass_at_k["estimate"].tolist()
    [0.5, nan, 0.5, nan]
    """
    labels, n, k, _, ks_arr = _train(split, group, ks)
    passk = np.asarray(unbiased_pass_at_k(n[:, None], k[:, None], ks_arr[None, :]), dtype=float)
    return _assemble("unbiased_estimator", labels, k, np.full(n.size, np.nan), passk, ks_arr)


# ---------------------------------------------------------------------------
# beta-binomial maximum likelihood (Schaeffer et al. 2025)
# ---------------------------------------------------------------------------
def fit_beta_binomial(n: npt.ArrayLike, k: npt.ArrayLike) -> tuple[float, float]:
    """Maximum-likelihood Beta(a, b) of the beta-binomial marginal of counts.

    Maximises ``sum_i log BetaBinom(k_i | n_i, a, b)`` over ``(log a, log b)`` with
    L-BFGS-B and an analytic gradient, on the unique ``(n, k)`` patterns. ``log a``
    and ``log b`` are bounded to [-12, 12]; all-zero counts drive ``a`` to the lower
    bound (no success is expected).

    Parameters
    ----------
    n, k : array-like of int
        Attempts and successes per problem.

    Returns
    -------
    (float, float)
        The estimates ``(a, b)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> k = rng.binomial(20, rng.beta(0.5, 2.0, size=3000))
    >>> a, b = fit_beta_binomial(np.full(3000, 20), k)
    >>> bool(abs(a - 0.5) < 0.1 and abs(b - 2.0) < 0.4)
    True
    """
    n_arr = np.asarray(n, dtype=np.int64).reshape(-1)
    k_arr = np.asarray(k, dtype=np.int64).reshape(-1)
    if n_arr.shape != k_arr.shape or n_arr.size == 0:
        raise DataError("n and k must be non-empty and of equal length")
    a, b = _fit_many(n_arr, k_arr[None, :])
    return float(a[0]), float(b[0])


def _fit_many(n: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beta-binomial MLE of R data sets at once: ``k`` has shape (R, N), ``n`` (N,).

    The summed objective is separable across data sets, so one L-BFGS-B run over
    the 2R parameters finds every data set's maximum (one closed-form call per step).
    """
    reps = k.shape[0]
    pairs = np.stack(np.broadcast_arrays(n[None, :], k), axis=-1).reshape(-1, 2)
    patterns, inverse = np.unique(pairs, axis=0, return_inverse=True)
    n_pat = patterns.shape[0]
    rep_index = np.repeat(np.arange(reps), n.size)
    weight = np.bincount(rep_index * n_pat + inverse.reshape(-1), minlength=reps * n_pat)
    weight = weight.reshape(reps, n_pat) / n.size
    pn, pk = patterns[:, 0].astype(float), patterns[:, 1].astype(float)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = (np.exp(t)[:, None] for t in theta.reshape(2, reps))
        ll = np.sum(weight * betabinom_logpmf(pk, pn, a, b))
        common = digamma(a + b) - digamma(a + b + pn)
        ga = np.sum(weight * (digamma(a + pk) - digamma(a) + common), axis=1)
        gb = np.sum(weight * (digamma(b + pn - pk) - digamma(b) + common), axis=1)
        return -ll, -np.concatenate([ga * a[:, 0], gb * b[:, 0]])

    mean = np.clip(np.sum(weight * pk / pn, axis=1), 1e-3, 1 - 1e-3)
    start = np.log(np.concatenate([2.0 * mean, 2.0 * (1.0 - mean)]))
    res = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[_LOG_BOUNDS] * (2 * reps),
        options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 5000},
    )
    a, b = np.exp(res.x).reshape(2, reps)
    return a, b


def beta_binomial_mle(
    split: pd.DataFrame,
    ks: Sequence[int] = _KS,
    *,
    group: str | None = "model",
    interval_prob: float = INTERVAL_PROB,
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
) -> HeldoutPrediction:
    """Beta-binomial maximum likelihood per group, as in Schaeffer et al. (2025).

    Each group's ``Beta(a, b)`` is fitted by :func:`fit_beta_binomial` on the
    training counts and plugged in. Rescue probability of a failure:
    ``expected_gain(0, n_train, n_test, 0, a, b)``. pass@k is the per-problem
    posterior average ``mean_i expected_gain(k_i, n_i, k, 0, a, b)`` (a fresh run
    of k samples on *these* problems, which is what the held-out truth measures),
    not the new-problem value ``pass_at_k_new_problem``.

    Intervals come from a parametric bootstrap: ``n_draws`` data sets are simulated
    from the fitted beta-binomial and refitted (all at once, one L-BFGS-B run over
    the separable summed objective); for each refit ``(a*, b*)``, every problem's
    ``p`` is drawn from ``Beta(a* + k_i, b* + n_i - k_i)`` and
    :func:`bayes_regimes.heldout.predictive_intervals` turns the draws into
    predictive intervals of the realised rescued fraction and pass@k.

    With one Beta per group and a common ``n_train``, every failure of a group gets
    the same rescue probability, so its within-group AUROC is 0.5. A group with no
    training success drives ``a`` to its lower bound: it predicts (and its bootstrap
    interval is) essentially 0.

    Examples
    --------
    >>> from bayes_regimes.heldout import holdout_split
    >>> rng = np.random.default_rng(0)
    >>> counts = pd.DataFrame({"n": 1000, "k": rng.binomial(1000, rng.beta(0.3, 3, 200))})
    >>> pred = beta_binomial_mle(
    ...     holdout_split(counts, 10, 0), [100], group=None, n_draws=20, random_seed=0
    ... )
    >>> pred.rescued_fraction.loc["all", ["low", "high"]].notna().all()
    np.True_
    """
    labels, n, k, n_test, ks_arr = _train(split, group, ks)
    rng = np.random.default_rng(random_seed)
    rescue = np.zeros(n.size)
    passk = np.zeros((n.size, ks_arr.size))
    p_draws = np.zeros((int(n_draws), n.size))
    for _, mask in group_masks(labels)[:-1]:
        nn, kk = n[mask], k[mask]
        a, b = fit_beta_binomial(nn, kk)
        rescue[mask] = expected_gain(kk, nn, n_test[mask], 0.0, a, b)
        passk[mask] = pass_at_k_fresh(kk[:, None], nn[:, None], ks_arr[None, :], 0.0, a, b)
        if n_draws > 0:
            k_sim = rng.binomial(nn, rng.beta(a, b, size=(int(n_draws), nn.size)))
            a_s, b_s = _fit_many(nn, k_sim)
            p_draws[:, mask] = rng.beta(a_s[:, None] + kk, b_s[:, None] + nn - kk)
    intervals = None
    if n_draws > 0:
        intervals = predictive_intervals(
            split, p_draws, ks_arr, group=group, interval_prob=interval_prob, random_seed=rng
        )
    return _assemble("beta_binomial_mle", labels, k, rescue, passk, ks_arr, intervals=intervals)


# ---------------------------------------------------------------------------
# power law of the aggregate pass@k curve (Brown et al. 2024)
# ---------------------------------------------------------------------------
def fit_power_law(ks: npt.ArrayLike, pass_at_k: npt.ArrayLike) -> tuple[float, float] | None:
    """Fit ``-log(pass@k) = c * k**(-b)`` by least squares of ``log(-log pass@k)`` on ``log k``.

    Points with pass@k equal to 0 or 1 carry no information on this scale and are
    dropped.

    Returns
    -------
    (c, b) or None
        None when fewer than two usable points remain.

    Examples
    --------
    >>> ks = np.arange(1, 11)
    >>> c, b = fit_power_law(ks, np.exp(-2.0 * ks**-0.3))
    >>> round(c, 6), round(b, 6)
    (2.0, 0.3)
    """
    x = np.asarray(ks, dtype=float)
    y = np.asarray(pass_at_k, dtype=float)
    ok = np.isfinite(y) & (y > 0) & (y < 1)
    if ok.sum() < 2 or np.unique(x[ok]).size < 2:
        return None
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(-np.log(y[ok])), 1)
    return float(np.exp(intercept)), float(-slope)


def power_law(
    split: pd.DataFrame,
    ks: Sequence[int] = _KS,
    *,
    group: str | None = "model",
    interval_prob: float = INTERVAL_PROB,
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
) -> HeldoutPrediction:
    """Exponentiated power law of the aggregate pass@k curve (Brown et al. 2024).

    Per group, :func:`fit_power_law` is fitted to the unbiased pass@k of the
    training samples at ``k = 1..min(n_train)``. pass@k is the observed unbiased
    estimate for ``k <= min(n_train)`` and the curve ``exp(-c k^-b)`` beyond. With
    fewer than two usable points (everything or nothing solved at every k) pass@k
    stays frozen at the observed value.

    The curve is an aggregate, so there is no per-problem rescue probability
    (``rescue_prob`` is NaN). The predicted rescued fraction of the training
    failures is ``(PL(n_train + n_test) - S) / (1 - S)``, clipped to [0, 1], where
    ``S`` is the observed solved fraction (= pass@n_train) and ``PL(N)`` the curve,
    averaged over the group's failures. No intervals.

    Examples
    --------
    >>> from bayes_regimes.heldout import holdout_split
    >>> rng = np.random.default_rng(1)
    >>> counts = pd.DataFrame({"n": 1000, "k": rng.binomial(1000, rng.beta(0.3, 3, 200))})
    >>> pred = power_law(holdout_split(counts, 10, 0), [1000], group=None)
    >>> bool(0 < pred.pass_at_k["estimate"].iloc[0] < 1)
    True
    """
    labels, n, k, n_test, ks_arr = _train(split, group, ks)
    fail = k == 0
    frac_est: dict[str, float] = {}
    passk_est: dict[str, np.ndarray] = {}
    weights: dict[str, tuple[int, int]] = {}
    for label, mask in group_masks(labels)[:-1]:
        k_max = int(n[mask].min())
        grid = np.arange(1, k_max + 1)
        observed = np.asarray(
            unbiased_pass_at_k(n[mask][:, None], k[mask][:, None], grid[None, :])
        ).mean(axis=0)
        params = fit_power_law(grid, observed)

        def curve(x: np.ndarray, params=params, last=observed[-1]) -> np.ndarray:
            if params is None:
                return np.full(np.shape(x), last, dtype=float)
            c, b = params
            return np.exp(-c * np.asarray(x, dtype=float) ** (-b))

        small = np.minimum(ks_arr, k_max)
        passk_est[label] = np.where(ks_arr <= k_max, observed[small - 1], curve(ks_arr))
        solved = float(np.mean(~fail[mask]))
        fmask = mask & fail
        if fmask.any() and solved < 1:
            coverage = float(np.mean(curve(n[fmask] + n_test[fmask])))
            frac_est[label] = float(np.clip((coverage - solved) / (1 - solved), 0.0, 1.0))
        weights[label] = (int(mask.sum()), int(fmask.sum()))
    passk_est[POOLED] = sum(w[0] * passk_est[g] for g, w in weights.items()) / n.size
    n_fail = sum(w[1] for w in weights.values())
    if n_fail:
        frac_est[POOLED] = sum(w[1] * frac_est.get(g, 0.0) for g, w in weights.items()) / n_fail
    return _assemble(
        "power_law",
        labels,
        k,
        np.full(n.size, np.nan),
        None,
        ks_arr,
        frac_estimate=frac_est,
        passk_estimate=passk_est,
    )


# ---------------------------------------------------------------------------
# Bayes@N: independent uniform-prior Beta posteriors (Hariri et al. 2025)
# ---------------------------------------------------------------------------
def bayes_at_n(
    split: pd.DataFrame,
    ks: Sequence[int] = _KS,
    *,
    group: str | None = "model",
    interval_prob: float = INTERVAL_PROB,
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
) -> HeldoutPrediction:
    """Independent per-problem Beta posteriors with a uniform prior (Hariri et al. 2025).

    No pooling: ``p_i | data ~ Beta(1 + k_i, 1 + n_i - k_i)``. Rescue probability of
    a failure: ``expected_gain(0, n_train, n_test, 0, 1, 1) = n_test / (n_train +
    n_test + 1)``. pass@k is the per-problem posterior average. Intervals: ``n_draws``
    Monte Carlo draws of every ``p_i`` from its posterior, turned into predictive
    intervals by :func:`bayes_regimes.heldout.predictive_intervals`.

    Examples
    --------
    >>> from bayes_regimes.heldout import holdout_split
    >>> split = holdout_split(pd.DataFrame({"n": [100, 100], "k": [0, 50]}), 10, 0)
    >>> bayes_at_n(split, [100], group=None, n_draws=50, random_seed=0).rescue_prob
    array([0.89108911])
    """
    labels, n, k, n_test, ks_arr = _train(split, group, ks)
    rng = np.random.default_rng(random_seed)
    rescue = np.asarray(expected_gain(k, n, n_test, 0.0, 1.0, 1.0), dtype=float)
    passk = np.asarray(pass_at_k_fresh(k[:, None], n[:, None], ks_arr[None, :], 0.0, 1.0, 1.0))
    intervals = None
    if n_draws > 0:
        p_draws = rng.beta(1.0 + k, 1.0 + n - k, size=(int(n_draws), n.size))
        intervals = predictive_intervals(
            split, p_draws, ks_arr, group=group, interval_prob=interval_prob, random_seed=rng
        )
    return _assemble("bayes_at_n", labels, k, rescue, passk, ks_arr, intervals=intervals)


#: The baselines by name; every value has the common signature of this module.
BASELINES: dict[str, Callable[..., HeldoutPrediction]] = {
    "no_extrapolation": no_extrapolation,
    "unbiased_estimator": unbiased_estimator,
    "beta_binomial_mle": beta_binomial_mle,
    "power_law": power_law,
    "bayes_at_n": bayes_at_n,
}
