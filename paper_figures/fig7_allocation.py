"""Figure 7: the budget allocation curve, optimal against uniform, predicted and realised.

The zero-inflated model fitted on the first 10 samples of every Large Language
Monkeys problem allocates a budget B of extra samples over the problems that
failed all 10 (:meth:`RegimeModel.allocate`, exact for unit costs), or spreads it
uniformly. Left: the expected number of newly solved problems against B, as the
model predicts it and as the held-out samples realise it (the exact probability
that the first ``extra`` of a problem's other 9,990 samples hold a success, given
their counts, summed over problems). Right: how the optimal allocation splits the
budget between the Pythia models.

Command::

    .venv/bin/python paper_figures/fig7_allocation.py   # -> paper_figures/output/
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _paper_common as C  # noqa: E402

from bayes_regimes.closed_form import unbiased_pass_at_k  # noqa: E402

NAME = "fig7_allocation"
DATA = (C.MONKEYS,)
CAPTION = (
    "Budget allocation: expected number of newly solved problems against the budget of extra "
    "samples, for the optimal allocation and a uniform one, as predicted by the model fitted "
    "on 10 samples per problem and as realised on the held-out samples (Large Language "
    "Monkeys); right, the optimal split of the budget between models. Real data from "
    "../shared/data."
)


def realised(fit: C.HeldoutFit, extra: np.ndarray) -> float:
    """Expected newly solved training failures given the held-out counts."""
    fail = fit.failed
    n = fit.split["n_test"].to_numpy()[fail]
    k = fit.split["k_test"].to_numpy()[fail]
    e = np.minimum(extra[fail], n)  # never more than the held-out samples
    return float(np.sum(np.asarray(unbiased_pass_at_k(n, k, e), dtype=float)))


def curves(fit: C.HeldoutFit, budgets: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    model, fail = fit.model, fit.failed
    n_failed = int(fail.sum())
    rows, shares = [], []
    for budget in budgets:
        alloc = model.allocate(int(budget))
        extra = alloc["extra"].to_numpy()
        uniform = np.where(fail, budget // n_failed, 0)
        rows.append(
            {
                "budget": int(budget),
                "optimal (predicted)": alloc.attrs["objective"],
                "uniform (predicted)": model.expected_gain(uniform)["gain_mean"]
                .to_numpy()[fail]
                .sum(),
                "optimal (held-out)": realised(fit, extra),
                "uniform (held-out)": realised(fit, uniform),
                "capped": bool(np.any(extra > fit.split["n_test"].to_numpy())),
            }
        )
        share = alloc.groupby("group", sort=False)["extra"].sum() / max(int(budget), 1)
        shares.append(share.rename(int(budget)))
    return pd.DataFrame(rows), pd.concat(shares, axis=1).T


def main(out: Path = C.OUTPUT, quick: bool = False) -> list[Path]:
    if not C.data_available(NAME):
        return []
    fit = C.heldout_fit(C.settings(quick))
    n_failed = int(fit.failed.sum())
    points = 5 if quick else 9
    budgets = np.unique(np.round(np.geomspace(n_failed, 300 * n_failed, points)).astype(np.int64))
    table, shares = curves(fit, budgets)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    ax = axes[0]
    for col, color, ls, marker in (
        ("optimal (predicted)", "#1f77b4", "-", ""),
        ("uniform (predicted)", "#1f77b4", "--", ""),
        ("optimal (held-out)", "k", "-", "o"),
        ("uniform (held-out)", "k", "--", "s"),
    ):
        ax.plot(table["budget"], table[col], color=color, ls=ls, marker=marker, ms=4, label=col)
    ax.set_xscale("log")
    ax.set_xlabel("budget of extra samples")
    ax.set_ylabel("newly solved problems")
    ax.set_title(f"Optimal against uniform allocation ({n_failed} training failures)")
    ax.legend(fontsize="small")
    ax = axes[1]
    ax.stackplot(shares.index, shares.to_numpy().T, labels=list(shares.columns), alpha=0.85)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("budget of extra samples")
    ax.set_ylabel("share of the optimal allocation")
    ax.set_title("Where the optimal allocation spends")
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=4)
    C.flag_failed_fit(fig, {"zero-inflated Beta": fit.model})
    note = C.data_note(*DATA)
    if table["capped"].any():
        note += " Held-out values cap allocations at the 9,990 held-out samples."
    return C.save(fig, out, NAME, note)


if __name__ == "__main__":
    with C.quiet_queries():
        print("\n".join(map(str, main())))
