"""bayes_regimes: Bayesian failure regimes of reasoning models from rollout outcomes.

Typical use::

    from bayes_regimes import RegimeModel, read_rollouts

    data = read_rollouts("evals.csv", group="model")
    model = RegimeModel(data)
    model.fit()
    model.regimes()  # per-cell posterior of p and regime label
    model.expected_gain(100)  # P(at least one success in 100 more rollouts)
    model.pass_at_k([10, 1000])  # pass@k with credible intervals, far beyond n
    model.allocate(budget=5000)  # where extra rollouts buy the most

Importing the package does not import PyMC; fitting does.
"""

from bayes_regimes._version import __version__
from bayes_regimes.data import RolloutData, read_rollouts
from bayes_regimes.errors import DataError, DiagnosticsWarning, FormatVersionError
from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.regime import RegimeModel
from bayes_regimes.simulate import SimulatedBenchmark, default_benchmark, simulate_benchmark

load = BaseModel.load


def __getattr__(name: str):
    if name == "reduce_rollouts":  # imported on first use: pyarrow.dataset, fsspec
        from bayes_regimes.reduce import reduce_rollouts

        return reduce_rollouts
    raise AttributeError(f"module 'bayes_regimes' has no attribute {name!r}")


__all__ = [
    "BaseModel",
    "DataError",
    "DiagnosticsWarning",
    "FormatVersionError",
    "RegimeModel",
    "RolloutData",
    "SimulatedBenchmark",
    "__version__",
    "default_benchmark",
    "load",
    "read_rollouts",
    "reduce_rollouts",
    "simulate_benchmark",
]
