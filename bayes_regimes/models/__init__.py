"""Model classes, one per file; all share :class:`~bayes_regimes.models.base.BaseModel`."""

from bayes_regimes.models.base import BaseModel
from bayes_regimes.models.regime import RegimeModel

__all__ = ["BaseModel", "RegimeModel"]
