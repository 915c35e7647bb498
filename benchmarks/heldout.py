"""Held-out prediction on real data: given m rollouts per problem, which failures would
more sampling rescue, and how many?

Protocol (issue 3). For every row of a counts file (one problem x model with n large),
draw m samples without replacement (:func:`bayes_regimes.heldout.holdout_split`, an
exact "first m samples"), fit on (m, k_train), and predict, for each problem that
failed all m, the probability of at least one success among its n - m held-out
samples; per model also the rescued fraction and pass@k at k = 100, 1,000, 10,000
(a fresh run of k samples on the same problems), with 89 % intervals. Scored against
the held-out samples: AUROC among the failures (pooled over models, and within each
model), Brier score, expected calibration error (10 bins), absolute error of the
rescued fraction per model, error of pass@k per model (truth: the unbiased estimator
on all n samples), and coverage of the 89 % intervals.

Methods, all on the same split: ``bayes_regimes[<variant>]`` -- one
:class:`~bayes_regimes.RegimeModel` per variant, fitted ONCE over all models with
``group = model`` (partial pooling across models; never one fit per model) -- and
the baselines of :mod:`bayes_regimes.baselines`: ``no_extrapolation``,
``unbiased_estimator``, ``beta_binomial_mle``, ``power_law``, ``bayes_at_n``. A
variant is ``{zi,plain}_{slab}`` for every slab in
:data:`bayes_regimes.models.regime.SLABS` (zi = with the structural point mass),
optionally ``+<prior set>`` for a prior-sensitivity run (:data:`PRIOR_SETS`, e.g.
``zi_logitnormal+narrow``).
Every fit's diagnostics are recorded and a failed fit is flagged in the table.
Within one model, a pooled fit gives every failure the same prediction, so
within-model AUROC is 0.5 by construction for every method here except
``bayes_at_n``'s ties (also 0.5); the pooled AUROC ranks failures across models.

Output: a markdown table (printed and written beside the JSON) and a JSON file
keyed by method (each with ``summary``, ``per_model``, ``pass_at_k`` and, for the
Bayesian variants, ``diagnostics`` and ``loo``), plus ``_meta`` (settings, machine,
per-repeat summaries, LOO comparison). With ``--repeats R`` the protocol runs on R
splits (seeds seed..seed+R-1) and the summary metrics are averaged over them.

Command (repository root; default data: Large Language Monkeys, 7 Pythia models x
128 MATH problems x 10,000 samples, from ``../shared/data``)::

    .venv/bin/python benchmarks/heldout.py --m 10 --seed 0 --out benchmarks/results/heldout_m10.json
    .venv/bin/python benchmarks/heldout.py --data my_counts.csv --group model --m 10

The final m = 10 numbers of the default slab (``results/heldout_summary.md``; 9 min at
load ~8)::

    .venv/bin/python benchmarks/heldout.py --m 10 --seed 0 --repeats 3 \
        --variants zi_beta plain_beta zi_logitnormal \
        --out benchmarks/results/heldout_m10_final.json

One table over several runs (here m = 3, 10, 30)::

    .venv/bin/python benchmarks/heldout.py --summarise benchmarks/results/heldout_m3.json \
        benchmarks/results/heldout_m10.json benchmarks/results/heldout_m30.json \
        --out benchmarks/results/heldout_summary.md

Any counts file (CSV, Parquet, JSONL) with ``n``, ``k``, a group column (default
``model``) and a problem column (default ``problem_id``) works, provided n > m.
Flags: ``--variants``, ``--draws/--tune/--chains/--sampler``, ``--n-draws`` (draws
behind the intervals), ``--repeats``, ``--ks``, ``--no-loo``. About 10 min for
m = 10 and one repeat of the five default variants on the shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from _common import (
    RESULTS_DIR,
    load_average,
    machine_info,
    quiet_warnings,
    write_results,
)
from heldout_report import COLUMNS, SUMMARY_COLUMNS, render, summary_table

from bayes_regimes import RegimeModel, RolloutData
from bayes_regimes.baselines import BASELINES, _assemble
from bayes_regimes.datasets import source_path
from bayes_regimes.errors import DataError
from bayes_regimes.heldout import (
    INTERVAL_PROB,
    POOLED,
    HeldoutPrediction,
    group_labels,
    predictive_intervals,
    run_heldout,
)
from bayes_regimes.heldout_regime import posterior_p_draws
from bayes_regimes.models.regime import SLABS

__all__ = ["COLUMNS", "SUMMARY_COLUMNS", "main", "render", "summarise", "summary_table"]

DEFAULT_VARIANTS = tuple(f"{kind}_{slab}" for slab in SLABS for kind in ("zi", "plain"))
DEFAULT_VARIANTS += ("zi_logitnormal+narrow",)
KS = (100, 1000, 10000)
# 2 chains x 2,000 draws: the package default's 4,000 draws (4 chains x 1,000) on 2 cores.
# With 2 x 1,000 the zero-inflated logit-normal fits fell just short of ESS 400
# (341 to 385: pi and slab_loc of the weakest models, see results/heldout_summary.md).
FIT = dict(draws=2000, tune=1000, chains=2, sampler="nutpie")


# -- data ---------------------------------------------------------------------------------
def read_counts(path: str | Path, group: str, problem: str) -> pd.DataFrame:
    """Counts as a frame with columns ``problem_id``, ``model`` (the group), ``n``, ``k``.

    Validated by :func:`bayes_regimes.read_rollouts` (one line naming the row or
    column for bad input); rows keep their order.
    """
    from bayes_regimes import read_rollouts

    data = read_rollouts(path, group=group, problem=problem)
    cells = data.cells
    return pd.DataFrame(
        {
            "problem_id": cells["problem"].to_numpy(),
            "model": cells["group"].to_numpy(),
            "n": cells["n"].to_numpy(np.int64),
            "k": cells["k"].to_numpy(np.int64),
        }
    )


#: Alternative priors for prior-sensitivity variants, ``<variant>+<name>``.
PRIOR_SETS: dict[str, dict] = {
    # The logit-normal slab's first default prior (median scale 1.65); the default is
    # now log(slab_scale) ~ Normal(1, 0.5) (median 2.7), chosen at m = 10 and
    # confirmed at m = 3 and m = 30 (see results/heldout_summary.md).
    "narrow": {"log_slab_scale": (0.5, 0.75)},
    "wide": {"log_slab_scale": (1.0, 0.5)},
}


def _variant(name: str) -> dict:
    """RegimeModel keywords of a variant ``{zi,plain}_<slab>[+<prior set>]``."""
    base, _, prior = name.partition("+")
    kind, _, slab = base.partition("_")
    if kind not in ("zi", "plain") or slab not in SLABS or (prior and prior not in PRIOR_SETS):
        raise ValueError(
            f"unknown variant {name!r}: use zi_<slab> or plain_<slab>, slab in {SLABS}, "
            f"optionally +<prior set> in {list(PRIOR_SETS)}"
        )
    out = {"slab": slab, "structural": kind == "zi"}
    return {**out, "priors": PRIOR_SETS[prior]} if prior else out


# -- the Bayesian method ------------------------------------------------------------------
def fit_variant(split: pd.DataFrame, variant: str, fit: dict, seed: int) -> RegimeModel:
    """One RegimeModel over all groups, fitted on the training counts of ``split``."""
    train = split.assign(n=split["n_train"], k=split["k_train"])[["problem_id", "model", "n", "k"]]
    data = RolloutData.from_counts(train, group="model")
    model = RegimeModel(data, **_variant(variant))
    model.fit(random_seed=seed, progressbar=False, **fit)
    return model


def bayes_prediction(
    model: RegimeModel,
    split: pd.DataFrame,
    ks: Sequence[int],
    *,
    name: str,
    interval_prob: float = INTERVAL_PROB,
    n_draws: int = 400,
    random_seed: int | np.random.Generator | None = None,
) -> HeldoutPrediction:
    """A fitted model's predictions in the baselines' format.

    Rescue probability of a failure: the posterior mean of G(n_test). pass@k: the
    posterior mean of the fresh-run pass@k per group (pooled: weighted by problems).
    Intervals: predictive, from posterior draws of every cell's p
    (:func:`bayes_regimes.heldout.predictive_intervals`).
    """
    rng = np.random.default_rng(random_seed)
    labels = group_labels(split, "model")
    k_train = split["k_train"].to_numpy(np.int64)
    gain = model.expected_gain(split["n_test"].to_numpy(np.int64))["gain_mean"].to_numpy()
    passk = model.pass_at_k(list(ks), kinds=("fresh_run",))
    sizes = pd.Series(labels).value_counts()
    table = passk.pivot(index="group", columns="k", values="mean")[list(ks)]
    estimate = {g: table.loc[g].to_numpy() for g in table.index}
    weights = sizes.reindex(table.index).to_numpy(float)
    estimate[POOLED] = (table.to_numpy() * weights[:, None]).sum(axis=0) / weights.sum()
    intervals = predictive_intervals(
        split,
        posterior_p_draws(model, n_draws, rng),
        ks,
        group="model",
        interval_prob=interval_prob,
        random_seed=rng,
    )
    return _assemble(
        name,
        labels,
        k_train,
        gain,
        None,
        np.asarray(ks),
        passk_estimate=estimate,
        intervals=intervals,
    )


def _diagnostics(model: RegimeModel, seconds: float) -> dict:
    rep = model.diagnostics()
    table = rep.table
    return {
        "ok": bool(rep.ok),
        "message": "ok" if rep.ok else rep.message,
        "max_rhat": float(table["r_hat"].max()),
        "min_ess_bulk": float(table["ess_bulk"].min()),
        "min_ess_tail": float(table["ess_tail"].min()),
        "divergences": int(rep.divergences),
        "fit_seconds": round(seconds, 1),
    }


def _posterior_summary(model: RegimeModel) -> dict:
    names = list(model.diagnostic_vars)
    post = model.posterior[names].mean(("chain", "draw"))
    groups = post["group"].values.tolist()
    return {v: dict(zip(groups, post[v].values.tolist(), strict=True)) for v in names}


class BayesMethod:
    """A held-out method (the baselines' signature) that fits one RegimeModel variant
    and keeps the fitted model, its diagnostics and its posterior means."""

    def __init__(self, variant: str, fit: dict, seed: int, n_draws: int) -> None:
        self.variant, self.fit, self.seed, self.n_draws = variant, fit, seed, n_draws
        self.model: RegimeModel | None = None
        self.records: list[dict] = []

    @property
    def name(self) -> str:
        return f"bayes_regimes[{self.variant}]"

    def __call__(self, split, ks, *, group="model", interval_prob=INTERVAL_PROB, random_seed=None):
        if group != "model":
            raise ValueError("benchmarks/heldout.py names the group column 'model'")
        start = time.perf_counter()
        self.model = fit_variant(split, self.variant, self.fit, self.seed)
        seconds = time.perf_counter() - start
        self.records.append(
            {"diagnostics": _diagnostics(self.model, seconds), "posterior_mean": None}
        )
        self.records[-1]["posterior_mean"] = _posterior_summary(self.model)
        return bayes_prediction(
            self.model,
            split,
            ks,
            name=self.name,
            interval_prob=interval_prob,
            n_draws=self.n_draws,
            random_seed=random_seed,
        )


# -- scoring and output -------------------------------------------------------------------
def _coverage_all(rescue: pd.DataFrame, passk: pd.DataFrame) -> float:
    """Coverage over every 89 % interval of a method: rescued fraction per model and
    pass@k per model and k (pooled rows excluded; NaN where the method has none)."""
    values = pd.concat(
        [
            rescue.loc[rescue["group"] != POOLED, "frac_covered"],
            passk.loc[passk["group"] != POOLED, "covered"],
        ]
    ).dropna()
    return float(values.mean()) if len(values) else float("nan")


def summarise(result: dict[str, pd.DataFrame], ks: Sequence[int]) -> pd.DataFrame:
    """One row per (method, repeat) with every headline metric."""
    summary = result["summary"].copy()
    rescue, passk = result["rescue"], result["pass_at_k"]
    within, cover = [], []
    for _, row in summary.iterrows():
        sel = (rescue["method"] == row["method"]) & (rescue["m"] == row["m"])
        groups = rescue[sel & (rescue["group"] != POOLED)]
        within.append(groups["auroc"].mean() if groups["auroc"].notna().any() else np.nan)
        psel = (passk["method"] == row["method"]) & (passk["m"] == row["m"])
        cover.append(_coverage_all(rescue[sel], passk[psel]))
    summary.insert(3, "auroc_within_model", within)
    summary["coverage_89"] = cover
    for kk in ks:
        sel = passk[(passk["group"] != POOLED) & (passk["k"] == kk)]
        bias = sel.groupby("method")["error"].mean()
        summary[f"pass@{kk}_bias"] = summary["method"].map(bias)
    return summary.rename(columns={"auroc": "auroc_pooled"})


def _loo_table(methods: dict[str, BayesMethod]) -> list[dict]:
    """Pattern-weighted LOO of every fitted variant, compared; a variant whose LOO
    fails (PSIS on a stuck chain, whose draws repeat) is reported, not compared."""
    from bayes_regimes.compare import compare, loo

    fitted, failed = {}, []
    for name, bm in methods.items():
        if bm.model is None:
            continue
        try:
            loo(bm.model)
        except ValueError as err:
            failed.append({"model": name, "error": f"LOO failed: {err}"})
        else:
            fitted[name] = bm.model
    if not fitted:
        return failed
    table = compare(fitted).reset_index()
    keep = ["model", "rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "n_bad_k"]
    return table[keep].to_dict(orient="records") + failed


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark; returns the results written to the JSON file."""
    args = _parser().parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        markdown = render(results, results["_meta"]["settings"]["m"])
        Path(args.render).with_suffix(".md").write_text(markdown)
        print(markdown)
        return results
    if args.summarise:
        table = summary_table(args.summarise)
        if args.out:
            Path(args.out).write_text(table + "\n")
        print(table)
        return {"table": table}
    data_path = Path(args.data) if args.data else source_path("monkeys")
    counts = read_counts(data_path, args.group, args.problem)
    if int(counts["n"].min()) <= args.m:
        raise DataError(f"column 'n': every row needs n > m = {args.m}")
    ks = tuple(int(k) for k in args.ks)
    fit = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "sampler": args.sampler,
    }
    seeds = [args.seed + r for r in range(args.repeats)]
    machine = machine_info()
    per_repeat, tables, loo = [], [], []
    bayes_records: dict[str, list] = {}
    first = {}
    for seed in seeds:
        bayes = {
            f"bayes_regimes[{v}]": BayesMethod(v, fit, seed, args.n_draws) for v in args.variants
        }
        methods = {**bayes, **BASELINES}
        kwargs = {name: {"n_draws": args.n_draws} for name in BASELINES}
        with quiet_warnings():  # diagnostics are recorded per fit instead
            result = run_heldout(
                counts,
                methods,
                ms=(args.m,),
                ks=ks,
                group="model",
                random_seed=seed,
                method_kwargs=kwargs,
            )
        summary = summarise(result, ks).assign(seed=seed)
        for name, bm in bayes.items():
            bayes_records.setdefault(name, []).extend(bm.records)
        summary["fit_ok"] = summary["method"].map(
            lambda n, b=bayes: b[n].records[-1]["diagnostics"]["ok"] if n in b else None
        )
        per_repeat.append(summary)
        tables.append(result)
        if seed == seeds[0]:
            first = result
            if not args.no_loo:
                with quiet_warnings():
                    loo = _loo_table(bayes)
        print(f"seed {seed}: done ({len(methods)} methods)", file=sys.stderr, flush=True)
    all_rows = pd.concat(per_repeat, ignore_index=True)
    results: dict = {}
    for name in all_rows["method"].unique():
        rows = all_rows[all_rows["method"] == name]
        numeric = rows.drop(columns=["method", "m", "seed", "fit_ok"]).mean(numeric_only=True)
        entry = {"summary": {**numeric.to_dict(), "fit_ok": _all_ok(rows["fit_ok"])}}
        per_model = pd.concat([t["rescue"][t["rescue"]["method"] == name] for t in tables])
        entry["per_model"] = per_model.drop(columns=["method"]).to_dict(orient="records")
        passk = pd.concat([t["pass_at_k"][t["pass_at_k"]["method"] == name] for t in tables])
        entry["pass_at_k"] = passk.drop(columns=["method"]).to_dict(orient="records")
        if name in bayes_records:
            entry["diagnostics"] = [r["diagnostics"] for r in bayes_records[name]]
            entry["posterior_mean"] = [r["posterior_mean"] for r in bayes_records[name]]
            entry["loo"] = next((r for r in loo if r["model"] == name), None)
        results[name] = entry
    results["_meta"] = {
        "settings": {
            "data": str(data_path),
            "n_rows": int(len(counts)),
            "n_groups": int(counts["model"].nunique()),
            "m": args.m,
            "seeds": seeds,
            "repeats": args.repeats,
            "ks": list(ks),
            "variants": list(args.variants),
            "fit": fit,
            "n_draws": args.n_draws,
            "interval_prob": INTERVAL_PROB,
            "command": "python benchmarks/heldout.py " + " ".join(argv or sys.argv[1:]),
        },
        "machine": {**machine, "load_average_end": load_average()},
        "per_repeat": all_rows.to_dict(orient="records"),
        "rescued_fraction_table": _frac_table(first["rescue"]),
        "loo": loo,
    }
    out = Path(args.out) if args.out else RESULTS_DIR / f"heldout_m{args.m}.json"
    markdown = render(results, args.m)
    write_results(out.with_suffix(""), _rounded(results), markdown)
    print(markdown)
    return results


