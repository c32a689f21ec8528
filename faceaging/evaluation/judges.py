"""How far the judges can be trusted: identity parity with dlib, and the age judge's own error.

`python -m faceaging check-judges` prints these figures. It needs the dev requirements (dlib).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..ages import AgeGroup
from ..align import align_face
from ..convert import dlib_recognition_model, dlib_shape_predictor
from ..detect import FaceDetector
from ..identity import IdentityNet, distance
from ..training.data import detect_centre_face, is_heldout, is_tuning, utkface_age
from .age_judge import AgeEstimator


@dataclass
class JudgeReport:
    faces: int
    parity_min_cosine: float
    parity_max_abs_diff: float
    path_distance_mean: float
    path_distance_max: float
    age_faces: int
    age_mae: float
    age_group_accuracy: float
    age_within_one_group: float


def heldout_utkface(data_dir: str | Path, limit: int | None = None, tuning: bool = False) -> list[Path]:
    """The fixed held-out slice (CRC-32 of the name = 0 mod 20), sorted, optionally cut to `limit`.

    `tuning` gives instead a fixed slice of training faces (CRC-32 = 1 mod 20) for choosing
    inference settings, so that the held-out figures stay untouched by any choice.
    """
    if tuning:
        return sorted(p for p in Path(data_dir).glob("*.jpg") if is_tuning(p.name))[:limit]
    return sorted(p for p in Path(data_dir).glob("*.jpg") if is_heldout(p.name))[:limit]


def check_judges(identity: IdentityNet, photos: list[Path], utkface: list[Path]) -> JudgeReport:
    """Compare the PyTorch identity net with dlib on `photos` + `utkface`; score the age judge on `utkface`."""
    import dlib

    recogniser = dlib.face_recognition_model_v1(str(dlib_recognition_model()))
    dlib_detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_shape_predictor()))
    mtcnn = FaceDetector(min_face_size=40)
    ages = AgeEstimator()

    cosines, diffs, path_distances = [], [], []
    errors, hits, near = [], [], []
    for path in [*photos, *utkface]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        rects = dlib_detector(rgb, 1)
        (landmarks,) = detect_centre_face(mtcnn, [rgb])
        if len(rects) == 0 or landmarks is None:
            continue
        shape = predictor(rgb, max(rects, key=lambda r: r.area()))
        chip = dlib.get_face_chip(rgb, shape, 150, 0.25)
        reference = torch.tensor(recogniser.compute_face_descriptor(chip), dtype=torch.float32)
        with torch.inference_mode():
            on_chip = identity(torch.from_numpy(chip).permute(2, 0, 1)[None].float() / 255)[0]
            crop, _ = align_face(rgb, landmarks)
            via_crop = identity.embed_crops(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1)[0]
        cosines.append(float(torch.nn.functional.cosine_similarity(on_chip, reference, dim=0)))
        diffs.append(float((on_chip - reference).abs().max()))
        path_distances.append(float(distance(via_crop, reference)))
        if path in utkface:
            true_age = utkface_age(path.name)
            estimate = ages.estimate(rgb, landmarks)
            errors.append(abs(estimate.years - true_age))
            hits.append(estimate.group == AgeGroup.from_age(true_age))
            near.append(abs(int(estimate.group) - int(AgeGroup.from_age(true_age))) <= 1)
    return JudgeReport(
        faces=len(cosines),
        parity_min_cosine=min(cosines),
        parity_max_abs_diff=max(diffs),
        path_distance_mean=float(np.mean(path_distances)),
        path_distance_max=max(path_distances),
        age_faces=len(errors),
        age_mae=float(np.mean(errors)) if errors else float("nan"),
        age_group_accuracy=float(np.mean(hits)) if hits else float("nan"),
        age_within_one_group=float(np.mean(near)) if near else float("nan"),
    )
