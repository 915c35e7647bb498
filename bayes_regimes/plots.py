"""Figures of a fitted model (matplotlib; every option keyword-only).

Each function takes a fitted model, draws on ``ax`` when given (else a new
figure) and returns the matplotlib Figure, so it works the same in Jupyter, in a
script and in the HTML report.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from bayes_regimes import RegimeModel, RolloutData, simulate_benchmark
>>> model = RegimeModel(RolloutData.from_counts(simulate_benchmark(n_problems=100).counts))
>>> _ = model.fit(draws=100, tune=100, chains=2, progressbar=False)  # doctest: +SKIP
>>> fig = plot_pass_at_k(model)  # doctest: +SKIP
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from bayes_regimes import queries as q

REGIME_COLORS = {
    "solved": "#4daf4a",
    "recoverable": "#377eb8",
    "uncertain": "#bdbdbd",
    "structural": "#e41a1c",
}


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def plot_p_posterior(
    model, *, ax=None, n_samples: int = 4000, random_seed: int = 0, groups=None, color=None
):
    """Posterior of p for failed cells (k = 0): the mass at zero against small p.

    The bar at the left is the posterior probability that p is exactly zero; the
    histogram is the rest of the posterior of p on a log10 scale, per group
    (``groups``: a subset of the group labels; all by default). ``color`` fixes
    the colour of every group's histogram and bar.
    """
    fig, ax = _axes(ax)
    post = model.pattern_posterior()
    rng = np.random.default_rng(random_seed)
    failed = np.flatnonzero(post.k == 0)
    if failed.size == 0:
        ax.text(0.5, 0.5, "no failed cells", ha="center", transform=ax.transAxes)
        return fig
    draws = rng.integers(0, post.n_draws, size=n_samples)
    bins = np.linspace(-8, 0, 41)
    for g, label in enumerate(post.strata):
        idx = failed[post.stratum[failed] == g]
        if idx.size == 0 or (groups is not None and label not in groups):
            continue
        # Sample patterns in proportion to their cell counts, then one p each.
        pick = rng.choice(idx, size=n_samples, p=post.count[idx] / post.count[idx].sum())
        p_zero, p = _sample_p(post, pick, draws, rng)
        logp = np.log10(np.clip(p[~p_zero], 1e-8, 1))
        weights = np.full(logp.size, 1.0 / n_samples)
        line = ax.hist(
            logp,
            bins=bins,
            weights=weights,
            histtype="step",
            lw=1.5,
            color=color,
            label=f"{label} (P(p=0) = {p_zero.mean():.2f})",
        )
        ax.bar(-8.6, p_zero.mean(), width=0.5, color=line[2][0].get_edgecolor(), alpha=0.6)
    ax.axvline(np.log10(model.config["epsilon"]), color="k", ls=":", lw=1)
    ax.set_xlabel("log10 p   (bar at left: p = 0)")
    ax.set_ylabel("posterior probability")
    ax.set_title("Posterior of p for failed problems")
    ax.legend(fontsize="small")
    return fig


def _sample_p(post: q.PatternPosterior, pick: np.ndarray, draws: np.ndarray, rng):
    """One posterior draw of p per (pattern, hyper-parameter draw) pair."""
    slab = q.slab_of(post)
    order = np.argsort(pick, kind="stable")
    p_zero = np.empty(pick.size, bool)
    p = np.empty(pick.size)
    uniq, start = np.unique(pick[order], return_index=True)
    bounds = np.append(start, pick.size)
    for j, pat in enumerate(uniq):
        sel = order[bounds[j] : bounds[j + 1]]
        pi, *theta = (x[draws[sel], 0] for x in post.hyper(np.array([pat])))
        k, n = post.k[pat], post.n[pat]
        w = np.exp(slab.log_structural_weight(k, n, pi, *theta))
        p_zero[sel] = rng.random(sel.size) < w
        p[sel] = slab.sample_slab_p(rng, k, n, *theta)
    return p_zero, p


def plot_regime_fractions(model, *, ax=None):
    """Fraction of cells per regime label, one stacked bar per group."""
    fig, ax = _axes(ax)
    reg = model.regimes()
    frac = (
        reg.groupby("group", sort=False)["label"].value_counts(normalize=True).unstack(fill_value=0)
    )
    left = np.zeros(len(frac))
    for label, color in REGIME_COLORS.items():
        if label in frac:
            ax.barh(frac.index, frac[label], left=left, color=color, label=label)
            left += frac[label].to_numpy()
    ax.set_xlabel("fraction of cells")
    ax.set_xlim(0, 1)
    ax.set_title(f"Regimes (epsilon = {reg.attrs['epsilon']:g})")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_pass_at_k(model, *, ks=None, kind: str = "fresh_run", ax=None):
    """pass@k per group with its 89 % band, far beyond the observed n (log k axis)."""
    fig, ax = _axes(ax)
    n_max = int(model.data.cells["n"].max())
    if ks is None:
        ks = np.unique(np.round(np.geomspace(1, max(100 * n_max, 1000), 30)).astype(int))
    res = model.pass_at_k(ks, kinds=(kind,))
    for g, sub in res.groupby("group", sort=False):
        line = ax.plot(sub["k"], sub["mean"], label=str(g))
        ax.fill_between(sub["k"], sub["low"], sub["high"], alpha=0.25, color=line[0].get_color())
    ax.axvline(n_max, color="k", ls=":", lw=1, label=f"observed n = {n_max}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("k (attempts)")
    ax.set_ylabel(f"pass@k ({kind})")
    ax.set_title("pass@k with extrapolation band")
    ax.legend(fontsize="small")
    return fig


def plot_expected_gain(model, *, ms=None, ax=None):
    """Mean expected gain of m more samples against m, per regime label."""
    fig, ax = _axes(ax)
    ms = np.unique(np.round(np.geomspace(1, 10_000, 25)).astype(int)) if ms is None else ms
    labels = model.regimes()["label"]
    for label, color in REGIME_COLORS.items():
        mask = (labels == label).to_numpy()
        if label == "solved" or not mask.any():
            continue
        curve = [model.expected_gain(int(m))["gain_mean"].to_numpy()[mask].mean() for m in ms]
        ax.plot(ms, curve, color=color, label=f"{label} ({mask.sum()})")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("m more samples")
    ax.set_ylabel("P(at least one success)")
    ax.set_title("Expected gain by regime")
    ax.legend(fontsize="small")
    return fig


def plot_ppc(model, *, max_panels: int = 4, random_seed: int = 0):
    """Posterior predictive check of the distribution of k (most common n per group)."""
    table = model.ppc(random_seed=random_seed)
    keys = table.groupby(["group", "n"], sort=False)["observed"].sum().sort_values(ascending=False)
    keys = keys.groupby(level=0, sort=False).head(1).index[:max_panels]
    fig, axes = plt.subplots(
        1, len(keys), figsize=(4.5 * len(keys), 3.5), layout="constrained", squeeze=False
    )
    for ax, (g, n) in zip(axes[0], keys, strict=False):
        sub = table[(table["group"] == g) & (table["n"] == n)]
        x = np.arange(len(sub))
        ax.bar(x, sub["observed"], color="#cccccc", label="observed")
        ax.errorbar(
            x,
            sub["mean"],
            # The mean of a skewed predictive can fall (by rounding) outside [low, high].
            yerr=np.clip([sub["mean"] - sub["low"], sub["high"] - sub["mean"]], 0, None),
            fmt="o",
            color="#377eb8",
            ms=3,
            label="predicted (89 %)",
        )
        ax.set_xticks(x, sub["bin"], rotation=90, fontsize="x-small")
        ax.set_title(f"{g}, n = {n}", fontsize="small")
        ax.set_xlabel("k")
    axes[0][0].set_ylabel("cells")
    axes[0][0].legend(fontsize="small")
    fig.suptitle("Posterior predictive check of k")
    return fig


def plot_diagnostics(model, *, kind: str = "rank"):
    """ArviZ rank or trace plot of the hyper-parameters (returns the Figure)."""
    import arviz as az

    dt = model._require_fit()
    names = model.diagnostic_vars
    fn = {"rank": az.plot_rank, "trace": az.plot_trace_dist}[kind]
    pc = fn(dt, var_names=names, backend="matplotlib")
    return pc.viz["figure"].item()
