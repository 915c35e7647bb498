"""Tests of the scoring rules in bayes_regimes.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayes_regimes.metrics import (
    auroc,
    brier,
    expected_calibration_error,
    interval_coverage,
    reliability_table,
)


def _pairwise_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Brute-force AUROC: P(score_pos > score_neg) + 0.5 P(tie)."""
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auroc_hand_cases():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.2, 0.9]) == 1.0
    assert auroc([0, 1], [0.9, 0.2]) == 0.0
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert auroc([False, True, True], [1, 2, 2]) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_pairwise_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=300)
    s = np.round(rng.normal(size=300) + 0.5 * y, 1)  # rounding makes many ties
    assert np.unique(s).size < s.size
    assert auroc(y, s) == pytest.approx(_pairwise_auroc(y, s), abs=1e-12)


def test_auroc_one_class_or_empty_is_nan():
    assert math.isnan(auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(auroc([0, 0], [0.1, 0.2]))
    assert math.isnan(auroc([], []))


def test_brier_hand_case():
    assert brier([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.6325 / 4)
    assert brier([1, 0], [1.0, 0.0]) == 0.0
    assert math.isnan(brier([], []))


def test_ece_hand_case():
    # bins=2: bin 0 holds 0.1, 0.4, 0.35 (mean 0.85/3, one positive);
    # bin 1 holds 0.8 (one positive).
    y, p = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    expected = (3 * abs(0.85 / 3 - 1 / 3) + 1 * abs(0.8 - 1.0)) / 4
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(expected)


def test_ece_calibrated_near_zero_and_miscalibrated_positive():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y_cal = rng.uniform(size=p.size) < p
    y_mis = rng.uniform(size=p.size) < p**2
    assert expected_calibration_error(y_cal, p) < 0.01
    assert expected_calibration_error(y_mis, p) > 0.1


def test_reliability_table_bins():
    y = [0, 1, 1, 0, 1]
    p = [0.0, 0.05, 0.55, 0.999, 1.0]
    tab = reliability_table(y, p, bins=4)
    assert list(tab.columns) == ["bin", "low", "high", "mean_pred", "frac_pos", "count"]
    assert tab["count"].tolist() == [2, 0, 1, 2]
    assert tab["count"].sum() == 5
    assert math.isnan(tab.loc[1, "mean_pred"]) and math.isnan(tab.loc[1, "frac_pos"])
    assert tab.loc[3, "mean_pred"] == pytest.approx(0.9995)
    assert tab.loc[3, "frac_pos"] == 0.5
    assert tab["low"].tolist() == [0.0, 0.25, 0.5, 0.75]
    # ECE is the count-weighted gap of the table
    used = tab[tab["count"] > 0]
    ece = float((used["count"] * (used["mean_pred"] - used["frac_pos"]).abs()).sum() / 5)
    assert expected_calibration_error(y, p, bins=4) == pytest.approx(ece)


def test_interval_coverage():
    assert interval_coverage([0.5, 2.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]) == pytest.approx(
        2 / 3
    )
    assert math.isnan(interval_coverage([], [], []))
    with pytest.raises(ValueError, match="low > high"):
        interval_coverage([0.5], [0.6], [0.4])


@pytest.mark.parametrize(
    ("func", "args", "match"),
    [
        (auroc, ([0, 1], [0.1]), "differ in length"),
        (auroc, ([0, 2], [0.1, 0.2]), "0/1"),
        (auroc, ([0, 1], [np.nan, 0.2]), "non-finite"),
        (brier, ([0, 1], [0.1, 1.5]), r"\[0, 1\]"),
        (brier, ([[0, 1]], [[0.1, 0.2]]), "one-dimensional"),
        (expected_calibration_error, ([0, 1], [0.1, 0.2], 0), "positive integer"),
        (interval_coverage, ([0.1], [np.inf], [1.0]), "non-finite"),
    ],
)
def test_validation(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)
