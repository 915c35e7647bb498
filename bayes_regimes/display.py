"""How models look in Jupyter: the rich HTML repr and plot methods.

Two small pieces shared by every model class:

* :func:`model_html` builds the HTML that ``BaseModel._repr_html_`` shows: the data
  size, the fit status, the diagnostics table (failing checks highlighted, from
  :meth:`DiagnosticsReport.to_html <bayes_regimes.diagnostics.DiagnosticsReport.to_html>`)
  and, for models with ``regimes()``, a small regime summary.
* :class:`PlotMethod` turns a function ``plots.plot_x(model, *, ...)`` of
  :mod:`bayes_regimes.plots` into a method ``model.plot_x(*, ...)`` with keyword-only
  options that returns the same matplotlib Figure. Matplotlib is imported only
  when a plot method is called.

Everything taken from the data (group names, labels) is HTML-escaped.

Examples
--------
>>> from bayes_regimes import RegimeModel, RolloutData, simulate_benchmark
>>> model = RegimeModel(RolloutData.from_counts(simulate_benchmark(n_problems=50).counts))
>>> "not fitted" in model._repr_html_()
True
>>> RegimeModel.plot_pass_at_k.__name__  # the plots function, with its docstring
'plot_pass_at_k'
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd

from bayes_regimes.errors import DiagnosticsWarning

#: Most groups shown in the regime summary of the HTML repr.
MAX_GROUPS_SHOWN = 12
_STYLE = "font-family:system-ui,sans-serif;font-size:0.9em"
_FAIL = "background:#fdd;border:2px solid #b00;color:#900;padding:4px 8px;font-weight:bold"
_OK = "background:#efe;border:1px solid #070;color:#060;padding:4px 8px"


class PlotMethod:
    """Expose ``bayes_regimes.plots.<name>(model, *, ...)`` as ``model.<name>(*, ...)``.

    A descriptor: on an instance it returns a function taking keyword arguments
    only, which calls the plots function with the instance as first argument
    and returns its matplotlib Figure. On the class it returns the plots function
    itself, so ``help(RegimeModel.plot_ppc)`` shows its documentation.

    Parameters
    ----------
    name : str, optional
        Name of the function in :mod:`bayes_regimes.plots`; by default the
        attribute name the descriptor is assigned to.

    Examples
    --------
    >>> class Demo:
    ...     plot_ppc = PlotMethod()
    >>> Demo.plot_ppc.__module__
    'bayes_regimes.plots'
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def __set_name__(self, owner: type, attr: str) -> None:
        if self.name is None:
            self.name = attr

    def function(self) -> Callable[..., Any]:
        """The plots function this method delegates to."""
        from bayes_regimes import plots

        return getattr(plots, str(self.name))

    def __get__(self, obj: Any, objtype: type | None = None) -> Callable[..., Any]:
        fn = self.function()
        if obj is None:
            return fn

        @functools.wraps(fn)
        def method(**options: Any):
            return fn(obj, **options)

        sig = inspect.signature(fn)
        method.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
        return method


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, border=0, float_format="{:.3g}".format)


def _fit_info(model) -> str:
    info = json.loads(model.idata.attrs.get("fit", "{}"))
    post = model.idata["posterior"]
    chains, draws = post.sizes.get("chain", 0), post.sizes.get("draw", 0)
    parts = [f"{chains} chain(s) x {draws} draws"]
    if info.get("sampler"):
        parts.append(f"sampler {info['sampler']}")
    if info.get("random_seed") is not None:
        parts.append(f"seed {info['random_seed']}")
    return ", ".join(parts)


def regime_counts(regimes: pd.DataFrame, max_groups: int = MAX_GROUPS_SHOWN) -> pd.DataFrame:
    """Cells per regime label and group (first ``max_groups`` groups), for display.

    Examples
    --------
    >>> reg = pd.DataFrame({"group": ["a", "a", "b"], "label": ["solved", "uncertain", "solved"]})
    >>> regime_counts(reg).to_dict("list")
    {'group': ['a', 'b'], 'solved': [1, 1], 'uncertain': [1, 0], 'cells': [2, 1]}
    """
    table = regimes.groupby("group", sort=False)["label"].value_counts().unstack(fill_value=0)
    order = [c for c in ("solved", "recoverable", "uncertain", "structural") if c in table]
    table = table[order + [c for c in table.columns if c not in order]]
    table["cells"] = table.sum(axis=1)
    table.columns.name = None
    return table.head(max_groups).reset_index()


def model_html(model) -> str:
    """The rich HTML repr of a model (see the module docstring).

    Never raises: a query that fails is reported inside the HTML.
    """
    d = model.data
    cells = d.cells
    cfg = ", ".join(f"{k}={v!r}" for k, v in model.config.items() if k != "priors")
    head = f"<b>{html.escape(type(model).__name__)}</b>({html.escape(cfg)})"
    size = (
        f"{d.n_cells:,} cells, {len(d.strata)} group(s), {int(cells['n'].sum()):,} rollouts, "
        f"{int((cells['k'] == 0).sum()):,} cells with no success"
    )
    parts = [f'<div style="{_STYLE}">', f"<p>{head}<br>{html.escape(size)}</p>"]
    if not model.is_fitted:
        parts.append("<p><i>not fitted</i>: call <code>.fit()</code></p></div>")
        return "".join(parts)
    report = model.diagnostics()
    status = "fit OK" if report.ok else "FIT FAILED DIAGNOSTICS: results are unreliable"
    parts.append(
        f'<p><span style="{_OK if report.ok else _FAIL}">{html.escape(status)}</span> '
        f"({html.escape(_fit_info(model))})</p>"
    )
    parts.append(f"<details {'' if report.ok else 'open'}><summary>Diagnostics</summary>")
    parts.append(report.to_html() + "</details>")
    if hasattr(model, "regimes"):
        try:
            with warnings.catch_warnings():
                # The status above already says it, once.
                warnings.simplefilter("ignore", DiagnosticsWarning)
                counts = regime_counts(model.regimes())
            more = len(d.strata) - len(counts)
            note = f" (first {len(counts)} of {len(d.strata)} groups)" if more > 0 else ""
            parts.append(f"<p>Regimes{html.escape(note)}:</p>{_table_html(counts)}")
        except Exception as err:  # a display must never raise
            parts.append(f"<p>Regimes unavailable: {html.escape(str(err))}</p>")
    parts.append("</div>")
    return "".join(parts)


__all__ = ["MAX_GROUPS_SHOWN", "PlotMethod", "model_html", "regime_counts"]
