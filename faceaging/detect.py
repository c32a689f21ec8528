"""Face detection: facenet-pytorch's MTCNN, every face with its five landmarks."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np
import torch

from .images import scaled_size

Sized = TypeVar("Sized")  # a DetectedFace, or anything else with a `size` in pixels


@dataclass
class DetectedFace:
    box: np.ndarray  # x1, y1, x2, y2 in image pixels
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, left mouth corner, right mouth corner
    score: float

    @property
    def centre(self) -> np.ndarray:
        return (self.box[:2] + self.box[2:]) / 2

    @property
    def size(self) -> float:
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def largest_first(faces: Iterable[Sized]) -> list[Sized]:
    """Faces (anything with a `size` in pixels) largest first: the order faces are aged, listed
    and drawn in (`render.composite` draws the largest last, on top)."""
    return sorted(faces, key=lambda f: f.size, reverse=True)


def _import_mtcnn() -> type:
    """facenet-pytorch's MTCNN, without running torchvision's package __init__ where possible.

    MTCNN needs two torchvision modules (`ops.boxes.batched_nms`, `transforms.functional`), but
    `import torchvision` also imports every model definition, and `torchvision.ops` imports
    `roi_align`, which imports `torch._dynamo`: 1.5-2.5 s and ~130 MB that the app never uses. So,
    unless torchvision is already imported, `torchvision` and `torchvision.ops` enter sys.modules
    as plain package shells (their real paths, their __init__ not run) and only the submodules that
    are asked for load. Any later `import torchvision.x` still finds the real submodule.
    """
    if "torchvision" not in sys.modules:
        for name in ("torchvision", "torchvision.ops"):
            spec = importlib.util.find_spec(name)
            shell = types.ModuleType(name)
            shell.__spec__, shell.__file__ = spec, spec.origin
            shell.__path__ = list(spec.submodule_search_locations)
            sys.modules[name] = shell
        # The one name the loaded submodules take from torchvision's __init__: `ops.boxes` asks
        # `torchvision._is_tracing()` once NMS sees more than 1,000 boxes (a crowd photo).
        sys.modules["torchvision"]._is_tracing = torch._C._get_tracing_state
    from facenet_pytorch import MTCNN

    return MTCNN


TIGHT_CROP_PADDING = 0.3  # of the longer side, on each side, for the second try
DETECT_SIDE = 1024  # longest side MTCNN searches


class FaceDetector:
    """MTCNN with its bundled weights (they ship inside the facenet-pytorch wheel)."""

    def __init__(
        self,
        device: torch.device | str = "cpu",
        min_face_size: int = 20,
        min_score: float = 0.9,
    ):
        MTCNN = _import_mtcnn()  # noqa: N806 (a class)

        self.mtcnn = MTCNN(
            keep_all=True,
            device=device,
            min_face_size=min_face_size,
            post_process=False,
        )
        self.min_score = min_score

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an RGB uint8 image, largest first.

        Photos longer than DETECT_SIDE are searched on a shrunk copy: MTCNN's first pyramid level
        on a 2,048 px photo alone held ~100 MB, and a face too small to find there is too small to
        age. When no face is found, MTCNN tries once more on a copy with replicated borders: a face
        that fills a tightly cropped portrait and touches its edges is missed otherwise. Boxes and
        landmarks are in the photo's pixels either way, so they may reach past its edges.
        """
        return self._detect_scaled(image, pad=0) or self._detect_scaled(
            image, pad=int(TIGHT_CROP_PADDING * max(image.shape[:2]))
        )

    def _detect_scaled(self, image: np.ndarray, pad: int) -> list[DetectedFace]:
        if pad:
            image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        # A padded copy is shrunk back to the photo's own size, so the second try costs no more.
        side = min(DETECT_SIDE, max(image.shape[:2]) - 2 * pad)
        scale = min(1.0, side / max(image.shape[:2]))
        if scale < 1.0:
            size = scaled_size(image, scale)
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return [
            DetectedFace(f.box / scale - pad, f.landmarks / scale - pad, f.score) for f in self.detect_batch([image])[0]
        ]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        """Faces in several RGB uint8 images of one size, in a single MTCNN pass."""
        with torch.inference_mode():
            boxes, scores, points = self.mtcnn.detect(np.stack(images), landmarks=True)
        return [self._faces(b, s, p) for b, s, p in zip(boxes, scores, points, strict=True)]

    def _faces(self, boxes: np.ndarray | None, scores: np.ndarray, points: np.ndarray) -> list[DetectedFace]:
        if boxes is None:
            return []
        faces = [
            DetectedFace(
                np.asarray(b, dtype=np.float64),
                np.asarray(p, dtype=np.float64),
                float(s),
            )
            for b, s, p in zip(boxes, scores, points, strict=True)
            if s >= self.min_score
        ]
        return largest_first(faces)
