"""Markdown of ``benchmarks/heldout.py``'s results: one m (:func:`render`) and the
table over several m (:func:`summary_table`).

Examples
--------
>>> COLUMNS["auroc_pooled"]
'AUROC (pooled)'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from _common import markdown_table

from bayes_regimes.heldout import POOLED

COLUMNS = {
    "method": "method",
    "auroc_pooled": "AUROC (pooled)",
    "auroc_within_model": "AUROC (within model)",
    "brier": "Brier",
    "ece": "ECE",
    "frac_mae": "rescued-fraction MAE",
    "frac_coverage": "rescued-fraction 89% cover",
    "pass@100_mae": "pass@100 MAE",
    "pass@1000_mae": "pass@1000 MAE",
    "pass@10000_mae": "pass@10000 MAE",
    "coverage_89": "all 89% intervals cover",
    "fit_ok": "fit OK",
}


def render(results: dict, m: int) -> str:
    """The markdown of a saved result: headline table, then the rescued fraction per model."""
    meta = results["_meta"]
    methods = [k for k in results if not k.startswith("_")]
    rows = [{"method": name, **results[name]["summary"]} for name in methods]
    s = meta["settings"]
    cols = {k: v for k, v in COLUMNS.items() if not k.startswith("pass@")}
    tail = {k: cols.pop(k) for k in ("coverage_89", "fit_ok")}
    cols.update({f"pass@{kk}_mae": f"pass@{kk} MAE" for kk in s["ks"]})
    cols.update(tail)
    lines = [
        f"# Held-out prediction: m = {m} training samples per problem",
        "",
        f"Data: `{s['data']}` ({s['n_rows']} rows, {s['n_groups']} models); "
        f"{s['repeats']} split(s), seeds {s['seeds']}; MCMC {s['fit']}; "
        f"{s['n_draws']} draws behind the intervals. Metrics averaged over splits; "
        "MAE = mean over models of |predicted - held-out truth|.",
        "",
        markdown_table(rows, cols),
        "",
        "Rescued fraction of the training failures per model (held-out truth, then each "
        "method's prediction; first split):",
        "",
    ]
    per_model = meta["rescued_fraction_table"]
    lines.append(markdown_table(per_model, {k: k for k in per_model[0]}))
    if meta.get("loo"):
        lines += ["", "LOO (pattern-weighted PSIS-LOO on the training counts, first split):", ""]
        keys = list(dict.fromkeys(k for row in meta["loo"] for k in row))
        lines.append(markdown_table(meta["loo"], {k: k for k in keys}))
    return "\n".join(lines) + "\n"


SUMMARY_COLUMNS = {
    "m": "m",
    "method": "method",
    "auroc_pooled": "AUROC",
    "brier": "Brier",
    "ece": "ECE",
    "frac_mae": "rescued MAE",
    "frac_bias": "rescued bias",
    "pass@100_mae": "pass@100 MAE",
    "pass@1000_mae": "pass@1000 MAE",
    "pass@10000_mae": "pass@10000 MAE",
    "coverage_89": "89% cover",
    "elpd_loo": "elpd_loo",
    "fit_ok": "fits OK",
}


def summary_table(paths: Sequence[str | Path]) -> str:
    """One markdown table over several saved results (e.g. m = 3, 10, 30): every
    method's headline metrics, its mean signed error of the rescued fraction, its LOO
    (first split) and how many of its fits passed their diagnostics."""
    rows = []
    for path in paths:
        results = json.loads(Path(path).read_text())
        m = results["_meta"]["settings"]["m"]
        for name, entry in results.items():
            if name.startswith("_"):
                continue
            per_model = pd.DataFrame(entry["per_model"])
            per_model = per_model[per_model["group"] != POOLED]
            bias = (per_model["frac_pred"] - per_model["frac_true"]).mean()
            diags = entry.get("diagnostics") or []
            loo = entry.get("loo") or {}
            rows.append(
                {
                    "m": m,
                    "method": name,
                    **entry["summary"],
                    "frac_bias": float(bias) if pd.notna(bias) else None,
                    "elpd_loo": loo.get("elpd_loo"),
                    "fit_ok": f"{sum(d['ok'] for d in diags)}/{len(diags)}" if diags else None,
                }
            )
    return markdown_table(rows, SUMMARY_COLUMNS)
