"""The synthetic data of benchmarks/reduce.py at toy size (no timings)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import reduce as bench  # noqa: E402

from bayes_regimes.reduce import reduce_rollouts  # noqa: E402


def test_data_folder_names_the_problems_only_when_not_the_default():
    assert bench.data_folder("/d", 10**7, bench.PROBLEMS) == Path("/d/rows_1e+07")
    assert bench.data_folder("/d", 10**7, 1000) == Path("/d/rows_1e+07_p1000")


def test_generate_sets_the_cells_and_samples_and_reduces_to_them(tmp_path):
    info = bench.generate(tmp_path / "a", 3000, problems=50)
    assert (info["rows"], info["cells"], info["samples_per_cell"]) == (3000, 500, 6)
    data = reduce_rollouts(str(tmp_path / "a"), group="model", sample="sample", progress=False)
    assert data.n_cells == 500 and data.n_rollouts == 3000
    assert np.all(data.cells["n"] == 6)
    # regenerated only when rows or problems change
    again = bench.generate(tmp_path / "a", 3000, problems=50)
    assert again == info
    other = bench.generate(tmp_path / "a", 3000, problems=100)
    assert (other["cells"], other["samples_per_cell"]) == (1000, 3)


def test_generate_refuses_fewer_rows_than_cells(tmp_path):
    with pytest.raises(SystemExit, match="cannot fill"):
        bench.generate(tmp_path / "b", 100, problems=50)
