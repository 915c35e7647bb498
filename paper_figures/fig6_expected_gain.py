"""Figure 6: expected gain of m more samples, per regime, and against held-out truth.

Left: :func:`bayes_regimes.plots.plot_expected_gain` of the zero-inflated model
fitted on the first 10 samples of every Large Language Monkeys problem: the mean
probability of at least one success in m more samples, per regime label. Right:
per Pythia model, the predicted fraction of the training failures that m more
samples rescue (posterior mean and 89 % band), against the held-out fraction: the
exact probability that the first m of the other 9,990 samples hold a success,
given their counts (the unbiased estimator), averaged over the same problems.

Command::

    .venv/bin/python paper_figures/fig6_expected_gain.py   # -> paper_figures/output/
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _paper_common as C  # noqa: E402

from bayes_regimes import plots  # noqa: E402
from bayes_regimes.closed_form import unbiased_pass_at_k  # noqa: E402

NAME = "fig6_expected_gain"
DATA = (C.MONKEYS,)
CAPTION = (
    "Expected gain of m more samples: per regime label (left), and per Pythia model for the "
    "problems that failed their first 10 samples, predicted (89 % band) against the held-out "
    "rescue rate from the other 9,990 samples (dots) (Large Language Monkeys). "
    "Real data from ../shared/data."
)


def ms_grid(n_test: int, points: int = 14) -> np.ndarray:
    return np.unique(np.round(np.geomspace(1, n_test, points)).astype(np.int64))


def predicted_rescue(fit: C.HeldoutFit, ms: np.ndarray) -> pd.DataFrame:
    """Per group and m: mean, low, high over draws of the mean gain of the training failures."""
    failed = np.flatnonzero(fit.failed)
    rows = []
    for m in ms:
        draws = fit.model.expected_gain(int(m), summary=False).isel(cell=failed)
        per_group = draws.groupby("group").mean("cell")
        for g in per_group["group"].values:
            x = per_group.sel(group=g).values.ravel()
            lo, hi = np.quantile(x, [0.055, 0.945])
            rows.append((str(g), int(m), x.mean(), lo, hi))
    return pd.DataFrame(rows, columns=["group", "m", "mean", "low", "high"])


def heldout_rescue(fit: C.HeldoutFit, ms: np.ndarray) -> pd.DataFrame:
    split = fit.split[fit.failed]
    n, k = split["n_test"].to_numpy()[:, None], split["k_test"].to_numpy()[:, None]
    values = np.asarray(unbiased_pass_at_k(n, k, ms[None, :]), dtype=float)
    frame = pd.DataFrame(values, columns=ms).assign(group=split["model"].to_numpy())
    return frame.groupby("group", sort=False).mean()


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    fit = C.heldout_fit(C.settings(quick))
    ms = ms_grid(int(fit.split["n_test"].min()))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    plots.plot_expected_gain(fit.model, ms=ms, ax=axes[0])
    axes[0].set_title(f"Expected gain by regime (fit on {fit.settings.train_m} samples)")
    pred = predicted_rescue(fit, ms)
    truth = heldout_rescue(fit, ms)
    ax = axes[1]
    for g, sub in pred.groupby("group", sort=False):
        line = ax.plot(sub["m"], sub["mean"], lw=1.5, label=str(g))[0]
        ax.fill_between(sub["m"], sub["low"], sub["high"], color=line.get_color(), alpha=0.15)
        if g in truth.index:
            ax.plot(ms, truth.loc[g].to_numpy(), "o", ms=3, color=line.get_color())
    ax.plot([], [], "o", color="k", ms=3, label="held-out")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("m more samples")
    ax.set_ylabel("fraction of training failures rescued")
    ax.set_title("Predicted (band) against held-out (dots)")
    ax.legend(fontsize="x-small", ncols=2)
    C.flag_failed_fit(fig, {"zero-inflated Beta": fit.model})
    return C.save(fig, out, NAME, C.data_note(*DATA))


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
