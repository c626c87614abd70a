"""Likelihood heads. Importing this package registers every built-in head."""
from .base import Head
from .dlogistic import DiscretizedLogisticMixture

__all__ = ["Head", "DiscretizedLogisticMixture"]
