"""Simulation-based calibration of every core model variant (the full run).

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
from _common import RESULTS_DIR, load_average, machine_info, markdown_table, write_results

from bayes_regimes import RegimeModel
from bayes_regimes.sbc import SBCResult, plot_sbc, run_sbc

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
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
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


def main(argv=None) -> dict:
    args = parse_args(argv)
    kept, done = previous(args.out, args.variants) if args.append else ({}, [])
    results = {"machine": machine_info(), "settings": vars(args), "variants": dict(kept)}
    rows = [row for name, res in zip(kept, done, strict=True) for row in table_rows(name, res)]
    for i, name in enumerate(args.variants):
        make_model, grouped = VARIANTS[name]
        start = time.perf_counter()

        def progress(k, total, name=name, start=start):
            if k % 10 == 0 or k == total:
                rate = (time.perf_counter() - start) / k
                print(f"  {name}: {k}/{total} ({rate:.1f} s/simulation)", file=sys.stderr)

        res = run_sbc(
            with_adaptation(make_model, args.adaptation),
            args.n_sims,
            n_groups=args.groups if grouped else 1,
            n_problems=args.n_problems,
            n=args.n,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            n_rank_draws=args.n_rank_draws,
            random_seed=args.seed + i,
            label=name,
            progress=progress,
        )
        entry = res.to_dict()
        entry["wall_seconds"] = time.perf_counter() - start
        results["variants"][name] = entry
        rows += table_rows(name, res)
        done.append(res)
        results["machine"]["load_average_end"] = load_average()
        md = markdown_table(rows, COLUMNS)
        write_results(args.out, results, md)
        fig = plot_sbc(done)
        fig.savefig(png_path(args.out), dpi=90)
        plt.close(fig)
        print(
            f"{name}: {entry['wall_seconds']:.0f} s, failed fits {res.n_failed} "
            f"{res.failure_reasons()}",
            file=sys.stderr,
        )
    print(md)
    return results


if __name__ == "__main__":
    main()
