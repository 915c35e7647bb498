"""nutpie's diagonal against its low-rank mass-matrix adaptation on the router's fits.

Reads the cached :class:`InterventionModel` fits of two runs of ``router.py --parts
cv loco --chains 4`` (5 CV folds and 8 leave-cell-out fits on the paper's table), one
per adaptation, and tabulates per fit: whether the first attempt had a stuck chain
(:func:`~bayes_regimes.diagnostics.stuck_chains`; ``router_fit.fit_cached`` then
refits once with seed + 1000), the final fit's diagnostics, the ESS of ``lam_sd``
(the slowest hyper-parameter), wall time (both attempts where refitted) and min bulk
ESS per second.

Commands (2 idle cores; ~50 min per run)::

    .venv/bin/python benchmarks/router.py --parts cv loco --chains 4 --adaptation low_rank \\
        --out router_lowrank
    .venv/bin/python benchmarks/router.py --parts cv loco --chains 4 --out router_diag
    .venv/bin/python benchmarks/router_adaptation.py

The published low-rank fits were made before ``--adaptation`` existed (cache names
without ``_lowrank``): pass ``--low-rank-cache`` / ``--low-rank-suffix`` to match.
Output: ``results/router_adaptation.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from _common import machine_info, markdown_table, write_results

NAMES = [f"cv{i}_s0" for i in range(5)] + [
    f"loco_{c}"
    for c in (
        "grpo1p7b_cruxeval",
        "grpo1p7b_gpqa",
        "sft0p6b_gpqa",
        "sft0p6b_gsm8k",
        "sft1p7b_cruxeval",
        "sft1p7b_gpqa",
        "sft4b_cruxeval",
        "sft4b_gsm8k",
    )
]


def fit_row(path: Path) -> dict:
    """Diagnostics, stuck-chain record and timing of one cached fit."""
    import arviz as az

    from bayes_regimes.diagnostics import stuck_chains
    from bayes_regimes.models.interventions import InterventionModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = InterventionModel.load(path)
        s = model.diagnostics().summary()
        ess_lam_sd = float(az.ess(model.posterior[["lam_sd"]])["lam_sd"])
    info = json.loads(model.idata.attrs.get("fit", "{}"))
    first = info.get("retried_after")
    wall = info.get("wall_s") or float("nan")
    return {
        "chains": int(model.posterior.sizes["chain"]),
        "draws": int(model.posterior.sizes["draw"]),
        "first_attempt_stuck": len(first["stuck_chains"]) if first else 0,
        "ok": bool(s["ok"]),
        "max_r_hat": s["max_r_hat"],
        "min_ess_bulk": s["min_ess_bulk"],
        "ess_lam_sd": ess_lam_sd,
        "divergences": int(s["divergences"]),
        "stuck_chains": len(stuck_chains(model.idata["sample_stats"]["diverging"].values)),
        "wall_s": wall,
        "min_ess_per_s": s["min_ess_bulk"] / wall,
    }


def summarise(rows: list[dict]) -> dict:
    """Per adaptation: fits, passing fits, stuck chains, median wall and ESS per second."""
    out = {}
    for adapt in dict.fromkeys(r["adaptation"] for r in rows):
        sub = [r for r in rows if r["adaptation"] == adapt]
        out[adapt] = {
            "fits": len(sub),
            "passing": sum(r["ok"] for r in sub),
            "first_attempts_with_stuck_chain": sum(r["first_attempt_stuck"] > 0 for r in sub),
            "stuck_chains_in_final_fits": sum(r["stuck_chains"] for r in sub),
            "median_wall_s": float(np.median([r["wall_s"] for r in sub])),
            "median_min_ess_per_s": float(np.median([r["min_ess_per_s"] for r in sub])),
        }
    return out


def render(results: dict) -> str:
    cols = {
        "fit": "fit",
        "adaptation": "adaptation",
        "chains": "chains",
        "draws": "draws",
        "first_attempt_stuck": "stuck chains, 1st attempt",
        "stuck_chains": "stuck chains, final",
        "ok": "passes",
        "max_r_hat": "max R-hat",
        "min_ess_bulk": "min ESS",
        "ess_lam_sd": "ESS lam_sd",
        "divergences": "divergences",
        "wall_s": "wall s",
        "min_ess_per_s": "min ESS / s",
    }
    fmt = {"max_r_hat": 3, "min_ess_bulk": 0, "ess_lam_sd": 0, "wall_s": 0, "min_ess_per_s": 2}
    rows = [
        {k: (f"{v:.{fmt[k]}f}" if k in fmt else v) for k, v in r.items()} for r in results["rows"]
    ]
    summary = [{"adaptation": k, **v} for k, v in results["summary"].items()]
    return "\n".join(
        [
            "# nutpie adaptation for the intervention model (benchmarks/router_adaptation.py)",
            "",
            f"Fits: {json.dumps(results['settings'])}",
            "",
            markdown_table(summary, {k: k for k in summary[0]}),
            "",
            markdown_table(rows, cols),
            "",
        ]
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--low-rank-cache", default="/tmp/bayes_regimes_router_cache")
    ap.add_argument("--low-rank-suffix", default="_chains4_lowrank")
    ap.add_argument("--diag-cache", default="/tmp/bayes_regimes_router_cache")
    ap.add_argument("--diag-suffix", default="_chains4")
    ap.add_argument("--out", default="router_adaptation")
    ap.add_argument("--note", default=None, help="a line on where and when the fits ran")
    args = ap.parse_args(argv)
    rows = []
    for adapt, cache, suffix in (
        ("low_rank", args.low_rank_cache, args.low_rank_suffix),
        ("diag", args.diag_cache, args.diag_suffix),
    ):
        for name in NAMES:
            path = Path(cache) / f"{name}{suffix}.nc"
            if not path.exists():
                raise SystemExit(f"missing fit {path}: run router.py first (see --help)")
            rows.append({"fit": name, "adaptation": adapt, **fit_row(path)})
            print(rows[-1], flush=True)
    results = {
        "settings": {
            "fits": "router.py --parts cv loco --chains 4 (defaults: tune 500, "
            "target_accept 0.9, seed 0)",
            "low_rank": f"{args.low_rank_cache}/*{args.low_rank_suffix}.nc",
            "diag": f"{args.diag_cache}/*{args.diag_suffix}.nc",
            **({"note": args.note} if args.note else {}),
        },
        "machine": machine_info(),
        "summary": summarise(rows),
        "rows": rows,
    }
    write_results(args.out, results, render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
