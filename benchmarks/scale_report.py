"""Markdown report of ``benchmarks/scale.py`` (``scale.md``).

Examples
--------
>>> _flag(True), _flag(False)
('PASS', 'FAIL')
"""

from __future__ import annotations

from collections.abc import Sequence

from _common import fmt, markdown_table

from bayes_regimes.diagnostics import RHAT_MAX

#: Requirement on the wall time of each posterior query (seconds, measurement 3).
QUERY_LIMIT_S = 3.0


def _flag(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _table(rows: Sequence[dict], columns: dict[str, str]) -> str:
    """markdown_table with R-hat shown to three decimals (1.004, not 1)."""
    shown = [
        r | ({"max_r_hat": f"{r['max_r_hat']:.3f}"} if r.get("max_r_hat") is not None else {})
        for r in rows
    ]
    return markdown_table(shown, columns)


def render_markdown(results: dict) -> str:
    """The markdown report of whatever measurements ``results`` holds."""
    s, mach = results["settings"], results["machine"]
    lines = [
        "# Speed and scale (`benchmarks/scale.py`)",
        "",
        f"Machine: {mach['cpu']}, {mach['cpu_count']} cores, {mach['memory_gib']} GiB RAM; "
        f"accelerator: {mach['accelerator']}. Load average (1/5/15 min) at start "
        f"{mach['load_average_start']}, at end {mach.get('load_average_end')}: other "
        "processes (other fits) may have been running, so times are noisy.",
        f"Settings: draws={s['draws']}, tune={s['tune']}, chains={s['chains']} "
        f"(target_accept 0.95), simulate_benchmark(pi=0.3, mu=0.2, kappa=2), seed {s['seed']}. "
        f"Command: `{s['command']}`",
    ]
    if "scale" in results:
        sc = results["scale"]
        cols = {
            "problems": "problems",
            "patterns": "patterns",
            "data_s": "data build s",
            "fit_s": "fit s",
            "compile_s": "compile s",
            "sampling_s": "sampling s",
            "assemble_s": "assemble s",
            "max_r_hat": "max R-hat",
            "min_ess_bulk": "min ESS bulk",
            "divergences": "divergences",
        }
        lines += [
            "",
            f"## 1. Fit time against problems (nutpie, n = {sc['n']}, median of "
            f"{s['repeats']} fit(s))",
            "",
            _table(sc["sizes"], cols),
            "",
            f"Fit time largest / smallest: **{sc['ratio_fit']:.2f}x** (limit "
            f"{sc['ratio_limit']:.0f}x; data build + fit: {sc['ratio_data_plus_fit']:.2f}x); "
            f"R-hat <= {RHAT_MAX} at every size: {sc['rhat_ok']}. **{_flag(sc['pass'])}**",
            "",
            "compile = the `pm.sample` call less nutpie's own `sampling_time` (numba "
            "compilation and sampler set-up); assemble = per-pattern log-likelihood and "
            "the DataTree, with its per-cell `cells` group; data build = "
            "`RolloutData.from_counts` + patterns (not part of fit s).",
        ]
    if "naive_vs_collapsed" in results:
        nv = results["naive_vs_collapsed"]
        cols = {
            "method": "method",
            "fit_s": "wall s",
            "sampling_s": "sampling s",
            "min_ess_bulk": "min ESS bulk (mu, kappa)",
            "ess_per_s_wall": "ESS/s (wall)",
            "ess_per_s_sampling": "ESS/s (sampling)",
            "max_r_hat": "max R-hat",
            "divergences": "divergences",
        }
        ratios = "; ".join(
            f"{v}: {fmt(r['wall'])}x per wall second"
            + (f", {fmt(r['sampling'])}x per sampling second" if r["sampling"] else "")
            for v, r in nv["ratio_vs_naive"].items()
        )
        lines += [
            "",
            f"## 2. Naive per-problem model vs RegimeModel ({nv['problems']:,} problems, "
            f"n = {nv['n']}, nutpie)",
            "",
            _table(nv["methods"], cols),
            "",
            f"ESS/s of RegimeModel over the naive model: {ratios}.",
        ]
    if "queries" in results:
        qs = results["queries"]
        variants = list(qs)
        rows = [
            {"query": name}
            | {v: qs[v]["queries"][name]["seconds"] for v in variants}
            | {f"{v} cpu": qs[v]["queries"][name]["cpu_seconds"] for v in variants}
            for name in qs[variants[0]]["queries"]
        ]
        header = (
            {"query": "query"}
            | {
                v: f"{v}: {qs[v]['cells']:,} cells, {qs[v]['patterns']} patterns, s"
                for v in variants
            }
            | {f"{v} cpu": f"{v}: CPU s" for v in variants}
        )
        ok = all(q["pass"] for q in qs.values())
        worst_cpu = max(v["cpu_seconds"] for q in qs.values() for v in q["queries"].values())
        loads = "; ".join(
            f"{v}: {q['load_average'][0]} at start, {q['load_average'][1]} at end"
            for v, q in qs.items()
            if q.get("load_average")
        )
        when = results.get("queries_run", {})
        lines += [
            "",
            "## 3. Posterior queries",
            "",
            markdown_table(rows, header),
            "",
            f"Wall time is the best of {qs[variants[0]]['repeats']} call(s); CPU s is the "
            "process CPU time of that call. Slowest query: "
            f"{max(q['max_s'] for q in qs.values()):.2f} s wall, {worst_cpu:.2f} s CPU "
            f"(limit {QUERY_LIMIT_S:.0f} s). Wall time: **{_flag(ok)}**; CPU time: "
            f"**{_flag(worst_cpu <= QUERY_LIMIT_S)}** (wall time exceeds CPU time when other "
            "processes compete for the cores: see the load averages).",
        ]
        if loads:
            lines += [
                "",
                f"Load average (1/5/15 min) during the queries: {loads}"
                + (f" (run {when['date']}: `{when['command']}`)." if when else "."),
            ]
    if "backends" in results:
        cols = {
            "sampler": "sampler",
            "device": "device",
            "problems": "problems",
            "fit_s": "fit s",
            "sampling_s": "sampling s",
            "peak_rss_mb": "peak RSS MiB",
            "rss_data_mb": "RSS before fit MiB",
            "fit_rss_mb": "fit adds MiB",
            "max_r_hat": "max R-hat",
            "divergences": "divergences",
        }
        lines += [
            "",
            "## 4. Backends (a fresh subprocess per run, cold start; peak RSS = VmHWM)",
            "",
            _table(results["backends"]["runs"], cols),
            "",
            "Each run is a fresh process, so fit s includes one-off start-up (numba / JAX "
            "initialisation) that section 1's warm fits do not; numpyro's sampling time "
            "includes JAX's JIT compilation. fit adds = peak less the RSS after imports "
            f"and data. Accelerator: {results['backends']['accelerator']} (JAX ran on the "
            "CPU when none).",
        ]
    return "\n".join(lines) + "\n"
