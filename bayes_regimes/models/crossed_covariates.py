"""Model-level covariates of the crossed model: known facts about each model.

Models of one family differ in known ways (parameter count, training tokens, a
post-training method coded 0/1). Given such covariates, the crossed model's per-model
terms are regressions rather than exchangeable draws::

    theta_m   = ability_loc + x_m . ability_coef + ability_sd z_m
    u_m       = x_m . model_propensity_coef + model_propensity_sd z'_m
    log k_m   = log_kappa_loc + x_m . kappa_coef + kappa_sd z''_m

with x_m the covariates standardised over the fitted models (mean 0, population sd
1), so the coefficients are in logit units per sd of the covariate and the residual
scales keep their meaning. A model whose own data say little (Pythia 70M: 2
successes in 1,280 samples) then borrows the trend of its family.

Covariates are given as a table with one row per model, indexed by the model's name
(the ``group`` of the data), and numeric columns; rows of models absent from the data
are allowed (a table of a whole family, fitted on part of it) and unused.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayes_regimes.errors import DataError

#: Dimension of the covariate coefficients in the posterior.
COVARIATE_DIM = "model_covariate"
#: Per-model term a covariate can inform -> its coefficient in the posterior.
COEF_NAMES = {
    "ability": "ability_coef",
    "structural": "model_propensity_coef",
    "kappa": "kappa_coef",
}


def resolve_terms(terms, *, structural: bool, model_propensity: bool, kappa_by: str) -> list[str]:
    """The per-model terms the covariates inform, checked against the model's options.

    ``None`` (default): every per-model term the model has (the ability; the
    structural term with ``model_propensity``; the slab concentration with
    ``kappa_by="model"``): on held-out Large Language Monkeys each one added lowered
    the calibration error (``benchmarks/results/crossed_monkeys.md``). An explicit
    list must name terms the model has.

    Examples
    --------
    >>> resolve_terms(None, structural=True, model_propensity=True, kappa_by="model")
    ['ability', 'structural', 'kappa']
    >>> resolve_terms(None, structural=True, model_propensity=False, kappa_by="global")
    ['ability']
    >>> resolve_terms(["kappa"], structural=False, model_propensity=True, kappa_by="model")
    ['kappa']
    """
    if terms is None:
        has = {"structural": structural and model_propensity, "kappa": kappa_by == "model"}
        return ["ability"] + [t for t in ("structural", "kappa") if has[t]]
    terms = [terms] if isinstance(terms, str) else list(terms)
    unknown = [t for t in terms if t not in COEF_NAMES]
    if unknown or not terms:
        raise ValueError(
            f"covariate_terms must be a non-empty subset of {list(COEF_NAMES)}, got {terms}"
        )
    if "structural" in terms and not (structural and model_propensity):
        raise ValueError(
            "covariate_terms 'structural' needs structural=True, model_propensity=True"
        )
    if "kappa" in terms and kappa_by != "model":
        raise ValueError("covariate_terms 'kappa' needs kappa_by='model'")
    return [t for t in COEF_NAMES if t in terms]


def as_table(covariates: pd.DataFrame | Mapping) -> pd.DataFrame:
    """A DataFrame indexed by model name, from a DataFrame or ``{column: {model: x}}``."""
    if isinstance(covariates, pd.DataFrame):
        table = covariates.copy()
    elif isinstance(covariates, Mapping):
        table = pd.DataFrame(dict(covariates))
    else:
        raise TypeError(
            "model_covariates must be a DataFrame indexed by model name, or a dict "
            f"{{column: {{model: value}}}}; got {type(covariates).__name__}"
        )
    table.index = table.index.map(str)
    table.columns = table.columns.map(str)
    return table


def _finite_rows(
    table: pd.DataFrame, models: list[str], columns: list[str], who: str = "model(s)"
) -> pd.DataFrame:
    """``table``'s rows ``models`` and ``columns`` as floats; names what is missing or bad."""
    missing = [m for m in models if m not in table.index]
    if missing:
        raise DataError(
            f"model_covariates: no row for {who} {missing} (index must hold the model names)"
        )
    rows = table.loc[models, columns]
    for col in columns:
        values = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float)
        bad = rows.index[~np.isfinite(values)]
        if len(bad):
            raise DataError(
                f"model_covariates: column {col!r} is not a finite number for model(s) {list(bad)}"
            )
        rows[col] = values
    return rows.astype(float)


