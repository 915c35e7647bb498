"""Figure 1: the regime map in the paper's feature space.

Every failed problem of Islah et al. (2026) (1,423 failures, 8 model x task cells)
placed at x = z(concentration) - z(spread), y = z(logit dispersion), the features
z-scored within its cell (:func:`bayes_regimes.paper.zscores`). Left: coloured by
the operator the paper's training-free rule routes it to
(:func:`bayes_regimes.paper.route`, applied within each cell). Middle: coloured by
its outcome regime, the paper's "Eq. 2" labels
(:func:`bayes_regimes.paper.outcome_regimes`). Right: coloured by its most probable
posterior regime under the Bayesian interventions model
(:class:`~bayes_regimes.models.interventions.InterventionModel` fitted on all 1,423
failures, :func:`bayes_regimes.routing.route_fitted`), with the opacity of each
point its posterior probability of that regime (:func:`posterior_regime_panel`).
The Eq. 2 labels read three best-of-3 attempts per condition; the posterior
regimes are statements about the latent p, so a failure whose observed rescue
was lucky or unlucky moves towards the regime its features and pooled cell say.

Command::

    .venv/bin/python paper_figures/fig1_regime_map.py   # -> paper_figures/output/
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _paper_common as C  # noqa: E402

from bayes_regimes import paper  # noqa: E402
from bayes_regimes.routing import REGIME_COLUMNS  # noqa: E402

NAME = "fig1_regime_map"
DATA = (C.PROFILES,)
CAPTION = (
    "Regime map in the paper's feature space: z(concentration) - z(spread) against z(logit "
    "dispersion), z-scored within each model x task cell, for the 1,423 failed problems of "
    "Islah et al. (2026); coloured by the operator the paper's rule routes to (left), by the "
    "paper's outcome regime (Eq. 2, middle) and by the most probable posterior regime of the "
    "Bayesian interventions model fitted on all failures (right; opacity: its posterior "
    "probability). Real data from ../shared/data."
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


def posterior_regimes(routes: pd.DataFrame) -> pd.DataFrame:
    """Most probable posterior regime of each failure and its probability.

    ``routes`` is the output of :func:`bayes_regimes.routing.route_fitted` (aligned
    with the failures); returns columns ``posterior`` (a label of
    :data:`bayes_regimes.paper.REGIMES`) and ``probability``.
    """
    probs = routes[list(REGIME_COLUMNS)].to_numpy()
    best = probs.argmax(axis=1)
    return pd.DataFrame(
        {
            "posterior": np.array(paper.REGIMES, dtype=object)[best],
            "probability": probs[np.arange(len(probs)), best],
        },
        index=routes.index,
    )


def posterior_regime_panel(ax, points: pd.DataFrame, routes: pd.DataFrame) -> pd.DataFrame:
    """Colour the map by the most probable posterior regime (opacity: its probability).

    Returns the per-failure table of :func:`posterior_regimes`.
    """
    post = posterior_regimes(routes)
    for label, color in REGIME_COLORS.items():
        sel = (post["posterior"] == label).to_numpy()
        rgba = np.tile(to_rgba(color), (int(sel.sum()), 1))
        rgba[:, 3] = 0.15 + 0.75 * post["probability"].to_numpy()[sel]
        ax.scatter(
            points["x"][sel], points["y"][sel], s=7, color=rgba, label=f"{label} ({sel.sum()})"
        )
    ax.axhline(0, color="#ccc", lw=0.7)
    ax.axvline(0, color="#ccc", lw=0.7)
    ax.set_xlabel("z(concentration) - z(spread)")
    ax.set_title("Posterior regime (interventions model)")
    ax.legend(fontsize="small", markerscale=2, loc="lower right")
    agree = (post["posterior"] == points["regime"]).mean()
    ax.text(0.02, 0.98, f"agrees with Eq. 2 on {agree:.0%}", transform=ax.transAxes, va="top")
    return post


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    df = paper.read_failure_profiles()
    points = regime_map(df)
    s = C.settings(quick)
    model = C.intervention_fit(s, out)
    routes = C.intervention_routes(s, df, out)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), layout="constrained", sharey=True)
    scatter(axes[0], points, "operator", OPERATOR_COLORS, "Routed operator (paper's rule)")
    scatter(axes[1], points, "regime", REGIME_COLORS, "Outcome regime (paper's Eq. 2)")
    posterior_regime_panel(axes[2], points, routes)
    axes[0].set_ylabel("z(logit dispersion)")
    fig.suptitle(f"Regime map of {len(df):,} failures (8 model x task cells)")
    C.flag_failed_fit(fig, {"interventions model": model})
    return C.save(fig, out, NAME, C.data_note(*DATA))


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
