"""Figures of the crossed problem x model fit (matplotlib; options keyword-only).

- :func:`plot_difficulty_ability`: the difficulty x ability map, one point per cell,
  failed cells coloured by their structural probability P(p < epsilon).
- :func:`plot_structural_comparison`: regime fractions per model (or post-training
  method) with credible intervals, and the posterior probability that one leaves
  more structural failures than another.

Both return the matplotlib Figure, as :mod:`bayes_regimes.plots` does.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from bayes_regimes import RegimeModel, RolloutData
>>> from bayes_regimes.models.crossed_tools import simulate_crossed
>>> sim = simulate_crossed(n_problems=60, n_models=4, random_seed=0)
>>> model = RegimeModel(RolloutData.from_counts(sim.counts, group="model"), pooling="crossed")
>>> _ = model.fit(draws=200, tune=200, chains=2, progressbar=False)  # doctest: +SKIP
>>> fig = plot_difficulty_ability(model)  # doctest: +SKIP
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from bayes_regimes.models.crossed_tools import compare_structural
from bayes_regimes.plots import REGIME_COLORS, _axes


def plot_difficulty_ability(
    model, *, epsilon: float | None = None, ax=None, levels=(0.5, 0.1, 0.01, 0.001)
):
    """Problem difficulty x model ability, with the structural probability of failures.

    One point per cell at (posterior mean difficulty of its problem, posterior mean
    ability of its model plus its condition effect). Solved cells are small grey
    dots; failed cells are coloured by P(p < epsilon). Dashed lines are constant
    slab means sigmoid(ability - difficulty) = ``levels``: failures far above a line
    (easy for the model) yet structural are the ones pooling tells apart.
    """
    fig, ax = _axes(ax, figsize=(7, 5))
    post = model.posterior
    reg = model.regimes(epsilon)
    difficulty = post["difficulty"].mean(("chain", "draw")).to_series()
    ability = post["ability"].mean(("chain", "draw")).to_series()
    x = difficulty.reindex(reg["problem"]).to_numpy()
    y = ability.reindex(reg["group"]).to_numpy()
    if "condition_effect" in post:
        effect = post["condition_effect"].mean(("chain", "draw")).to_series()
        y = y + effect.reindex(reg["condition"]).to_numpy()
    # Spread the models' rows a little so that overlapping points stay visible.
    jitter = np.random.default_rng(0).uniform(-0.04, 0.04, len(y)) * (np.ptp(y) or 1.0)
    failed = (reg["k"] == 0).to_numpy()
    ax.scatter(x[~failed], y[~failed] + jitter[~failed], s=4, c="#bdbdbd", label="solved")
    sc = ax.scatter(
        x[failed],
        y[failed] + jitter[failed],
        s=10,
        c=reg["p_structural"].to_numpy()[failed],
        cmap="magma_r",
        vmin=0,
        vmax=1,
        label="failed",
    )
    fig.colorbar(sc, ax=ax, label=f"P(p < {reg.attrs['epsilon']:g}) of failed cells")
    grid = np.linspace(np.nanmin(x), np.nanmax(x), 50)
    for level in levels:
        ax.plot(grid, grid + np.log(level / (1 - level)), "k--", lw=0.7, alpha=0.6)
        ax.annotate(f"mean p {level:g}", (grid[-1], grid[-1] + np.log(level / (1 - level))))
    ax.set_ylim(np.nanmin(y) - 0.5, np.nanmax(y) + 0.5)
    ax.set_xlabel("problem difficulty d (posterior mean)")
    ax.set_ylabel("model ability theta (posterior mean)")
    ax.set_title("Difficulty x ability: structural probability of failed cells")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_structural_comparison(model, *, epsilon: float | None = None, ci_prob: float = 0.89):
    """Regime fractions with credible intervals, and P(row more structural than column).

    Left: per group (model or method), the observed solved fraction and the
    posterior fractions of structural and recoverable cells with ``ci_prob``
    intervals. Right: P(structural fraction of row > that of column).
    """
    fractions, prob_more = compare_structural(model, epsilon, ci_prob)
    groups = fractions["group"].tolist()
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(11, 0.35 * len(groups) + 2.5), layout="constrained"
    )
    pos = np.arange(len(groups))
    height = 0.27
    ax.barh(
        pos - height, fractions["solved"], height, color=REGIME_COLORS["solved"], label="solved"
    )
    for shift, name in ((0.0, "structural"), (height, "recoverable")):
        mean = fractions[f"{name}_mean"].to_numpy()
        err = np.abs(fractions[[f"{name}_low", f"{name}_high"]].to_numpy().T - mean)
        ax.barh(pos + shift, mean, height, xerr=err, color=REGIME_COLORS[name], label=name)
    ax.set_yticks(pos, groups)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"fraction of cells ({int(ci_prob * 100)} % intervals)")
    ax.set_title("Regime fractions")
    ax.legend(fontsize="small", loc="lower right")
    im = ax2.imshow(prob_more.to_numpy(), vmin=0, vmax=1, cmap="RdBu_r")
    ax2.set_xticks(pos, groups, rotation=90)
    ax2.set_yticks(pos, groups)
    ax2.set_title("P(row leaves more structural failures than column)")
    fig.colorbar(im, ax=ax2)
    if len(groups) <= 12:
        for (r, c), v in np.ndenumerate(prob_more.to_numpy()):
            if r != c:
                ax2.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7)
    return fig
