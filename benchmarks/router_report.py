"""Markdown rendering of ``benchmarks/router.py``'s results (``router.md``).

:func:`render` turns the JSON results (schema in ``router.py``'s docstring) into
the report: headline table, failure topography, one section per protocol, the
compute-matched view and the other condition data; parts absent are listed.

Examples
--------
>>> _interval({"diff": 0.012, "low": -0.003, "high": 0.031})
'+1.2 [-0.3, +3.1]'
>>> render({}).splitlines()[0]
"# Bayesian router vs the paper's rule (benchmarks/router.py)"
"""

from __future__ import annotations

import json

import numpy as np
from _common import markdown_table

#: Parts of router.py in run order (for the "Not run" list).
PARTS = ("full", "loo", "insample", "compute", "cv", "loco", "bounds", "signal", "other")


def _pct(x):
    return None if x is None or not np.isfinite(x) else round(100 * x, 1)


def _interval(d: dict) -> str:
    """A paired difference and its interval, in points: ``+1.2 [-0.3, +3.1]``."""
    return f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def _router_md(res: dict) -> list[str]:
    lines = []
    for pop, label in (("all", "all failures"), ("steerable_hard", "Steerable-Hard")):
        part = res[pop]
        lines += [f"Rescue rate (%), {label}:", ""]
        cols = {
            "cell": "cell",
            "n": "n",
            "bayes": "Bayes (features)",
            "bayes_count": "Bayes (+ failure count)",
            "paper_rule": "paper rule",
            "best_fixed": "best fixed (train)",
            "resample": "resample",
            "oracle": "oracle",
        }
        rows = [
            {k: (_pct(v) if k not in ("cell", "n") else v) for k, v in r.items()}
            for r in part["rates"]
        ]
        lines += [markdown_table(rows, cols), ""]
        d = [r for r in part["diffs"] if r["vs"] in ("paper_rule", "best_fixed", "resample")]
        lines += [f"Paired differences (points, 89 % bootstrap interval), {label}:", ""]
        rows = [
            {
                "router": r["router"],
                "vs": r["vs"],
                "cell": r["cell"],
                "n": r["n"],
                "diff": _interval(r),
                "above": "yes" if r["above_zero"] else "no",
            }
            for r in d
        ]
        lines += [
            markdown_table(
                rows,
                {
                    "router": "router",
                    "vs": "vs",
                    "cell": "cell",
                    "n": "n",
                    "diff": "difference",
                    "above": "interval > 0",
                },
            ),
            "",
        ]
    fits = res["fits"]
    if "pareto_k" in res:
        k = res["pareto_k"]
        lines += [
            f"PSIS: {k['draws']} draws; Pareto k max {k['max']:.2f}, share > 0.7 "
            f"{100 * k['share_above_0.7']:.1f} %, share > 0.5 {100 * k['share_above_0.5']:.1f} %.",
            "",
        ]
    lines += [
        "Fits: "
        + "; ".join(
            f"{f['fit']} {'ok' if f['ok'] else 'FAILED (' + '; '.join(f['problems']) + ')'}"
            f" (R-hat {f['max_r_hat']:.3f}, ESS {f['min_ess_bulk']:.0f}, div {f['divergences']})"
            + _retry_note(f)
            for f in fits
        ),
        "",
    ]
    return lines


def _headline(results: dict) -> list[str]:
    """README-ready table: pooled rescue rates and the router's paired differences."""
    rows = []
    protocols = (("loo", "LOO within cells"), ("cv", "5-fold CV"), ("loco", "leave cell out"))
    for key, label in protocols:
        if key not in results:
            continue
        if results[key].get("partial"):
            label = f"{label} ({len(results[key]['held_out_cells'])} cells)"
        for pop, pop_label in (("all", "all"), ("steerable_hard", "Steerable-Hard")):
            part = results[key][pop]
            rate = next(r for r in part["rates"] if r["cell"] == "pooled")
            diff = {
                (d["router"], d["vs"]): d
                for d in part["diffs"]
                if d["cell"] == "pooled" and d["router"] == "bayes"
            }

            rows.append(
                {
                    "protocol": label,
                    "population": pop_label,
                    "n": rate["n"],
                    "bayes": _pct(rate["bayes"]),
                    "rule": _pct(rate["paper_rule"]),
                    "fixed": _pct(rate["best_fixed"]),
                    "resample": _pct(rate["resample"]),
                    "d_fixed": _interval(diff[("bayes", "best_fixed")]),
                    "d_rule": _interval(diff[("bayes", "paper_rule")]),
                }
            )
            ins = results.get("insample", {}).get(pop) if key == "loo" else None
            if ins is not None:
                d = next(x for x in ins["diffs"] if x["cell"] == "pooled")
                rows[-1]["d_insample"] = _interval(d)
    if not rows:
        return []
    cols = {
        "protocol": "protocol",
        "population": "failures",
        "n": "n",
        "bayes": "Bayes router %",
        "rule": "paper rule %",
        "fixed": "best fixed (train) %",
        "resample": "resample %",
        "d_fixed": "router - best fixed (89 %)",
        "d_rule": "router - rule (89 %)",
    }
    if any("d_insample" in r for r in rows):
        cols["d_insample"] = "router - in-sample best fixed (89 %)"
        for r in rows:
            r.setdefault("d_insample", "-")
    return [
        "## Headline (pooled over the 8 cells)",
        "",
        "Commands: `.venv/bin/python benchmarks/router.py --parts full loo insample cv "
        "compute loco --loo-draws 100`, then `--parts other` (see the script docstring). "
        "Rescue rate = observed rate of the chosen intervention; differences in points "
        "with 89 % bootstrap intervals over problems within cells.",
        "",
        markdown_table(rows, cols),
        "",
    ]


