"""Sampler diagnostics and the loud-warning policy.

Every fit is checked against fixed thresholds: R-hat <= 1.01, bulk and tail ESS
>= 400, no divergent transition, and E-BFMI >= 0.3 in every chain. A fit that
fails any check is *flagged*: a :class:`~bayes_regimes.errors.DiagnosticsWarning`
is emitted at the end of the fit and again by every query, and every query result
carries the message in ``DataFrame.attrs["diagnostics"]``.

Examples
--------
>>> import numpy as np, xarray as xr
>>> post = xr.Dataset({"mu": (("chain", "draw"), np.random.default_rng(0).normal(size=(4, 500)))})
>>> report = check_posterior(post, diverging=np.zeros((4, 500), bool))
>>> report.ok
True
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr

from bayes_regimes.errors import DiagnosticsWarning

RHAT_MAX = 1.01
ESS_MIN = 400
BFMI_MIN = 0.3


@dataclass(frozen=True)
class DiagnosticsReport:
    """Outcome of the convergence checks of one fit.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per scalar parameter (``param``), with ``r_hat``, ``ess_bulk``,
        ``ess_tail`` and a boolean ``ok``.
    divergences : int
        Number of divergent transitions after tuning.
    bfmi : numpy.ndarray
        E-BFMI per chain (NaN when the sampler did not report energy).
    problems : list of str
        Human-readable failed checks; empty when the fit passed.
    """

    table: pd.DataFrame
    divergences: int
    bfmi: np.ndarray
    n_draws: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems

    @property
    def message(self) -> str:
        """One line summarising the failed checks ("" when the fit passed)."""
        if self.ok:
            return ""
        return "FIT FAILED DIAGNOSTICS: " + "; ".join(self.problems)

    def summary(self) -> dict:
        """Scalar summary (worst R-hat, smallest ESS, divergences, min BFMI)."""
        t = self.table
        return {
            "ok": self.ok,
            "max_r_hat": float(t["r_hat"].max()) if len(t) else float("nan"),
            "min_ess_bulk": float(t["ess_bulk"].min()) if len(t) else float("nan"),
            "min_ess_tail": float(t["ess_tail"].min()) if len(t) else float("nan"),
            "divergences": int(self.divergences),
            "min_bfmi": float(np.nanmin(self.bfmi)) if np.isfinite(self.bfmi).any() else None,
            "n_draws": self.n_draws,
            "problems": list(self.problems),
        }

    def __str__(self) -> str:
        s = self.summary()
        head = "Diagnostics: OK" if self.ok else self.message
        return (
            f"{head}\n  max R-hat {s['max_r_hat']:.3f} (<= {RHAT_MAX}), "
            f"min ESS bulk {s['min_ess_bulk']:.0f} / tail {s['min_ess_tail']:.0f} (>= {ESS_MIN}), "
            f"divergences {s['divergences']}, min E-BFMI "
            f"{'n/a' if s['min_bfmi'] is None else format(s['min_bfmi'], '.2f')} (>= {BFMI_MIN})"
        )

    def to_html(self) -> str:
        """HTML table with failing rows highlighted (used by the report and Jupyter)."""
        rows = []
        for _, r in self.table.iterrows():
            style = "" if r["ok"] else ' style="background:#fdd;font-weight:bold"'
            rows.append(
                f"<tr{style}><td>{html.escape(str(r['param']))}</td><td>{r['r_hat']:.3f}</td>"
                f"<td>{r['ess_bulk']:.0f}</td><td>{r['ess_tail']:.0f}</td>"
                f"<td>{'ok' if r['ok'] else 'FAIL'}</td></tr>"
            )
        status = (
            '<p style="color:#070">All checks passed.</p>'
            if self.ok
            else f'<p style="color:#b00;font-weight:bold">{html.escape(self.message)}</p>'
        )
        bfmi = ", ".join("n/a" if not np.isfinite(x) else f"{x:.2f}" for x in self.bfmi)
        return (
            f"{status}<p>Divergences: {self.divergences}; E-BFMI per chain: {bfmi}</p>"
            "<table><thead><tr><th>parameter</th><th>R-hat</th><th>ESS bulk</th>"
            f"<th>ESS tail</th><th>status</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )

    def _repr_html_(self) -> str:
        """Rich display in Jupyter (the same table as :meth:`to_html`)."""
        return self.to_html()


def _bfmi(energy: np.ndarray) -> np.ndarray:
    # E-BFMI per chain (Betancourt 2016): mean squared energy change over energy variance.
    num = np.mean(np.diff(energy, axis=1) ** 2, axis=1)
    den = np.var(energy, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def _flat(da: xr.DataArray) -> tuple[list[str], np.ndarray]:
    """Flatten a per-parameter statistic to labelled scalars: ("[a]", value), ..."""
    if da.ndim == 0:
        return [""], np.atleast_1d(da.values)
    stacked = da.stack(_i=list(da.dims))
    labels = [
        "[" + ", ".join(map(str, i if isinstance(i, tuple) else (i,))) + "]"
        for i in stacked["_i"].values
    ]
    return labels, stacked.values


def stuck_chains(diverging: npt.ArrayLike) -> list[int]:
    """Chains divergent on more than half their transitions (chain x draw booleans).

    Such a chain is frozen where its tuning ended (seen on the paper's table: a step
    size 7x smaller than the other chain's).

    Examples
    --------
    >>> stuck_chains([[False, False, True], [True, True, False]])
    [1]
    """
    frac = np.mean(np.asarray(diverging, bool), axis=-1)
    return [int(c) for c in np.flatnonzero(frac > 0.5)]


def check_posterior(
    posterior: xr.Dataset,
    *,
    diverging: np.ndarray | None = None,
    energy: np.ndarray | None = None,
) -> DiagnosticsReport:
    """Run the convergence checks on a posterior Dataset with (chain, draw) dims.

    Parameters
    ----------
    posterior : xarray.Dataset
        Variables with leading dims ``chain`` and ``draw``.
    diverging : numpy.ndarray, optional
        Boolean (chain, draw) divergence flags.
    energy : numpy.ndarray, optional
        (chain, draw) Hamiltonian energy, for E-BFMI.

    Returns
    -------
    DiagnosticsReport
    """
    from arviz_stats import ess, rhat

    n_chains = posterior.sizes.get("chain", 1)
    n_draws = posterior.sizes.get("chain", 1) * posterior.sizes.get("draw", 0)
    r = rhat(posterior) if n_chains > 1 else None
    eb = ess(posterior, method="bulk")
    et = ess(posterior, method="tail")
    rows = []
    for name in posterior.data_vars:
        labels, rh = _flat(r[name]) if r is not None else (None, None)
        labels, b = _flat(eb[name])
        _, t = _flat(et[name])
        rh = np.full(len(labels), np.nan) if rh is None else rh
        rows += [
            (f"{name}{lab}", float(x), float(y), float(z))
            for lab, x, y, z in zip(labels, rh, b, t, strict=True)
        ]
    table = pd.DataFrame(rows, columns=["param", "r_hat", "ess_bulk", "ess_tail"])
    rh_bad = table["r_hat"] > RHAT_MAX
    ess_bad = (table["ess_bulk"] < ESS_MIN) | (table["ess_tail"] < ESS_MIN)
    table["ok"] = ~(rh_bad | ess_bad | table[["ess_bulk", "ess_tail"]].isna().any(axis=1))

    problems = []
    if n_chains < 2:
        problems.append("R-hat needs at least 2 chains")
    if rh_bad.any():
        worst = table.loc[table["r_hat"].idxmax()]
        problems.append(
            f"R-hat > {RHAT_MAX} for {int(rh_bad.sum())} parameter(s) "
            f"(worst {worst['param']}: {worst['r_hat']:.3f})"
        )
    if ess_bad.any():
        low = table[["ess_bulk", "ess_tail"]].min(axis=1)
        worst = table.loc[low.idxmin()]
        problems.append(
            f"ESS < {ESS_MIN} for {int(ess_bad.sum())} parameter(s) "
            f"(worst {worst['param']}: {low.min():.0f})"
        )
    n_div = int(np.sum(diverging)) if diverging is not None else 0
    if n_div:
        problems.append(f"{n_div} divergent transition(s)")
        stuck = stuck_chains(diverging)
        if stuck:
            problems.append(
                f"chain(s) {stuck} stuck (most transitions divergent): refit "
                "with another random_seed, more tuning or a higher target_accept"
            )
    bfmi = _bfmi(np.asarray(energy, float)) if energy is not None else np.full(n_chains, np.nan)
    if np.any(bfmi < BFMI_MIN):
        problems.append(f"E-BFMI < {BFMI_MIN} in {int(np.sum(bfmi < BFMI_MIN))} chain(s)")
    return DiagnosticsReport(table, n_div, bfmi, n_draws, problems)


def check_datatree(dt, var_names: list[str] | None = None) -> DiagnosticsReport:
    """Run :func:`check_posterior` on a fitted DataTree's posterior and sample_stats."""
    post = dt["posterior"].to_dataset()
    if var_names is not None:
        post = post[var_names]
    stats = dt["sample_stats"].to_dataset() if "sample_stats" in dt.children else None
    diverging = energy = None
    if stats is not None:
        if "diverging" in stats:
            diverging = stats["diverging"].values
        if "energy" in stats:
            energy = stats["energy"].values
    return check_posterior(post, diverging=diverging, energy=energy)


def warn_if_failed(report: DiagnosticsReport | None, what: str = "this result") -> None:
    """Emit a :class:`DiagnosticsWarning` when the fit failed its checks."""
    if report is not None and not report.ok:
        warnings.warn(
            f"{report.message} -- {what} may be unreliable", DiagnosticsWarning, stacklevel=3
        )


def tag(df: pd.DataFrame, report: DiagnosticsReport | None) -> pd.DataFrame:
    """Attach the diagnostics status to a result's ``attrs`` (and warn when failed)."""
    df.attrs["diagnostics"] = "ok" if report is None or report.ok else report.message
    warn_if_failed(report)
    return df
