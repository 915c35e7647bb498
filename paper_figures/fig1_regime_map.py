"""Figure 1: the regime map in the paper's feature space.

Every failed problem of Islah et al. (2026) (1,423 failures, 8 model x task cells)
placed at x = z(concentration) - z(spread), y = z(logit dispersion), the features
z-scored within its cell (:func:`bayes_regimes.paper.zscores`). Left: coloured by
the operator the paper's training-free rule routes it to
(:func:`bayes_regimes.paper.route`, applied within each cell). Right: coloured by
its outcome regime, the paper's "Eq. 2" labels
(:func:`bayes_regimes.paper.outcome_regimes`).

A third panel, coloured by the posterior regime of the Bayesian interventions
model, belongs here once that model is in place: see :func:`posterior_regime_panel`.

Command::

    .venv/bin/python paper_figures/fig1_regime_map.py   # -> paper_figures/output/
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _paper_common as C  # noqa: E402

from bayes_regimes import paper  # noqa: E402

NAME = "fig1_regime_map"
DATA = (C.PROFILES,)
CAPTION = (
    "Regime map in the paper's feature space: z(concentration) - z(spread) against z(logit "
    "dispersion), z-scored within each model x task cell, for the 1,423 failed problems of "
    "Islah et al. (2026); coloured by the operator the paper's rule routes to (left) and by "
    "the paper's outcome regime (right). Real data from ../shared/data."
)
OPERATOR_COLORS = {
    "dense_steer": "#1f77b4",
    "sparse_steer": "#ff7f0e",
    "local_temp": "#2ca02c",
    "sparse_steer_random": "#7f7f7f",
}
REGIME_COLORS = {"resample": "#377eb8", "steerable": "#4daf4a", "beyond reach": "#e41a1c"}


def regime_map(df: pd.DataFrame) -> pd.DataFrame:
    """Per failure: map coordinates, routed operator and outcome regime (per-cell z)."""
    parts = []
    for _, cell in df.groupby("cell", sort=False):
        z = paper.zscores(cell)
        parts.append(
            pd.DataFrame(
                {
                    "cell": cell["cell"],
                    "x": z["concentration"] - z["spread"],
                    "y": z["logit_dispersion"],
                    "operator": paper.route(cell),
                    "regime": paper.outcome_regimes(cell),
                },
                index=cell.index,
            )
        )
    return pd.concat(parts).loc[df.index]


def scatter(ax, points: pd.DataFrame, column: str, colors: dict[str, str], title: str) -> None:
    for label, color in colors.items():
        sub = points[points[column] == label]
        ax.scatter(sub["x"], sub["y"], s=7, alpha=0.6, color=color, label=f"{label} ({len(sub)})")
    ax.axhline(0, color="#ccc", lw=0.7)
    ax.axvline(0, color="#ccc", lw=0.7)
    ax.set_xlabel("z(concentration) - z(spread)")
    ax.set_title(title)
    ax.legend(fontsize="small", markerscale=2, loc="lower right")


def posterior_regime_panel(ax, df: pd.DataFrame, points: pd.DataFrame) -> bool:
    """Colour the map by the Bayesian posterior regime (to be written with the
    interventions model, issue 4). Returns False while it is not available."""
    return False


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    df = paper.read_failure_profiles()
    points = regime_map(df)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), layout="constrained", sharey=True)
    scatter(axes[0], points, "operator", OPERATOR_COLORS, "Routed operator (paper's rule)")
    scatter(axes[1], points, "regime", REGIME_COLORS, "Outcome regime (paper's Eq. 2)")
    axes[0].set_ylabel("z(logit dispersion)")
    fig.suptitle(f"Regime map of {len(df):,} failures (8 model x task cells)")
    return C.save(fig, out, NAME, C.data_note(*DATA))


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
