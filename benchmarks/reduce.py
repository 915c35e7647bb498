"""Benchmark: streaming reduction of rollout logs against a bare pyarrow scan of the same files.

Synthetic rollout logs are generated under ``/tmp`` (never in the repository): 10 models
x 10,000 problems = 100,000 cells at every size, so rows grow through the samples per cell
(100 at 1e7 rows, 1,000 at 1e8; ``--problems`` sets the problems per model, to see the
per-cell share of the cost at a fixed number of rows); columns ``problem_id`` (string),
``sample`` (int32), ``correct`` (bool); hive-partitioned by ``model``; files of up to
2 M rows written by pyarrow with its default row groups (1 Mi rows); rows shuffled within
each file (the costliest order for the reduction: every batch meets every cell of its
file). For each size the script measures, in one run:

* ``bare scan``: ``pyarrow.dataset`` reading and decoding the columns the reduction
  reads (``problem_id``, ``correct``; the hive ``model`` column comes from the paths),
  with the same read options, batches discarded; the physical limit of one pass;
* ``reduce``: :func:`bayes_regimes.reduce.reduce_rollouts` to per-cell counts, with
  ``--threads`` read-ahead threads decoding and counting files while the calling
  thread merges them (its CPU time is reported too: it bounds the throughput when
  there are more cores than read-ahead threads);
* ``reduce + sample``: the same with the repeated-sample check (reads ``sample`` too;
  its bare scan reads that column as well);
* peak memory (``VmHWM``) of one reduction and of one bare scan, each in a fresh
  subprocess; at a fixed number of cells it must stay flat as rows grow;
* Dask ``LocalCluster`` (2 workers x 1 thread) against single-process on the same data.

Each timing is the best of ``--repeat`` runs, bare scan and reduction interleaved, with a
warm page cache; ``ratio`` divides the best times, ``median paired ratio`` is the median
over the back-to-back (bare scan, reduction) pairs, steadier when other jobs share the
machine. Command (about 5 minutes on 2 busy cores)::

    nice -n 10 .venv/bin/python benchmarks/reduce.py --rows 1e7 1e8 --repeat 7 --dask-rows 1e7 1e8

Results go to ``benchmarks/results/reduce.json`` and ``reduce.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from _common import cores_shared, load_average, machine_info, write_results

ROOT = Path(__file__).resolve().parent
MODELS, PROBLEMS = 10, 10_000
FILE_ROWS = 2_000_000


def generate(folder: Path, rows: int, seed: int = 0, problems: int = PROBLEMS) -> dict:
    """Write ``rows`` synthetic rollouts (10 models x ``problems`` problems x S samples)."""
    samples = rows // (MODELS * problems)
    if samples < 1:
        raise SystemExit(f"{rows:.0e} rows cannot fill {MODELS} x {problems} cells")
    marker = folder / "_SUCCESS"
    old = json.loads(marker.read_text()) if marker.exists() else {}
    if old.get("rows") == rows and old.get("problems") == problems:
        return old
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    names = pa.array([f"problem_{i:07d}" for i in range(problems)])
    per_file = max(1, FILE_ROWS // samples)
    files = 0
    for m in range(MODELS):
        part = folder / f"model=m{m:02d}"
        part.mkdir(parents=True)
        skill = rng.normal(0, 0.5)
        for f, start in enumerate(range(0, problems, per_file)):
            ids = np.arange(start, min(problems, start + per_file))
            logit = rng.normal(-1.0, 2.0, len(ids)) + skill
            p = np.where(rng.random(len(ids)) < 0.3, 0.0, 1 / (1 + np.exp(-logit)))
            order = rng.permutation(len(ids) * samples)
            pid = np.repeat(ids, samples)[order]
            sample = np.tile(np.arange(samples, dtype=np.int32), len(ids))[order]
            correct = rng.random(len(pid)) < np.repeat(p, samples)[order]
            table = pa.table(
                {
                    "problem_id": names.take(pa.array(pid, pa.int32())),
                    "sample": sample,
                    "correct": correct,
                }
            )
            pq.write_table(table, part / f"part-{f:05d}.parquet")
            files += 1
    info = {
        "rows": rows,
        "samples_per_cell": samples,
        "problems": problems,
        "cells": problems * MODELS,
        "files": files,
        "bytes": sum(p.stat().st_size for p in folder.rglob("*.parquet")),
    }
    marker.write_text(json.dumps(info))
    return info


def data_folder(root: str, rows: int, problems: int) -> Path:
    """``rows_1e+07`` (the default 10,000 problems per model) or ``rows_1e+07_p1000``."""
    suffix = "" if problems == PROBLEMS else f"_p{problems}"
    return Path(root) / f"rows_{rows:.0e}{suffix}"


def bare_scan(folder: Path, columns: list[str], batch_size: int) -> float:
    """Seconds to discover the dataset, then read and decode ``columns`` (batches discarded)."""
    strings = [c for c in columns if c == "problem_id"]
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=strings))
    t0 = time.perf_counter()
    dataset = ds.dataset(str(folder), format=fmt, partitioning="hive")
    scanner = dataset.scanner(
        columns=columns, batch_size=batch_size, batch_readahead=4, fragment_readahead=2
    )
    rows = 0
    for batch in scanner.to_batches():
        rows += batch.num_rows
    return time.perf_counter() - t0


CHILD = """
import sys
sys.path.insert(0, sys.argv[4])
from _common import peak_rss_mb
from reduce import bare_scan
from bayes_regimes.reduce import reduce_rollouts
folder, sample, batch = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
if sys.argv[5] == "bare":
    bare_scan(folder, ["problem_id", "correct"] + (["sample"] if sample else []), batch)
