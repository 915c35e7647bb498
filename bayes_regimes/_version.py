"""The version of bayes_regimes (read by the build backend)."""

__version__ = "0.1.0"
