"""Training data: UTKFace (and IMDB-WIKI's wiki.mat) aligned into a cached tensor file.

The cache holds aligned crops made by `faceaging.align.align_face`, the aligner inference uses.
It lives outside git (cache/ is ignored): UTKFace is non-commercial research data.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..ages import NUM_GROUPS, AgeGroup
from ..align import CROP_SIZE, align_face

LANDMARK_COLUMNS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
HELDOUT_MODULUS = 20
# MATLAB datenums count from year 0, Python ordinals from year 1.
MATLAB_DATENUM_OFFSET = 366


def is_heldout(name: str) -> bool:
    """The fixed evaluation slice: files whose CRC-32 of the file name is 0 mod 20 (about 5%).

    Shared by training (which skips them) and every evaluation, so no figure is measured on
    a face the model was trained on.
    """
    return zlib.crc32(Path(name).name.encode()) % HELDOUT_MODULUS == 0


def is_tuning(name: str) -> bool:
    """A fixed slice of training faces (CRC-32 = 1 mod 20) on which inference settings are chosen."""
    return zlib.crc32(Path(name).name.encode()) % HELDOUT_MODULUS == 1


def utkface_age(name: str) -> int:
    """Age from a UTKFace file name, `AGE_GENDER_RACE_DATE.jpg.chip.jpg` (race may be missing)."""
    return int(Path(name).name.split("_", 1)[0])


# UTKFace's RACE field, by its value
ETHNICITIES = ("White", "Black", "Asian", "Indian", "Other")


def utkface_ethnicity(name: str) -> int:
    """The ethnicity label (an index into ETHNICITIES) from a UTKFace file name; -1 where it is missing."""
    fields = Path(name).name.split("_")
    return int(fields[2]) if len(fields) > 3 and fields[2].isdigit() else -1


def read_landmarks_csv(path: str | Path, min_score: float = 0.9) -> dict[str, np.ndarray]:
    """MTCNN landmarks per file from utkface_mtcnn.csv; files without a confident face are left out."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["n_faces"] == "0" or float(row["prob"] or 0) < min_score:
                continue
            out[row["file"]] = np.array(
                [[float(row[f"{k}_x"]), float(row[f"{k}_y"])] for k in LANDMARK_COLUMNS],
                dtype=np.float64,
            )
    return out


def read_wiki_mat(path: str | Path) -> list[tuple[str, float]]:
    """(relative image path, age) pairs from IMDB-WIKI's wiki.mat, as the Age-cGAN book chapter reads it.

    The age is photo_taken minus the birth year from `dob`, a MATLAB datenum. Faces whose
    face_score is -inf (no face) or whose second_face_score is set (two faces) are dropped, as
    are ages outside 0..100, which are date errors.
    """
    from scipy.io import loadmat

    wiki = loadmat(str(path))["wiki"][0, 0]
    dob = wiki["dob"].ravel()
    taken = wiki["photo_taken"].ravel()
    paths = [p[0] for p in wiki["full_path"].ravel()]
    face_score = wiki["face_score"].ravel()
    second = wiki["second_face_score"].ravel()
    pairs = []
    for p, d, t, fs, sfs in zip(paths, dob, taken, face_score, second, strict=True):
        if not np.isfinite(fs) or np.isfinite(sfs):
            continue
        birth = date.fromordinal(max(int(d) - MATLAB_DATENUM_OFFSET, 1))
        age = int(t) - birth.year
        if 0 <= age <= 100:
            pairs.append((str(p), float(age)))
    return pairs


@dataclass
class FaceSet:
    """Aligned uint8 crops (N, S, S, 3), ages, names, and the held-out mask."""

    images: np.ndarray
    ages: np.ndarray
    names: list[str]

    @property
    def groups(self) -> np.ndarray:
        return np.array([AgeGroup.from_age(a) for a in self.ages], dtype=np.int64)

    @property
    def heldout(self) -> np.ndarray:
        return np.array([is_heldout(n) for n in self.names])

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=self.images, ages=self.ages, names=np.array(self.names))

    @classmethod
    def load(cls, path: str | Path) -> FaceSet:
        data = np.load(path, allow_pickle=False)
        return cls(data["images"], data["ages"], [str(n) for n in data["names"]])

    def subset(self, mask: np.ndarray) -> FaceSet:
        idx = np.flatnonzero(mask)
        return FaceSet(self.images[idx], self.ages[idx], [self.names[i] for i in idx])


