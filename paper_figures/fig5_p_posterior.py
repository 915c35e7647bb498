"""Figure 5: the posterior of p for failed problems, against what the held-out samples show.

Top: :func:`bayes_regimes.plots.plot_p_posterior` of the zero-inflated model
fitted on the first 10 samples of every Large Language Monkeys problem: for the
problems that failed all 10, the posterior mass at p = 0 (bar at the left) and
the rest of the posterior of p on a log scale, for three Pythia models (all
seven are fitted together). Bottom: the same problems as the other 9,990 samples
see them, k_test / n_test on the same scale, with the problems that never
succeeded at the left (p below about 1e-4).

Command::

    .venv/bin/python paper_figures/fig5_p_posterior.py   # -> paper_figures/output/
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _paper_common as C  # noqa: E402

from bayes_regimes import plots  # noqa: E402

NAME = "fig5_p_posterior"
GROUPS = ("Pythia 70M", "Pythia 1B", "Pythia 12B")
COLORS = ("#d62728", "#1f77b4", "#2ca02c")
DATA = (C.MONKEYS,)
CAPTION = (
    "Posterior of p for the problems that failed their first 10 samples (Large Language "
    "Monkeys; Pythia 70M, 1B and 12B): the mass at p = 0 (bar, left) against small positive "
    "values (histogram of log10 p), above the held-out view of the same problems from their "
    "other 9,990 samples (k/n; bar: no success at all). Real data from ../shared/data."
)


def heldout_panel(ax, fit: C.HeldoutFit, group: str, color: str) -> None:
    """Held-out k / n of one model's training failures, on the scale of the posterior panel."""
    sub = fit.split[fit.failed & (fit.split["model"] == group).to_numpy()]
    p_hat = sub["k_test"].to_numpy() / sub["n_test"].to_numpy()
    zero = p_hat == 0
    weights = np.full(int((~zero).sum()), 1.0 / len(sub))
    ax.hist(
        np.log10(p_hat[~zero]),
        bins=np.linspace(-8, 0, 41),
        weights=weights,
        histtype="step",
        lw=1.5,
        color=color,
        label=f"no success in {int(sub['n_test'].min()):,}: {zero.mean():.2f}",
    )
    ax.bar(-8.6, zero.mean(), width=0.5, color=color, alpha=0.6)
    ax.axvline(np.log10(fit.model.config["epsilon"]), color="k", ls=":", lw=1)
    ax.set_xlabel("log10 (k / n), held-out samples   (bar: k = 0)")
    ax.legend(fontsize="small")


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    fit = C.heldout_fit(C.settings(quick))
    fig, axes = plt.subplots(
        2, len(GROUPS), figsize=(14, 7), layout="constrained", sharex=True, sharey="row"
    )
    for j, (group, color) in enumerate(zip(GROUPS, COLORS, strict=True)):
        plots.plot_p_posterior(fit.model, ax=axes[0, j], groups=[group], color=color)
        axes[0, j].set_title(f"{group}: posterior of p")
        axes[0, j].set_xlabel("")
        heldout_panel(axes[1, j], fit, group, color)
        axes[1, j].set_title(f"{group}: held-out view")
    for j in range(1, len(GROUPS)):
        axes[0, j].set_ylabel("")
    axes[1, 0].set_ylabel("fraction of training failures")
    fig.suptitle(
        f"Problems that failed their first {fit.settings.train_m} samples: "
        "posterior of p (top) against the other samples (bottom)"
    )
    C.flag_failed_fit(fig, {C.DEFAULT_MODEL: fit.model})
    return C.save(fig, out, NAME, C.data_note(*DATA))


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
