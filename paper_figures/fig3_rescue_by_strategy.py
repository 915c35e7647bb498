"""Figure 3: rescue rate by strategy, on all failures and on Steerable-Hard.

For each model x task cell of Islah et al. (2026), the mean best-of-3 rescue rate
of: the operator chosen by the paper's training-free rule ("routed, paper rule":
:func:`bayes_regimes.paper.route`, features z-scored within the population), the
best fixed intervention (chosen in-sample, so optimistic), and plain resampling.
Top: all failures of the cell. Bottom: its Steerable-Hard failures, the paper's
"Eq. 2" steerable population (resampling rescues at most half and some
intervention beats it by 5 points), on which the paper reports routing; those
numbers equal :func:`bayes_regimes.paper.paper_rule_summary`.

The Bayesian router (issue 4) gets its own bar once it exists: fill in
:func:`bayesian_routed`, which must return one rescue rate per failure.

Command::

    .venv/bin/python paper_figures/fig3_rescue_by_strategy.py   # -> paper_figures/output/
"""

from __future__ import annotations

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
    "The Bayesian router will join as a fourth bar. Real data from ../shared/data."
)
STRATEGY_COLORS = {
    "routed (paper rule)": "#1f77b4",
    "best fixed": "#2ca02c",
    "resample": "#7f7f7f",
}
POPULATIONS = ("all failures", "Steerable-Hard")


def bayesian_routed(population: pd.DataFrame) -> np.ndarray | None:
    """Rescue rate of the Bayesian router's choice per failure (issue 4); None until then."""
    return None


def strategy_rates(population: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-failure rescue rate of each strategy on one population (one cell's failures)."""
    ops = paper.route(population).to_numpy()
    rates = {c: population[c].to_numpy(dtype=float) for c in paper.RATES}
    fixed = {op: rates[op].mean() for op in paper.INTERVENTIONS}
    best = max(paper.INTERVENTIONS, key=lambda op: fixed[op])  # first wins ties, as upstream
    out = {
        "routed (paper rule)": np.array([rates[op][i] for i, op in enumerate(ops)]),
        "best fixed": rates[best],
        "resample": rates["retry"],
    }
    bayes = bayesian_routed(population)
    if bayes is not None:
        out["routed (Bayesian)"] = np.asarray(bayes, dtype=float)
    return out


def rescue_table(df: pd.DataFrame) -> pd.DataFrame:
    """Cell, population, strategy, n, rescue_rate (mean) and se (standard error)."""
    steerable = paper.outcome_regimes(df) == "steerable"
    rows = []
    for cell, idx in df.groupby("cell", sort=False).groups.items():
        for population in POPULATIONS:
            pop = df.loc[idx]
            if population == "Steerable-Hard":
                pop = pop[steerable.loc[idx].to_numpy()]
            for strategy, values in strategy_rates(pop).items():
                n = len(values)
                se = values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
                rows.append((cell, population, strategy, n, values.mean(), se))
    return pd.DataFrame(rows, columns=["cell", "population", "strategy", "n", "rescue_rate", "se"])


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    table = rescue_table(paper.read_failure_profiles())
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
    return C.save(fig, out, NAME, C.data_note(*DATA))


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
