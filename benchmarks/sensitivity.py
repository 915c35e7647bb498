"""Prior sensitivity of the structural fraction and the expected gain on real data.

Power-scaling sensitivity (Kallioinen et al. 2024; ArviZ 1.x ``psense``, through
:func:`bayes_regimes.sensitivity.prior_sensitivity`) of the quantities users act on,
per model: ``structural_fraction`` (mean over the failed problems of P(p < epsilon),
epsilon = 1e-3) and ``gain_<m>`` (mean probability that m more rollouts rescue a
failed problem), beside the hyper-parameters. A sensitivity >= 0.05 means the prior
(or the likelihood) is informative; both >= 0.05 is flagged "prior-data conflict".

Data: Large Language Monkeys (7 Pythia models x 128 MATH problems), the first m = 10
samples per problem (``holdout_split``, seed 0), the same training counts as the
held-out benchmark. One :class:`~bayes_regimes.RegimeModel` over all models (group =
model) per slab family, the package's default slab first: whether a failure is
"structural" or "tiny p" is decided by the slab's left tail and its prior, so the
run shows both (1) the power-scaling sensitivity to the whole prior and to each
top-level prior component alone (``prior_vars``: e.g. only the slab-width prior) and
(2) how far the answer moves between slab families. Beside them, what the 9,990
held-out samples show: the fraction of the training failures never solved (a proxy
for the structural fraction: p below ~1e-4) and the fraction rescued within 100 and
1,000 more samples.

Output: a markdown table (printed), ``benchmarks/results/sensitivity.json`` and
``sensitivity.md``, and per slab the plots ``sensitivity_prior_<slab>.png`` (posterior
ECDFs of the structural fraction and the gains with the prior power-scaled by 0.8 and
1.25) and ``sensitivity_likelihood_<slab>.png`` (the same for the likelihood).

Command (repository root; ~5 min on the shared 2-core machine)::

    .venv/bin/python benchmarks/sensitivity.py
    .venv/bin/python benchmarks/sensitivity.py --slabs logitnormal --m 10 --seed 0 \
        --draws 1000 --out sensitivity_quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _common import (  # noqa: E402
    RESULTS_DIR,
    load_average,
    machine_info,
    markdown_table,
    quiet_warnings,
    write_results,
)
from heldout import read_counts  # noqa: E402

from bayes_regimes import RegimeModel, RolloutData  # noqa: E402
from bayes_regimes.datasets import source_path  # noqa: E402
from bayes_regimes.heldout import holdout_split  # noqa: E402
from bayes_regimes.models.regime import SLABS  # noqa: E402
from bayes_regimes.sensitivity import (  # noqa: E402
    derived_draws,
    plot_prior_sensitivity,
    prior_sensitivity,
)

DEFAULT_SLAB = RegimeModel.__init__.__defaults__[0]
CI = 0.89


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="counts file (default: Large Language Monkeys)")
    ap.add_argument("--group", default="model")
    ap.add_argument("--problem", default="problem_id")
    ap.add_argument("--m", type=int, default=10, help="training samples per problem")
    ap.add_argument("--seed", type=int, default=0)
    others = [s for s in SLABS if s != DEFAULT_SLAB]
    ap.add_argument("--slabs", nargs="+", default=[DEFAULT_SLAB, *others], choices=SLABS)
    ap.add_argument("--gains", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--out", default="sensitivity")
    ap.add_argument("--render", metavar="JSON", help="only re-write the markdown of a result")
    return ap.parse_args(argv)


def heldout_truth(split: pd.DataFrame, gains) -> pd.DataFrame:
    """Per model, among the training failures: fraction never solved in the held-out
    samples, and fraction solved within the first g held-out samples (exact expectation
    over which g of the held-out samples come first: hypergeometric)."""
    from scipy.special import gammaln

    fail = split[split["k_train"] == 0]
    out = {
        "never_solved": fail.groupby("model", sort=False)["k_test"].apply(lambda k: (k == 0).mean())
    }
    n, k = fail["n_test"].to_numpy(float), fail["k_test"].to_numpy(float)
    for g in gains:
        # P(no success in g of the n held-out samples) = C(n - k, g) / C(n, g)
        log_none = np.where(
            n - k >= g,
            gammaln(n - k + 1) - gammaln(n - k - g + 1) - gammaln(n + 1) + gammaln(n - g + 1),
            -np.inf,
        )
        rescued = pd.Series(1 - np.exp(log_none), index=fail.index)
        out[f"rescued_{g}"] = rescued.groupby(fail["model"], sort=False).mean()
    return pd.DataFrame(out)


def summarise_draws(model: RegimeModel, gains) -> pd.DataFrame:
    """Posterior mean and 89 % interval of the derived quantities per group."""
    ds = derived_draws(model, gains)
    rows = []
    lo, hi = (1 - CI) / 2, 1 - (1 - CI) / 2
    for name in ds.data_vars:
        da = ds[name].stack(sample=("chain", "draw"))
        for g in ds["group"].values:
            x = da.sel(group=g).values
            rows.append(
                {
                    "variable": name,
                    "group": str(g),
                    "mean": float(np.nanmean(x)),
                    "low": float(np.nanquantile(x, lo)),
                    "high": float(np.nanquantile(x, hi)),
                }
            )
    return pd.DataFrame(rows)


def top_priors(model: RegimeModel) -> list[str]:
    """The top-level prior components (those the default power-scaling scales)."""
    free = [rv.name for rv in model.build_model().free_RVs]
    top = [n for n in free if n.endswith(("_loc", "_sd"))]
    return top or free


def run_slab(slab: str, data: RolloutData, args) -> tuple[dict, RegimeModel]:
    model = RegimeModel(data, slab=slab)
    start = time.perf_counter()
    with quiet_warnings():  # the diagnostics are recorded below
        model.fit(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            random_seed=args.seed,
            progressbar=False,
        )
    fit_s = time.perf_counter() - start
    diag = model.diagnostics()
    with quiet_warnings():
        table = prior_sensitivity(model, args.gains)
        components = []
        for var in top_priors(model):
            part = prior_sensitivity(model, args.gains, prior_vars=[var])
            components.append(
                part[["quantity", "variable", "group", "prior"]].assign(prior_var=var)
            )
    entry = {
        "slab": slab,
        "config": model.config,
        "fit_seconds": fit_s,
        "diagnostics": {"ok": bool(diag.ok), "message": diag.message, **diag.summary()},
        "sensitivity": table.to_dict(orient="records"),
        "components": pd.concat(components).to_dict(orient="records"),
        "posterior": summarise_draws(model, args.gains).to_dict(orient="records"),
    }
    return entry, model


def main_rows(entry: dict, truth: pd.DataFrame, gains) -> list[dict]:
    """One row per (slab, group): posterior and sensitivities of the derived quantities."""
    sens = pd.DataFrame(entry["sensitivity"]).set_index(["variable", "group"])
    post = pd.DataFrame(entry["posterior"]).set_index(["variable", "group"])
    names = ["structural_fraction"] + [f"gain_{g}" for g in gains]
    truth_cols = {"structural_fraction": "never_solved"} | {
        f"gain_{g}": f"rescued_{g}" for g in gains
    }
    rows = []
    for group in truth.index:
        for name in names:
            p = post.loc[(name, group)]
            s = sens.loc[(name, group)]
            rows.append(
                {
                    "slab": entry["slab"],
                    "group": group,
                    "quantity": name,
                    "posterior": f"{p['mean']:.3f} [{p['low']:.3f}, {p['high']:.3f}]",
                    "heldout": float(truth.loc[group, truth_cols[name]]),
                    "prior": s["prior"],
                    "likelihood": s["likelihood"],
                    "diagnosis": s["diagnosis"],
                }
            )
    return rows


def component_rows(entry: dict) -> list[dict]:
    """Largest prior sensitivity over groups, per quantity and prior component."""
    comp = pd.DataFrame(entry["components"])
    comp = comp[comp["variable"].str.startswith(("structural_fraction", "gain_"))]
    wide = comp.groupby(["variable", "prior_var"])["prior"].max().unstack("prior_var")
    return [{"slab": entry["slab"], "quantity": q, **row} for q, row in wide.iterrows()]


def render(results: dict, gains) -> str:
    truth = pd.DataFrame(results["heldout_truth"]).set_index("group")
    lines = [
        "# Prior sensitivity on real data (`benchmarks/sensitivity.py`, "
        f"m = {results['settings']['m']})",
        "",
        "Power-scaling sensitivity (ArviZ `psense`) of the structural fraction (mean P(p < 1e-3)"
        " over the failed problems) and the expected gain of m more samples (mean over the "
        "failed problems), per model. `held-out` = what the unseen samples show: for "
        "gain_m, the share of the failures solved within m more samples (the same "
        "quantity); for structural_fraction, the share never solved in all 10,000 - m "
        "held-out samples, roughly the share with p below 1e-4, hence a lower bound for "
        "the share below 1e-3 (up to sampling noise). Sensitivity >= 0.05: the prior "
        "(likelihood) is informative; 'ok' below both.",
        "",
    ]
    cols = {
        "slab": "slab",
        "group": "model",
        "quantity": "quantity",
        "posterior": "posterior mean [89%]",
        "heldout": "held-out",
        "prior": "prior sens.",
        "likelihood": "lik. sens.",
        "diagnosis": "diagnosis",
    }
    comp_cols = None
    comp_all = []
    for slab, entry in results["slabs"].items():
        d = entry["diagnostics"]
        lines += [
            f"## slab = `{slab}`" + (" (package default)" if slab == DEFAULT_SLAB else ""),
            "",
            f"Fit: {entry['fit_seconds']:.0f} s, diagnostics "
            + ("OK" if d["ok"] else f"**FAILED** ({d['message']})")
            + f" (max R-hat {d['max_r_hat']:.3f}, min ESS bulk {d['min_ess_bulk']:.0f}, "
            f"divergences {d['divergences']}).",
            "",
            markdown_table(main_rows(entry, truth, gains), cols),
            "",
        ]
        rows = component_rows(entry)
        comp_all += rows
        comp_cols = {"slab": "slab", "quantity": "quantity"} | {
            k: f"{k} alone" for k in rows[0] if k not in ("slab", "quantity")
        }
        lines += [
            "Largest prior sensitivity over the models when only one prior component is "
            "power-scaled:",
            "",
            markdown_table(rows, comp_cols),
            "",
        ]
    lines += [
        f"Load average at the end: {results['machine'].get('load_average_end')}. "
        f"Command: `{results['settings']['command']}`",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        md = render(results, results["settings"]["gains"])
        Path(args.render).with_suffix(".md").write_text(md + "\n")
        print(md)
        return results
    path = Path(args.data) if args.data else source_path("monkeys")
    counts = read_counts(path, args.group, args.problem)
    split = holdout_split(counts, args.m, random_seed=args.seed)
    train = split.assign(n=split["n_train"], k=split["k_train"])[["problem_id", "model", "n", "k"]]
    data = RolloutData.from_counts(train, group="model")
    truth = heldout_truth(split, args.gains)
    results = {
        "machine": machine_info(),
        "settings": vars(args)
        | {
            "data": str(path),
            "command": "python benchmarks/sensitivity.py " + " ".join(argv or sys.argv[1:]),
        },
        "heldout_truth": truth.reset_index(names="group").to_dict(orient="records"),
        "slabs": {},
    }
    for slab in args.slabs:
        entry, model = run_slab(slab, data, args)
        results["slabs"][slab] = entry
        print(
            f"{slab}: fit {entry['fit_seconds']:.0f} s, {entry['diagnostics']['message']}",
            file=sys.stderr,
        )
        names = ["structural_fraction"] + [f"gain_{g}" for g in args.gains]
        stem = Path(args.out)
        stem = RESULTS_DIR / stem if stem.parent == Path(".") else stem
        for component in ("prior", "likelihood"):
            with quiet_warnings():
                fig = plot_prior_sensitivity(
                    model, args.gains, component=component, var_names=names
                )
            fig.suptitle(f"slab = {slab}: power-scaling the {component}, posterior ECDFs")
            fig.savefig(stem.with_name(f"{stem.name}_{component}_{slab}.png"), dpi=80)
            plt.close(fig)
    results["machine"]["load_average_end"] = load_average()
    md = render(results, args.gains)
    write_results(args.out, results, md)
    print(md)
    return results


if __name__ == "__main__":
    main()
