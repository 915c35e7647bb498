"""The paper's outcome regimes and routing rule, reproduced literally.

Islah, Abbes, Rish, Chandar and Muller (2026), "Failed Reasoning Traces Tell You
What Is Fixable (But Not by Reading Them)", arXiv 2606.05145, ship a table of
1,423 failed problems (``failure_profiles.csv``) with three trace features and
the rescue rates of plain resampling and four logit interventions. This module
reads that table and recomputes, with the upstream recipe (``demo.py`` and
``routing.py`` of ``NizarIslah/vllm-logits``):

* the outcome regimes of "Eq. 2" (:func:`outcome_regimes`);
* the training-free argmax-z routing rule (:func:`route`);
* the published routing comparison for one cell (:func:`routing_table`,
  :func:`routing_groups`) and the same recipe on every cell
  (:func:`paper_rule_summary`, :func:`rule_vs_best_fixed`).

Nothing here is probabilistic: it is the baseline the package's models are
compared with.

Examples
--------
>>> from bayes_regimes.datasets import data_dir
>>> from bayes_regimes.paper import read_failure_profiles, routing_table
>>> if data_dir() is not None:
...     table = routing_table(read_failure_profiles(), "sft0p6b|gsm8k")
...     assert round(100 * table["rescue_rate"].iloc[0], 1) == 46.3  # routed
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_regimes.paper_profiles import (
    ATTEMPTS_PER_CONTEXT,
    FEATURES,
    INTERVENTIONS,
    RATES,
    _check,
    _require,
    infer_denominator,
    read_failure_profiles,
)

__all__ = [
    "ATTEMPTS_PER_CONTEXT",
    "FALLBACK",
    "FEATURES",
    "INTERVENTIONS",
    "OPERATOR_OF_FEATURE",
    "RATES",
    "REGIMES",
    "STRATEGIES",
    "infer_denominator",
    "outcome_regimes",
    "paper_rule_summary",
    "read_failure_profiles",
    "route",
    "routing_groups",
    "routing_table",
    "rule_vs_best_fixed",
    "zscores",
]

#: Feature -> operator of the routing rule.
OPERATOR_OF_FEATURE: dict[str, str] = {
    "spread": "dense_steer",
    "concentration": "sparse_steer",
    "logit_dispersion": "local_temp",
}
#: Operator for failures with no positive z-score.
FALLBACK: str = "sparse_steer_random"
#: Rows of :func:`routing_table`, in order.
STRATEGIES = ("routed", "dense_steer", "sparse_steer", "local_temp", FALLBACK, "retry")
#: The labels of :func:`outcome_regimes`.
REGIMES = ("resample", "steerable", "beyond reach")

#: Eq. 2 thresholds of the upstream demo (TAU_STEERABLE, TAU_HARD).
TAU_STEERABLE: float = 0.05
TAU_HARD: float = 0.50


def outcome_regimes(df: pd.DataFrame) -> pd.Series:
    """Label each failure from its outcomes ("Eq. 2" of the upstream demo).

    Parameters
    ----------
    df : pandas.DataFrame
        With the columns of :data:`RATES`.

    Returns
    -------
    pandas.Series of str
        One of ``"resample"``, ``"steerable"``, ``"beyond reach"`` per row,
        indexed like ``df``, named ``"regime"``.

    Notes
    -----
    With ``best`` the largest of the four intervention rates (``retry``
    excluded):

    * ``"steerable"`` if ``best - retry >= 0.05`` and ``1 - retry >= 0.5``;
    * ``"beyond reach"`` if not steerable and ``best == 0``, whatever ``retry``;
    * ``"resample"`` otherwise.

    The comparisons are plain float64 arithmetic, as upstream, so
    ``0.30 - 0.25 = 0.04999...`` is not steerable. On the public table this
    gives 642 resample, 534 steerable and 247 beyond reach.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"retry": [0.25, 0.2, 0.6], "sparse_steer": [0.30, 0.30, 0.0]})
    >>> df = df.assign(sparse_steer_random=0.0, local_temp=0.0, dense_steer=0.0)
    >>> outcome_regimes(df).tolist()  # 0.30 - 0.25 < 0.05 in float64
    ['resample', 'steerable', 'beyond reach']
    """
    _require(df, RATES)
    retry = df["retry"].to_numpy(dtype=np.float64)
    best = np.max([df[c].to_numpy(dtype=np.float64) for c in INTERVENTIONS], axis=0)
    steerable = ((best - retry) >= TAU_STEERABLE) & ((1.0 - retry) >= TAU_HARD)
    beyond = ~steerable & (best == 0.0)
    labels = np.full(len(df), "resample", dtype=object)
    labels[steerable] = "steerable"
    labels[beyond] = "beyond reach"
    return pd.Series(labels, index=df.index, name="regime", dtype=object)


def zscores(df: pd.DataFrame) -> pd.DataFrame:
    """Population z-scores (ddof = 0) of the :data:`FEATURES` within ``df``.

    A constant feature scores 0 everywhere (upstream's convention).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame(
    ...     {"spread": [1.0, 3.0], "concentration": [2.0, 2.0], "logit_dispersion": [0.0, 1.0]}
    ... )
    >>> zscores(df).to_numpy().tolist()
    [[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0]]
    """
    _require(df, FEATURES)
    out = {}
    for col in FEATURES:
        x = df[col].to_numpy(dtype=np.float64)
        _check(~np.isfinite(x), col, x, "is not finite")
        sd = x.std() if x.size else 0.0
        out[col] = (x - x.mean()) / sd if sd > 0.0 else np.zeros_like(x)
    return pd.DataFrame(out, index=df.index)


def route(df: pd.DataFrame) -> pd.Series:
    """Route each failure of a population to an operator (the argmax-z rule).

    Parameters
    ----------
    df : pandas.DataFrame
        The population, with the columns of :data:`FEATURES`.

    Returns
    -------
    pandas.Series of str
        Operator per row, indexed like ``df``, named ``"operator"``.

    Notes
    -----
    The features are z-scored within ``df`` with the population SD (ddof = 0;
    :func:`zscores`). Each row goes to the operator of its largest z:
    spread -> ``dense_steer``, concentration -> ``sparse_steer``,
    logit_dispersion -> ``local_temp``; exact ties go to the first in that
    order. Rows whose largest z is not above 0 go to ``sparse_steer_random``.
    This is ``routing.route`` of the upstream code with its default policy.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame([[3, 0, 0], [0, 3, 0], [0, 0, 3], [0, 0, 0]], columns=FEATURES)
    >>> route(df).tolist()
    ['dense_steer', 'sparse_steer', 'local_temp', 'sparse_steer_random']
    """
    z = zscores(df).to_numpy()
    ops = np.array([OPERATOR_OF_FEATURE[f] for f in FEATURES], dtype=object)
    if len(df) == 0:
        return pd.Series([], index=df.index, name="operator", dtype=object)
    chosen = ops[np.argmax(z, axis=1)]
    chosen = np.where(np.max(z, axis=1) <= 0.0, FALLBACK, chosen)
    return pd.Series(chosen, index=df.index, name="operator", dtype=object)


def _population(df: pd.DataFrame, cell: str | None) -> pd.DataFrame:
    _require(df, (*FEATURES, *RATES))
    if cell is not None:
        _require(df, ["cell"])
        if not (df["cell"] == cell).any():
            known = ", ".join(dict.fromkeys(df["cell"].astype(str)))
            raise ValueError(f"no rows for cell {cell!r}; known cells: {known}")
        df = df[df["cell"] == cell]
    return df[outcome_regimes(df) == "steerable"]


def routing_groups(df: pd.DataFrame, cell: str | None = None) -> pd.Series:
    """How many of a cell's steerable failures the rule sends to each operator.

    Parameters
    ----------
    df : pandas.DataFrame
        Failure profiles (see :func:`read_failure_profiles`).
    cell : str, optional
        Value of the ``cell`` column; None uses every row of ``df``.

    Returns
    -------
    pandas.Series of int64
        Indexed by ``dense_steer``, ``sparse_steer``, ``local_temp``,
        ``sparse_steer_random`` (zeros included), named ``"n"``.

    Examples
    --------
    >>> from bayes_regimes.datasets import data_dir
    >>> if data_dir() is not None:
    ...     groups = routing_groups(read_failure_profiles(), "sft0p6b|gsm8k")
    ...     assert groups.tolist() == [26, 20, 17, 4]
    """
    ops = route(_population(df, cell))
    order = [*OPERATOR_OF_FEATURE.values(), FALLBACK]
    counts = [int((ops == op).sum()) for op in order]
    return pd.Series(counts, index=pd.Index(order, name="operator"), name="n", dtype=np.int64)


def routing_table(df: pd.DataFrame, cell: str | None = None) -> pd.DataFrame:
    """Routed versus fixed rescue rates on one cell's steerable failures.

    Parameters
    ----------
    df : pandas.DataFrame
        Failure profiles (see :func:`read_failure_profiles`).
    cell : str, optional
        Value of the ``cell`` column, e.g. ``"sft0p6b|gsm8k"``; None uses every
        row of ``df`` as one population.

    Returns
    -------
    pandas.DataFrame
        One row per strategy of :data:`STRATEGIES` (``routed``, ``dense_steer``,
        ``sparse_steer``, ``local_temp``, ``sparse_steer_random``, ``retry``),
        with columns ``strategy``, ``n`` (failures scored) and ``rescue_rate``
        (mean rate, a fraction in [0, 1]; NaN when ``n == 0``).

    Raises
    ------
    ValueError
        When ``cell`` has no rows.

    Notes
    -----
    The recipe of the upstream demo, which reproduces every published digit for
    ``sft0p6b|gsm8k`` (67 failures; routed 46.3 %, dense 43.9 %, sparse 43.0 %,
    local temperature 41.7 %, random position 39.0 %, resample 24.8 %; groups
    dense 26, sparse 20, local temperature 17, fallback 4):

    1. the population is the cell's Eq. 2 steerable failures
       (:func:`outcome_regimes`, plain float64 comparisons);
    2. the features are z-scored **within that population**, with the
       population SD (ddof = 0), not over the whole cell (z over all 196 rows of
       the cell gives 47.0 %, groups 29 / 25 / 10 / 3). The SD convention itself
       does not matter: ddof = 1 rescales every z by the same positive factor,
       leaving argmax and signs unchanged;
    3. the fallback to ``sparse_steer_random`` is kept (pure argmax gives
       45.9 %);
    4. ``routed`` is the mean over failures of the rate of the operator each
       was routed to; fixed strategies are plain column means.

    Examples
    --------
    >>> import pandas as pd
    >>> features = pd.DataFrame([[1, 0, 0], [0, 1, 0], [0, 0, 0]], columns=FEATURES)
    >>> df = features.assign(cell="a", retry=0.0, local_temp=0.0).assign(
    ...     sparse_steer=[0.0, 1.0, 0.0], sparse_steer_random=[0, 0, 0.5], dense_steer=[1.0, 0, 0]
    ... )
    >>> routing_table(df, "a").round(3).to_dict("list")["rescue_rate"]
    [0.833, 0.333, 0.333, 0.0, 0.167, 0.0]
    """
    pop = _population(df, cell)
    n = len(pop)
    ops = route(pop).to_numpy()
    rates = {c: pop[c].to_numpy(dtype=np.float64) for c in RATES}
    routed = np.array([rates[op][i] for i, op in enumerate(ops)], dtype=np.float64)
    values = {"routed": routed, **rates}
    means = [float(values[s].mean()) if n else float("nan") for s in STRATEGIES]
    n_col = np.full(len(STRATEGIES), n, dtype=np.int64)
    return pd.DataFrame({"strategy": list(STRATEGIES), "n": n_col, "rescue_rate": means})


def paper_rule_summary(df: pd.DataFrame) -> pd.DataFrame:
    """The routing table of every cell, in long form.

    Parameters
    ----------
    df : pandas.DataFrame
        Failure profiles with a ``cell`` column.

    Returns
    -------
    pandas.DataFrame
        Columns ``cell``, ``strategy``, ``n``, ``rescue_rate`` (as in
        :func:`routing_table`, cells in first-appearance order) and
        ``best_fixed`` (bool): True on the row of the cell's best fixed
        intervention, the largest mean of the four :data:`INTERVENTIONS`
        (``retry`` excluded; exact ties go to the first in
        :data:`INTERVENTIONS` order, as upstream).

    Examples
    --------
    >>> from bayes_regimes.datasets import data_dir
    >>> if data_dir() is not None:
    ...     summary = paper_rule_summary(read_failure_profiles())
    ...     assert summary["best_fixed"].sum() == 8
    """
    _require(df, ["cell"])
    parts = []
    for cell in dict.fromkeys(df["cell"]):
        table = routing_table(df, cell)
        table.insert(0, "cell", cell)
        fixed = table.set_index("strategy")["rescue_rate"].reindex(list(INTERVENTIONS))
        best = None
        if fixed.notna().all():
            best = INTERVENTIONS[int(np.argmax(fixed.to_numpy()))]
        table["best_fixed"] = table["strategy"] == best
        parts.append(table)
    columns = ["cell", "strategy", "n", "rescue_rate", "best_fixed"]
    if not parts:
        return pd.DataFrame({c: [] for c in columns})
    return pd.concat(parts, ignore_index=True)[columns]


def rule_vs_best_fixed(summary: pd.DataFrame) -> pd.DataFrame:
    """Per cell: routed rescue rate against the best fixed intervention.

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of :func:`paper_rule_summary`.

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``cell``, ``n``, ``routed``, ``best_fixed`` (operator),
        ``best_fixed_rate``, ``delta`` (routed minus best fixed) and
        ``rule_wins`` (``delta > 0``, strictly).

    Examples
    --------
    >>> from bayes_regimes.datasets import data_dir
    >>> if data_dir() is not None:
    ...     wide = rule_vs_best_fixed(paper_rule_summary(read_failure_profiles()))
    ...     assert wide["rule_wins"].sum() == 1
    """
    rows = []
    for cell, part in summary.groupby("cell", sort=False):
        rate = part.set_index("strategy")["rescue_rate"]
        best = part.loc[part["best_fixed"], "strategy"]
        best_name = str(best.iloc[0]) if len(best) else None
        best_rate = float(rate[best_name]) if best_name else float("nan")
        delta = float(rate["routed"]) - best_rate
        rows.append(
            {
                "cell": cell,
                "n": int(part["n"].iloc[0]),
                "routed": float(rate["routed"]),
                "best_fixed": best_name,
                "best_fixed_rate": best_rate,
                "delta": delta,
                "rule_wins": bool(delta > 0.0),
            }
        )
    return pd.DataFrame(rows)