def _retry_note(fit: dict) -> str:
    """What a refitted fit's first attempt looked like (router_fit.fit_cached)."""
    first = fit.get("retried_after")
    if not first:
        return ""
    return (
        f" [refitted with seed {first['seed'] + 1000}: the first attempt (seed {first['seed']}) "
        f"had stuck chain(s) {first['stuck_chains']}, R-hat {first['max_r_hat']:.2f}, "
        f"div {first['divergences']}]"
    )


def _bounds_md(bounds: dict) -> list[str]:
    """Part ``bounds``: feature-only reference routers against the best fixed choice."""
    rows = bounds["rows"]
    best = max(rows, key=lambda r: r["diff"])
    above = [r for r in rows if r["above_zero"]]
    verdict = (
        "No reference router beats the best fixed intervention with its 89 % interval "
        f"above zero, in any protocol or population; the largest difference is "
        f"{_interval(best)} points ({best['router']}, {best['protocol']}, "
        f"{best['population']})."
        if not above
        else f"{len(above)} of {len(rows)} reference rows beat the best fixed intervention "
        "with the interval above zero: "
        + ", ".join(f"{r['router']} ({r['protocol']}, {r['population']})" for r in above)
        + "."
    )
    table = [
        {
            "protocol": r["protocol"],
            "population": r["population"],
            "router": r["router"],
            "rate": _pct(r["rate"]),
            "fixed": _pct(r["best_fixed"]),
            "diff": _interval(r),
            "above": "yes" if r["above_zero"] else "no",
        }
        for r in rows
    ]
    cols = {
        "protocol": "protocol",
        "population": "failures",
        "router": "reference router",
        "rate": "rescue %",
        "fixed": "best fixed %",
        "diff": "router - best fixed (89 %)",
        "above": "interval > 0",
    }
    return [
        "## What the three features allow (reference routers, no model)",
        "",
        "Feature-only routers fitted without the Bayesian model (k nearest neighbours "
        "within the cell, ridge regressions per cell or pooled with cell intercepts; "
        "benchmarks/router_bounds.py), scored like the Bayesian router against the best "
        "fixed intervention chosen on the same training rows.",
        "",
        verdict,
        "",
        markdown_table(table, cols),
        "",
    ]


def _signal_md(sig: dict) -> list[str]:
    """Part ``signal``: permutation tests of the features' routing information."""
    what = {
        "linear": ("share of the interaction explained (linear, within cells)", 1),
        "linear_gain": ("in-sample linear routing gain over in-sample best fixed (points)", 100),
        "knn_gain": (f"LOO knn_{sig['knn_k']} gain over LOO best fixed (points)", 100),
    }
    rows, cells = [], []
    for pop, res in sig["populations"].items():
        for key, (label, scale) in what.items():
            r = res[key]
            rows.append(
                {
                    "population": pop,
                    "statistic": label,
                    "observed": f"{scale * r['observed']:+.3f}",
                    "null": f"{scale * r['null_median']:+.3f} / {scale * r['null_q95']:+.3f}",
                    "p": f"{r['p_value']:.3f}",
                }
            )
        for cell, r in res["cells_linear"].items():
            cells.append(
                {
                    "population": pop,
                    "cell": cell,
                    "n": r["n"],
                    "observed": f"{r['observed']:.3f}",
                    "null": f"{r['null_median']:.3f} / {r['null_q95']:.3f}",
                    "p": f"{r['p_value']:.3f}",
                }
            )
    cols = {
        "population": "failures",
        "statistic": "statistic",
        "observed": "observed",
        "null": "permutation null median / 95 %",
        "p": "p-value",
    }
    return [
        "## Do the features say which intervention works? (permutation tests, no model)",
        "",
        "The failure x intervention interaction of the observed rates (centred per failure, "
        "then per cell and intervention) is what a router can use beyond the cell's best "
        "fixed intervention. Features permuted among the failures of each cell "
        f"({sig['n_perm']} permutations) give the null; benchmarks/router_signal.py.",
        "",
        markdown_table(rows, cols),
        "",
        "Per cell, share of the interaction explained by the features (linear):",
        "",
        markdown_table(
            cells, {"cell": "cell", "n": "n", **{k: cols[k] for k in cols if k != "statistic"}}
        ),
        "",
    ]


