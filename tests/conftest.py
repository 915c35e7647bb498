"""Shared fixtures: the public data folder (skipped with a reason when absent)."""

from __future__ import annotations

import pytest

from bayes_regimes import datasets


@pytest.fixture(scope="session")
def shared_data():
    """The public data folder; tests using it skip when it is absent."""
    root = datasets.data_dir()
    if root is None:
        pytest.skip(datasets.missing_reason())
    return root
