"""Helpers of benchmarks/crossed_monkeys.py (no fits): model sizes, cache reuse."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import crossed_monkeys as cm  # noqa: E402
import crossed_monkeys_new as cmn  # noqa: E402


def test_log_params_reads_sizes_from_names():
    table = cm.log_params(["Pythia 70M", "Pythia 6.9B", "llama-3-8B-instruct", "tiny 5K"])
    np.testing.assert_allclose(table["log10_params"].to_numpy(), np.log10([70e6, 6.9e9, 8e9, 5e3]))
    with pytest.raises(ValueError, match="no parameter count"):
        cm.log_params(["gpt-unknown"])


def test_model_kwargs_resolve_the_size_covariate():
    import pandas as pd

    counts = pd.DataFrame({"model": ["Pythia 70M", "Pythia 1B"]})
    kw = cm._model_kwargs(counts, cmn.NEW_MODEL_VARIANT)
    assert list(kw["model_covariates"].index) == ["Pythia 70M", "Pythia 1B"]
    assert kw["covariate_terms"] == ["ability", "structural", "kappa"]
    assert cm.VARIANTS[cmn.NEW_MODEL_VARIANT]["model_covariates"] == "log_params"  # unchanged


def test_seed_cache_from_results(tmp_path):
    """Recorded fits become cache files under the names run_variant reads; unknown
    variants and fits without a row are skipped; existing cache files are kept."""
    main, other = cm.MAIN[0], "crossed beta"
    saved = {
        "rows": [
            {"method": main, "seed": 0, "auroc": 0.7},
            {"method": other, "seed": 1, "auroc": 0.6},
        ],
        "fits": [
            {"method": main, "seed": 0, "chains": 4, "draws": 3000, "note": "kept"},
            {"method": other, "seed": 1, "chains": 2, "draws": 1500},
            {"method": other, "seed": 2, "chains": 2, "draws": 1500},  # no row
            {"method": "retired variant", "seed": 0, "chains": 2, "draws": 10},
        ],
        "new_cells": [{"variant": cm.NEW_CELL_VARIANT, "seed": 0, "auroc": 0.68}],
    }
    results = tmp_path / "crossed_monkeys.json"
    results.write_text(json.dumps(saved))
    cache = tmp_path / "cache"
    cache.mkdir()
    assert cm.seed_cache_from_results(results, cache) == 3
    main_file = cm._cache_path(cache, main, 0, 4, 3000)
    assert json.loads(main_file.read_text())["fit"]["note"] == "kept"
    assert json.loads(cm._cache_path(cache, other, 1, 2, 1500).read_text())["row"]["auroc"] == 0.6
    assert not cm._cache_path(cache, other, 2, 2, 1500).exists()
    main_file.write_text("{}")
    assert cm.seed_cache_from_results(results, cache) == 0
    assert main_file.read_text() == "{}"
    assert cm.seed_cache_from_results(tmp_path / "missing.json", cache) == 0


def test_new_models_summary_is_mean_absolute_error():
    rows = []
    for model, pred in (("a", 0.2), ("b", 0.5)):
        for how, shift in (("by size", 0.0), ("population", 0.1)):
            row = {"model": model, "prediction": how, "auroc": 0.7, "ece": 0.1, "brier": 0.2}
            for kk in cmn.NEW_MODEL_KS:
                row |= {f"pass@{kk}_pred": pred + shift, f"pass@{kk}_true": 0.3}
            rows.append(row)
    md, summary = cmn.new_models_markdown(rows)
    by = {r["prediction"]: r for r in summary}
    assert by["by size"]["err10"] == pytest.approx((0.1 + 0.2) / 2)
    assert by["population"]["err10"] == pytest.approx((0.0 + 0.3) / 2)
    assert any("left-out model" in line for line in md)
