"""The base of an SBC design (:mod:`bayes_regimes.sbc_models`) and its small helpers.

A design fixes the data layout, simulates data from one prior draw and names the
quantities whose ranks are tested; :func:`~bayes_regimes.sbc_models.run_design_sbc`
runs the loop.

Examples
--------
>>> import numpy as np
>>> z, p = _sample_cell(np.array([0, 3]), np.array([5, 5]), 0.5, 1.0, 1.0, np.random.default_rng(0))
>>> bool(z[1]), bool(p[1] > 0)  # a cell with successes is never structural
(False, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from bayes_regimes import closed_form as cf
from bayes_regimes.data import RolloutData
from bayes_regimes.models.base import BaseModel
from bayes_regimes.sbc_stats import thin_draws

#: (label, posterior variable, selection of one element) of a ranked parameter.
Quantity = tuple[str, str, dict[str, str]]


class SBCDesign:
    """A fixed design, its simulator and the quantities ranked (base class).

    Subclasses set :attr:`label`, :attr:`prior_vars`, and implement
    :meth:`template_data`, :meth:`build`, :meth:`parameters`, :meth:`simulate` and
    :meth:`cell_draws`.
    """

    label: str = "design"
    #: Posterior variables drawn from the prior (the simulator's inputs).
    prior_vars: list[str] = []

    def __init__(self, model_kwargs: Mapping[str, Any] | None = None, seed: int = 0) -> None:
        self.model_kwargs = dict(model_kwargs or {})
        self.seed = seed

    def template_data(self) -> RolloutData:  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, data: RolloutData, **overrides: Any) -> BaseModel:  # pragma: no cover
        raise NotImplementedError

    def parameters(self) -> list[Quantity]:  # pragma: no cover - abstract
        raise NotImplementedError

    def simulate(self, draw: xr.Dataset, rng: np.random.Generator):  # pragma: no cover
        """(RolloutData, cell truth) from one prior draw (dims without ``simulation``)."""
        raise NotImplementedError

    def cell_draws(self, model, cell_truth, idx, rng):  # pragma: no cover - abstract
        """(truth (Q,), posterior draws (len(idx), Q)) of the cell-level quantities."""
        raise NotImplementedError

    #: Labels of the cell-level quantities.
    cell_labels: list[str] = []

    def quantities(self) -> list[str]:
        """Labels of every ranked quantity, parameters first."""
        return [label for label, _, _ in self.parameters()] + list(self.cell_labels)

    def settings(self) -> dict[str, Any]:
        return {"design": type(self).__name__, "model_kwargs": self.model_kwargs}


def _values(da: xr.DataArray, sel: dict[str, str], lead: tuple[str, ...]) -> np.ndarray:
    """One element of a variable, as an array over the ``lead`` dims."""
    return da.sel(sel).transpose(*lead).values


def _flat_index(post: xr.Dataset, n: int) -> np.ndarray:
    """Indices into the (chain x draw) flattened draws of ``n`` thinned draws."""
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    return thin_draws(np.arange(chains * draws).reshape(chains, draws), n)


def _sample_cell(k, n, pi, a, b, rng) -> tuple[np.ndarray, np.ndarray]:
    """Draws of (z, p) of Beta-slab cells from their conditional posterior given
    (pi, a, b) per draw: z ~ Bernoulli(w), p = 0 if z else Beta(a + k, b + n - k)."""
    w = cf.structural_weight(k, n, pi, a, b)
    z = rng.random(w.shape) < w
    p = rng.beta(a + k, b + n - k)
    return z.astype(float), np.where(z, 0.0, p)
