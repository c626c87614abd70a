"""Likelihood heads. Importing this package registers every built-in head."""
from .base import Head
from .dlogistic import DiscretizedLogisticMixture
from .softmax import CoupledSoftmax
from .clogistic import ContinuousLogisticMixture
from .categorical import Categorical

__all__ = ["Head", "DiscretizedLogisticMixture", "CoupledSoftmax", "ContinuousLogisticMixture", "Categorical"]
