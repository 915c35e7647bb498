"""Every docstring example of the package runs and gives the output it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import bayes_regimes

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(bayes_regimes.__path__, prefix="bayes_regimes.")
)


def test_modules_are_found():
    assert {"bayes_regimes.closed_form", "bayes_regimes.models.crossed"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_examples_exist_in_the_core_modules():
    for name in ("bayes_regimes.closed_form", "bayes_regimes.paper", "bayes_regimes.simulate"):
        assert doctest.DocTestFinder().find(importlib.import_module(name)), name
