"""The HTML report renders in a real headless browser (skipped without Chromium).

Same checks as benchmarks/render_report.py, on one deliberately short demo fit: the
page renders at the window size, the figures are embedded and visible, and the red
warning banner shows exactly when the fit failed its diagnostics. Marked slow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
render = pytest.importorskip("render_report")

# A demo fit in a subprocess plus two browser runs: slow (make test-slow).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        render.find_chromium() is None,
        reason="Chromium is not installed (Debian: apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def short_fit(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    render.run_demo(out, ["--draws", "60", "--tune", "40", "--chains", "2"], seed=1)
    return out


def test_report_renders_with_figures_and_banner(short_fit, tmp_path):
    row = render.check_case("short fit", short_fit, tmp_path / "shot.png")
    assert row["size"] == "1200x3000"
    assert row["figures_embedded"] >= 4
    assert row["ink_fraction"] > 0.05  # not a blank page
    assert row["banner_visible"] == (not row["diagnostics_ok"])
    assert row["as_expected"]


def test_banner_detection_is_not_vacuous(short_fit, tmp_path):
    """Removing the failure styling from the HTML removes the detected banner."""
    html = (short_fit / "report.html").read_text(encoding="utf-8")
    clean = short_fit.parent / "clean"
    clean.mkdir()
    (clean / "report.html").write_text(html.replace("#fdd", "#fff"), encoding="utf-8")
    row = render.inspect(render.screenshot(clean / "report.html", tmp_path / "clean.png"))
    assert row["banner_pixels"] < 2000