def _rounded(obj, digits: int = 5):
    """Floats to ``digits`` significant digits, recursively (keeps the JSON small)."""
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_rounded(v, digits) for v in obj]
    if isinstance(obj, float | np.floating) and np.isfinite(obj) and obj != 0:
        return float(f"{float(obj):.{digits}g}")
    return obj


def _all_ok(flags: pd.Series):
    known = [bool(f) for f in flags if f is not None and not pd.isna(f)]
    return all(known) if known else None


def _frac_table(rescue: pd.DataFrame) -> list[dict]:
    groups = rescue[rescue["group"] != POOLED]
    truth = groups.drop_duplicates("group").set_index("group")[["n_failures", "frac_true"]]
    table = truth.rename(columns={"n_failures": "failures", "frac_true": "truth"})
    pred = groups.pivot_table(index="group", columns="method", values="frac_pred", sort=False)
    table = table.join(pred)
    return table.reset_index().to_dict(orient="records")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="counts file (default: Large Language Monkeys)")
    p.add_argument("--m", type=int, default=10, help="training samples per problem")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="splits (seeds seed..seed+R-1)")
    p.add_argument("--out", help="JSON path (the .md goes beside it)")
    p.add_argument("--group", default="model", help="group (model) column")
    p.add_argument("--problem", default="problem_id", help="problem column")
    p.add_argument("--ks", type=int, nargs="+", default=list(KS))
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    p.add_argument("--draws", type=int, default=FIT["draws"])
    p.add_argument("--tune", type=int, default=FIT["tune"])
    p.add_argument("--chains", type=int, default=FIT["chains"])
    p.add_argument("--sampler", default=FIT["sampler"])
    p.add_argument("--n-draws", type=int, default=400, help="draws behind the intervals")
    p.add_argument("--no-loo", action="store_true", help="skip the LOO comparison")
    p.add_argument("--render", metavar="JSON", help="only re-write the markdown of a result")
    p.add_argument(
        "--summarise",
        nargs="+",
        metavar="JSON",
        help="only print (and with --out write) one table over saved results",
    )
    return p


if __name__ == "__main__":
    main()
