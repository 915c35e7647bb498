"""Figure 4: pass@k extrapolated from a few samples, against held-out truth.

Large Language Monkeys (7 Pythia models x 128 MATH problems, 10,000 samples each):
the models see the first 10 samples of every problem and predict pass@k of a fresh
run of k samples up to k = 10,000; the truth is the unbiased estimator on all
10,000 samples. Bayesian models (every slab family with the point mass at p = 0,
and the plain Beta) with 89 % credible bands, beside the power law (Brown et al.
2024) and the beta-binomial maximum likelihood with bootstrap bands (Schaeffer et
al. 2025) from :mod:`bayes_regimes.baselines`. The last panel is the mean absolute
error over the seven models.

Command::

    .venv/bin/python paper_figures/fig4_passk_heldout.py   # -> paper_figures/output/
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _paper_common as C  # noqa: E402

from bayes_regimes.baselines import beta_binomial_mle, power_law  # noqa: E402
from bayes_regimes.heldout import POOLED, pass_at_k_truth  # noqa: E402

NAME = "fig4_passk_heldout"
DATA = (C.MONKEYS,)
CAPTION = (
    "pass@k extrapolated from the first 10 samples per problem against held-out truth "
    "(Large Language Monkeys, 7 Pythia models x 128 MATH problems, 10,000 samples each). "
    "Bayesian models with 89 % credible bands; power law and beta-binomial maximum likelihood "
    "(bootstrap band) baselines; black dots: unbiased pass@k on all 10,000 samples. "
    "Last panel: mean absolute error over the 7 models. Real data from ../shared/data."
)
BASELINE_STYLE = {"power law": ("#7f7f7f", "--"), "beta-binomial MLE": ("#bcbd22", ":")}
MODEL_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def ks_grid(n_max: int = 10_000, points: int = 17) -> np.ndarray:
    return np.unique(np.round(np.geomspace(1, n_max, points)).astype(np.int64))


def predictions(fit: C.HeldoutFit, ks: np.ndarray) -> dict[str, pd.DataFrame]:
    """Method -> DataFrame (group, k, estimate, low, high)."""
    s = fit.settings
    out = {}
    for name, model in fit.models.items():
        pk = model.pass_at_k(ks, kinds=("fresh_run",))
        out[name] = pk.rename(columns={"mean": "estimate"})[
            ["group", "k", "estimate", "low", "high"]
        ]
    out["power law"] = power_law(fit.split, ks, group="model").pass_at_k
    out["beta-binomial MLE"] = beta_binomial_mle(
        fit.split, ks, group="model", n_draws=s.baseline_draws, random_seed=s.seed
    ).pass_at_k
    return out


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    s = C.settings(quick)
    # Drafts (quick) compare the default model only: one fit instead of one per family.
    fit = C.heldout_fit(s, (C.DEFAULT_MODEL,) if quick else tuple(C.model_specs()))
    ks = ks_grid()
    truth = pass_at_k_truth(fit.counts, ks, group="model")
    preds = predictions(fit, ks)
    groups = [g for g in dict.fromkeys(truth["group"]) if g != POOLED]
    groups.sort(key=lambda g: float(g.split()[-1][:-1]) * (1e3 if g.endswith("B") else 1))
    fig, axes = plt.subplots(2, 4, figsize=(15, 7.2), layout="constrained", sharex=True)
    styles = {n: (c, "-") for n, c in zip(fit.models, MODEL_COLORS, strict=False)}
    styles.update(BASELINE_STYLE)
    for ax, g in zip(axes.flat, groups, strict=False):
        t = truth[truth["group"] == g]
        for name, pred in preds.items():
            p = pred[pred["group"] == g]
            color, ls = styles[name]
            ax.plot(p["k"], p["estimate"], color=color, ls=ls, lw=1.6, label=name)
            if p["low"].notna().all():
                ax.fill_between(p["k"], p["low"], p["high"], color=color, alpha=0.15, lw=0)
        ax.plot(t["k"], t["truth"], "o", color="k", ms=3.5, label="held-out truth")
        ax.axvline(s.train_m, color="k", ls=":", lw=0.8)
        ax.set_title(g, fontsize="medium")
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
    for ax in axes[:, 0]:
        ax.set_ylabel("pass@k (fresh run)")
    for ax in axes[1]:
        ax.set_xlabel("k")
    err_ax = axes.flat[len(groups)]
    for name, pred in preds.items():
        merged = truth[truth["group"] != POOLED].merge(pred, on=["group", "k"])
        mae = (merged["estimate"] - merged["truth"]).abs().groupby(merged["k"]).mean()
        color, ls = styles[name]
        err_ax.plot(mae.index, mae.to_numpy(), color=color, ls=ls, lw=1.6, label=name)
    err_ax.axvline(s.train_m, color="k", ls=":", lw=0.8, label=f"training n = {s.train_m}")
    err_ax.set_xscale("log")
    err_ax.set_title("mean absolute error", fontsize="medium")
    err_ax.set_xlabel("k")
    err_ax.legend(fontsize="x-small", loc="upper left")
    axes.flat[0].legend(fontsize="x-small", loc="upper left")
    fig.suptitle(f"pass@k from {s.train_m} samples per problem against held-out truth")
    C.flag_failed_fit(fig, fit.models)
    return C.save(fig, out, NAME, C.data_note(*DATA))


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
