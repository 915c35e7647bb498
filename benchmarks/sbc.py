"""Simulation-based calibration of every model variant (the full run).

For each variant -- zero-inflated and plain, Beta and logit-normal slab, one group and
several groups -- draw pi and the slab's parameters (mu, kappa; slab_loc, slab_scale)
per group from the model's own prior, simulate a
benchmark, fit it with the package's ``fit`` (nutpie, default target_accept) and
rank the truth among thinned posterior draws (:mod:`bayes_regimes.sbc`). Prints a
markdown table (variant, parameter, simulations, chi-square and ECDF p-values,
failed fits) and writes ``benchmarks/results/sbc.json``, ``sbc.md`` and the ECDF
plot ``sbc_ecdf.png``. Results are rewritten after each variant, so an
interrupted run keeps what it finished.

100 simulations per variant by default (not 200: that would take about 35 min on
the shared 2-core machine; 100 took 17 min there). Command (repository root)::

    .venv/bin/python benchmarks/sbc.py
    .venv/bin/python benchmarks/sbc.py --n-sims 20 --out sbc_quick   # ~3 min

Flags: ``--n-sims``, ``--n-problems`` (per group), ``--n`` (rollouts per problem),
``--groups`` (of the grouped variants), ``--draws/--tune/--chains``,
``--n-rank-draws``, ``--variants`` (default zi, plain, zi_grouped, plain_grouped, the
Beta slab; also zi_logitnormal, zi_logitnormal_grouped, plain_logitnormal, the
logit-normal slab -- the package default -- slower), ``--adaptation {low_rank,diag}``
(nutpie's mass matrix; default the package's), ``--seed``, ``--out STEM``,
``--append`` (keep the other variants already in OUT.json). The comparison of
adaptations, and the reduced logit-normal run (30 simulations each; ~2.5 min
ungrouped, ~19 min grouped at load ~12)::

    .venv/bin/python benchmarks/sbc.py --variants zi zi_grouped plain_grouped \
        --adaptation diag --out sbc_diag
    .venv/bin/python benchmarks/sbc.py --variants zi_logitnormal zi_logitnormal_grouped \
        --n-sims 30 --append --adaptation low_rank --out sbc
    .venv/bin/python benchmarks/sbc.py --variants zi_logitnormal zi_logitnormal_grouped \
        --n-sims 30 --append --adaptation diag --out sbc_diag

The default logit-normal model (ungrouped, zero-inflated and plain), the crossed
problem x model model and the intervention model (:mod:`bayes_regimes.sbc_models`:
their hyper-parameters plus the structural indicator z and p of one failed cell),
each run alone, one after the other (``nice``: the machine is shared)::

    nice -n 10 .venv/bin/python benchmarks/sbc.py --variants zi_logitnormal \
        plain_logitnormal --n-sims 100 --append --out sbc
    nice -n 10 .venv/bin/python benchmarks/sbc.py --variants crossed --n-sims 50 \
        --append --out sbc_models
    nice -n 10 .venv/bin/python benchmarks/sbc.py --variants interventions --n-sims 50 \
        --append --out sbc_models

Design flags of the last two: ``--crossed-models 4 --crossed-problems 15 --n 10``
(rollouts per cell) and ``--iv-problems 20 --iv-conditions retry hint steer
--iv-contexts 10 --iv-attempts 3`` (one feature, one group, no selection
condition). Each fit compiles its own model (~10-30 s on the shared machine), so
50 simulations take about 15-25 min per model. ``--misspecify`` generates the truth
from a deliberately wrong prior (see ``MISSPECIFIED``): the tests must then fail.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _common import (
    RESULTS_DIR,
    fmt,
    load_average,
    machine_info,
    markdown_table,
    write_results,
)

from bayes_regimes import RegimeModel
from bayes_regimes.sbc import SBCResult, plot_sbc, run_sbc
from bayes_regimes.sbc_models import CrossedDesign, InterventionDesign, run_design_sbc

_BETA = functools.partial(RegimeModel, slab="beta")
VARIANTS = {
    # The Beta slab (zi = zero-inflated: the structural point mass at p = 0).
    "zi": (_BETA, False),
    "plain": (functools.partial(_BETA, structural=False), False),
    "zi_grouped": (_BETA, True),
    "plain_grouped": (functools.partial(_BETA, structural=False), True),
    # The logit-normal slab (not in the default run: ~30 s to compile, slower fits).
    "zi_logitnormal": (functools.partial(RegimeModel, slab="logitnormal"), False),
    "zi_logitnormal_grouped": (functools.partial(RegimeModel, slab="logitnormal"), True),
    "plain_logitnormal": (
        functools.partial(RegimeModel, slab="logitnormal", structural=False),
        False,
    ),
}
#: Variants of the non-core models (bayes_regimes.sbc_models), built from the flags.
DESIGNS = {
    "crossed": lambda a: CrossedDesign(a.crossed_models, a.crossed_problems, a.n, seed=a.seed),
    # One model covariate, evenly spaced over the models (e.g. log parameter count).
    "crossed_covariates": lambda a: CrossedDesign(
        a.crossed_models,
        a.crossed_problems,
        a.n,
        model_kwargs={
            "model_covariates": {"x": {f"m{j:02d}": float(j) for j in range(a.crossed_models)}}
        },
        seed=a.seed,
    ),
    "interventions": lambda a: InterventionDesign(
        a.iv_problems, a.iv_conditions, a.iv_contexts, a.iv_attempts, seed=a.seed
    ),
}
#: Deliberately wrong priors of the truth (``--misspecify``): the structural
#: probability's prior far from the fitted model's.
MISSPECIFIED = {
    "core": {"logit_pi": (2.0, 0.3)},
    "crossed": {"logit_pi": (2.0, 0.3)},
    "crossed_covariates": {"logit_pi": (2.0, 0.3)},
    "interventions": {"lam": (1.0, 0.3)},
}
DEFAULT_VARIANTS = ["zi", "plain", "zi_grouped", "plain_grouped"]
COLUMNS = {
    "variant": "model",
    "parameter": "parameter",
    "n_sims": "n_sims",
    "chi2_pvalue": "chi2 p-value",
    "ecdf_pvalue": "ECDF p-value",
    "mean_pit": "mean PIT",
    "sd_pit": "sd PIT",
    "failed_fits": "failed fits",
}
CHOICES = [*VARIANTS, *DESIGNS]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sims", type=int, default=100)
    ap.add_argument("--n-problems", type=int, default=100)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--n-rank-draws", type=int, default=99)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=CHOICES)
    ap.add_argument("--crossed-models", type=int, default=4)
    ap.add_argument("--crossed-problems", type=int, default=15)
    ap.add_argument("--iv-problems", type=int, default=20)
    ap.add_argument("--iv-conditions", nargs="+", default=["retry", "hint", "steer"])
    ap.add_argument("--iv-contexts", type=int, default=10)
    ap.add_argument("--iv-attempts", type=int, default=3)
    ap.add_argument(
        "--misspecify",
        action="store_true",
        help="draw the truth from a deliberately wrong prior (MISSPECIFIED): must fail",
    )
    ap.add_argument(
        "--adaptation",
        choices=["low_rank", "diag"],
        default=None,
        help="nutpie mass-matrix adaptation (default: the package's, BaseModel.nutpie_low_rank)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="sbc")
    ap.add_argument(
        "--append",
        action="store_true",
        help="keep the other variants already in OUT.json (a variant run here replaces its own)",
    )
    return ap.parse_args(argv)


def with_adaptation(make, adaptation: str | None):
    """Wrap a model factory to force nutpie's mass-matrix adaptation (None: default)."""

    def make_model(data):
        model = make(data)
        if adaptation is not None:
            model.nutpie_low_rank = adaptation == "low_rank"
        return model

    return make_model