elif sys.argv[5] == "kernels":  # the compiled kernels loaded (numba's LLVM runtime)
    from bayes_regimes._batchcount import count_keys
    import numpy as np
    count_keys(np.zeros(3, np.int32), 1, np.zeros(3, np.uint8))
elif sys.argv[5] == "reduce":
    reduce_rollouts(folder, group="model", sample="sample" if sample else None, features=[],
                    batch_size=batch, progress=False)
print(peak_rss_mb())
"""


def peak_rss(folder: Path, sample: bool, batch: int, what: str) -> float:
    """Peak RSS in MiB (``VmHWM``) of a fresh process running one bare scan or reduction."""
    args = [str(folder), "1" if sample else "0", str(batch), str(ROOT), what]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def baseline_rss(what: str = "import") -> float:
    """Peak RSS in MiB of a process that imports the modules and does nothing
    (``"kernels"``: and loads the compiled kernels)."""
    return peak_rss(Path("."), False, 1, what)


def time_pair(folder: Path, sample: bool, batch: int, repeat: int, threads: int = 2) -> dict:
    """Bare scan and reduction, interleaved ``repeat`` times: best wall seconds of each,
    the median ratio of the back-to-back pairs (steadier than best-of on a busy machine),
    the least CPU seconds (all threads) of each, and the least CPU seconds of the
    reduction's calling thread (its merging: the bound when cores outnumber threads)."""
    from bayes_regimes.reduce import reduce_rollouts

    cols = ["problem_id", "correct"] + (["sample"] if sample else [])
    wall: dict[str, list] = {"bare": [], "reduce": []}
    cpu: dict[str, list] = {"bare": [], "reduce": [], "main": []}
    rollouts = 0
    for _ in range(repeat):
        c0 = time.process_time()
        wall["bare"].append(bare_scan(folder, cols, batch))
        cpu["bare"].append(time.process_time() - c0)
        c0, t0, m0 = time.process_time(), time.perf_counter(), time.thread_time()
        data = reduce_rollouts(
            str(folder),
            group="model",
            sample="sample" if sample else None,
            features=[],
            batch_size=batch,
            threads=threads,
            progress=False,
        )
        wall["reduce"].append(time.perf_counter() - t0)
        cpu["reduce"].append(time.process_time() - c0)
        cpu["main"].append(time.thread_time() - m0)
        rollouts = data.n_rollouts
    paired = np.median(np.array(wall["bare"]) / np.array(wall["reduce"]))
    return {
        "bare": min(wall["bare"]),
        "reduce": min(wall["reduce"]),
        "rollouts": rollouts,
        "paired": float(paired),
        "bare_cpu": min(cpu["bare"]),
        "reduce_cpu": min(cpu["reduce"]),
        "main_cpu": min(cpu["main"]),
    }


