from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHARED = ROOT.parent / "shared"
UTKFACE = SHARED / "data" / "utkface"
EXAMPLE_PHOTOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in {".jpg", ".png"})
GROUP_PHOTO = EXAMPLES / "apollo11_crew_nasa_1969_group.jpg"

sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

needs_shared = pytest.mark.skipif(not UTKFACE.is_dir(), reason="../shared/data/utkface is not present")


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
