"""Figure 8: calibration (reliability) of held-out rescue predictions.

For every Large Language Monkeys problem that failed its first 10 samples, each
method predicts the probability of at least one success in h more samples; the
outcome is whether the first h of the other 9,990 samples hold one (for h < 9,990
the order of the held-out samples is drawn at random: a hypergeometric draw from
their counts, which is exact for i.i.d. samples). Predictions are binned with
:func:`bayes_regimes.metrics.reliability_table` (marker area: problems per bin);
the legend gives the expected calibration error. Methods: the zero-inflated model,
the beta-binomial maximum likelihood and Bayes@N (independent uniform-prior Betas)
from :mod:`bayes_regimes.baselines`.

Command::

    .venv/bin/python paper_figures/fig8_calibration.py   # -> paper_figures/output/
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _paper_common as C  # noqa: E402

from bayes_regimes.baselines import bayes_at_n, beta_binomial_mle  # noqa: E402
from bayes_regimes.metrics import expected_calibration_error, reliability_table  # noqa: E402

NAME = "fig8_calibration"
DATA = (C.MONKEYS,)
HORIZONS = (100, 1000, 9990)
CAPTION = (
    "Calibration of held-out rescue predictions: for the problems that failed their first 10 "
    "samples, predicted probability of a success in h more samples against the observed "
    "fraction among the held-out samples, for the zero-inflated model, the beta-binomial "
    "maximum likelihood and Bayes@N (Large Language Monkeys; marker area: problems per bin; "
    "ECE in the legend). Real data from ../shared/data."
)
STYLE = {
    "zero-inflated Beta": ("#1f77b4", "o"),
    "beta-binomial MLE": ("#bcbd22", "s"),
    "Bayes@N": ("#8c564b", "^"),
}


def outcomes(fit: C.HeldoutFit, h: int, rng: np.random.Generator) -> np.ndarray:
    """Success among the first h held-out samples of each training failure."""
    split = fit.split[fit.failed]
    n, k = split["n_test"].to_numpy(), split["k_test"].to_numpy()
    if h >= n.min():
        return k > 0
    return rng.hypergeometric(k, n - k, h) > 0


def predictions(fit: C.HeldoutFit, h: int) -> dict[str, np.ndarray]:
    at_h = fit.split.assign(n_test=h)  # the baselines read n_train, k_train and n_test only
    return {
        "zero-inflated Beta": fit.model.expected_gain(h)["gain_mean"].to_numpy()[fit.failed],
        "beta-binomial MLE": beta_binomial_mle(at_h, [h], group="model", n_draws=0).rescue_prob,
        "Bayes@N": bayes_at_n(at_h, [h], group="model", n_draws=0).rescue_prob,
    }


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    fit = C.heldout_fit(C.settings(quick))
    rng = np.random.default_rng(fit.settings.seed)
    n_test = int(fit.split["n_test"].min())
    horizons = [min(h, n_test) for h in HORIZONS]
    fig, axes = plt.subplots(1, len(horizons), figsize=(14, 4.6), layout="constrained")
    for ax, h in zip(axes, horizons, strict=True):
        y = outcomes(fit, h, rng)
        for name, p in predictions(fit, h).items():
            tab = reliability_table(y, p, bins=10)
            tab = tab[tab["count"] > 0]
            ece = expected_calibration_error(y, p, bins=10)
            color, marker = STYLE[name]
            ax.plot(
                tab["mean_pred"],
                tab["frac_pos"],
                color=color,
                marker=marker,
                ms=5,
                lw=1,
                alpha=0.7,
                label=f"{name} (ECE {ece:.3f})",
            )
            # Marker area: share of the failures in the bin.
            size = 12 + 400 * tab["count"] / len(y)
            ax.scatter(tab["mean_pred"], tab["frac_pos"], s=size, color=color, marker=marker)
        ax.plot([0, 1], [0, 1], color="#999", ls=":", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("predicted P(success in h more samples)")
        ax.set_title(f"h = {h:,} ({len(y)} training failures)", fontsize="medium")
        ax.legend(fontsize="x-small", loc="upper left")
    axes[0].set_ylabel("observed fraction rescued")
    C.flag_failed_fit(fig, {"zero-inflated Beta": fit.model})
    return C.save(fig, out, NAME, C.data_note(*DATA))


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
