"""Figure 2: regime fractions per model x task cell, SFT against GRPO, with credible intervals.

For each of the 8 cells of Islah et al. (2026), the fraction of its failures in
each outcome regime, two ways:

* hollow circles: the paper's "Eq. 2" labels
  (:func:`bayes_regimes.paper.outcome_regimes`) of the observed rescue rates, with
  89 % credible intervals of the cell's fractions under a uniform Dirichlet prior
  (the marginal of each fraction is a Beta);
* filled squares: the posterior regime fractions of the Bayesian interventions
  model fitted on all 1,423 failures (:func:`bayesian_fractions`, from
  :func:`bayes_regimes.routing.regime_fractions`), 89 % equal-tailed intervals over
  joint posterior draws of every failure's latent regime.

SFT cells in blue, the GRPO cells in orange, grouped by task.

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
    "GRPO (orange): the paper's Eq. 2 labels with 89 % credible intervals (uniform Dirichlet "
    "prior on each cell's "
    "fractions; hollow circles) and the posterior regime fractions of the Bayesian "
    "interventions model fitted on all failures (filled squares, 89 % intervals over joint "
    "posterior draws). Real data from ../shared/data."
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


def bayesian_fractions(model, df: pd.DataFrame, ci_prob: float = CI_PROB) -> pd.DataFrame:
    """Posterior regime fractions per cell from a fitted interventions model.

    ``model`` is an :class:`~bayes_regimes.models.interventions.InterventionModel`
    fitted with the cells as groups. Returns the columns of :func:`eq2_fractions`;
    ``count`` is the posterior expected number of the cell's failures in the regime
    and ``fraction`` the posterior mean fraction.
    """
    table = model.regime_fractions(ci_prob=ci_prob, max_draws=500)
    table = table[table["by"] != "all"]
    first = df.drop_duplicates("cell").set_index("cell")
    return pd.DataFrame(
        {
            "cell": table["by"].to_numpy(),
            "model": first.loc[table["by"], "model"].to_numpy(),
            "task": first.loc[table["by"], "task"].to_numpy(),
            "method": [method_of(m) for m in first.loc[table["by"], "model"]],
            "regime": table["regime"].to_numpy(),
            "count": table["mean"].to_numpy() * table["n"].to_numpy(),
            "total": table["n"].to_numpy(),
            "fraction": table["mean"].to_numpy(),
            "low": table["low"].to_numpy(),
            "high": table["high"].to_numpy(),
        }
    )


def _points(ax, sub: pd.DataFrame, y: np.ndarray, marker: str, filled: bool, label: str) -> None:
    for method, color in METHOD_COLORS.items():
        sel = (sub["method"] == method).to_numpy()
        frac = sub["fraction"].to_numpy()[sel]
        ax.errorbar(
            frac,
            y[sel],
            xerr=[frac - sub["low"].to_numpy()[sel], sub["high"].to_numpy()[sel] - frac],
            fmt=marker,
            color=color,
            mfc=color if filled else "white",
            ms=5,
            capsize=2,
            label=f"{method.upper()}, {label}",
        )


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    df = paper.read_failure_profiles()
    table = eq2_fractions(df)
    model = C.intervention_fit(C.settings(quick), out)
    bayes = bayesian_fractions(model, df)
    order = table[["task", "cell", "method"]].drop_duplicates().sort_values(["task", "method"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 5.4), layout="constrained", sharey=True)
    for ax, regime in zip(axes, paper.REGIMES, strict=True):
        sub = table[table["regime"] == regime].set_index("cell").loc[order["cell"]]
        post = bayes[bayes["regime"] == regime].set_index("cell").loc[order["cell"]]
        y = np.arange(len(sub))
        _points(ax, sub, y - 0.16, "o", False, "Eq. 2")
        _points(ax, post, y + 0.16, "s", True, "posterior")
        ax.set_yticks(y, [f"{c} (n={t})" for c, t in zip(sub.index, sub["total"], strict=True)])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of the cell's failures")
        ax.set_title(regime)
        ax.grid(axis="x", color="#eee")
    axes[2].legend(fontsize="x-small", loc="lower right")  # the empty corner
    fig.suptitle(
        "Regimes per model x task cell: the paper's Eq. 2 labels against the posterior of the "
        "interventions model (89 % intervals)"
    )
    C.flag_failed_fit(fig, {"interventions model": model})
    return C.save(fig, out, NAME, C.data_note(*DATA))


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