def dask_run(folder: Path, batch: int, repeat: int) -> dict:
    from distributed import Client, LocalCluster

    from bayes_regimes.reduce import reduce_rollouts

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        best, data = np.inf, None
        for _ in range(repeat):
            t0 = time.perf_counter()
            data = reduce_rollouts(
                str(folder),
                group="model",
                features=[],
                client=client,
                batch_size=batch,
                progress=False,
            )
            best = min(best, time.perf_counter() - t0)
    return {"seconds": best, "cells": data.n_cells, "rollouts": data.n_rollouts, "data": data}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, nargs="+", default=[1e7, 1e8])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1 << 20)
    parser.add_argument("--threads", type=int, default=2, help="read-ahead threads of reduce")
    parser.add_argument("--dir", default="/tmp/bayes_regimes_reduce_bench")
    parser.add_argument(
        "--problems",
        type=int,
        nargs="+",
        default=[PROBLEMS],
        help="problems per model, one run each (cells = 10 x problems; the Dask runs use "
        "the first)",
    )
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument(
        "--dask-rows", type=float, nargs="+", default=[1e7], help="sizes of the Dask runs"
    )
    parser.add_argument("--out", default="reduce", help="results stem (in benchmarks/results)")
    args = parser.parse_args(argv)

    from bayes_regimes.reduce import reduce_rollouts

    packages = ("bayes-regimes", "pyarrow", "numpy", "pandas", "fsspec", "dask", "distributed")
    results = {
        "machine": machine_info(packages),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "baseline_rss_mb": baseline_rss(),
        "kernels_rss_mb": baseline_rss("kernels"),
        "sizes": [],
    }
    for rows, problems in itertools.product([int(r) for r in args.rows], args.problems):
        folder = data_folder(args.dir, rows, problems)
        t0 = time.perf_counter()
        info = generate(folder, rows, problems=problems)
        print(f"data {rows:.0e}: {info} ({time.perf_counter() - t0:.0f} s)", flush=True)
        entry = dict(info, load_average=load_average())
        for label, sample in (("reduce", False), ("reduce+sample", True)):
            timed = time_pair(folder, sample, args.batch_size, args.repeat, args.threads)
            bare, best, paired = timed["bare"], timed["reduce"], timed["paired"]
            assert timed["rollouts"] == rows
            entry[label] = {
                "bare_scan_s": bare,
                "bare_rows_per_s": rows / bare,
                "reduce_s": best,
                "reduce_rows_per_s": rows / best,
                "ratio": bare / best,
                "median_paired_ratio": paired,
                "bare_cpu_s": timed["bare_cpu"],
                "reduce_cpu_s": timed["reduce_cpu"],
                "cpu_ratio": timed["bare_cpu"] / timed["reduce_cpu"],
                "main_cpu_s": timed["main_cpu"],
                "peak_rss_mb": peak_rss(folder, sample, args.batch_size, "reduce"),
                "bare_peak_rss_mb": peak_rss(folder, sample, args.batch_size, "bare"),
            }
            print(f"  {label}: {entry[label]}", flush=True)
        results["sizes"].append(entry)
    if not args.no_dask:
        results["dask"] = []
        for rows in [int(r) for r in args.dask_rows]:
            folder = data_folder(args.dir, rows, args.problems[0])
            generate(folder, rows, problems=args.problems[0])
            kwargs = {"group": "model", "features": [], "batch_size": args.batch_size}
            single_s, single = np.inf, None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                single = reduce_rollouts(str(folder), **kwargs, progress=False)
                single_s = min(single_s, time.perf_counter() - t0)
            dk = dask_run(folder, args.batch_size, args.repeat)
            entry = {
                "rows": rows,
                "single_process_s": single_s,
                "dask_2_workers_s": dk["seconds"],
                "speedup": single_s / dk["seconds"],
                "identical": bool(dk.pop("data") == single),
            }
            results["dask"].append(entry)
            print(f"dask: {entry}", flush=True)
    results["machine"]["load_average_end"] = load_average()
    write(results, Path(args.out))
    return results


