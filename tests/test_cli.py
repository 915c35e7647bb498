"""The command line end to end: fit, gain, allocate, demo, and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import xarray as xr

from bayes_regimes.cli import main
from bayes_regimes.simulate import simulate_benchmark

FAST = ["--draws", "150", "--tune", "150", "--chains", "2", "--quiet"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bayes_regimes.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def fitted_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    sim = simulate_benchmark(
        groups={"m1": dict(pi=0.3), "<script>alert(1)</script>": dict(pi=0.1)},
        n_problems=80,
        n=10,
        random_seed=2,
    )
    counts = sim.counts.rename(columns={"group": "model"})
    counts.loc[0, "problem_id"] = "<img src=x onerror=alert(2)>"
    path = root / "counts.csv"
    counts.to_csv(path, index=False)
    out = root / "out"
    proc = run_cli("fit", str(path), "--group", "model", "--out", str(out), "--seed", "1", *FAST)
    assert proc.returncode == 0, proc.stderr
    return out, counts


def test_fit_writes_outputs(fitted_dir):
    out, counts = fitted_dir
    for name in ("regimes.csv", "fit.nc", "report.html", "pass_at_k.csv", "diagnostics.json"):
        assert (out / name).exists(), name
    reg = pd.read_csv(out / "regimes.csv", keep_default_na=False)
    assert len(reg) == len(counts)
    assert reg["problem"].tolist() == counts["problem_id"].astype(str).tolist()
    html = (out / "report.html").read_text()
    # Untrusted labels are escaped in the report.
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "data:image/png;base64," in html
    summary = json.loads((out / "diagnostics.json").read_text())
    assert {"ok", "max_r_hat", "divergences"} <= set(summary)
    # Without --slab, fit uses the package's default slab, the logit-normal.
    assert json.loads(xr.open_datatree(out / "fit.nc").attrs["config"])["slab"] == "logitnormal"


def test_gain_and_allocate_query_saved_fit(fitted_dir, capsys):
    out, counts = fitted_dir
    assert main(["gain", str(out), "--m", "100", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["k"] == 0 for r in rows)
    assert all(0 <= r["gain_mean"] <= 1 for r in rows)
    assert main(["allocate", str(out), "--budget", "50", "--json"]) == 0
    alloc = json.loads(capsys.readouterr().out)
    assert sum(r["extra"] for r in alloc) <= 50
    assert main(["gain", str(out), "--m", "5"]) == 0
    assert "gain_mean" in capsys.readouterr().out


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"problem_id": ["a", "b"], "n": [5, 5], "k": [1, 7]}), "row 1"),
        (pd.DataFrame({"problem_id": ["a", "a"], "n": [5, 5], "k": [1, 1]}), "duplicate"),
        (pd.DataFrame({"problem_id": ["a"], "n": [5]}), "k"),
        (pd.DataFrame({"problem_id": ["a"], "n": [5], "k": [-1]}), "negative"),
    ],
)
def test_bad_input_exits_2_without_traceback(tmp_path, frame, message):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    proc = run_cli("fit", str(path), "--out", str(tmp_path / "o"), *FAST)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert message in lines[0].lower() or message in lines[0]


def test_bad_input_fails_before_pymc_is_imported(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"problem_id": ["a"], "n": [5], "k": [9]}).to_csv(path, index=False)
    code = (
        "import sys; from bayes_regimes.cli import main; "
        f"rc = main(['fit', {str(path)!r}, '--out', {str(tmp_path / 'o')!r}]); "
        "assert 'pymc' not in sys.modules and 'pytensor' not in sys.modules; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr


def test_unknown_format_and_missing_file(tmp_path):
    bad = tmp_path / "x.xlsx"
    bad.write_text("nope")
    proc = run_cli("fit", str(bad), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = run_cli("gain", str(tmp_path / "nothing"), "--m", "3")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_strict_exits_3_on_failed_diagnostics(tmp_path):
    sim = simulate_benchmark(n_problems=40, n=10, random_seed=0)
    path = tmp_path / "c.csv"
    sim.counts.to_csv(path, index=False)
    args = ["--draws", "15", "--tune", "15", "--chains", "2", "--quiet", "--no-report"]
    args += ["--slab", "beta"]  # exit codes do not depend on the slab; beta compiles faster
    proc = run_cli("fit", str(path), "--out", str(tmp_path / "o"), "--strict", *args)
    assert proc.returncode == 3
    assert "FIT FAILED DIAGNOSTICS" in proc.stderr
    proc = run_cli("fit", str(path), "--out", str(tmp_path / "o2"), *args)
    assert proc.returncode == 0
    assert "FIT FAILED DIAGNOSTICS" in proc.stderr