def checked_covariates(covariates: pd.DataFrame | Mapping, models: list[str]) -> pd.DataFrame:
    """The raw covariates of ``models`` (rows in that order) as floats, checked.

    Raises
    ------
    DataError
        Empty table, duplicate model rows, a fitted model without a row, a column that
        is not numeric, not finite or constant over the fitted models, or as many
        covariates as models.
    """
    table = as_table(covariates)
    if table.shape[1] == 0 or table.shape[0] == 0:
        raise DataError("model_covariates: empty table (need one row per model, >= 1 column)")
    dup = table.index[table.index.duplicated()]
    if len(dup):
        raise DataError(f"model_covariates: duplicate row(s) for model(s) {sorted(set(dup))}")
    rows = _finite_rows(table, models, list(table.columns))
    if table.shape[1] >= len(models):
        raise DataError(
            f"model_covariates: {table.shape[1]} column(s) for {len(models)} models; "
            "use fewer covariates than models"
        )
    scale = rows.std(ddof=0)
    constant = list(scale.index[scale <= 1e-12 * (1 + rows.abs().max())])
    if constant:
        raise DataError(
            f"model_covariates: column(s) {constant} constant over the fitted models "
            "(nothing to learn from; drop them)"
        )
    return rows


def covariate_matrix(covariates: pd.DataFrame | Mapping, models: list[str]) -> pd.DataFrame:
    """Standardised covariates of ``models`` (rows in that order), checked.

    Parameters
    ----------
    covariates : DataFrame or dict
        One row per model (index = model name), numeric columns.
    models : list of str
        The fitted models, in the model's order.

    Returns
    -------
    DataFrame
        models x covariates, each column with mean 0 and population sd 1 over ``models``.

    Raises
    ------
    DataError
        As :func:`checked_covariates`.

    Examples
    --------
    >>> import pandas as pd
    >>> cov = pd.DataFrame({"log_params": [0.0, 1.0, 2.0]}, index=["a", "b", "c"])
    >>> covariate_matrix(cov, ["c", "a", "b"])["log_params"].round(3).tolist()
    [1.225, -1.225, 0.0]
    """
    return standardise(checked_covariates(covariates, models))


def standardise(rows: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """``rows`` on the scale of ``reference`` (default: themselves): minus its column
    means, over its population sds."""
    reference = rows if reference is None else reference
    return (rows - reference.mean()) / reference.std(ddof=0)


def standardise_new(
    covariates: pd.DataFrame | Mapping, stored: Mapping, models: list[str]
) -> pd.DataFrame:
    """Covariates of models unknown to a fit, on the fit's standardised scale.

    Parameters
    ----------
    covariates : DataFrame or dict
        One row per new model (index = model name), with every column of the fit.
    stored : dict
        The fit's raw covariates, ``{column: {model: value}}`` (its
        ``config["model_covariates"]``): their mean and population sd standardise.
    models : list of str
        The new models, in the order wanted.

    Examples
    --------
    >>> stored = {"x": {"a": 0.0, "b": 2.0}}
    >>> standardise_new({"x": {"c": 4.0}}, stored, ["c"])["x"].tolist()
    [3.0]
    """
    fitted = pd.DataFrame(dict(stored))
    table = as_table(covariates)
    missing_cols = [c for c in fitted.columns if c not in table.columns]
    if missing_cols:
        raise DataError(f"model_covariates: no column(s) {missing_cols} (the fit used them)")
    rows = _finite_rows(table, models, list(fitted.columns), who="new model(s)")
    return standardise(rows, fitted)
