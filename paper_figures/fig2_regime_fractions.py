"""Figure 2: regime fractions per model x task cell, SFT against GRPO, with credible intervals.

For each of the 8 cells of Islah et al. (2026), the fraction of its failures in
each outcome regime. Now: the paper's "Eq. 2" labels
(:func:`bayes_regimes.paper.outcome_regimes`), with 89 % credible intervals of
the cell's fractions under a uniform Dirichlet prior (the marginal of each
fraction is a Beta). SFT cells in blue, the GRPO cells in orange, grouped by task.

When the Bayesian interventions model (issue 4) is in place, its posterior regime
fractions per cell, with their credible intervals, replace or join these points:
fill in :func:`bayesian_fractions`, which must return the same columns as
:func:`eq2_fractions`.

Command::

    .venv/bin/python paper_figures/fig2_regime_fractions.py   # -> paper_figures/output/
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _paper_common as C  # noqa: E402

from bayes_regimes import paper  # noqa: E402

NAME = "fig2_regime_fractions"
DATA = (C.PROFILES,)
CI_PROB = 0.89
CAPTION = (
    "Outcome-regime fractions per model x task cell (Islah et al. 2026), SFT (blue) against "
    "GRPO (orange), with 89 % credible intervals (uniform Dirichlet prior on each cell's "
    "fractions). Labels: the paper's Eq. 2 rule; the Bayesian interventions model's posterior "
    "regimes will be added beside them. Real data from ../shared/data."
)
METHOD_COLORS = {"sft": "#1f77b4", "grpo": "#ff7f0e"}


def method_of(model: str) -> str:
    """Post-training method of a model tag (``sft0p6b`` -> ``sft``)."""
    return "grpo" if model.startswith("grpo") else "sft"


def eq2_fractions(df: pd.DataFrame, ci_prob: float = CI_PROB) -> pd.DataFrame:
    """Per cell and regime: count, fraction and a Dirichlet(1, 1, 1) posterior interval.

    Columns: cell, model, task, method, regime, count, total, fraction (the
    observed share), low, high.
    """
    regimes = paper.outcome_regimes(df)
    rows = []
    q = ((1 - ci_prob) / 2, (1 + ci_prob) / 2)
    for cell, idx in df.groupby("cell", sort=False).groups.items():
        labels = regimes.loc[idx]
        total = len(labels)
        model, task = df.loc[idx[0], ["model", "task"]]
        for regime in paper.REGIMES:
            count = int((labels == regime).sum())
            # Marginal of a Dirichlet(1 + counts): Beta(1 + c, K - 1 + total - c), K = 3.
            a, b = 1 + count, len(paper.REGIMES) - 1 + total - count
            low, high = stats.beta.ppf(q, a, b)
            rows.append(
                dict(
                    cell=cell,
                    model=model,
                    task=task,
                    method=method_of(model),
                    regime=regime,
                    count=count,
                    total=total,
                    fraction=count / total,
                    low=low,
                    high=high,
                )
            )
    return pd.DataFrame(rows)


def bayesian_fractions(df: pd.DataFrame) -> pd.DataFrame | None:
    """Posterior regime fractions per cell from the interventions model (issue 4).

    Returns None until that model exists; then the columns of :func:`eq2_fractions`.
    """
    return None


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    df = paper.read_failure_profiles()
    table = eq2_fractions(df)
    order = table[["task", "cell", "method"]].drop_duplicates().sort_values(["task", "method"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6), layout="constrained", sharey=True)
    for ax, regime in zip(axes, paper.REGIMES, strict=True):
        sub = table[table["regime"] == regime].set_index("cell").loc[order["cell"]]
        y = np.arange(len(sub))
        for method, color in METHOD_COLORS.items():
            sel = (sub["method"] == method).to_numpy()
            frac, low, high = (sub[c].to_numpy()[sel] for c in ("fraction", "low", "high"))
            ax.errorbar(
                sub["fraction"][sel],
                y[sel],
                xerr=[
                    sub["fraction"][sel] - sub["low"][sel],
                    sub["high"][sel] - sub["fraction"][sel],
                ],
                fmt="o",
                color=color,
                ms=5,
                capsize=2,
                label=method.upper(),
            )
        ax.set_yticks(y, [f"{c} (n={t})" for c, t in zip(sub.index, sub["total"], strict=True)])
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of the cell's failures")
        ax.set_title(regime)
        ax.grid(axis="x", color="#eee")
    axes[0].legend(fontsize="small")
    fig.suptitle("Outcome regimes per model x task cell (paper's Eq. 2 labels, 89 % intervals)")
    return C.save(fig, out, NAME, C.data_note(*DATA))


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
