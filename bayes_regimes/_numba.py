"""numba compilation with an on-disk cache where one can be written.

``numba.njit(cache=True)`` raises at decoration when neither the package's
``__pycache__`` nor a user cache directory is writable (a read-only install and home,
as in some containers and clusters). :func:`jit` then compiles per process instead.

Examples
--------
>>> add = jit(lambda a, b: a + b)
>>> add(1, 2)
3
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def jit(func: Callable, **options: Any) -> Callable:
    """``numba.njit(func, cache=True, **options)``, uncached when no cache is writable."""
    try:
        return numba.njit(cache=True, **options)(func)
    except RuntimeError as err:  # "cannot cache function ...: no locator available"
        if "cannot cache" not in str(err):
            raise
        return numba.njit(**options)(func)
