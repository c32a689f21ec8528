"""One-off development commands that turn the judges' PyPI sources into faceaging's own files.

They need the dev requirements (dlib-bin, face_recognition_models); the app never imports this.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from safetensors.torch import save_file

IDENTITY_WEIGHTS = "identity_dlib_resnet_v1.safetensors"


def judge_source_file(package: str, relative: str) -> Path:
    """A model file inside an installed package, found without importing the package.

    face_recognition_models' __init__ imports pkg_resources, which current setuptools lacks.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed: pip install -r requirements-dev.txt")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from {package}")
    return path


def dlib_recognition_model() -> Path:
    return judge_source_file("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat")


def dlib_shape_predictor() -> Path:
    return judge_source_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat")


def convert_identity(out_dir: str | Path, half: bool = False) -> Path:
    """dlib .dat -> weights/identity_dlib_resnet_v1.safetensors."""
    from .identity import state_dict_from_dlib

    state = state_dict_from_dlib(str(dlib_recognition_model()))
    if half:
        state = {k: v.half() for k, v in state.items()}
    out = Path(out_dir) / IDENTITY_WEIGHTS
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(out),
        metadata={"source": "dlib CC0"},
    )
    return out


def fit_chip_template(
    images: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, int]:
    """Where MTCNN's 5 landmarks fall on dlib's unit-square face, averaged over faces.

    `images` holds (RGB image, MTCNN landmarks) pairs. For each face dlib's own detector and
    5-point shape predictor fix its chip geometry; MTCNN's points are mapped into it. The mean is
    made left-right symmetric, since faces are on average and training flips them. Returns the
    template and the number of faces it was fitted on.
    """
    import dlib

    from .align import similarity_transform
    from .identity import DLIB_FACE_POINTS

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_shape_predictor()))
    mapped = []
    for rgb, mtcnn_points in images:
        rects = detector(rgb, 1)
        if len(rects) != 1:
            continue
        shape = predictor(rgb, rects[0])
        dlib_points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        m = similarity_transform(dlib_points, DLIB_FACE_POINTS)
        mapped.append(mtcnn_points @ m[:, :2].T + m[:, 2])
    if not mapped:
        raise ValueError("dlib found no single face in the images")
    mean = np.mean(mapped, axis=0)
    mirrored = mean[[1, 0, 2, 4, 3]] * [-1, 1] + [1, 0]
    return (mean + mirrored) / 2, len(mapped)
