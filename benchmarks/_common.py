"""Small helpers shared by the benchmark scripts in ``benchmarks/``.

Timing, peak memory (of this process, or of a worker run in a fresh subprocess),
machine information, and writing results as JSON plus a markdown table. The
scripts import it as ``from _common import ...`` (Python puts the script's folder
on ``sys.path``); tests add ``benchmarks/`` to ``sys.path`` first.

Examples
--------
>>> from _common import markdown_table, timed
>>> value, seconds = timed(sum, [1, 2, 3])
>>> value, seconds >= 0
(6, True)
>>> print(markdown_table([{"a": 1, "b": 0.5}], {"a": "A", "b": "B"}))
| A | B |
|---|---|
| 1 | 0.5 |
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Line prefix a worker subprocess prints before its JSON result.
WORKER_MARK = "@@RESULT@@ "


# -- timing ------------------------------------------------------------------------------
def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Call ``fn(*args, **kwargs)``; return ``(result, wall seconds)``.

    Examples
    --------
    >>> _, s = timed(sorted, [3, 1, 2])
    >>> s < 1.0
    True
    """
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Silence warnings inside the block (a benchmark records diagnostics itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- memory ------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Reads ``VmHWM`` from ``/proc/self/status`` where it exists (Linux): unlike
    ``ru_maxrss``, which Linux carries over from the parent across ``fork`` and
    ``exec``, it belongs to this program alone, so a worker subprocess reports its
    own peak. Elsewhere falls back to ``ru_maxrss``.

    Examples
    --------
    >>> peak_rss_mb() > 0
    True
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / (1024**2 if sys.platform == "darwin" else 1024)


def run_worker(args: Sequence[str], timeout: float = 900.0) -> dict:
    """Run ``python args...`` in a fresh subprocess and return its JSON result.

    The worker prints one line ``WORKER_MARK + json`` on stdout (see
    :func:`emit_result`); a fresh process gives an honest peak memory for one job.

    Raises
    ------
    RuntimeError
        When the worker fails or prints no result (with the tail of its stderr).
    """
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(WORKER_MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"worker {args} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(WORKER_MARK) :])


def emit_result(result: Mapping[str, Any]) -> None:
    """Print a worker's result for :func:`run_worker` to pick up."""
    print(WORKER_MARK + json.dumps(to_jsonable(result)), flush=True)


# -- machine -----------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where unavailable)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cores_shared(start_loads: list, cpu_count: int) -> bool:
    """Whether other jobs shared the cores: a 1-minute load average taken *before* a
    run (never after, which counts the run's own threads) above half the cores."""
    return any((load or [0.0])[0] > 0.5 * cpu_count for load in start_loads)


def gpu_info() -> str:
    """What accelerator JAX sees ("none (CPU only)" when there is none)."""
    try:
        import jax

        devices = [d for d in jax.devices() if d.platform != "cpu"]
    except Exception:  # noqa: BLE001 - jax absent or broken: report, never fail
        return "unknown (jax unavailable)"
    return ", ".join(str(d) for d in devices) if devices else "none (CPU only)"


def machine_info(packages: Sequence[str] = ("bayes-regimes", "pymc", "nutpie", "numpy")) -> dict:
    """Machine, software versions and load, recorded beside every benchmark.

    Examples
    --------
    >>> info = machine_info()
    >>> info["cpu_count"] >= 1
    True
    """
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in packages},
        "git_commit": _git_commit(),
        "load_average_start": load_average(),
    }


# -- output ------------------------------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars / arrays and NaN (-> None) to plain JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def fmt(value: Any, digits: int = 3) -> str:
    """Format a table cell: floats with ``digits`` significant digits, None as "-".

    Examples
    --------
    >>> fmt(12345.678), fmt(0.0012345), fmt(None), fmt(True)
    ('12346', '0.00123', '-', 'yes')
    """
    if value is None:
        return "-"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "-"
        if abs(value) >= 10**digits:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> str:
    """A markdown table of ``rows`` (dicts); ``columns`` maps key -> header."""
    head = "| " + " | ".join(columns.values()) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def write_results(stem: str | Path, results: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``stem.json`` and ``stem.md`` (a bare name goes to ``benchmarks/results``)."""
    stem = Path(stem)
    if stem.parent == Path("."):
        stem = RESULTS_DIR / stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(to_jsonable(results), indent=2) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path
