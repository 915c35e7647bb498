"""Progress of a long reduction: a tqdm bar, stderr lines without tqdm, or a callback.

Examples
--------
>>> seen = []
>>> tick = progress_ticker(lambda done, total: seen.append((done, total)), 10)
>>> for done in (4, 10):
...     tick(done)
>>> seen
[(4, 10), (10, 10)]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def progress_ticker(progress: Any, total: int) -> Callable[[int], None]:
    """A function taking the rows done so far (tqdm bar, stderr lines, or a callback)."""
    if callable(progress):
        return lambda done: progress(done, total)
    if not progress:
        return lambda done: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        last = [time.perf_counter()]

        def report(done: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 2 or done == total:
                last[0] = now
                print(f"[bayes-regimes] reduced {done:,} / {total:,} rows", file=sys.stderr)

        return report
    bar = tqdm(total=total, unit="row", unit_scale=True, desc="reducing", leave=False)

    def advance(done: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return advance
