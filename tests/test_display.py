"""Jupyter display: the rich HTML repr of models and diagnostics, and the plot methods."""

from __future__ import annotations

import copy
import inspect
import re
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from bayes_regimes import RegimeModel, RolloutData, plots, simulate_benchmark  # noqa: E402
from bayes_regimes.diagnostics import check_posterior  # noqa: E402
from bayes_regimes.errors import DiagnosticsWarning  # noqa: E402

TINY = dict(draws=150, tune=150, chains=2, progressbar=False)
EVIL = "<img src=x onerror=alert(1)>"
PLOT_METHODS = (
    "plot_p_posterior",
    "plot_regime_fractions",
    "plot_pass_at_k",
    "plot_expected_gain",
    "plot_ppc",
    "plot_diagnostics",
)


@pytest.fixture(scope="module")
def fitted():
    sim = simulate_benchmark(
        groups={"a": dict(pi=0.3, mu=0.2, kappa=2.0), EVIL: dict(pi=0.1, mu=0.4, kappa=4.0)},
        n_problems=120,
        n=10,
        random_seed=5,
    )
    model = RegimeModel(RolloutData.from_counts(sim.counts, group="group"), slab="beta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        model.fit(random_seed=2, **TINY)
    return model


@pytest.fixture(scope="module")
def failed(fitted):
    """The same fit with a failing diagnostics report (chains that disagree)."""
    rng = np.random.default_rng(0)
    post = xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=(2, 200)) + [[0.0], [3.0]])})
    bad = copy.copy(fitted)
    bad._diagnostics = check_posterior(post, diverging=np.ones((2, 200), bool))
    assert not bad._diagnostics.ok
    return bad


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        return fn()


def test_unfitted_repr_html_shows_data_and_status():
    sim = simulate_benchmark(n_problems=30, n=5, random_seed=0)
    model = RegimeModel(RolloutData.from_counts(sim.counts))
    out = model._repr_html_()
    assert "not fitted" in out
    assert f"{len(sim.counts)} cells" in out
    assert f"{int(sim.counts['n'].sum())} rollouts" in out


def test_fitted_repr_html_has_diagnostics_and_regime_counts(fitted):
    out = _quiet(fitted._repr_html_)
    rep = fitted.diagnostics()
    assert rep.to_html() in out
    assert ("fit OK" in out) == rep.ok
    # The regime table counts every cell once, per group, as regimes() does.
    reg = _quiet(fitted.regimes)
    for label, count in reg[reg["group"] == "a"]["label"].value_counts().items():
        row = re.search(r"<td>a</td>(.*?)</tr>", out, re.S).group(1)
        assert f"<td>{count}</td>" in row, label
    assert "sampler nutpie" in out and "seed 2" in out


def test_repr_html_escapes_group_names(fitted):
    out = _quiet(fitted._repr_html_)
    assert EVIL not in out
    assert "&lt;img src=x onerror=alert(1)&gt;" in out


def test_failed_fit_is_flagged_and_highlighted(failed):
    out = _quiet(failed._repr_html_)
    assert "FIT FAILED DIAGNOSTICS" in out
    assert "background:#fdd" in out  # the failing parameter row is highlighted
    assert "<details open>" in out  # the diagnostics are unfolded when they fail
    assert "fit OK" not in out


def test_diagnostics_report_repr_html(fitted, failed):
    for model in (fitted, failed):
        rep = model.diagnostics()
        assert rep._repr_html_() == rep.to_html()
    assert "FAIL" in failed.diagnostics()._repr_html_()


@pytest.mark.parametrize("name", PLOT_METHODS)
def test_plot_methods_return_figures(fitted, name):
    fig = _quiet(getattr(fitted, name))
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)


def test_plot_methods_are_keyword_only_and_documented(fitted):
    for name in PLOT_METHODS:
        fn = getattr(plots, name)
        assert getattr(RegimeModel, name) is fn  # on the class: the plots function itself
        method = getattr(fitted, name)
        assert method.__doc__ == fn.__doc__
        params = list(inspect.signature(method).parameters.values())
        assert all(p.kind is p.KEYWORD_ONLY for p in params), name
    with pytest.raises(TypeError):
        fitted.plot_pass_at_k([1, 10])


def test_plot_method_passes_options_through(fitted):
    fig = _quiet(lambda: fitted.plot_pass_at_k(ks=[1, 7, 300]))
    xs = [list(line.get_xdata()) for line in fig.axes[0].get_lines()]
    assert [1, 7, 300] in xs
    plt.close(fig)
    fig, ax = plt.subplots()
    assert _quiet(lambda: fitted.plot_regime_fractions(ax=ax)) is fig
    plt.close(fig)


def test_check_posterior_names_a_stuck_chain():
    rng = np.random.default_rng(1)
    post = xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=(3, 200)))})
    diverging = np.zeros((3, 200), bool)
    diverging[2] = True  # frozen chain
    diverging[0, :5] = True  # a few divergences only
    report = check_posterior(post, diverging=diverging)
    assert not report.ok
    assert "chain(s) [2] stuck" in report.message
    few = check_posterior(post, diverging=np.eye(3, 200, dtype=bool))
    assert "stuck" not in few.message and "3 divergent transition(s)" in few.message
