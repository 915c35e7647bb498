"""Routing failures to interventions from a fitted :class:`InterventionModel`.

Given a posterior draw and a failure's latent ability ``u``, the success
probability p under each condition is a zero-inflated Beta mixture (its
best-of-r outcome integrated exactly, see :mod:`bayes_regimes.closed_form`).
Everything here evaluates that conditional posterior per (draw, failure,
condition), then averages over draws:

* **expected rescue** of a condition: ``E[1 - (1 - p)^r]``, the probability that
  one fresh repair context (r attempts) is rescued, the quantity the paper's
  rates estimate;
* **regimes** (latent version of the paper's Eq. 2, with q the rescue probability
  of a condition and ``best`` the largest q over the interventions, baseline
  excluded): *steerable* if ``best - q_baseline >= tau_steer`` and
  ``1 - q_baseline >= tau_hard``; *beyond reach* if not steerable and every
  intervention has ``p < epsilon``; *resample* otherwise. Their probabilities are
  Monte Carlo averages over joint draws of all conditions' p (conditionally
  independent given u), so they sum to one;
* the **recommendation**: the condition with the largest expected rescue per unit
  cost.

:func:`route_new` does the same for new failures known only by their features
(and optionally some outcomes), integrating u by Gauss-Hermite quadrature over
the population of *selected* failures.

The paper's failure profiles become condition cells with
:func:`profiles_to_counts` (in :mod:`bayes_regimes.routing_input`, re-exported).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayes_regimes import paper
from bayes_regimes.diagnostics import tag
from bayes_regimes.queries import CI_PROB, summarise_draws
from bayes_regimes.routing_input import profiles_to_counts, read_route_input, total_rollouts
from bayes_regimes.routing_new import new_posterior_blocks, route_new
from bayes_regimes.routing_posterior import (
    _CHUNK,
    REGIME_COLUMNS,
    _cell_posterior,
    _codes,
    _frame,
    _thin,
    latent_regimes,
)

if TYPE_CHECKING:
    from bayes_regimes.models.interventions import InterventionModel

__all__ = [
    "REGIME_COLUMNS",
    "latent_regimes",
    "new_posterior_blocks",
    "profiles_to_counts",
    "read_route_input",
    "regime_fractions",
    "route_fitted",
    "route_new",
    "total_rollouts",
]


def _unit_blocks(model: InterventionModel, dr: dict, units: np.ndarray, rng, n_samples: int):
    """Yield (units, rescue (S, n, Ccand), codes (M, S, n)) for fitted units, in blocks."""
    lay, C = model.layout, len(model.conditions)
    cand = np.arange(len(model.candidates))
    nd = dr["u"].shape[0]
    step = max(1, _CHUNK // (nd * C))
    for lo in range(0, units.size, step):
        un = units[lo : lo + step]
        iu, ic = np.repeat(un, C), np.tile(np.arange(C), un.size)
        pi, a, b = model._cell_hyper(dr, iu, ic)
        rescue, _, _, smp = _cell_posterior(
            lay.K[iu, ic],
            lay.D[iu, ic],
            model.r[ic],
            pi,
            a,
            b,
            model.config["epsilon"],
            rng,
            n_samples,
        )
        rescue = rescue.reshape(nd, un.size, C)[..., cand]
        p = smp.reshape(n_samples, nd, un.size, C)[..., cand]
        yield un, rescue, _codes(model, p)


def _fitted_blocks(model: InterventionModel, max_draws: int | None, random_seed, n_samples: int):
    """:func:`_unit_blocks` over every fitted unit, the posterior thinned to ``max_draws``."""
    dr = _thin(model.draws(), max_draws)
    rng = np.random.default_rng(random_seed)
    return dr, _unit_blocks(model, dr, np.arange(model.layout.n_units), rng, n_samples)


def route_fitted(
    model: InterventionModel,
    costs: Mapping[str, float] | None = None,
    *,
    n_samples: int = 4,
    max_draws: int | None = 1000,
    ci_prob: float = CI_PROB,
    random_seed: int = 0,
) -> pd.DataFrame:
    """Per failure of the fitted data: regime probabilities, rescue, recommendation.

    Parameters
    ----------
    model : InterventionModel
        A fitted model.
    costs : dict, optional
        Cost per trial of each condition (default: the model's ``costs``, 1 each);
        the recommendation maximises expected rescue per unit cost.
    n_samples : int
        Joint draws of p per posterior draw for the regime probabilities.
    max_draws : int, optional
        Thin the posterior to at most this many draws (evenly spaced).
    ci_prob : float
        Mass of the equal-tailed intervals of the expected rescue over draws.
    random_seed : int
        Seed of the Monte Carlo draws.

    Returns
    -------
    pandas.DataFrame
        One row per failure (units in first-appearance order): problem, group,
        p_resample, p_steerable, p_beyond_reach (they sum to 1), regime (most
        probable), ``rescue_<c>``, ``rescue_<c>_low``, ``rescue_<c>_high`` per
        candidate condition c (baseline first), recommended, recommended_rescue,
        recommended_cost.

    Examples
    --------
    >>> from bayes_regimes.data import RolloutData
    >>> from bayes_regimes.models.interventions import InterventionModel, simulate_interventions
    >>> counts, _ = simulate_interventions(n_problems=60, random_seed=1)
    >>> data = RolloutData.from_counts(counts, condition="condition", features=["x0"])
    >>> model = InterventionModel(data, attempts=3)
    >>> _ = model.fit(draws=200, tune=200, chains=2, progressbar=False)  # doctest: +SKIP
    >>> routes = route_fitted(model, costs={"steer": 2.0})  # doctest: +SKIP
    >>> routes[["problem", "p_steerable", "recommended"]].head()  # doctest: +SKIP
    """
    lay = model.layout
    res, codes = [], []
    for _, rescue, code in _fitted_blocks(model, max_draws, random_seed, n_samples)[1]:
        res.append(rescue)
        codes.append(code)
    return _frame(
        model,
        lay.problem,
        lay.group_label,
        np.concatenate(res, axis=1),
        np.concatenate(codes, axis=2),
        costs,
        ci_prob,
    )


def regime_fractions(
    model: InterventionModel,
    by: Mapping[str, str] | None = None,
    *,
    n_samples: int = 4,
    max_draws: int | None = 1000,
    ci_prob: float = CI_PROB,
    random_seed: int = 0,
) -> pd.DataFrame:
    """Posterior of the share of failures in each regime, per group and overall.

    Parameters
    ----------
    model, n_samples, max_draws, ci_prob, random_seed
        As in :func:`route_fitted`.
    by : dict, optional
        Group label -> reporting label (e.g. cell -> post-training method); default
        each group on its own. A row ``"all"`` (every failure) is added.

    Returns
    -------
    pandas.DataFrame
        by, regime, n (failures), mean, low, high (equal-tailed ``ci_prob``
        interval over joint posterior draws of every failure's regime).

    Examples
    --------
    >>> fractions = regime_fractions(model, by={"sft|gsm8k": "SFT"})  # doctest: +SKIP
    """
    lay = model.layout
    mapping = {g: g for g in lay.groups} if by is None else dict(by)
    missing = set(lay.groups) - set(mapping)
    if missing:
        raise ValueError(f"by: no label for group(s) {sorted(missing)}")
    labels = list(dict.fromkeys(mapping[g] for g in lay.groups))
    unit_label = np.array([labels.index(mapping[g]) for g in lay.group_label])
    dr, blocks = _fitted_blocks(model, max_draws, random_seed, n_samples)
    L = len(labels)
    total = L > 1 or labels[0] != "all"  # add an "all" row unless it is the only group
    counts = np.zeros((n_samples, dr["u"].shape[0], L + 1, 3))
    for un, _, code in blocks:
        for j in range(3):
            hit = (code == j).astype(float)
            for li in range(L):
                counts[:, :, li, j] += hit[..., unit_label[un] == li].sum(axis=-1)
            counts[:, :, L, j] += hit.sum(axis=-1)
    sizes = np.array([np.sum(unit_label == li) for li in range(L)] + [lay.n_units])
    frac = (counts / sizes[None, None, :, None]).reshape(-1, L + 1, 3)
    mean, low, high = summarise_draws(frac, ci_prob)
    rows = []
    for li, lab in enumerate([*labels, "all"][: L + total]):
        for j, regime in enumerate(paper.REGIMES):
            rows.append((lab, regime, int(sizes[li]), mean[li, j], low[li, j], high[li, j]))
    out = pd.DataFrame(rows, columns=["by", "regime", "n", "mean", "low", "high"])
    return tag(out, model.diagnostics())
