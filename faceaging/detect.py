"""Face detection: facenet-pytorch's MTCNN, every face with its five landmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


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


class FaceDetector:
    """MTCNN with its bundled weights (they ship inside the facenet-pytorch wheel)."""

    def __init__(
        self,
        device: torch.device | str = "cpu",
        min_face_size: int = 20,
        min_score: float = 0.9,
    ):
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(
            keep_all=True,
            device=device,
            min_face_size=min_face_size,
            post_process=False,
        )
        self.min_score = min_score

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an RGB uint8 image, largest first."""
        return self.detect_batch([image])[0]

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
        return sorted(faces, key=lambda f: f.size, reverse=True)
