"""The ``other`` part of ``benchmarks/router.py``: other multi-condition data.

The router's model (no features, no selection; every problem x model unit) on
LiveCodeBench (plain generation vs self-repair) and CRUXEval-O (T0.2 direct as
baseline vs T0.8 direct, T0.2 CoT, T0.8 CoT; the models with all four conditions).
Among units that failed at least once under the baseline: expected number
steerable, and failures the intervention rescues that resampling would not, beside
the raw count (baseline 0/n, intervention > 0).
"""

from __future__ import annotations

import warnings

import numpy as np
from router_fit import fit_cached

from bayes_regimes.data import RolloutData
from bayes_regimes.datasets import load_source
from bayes_regimes.errors import DiagnosticsWarning
from bayes_regimes.routing import _cell_posterior, _thin


def other_fit(name, counts, baseline, group, args) -> dict:
    """Fit ``counts`` (cached as ``name``) and count, per intervention and group, the
    failures under ``baseline`` that the intervention rescues and resampling would not."""
    data = RolloutData.from_counts(
        counts, problem="problem_id", group=group, condition="condition", features=[]
    )
    model, diag = fit_cached(name, data, args, baseline=baseline, attempts=1)
    lay, conds = model.layout, model.conditions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        routes = model.route(max_draws=500)
    dr = _thin(model.draws(), 500)
    units = np.arange(lay.n_units)
    b = conds.index(baseline)
    pi, a, bb = model._cell_hyper(dr, units, np.full(units.size, b))
    below = _cell_posterior(
        lay.K[:, b], lay.D[:, b], model.r[[b] * units.size], pi, a, bb, model.config["epsilon"]
    )[1].mean(axis=0)
    rows = []
    failed = lay.K[:, b] < lay.D[:, b]  # failed at least once under the baseline
    for c in model.interventions:
        j = conds.index(c)
        rescued = (below > 0.5) & (routes[f"rescue_{c}"].to_numpy() > 0.5)
        never = (lay.K[:, b] == 0) & (lay.K[:, j] > 0)
        for g in [*lay.groups, "all"]:
            m = failed & ((lay.group_label == g) if g != "all" else True)
            rows.append(
                {
                    "intervention": c,
                    "group": g,
                    "failures": int(m.sum()),
                    "p_steerable_sum": float(routes["p_steerable"][m].sum()),
                    "rescued_not_resampling": int((rescued & m).sum()),
                    "observed_0_baseline_k_positive": int((never & m).sum()),
                    "recommended": int((routes["recommended"] == c)[m].sum()),
                }
            )
    return {"fit": diag, "rows": rows}


def _first_problems(df, count: int | None):
    """The rows of the first ``count`` problems (all rows when None: smoke runs)."""
    if not count:
        return df
    return df[df["problem_id"].isin(df["problem_id"].unique()[:count])]


def part_other(args) -> dict:
    """LiveCodeBench and CRUXEval-O results (see the module notes)."""
    lcb = _first_problems(load_source("livecodebench"), args.other_problems)
    out = {"livecodebench": other_fit("lcb", lcb, "plain_generation", "model", args)}
    crux = load_source("cruxeval")
    full = crux.groupby("model")["condition"].nunique()
    models = sorted(full[full == 4].index)
    crux = crux[crux["model"].isin(models) & (crux["benchmark"] == "CRUXEval-output")]
    crux = _first_problems(crux, args.other_problems)
    out["cruxeval_output"] = other_fit("crux_o", crux, "T0.2_direct", "model", args)
    return out
