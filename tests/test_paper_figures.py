"""paper_figures/: every figure script runs (tiny fits) and writes its PNG and PDF.

The figures read the public data; without it they are skipped with the reason.
The numbers behind figures 2 and 3 are checked against bayes_regimes.paper.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_regimes import paper

FIGURES = Path(__file__).resolve().parents[1] / "paper_figures"
sys.path.insert(0, str(FIGURES))


def _module(name: str):
    return importlib.import_module(name)


def test_every_figure_script_has_the_interface():
    mods = _module("make_all").figure_modules()
    assert [m.NAME[:4] for m in mods] == [f"fig{i}" for i in range(1, 9)]
    for mod in mods:
        assert callable(mod.main) and mod.CAPTION and mod.DATA
        assert "../shared/data" in mod.CAPTION  # real data, said so in the caption


@pytest.fixture(scope="module")
def made(tmp_path_factory, shared_data):
    """make_all at quick settings (one tiny fit shared by figures 4 to 8)."""
    out = tmp_path_factory.mktemp("figures")
    thumbs = out / "thumbs"
    return out, _module("make_all").main(out=out, quick=True, thumbs=thumbs)


@pytest.mark.slow  # fits a model: `make test-slow`
def test_make_all_writes_png_and_pdf(made):
    out, files = made
    assert len(files) == 8
    for name, paths in files.items():
        assert sorted(p.suffix for p in paths) == [".pdf", ".png"], name
        for path in paths:
            assert path.parent == out and path.stat().st_size > 10_000, path
    captions = (out / "captions.md").read_text()
    assert all(name in captions for name in files)


@pytest.mark.slow  # fits a model: `make test-slow`
def test_thumbnails_are_small(made):
    out, files = made
    thumbs = sorted((out / "thumbs").glob("*.png"))
    assert [p.name for p in thumbs] == sorted(f"{name}.png" for name in files)
    assert all(p.stat().st_size < 100_000 for p in thumbs)


def test_fig2_fractions_match_the_paper_labels(shared_data):
    fig2 = _module("fig2_regime_fractions")
    df = paper.read_failure_profiles()
    table = fig2.eq2_fractions(df)
    labels = paper.outcome_regimes(df)
    counts = table.groupby("regime")["count"].sum()
    assert counts.to_dict() == labels.value_counts().to_dict()
    per_cell = table.groupby("cell")["fraction"].sum().to_numpy()
    np.testing.assert_allclose(per_cell, 1.0)
    assert ((table["low"] <= table["fraction"]) | (table["count"] == 0)).all()
    assert (table["fraction"] <= table["high"]).all()
    assert set(table.loc[table["model"] == "grpo1p7b", "method"]) == {"grpo"}


def test_fig3_steerable_hard_equals_paper_rule_summary(shared_data):
    fig3 = _module("fig3_rescue_by_strategy")
    df = paper.read_failure_profiles()
    table = fig3.rescue_table(df)
    summary = paper.paper_rule_summary(df)
    hard = table[table["population"] == "Steerable-Hard"].set_index(["cell", "strategy"])
    for cell, part in summary.groupby("cell"):
        rate = part.set_index("strategy")["rescue_rate"]
        best = part.loc[part["best_fixed"], "strategy"].iloc[0]
        assert hard.loc[(cell, "routed (paper rule)"), "rescue_rate"] == pytest.approx(
            rate["routed"]
        )
        assert hard.loc[(cell, "best fixed"), "rescue_rate"] == pytest.approx(rate[best])
        assert hard.loc[(cell, "resample"), "rescue_rate"] == pytest.approx(rate["retry"])
    # The published cell: routed 46.3 %, best fixed (dense) 43.9 %, resample 24.8 %.
    row = hard.loc["sft0p6b|gsm8k"]["rescue_rate"].round(3)
    assert row.to_dict() == {"routed (paper rule)": 0.463, "best fixed": 0.439, "resample": 0.248}
    whole = table[table["population"] == "all failures"]
    assert (whole.groupby("cell")["n"].first() == df.groupby("cell").size()).all()


def test_fig3_bayesian_bar_scores_each_failures_chosen_intervention(shared_data):
    """The Bayesian bar scores a choice exactly as the paper's rule is scored."""
    fig3 = _module("fig3_rescue_by_strategy")
    df = paper.read_failure_profiles()
    rule = pd.concat([paper.route(part) for _, part in df.groupby("cell", sort=False)])
    table = fig3.rescue_table(df, rule.loc[df.index], fig3.BAYES_CV)
    whole = table[table["population"] == "all failures"].set_index(["cell", "strategy"])
    for cell in df["cell"].unique():
        assert whole.loc[(cell, fig3.BAYES_CV), "rescue_rate"] == pytest.approx(
            whole.loc[(cell, "routed (paper rule)"), "rescue_rate"]
        )
    dense = pd.Series("dense_steer", index=df.index)
    table = fig3.rescue_table(df, dense, fig3.BAYES_IN_SAMPLE)
    whole = table[table["population"] == "all failures"]
    got = whole[whole["strategy"] == fig3.BAYES_IN_SAMPLE]
    want = df.groupby("cell", sort=False)["dense_steer"].mean()
    np.testing.assert_allclose(got.set_index("cell")["rescue_rate"], want.loc[got["cell"]])


def test_fig3_reads_cross_validated_choices(tmp_path, shared_data):
    fig3 = _module("fig3_rescue_by_strategy")
    df = paper.read_failure_profiles()
    rng = np.random.default_rng(0)
    pred = rng.random((len(df), len(paper.RATES)))
    path = tmp_path / "router.json"
    path.write_text(json.dumps({"cv": {"predictions": {"feat": pred.tolist()}}}))
    choice = fig3.router_choice(df, path)
    want = np.array(paper.INTERVENTIONS)[pred[:, 1:].argmax(axis=1)]
    assert (choice.to_numpy() == want).all() and choice.index.equals(df.index)
    path.write_text(json.dumps({"cv": {"predictions": {"feat": pred[:10].tolist()}}}))
    assert fig3.router_choice(df, path) is None  # does not cover the table: not used
    assert fig3.router_choice(df, tmp_path / "absent.json") is None


def test_fig1_posterior_regime_is_the_most_probable():
    fig1 = _module("fig1_regime_map")
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.2, 0.3, 0.5]])
    routes = pd.DataFrame(probs, columns=["p_resample", "p_steerable", "p_beyond_reach"])
    post = fig1.posterior_regimes(routes)
    assert post["posterior"].tolist() == list(paper.REGIMES)
    np.testing.assert_allclose(post["probability"], [0.7, 0.5, 0.5])


@pytest.mark.slow  # uses the interventions fit of `made`
def test_fig2_bayesian_fractions_are_distributions(made):
    out, _ = made
    fig2 = _module("fig2_regime_fractions")
    common = _module("_paper_common")
    df = paper.read_failure_profiles()
    model = common.intervention_fit(common.QUICK, out)  # cached by make_all: no refit
    table = fig2.bayesian_fractions(model, df)
    assert list(table.columns) == list(fig2.eq2_fractions(df).columns)
    np.testing.assert_allclose(table.groupby("cell")["fraction"].sum(), 1.0)
    sizes = df.groupby("cell").size()
    assert (table.groupby("cell")["total"].first() == sizes).all()
    assert ((table["low"] <= table["fraction"]) & (table["fraction"] <= table["high"])).all()
    assert set(table.loc[table["model"] == "grpo1p7b", "method"]) == {"grpo"}