def render(results: dict) -> str:
    lines = ["# Bayesian router vs the paper's rule (benchmarks/router.py)", ""]
    s = results.get("settings", {})
    lines += [f"Settings: {json.dumps(s)}", ""]
    lines += _headline(results)
    if "full" in results:
        full = results["full"]
        f = full["fit"]
        lines += [
            "## Failure topography (full fit)",
            "",
            f"Fit: {'ok' if f['ok'] else 'FAILED'}; max R-hat {f['max_r_hat']:.3f}, "
            f"min ESS {f['min_ess_bulk']:.0f}, divergences {f['divergences']}, "
            f"{f['wall_s'] and round(f['wall_s'])} s{_retry_note(f)}.",
            "",
        ]
        obs = {(o["by"], o["regime"]): o["outcome_fraction"] for o in full["outcome_fractions"]}
        rows, seen = [], set()
        for r in full["fractions_cell"] + full["fractions_method"]:
            if (r["by"], r["regime"]) in seen:  # the "all" rows appear in both lists
                continue
            seen.add((r["by"], r["regime"]))
            rows.append(
                {
                    "by": r["by"],
                    "regime": r["regime"],
                    "n": r["n"],
                    "post": f"{100 * r['mean']:.1f} [{100 * r['low']:.1f}, {100 * r['high']:.1f}]",
                    "eq2": _pct(obs.get((r["by"], r["regime"]), np.nan)),
                }
            )
        lines += [
            markdown_table(
                rows,
                {
                    "by": "cell / method",
                    "regime": "regime",
                    "n": "n",
                    "post": "posterior % [89 %]",
                    "eq2": "Eq. 2 outcome %",
                },
            ),
            "",
        ]
        acc = full["classification"]
        rows = [
            {
                "task": k,
                "acc": _pct(v["accuracy"]),
                "sd": _pct(v["sd_over_folds"]),
                "maj": _pct(v["majority"]),
                "gain": _pct(v["accuracy"] - v["majority"]),
            }
            for k, v in acc.items()
        ]
        lines += [
            "Cross-validated accuracy from the three features (10 folds, multinomial "
            "logistic regression; paper: 84.3 +/- 4.3 %, +20 points over majority):",
            "",
            markdown_table(
                rows,
                {
                    "task": "target",
                    "acc": "accuracy %",
                    "sd": "sd over folds",
                    "maj": "majority %",
                    "gain": "gain (points)",
                },
            ),
            "",
        ]
    for key, title in (
        ("loo", "Leave one problem out within cells (PSIS from the full fit)"),
        ("cv", "Cross-validation over problems (5 folds within cells)"),
        ("loco", "Leave one cell out"),
    ):
        if key in results:
            lines += ["## " + title, ""]
            if results[key].get("partial"):
                held = ", ".join(results[key]["held_out_cells"])
                lines += [
                    f"**Partial run**: only these cells were held out and scored "
                    f"(each fit trained on all seven others): {held}.",
                    "",
                ]
            lines += _router_md(results[key])
    if "insample" in results:
        lines += [
            "## Router against the in-sample best fixed intervention",
            "",
            "The best fixed intervention of each cell chosen on all its rows, scored rows "
            "included: an upper bound for any fixed choice (router: the loo predictions).",
            "",
        ]
        for pop, label in (("all", "all failures"), ("steerable_hard", "Steerable-Hard")):
            rows = [
                {
                    "cell": d["cell"],
                    "n": d["n"],
                    "diff": _interval(d),
                    "above": "yes" if d["above_zero"] else "no",
                }
                for d in results["insample"][pop]["diffs"]
            ]
            lines += [
                f"Router - in-sample best fixed (points, 89 %), {label}:",
                "",
                markdown_table(
                    rows, {"cell": "cell", "n": "n", "diff": "difference", "above": "interval > 0"}
                ),
                "",
            ]
    if "bounds" in results:
        lines += _bounds_md(results["bounds"])
    if "signal" in results:
        lines += _signal_md(results["signal"])
    if "compute" in results:
        c = results["compute"]
        rows = [
            {"B": k, **{kk: (round(v, 3) if isinstance(v, float) else v) for kk, v in c[k].items()}}
            for k in ("B3", "B10")
        ]
        lines += [
            "## Compute-matched view",
            "",
            "Plain retries m with the expected rescue of B attempts of the routed "
            "intervention (features-only LOO or CV routing, full-fit posterior).",
            "",
            markdown_table(rows, {k: k for k in rows[0]}),
            "",
        ]
    if "other" in results:
        lines += ["## Other condition data", ""]
        for name, res in results["other"].items():
            f = res["fit"]
            lines += [
                f"{name}: fit {'ok' if f['ok'] else 'FAILED: ' + '; '.join(f['problems'])}",
                "",
            ]
            rows = [r for r in res["rows"]]
            lines += [markdown_table(rows, {k: k for k in rows[0]}), ""]
    missing = [k for k in PARTS if k not in results]
    if missing:
        lines += ["## Not run", "", "Parts absent from this result: " + ", ".join(missing), ""]
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(lines)
