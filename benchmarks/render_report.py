"""Render the HTML report in a real headless browser (Chromium) and keep screenshots.

Runs ``bayes-regimes demo`` twice on the built-in simulated benchmark: once with
settings that pass the diagnostics, and once deliberately too short (30 draws,
10 tuning steps) so that the fit fails them. Each ``report.html`` is rendered by
headless Chromium (Debian's package: ``apt-get install chromium``) into a
1200 x 3000 screenshot, and the screenshot is checked:

* the page rendered (the PNG has the window's size and is not blank);
* the figures are embedded (PNG data URIs in the HTML) and visible (enough
  non-white pixels);
* the red warning banner (background ``#fdd``) is visible exactly when the fit
  failed its diagnostics.

The passing report's screenshot is written to ``docs/report_screenshot.png`` and
the failing one's to ``docs/report_screenshot_failed.png`` (both reduced to a
256-colour palette to stay small); the table goes to
``benchmarks/results/render_report.json`` and ``.md``.

Command (from the repository root; about 1 to 2 minutes on 2 cores)::

    .venv/bin/python benchmarks/render_report.py
    .venv/bin/python benchmarks/render_report.py --docs /tmp/shots --out render_quick

``tests/test_render_report.py`` runs the same checks at small settings when
Chromium is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, markdown_table, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
WINDOW = (1200, 3000)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: Background of the warning banner and of failing diagnostics rows (report.py's CSS).
BANNER_RGB = (0xFF, 0xDD, 0xDD)
PASSING = ["--draws", "1000", "--tune", "1000", "--chains", "2"]
TOO_SHORT = ["--draws", "30", "--tune", "10", "--chains", "2"]
#: name -> (demo sampler options, screenshot file in docs/)
CASES = {
    "passing fit": (PASSING, "report_screenshot.png"),
    "too-short fit": (TOO_SHORT, "report_screenshot_failed.png"),
}
COLUMNS = {
    "case": "case",
    "diagnostics_ok": "diagnostics OK",
    "figures_embedded": "figures embedded",
    "size": "screenshot (px)",
    "ink_fraction": "non-white pixels",
    "banner_pixels": "banner pixels",
    "banner_visible": "banner visible",
    "as_expected": "as expected",
}


def find_chromium() -> str | None:
    """Path of a Chromium / Chrome executable, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def run_demo(out: Path, options: list[str], seed: int = 0) -> Path:
    """``bayes-regimes demo --out OUT`` with sampler ``options``; returns report.html."""
    cmd = [sys.executable, "-m", "bayes_regimes.cli", "demo", "--out", str(out), "--quiet"]
    subprocess.run([*cmd, "--seed", str(seed), *options], check=True, capture_output=True)
    return out / "report.html"


def screenshot(
    html: Path, png: Path, window: tuple[int, int] = WINDOW, browser: str | None = None
) -> Path:
    """Render ``html`` with headless Chromium into ``png``."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium found: install it with `apt-get install chromium`")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={window[0]},{window[1]}",
            html.resolve().as_uri(),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    if not png.exists():
        raise RuntimeError(f"Chromium wrote no screenshot for {html}")
    return png


def inspect(png: Path) -> dict:
    """Size, fraction of non-white pixels and banner-coloured pixels of a screenshot."""
    from PIL import Image

    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    ink = np.any(rgb < 240, axis=-1).mean()
    banner = np.all(np.abs(rgb - np.array(BANNER_RGB)) <= 3, axis=-1).sum()
    return {
        "size": f"{rgb.shape[1]}x{rgb.shape[0]}",
        "ink_fraction": float(ink),
        "banner_pixels": int(banner),
    }


def shrink(png: Path, colors: int = 256) -> Path:
    """Re-save ``png`` with a palette of ``colors`` (screenshots shrink several-fold)."""
    from PIL import Image

    with Image.open(png) as im:
        small = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)
    return png


def check_case(name: str, fit_dir: Path, png: Path, browser: str | None = None) -> dict:
    """Render one demo output folder and check the screenshot against its diagnostics."""
    import json

    html = fit_dir / "report.html"
    ok = bool(json.loads((fit_dir / "diagnostics.json").read_text())["ok"])
    figures = html.read_text(encoding="utf-8").count('<img src="data:image/png;base64,')
    row = {"case": name, "diagnostics_ok": ok, "figures_embedded": figures}
    row.update(inspect(screenshot(html, png, browser=browser)))
    row["banner_visible"] = row["banner_pixels"] > 2000
    row["as_expected"] = (
        row["size"] == f"{WINDOW[0]}x{WINDOW[1]}"
        and figures >= 4
        and row["ink_fraction"] > 0.05
        and row["banner_visible"] == (not ok)
    )
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DOCS, help="folder of the screenshots")
    parser.add_argument("--out", default="render_report", help="results stem")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    browser = find_chromium()
    if browser is None:
        print("skipped: no Chromium found (install it with `apt-get install chromium`)")
        return []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (options, filename)) in enumerate(CASES.items()):
            fit_dir = Path(tmp) / f"case{i}"
            run_demo(fit_dir, options, seed=args.seed)
            row = check_case(name, fit_dir, args.docs / filename, browser=browser)
            shrink(args.docs / filename)
            row["file"] = str(args.docs / filename)
            rows.append(row)
            print(f"{name}: {row}", file=sys.stderr)
    md = markdown_table(rows, COLUMNS)
    results = {"machine": machine_info(), "browser": browser, "cases": rows}
    write_results(args.out, results, md)
    print(md)
    return rows


if __name__ == "__main__":
    # No Chromium: nothing to check (exit 0, so that `make bench` goes on); a check
    # that fails exits 1.
    sys.exit(0 if all(r["as_expected"] for r in main()) else 1)