def png_path(out: str) -> Path:
    stem = Path(out)
    stem = RESULTS_DIR / stem if stem.parent == Path(".") else stem
    return stem.with_name(stem.name + "_ecdf.png")


def table_rows(name: str, res) -> list[dict]:
    uni = res.uniformity().reset_index()
    failed = f"{res.n_failed}/{res.ranks.sizes['simulation']}"
    raised = len(res.settings.get("errored", []))
    failed += f" (+{raised} raised, no ranks)" if raised else ""
    return [
        {"variant": name, **row, "failed_fits": failed} for row in uni.to_dict(orient="records")
    ]


def json_path(out: str) -> Path:
    stem = Path(out)
    return (RESULTS_DIR / stem if stem.parent == Path(".") else stem).with_suffix(".json")


def previous(out: str, replace: list[str]) -> tuple[dict, list[SBCResult]]:
    """Variants already in ``OUT.json`` (minus those in ``replace``), as saved entries
    and as :class:`SBCResult` objects (for the table and the ECDF plot)."""
    path = json_path(out)
    if not path.is_file():
        return {}, []
    saved = json.loads(path.read_text()).get("variants", {})
    kept = {k: v for k, v in saved.items() if k not in replace}
    return kept, [SBCResult.from_dict(v) for v in kept.values()]


