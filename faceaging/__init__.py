"""faceaging: see a face at every age, on a CPU. Age-cGAN-style encoder, generator and identity optimisation.

The exports load on first use: importing torch takes about 2 s, and the app serves its page before
the models (and torch) have loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "PreparedFace": "faces",
    "AgingResult": "faces",
    "FaceAger": "ager",
    "GROUP_LABELS": "ages",
    "AgeGroup": "ages",
    "age_condition": "ages",
    "FaceAgingError": "images",
    "WeightsError": "weights",
}
__all__ = [
    "PreparedFace",
    "AgingResult",
    "FaceAger",
    "GROUP_LABELS",
    "AgeGroup",
    "age_condition",
    "FaceAgingError",
    "WeightsError",
]

if TYPE_CHECKING:
    from .ager import FaceAger
    from .ages import GROUP_LABELS, AgeGroup, age_condition
    from .faces import AgingResult, PreparedFace
    from .images import FaceAgingError
    from .weights import WeightsError


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