def _shared(machine: dict) -> str:
    """Whether other jobs shared the cores, judged at the start (the end load includes
    this script's own Dask workers)."""
    busy = cores_shared([machine.get("load_average_start")], machine["cpu_count"])
    return " (other jobs shared the machine)" if busy else " (idle at the start)"


def write(results: dict, out: Path) -> None:
    m = results["machine"]
    lines = [
        f"{m['cpu']}, {m['cpu_count']} CPUs, Python {m['python']}, "
        f"pyarrow {m['packages']['pyarrow']}; load average {m['load_average_start']} at the "
        f"start, {m.get('load_average_end')} at the end{_shared(m)}; "
        f"batch size {results['batch_size']:,} rows; {results.get('threads', 0)} read-ahead "
        "threads; best of repeated runs, warm page cache.",
        "",
        "| rows | files | Parquet MB | cells | samples/cell | columns read | bare scan (rows/s) "
        "| reduce (rows/s) | ratio | median paired ratio | CPU s bare / reduce (ratio) "
        "| calling thread CPU s | peak RSS reduce / bare scan (MiB) | load average |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for e in results["sizes"]:
        for label in ("reduce", "reduce+sample"):
            r = e[label]
            cols = "problem_id, correct" + (", sample" if label == "reduce+sample" else "")
            main = f"{r['main_cpu_s']:.3f}" if "main_cpu_s" in r else "-"
            lines.append(
                f"| {e['rows']:.0e} | {e['files']} | {e['bytes'] / 1e6:.0f} | {e['cells']:,} | "
                f"{e['samples_per_cell']} | {cols} | {r['bare_rows_per_s']:.3g} | "
                f"{r['reduce_rows_per_s']:.3g} | {r['ratio']:.2f} | "
                f"{r['median_paired_ratio']:.2f} | "
                f"{r['bare_cpu_s']:.2f} / {r['reduce_cpu_s']:.2f} ({r['cpu_ratio']:.2f}) | "
                f"{main} | "
                f"{r['peak_rss_mb']:.0f} / {r['bare_peak_rss_mb']:.0f} | "
                f"{', '.join(f'{x:.2f}' for x in e.get('load_average') or [])} |"
            )
    lines += [
        "",
        f"Peak RSS of a process that only imports the modules: "
        f"{results['baseline_rss_mb']:.0f} MiB"
        + (
            f"; with the compiled kernels loaded (numba, LLVM): "
            f"{results['kernels_rss_mb']:.0f} MiB."
            if "kernels_rss_mb" in results
            else "."
        ),
    ]
    if results.get("dask"):
        lines += [
            "",
            "| rows | single process (s) | Dask LocalCluster 2 workers x 1 thread (s) | speed-up "
            "| identical counts |",
            "|---:|---:|---:|---:|---|",
        ]
        for d in results["dask"]:
            lines.append(
                f"| {d['rows']:.0e} | {d['single_process_s']:.2f} | {d['dask_2_workers_s']:.2f} "
                f"| {d['speedup']:.2f} | {d['identical']} |"
            )
    write_results(out, results, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