def build_utkface(
    data_dir: str | Path,
    landmarks_csv: str | Path | None = None,
    size: int = CROP_SIZE,
    limit: int | None = None,
) -> FaceSet:
    """Align every UTKFace file, with landmarks from MTCNN (or from a landmark CSV when given).

    The shared utkface_mtcnn.csv was made by running MTCNN on the tight 200 px crops as they are:
    the face box then runs past the image and the landmarks come out about 25 px too high
    (eyebrows for eyes). Detecting on a padded copy gives the landmarks MTCNN finds on ordinary
    photos, which is what inference aligns with, so that is the default.
    """
    data_dir = Path(data_dir)
    files = sorted(p.name for p in data_dir.glob("*.jpg"))[:limit]
    landmarks = read_landmarks_csv(landmarks_csv) if landmarks_csv else None
    return _align_all([(data_dir / f, utkface_age(f)) for f in files], landmarks, size)


def build_wiki(wiki_dir: str | Path, size: int = CROP_SIZE, limit: int | None = None) -> FaceSet:
    wiki_dir = Path(wiki_dir)
    pairs = read_wiki_mat(wiki_dir / "wiki.mat")[:limit]
    return _align_all([(wiki_dir / p, a) for p, a in pairs], None, size)


def detect_centre_face(detector, images: list[np.ndarray]) -> list[np.ndarray | None]:
    """Landmarks of the face nearest the centre of each dataset crop (the labelled face).

    Each image is padded by 30% first: dataset crops are so tight that MTCNN misplaces
    landmarks when the face box leaves the image.
    """
    padded = []
    for rgb in images:
        p = int(0.3 * max(rgb.shape[:2]))
        padded.append((p, np.pad(rgb, ((p, p), (p, p), (0, 0)))))
    same_size = len({im.shape for _, im in padded}) == 1
    found = detector.detect_batch([im for _, im in padded]) if same_size else [detector.detect(im) for _, im in padded]
    out = []
    for (p, im), faces in zip(padded, found, strict=True):
        centre = np.array(im.shape[1::-1]) / 2
        best = min(faces, key=lambda f: np.linalg.norm(f.centre - centre), default=None)
        out.append(None if best is None else best.landmarks - p)
    return out


def _align_all(items: list[tuple[Path, float]], landmarks: dict[str, np.ndarray] | None, size: int) -> FaceSet:
    detector = None
    if landmarks is None:
        from ..detect import FaceDetector

        # Dataset faces fill their crops, so skipping MTCNN's small-face pyramid levels loses nothing.
        detector = FaceDetector(min_face_size=60)
    images, ages, names = [], [], []
    batch = 32
    for start in tqdm(range(0, len(items), batch), desc="aligning", unit="batch"):
        chunk = items[start : start + batch]
        rgbs = [np.asarray(Image.open(path).convert("RGB")) for path, _ in chunk]
        if detector is not None:
            points = detect_centre_face(detector, rgbs)
        else:
            points = [landmarks.get(path.name) for path, _ in chunk]
        for (path, age), rgb, pts in zip(chunk, rgbs, points, strict=True):
            if pts is None:
                continue
            crop, _ = align_face(rgb, pts, size)
            images.append(crop)
            ages.append(age)
            names.append(path.name)
    if not images:
        raise ValueError("no face could be aligned in the training data")
    return FaceSet(np.stack(images), np.array(ages, dtype=np.float32), names)


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One aligned uint8 crop as users' photos show faces rather than as UTKFace does.

    A looser or tighter crop with a small shift and tilt, colour and lighting changes, blur, and
    JPEG compression, each drawn at random; half of the crops also get a horizontal flip.
    """
    size = image.shape[0]
    scale = rng.uniform(0.85, 1.1)
    angle = rng.uniform(-8, 8)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-0.04, 0.04, 2) * size
    out = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    f = out.astype(np.float32)
    grey = f.mean(-1, keepdims=True)
    f = grey + (f - grey) * rng.uniform(0.6, 1.3)  # saturation
    f = (f - 128) * rng.uniform(0.75, 1.25) + 128 + rng.uniform(-25, 25)  # contrast, brightness
    f = f * rng.uniform(0.9, 1.1, 3)  # white balance
    out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        out = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(out)


class AgedFaces(torch.utils.data.Dataset):
    """Crops as float tensors in [-1, 1] with their age group; augmented (see `augment`) when asked."""

    def __init__(self, faces: FaceSet, augmented: bool = True, seed: int = 0):
        self.images = faces.images  # uint8, shared, no copy per item
        self.groups = torch.from_numpy(faces.groups)
        self.augmented = augmented
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = augment(self.images[i], self.rng) if self.augmented else self.images[i]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1
        return x, self.groups[i]

    def balanced_sampler(self, num_samples: int, generator: torch.Generator) -> torch.utils.data.Sampler:
        """Draw each of the six groups equally often, however uneven the data."""
        counts = torch.bincount(self.groups, minlength=NUM_GROUPS).clamp(min=1).float()
        weights = (1.0 / counts)[self.groups]
        return torch.utils.data.WeightedRandomSampler(weights, num_samples, replacement=True, generator=generator)
