"""Helpers shared by the data-layer tests (test_data*.py, test_reduce.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_regimes.errors import DataError


def one_line_error(match: str, func, *args, **kwargs) -> str:
    """Call func, expect a one-line DataError matching every |-separated part."""
    with pytest.raises(DataError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    for part in match.split("|"):
        assert part in message, f"{part!r} not in {message!r}"
    return message


def counts_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "problem_id": ["p1", "p2", "p3", "p1", "p2"],
            "model": ["m1", "m1", "m1", "m2", "m2"],
            "n": [10, 10, 10, 5, 5],
            "k": [0, 3, 10, 0, 5],
            "difficulty": [0.1, 0.2, 0.3, 0.1, 0.2],
        }
    )


def random_rollouts(seed: int = 0, problems: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in rng.permutation(problems):
        for g in ("a", "b"):
            for c in ("x", "y"):
                size = int(rng.integers(1, 6))
                for s in range(size):
                    rows.append((f"q{p}", g, c, s, int(rng.random() < 0.3), float(p % 4)))
    df = pd.DataFrame(rows, columns=["problem_id", "model", "cond", "sample", "correct", "level"])
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def with_values(df: pd.DataFrame, **changes) -> pd.DataFrame:
    """A copy of df with ``column=(row, value)`` changes (the column made object dtype)."""
    df = df.copy()
    for column, (row, value) in changes.items():
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
    return df
