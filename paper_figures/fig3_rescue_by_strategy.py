"""Figure 3: rescue rate by strategy, on all failures and on Steerable-Hard.

For each model x task cell of Islah et al. (2026), the mean best-of-3 rescue rate
of: the operator chosen by the paper's training-free rule ("routed, paper rule":
:func:`bayes_regimes.paper.route`, features z-scored within the population), the
best fixed intervention (chosen in-sample, so optimistic), and plain resampling.
Top: all failures of the cell. Bottom: its Steerable-Hard failures, the paper's
"Eq. 2" steerable population (resampling rescues at most half and some
intervention beats it by 5 points), on which the paper reports routing; those
numbers equal :func:`bayes_regimes.paper.paper_rule_summary`.

The Bayesian router (:class:`~bayes_regimes.models.interventions.InterventionModel`)
is the fourth bar: for each failure, the intervention with the largest posterior
expected rescue (:func:`bayesian_choice`), scored by that failure's observed rate
of it, exactly like the paper's rule. Its choices come, in order of preference,
from

1. ``benchmarks/results/router.json`` (``benchmarks/router.py``, part ``cv``):
   five-fold cross-validation over problems, each failure routed prospectively
   from its three features only (label "routed (Bayesian, CV)"); or
2. the in-sample fit of :func:`_paper_common.intervention_fit` on all failures,
   routed with :func:`bayes_regimes.routing.route_fitted`, which also sees each
   failure's own outcomes (label "routed (Bayesian, in-sample)": optimistic, like
   the in-sample best fixed intervention).

Command::

    .venv/bin/python paper_figures/fig3_rescue_by_strategy.py   # -> paper_figures/output/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _paper_common as C  # noqa: E402

from bayes_regimes import paper  # noqa: E402

NAME = "fig3_rescue_by_strategy"
DATA = (C.PROFILES,)
CAPTION = (
    "Rescue rate (best of 3 attempts) by strategy per model x task cell (Islah et al. 2026): "
    "the paper's routing rule, the best fixed intervention (chosen in-sample) and plain "
    "resampling, on all failures (top) and on the Steerable-Hard failures (bottom, the "
    "population of the paper's routing result); bars: mean, whiskers: one standard error. "
    "Fourth bar: the Bayesian interventions model's choice (largest posterior expected rescue), "
    "cross-validated from the features when benchmarks/results/router.json exists, else "
    "in-sample (said in the legend). Real data from ../shared/data."
)
BAYES_CV = "routed (Bayesian, CV)"
BAYES_IN_SAMPLE = "routed (Bayesian, in-sample)"
STRATEGY_COLORS = {
    "routed (paper rule)": "#1f77b4",
    "best fixed": "#2ca02c",
    "resample": "#7f7f7f",
    BAYES_CV: "#d62728",
    BAYES_IN_SAMPLE: "#d62728",
}
POPULATIONS = ("all failures", "Steerable-Hard")


def router_choice(df: pd.DataFrame, path: Path = C.ROUTER_JSON) -> pd.Series | None:
    """Cross-validated Bayesian choices from ``router.json`` (None when absent).

    ``benchmarks/router.py`` stores, for every failure of the table (in file order),
    the posterior expected rescue of retry and the four interventions predicted from
    its features by a fit on the other folds; the choice is the intervention with
    the largest one.
    """
    if not path.exists():
        return None
    pred = _cv_section(path).get("predictions", {}).get("feat")
    if pred is None:
        return None
    pred = np.asarray(pred, dtype=float)
    if pred.shape != (len(df), len(paper.RATES)) or np.isnan(pred).any():
        print(f"ignoring {path}: its predictions do not cover the {len(df)} failures")
        return None
    return bayesian_choice(pd.DataFrame(pred[:, 1:], columns=paper.INTERVENTIONS, index=df.index))


def _cv_section(path: Path = C.ROUTER_JSON) -> dict:
    """The out-of-sample part of ``router.json``: the k-fold refits (``cv``) when run,
    else leave-one-problem-out within cells by PSIS on the full fit (``loo``)."""
    results = json.loads(path.read_text())
    return results.get("cv") or results.get("loo") or {}


def bayesian_choice(rescue: pd.DataFrame) -> pd.Series:
    """The intervention with the largest expected rescue per failure.

    ``rescue`` has one column per intervention, named as the intervention or
    ``rescue_<intervention>`` (as :func:`~bayes_regimes.routing.route_fitted` names them).
    """
    cols = [c if c in rescue.columns else f"rescue_{c}" for c in paper.INTERVENTIONS]
    best = rescue[cols].to_numpy(dtype=float).argmax(axis=1)
    return pd.Series(np.array(paper.INTERVENTIONS, dtype=object)[best], index=rescue.index)


def bayesian_routed(population: pd.DataFrame, choice: pd.Series | None) -> np.ndarray | None:
    """Observed rescue rate of the Bayesian router's choice for each failure of
    ``population`` (None without choices)."""
    if choice is None:
        return None
    ops = choice.loc[population.index].to_numpy()
    rates = population[list(paper.INTERVENTIONS)]
    return np.array([rates[op].iloc[i] for i, op in enumerate(ops)], dtype=float)


def strategy_rates(
    population: pd.DataFrame, choice: pd.Series | None = None, label: str = BAYES_CV
) -> dict[str, np.ndarray]:
    """Per-failure rescue rate of each strategy on one population (one cell's failures).

    ``choice`` (indexed like the failure table) adds the Bayesian router as ``label``.
    """
    ops = paper.route(population).to_numpy()
    rates = {c: population[c].to_numpy(dtype=float) for c in paper.RATES}
    fixed = {op: rates[op].mean() for op in paper.INTERVENTIONS}
    best = max(paper.INTERVENTIONS, key=lambda op: fixed[op])  # first wins ties, as upstream
    out = {
        "routed (paper rule)": np.array([rates[op][i] for i, op in enumerate(ops)]),
        "best fixed": rates[best],
        "resample": rates["retry"],
    }
    bayes = bayesian_routed(population, choice)
    if bayes is not None:
        out[label] = bayes
    return out


def rescue_table(
    df: pd.DataFrame, choice: pd.Series | None = None, label: str = BAYES_CV
) -> pd.DataFrame:
    """Cell, population, strategy, n, rescue_rate (mean) and se (standard error).

    ``choice``: the Bayesian router's intervention per failure (see
    :func:`router_choice`, :func:`bayesian_choice`), shown as strategy ``label``.
    """
    steerable = paper.outcome_regimes(df) == "steerable"
    rows = []
    for cell, idx in df.groupby("cell", sort=False).groups.items():
        for population in POPULATIONS:
            pop = df.loc[idx]
            if population == "Steerable-Hard":
                pop = pop[steerable.loc[idx].to_numpy()]
            for strategy, values in strategy_rates(pop, choice, label).items():
                n = len(values)
                se = values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
                rows.append((cell, population, strategy, n, values.mean(), se))
    return pd.DataFrame(rows, columns=["cell", "population", "strategy", "n", "rescue_rate", "se"])


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    df = paper.read_failure_profiles()
    choice, label, models = router_choice(df), BAYES_CV, {}
    if choice is None:  # no cross-validated router results yet: the in-sample fit
        s = C.settings(quick)
        models["interventions model"] = C.intervention_fit(s, out)
        choice, label = bayesian_choice(C.intervention_routes(s, df, out)), BAYES_IN_SAMPLE
    table = rescue_table(df, choice, label)
    cells = list(dict.fromkeys(table["cell"]))
    strategies = list(dict.fromkeys(table["strategy"]))
    width = 0.8 / len(strategies)
    fig, axes = plt.subplots(2, 1, figsize=(13, 7.4), layout="constrained")
    for ax, population in zip(axes, POPULATIONS, strict=True):
        sub = table[table["population"] == population]
        for j, strategy in enumerate(strategies):
            s = sub[sub["strategy"] == strategy].set_index("cell").loc[cells]
            x = np.arange(len(cells)) + (j - (len(strategies) - 1) / 2) * width
            color = STRATEGY_COLORS.get(strategy, "#d62728")
            ax.bar(x, s["rescue_rate"], width, yerr=s["se"], color=color, label=strategy, capsize=2)
        n = sub.drop_duplicates("cell").set_index("cell").loc[cells, "n"]
        ax.set_xticks(np.arange(len(cells)), [f"{c}\n(n={k})" for c, k in n.items()])
        ax.set_ylabel("rescue rate")
        ax.set_ylim(0, 1)
        ax.set_title(population)
        ax.grid(axis="y", color="#eee")
    axes[0].legend(fontsize="small", ncols=len(strategies))
    note = C.data_note(*DATA)
    if label == BAYES_CV:
        note += f" Bayesian router: cross-validated choices from {C.ROUTER_JSON.name}."
        fits = _cv_section().get("fits", [])
        bad = [f"{f['fit']}: {'; '.join(f['problems'])}" for f in fits if not f["ok"]]
        if bad:  # a failed fit is never used silently
            text = "router.json cross-validation fits that FAILED diagnostics: " + " | ".join(bad)
            fig.text(0.5, 1.02, text[:300], color="#b00", fontsize=7, ha="center", va="bottom")
    else:
        note += " Bayesian router: in-sample fit (no router.json yet)."
        C.flag_failed_fit(fig, models)
    return C.save(fig, out, NAME, note)


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
