from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceaging.images import photos_in

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHARED = ROOT.parent / "shared"
UTKFACE = SHARED / "data" / "utkface"
EXAMPLE_PHOTOS = photos_in(EXAMPLES)
GROUP_PHOTO = EXAMPLES / "apollo11_crew_nasa_1969_group.jpg"

sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

needs_shared = pytest.mark.skipif(not UTKFACE.is_dir(), reason="../shared/data/utkface is not present")


def faceaging_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m faceaging ARGS` as a user runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "faceaging", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="session")
def ager():
    from faceaging import FaceAger

    return FaceAger.from_pretrained(device="cpu", steps=3, max_seconds=float("inf"))


@pytest.fixture(scope="session")
def identity_net():
    from faceaging.weights import load_identity

    return load_identity()


@pytest.fixture(scope="session")
def detector():
    from faceaging.detect import FaceDetector

    return FaceDetector()


@pytest.fixture(scope="session")
def live_app():
    """One `python app.py` for every live test (gradio_client and the browser alike)."""
    from faceaging.evaluation.app_process import AppProcess

    with AppProcess() as app:
        yield app


@pytest.fixture(scope="session")
def client(live_app):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(live_app.url, verbose=False)


@pytest.fixture(scope="session")
def utk_dir(tmp_path_factory):
    """Example portraits saved under UTKFace-style names (a stand-in for the real data set)."""
    folder = tmp_path_factory.mktemp("utkface")
    singles = [p for p in EXAMPLE_PHOTOS if "group" not in p.name]
    for i, (path, age) in enumerate(zip(singles * 2, [8, 24, 35, 44, 55, 70], strict=False)):
        image = Image.fromarray(rgb(path))
        if i >= len(singles):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image.save(folder / f"{age}_1_0_2017010{i}.jpg.chip.jpg")
    return folder
