"""Self-contained HTML report of a fit (figures embedded as PNG data URIs).

Everything taken from the data (problem ids, group and condition names) is
HTML-escaped: evaluation files are untrusted input.

Examples
--------
>>> from bayes_regimes.report import write_report
>>> write_report(model, "out/report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the report never needs a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bayes_regimes import plots  # noqa: E402

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.warn{background:#fdd;border:2px solid #b00;padding:0.6em 1em;font-weight:bold;color:#900}
img{max-width:100%;border:1px solid #eee;margin:0.3em 0}
figure{margin:0 0 1.5em} figcaption{font-size:0.85em;color:#555}
"""


def figure_to_data_uri(fig) -> str:
    """PNG data URI of a matplotlib figure (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _table(df: pd.DataFrame, floatfmt: str = "{:.3g}") -> str:
    return df.to_html(index=False, escape=True, float_format=floatfmt.format, border=0)


def _figure(fig_fn, caption: str) -> str:
    try:
        uri = figure_to_data_uri(fig_fn())
    except Exception as err:  # a broken figure must not lose the whole report
        return f'<p class="warn">Figure failed: {html.escape(str(err))}</p>'
    return (
        f'<figure><img src="{uri}" alt="{html.escape(caption)}"><figcaption>'
        f"{html.escape(caption)}</figcaption></figure>"
    )


def regime_summary(regimes: pd.DataFrame) -> pd.DataFrame:
    """Count of cells per (group, condition) and label."""
    table = (
        regimes.groupby(["group", "condition", "label"], sort=False).size().unstack(fill_value=0)
    )
    table.columns.name = None  # else the HTML table gets an empty "label" column
    return table.reset_index()


def gain_table(model, ms=(10, 100, 1000)) -> pd.DataFrame:
    """Mean expected gain of m more samples over failed cells, per group."""
    reg = model.regimes()
    failed = reg["k"].to_numpy() == 0
    rows = []
    for m in ms:
        g = model.expected_gain(int(m))
        sub = g[failed]
        for grp, s in sub.groupby("group", sort=False):
            rows.append(
                {
                    "group": grp,
                    "m": m,
                    "failed cells": len(s),
                    "mean gain": s["gain_mean"].mean(),
                    "expected newly solved": s["gain_mean"].sum(),
                }
            )
    return pd.DataFrame(rows)


def build_report(model, title: str = "bayes_regimes fit report") -> str:
    """The report as an HTML string."""
    import warnings

    from bayes_regimes.errors import DiagnosticsWarning

    rep = model.diagnostics()
    with warnings.catch_warnings():
        # The report states the diagnostics once, loudly, at the top.
        warnings.simplefilter("ignore", DiagnosticsWarning)
        reg = model.regimes()
        n_max = int(model.data.cells["n"].max())
        ks = sorted({1, n_max, 10 * n_max, 100 * n_max, 1000 * n_max})
        pak = model.pass_at_k(ks)
        gains = gain_table(model)
        ceiling = model.coverage_ceiling()
        failed = reg[reg["k"] == 0].sort_values("p_structural").head(50)
        figures = [
            _figure(lambda: plots.plot_p_posterior(model), "Posterior of p for failed problems"),
            _figure(lambda: plots.plot_regime_fractions(model), "Regime fractions per group"),
            _figure(
                lambda: plots.plot_pass_at_k(model),
                "pass@k of a fresh run, with its 89 % extrapolation band",
            ),
            _figure(lambda: plots.plot_ppc(model), "Posterior predictive check of k"),
            _figure(lambda: plots.plot_diagnostics(model, kind="rank"), "Rank plots"),
            _figure(lambda: plots.plot_diagnostics(model, kind="trace"), "Trace plots"),
        ]
    warn = (
        ""
        if rep.ok
        else f'<div class="warn">{html.escape(rep.message)}. Results below '
        "come from a fit that failed its diagnostics.</div>"
    )
    d = model.data
    cfg = html.escape(", ".join(f"{k}={v}" for k, v in model.config.items() if k != "priors"))
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        warn,
        f"<p>{d.n_cells} cells, {len(d.strata)} group(s), {int(d.cells['n'].sum())} rollouts; "
        f"{int((d.cells['k'] == 0).sum())} cells with no success. Model: "
        f"{html.escape(type(model).__name__)}({cfg}).</p>",
        "<h2>Diagnostics</h2>",
        rep.to_html(),
        "<h2>Regimes</h2>",
        _table(regime_summary(reg)),
        "<h2>Coverage ceiling</h2>",
        _table(ceiling),
        "<h2>pass@k</h2>",
        _table(pak),
        "<h2>Expected gain of more samples (failed cells)</h2>",
        _table(gains),
        "<h2>Figures</h2>",
        *figures,
        "<h2>Failed cells most likely recoverable (top 50)</h2>",
        _table(
            failed[
                [
                    "problem",
                    "group",
                    "condition",
                    "n",
                    "k",
                    "p_mean",
                    "p_high",
                    "p_structural",
                    "label",
                ]
            ]
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(model, path: str | Path, title: str = "bayes_regimes fit report") -> Path:
    """Write :func:`build_report` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(model, title), encoding="utf-8")
    return path


__all__ = [
    "build_report",
    "write_report",
    "figure_to_data_uri",
    "regime_summary",
    "gain_table",
    "np",
]
