"""faceaging: see a face at every age, on a CPU. Age-cGAN-style encoder, generator and identity optimisation."""

from .ager import AgedFace, AgingResult, FaceAger
from .ages import GROUP_LABELS, AgeGroup, age_condition
from .images import FaceAgingError
from .weights import WeightsError

__all__ = [
    "GROUP_LABELS",
    "AgeGroup",
    "AgedFace",
    "AgingResult",
    "FaceAger",
    "FaceAgingError",
    "WeightsError",
    "age_condition",
]
