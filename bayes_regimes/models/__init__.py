"""Model classes, one per file; all share :class:`~bayes_regimes.models.base.BaseModel`."""

from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.crossed import CrossedRegimeModel  # registered for BaseModel.load
from bayes_regimes.models.interventions import InterventionModel  # registered for BaseModel.load
from bayes_regimes.models.regime import RegimeModel

__all__ = ["BaseModel", "CrossedRegimeModel", "InterventionModel", "RegimeModel"]
