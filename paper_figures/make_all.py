"""Regenerate every paper figure (PNG and PDF) into paper_figures/output/.

Runs every ``fig*.py`` script in this folder, in name order, in one process (so
the held-out fit of Large Language Monkeys that figures 4 to 8 share is fitted
once), then writes ``output/captions.md`` with every figure's caption. Figures
whose public data (``../shared/data``) is absent are skipped with the reason.

Command (from the repository root). The first run fits the interventions model of
figures 1 to 3 (about 35 minutes on 2 busy cores; cached in ``output/cache/`` for later
runs) and the held-out models of figures 4 to 8 (a few minutes)::

    .venv/bin/python paper_figures/make_all.py
    .venv/bin/python paper_figures/make_all.py --quick --out /tmp/figs   # tiny fits, drafts
    .venv/bin/python paper_figures/make_all.py --only fig4 fig7          # a subset
    .venv/bin/python paper_figures/make_all.py --thumbnails docs/figures # README thumbnails
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _paper_common as C  # noqa: E402

#: Width in pixels of the README thumbnails.
THUMBNAIL_WIDTH = 640


def figure_modules(only: list[str] | None = None) -> list[ModuleType]:
    """The figure scripts (``fig*.py``), in name order, optionally filtered by prefix."""
    names = sorted(p.stem for p in HERE.glob("fig*.py"))
    if only:
        names = [n for n in names if any(n.startswith(o) for o in only)]
    return [importlib.import_module(n) for n in names]


def write_captions(modules: list[ModuleType], out: Path, made: dict[str, list[Path]]) -> Path:
    lines = ["# Paper figures", ""]
    for mod in modules:
        skipped = mod.NAME in made and not made[mod.NAME]
        status = " (not made: data absent)" if skipped else ""
        lines += [f"## {mod.NAME}{status}", "", mod.CAPTION, ""]
    path = Path(out) / "captions.md"
    path.write_text("\n".join(lines))
    return path


def thumbnails(pngs: list[Path], folder: Path, width: int = THUMBNAIL_WIDTH) -> list[Path]:
    """Small PNG copies (``width`` pixels wide, 8-bit palette) for the README."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for png in pngs:
        with Image.open(png) as im:
            im = im.convert("RGB")
            height = round(im.height * width / im.width)
            small = im.resize((width, height), Image.Resampling.LANCZOS)
            small = small.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
            path = folder / png.name
            small.save(path, optimize=True)
            out.append(path)
    return out


def main(
    out: Path = C.OUTPUT,
    quick: bool = False,
    only: list[str] | None = None,
    thumbs: Path | None = None,
) -> dict[str, list[Path]]:
    """Make the figures; returns figure name -> written files (empty when skipped)."""
    out = Path(out)
    modules = figure_modules(only)
    made: dict[str, list[Path]] = {}
    for mod in modules:
        start = time.perf_counter()
        with C.quiet_queries():  # a failed fit is flagged on the figure instead
            made[mod.NAME] = mod.main(out=out, quick=quick)
        print(f"{mod.NAME}: {len(made[mod.NAME])} file(s), {time.perf_counter() - start:.0f} s")
    # Every figure's caption, also with --only (the others keep their earlier files).
    print(f"captions: {write_captions(figure_modules(), out, made)}")
    if thumbs is not None:
        pngs = [p for paths in made.values() for p in paths if p.suffix == ".png"]
        for path in thumbnails(pngs, Path(thumbs)):
            print(f"thumbnail: {path} ({path.stat().st_size // 1024} KB)")
    return made


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=C.OUTPUT, help="output folder")
    parser.add_argument("--quick", action="store_true", help="tiny sampler settings (drafts)")
    parser.add_argument("--only", nargs="+", help="figure name prefixes, e.g. fig4 fig7")
    parser.add_argument("--thumbnails", type=Path, help="also write README thumbnails here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    main(out=args.out, quick=args.quick, only=args.only, thumbs=args.thumbnails)