def run_variant(
    name: str, args: argparse.Namespace, seed: int, progress, checkpoint=None
) -> SBCResult:
    """One variant's SBC (with the truth from the wrong prior under ``--misspecify``)."""
    common = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "n_rank_draws": args.n_rank_draws,
        "random_seed": seed,
        "progress": progress,
    }
    label = f"{name}_misspecified" if args.misspecify else name
    if name in DESIGNS:
        wrong = {"priors": MISSPECIFIED[name]} if args.misspecify else None
        return run_design_sbc(
            DESIGNS[name](args),
            args.n_sims,
            label=label,
            prior_overrides=wrong,
            checkpoint=checkpoint,
            **common,
        )
    make_model, grouped = VARIANTS[name]
    make_model = with_adaptation(make_model, args.adaptation)
    prior_from = None
    if args.misspecify:

        def prior_from(data, make=VARIANTS[name][0]):
            return make(data, priors=MISSPECIFIED["core"])

    return run_sbc(
        make_model,
        args.n_sims,
        n_groups=args.groups if grouped else 1,
        n_problems=args.n_problems,
        n=args.n,
        label=label,
        prior_from=prior_from,
        **common,
    )


def _load(load: dict) -> str:
    """1-minute load averages at the start and end of a run."""
    ends = [x[0] for x in (load.get("start"), load.get("end")) if x]
    return " at load " + " -> ".join(f"{x:.1f}" for x in ends) if ends else ""


def summary(variants: dict) -> str:
    """One line per variant: Bonferroni p-value, failed fits, time, load, command."""
    lines = ["", "Per variant: Bonferroni p-value over quantities x 2 tests (min p x tests);"]
    lines += ["fits that failed the package's diagnostics are kept in the ranks.", ""]
    for name, v in variants.items():
        reasons = ", ".join(f"{k} {n}" for k, n in v.get("failure_reasons", {}).items() if n)
        raised = len(v.get("settings", {}).get("errored", []))
        wall = v.get("wall_seconds")
        lines.append(
            f"- `{name}`: Bonferroni p = {fmt(v.get('bonferroni_pvalue'))}; "
            f"{v['n_sims']} simulations, {v['n_failed_fits']} failed diagnostics"
            + (f" ({reasons})" if reasons else "")
            + (f", {raised} fit(s) raised" if raised else "")
            + (f"; {wall / 60:.1f} min" if wall else "")
            + (_load(v["load_average"]) if v.get("load_average") else "")
            + (f"; `{v['command']}`" if v.get("command") else "")
            + (
                f" **(interrupted: partial, {v['n_sims']} of "
                f"{v['settings'].get('n_sims_planned')} planned)**"
                if v.get("complete") is False
                else ""
            )
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    command = "python benchmarks/sbc.py " + " ".join(sys.argv[1:] if argv is None else argv)
    labels = [f"{n}_misspecified" if args.misspecify else n for n in args.variants]
    kept, done = previous(args.out, labels) if args.append else ({}, [])
    results = {"machine": machine_info(), "settings": vars(args), "variants": dict(kept)}
    rows = [row for name, res in zip(kept, done, strict=True) for row in table_rows(name, res)]
    md = ""
    for i, name in enumerate(args.variants):
        start = time.perf_counter()
        load_start = load_average()

        def progress(k, total, name=name, start=start):
            if k % 10 == 0 or k == total:
                rate = (time.perf_counter() - start) / k
                print(f"  {name}: {k}/{total} ({rate:.1f} s/simulation)", file=sys.stderr)

        def save(res, complete=False, start=start, load_start=load_start, base=rows):
            """Write OUT.json / OUT.md with ``res`` (also partial, after each fit)."""
            entry = res.to_dict()
            entry["wall_seconds"] = time.perf_counter() - start
            entry["load_average"] = {"start": load_start, "end": load_average()}
            entry["command"] = command
            entry["complete"] = complete
            results["variants"][res.label] = entry
            results["machine"]["load_average_end"] = load_average()
            now = [r for r in base if r["variant"] != res.label] + table_rows(res.label, res)
            text = markdown_table(now, COLUMNS) + "\n" + summary(results["variants"])
            write_results(args.out, results, text)
            return now, text

        res = run_variant(name, args, args.seed + i, progress, checkpoint=save)
        rows, md = save(res, complete=True)
        done = [d for d in done if d.label != res.label] + [res]
        fig = plot_sbc(done)
        fig.savefig(png_path(args.out), dpi=90)
        plt.close(fig)
        print(
            f"{res.label}: {time.perf_counter() - start:.0f} s, failed fits {res.n_failed} "
            f"{res.failure_reasons()}, Bonferroni p {res.bonferroni_pvalue():.3g}",
            file=sys.stderr,
        )
    print(md)
    return results


if __name__ == "__main__":
    main()
